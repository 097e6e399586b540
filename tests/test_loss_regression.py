"""MSE / L1 / Huber against a per-element loop, finite differences and PyTorch."""
import math

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from refimpl import backend, gradcheck
from refimpl.losses import regression

KINDS = st.sampled_from(regression.KINDS)
REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


def naive(pred, target, kind, delta, reduction):
    """One element at a time, straight from the definitions."""
    values = []
    for p, t in zip(np.ravel(pred), np.ravel(target)):
        r = float(p) - float(t)
        if kind == "mse":
            values.append(r * r)
        elif kind == "l1":
            values.append(abs(r))
        else:
            values.append(0.5 * r * r if abs(r) <= delta else delta * (abs(r) - 0.5 * delta))
    if reduction == "none":
        return np.reshape(values, np.shape(pred))
    total = math.fsum(values)
    return total if reduction == "sum" else total / len(values)


@st.composite
def cases(draw):
    """pred and target with every residual |r| away from the kinks 0 and delta (by construction)."""
    shape = draw(st.sampled_from([(1,), (5,), (3, 1), (4, 3)]))
    delta = draw(st.floats(0.2, 3.0))
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    inside = gen.random(shape) < 0.5
    scale = np.where(inside, gen.uniform(0.1, 0.9, shape), gen.uniform(1.1, 3.0, shape))
    sign = np.where(gen.random(shape) < 0.5, -1.0, 1.0)
    pred = gen.standard_normal(shape)
    return pred, pred - sign * scale * delta, delta


@given(case=cases(), kind=KINDS, reduction=REDUCTIONS)
@example(case=(np.array([0.0]), np.array([0.0]), 1.0), kind="l1", reduction="sum")
def test_equals_naive_loop(case, kind, reduction):
    pred, target, delta = case
    loss, _ = regression.forward(pred, target, kind=kind, delta=delta, reduction=reduction)
    want = naive(pred, target, kind, delta, reduction)
    np.testing.assert_allclose(loss, want, rtol=1e-13, atol=1e-15)
    assert np.shape(loss) == np.shape(want)


@given(case=cases(), kind=KINDS, reduction=REDUCTIONS)
def test_vjp(case, kind, reduction):
    pred, target, delta = case
    gradcheck.check_vjp(
        lambda p: regression.forward(p, target, kind=kind, delta=delta, reduction=reduction),
        regression.backward, [pred]).raise_if_failed()


@given(case=cases(), kind=KINDS)
def test_permutation_of_rows(case, kind):
    pred, target, delta = case
    perm = np.random.default_rng(0).permutation(len(pred))
    for reduction in ("mean", "sum"):
        a, _ = regression.forward(pred, target, kind=kind, delta=delta, reduction=reduction)
        b, _ = regression.forward(pred[perm], target[perm], kind=kind, delta=delta, reduction=reduction)
        np.testing.assert_allclose(a, b, rtol=1e-13)
    per, _ = regression.forward(pred, target, kind=kind, delta=delta, reduction="none")
    per_p, _ = regression.forward(pred[perm], target[perm], kind=kind, delta=delta, reduction="none")
    np.testing.assert_array_equal(per[perm], per_p)


PRED = np.array([[0.3, -1.2], [2.0, 0.1], [-0.4, 0.9]])
TARGET = np.array([[0.0, -0.2], [0.5, 0.6], [-0.1, 2.5]])  # residuals 0.3, -1, 1.5, -0.5, -0.3, -1.6


