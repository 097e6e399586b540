"""Adaptive triplet loss against a per-triplet loop, AdaCon App. B, finite differences and PyTorch."""
import math

import numpy as np
import pytest
from hypothesis import assume, example, given, strategies as st

from refimpl import backend, gradcheck
from refimpl.losses import triplet

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


def naive_ecdf(y, population):
    return sum(1 for v in population if v <= y) / len(population)


def naive_h(anchor, positive, negative, y_anchor, y_positive, y_negative, population=None,
            normalize=True):
    """Hinge argument per triplet: |a - p|^2 - |a - n|^2 + 2 (d_an - d_ap), d = 2 |phi - phi|."""
    population = list(y_anchor) if population is None else list(population)
    unit = (lambda v: v / math.sqrt(math.fsum(v * v))) if normalize else (lambda v: v)
    out = []
    for a, p, n, ya, yp, yn in zip(anchor, positive, negative, y_anchor, y_positive, y_negative):
        a, p, n = unit(a), unit(p), unit(n)
        phi_a, phi_p, phi_n = (naive_ecdf(y, population) for y in (ya, yp, yn))
        d_an, d_ap = 2 * abs(phi_a - phi_n), 2 * abs(phi_a - phi_p)
        out.append(math.fsum((a - p) ** 2) - math.fsum((a - n) ** 2) + 2 * (d_an - d_ap))
    return np.array(out)


def naive(*args, reduction="mean", **kwargs):
    values = [max(0.0, h) for h in naive_h(*args, **kwargs)]
    if reduction == "none":
        return np.array(values)
    return math.fsum(values) / (len(values) if reduction == "mean" else 1)


