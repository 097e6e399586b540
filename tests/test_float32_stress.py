"""float32 at the edge of its range: huge or tiny (finite) inputs give the float64 answer or a clear error.

Squaring float32 values overflows from about 1.8e19 and underflows below about
1e-19; the L2 normalisation and batch norm's variance must not square the
inputs themselves (they scale by the largest absolute value first).
"""
import numpy as np
import pytest

from refimpl.layers import batchnorm2d
from refimpl.losses import _common, adacon, kernel, margin, npair, preference, triplet

GEN = np.random.default_rng(11)
A, B, C = (GEN.standard_normal((8, 5)) for _ in range(3))
SAME = np.array([1, 0, 1, 0, 1, 0, 1, 0.0])
LABELS = np.arange(16) % 4
Y = np.repeat(np.array([0.1, 0.2, 0.3, 0.4]), 2)


def _extreme(x, scale):
    """``x`` with rows 1 and 4 multiplied by ``scale``."""
    x = x.copy()
    x[[1, 4]] *= scale
    return x


CASES = {
    "margin": lambda a, b, c: margin.forward(a, b, SAME, reduction="none"),
    "preference": lambda a, b, c: preference.forward(a, b, c[:3], SAME, reduction="none"),
    "kernel": lambda a, b, c: kernel.forward(np.concatenate([a, b]), labels=LABELS, temperature=0.1,
                                             reduction="none"),
    "adacon": lambda a, b, c: adacon.forward(a, Y, scale=10.0, reduction="none"),
    "npair": lambda a, b, c: npair.forward(a, b, reduction="none"),
    "triplet": lambda a, b, c: triplet.forward(a, b, c, Y, Y, Y[::-1].copy(), reduction="none"),
}


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e-20, 1e-30])
@pytest.mark.parametrize("name", sorted(CASES))
def test_losses_of_extreme_rows_in_float32_match_float64(name, scale):
    """float32 with rows at 1e20 (or 1e-20) equals float64 with the same rows.

    Huge rows normalise to unit rows, so the loss is that of the unscaled rows;
    rows below the 1e-12 norm floor stay tiny (as torch's normalize), in both dtypes."""
    inputs = [_extreme(x, scale) for x in (A, B, C)]
    want, _ = CASES[name](*inputs)
    got, _ = CASES[name](*(x.astype(np.float32) for x in inputs))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    plain, _ = CASES[name](A, B, C)  # and equals the unscaled loss where the scaled rows do not matter
    if name in ("margin", "kernel", "npair") and scale > 1:
        np.testing.assert_allclose(want, plain, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_l2_normalize_and_its_gradient_at_extreme_scales(scale):
    x = _extreme(A, scale)
    dz = B
    z64, cache64 = _common.l2_normalize(x)
    z32, cache32 = _common.l2_normalize(x.astype(np.float32))
    np.testing.assert_allclose(z32, z64, rtol=1e-5, atol=1e-6)
    if scale > 1:  # rows below the 1e-12 floor are divided by the floor, not normalised
        np.testing.assert_allclose(np.linalg.norm(z32, axis=1), 1.0, rtol=1e-5)
    dx64 = _common.l2_normalize_backward(dz, cache64)
    dx32 = _common.l2_normalize_backward(dz.astype(np.float32), cache32)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-4, atol=1e-5 * np.abs(dx64).max())


def _bn(x, train=True):
    c = x.shape[1]
    one, zero = np.ones(c, x.dtype), np.zeros(c, x.dtype)
    return batchnorm2d.forward(x, one + 0.5, zero + 0.25, zero, one, train=train)


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_batchnorm_in_float32_at_extreme_scales(scale):
    x = GEN.standard_normal((4, 3, 5, 5)) * scale
    dout = GEN.standard_normal(x.shape)
    out64, cache64 = _bn(x)
    out32, cache32 = _bn(x.astype(np.float32))
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)
    for g32, g64 in zip(batchnorm2d.backward(dout.astype(np.float32), cache32), batchnorm2d.backward(dout, cache64)):
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4 * np.abs(g64).max())


