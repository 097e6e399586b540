"""Softmax cross-entropy against a per-sample loop, finite differences and PyTorch."""
import math

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from refimpl import backend, gradcheck
from refimpl.losses import cross_entropy

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


def naive(logits, targets, weight=None, label_smoothing=0.0, reduction="mean"):
    """Per sample: -(1 - eps) w_y log p_y - eps / C sum_c w_c log p_c; weighted mean over sum w_y."""
    n, c = logits.shape
    w = np.ones(c) if weight is None else weight
    values, weights = [], []
    for i in range(n):
        row = [float(v) for v in logits[i]]
        top = max(row)
        log_z = top + math.log(math.fsum(math.exp(v - top) for v in row))
        y = int(targets[i])
        smooth = math.fsum(w[k] * (row[k] - log_z) for k in range(c))
        values.append(-(1 - label_smoothing) * w[y] * (row[y] - log_z) - label_smoothing / c * smooth)
        weights.append(w[y])
    if reduction == "none":
        return np.array(values)
    total = math.fsum(values)
    return total if reduction == "sum" else total / math.fsum(weights)


@st.composite
def cases(draw):
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logits = gen.standard_normal((n, c)) * draw(st.floats(0.1, 10.0))
    targets = gen.integers(0, c, n)
    weight = gen.uniform(0.1, 3.0, c) if draw(st.booleans()) else None
    smoothing = draw(st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0.0, 1.0))
    return dict(logits=logits, targets=targets, weight=weight, label_smoothing=smoothing)


@given(case=cases(), reduction=REDUCTIONS)
@example(case=dict(logits=np.array([[800.0, -800.0, 0.0]]), targets=np.array([1]), weight=None,
                   label_smoothing=0.0), reduction="sum")  # overflow without the row max
def test_equals_naive_loop(case, reduction):
    loss, _ = cross_entropy.forward(**case, reduction=reduction)
    np.testing.assert_allclose(loss, naive(**case, reduction=reduction), rtol=1e-12, atol=1e-12)


@given(case=cases(), reduction=REDUCTIONS)
def test_vjp(case, reduction):
    kwargs = dict(targets=case["targets"], weight=case["weight"],
                  label_smoothing=case["label_smoothing"], reduction=reduction)
    gradcheck.check_vjp(lambda x: cross_entropy.forward(x, **kwargs), cross_entropy.backward,
                        [case["logits"]]).raise_if_failed()


@given(case=cases())
def test_invariances(case):
    """Shifting a row of logits changes nothing; permuting samples permutes the per-sample losses."""
    loss, _ = cross_entropy.forward(**case, reduction="none")
    shift = np.arange(len(case["logits"]))[:, None] * 3.0
    shifted, _ = cross_entropy.forward(**dict(case, logits=case["logits"] + shift), reduction="none")
    np.testing.assert_allclose(shifted, loss, rtol=1e-12, atol=1e-12)
    perm = np.random.default_rng(1).permutation(len(loss))
    permuted, _ = cross_entropy.forward(**dict(case, logits=case["logits"][perm],
                                               targets=case["targets"][perm]), reduction="none")
    np.testing.assert_array_equal(permuted, loss[perm])


@given(case=cases(), scale=st.floats(0.1, 10.0))
def test_uniform_weights_equal_unweighted_mean(case, scale):
    c = case["logits"].shape[1]
    plain, _ = cross_entropy.forward(**dict(case, weight=None))
    uniform, _ = cross_entropy.forward(**dict(case, weight=np.full(c, scale)))
    np.testing.assert_allclose(uniform, plain, rtol=1e-12)
    summed, _ = cross_entropy.forward(**dict(case, weight=np.full(c, scale)), reduction="sum")
    np.testing.assert_allclose(summed, scale * len(case["targets"]) * plain, rtol=1e-12)


def test_zero_weight_class_drops_out_of_mean():
    logits = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    targets = np.array([0, 1, 1])
    loss, _ = cross_entropy.forward(logits, targets, np.array([0.0, 1.0]))
    rest, _ = cross_entropy.forward(logits[1:], targets[1:])
    np.testing.assert_allclose(loss, rest, rtol=1e-14)


