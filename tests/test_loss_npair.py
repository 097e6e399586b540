"""Multi-class N-pair loss against per-anchor loops, Sohn's N-pair-mc form, finite differences and PyTorch."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import backend, gradcheck
from refimpl.losses import npair

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


def naive(anchor, positive, labels=None, l2_reg=0.0, temperature=1.0, normalize=True, reduction="mean"):
    """Per anchor i: -sum_j T_ij log softmax_j(z_i . z+_j / tau) + l2_reg (|f_i|^2 + |f+_i|^2)."""
    n = len(anchor)
    labels = list(range(n)) if labels is None else list(labels)
    unit = (lambda v: v / math.sqrt(math.fsum(v * v))) if normalize else (lambda v: v)
    values = []
    for i in range(n):
        row = [math.fsum(unit(anchor[i]) * unit(positive[j])) / temperature for j in range(n)]
        top = max(row)
        log_z = top + math.log(math.fsum(math.exp(v - top) for v in row))
        same = [j for j in range(n) if labels[j] == labels[i]]
        ce = -math.fsum(row[j] - log_z for j in same) / len(same)
        values.append(ce + l2_reg * (math.fsum(anchor[i] ** 2) + math.fsum(positive[i] ** 2)))
    if reduction == "none":
        return np.array(values)
    return math.fsum(values) / (n if reduction == "mean" else 1)


def sohn_eq3(anchor, positive):
    """Sohn (2016) N-pair-mc per anchor: log(1 + sum_{j != i} exp(f_i.f+_j - f_i.f+_i)), unnormalised."""
    n = len(anchor)
    return np.array([math.log1p(math.fsum(math.exp(anchor[i] @ positive[j] - anchor[i] @ positive[i])
                                          for j in range(n) if j != i)) for i in range(n)])


@st.composite
def cases(draw):
    n, d = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # norms in [0.5, 2]: away from the zero-norm kink of the normalisation
    rows = lambda: gen.standard_normal((n, d)) * gen.uniform(0.5, 2.0, (n, 1)) / np.sqrt(d)  # noqa: E731
    labels = gen.integers(0, draw(st.integers(1, n)), n) if draw(st.booleans()) else None
    return dict(anchor=rows(), positive=rows(), labels=labels,
                l2_reg=draw(st.sampled_from([0.0, 0.002]) | st.floats(0.0, 1.0)),
                temperature=draw(st.floats(0.1, 2.0)), normalize=draw(st.booleans()))


def _rest(case):
    return {k: v for k, v in case.items() if k not in ("anchor", "positive")}


@given(case=cases(), reduction=REDUCTIONS)
def test_equals_naive_loop(case, reduction):
    loss, _ = npair.forward(**case, reduction=reduction)
    np.testing.assert_allclose(loss, naive(**case, reduction=reduction), rtol=1e-12, atol=1e-12)


@given(case=cases(), reduction=REDUCTIONS)
def test_vjp(case, reduction):
    rest = _rest(case)
    gradcheck.check_vjp(lambda a, p: npair.forward(a, p, **rest, reduction=reduction), npair.backward,
                        [case["anchor"], case["positive"]]).raise_if_failed()


@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_scale_and_permutation_invariance(case, seed):
    loss, _ = npair.forward(**case, reduction="none")
    gen = np.random.default_rng(seed)
    if case["normalize"] and case["l2_reg"] == 0:  # row scales do not matter after normalisation
        scaled = dict(case, anchor=case["anchor"] * gen.uniform(0.1, 10, (len(loss), 1)),
                      positive=case["positive"] * gen.uniform(0.1, 10, (len(loss), 1)))
        np.testing.assert_allclose(npair.forward(**scaled, reduction="none")[0], loss, rtol=1e-11,
                                   atol=1e-12)
    perm = gen.permutation(len(loss))
    permuted = dict(case, anchor=case["anchor"][perm], positive=case["positive"][perm],
                    labels=None if case["labels"] is None else case["labels"][perm])
    np.testing.assert_allclose(npair.forward(**permuted, reduction="none")[0], loss[perm], rtol=1e-12,
                               atol=1e-14)


@given(case=cases())
def test_paper_form_and_distinct_labels(case):
    """tau = 1, unnormalised, no labels: Sohn's N-pair-mc form; all-distinct labels equal no labels."""
    a, p = case["anchor"], case["positive"]
    loss, _ = npair.forward(a, p, normalize=False, reduction="none")
    np.testing.assert_allclose(loss, sohn_eq3(a, p), rtol=1e-12, atol=1e-14)
    distinct = np.arange(len(a)) * 7 - 3
    rest = {k: v for k, v in _rest(case).items() if k != "labels"}
    np.testing.assert_allclose(npair.forward(a, p, distinct, **rest)[0], npair.forward(a, p, **rest)[0],
                               rtol=1e-14)