def test_batchnorm_running_variance_that_overflows_is_refused():
    x = (GEN.standard_normal((4, 2, 3, 3)) * 1e20).astype(np.float32)
    _, cache = _bn(x)
    with pytest.raises(ValueError, match="exceeds the largest float32 value"):
        batchnorm2d.new_running_stats(cache)
    _, cache = _bn(x.astype(np.float64))  # fits float64: the update is the unbiased batch variance
    mean, var = batchnorm2d.new_running_stats(cache)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.astype(np.float64).var(axis=(0, 2, 3), ddof=1), rtol=1e-12)


def test_batchnorm_refuses_negative_running_variance():
    x = GEN.standard_normal((2, 2, 3, 3))
    with pytest.raises(ValueError, match="running_var must be >= 0"):
        batchnorm2d.forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.array([1.0, -1.0]), train=False)


# --- the dtype rule: float32 or float64, one of them per call -----------------------------

F32 = np.ones((4, 3), np.float32)
F64 = np.ones((4, 3))
Y4 = np.array([0.1, 0.1, 0.2, 0.2])
MIXED = {
    "b": lambda: margin.forward(F32, F64, np.array([1, 0, 1, 0])),
    "refs": lambda: preference.forward(F32, F32, F64[:2], np.array([1, 0, 1, 0])),
    "u_j": lambda: preference.forward(F32, F64, F32[:2], np.array([1, 0, 1, 0])),
    "positive": lambda: npair.forward(F32, F64),
    "negative": lambda: triplet.forward(F32, F32, F64, Y4, Y4, Y4),
}


@pytest.mark.parametrize("name", sorted(MIXED))
def test_mixed_precision_is_refused_naming_the_argument(name):
    with pytest.raises(TypeError, match=f"^{name} has dtype float64, expected the dtype of"):
        MIXED[name]()


@pytest.mark.parametrize("call", [
    lambda x: margin.forward(x, x, np.array([1, 0, 1, 0])),
    lambda x: kernel.forward(x, labels=np.array([0, 0, 1, 1])),
    lambda x: adacon.forward(x, Y4, scale=2.0),
    lambda x: batchnorm2d.forward(x[:, :, None, None], *(np.ones(3, x.dtype),) * 4, train=True),
], ids=["margin", "kernel", "adacon", "batchnorm2d"])
def test_float16_is_refused(call):
    with pytest.raises(TypeError, match="must be float32 or float64, got float16"):
        call(np.ones((4, 3), np.float16))


def test_float_labels_do_not_promote_float32_embeddings():
    """Labels (0/1, preferences, depths, targets) are data, not operands: the loss keeps z's dtype."""
    loss, cache = margin.forward(F32, F32 * 2, np.array([1.0, 0.0, 1.0, 0.0]))
    assert loss.dtype == np.float32 and all(g.dtype == np.float32 for g in margin.backward(1.0, cache))
    loss, cache = kernel.forward(F32, labels=np.array([0, 0, 1, 1]), depth=Y4, sigma=0.1)
    assert loss.dtype == np.float32 and kernel.backward(1.0, cache)[0].dtype == np.float32


def test_adacon_unnormalised_with_one_huge_row_in_float32():
    """normalize=False and one row at 1e6: the positive-pair sums must not cancel |z_i|^2 ~ 1e12."""
    z = A.copy()
    z[2] *= 1e6
    want, cache64 = adacon.forward(z, Y, scale=1.0, normalize=False, reduction="none")
    got, cache32 = adacon.forward(z.astype(np.float32), Y.astype(np.float32), scale=1.0, normalize=False,
                                  reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    dz64, = adacon.backward(np.ones(8), cache64)
    dz32, = adacon.backward(np.ones(8, np.float32), cache32)
    np.testing.assert_allclose(dz32, dz64, rtol=1e-3, atol=1e-4 * np.abs(dz64).max())