@pytest.mark.parametrize("kind", regression.KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_every_backend_full_check_and_purity(xpd, kind, reduction):
    pred, target = xpd.put(PRED), xpd.put(TARGET)
    forward = lambda p: regression.forward(p, target, kind=kind, delta=0.7, reduction=reduction)  # noqa: E731
    report = gradcheck.check_gradients(forward, regression.backward, [pred])
    assert report.ok, str(report)
    loss, cache = forward(pred)
    np.testing.assert_allclose(backend.to_numpy(loss), naive(PRED, TARGET, kind, 0.7, reduction), rtol=1e-13)
    dout = xpd.put(np.ones(np.shape(backend.to_numpy(loss))))
    first, second = regression.backward(dout, cache), regression.backward(dout, cache)
    assert len(first) == 1
    np.testing.assert_array_equal(backend.to_numpy(first[0]), backend.to_numpy(second[0]))
    np.testing.assert_array_equal(backend.to_numpy(pred), PRED)
    np.testing.assert_array_equal(backend.to_numpy(target), TARGET)


def test_kinks_pinned():
    # residuals: 0 (L1/Huber kink at zero), +-delta (Huber branch boundary), others
    pred = np.array([1.0, 0.5 + 0.75, -0.75, 0.2])
    target = np.array([1.0, 0.5, 0.0, -1.0])
    r = pred - target
    (d_l1,) = regression.backward(1.0, regression.forward(pred, target, kind="l1", reduction="sum")[1])
    np.testing.assert_array_equal(d_l1, [0.0, 1.0, -1.0, 1.0])  # subgradient 0 at r = 0
    _, cache = regression.forward(pred, target, kind="huber", delta=0.75, reduction="sum")
    (d_huber,) = regression.backward(1.0, cache)
    np.testing.assert_array_equal(d_huber, [0.0, 0.75, -0.75, 0.75])  # r, clipped at +-delta
    assert r[1] == 0.75 and r[2] == -0.75  # the boundary really was hit


def test_huber_limits():
    gen = np.random.default_rng(3)
    pred, target = gen.standard_normal(20), gen.standard_normal(20)
    r = np.abs(pred - target)
    mse, _ = regression.forward(pred, target, kind="mse", reduction="none")
    l1, _ = regression.forward(pred, target, kind="l1", reduction="none")
    big = float(r.max()) * 1.01  # every residual inside: Huber = MSE / 2
    np.testing.assert_array_equal(regression.forward(pred, target, kind="huber", delta=big,
                                                     reduction="none")[0], 0.5 * mse)
    for small in (0.5 * float(r.min()), 1e-3 * float(r.min())):  # every residual outside
        huber, _ = regression.forward(pred, target, kind="huber", delta=small, reduction="none")
        np.testing.assert_allclose(huber, small * l1 - 0.5 * small**2, rtol=1e-14)
    tiny = 1e-6 * float(r.min())
    huber, _ = regression.forward(pred, target, kind="huber", delta=tiny, reduction="none")
    np.testing.assert_allclose(huber / tiny, l1, rtol=1e-6)  # approaches delta * L1


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7,), (4, 3)])
def test_equals_torch(torch, reduction, shape):
    functional = torch.nn.functional
    gen = np.random.default_rng(11)
    pred, target = gen.standard_normal(shape) * 2, gen.standard_normal(shape)
    pred.flat[0] = target.flat[0]  # a zero residual: the subgradients must agree too
    refs = {"mse": functional.mse_loss, "l1": functional.l1_loss,
            "huber": lambda p, t, reduction: functional.huber_loss(p, t, reduction=reduction, delta=0.8)}
    for kind, ref in refs.items():
        p = torch.tensor(pred, requires_grad=True)
        want = ref(p, torch.tensor(target), reduction=reduction)
        dout = gen.standard_normal(tuple(want.shape))
        want.backward(torch.tensor(dout))
        loss, cache = regression.forward(pred, target, kind=kind, delta=0.8, reduction=reduction)
        np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(regression.backward(dout, cache)[0], p.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)


def test_bad_input_raises_naming_the_argument():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="target must have shape"):
        regression.forward(x, np.zeros(4))
    with pytest.raises(ValueError, match="target must have shape"):
        regression.forward(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="pred must have shape"):
        regression.forward(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="pred must be finite"):
        regression.forward(np.array([0.0, np.nan, 1.0]), x)
    with pytest.raises(ValueError, match="target must be finite"):
        regression.forward(x, np.array([0.0, np.inf, 1.0]))
    for delta in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="delta"):
            regression.forward(x, x, kind="huber", delta=delta)
    with pytest.raises(ValueError, match="kind"):
        regression.forward(x, x, kind="l2")
    with pytest.raises(ValueError, match="reduction"):
        regression.forward(x, x, reduction="avg")
    with pytest.raises(TypeError, match="pred must have a real floating dtype"):
        regression.forward(np.zeros(3, dtype=np.int64), x)


@pytest.mark.parametrize("kind", regression.KINDS)
def test_float32_stays_float32(xpd, kind):
    pred, target = xpd.put(PRED, dtype="float32"), xpd.put(TARGET, dtype="float32")
    loss, cache = regression.forward(pred, target, kind=kind)
    assert loss.dtype == xpd.xp.float32 and regression.backward(1.0, cache)[0].dtype == xpd.xp.float32
    np.testing.assert_allclose(backend.to_numpy(loss), naive(PRED, TARGET, kind, 1.0, "mean"), rtol=1e-5)