def _embeddings(gen, n, d):
    """Rows with norms in [0.5, 2]: away from the zero-norm kink of the normalisation."""
    z = gen.standard_normal((n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True) * gen.uniform(0.5, 2.0, (n, 1))


@st.composite
def cases(draw):
    n, d = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # labels on a coarse grid, so that ties (equal ECDF values, zero margins) occur
    y = lambda: gen.integers(0, 5, n) / 4.0  # noqa: E731
    y_anchor = y()
    return dict(anchor=_embeddings(gen, n, d), positive=_embeddings(gen, n, d),
                negative=_embeddings(gen, n, d), y_anchor=y_anchor,
                y_positive=y_anchor if draw(st.booleans()) else y(), y_negative=y(),
                population=gen.uniform(0, 1, draw(st.integers(1, 8))) if draw(st.booleans()) else None,
                normalize=draw(st.booleans()))


def _args(case):
    keys = ("anchor", "positive", "negative", "y_anchor", "y_positive", "y_negative")
    return [case[k] for k in keys], {k: v for k, v in case.items() if k not in keys}


@given(case=cases(), reduction=REDUCTIONS)
def test_equals_naive_loop(case, reduction):
    args, kwargs = _args(case)
    loss, _ = triplet.forward(*args, **kwargs, reduction=reduction)
    np.testing.assert_allclose(loss, naive(*args, **kwargs, reduction=reduction), rtol=1e-12, atol=1e-12)


@given(case=cases(), reduction=REDUCTIONS)
def test_vjp(case, reduction):
    args, kwargs = _args(case)
    assume(np.all(np.abs(naive_h(*args, **kwargs)) > 1e-3))  # off the hinge kink
    gradcheck.check_vjp(lambda a, p, n: triplet.forward(a, p, n, *args[3:], **kwargs, reduction=reduction),
                        triplet.backward, args[:3]).raise_if_failed()


@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_scale_and_permutation_invariance(case, seed):
    args, kwargs = _args(case)
    loss, _ = triplet.forward(*args, **kwargs, reduction="none")
    gen = np.random.default_rng(seed)
    if kwargs["normalize"]:  # row scales do not matter after normalisation
        scaled = [z * gen.uniform(0.1, 10.0, (len(z), 1)) for z in args[:3]] + args[3:]
        np.testing.assert_allclose(triplet.forward(*scaled, **kwargs, reduction="none")[0], loss,
                                   rtol=1e-12, atol=1e-12)
    perm = gen.permutation(len(loss))  # the default population (y_anchor) is only reordered
    permuted, _ = triplet.forward(*[x[perm] for x in args], **kwargs, reduction="none")
    np.testing.assert_allclose(permuted, loss[perm], rtol=1e-12, atol=1e-15)


@given(case=cases(), s=st.sampled_from([1.0, 10.0, 100.0, 1e4]))
@example(case=dict(anchor=np.array([[1.0, 0.0]]), positive=np.array([[0.6, 0.8]]),
                   negative=np.array([[0.6, -0.8]]), y_anchor=np.array([0.2]),
                   y_positive=np.array([0.2]), y_negative=np.array([0.7]),
                   population=np.array([0.2, 0.7]), normalize=True), s=1e4)
def test_limit_of_adacon_three_sample_loss(case, s):
    """AdaCon App. B, line 1: L_con(s) for one anchor, positive and negative on the sphere equals
    softplus(s h / 2), so 0 <= (2 / s) L_con - max(0, h) <= 2 log(2) / s: the triplet loss is the
    s -> infinity limit of the scaled AdaCon loss."""
    args, kwargs = _args(dict(case, normalize=True))
    loss, _ = triplet.forward(*args, **kwargs, reduction="none")
    population = args[3] if kwargs["population"] is None else kwargs["population"]
    for i in range(len(loss)):
        a, p, n = (z[i] / np.linalg.norm(z[i]) for z in args[:3])
        phi = [naive_ecdf(y[i], population) for y in args[3:]]
        d_ap, d_an = 2 * abs(phi[0] - phi[1]), 2 * abs(phi[0] - phi[2])
        logits = [s * (a @ p + d_ap), s * (a @ n + d_an)]
        top = max(logits)
        l_con = top + math.log(math.fsum(math.exp(v - top) for v in logits)) - logits[0]
        gap = 2 / s * l_con - loss[i]
        assert -1e-9 <= gap <= 2 * math.log(2) / s + 1e-9, (gap, s)


def test_appendix_margin_when_positive_shares_the_anchor_label():
    """y_positive == y_anchor: d_ap = 0 and the margin is App. B's 2 d_an = 4 |phi_a - phi_n|."""
    a, p, n = np.array([[1.0, 0.0]]), np.array([[0.8, 0.6]]), np.array([[0.0, 1.0]])
    population = np.array([0.1, 0.3, 0.5, 0.9])  # phi(0.3) = 0.5, phi(0.9) = 1
    loss, _ = triplet.forward(a, p, n, np.array([0.3]), np.array([0.3]), np.array([0.9]),
                              population=population)
    np.testing.assert_allclose(loss, (0.2**2 + 0.6**2) - 2.0 + 4 * 0.5, rtol=1e-14)
    # the ECDF only sees the order of the labels: integer labels 10 y give the same margins
    as_int, _ = triplet.forward(a, p, n, np.array([3]), np.array([3]), np.array([9]),
                                population=np.array([1, 3, 5, 9]))
    np.testing.assert_array_equal(as_int, loss)


def test_hinge_kink_pinned():
    """At h = 0 exactly the loss is 0 and the subgradient 0 is used; just above, the gradient flows."""
    a, n, y = np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([0.5])
    for p, expect_zero in ((np.array([[1.0, 0.0]]), True), (np.array([[1.0 + 2**-20, 0.0]]), False)):
        loss, cache = triplet.forward(a, p, n, y, y, y, normalize=False)
        da, dp, dn, *rest = triplet.backward(1.0, cache)
        assert rest == [None, None, None]
        if expect_zero:
            assert loss == 0.0
            for g in (da, dp, dn):
                np.testing.assert_array_equal(g, 0.0)
        else:
            assert loss > 0
            np.testing.assert_allclose(dp, -2 * (a - p))
            np.testing.assert_allclose(dn, 2 * (a - n))


ANCHOR = np.array([[1.0, 0.2, -0.3], [0.1, 0.9, 0.4], [-0.5, 0.3, 0.8], [0.6, -0.7, 0.2]])
POSITIVE = np.array([[0.8, 0.4, -0.1], [0.3, 1.1, 0.2], [-0.2, 0.1, 0.9], [0.9, -0.2, 0.5]])
NEGATIVE = np.array([[0.2, 0.9, 0.3], [0.7, -0.4, 0.6], [0.5, 0.6, -0.2], [-0.3, -0.5, 0.9]])
Y_A, Y_P, Y_N = np.array([0.2, 0.5, 0.9, 0.4]), np.array([0.2, 0.4, 0.9, 0.5]), np.array([0.9, 0.2, 0.4, 0.5])


@pytest.mark.parametrize("normalize", [True, False])
def test_every_backend_full_check_and_purity(xpd, normalize):
    reduction = "none"  # the scalar reductions are covered by the hypothesis VJP checks
    hosts = [ANCHOR, POSITIVE, NEGATIVE, Y_A, Y_P, Y_N]
    a, p, n, ya, yp, yn = (xpd.put(x) for x in hosts)
    assert np.all(np.abs(naive_h(*hosts, normalize=normalize)) > 0.05)  # off the kink
    forward = lambda a, p, n: triplet.forward(a, p, n, ya, yp, yn, normalize=normalize,  # noqa: E731
                                              reduction=reduction)
    report = gradcheck.check_gradients(forward, triplet.backward, [a, p, n])
    assert report.ok, str(report)
    loss, cache = forward(a, p, n)
    np.testing.assert_allclose(backend.to_numpy(loss), naive(*hosts, normalize=normalize,
                                                             reduction=reduction), rtol=1e-13)
    dout = xpd.put(np.ones(np.shape(backend.to_numpy(loss))))
    first, second = triplet.backward(dout, cache), triplet.backward(dout, cache)
    assert first[3:] == (None, None, None)
    for g1, g2 in zip(first[:3], second[:3]):
        np.testing.assert_array_equal(backend.to_numpy(g1), backend.to_numpy(g2))
    for got, want in zip((a, p, n, ya, yp, yn), hosts):
        np.testing.assert_array_equal(backend.to_numpy(got), want)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_equals_torch(torch, normalize, reduction):
    gen = np.random.default_rng(2)
    m = 8
    z = [gen.standard_normal((m, 5)) for _ in range(3)]
    ya, yp, yn = (gen.integers(0, 6, m) / 5.0 for _ in range(3))
    population = gen.uniform(0, 1, 12)
    tz = [torch.tensor(x, requires_grad=True) for x in z]
    unit = [torch.nn.functional.normalize(x, dim=1) if normalize else x for x in tz]

    def ecdf(y):
        return (torch.tensor(population)[None, :] <= torch.tensor(y)[:, None]).double().mean(dim=1)

    margin = 2 * (2 * (ecdf(ya) - ecdf(yn)).abs() - 2 * (ecdf(ya) - ecdf(yp)).abs())
    h = ((unit[0] - unit[1]) ** 2).sum(1) - ((unit[0] - unit[2]) ** 2).sum(1) + margin
    want = {"mean": torch.mean, "sum": torch.sum, "none": lambda v: v}[reduction](torch.relu(h))
    dout = gen.standard_normal(tuple(want.shape))
    want.backward(torch.tensor(dout))
    loss, cache = triplet.forward(*z, ya, yp, yn, population=population, normalize=normalize,
                                  reduction=reduction)
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    for got, t in zip(triplet.backward(dout, cache)[:3], tz):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_bad_input_raises_naming_the_argument():
    z, y = ANCHOR, Y_A
    with pytest.raises(ValueError, match="positive must have shape"):
        triplet.forward(z, z[:3], z, y, y, y)
    with pytest.raises(ValueError, match="negative must have shape"):
        triplet.forward(z, z, z[:, :2], y, y, y)
    with pytest.raises(ValueError, match="y_negative has 3 rows"):
        triplet.forward(z, z, z, y, y, y[:3])
    with pytest.raises(ValueError, match="y_positive must have 1 dimensions"):
        triplet.forward(z, z, z, y, y[:, None], y)
    with pytest.raises(ValueError, match="anchor must be finite"):
        triplet.forward(np.where(z > 0.9, np.nan, z), z, z, y, y, y)
    with pytest.raises(ValueError, match="y_anchor must be finite"):
        triplet.forward(z, z, z, np.where(y > 0.8, np.inf, y), y, y)
    with pytest.raises(ValueError, match="population must not be empty"):
        triplet.forward(z, z, z, y, y, y, population=np.zeros(0))
    with pytest.raises(ValueError, match="population must be finite"):
        triplet.forward(z, z, z, y, y, y, population=np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="reduction"):
        triplet.forward(z, z, z, y, y, y, reduction="max")


def test_float32_stays_float32(xpd):
    z32 = [xpd.put(x, dtype="float32") for x in (ANCHOR, POSITIVE, NEGATIVE)]
    labels = [xpd.put(y) for y in (Y_A, Y_P, Y_N)]  # float64 labels: the margin follows the embeddings
    loss, cache = triplet.forward(*z32, *labels, reduction="none")
    assert loss.dtype == xpd.xp.float32
    grads = triplet.backward(xpd.put(np.ones(4), dtype="float32"), cache)[:3]
    assert all(g.dtype == xpd.xp.float32 for g in grads)
    np.testing.assert_allclose(backend.to_numpy(loss), naive(ANCHOR, POSITIVE, NEGATIVE, Y_A, Y_P, Y_N,
                                                             reduction="none"), rtol=1e-5, atol=1e-6)
