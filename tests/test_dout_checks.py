"""Every loss's backward checks ``dout`` against the loss it came from: shape, dtype, namespace, finite."""
import numpy as np
import pytest

from refimpl.losses import (adacon, cross_entropy, dino, kernel, margin, npair, preference, regression, supcon,
                            triplet)

GEN = np.random.default_rng(5)
Z = GEN.standard_normal((6, 3))
Y = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.3])
LABELS = np.array([0, 0, 1, 1, 2, 2])
SAME = np.array([1, 0, 1, 0, 1, 0])

#: name -> (module, forward with a given reduction, or None for a scalar-only loss)
LOSSES = {
    "margin": (margin, lambda r: margin.forward(Z, Z[::-1].copy(), SAME, reduction=r)),
    "preference": (preference, lambda r: preference.forward(Z, Z[::-1].copy(), Z[:2], SAME, reduction=r)),
    "kernel": (kernel, lambda r: kernel.forward(Z, labels=LABELS, reduction=r)),
    "supcon": (supcon, lambda r: supcon.forward(Z, labels=LABELS, reduction=r)),
    "adacon": (adacon, lambda r: adacon.forward(Z, Y, scale=2.0, reduction=r)),
    "npair": (npair, lambda r: npair.forward(Z, Z[::-1].copy(), reduction=r)),
    "triplet": (triplet, lambda r: triplet.forward(Z, Z, Z[::-1].copy(), Y, Y, Y[::-1].copy(), reduction=r)),
    "cross_entropy": (cross_entropy, lambda r: cross_entropy.forward(Z, LABELS, reduction=r)),
    "regression": (regression, lambda r: regression.forward(Z[:, 0], Y, reduction=r)),
    "dino": (dino, lambda r: dino.forward(np.concatenate([Z, Z]), Z, np.zeros(3))),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dout, error, message", [
    (np.ones(6), ValueError, r"dout must have shape \(\), the shape of the loss, got \(6,\)"),
    (np.ones((), np.float32), TypeError, r"dout has dtype float32, expected the dtype of the loss \(float64\)"),
    (np.array(np.nan), ValueError, "dout must be finite"),
    (float("inf"), ValueError, "dout must be finite"),
    ([1.0], TypeError, "dout must be an array or a Python number, got list"),
    ("1", TypeError, "dout must be an array or a Python number, got str"),
    (True, TypeError, "dout must be an array or a Python number, got bool"),
])
def test_scalar_losses_check_dout(name, dout, error, message):
    module, forward = LOSSES[name]
    _, cache = forward("mean")
    with pytest.raises(error, match=message):
        module.backward(dout, cache)


@pytest.mark.parametrize("name", sorted(set(LOSSES) - {"dino"}))
def test_per_sample_losses_need_a_matching_array(name):
    module, forward = LOSSES[name]
    loss, cache = forward("none")
    with pytest.raises(ValueError, match="dout must be an array of shape"):
        module.backward(1.0, cache)
    with pytest.raises(ValueError, match=r"dout must have shape \(\d+,\)"):
        module.backward(np.ones(loss.shape[0] + 1), cache)
    grads = module.backward(np.ones(loss.shape), cache)  # the right dout still works
    assert all(g is None or np.all(np.isfinite(g)) for g in grads)


def test_dout_from_another_namespace_is_refused():
    strict = pytest.importorskip("array_api_strict")
    _, cache = kernel.forward(strict.asarray(Z), labels=strict.asarray(LABELS))
    with pytest.raises(TypeError, match="dout must be an array of the loss's namespace"):
        kernel.backward(np.ones(()), cache)
