"""ConPro margin contrastive loss (Eq. 1-2): refimpl.losses.margin."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import backend
from refimpl.gradcheck import check_gradients, check_vjp
from refimpl.losses import margin as M

import torch_reference
from loss_helpers import assert_naive_matches_fast, matrices

#: half-width of the band around the paper's hinge (d = m) that drawn pairs avoid
KINK_GAP = 0.05


def naive(a, b, same, margin=2.0, variant="paper", reduction="mean", normalize=True):
    """Eq. 1-2 pair by pair in plain Python (paper), or the authors' formula (official)."""
    losses = []
    for x, y, label in zip(a.tolist(), b.tolist(), same.tolist()):
        if normalize:
            nx, ny = math.sqrt(sum(v * v for v in x)), math.sqrt(sum(v * v for v in y))
            x, y = [v / nx for v in x], [v / ny for v in y]
        cos = sum(p * q for p, q in zip(x, y))
        if variant == "paper":
            d = 1.0 - cos
            losses.append(d if label == 1 else max(0.0, margin - d))
        else:
            losses.append((1 - label) * cos ** 2 + label * max(0.0, margin - cos) ** 2)
    if reduction == "none":
        return np.array(losses)
    return sum(losses) / (len(losses) if reduction == "mean" else 1)


def _pairs(t, x, e, margin):
    """Unit pairs ``(x_k, b_k)`` at cosine distance ``t_k`` in [0, 2 - 2 gap], moved off (m - gap, m + gap).

    ``b`` is built from ``x`` and the part of ``e`` orthogonal to it (or, where
    ``e`` is parallel to ``x``, a vector orthogonal to ``x`` in its first two
    coordinates), so every draw is valid by construction.
    """
    d = np.where(t < margin - KINK_GAP, t, t + 2 * KINK_GAP)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    e = e - np.sum(e * x, axis=1, keepdims=True) * x
    perpendicular = np.zeros_like(x)
    perpendicular[:, 0], perpendicular[:, 1] = -x[:, 1], x[:, 0]
    e = np.where(np.linalg.norm(e, axis=1, keepdims=True) < 1e-3, perpendicular, e)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    cos = 1.0 - d
    return x, cos[:, None] * x + np.sqrt(np.clip(1.0 - cos ** 2, 0.0, None))[:, None] * e


def make_pairs(n, dim, margin, seed, normalize=True):
    """Pairs whose cosine distances are drawn in [0, 2] outside (m - gap, m + gap), from a seed."""
    g = np.random.default_rng(seed)
    t = g.uniform(0.0, 2.0 - 2 * KINK_GAP, n)
    x, b = _pairs(t, g.standard_normal((n, dim)), g.standard_normal((n, dim)), margin)
    if normalize:  # raw embeddings of various norms
        x, b = x * g.uniform(0.5, 2.0, (n, 1)), b * g.uniform(0.5, 2.0, (n, 1))
    return x, b, g.integers(0, 2, n)


@st.composite
def cases(draw):
    """Pairs drawn as arrays (distances, two direction matrices, norms, labels), valid by construction."""
    variant = draw(st.sampled_from(["paper", "official"]))
    paper = variant == "paper"
    n, dim = draw(st.integers(1, 5)), draw(st.integers(2, 5))
    return dict(
        t=draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 2.0 - 2 * KINK_GAP))),
        x=draw(matrices(n, dim)), e=draw(matrices(n, dim)),
        norms=draw(hnp.arrays(np.float64, (n, 2), elements=st.floats(0.5, 2.0))),
        same=draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1))),
        margin=draw(st.floats(0.2, 2.0 if paper else 3.0)), variant=variant,
        reduction=draw(st.sampled_from(["mean", "sum", "none"])) if paper else "mean",
        normalize=draw(st.booleans()) if paper else True,
    )


def _split(case):
    a, b = _pairs(case["t"], case["x"], case["e"], case["margin"])
    if case["normalize"]:  # raw embeddings of various norms
        a, b = a * case["norms"][:, :1], b * case["norms"][:, 1:]
    opts = {k: case[k] for k in ("margin", "variant", "reduction", "normalize")}
    return a, b, case["same"], opts


