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
    "kernel_blocked": (kernel, lambda r: kernel.forward(Z, labels=LABELS, reduction=r, block_size=4)),
    "adacon_anchors": (adacon, lambda r: adacon.forward(Z, Y, scale=2.0, reduction=r, block_size=2,
                                                        anchors=np.array([0, 3, 5]))),
    "npair": (npair, lambda r: npair.forward(Z, Z[::-1].copy(), reduction=r)),
    "triplet": (triplet, lambda r: triplet.forward(Z, Z, Z[::-1].copy(), Y, Y, Y[::-1].copy(), reduction=r)),
    "cross_entropy": (cross_entropy, lambda r: cross_entropy.forward(Z, LABELS, reduction=r)),
    "regression": (regression, lambda r: regression.forward(Z[:, 0], Y, reduction=r)),
    "dino": (dino, lambda r: dino.forward(np.concatenate([Z, Z]), Z, np.zeros(3))),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dout, error, message", [
    (np.ones(6), ValueError, r"dout must have shape \(\), the shape of the forward output, got \(6,\)"),
    (np.ones((), np.float32), TypeError, r"dout has dtype float32, expected the dtype of the forward output \(float64\): nothing is cast"),
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
    with pytest.raises(TypeError, match="dout must be an array of the forward output.s namespace"):
        kernel.backward(np.ones(()), cache)


# --- layers ----------------------------------------------------------------------------------

from refimpl.layers import (avgpool2d, batchnorm2d, conv2d, dropout, flatten, global_avg_pool,  # noqa: E402
                            linear, maxpool2d, relu)

X4 = GEN.standard_normal((2, 2, 4, 4))
LAYERS = {
    "conv2d": (conv2d, lambda: conv2d.forward(X4, GEN.standard_normal((3, 2, 3, 3)), np.zeros(3), padding=1)),
    "conv2d naive": (None, lambda: conv2d.forward_naive(X4, GEN.standard_normal((3, 2, 3, 3)), None)),
    "linear": (linear, lambda: linear.forward(Z, GEN.standard_normal((4, 3)), None)),
    "relu": (relu, lambda: relu.forward(X4)),
    "dropout": (dropout, lambda: dropout.forward(X4, p=0.5, train=True, seed=0)),
    "dropout eval": (dropout, lambda: dropout.forward(X4, p=0.5, train=False)),
    "flatten": (flatten, lambda: flatten.forward(X4)),
    "global_avg_pool": (global_avg_pool, lambda: global_avg_pool.forward(X4)),
    "avgpool2d": (avgpool2d, lambda: avgpool2d.forward(X4)),
    "maxpool2d": (maxpool2d, lambda: maxpool2d.forward(X4)),
    "batchnorm2d": (batchnorm2d, lambda: batchnorm2d.forward(X4, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2),
                                                             train=True)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_backward_checks_dout(name):
    module, forward = LAYERS[name]
    backward = conv2d.backward_naive if module is None else module.backward
    out, cache = forward()
    with pytest.raises(ValueError, match=r"dout must have shape \(.*\), the shape of the forward output"):
        backward(np.ones(out.shape + (1,)), cache)
    with pytest.raises(ValueError, match="dout must be an array of shape"):
        backward(1.0, cache)
    with pytest.raises(TypeError, match="dout has dtype float32"):
        backward(np.ones(out.shape, np.float32), cache)
    bad = np.ones(out.shape)
    bad.flat[0] = np.nan
    with pytest.raises(ValueError, match="dout must be finite"):
        backward(bad, cache)
    with pytest.raises(TypeError, match="dout must be an array or a Python number, got list"):
        backward(np.ones(out.shape).tolist(), cache)
    grads = backward(np.ones(out.shape), cache)
    assert grads[0].shape == X4.shape or grads[0].shape == Z.shape


@pytest.mark.parametrize("name", ["margin", "preference", "kernel", "adacon"])
@pytest.mark.parametrize("reduction, dout, error, message", [
    ("mean", np.ones(6), ValueError, r"dout must have shape \(\), the shape of the forward output, got \(6,\)"),
    ("mean", np.ones((), np.float32), TypeError, "dout has dtype float32"),
    ("mean", float("nan"), ValueError, "dout must be finite"),
    ("none", 1.0, ValueError, "dout must be an array of shape"),
])
def test_teaching_forms_check_dout(name, reduction, dout, error, message):
    module = LOSSES[name][0]
    args = {"margin": (Z, Z[::-1].copy(), SAME), "preference": (Z, Z[::-1].copy(), Z[:2], SAME),
            "kernel": (Z,), "adacon": (Z, Y)}[name]
    kwargs = {"kernel": dict(labels=LABELS), "adacon": dict(scale=2.0)}.get(name, {})
    _, cache = module.forward_naive(*args, **kwargs, reduction=reduction)
    with pytest.raises(error, match=message):
        module.backward_naive(dout, cache)