def test_single_pair_and_single_class():
    a, p = np.array([[3.0, 4.0]]), np.array([[1.0, 0.0]])
    np.testing.assert_allclose(npair.forward(a, p, l2_reg=0.1)[0], 0.1 * 26, rtol=1e-14)
    # one class for all: the target is uniform, so l_i = logsumexp_j(s_ij) - mean_j(s_ij)
    a, p = np.eye(3), np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    loss, _ = npair.forward(a, p, np.zeros(3, dtype=np.int64), normalize=False, reduction="none")
    s = a @ p.T
    np.testing.assert_allclose(loss, np.log(np.exp(s).sum(axis=1)) - s.mean(axis=1), rtol=1e-14)


A = np.array([[1.0, 0.2, -0.3], [0.1, 0.9, 0.4], [-0.5, 0.3, 0.8], [0.6, -0.7, 0.2]])
P = np.array([[0.8, 0.4, -0.1], [0.3, 1.1, 0.2], [-0.2, 0.1, 0.9], [0.9, -0.2, 0.5]])
LABELS = np.array([0, 1, 0, 2])


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("labelled", [False, True])
def test_every_backend_full_check_and_purity(xpd, normalize, labelled):
    a, p = xpd.put(A), xpd.put(P)
    labels = xpd.put(LABELS) if labelled else None
    kwargs = dict(l2_reg=0.05, temperature=0.5, normalize=normalize)
    forward = lambda a, p: npair.forward(a, p, labels, **kwargs, reduction="sum")  # noqa: E731
    report = gradcheck.check_gradients(forward, npair.backward, [a, p])
    assert report.ok, str(report)
    loss, cache = forward(a, p)
    np.testing.assert_allclose(backend.to_numpy(loss), naive(A, P, LABELS if labelled else None, **kwargs,
                                                             reduction="sum"), rtol=1e-13)
    first, second = npair.backward(1.0, cache), npair.backward(1.0, cache)
    assert first[2] is None
    for g1, g2 in zip(first[:2], second[:2]):
        np.testing.assert_array_equal(backend.to_numpy(g1), backend.to_numpy(g2))
    np.testing.assert_array_equal(backend.to_numpy(a), A)
    np.testing.assert_array_equal(backend.to_numpy(p), P)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("labelled", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_equals_torch(torch, normalize, labelled, reduction):
    gen = np.random.default_rng(4)
    n = 7
    anchor, positive = gen.standard_normal((n, 5)), gen.standard_normal((n, 5))
    labels = gen.integers(0, 4, n) if labelled else np.arange(n)
    ta, tp = torch.tensor(anchor, requires_grad=True), torch.tensor(positive, requires_grad=True)
    za, zp = ((torch.nn.functional.normalize(x, dim=1) if normalize else x) for x in (ta, tp))
    same = torch.tensor(labels[:, None] == labels[None, :]).double()
    target = same / same.sum(dim=1, keepdim=True)
    per = torch.nn.functional.cross_entropy(za @ zp.T / 0.3, target, reduction="none")
    per = per + 0.01 * ((ta**2).sum(1) + (tp**2).sum(1))
    want = per.mean() if reduction == "mean" else per
    dout = gen.standard_normal(tuple(want.shape))
    want.backward(torch.tensor(dout))
    loss, cache = npair.forward(anchor, positive, labels if labelled else None, l2_reg=0.01,
                                temperature=0.3, normalize=normalize, reduction=reduction)
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    da, dp, _ = npair.backward(dout, cache)
    np.testing.assert_allclose(da, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dp, tp.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_bad_input_raises_naming_the_argument():
    with pytest.raises(ValueError, match="positive must have shape"):
        npair.forward(A, P[:3])
    with pytest.raises(ValueError, match="labels has 3 rows"):
        npair.forward(A, P, LABELS[:3])
    with pytest.raises(ValueError, match="labels must have 1 dimensions"):
        npair.forward(A, P, LABELS[:, None])
    with pytest.raises(ValueError, match="anchor must be finite"):
        npair.forward(np.where(A > 0.9, np.nan, A), P)
    with pytest.raises(ValueError, match="labels must be finite"):
        npair.forward(A, P, np.array([0.0, np.nan, 1.0, 2.0]))
    with pytest.raises(ValueError, match="l2_reg"):
        npair.forward(A, P, l2_reg=-0.1)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            npair.forward(A, P, temperature=bad)
    with pytest.raises(ValueError, match="reduction"):
        npair.forward(A, P, reduction="avg")


def test_float32_stays_float32(xpd):
    a, p = xpd.put(A, dtype="float32"), xpd.put(P, dtype="float32")
    loss, cache = npair.forward(a, p, xpd.put(LABELS), l2_reg=0.05)
    assert loss.dtype == xpd.xp.float32
    assert all(g.dtype == xpd.xp.float32 for g in npair.backward(1.0, cache)[:2])
    np.testing.assert_allclose(backend.to_numpy(loss), naive(A, P, LABELS, l2_reg=0.05), rtol=1e-5)