EDGE = dict(t=np.array([1.0]), x=np.array([[1.0, 0.0]]), e=np.array([[0.0, 1.0]]), norms=np.ones((1, 2)),
            same=np.array([0]), margin=2.0, variant="paper", reduction="mean", normalize=True)


@given(cases())
@example(EDGE)
@example(dict(EDGE, variant="official", margin=1.0))
def test_matches_naive_loop(case):
    a, b, same, opts = _split(case)
    loss, _ = M.forward(a, b, same, **opts)
    np.testing.assert_allclose(loss, naive(a, b, same, **opts), rtol=1e-12, atol=1e-14)


@given(cases())
def test_gradient_vjp(case):
    a, b, same, opts = _split(case)
    check_vjp(lambda a, b: M.forward(a, b, same, **opts), M.backward, [a, b]).raise_if_failed()


@pytest.mark.parametrize("variant,reduction,normalize", [
    ("paper", "mean", True), ("paper", "sum", False), ("paper", "none", True), ("official", "mean", True)])
def test_full_gradient_check(variant, reduction, normalize):
    a, b, same = make_pairs(4, 3, 1.2, seed=7, normalize=normalize)
    same[:2] = [0, 1]
    opts = dict(margin=1.2, variant=variant, reduction=reduction, normalize=normalize)
    report = check_gradients(lambda a, b: M.forward(a, b, same, **opts), M.backward, [a, b])
    report.raise_if_failed()


def test_hinge_kink_takes_slope_zero():
    """Paper, m = 1, orthogonal negative pair: d = m exactly; subgradient 0 (relu'(0) = 0)."""
    a, b, same = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([0])
    loss, cache = M.forward(a, b, same, margin=1.0)
    da, db = M.backward(1.0, cache)
    assert float(loss) == 0.0 and not np.any(da) and not np.any(db)
    # a real kink: moving b towards a (d < m) costs linearly, moving it away is free
    h = 1e-4
    closer = float(M.forward(a, b + [[h, 0.0]], same, margin=1.0)[0])
    further = float(M.forward(a, b - [[h, 0.0]], same, margin=1.0)[0])
    assert closer == pytest.approx(h, rel=1e-3) and further == 0.0


@pytest.mark.parametrize("variant,margin,same", [("paper", 2.0, 1), ("official", 1.0, 1)])
def test_identical_pair_has_zero_gradient(variant, margin, same):
    """a = b (different norms): d = 0, the cosine is stationary, no kink; loss and gradient 0."""
    a = np.array([[0.3, -1.2, 0.5]])
    loss, cache = M.forward(a, 2.5 * a, np.array([same]), margin=margin, variant=variant)
    da, db = M.backward(1.0, cache)
    assert float(loss) == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(np.concatenate([da, db]), 0.0, atol=1e-15)


def test_zero_row_gives_finite_values():
    a, b = np.array([[0.0, 0.0], [1.0, 2.0]]), np.array([[1.0, 1.0], [2.0, 1.0]])
    loss, cache = M.forward(a, b, np.array([1, 0]))
    assert np.isfinite(float(loss)) and all(np.all(np.isfinite(g)) for g in M.backward(1.0, cache))