LOGITS = np.array([[2.0, 0.0, -1.0, 0.3], [0.0, 1.0, 0.0, -0.2], [-0.5, 0.2, 1.5, 0.0]])
TARGETS = np.array([0, 3, 2])
WEIGHT = np.array([1.0, 0.5, 2.0, 1.5])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_backend_full_check_and_purity(xpd, reduction, weighted):
    logits, targets = xpd.put(LOGITS), xpd.put(TARGETS)
    weight = xpd.put(WEIGHT) if weighted else None
    forward = lambda x: cross_entropy.forward(x, targets, weight, label_smoothing=0.2,  # noqa: E731
                                              reduction=reduction)
    report = gradcheck.check_gradients(forward, cross_entropy.backward, [logits])
    assert report.ok, str(report)
    loss, cache = forward(logits)
    want = naive(LOGITS, TARGETS, WEIGHT if weighted else None, 0.2, reduction)
    np.testing.assert_allclose(backend.to_numpy(loss), want, rtol=1e-13)
    dout = xpd.put(np.ones(np.shape(want)))
    first, second = cross_entropy.backward(dout, cache), cross_entropy.backward(dout, cache)
    assert first[1:] == (None, None)
    np.testing.assert_array_equal(backend.to_numpy(first[0]), backend.to_numpy(second[0]))
    np.testing.assert_array_equal(backend.to_numpy(logits), LOGITS)
    np.testing.assert_array_equal(backend.to_numpy(targets), TARGETS)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_torch(torch, reduction, smoothing, weighted):
    gen = np.random.default_rng(5)
    logits, targets = gen.standard_normal((6, 4)) * 3, gen.integers(0, 4, 6)
    weight = gen.uniform(0.2, 2.0, 4) if weighted else None
    x = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(
        x, torch.tensor(targets), weight=None if weight is None else torch.tensor(weight),
        reduction=reduction, label_smoothing=smoothing)
    dout = gen.standard_normal(tuple(want.shape))
    want.backward(torch.tensor(dout))
    loss, cache = cross_entropy.forward(logits, targets, weight, label_smoothing=smoothing,
                                        reduction=reduction)
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cross_entropy.backward(dout, cache)[0], x.grad.numpy(), rtol=1e-10,
                               atol=1e-12)


def test_bad_input_raises_naming_the_argument():
    x, t = np.zeros((3, 2)), np.array([0, 1, 1])
    with pytest.raises(ValueError, match="targets has 2 rows"):
        cross_entropy.forward(x, t[:2])
    with pytest.raises(ValueError, match="targets must be class indices in \\[0, 2\\)"):
        cross_entropy.forward(x, np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="targets must be class indices"):
        cross_entropy.forward(x, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match="targets must have an integer dtype"):
        cross_entropy.forward(x, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="logits must be finite"):
        cross_entropy.forward(np.array([[0.0, np.nan]] * 3), t)
    with pytest.raises(ValueError, match="logits must have 2 dimensions"):
        cross_entropy.forward(np.zeros(3), t)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        cross_entropy.forward(x, t, np.array([1.0, -0.1]))
    with pytest.raises(ValueError, match="weight must have shape \\(2,\\)"):
        cross_entropy.forward(x, t, np.ones(3))
    with pytest.raises(ValueError, match="weight must be finite"):
        cross_entropy.forward(x, t, np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="weight of the targets sums to 0"):
        cross_entropy.forward(x, np.array([1, 1, 1]), np.array([1.0, 0.0]))
    for eps in (-0.1, 1.5):
        with pytest.raises(ValueError, match="label_smoothing"):
            cross_entropy.forward(x, t, label_smoothing=eps)
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy.forward(x, t, reduction="batchmean")


def test_float32_stays_float32(xpd):
    logits, weight = xpd.put(LOGITS, dtype="float32"), xpd.put(WEIGHT, dtype="float32")
    targets = xpd.put(TARGETS.astype(np.int32))
    loss, cache = cross_entropy.forward(logits, targets, weight, label_smoothing=0.1)
    assert loss.dtype == xpd.xp.float32 and cross_entropy.backward(1.0, cache)[0].dtype == xpd.xp.float32
    np.testing.assert_allclose(backend.to_numpy(loss), naive(LOGITS, TARGETS, WEIGHT, 0.1), rtol=1e-5)