def test_official_quirks_pinned():
    """Official: y = same; negatives pushed to orthogonal (not opposite); positives to s = 2."""
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = np.array([[-1.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    same = np.array([0, 0, 1])
    per = [float(M.forward(a[k:k + 1], b[k:k + 1], same[k:k + 1], variant="official")[0]) for k in range(3)]
    assert per == pytest.approx([1.0, 0.0, 1.0])  # opposite negative 1, orthogonal 0, identical (2 - 1)^2
    paper = M.forward(a, b, same, reduction="none")[0]
    np.testing.assert_allclose(paper, [0.0, 1.0, 0.0])  # paper, m = 2: opposite negative costs 0


@given(cases(), st.floats(0.1, 10.0), st.integers(0, 2 ** 32 - 1))
def test_invariances(case, scale, seed):
    """Permuting pairs permutes losses and gradients; rotations and (normalised) scales change nothing."""
    a, b, same, opts = _split(case)
    opts["reduction"] = "none" if opts["variant"] == "paper" else "mean"
    loss, cache = M.forward(a, b, same, **opts)
    dout = np.random.default_rng(seed).standard_normal(np.shape(loss))
    da, db = M.backward(dout, cache)
    g = np.random.default_rng(seed)
    perm = g.permutation(len(a))
    if opts["reduction"] == "none":
        loss_p, cache_p = M.forward(a[perm], b[perm], same[perm], **opts)
        np.testing.assert_allclose(loss_p, loss[perm], rtol=1e-12, atol=1e-14)
        for got, want in zip(M.backward(dout[perm], cache_p), (da, db)):
            np.testing.assert_allclose(got, want[perm], rtol=1e-10, atol=1e-12)
    q, _ = np.linalg.qr(g.standard_normal((a.shape[1], a.shape[1])))
    loss_q, cache_q = M.forward(a @ q, b @ q, same, **opts)
    np.testing.assert_allclose(loss_q, loss, rtol=1e-10, atol=1e-12)
    for got, want in zip(M.backward(dout, cache_q), (da, db)):
        np.testing.assert_allclose(got, want @ q, rtol=1e-9, atol=1e-11)
    if opts["normalize"]:
        np.testing.assert_allclose(M.forward(scale * a, b / scale, same, **opts)[0], loss,
                                   rtol=1e-10, atol=1e-12)


def test_orderings():
    """Paper: a positive costs more the further apart; a negative less, until the margin."""
    a = np.array([[1.0, 0.0]])
    angles = np.linspace(0.1, 3.0, 12)
    pos, neg = [], []
    for t in angles:
        b = np.array([[np.cos(t), np.sin(t)]])
        pos.append(float(M.forward(a, b, np.array([1]))[0]))
        neg.append(float(M.forward(a, b, np.array([0]), margin=1.0)[0]))
    assert np.all(np.diff(pos) > 0)
    d = 1 - np.cos(angles)
    assert np.all(np.diff(np.array(neg)[d < 1]) < 0) and not np.any(np.array(neg)[d >= 1])


def test_inputs_not_mutated_and_backward_repeatable():
    a, b, same = make_pairs(3, 4, 2.0, seed=3)
    copies = [x.copy() for x in (a, b, same)]
    loss, cache = M.forward(a, b, same, reduction="none")
    first = M.backward(np.ones(3), cache)
    second = M.backward(np.ones(3), cache)
    for x, c in zip((a, b, same), copies):
        np.testing.assert_array_equal(x, c)
    for g1, g2 in zip(first, second):
        np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("variant,reduction", [("paper", "mean"), ("paper", "sum"), ("paper", "none"),
                                               ("official", "mean")])
def test_backends_agree(xpd, variant, reduction):
    a, b, same = make_pairs(4, 3, 1.5, seed=11)
    opts = dict(margin=1.5, variant=variant, reduction=reduction)
    want, cache = M.forward(a, b, same, **opts)
    dout = np.linspace(-1.0, 2.0, 4) if reduction == "none" else 0.7
    want_grads = M.backward(dout, cache)
    loss, cache = M.forward(xpd.put(a), xpd.put(b), xpd.put(same), **opts)
    douts = [xpd.put(dout)] if reduction == "none" else [0.7, xpd.put(np.asarray(0.7))]
    for d in douts:
        grads = M.backward(d, cache)
        for got, w in zip(grads, want_grads):
            np.testing.assert_allclose(backend.to_numpy(got), w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(loss), want, rtol=1e-12)
    bool_same = xpd.put(same.astype(bool))
    np.testing.assert_allclose(backend.to_numpy(M.forward(xpd.put(a), xpd.put(b), bool_same, **opts)[0]), want)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_float32_matches_float64(variant):
    a, b, same = make_pairs(16, 8, 1.0, seed=5)
    opts = dict(margin=1.0, variant=variant)
    l64, c64 = M.forward(a, b, same, **opts)
    l32, c32 = M.forward(a.astype(np.float32), b.astype(np.float32), same, **opts)
    assert l32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-4)
    for g32, g64 in zip(M.backward(np.float32(1.0), c32), M.backward(1.0, c64)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


GOOD = dict(a=np.ones((2, 3)), b=np.ones((2, 3)), same=np.array([0, 1]))


@pytest.mark.parametrize("change,opts,error,match", [
    (dict(b=np.ones((3, 3))), {}, ValueError, "b must have shape"),
    (dict(b=np.ones((2, 4))), {}, ValueError, "b must have shape"),
    (dict(same=np.array([0, 1, 1])), {}, ValueError, "same has 3 rows"),
    (dict(a=np.ones(3)), {}, ValueError, "a must have 2 dimensions"),
    (dict(a=np.ones((0, 3)), b=np.ones((0, 3)), same=np.zeros(0)), {}, ValueError, "a must not be empty"),
    (dict(a=np.array([[np.nan, 1, 1], [1, 1, 1]])), {}, ValueError, "a must be finite"),
    (dict(b=np.array([[np.inf, 1, 1], [1, 1, 1]])), {}, ValueError, "b must be finite"),
    (dict(same=np.array([0, 2])), {}, ValueError, "same must hold only 0 or 1"),
    (dict(same=np.array([0.5, 1.0])), {}, ValueError, "same must hold only 0 or 1"),
    (dict(same=np.array([0.0, np.nan])), {}, ValueError, "same must be finite"),
    (dict(a=np.ones((2, 3), dtype=int)), {}, TypeError, "a must have a real floating dtype"),
    ({}, dict(margin=0.0), ValueError, "margin must be a finite number > 0"),
    ({}, dict(margin=-1.0), ValueError, "margin must be a finite number > 0"),
    ({}, dict(margin=2.5), ValueError, r"margin must lie in \(0, 2\]"),
    ({}, dict(reduction="max"), ValueError, "reduction must be one of"),
    ({}, dict(variant="code"), ValueError, "variant must be one of"),
    ({}, dict(variant="official", reduction="sum"), ValueError, "reduction must be 'mean'"),
    ({}, dict(variant="official", normalize=False), ValueError, "normalize must be True"),
    ({}, dict(variant="official", margin=0.0), ValueError, "margin must be"),
])
def test_bad_input_raises(change, opts, error, match):
    with pytest.raises(error, match=match):
        M.forward(**dict(GOOD, **change), **opts)


def test_official_accepts_margin_above_two():
    assert np.isfinite(float(M.forward(**GOOD, margin=3.0, variant="official")[0]))


@pytest.mark.torch
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cases())
def test_equals_torch_autograd(torch, case):
    a, b, same, opts = _split(case)
    ta, tb = (torch.tensor(x, requires_grad=True) for x in (a, b))
    t_loss = torch_reference.margin(torch, ta, tb, torch.tensor(same), **opts)
    dout = np.linspace(0.5, 1.5, len(a)) if opts["reduction"] == "none" else np.asarray(1.3)
    t_loss.backward(torch.tensor(dout))
    loss, cache = M.forward(a, b, same, **opts)
    np.testing.assert_allclose(loss, t_loss.detach().numpy(), rtol=1e-10, atol=1e-12)
    for got, t in zip(M.backward(dout, cache), (ta, tb)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- teaching form


@st.composite
def pair_arrays(draw):
    n = draw(st.integers(1, 5))
    dim = st.integers(2, 5)
    a = draw(matrices(n, dim))
    b = draw(matrices(n, a.shape[1]))
    same = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    return a, b, same


@given(pair_arrays(), st.floats(0.2, 2.0), st.sampled_from(["mean", "sum", "none"]), st.booleans())
@example((np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([0])), 1.0, "mean", True)  # d = m
@example((np.zeros((1, 2)), np.ones((1, 2)), np.array([1])), 2.0, "none", True)  # a zero row
def test_naive_form_equals_fast_form(arrays, margin, reduction, normalize):
    assert_naive_matches_fast(M, arrays, dict(margin=margin, reduction=reduction, normalize=normalize))


@given(cases().filter(lambda case: case["variant"] == "paper"))
def test_naive_form_gradient_vjp(case):
    a, b, same, opts = _split(case)
    check_vjp(lambda a, b: M.forward_naive(a, b, same, **opts), M.backward_naive, [a, b]).raise_if_failed()


def test_naive_form_refuses_the_official_variant():
    a, b, same = make_pairs(2, 3, 1.0, seed=0)
    with pytest.raises(ValueError, match="variant must be 'paper' for the teaching form"):
        M.forward_naive(a, b, same, variant="official")
