"""ConPro Bradley-Terry preference loss (Eq. 3-4): refimpl.losses.preference."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import backend
from refimpl.gradcheck import check_gradients, check_vjp
from refimpl.losses import preference as P

import torch_reference
from loss_helpers import ELEMENTS, assert_naive_matches_fast, matrices


def _unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def naive(u_i, u_j, refs, prefer_i, variant="paper", reduction="mean", normalize=True):
    """Eq. 3-4 pair by pair in plain Python (paper), or what the authors' code computes (official)."""
    n, paper = len(u_i), variant == "paper"
    values = []
    for k in range(n):
        members = (refs if refs.ndim == 2 else refs[k]).tolist()
        anchor = [sum(col) / len(members) for col in zip(*members)]
        sims = []
        for u in (u_i[k].tolist(), u_j[k].tolist()):
            if normalize:
                u, a = _unit(u), _unit(anchor)
            else:
                a = anchor
            sims.append(sum(x * y for x, y in zip(u, a)))
        if paper:
            r_i, r_j = 1 - sims[0], 1 - sims[1]  # reward: cosine distance to the anchor
            p = float(prefer_i[k])
            values.append(-(p * _log_sigmoid(r_i - r_j) + (1 - p) * _log_sigmoid(r_j - r_i)))
        else:
            values.append(1 / (1 + math.exp(-(sims[0] - sims[1]))))  # sigmoid of the similarity gap
    if not paper:
        return -values[int(prefer_i[0])]  # NLLLoss on a 1-D input reads element label[0]
    if reduction == "none":
        return np.array(values)
    return sum(values) / (n if reduction == "mean" else 1)


def make_inputs(n, dim, n_refs, shared, seed, variant="paper", scale=1.0):
    g = np.random.default_rng(seed)
    u_i, u_j = scale * g.standard_normal((n, dim)), scale * g.standard_normal((n, dim))
    refs = g.standard_normal((n_refs, dim) if shared else (n, n_refs, dim)) + 0.5
    if variant == "paper":
        prefer = g.uniform(0.0, 1.0, n)
    else:
        prefer = g.integers(0, 2, n).astype(float)
        prefer[0] = prefer[0] if n > 1 else 0.0  # label 1 reads pair 1, which N = 1 lacks
    return u_i, u_j, refs, prefer


def _references(draw, shape):
    """References drawn as an array, first coordinate in [0.25, 2.25]: their mean (the anchor) is
    off the zero-norm kink of the normalisation by construction."""
    refs = draw(matrices(int(np.prod(shape[:-1])), shape[-1])).reshape(shape)
    refs[..., 0] = np.abs(refs[..., 0])
    return refs


@st.composite
def cases(draw):
    """Pairs, references and preferences drawn as arrays."""
    variant = draw(st.sampled_from(["paper", "official"]))
    paper = variant == "paper"
    n, dim, n_refs = draw(st.integers(1, 5)), draw(st.integers(2, 5)), draw(st.integers(1, 4))
    shared = draw(st.booleans())
    if paper:
        prefer = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    else:
        prefer = draw(hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 1.0])))
        prefer[0] = prefer[0] if n > 1 else 0.0  # label 1 reads pair 1, which N = 1 lacks
    return dict(
        u_i=draw(matrices(n, dim)), u_j=draw(matrices(n, dim)),
        refs=_references(draw, (n_refs, dim) if shared else (n, n_refs, dim)), prefer=prefer, variant=variant,
        reduction=draw(st.sampled_from(["mean", "sum", "none"])) if paper else "mean",
        normalize=draw(st.booleans()) if paper else True,
    )


def _split(case):
    args = tuple(case[k] for k in ("u_i", "u_j", "refs", "prefer"))
    return args, {k: case[k] for k in ("variant", "reduction", "normalize")}


EDGE = dict(u_i=np.array([[1.0, 0.0]]), u_j=np.array([[0.0, 1.0]]), refs=np.array([[1.0, 0.5]]),
            prefer=np.array([0.0]), variant="paper", reduction="mean", normalize=True)


@given(cases())
@example(EDGE)
@example(dict(EDGE, variant="official", refs=np.array([[[1.0, 0.5]]])))
def test_matches_naive_loop(case):
    args, opts = _split(case)
    loss, _ = P.forward(*args, **opts)
    np.testing.assert_allclose(loss, naive(*args, **opts), rtol=1e-12, atol=1e-14)


@given(cases())
def test_gradient_vjp(case):
    (u_i, u_j, refs, prefer), opts = _split(case)
    check_vjp(lambda u_i, u_j, refs: P.forward(u_i, u_j, refs, prefer, **opts), P.backward,
              [u_i, u_j, refs]).raise_if_failed()


@pytest.mark.parametrize("variant,reduction,normalize,shared", [
    ("paper", "mean", True, True), ("paper", "none", True, False), ("paper", "sum", False, True),
    ("official", "mean", True, True), ("official", "mean", True, False)])
def test_full_gradient_check(variant, reduction, normalize, shared):
    u_i, u_j, refs, prefer = make_inputs(3, 3, 2, shared, seed=4, variant=variant)
    prefer[0] = 1.0  # official: the loss reads pair 1
    opts = dict(variant=variant, reduction=reduction, normalize=normalize)
    report = check_gradients(lambda u_i, u_j, refs: P.forward(u_i, u_j, refs, prefer, **opts),
                             P.backward, [u_i, u_j, refs])
    report.raise_if_failed()


def _severity_embeddings(n_levels, dim, seed):
    """Samples at angle 0.25 + 0.5 s from the normal direction e_0 (severity s), references near e_0."""
    g = np.random.default_rng(seed)
    q, _ = np.linalg.qr(g.standard_normal((dim, dim)))
    angles = 0.25 + 0.5 * np.arange(n_levels)
    samples = np.zeros((n_levels, dim))
    samples[:, 0], samples[:, 1] = np.cos(angles), np.sin(angles)
    refs = np.zeros((3, dim))
    refs[:, 0], refs[:, 2] = 1.0, [-0.1, 0.0, 0.1]
    return samples @ q * g.uniform(0.5, 2.0, (n_levels, 1)), refs @ q


@given(st.floats(0.0, 1.2), st.floats(0.05, 1.5), st.floats(0.55, 1.0), st.floats(0.5, 2.0))
def test_preferred_order_has_lower_loss(base, step, p, norm):
    """Bradley-Terry: a pair ordered as preferred (i more severe) costs less than reversed."""
    refs = np.array([[1.0, 0.0, 0.0]])
    near = np.array([[math.cos(base), math.sin(base), 0.0]])
    far = norm * np.array([[math.cos(base + step), math.sin(base + step), 0.0]])  # larger distance
    ordered, _ = P.forward(far, near, refs, np.array([p]))
    reversed_, _ = P.forward(near, far, refs, np.array([p]))
    assert float(ordered) < float(reversed_)


@pytest.mark.parametrize("n_levels", [4, 5])
def test_true_order_minimises_summed_loss(n_levels):
    """Among all orderings of the severity labels, the true one gives the lowest loss."""
    samples, refs = _severity_embeddings(n_levels, 6, seed=n_levels)
    pairs = list(itertools.combinations(range(n_levels), 2))
    u_i, u_j = samples[[k for k, _ in pairs]], samples[[l for _, l in pairs]]

    def total(order):
        prefer = np.array([float(order[k] > order[l]) for k, l in pairs])
        return float(P.forward(u_i, u_j, refs, prefer, reduction="sum")[0])

    truth = total(tuple(range(n_levels)))
    others = [total(p) for p in itertools.permutations(range(n_levels)) if p != tuple(range(n_levels))]
    assert truth < min(others)


def test_large_reward_gaps_stay_finite_and_exact():
    """normalize=False: rewards unbounded; the softplus form neither overflows nor loses the value."""
    anchor = np.array([[1.0, 0.0]])
    u_far, u_near = np.array([[-1e6, 0.0], [1e6, 0.0]]), np.array([[1e6, 0.0], [-1e6, 0.0]])
    loss, cache = P.forward(u_far, u_near, anchor, np.array([0.0, 1.0]), reduction="none", normalize=False)
    np.testing.assert_allclose(loss, [2e6, 2e6], rtol=1e-15)  # -log sigma(-2e6) = 2e6, both pairs wrong
    for g in P.backward(np.ones(2), cache):
        assert np.all(np.isfinite(g))
    loss, cache = P.forward(u_far, u_near, anchor, np.array([1.0, 0.0]), reduction="none", normalize=False)
    assert np.all(loss == 0.0)
    assert all(np.all(g == 0.0) for g in P.backward(np.ones(2), cache))
    # well-ordered pair, gap 40: log1p keeps the tiny loss e^-40 that log(1 + e^-40) rounds to 0
    loss, _ = P.forward(np.array([[-20.0, 0.0]]), np.array([[20.0, 0.0]]), anchor, np.array([1.0]),
                        normalize=False)
    assert float(loss) == pytest.approx(math.exp(-40.0), rel=1e-12, abs=0.0)


@given(cases(), st.floats(0.1, 10.0), st.integers(0, 2 ** 32 - 1))
def test_invariances(case, scale, seed):
    """Permuting pairs permutes losses and gradients; rotations and (normalised) scales change nothing."""
    (u_i, u_j, refs, prefer), opts = _split(case)
    loss, cache = P.forward(u_i, u_j, refs, prefer, **opts)
    g = np.random.default_rng(seed)
    dout = g.standard_normal(np.shape(loss))
    grads = P.backward(dout, cache)
    if opts["reduction"] == "none":  # official reads pair label_0: not permutation-equivariant
        perm = g.permutation(len(u_i))
        per_pair = refs.ndim == 3
        loss_p, cache_p = P.forward(u_i[perm], u_j[perm], refs[perm] if per_pair else refs, prefer[perm], **opts)
        np.testing.assert_allclose(loss_p, loss[perm], rtol=1e-12, atol=1e-14)
        du_i, du_j, drefs = P.backward(dout[perm], cache_p)
        np.testing.assert_allclose(du_i, grads[0][perm], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(du_j, grads[1][perm], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(drefs, grads[2][perm] if per_pair else grads[2], rtol=1e-10, atol=1e-12)
    q, _ = np.linalg.qr(g.standard_normal((u_i.shape[1],) * 2))
    loss_q, cache_q = P.forward(u_i @ q, u_j @ q, refs @ q, prefer, **opts)
    np.testing.assert_allclose(loss_q, loss, rtol=1e-10, atol=1e-12)
    for got, want in zip(P.backward(dout, cache_q), grads):
        np.testing.assert_allclose(got, want @ q, rtol=1e-9, atol=1e-11)
    if opts["normalize"]:
        scaled, _ = P.forward(scale * u_i, u_j / scale, scale * refs, prefer, **opts)
        np.testing.assert_allclose(scaled, loss, rtol=1e-10, atol=1e-12)


def test_anchor_is_the_plain_mean_of_the_references():
    """Both variants: the anchor is the raw mean (ConPro Sec. 4), so refs can be replaced by it,
    a longer reference pulls the anchor its way, and scaling all references changes nothing."""
    u_i, u_j, refs, prefer = make_inputs(3, 4, 3, True, seed=2, variant="official")
    stretched = refs * np.array([[10.0], [1.0], [1.0]])  # one reference 10x longer
    for variant in ("paper", "official"):
        loss = lambda r: float(P.forward(u_i, u_j, r, prefer, variant=variant)[0])  # noqa: E731
        assert loss(refs.mean(axis=0, keepdims=True)) == pytest.approx(loss(refs), rel=1e-12)
        assert loss(stretched.mean(axis=0, keepdims=True)) == pytest.approx(loss(stretched), rel=1e-12)
        assert abs(loss(stretched) - loss(refs)) > 1e-3
        assert loss(7.0 * refs) == pytest.approx(loss(refs), rel=1e-12)


def test_shared_refs_equal_tiled_per_pair_refs():
    u_i, u_j, refs, prefer = make_inputs(4, 3, 2, True, seed=9)
    tiled = np.broadcast_to(refs, (4,) + refs.shape).copy()
    for variant in ("paper", "official"):
        p = prefer.round() if variant == "official" else prefer
        loss_s, cache_s = P.forward(u_i, u_j, refs, p, variant=variant)
        loss_t, cache_t = P.forward(u_i, u_j, tiled, p, variant=variant)
        np.testing.assert_allclose(loss_t, loss_s, rtol=1e-13)
        grads_s, grads_t = P.backward(1.0, cache_s), P.backward(1.0, cache_t)
        np.testing.assert_allclose(grads_t[0], grads_s[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(grads_t[2].sum(axis=0), grads_s[2], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("label0", [0.0, 1.0])
def test_official_reads_one_element(label0):
    """Official: -sigmoid(s_i - s_j)[label_0]; the other pairs and labels do not matter."""
    u_i, u_j, refs, _ = make_inputs(4, 3, 2, True, seed=1, variant="official")
    prefer = np.array([label0, 1.0, 0.0, 1.0])
    loss, cache = P.forward(u_i, u_j, refs, prefer, variant="official")
    k = int(label0)
    anchor = refs.mean(axis=0)
    cos = lambda u: u @ anchor / np.linalg.norm(u, axis=1) / np.linalg.norm(anchor)  # noqa: E731
    assert float(loss) == pytest.approx(-1 / (1 + np.exp(cos(u_j)[k] - cos(u_i)[k])), rel=1e-12)
    assert -1.0 < float(loss) < 0.0
    du_i, du_j, _ = P.backward(1.0, cache)
    others = [r for r in range(4) if r != k]
    assert not np.any(du_i[others]) and not np.any(du_j[others]) and np.any(du_i[k])
    flipped = prefer.copy()
    flipped[1:] = 1 - flipped[1:]
    assert float(P.forward(u_i, u_j, refs, flipped, variant="official")[0]) == float(loss)


def test_inputs_not_mutated_and_backward_repeatable():
    args = make_inputs(3, 4, 2, False, seed=3)
    copies = [x.copy() for x in args]
    _, cache = P.forward(*args, reduction="none")
    first, second = P.backward(np.ones(3), cache), P.backward(np.ones(3), cache)
    for x, c in zip(args, copies):
        np.testing.assert_array_equal(x, c)
    for g1, g2 in zip(first, second):
        np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("variant,reduction,shared", [
    ("paper", "mean", True), ("paper", "sum", False), ("paper", "none", True), ("official", "mean", False)])
def test_backends_agree(xpd, variant, reduction, shared):
    args = make_inputs(4, 3, 2, shared, seed=12, variant=variant)
    opts = dict(variant=variant, reduction=reduction)
    want, cache = P.forward(*args, **opts)
    dout = np.linspace(-1.0, 2.0, 4) if reduction == "none" else 0.7
    want_grads = P.backward(dout, cache)
    loss, cache = P.forward(*(xpd.put(x) for x in args), **opts)
    np.testing.assert_allclose(backend.to_numpy(loss), want, rtol=1e-12)
    douts = [xpd.put(dout)] if reduction == "none" else [0.7, xpd.put(np.asarray(0.7))]
    for d in douts:
        for got, w in zip(P.backward(d, cache), want_grads):
            np.testing.assert_allclose(backend.to_numpy(got), w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("label_dtype", ["bool", "int64"])
def test_hard_labels_of_any_dtype(xpd, n, label_dtype):
    """Bool and integer labels give the float result, for N = 1 too (official reads pair 0)."""
    u_i, u_j, refs, _ = make_inputs(n, 3, 2, True, seed=5)
    labels = np.array([0, 1, 1][:n])
    inputs = [xpd.put(x) for x in (u_i, u_j, refs)]
    for variant in ("paper", "official"):
        want, want_cache = P.forward(u_i, u_j, refs, labels.astype(float), variant=variant)
        loss, cache = P.forward(*inputs, xpd.put(labels.astype(label_dtype)), variant=variant)
        np.testing.assert_allclose(backend.to_numpy(loss), want, rtol=1e-13)
        for got, w in zip(P.backward(1.0, cache), P.backward(1.0, want_cache)):
            np.testing.assert_allclose(backend.to_numpy(got), w, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("variant,shared", [("paper", True), ("paper", False), ("official", True)])
def test_float32_matches_float64(variant, shared):
    args = make_inputs(16, 8, 5, shared, seed=6, variant=variant)
    l64, c64 = P.forward(*args, variant=variant)
    l32, c32 = P.forward(*(x.astype(np.float32) for x in args), variant=variant)
    assert l32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-4)
    for g32, g64 in zip(P.backward(1.0, c32), P.backward(1.0, c64)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


GOOD = dict(u_i=np.ones((2, 3)), u_j=np.ones((2, 3)), refs=np.ones((4, 3)), prefer_i=np.array([0.0, 1.0]))


@pytest.mark.parametrize("change,opts,error,match", [
    (dict(u_j=np.ones((3, 3))), {}, ValueError, "u_j must have shape"),
    (dict(u_i=np.ones(3)), {}, ValueError, "u_i must have 2 dimensions"),
    (dict(prefer_i=np.array([0.0, 1.0, 1.0])), {}, ValueError, "prefer_i has 3 rows"),
    (dict(refs=np.ones(3)), {}, ValueError, "refs must have 2 dimensions"),
    (dict(refs=np.ones((2, 1, 4, 3))), {}, ValueError, "refs must have 2 dimensions"),
    (dict(refs=np.ones((4, 2))), {}, ValueError, "refs must have shape"),
    (dict(refs=np.ones((3, 4, 3))), {}, ValueError, "refs must have shape"),
    (dict(refs=np.ones((0, 3))), {}, ValueError, "refs must not be empty"),
    (dict(u_i=np.array([[np.nan, 1, 1], [1, 1, 1]])), {}, ValueError, "u_i must be finite"),
    (dict(refs=np.full((4, 3), np.inf)), {}, ValueError, "refs must be finite"),
    (dict(prefer_i=np.array([-0.1, 1.0])), {}, ValueError, r"prefer_i must hold values in \[0, 1\]"),
    (dict(prefer_i=np.array([0.5, 1.5])), {}, ValueError, r"prefer_i must hold values in \[0, 1\]"),
    (dict(prefer_i=np.array([np.nan, 1.0])), {}, ValueError, "prefer_i must be finite"),
    ({}, dict(reduction="avg"), ValueError, "reduction must be one of"),
    ({}, dict(variant="code"), ValueError, "variant must be one of"),
    (dict(prefer_i=np.array([0.5, 1.0])), dict(variant="official"), ValueError, "prefer_i must hold only 0 or 1"),
    ({}, dict(variant="official", reduction="none"), ValueError, "reduction must be 'mean'"),
    ({}, dict(variant="official", normalize=False), ValueError, "normalize must be True"),
    (dict(u_i=np.ones((1, 3)), u_j=np.ones((1, 3)), prefer_i=np.array([1.0])), dict(variant="official"),
     ValueError, "prefer_i"),
])
def test_bad_input_raises(change, opts, error, match):
    with pytest.raises(error, match=match):
        P.forward(**dict(GOOD, **change), **opts)


@pytest.mark.torch
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cases())
def test_equals_torch_autograd(torch, case):
    args, opts = _split(case)
    leaves = [torch.tensor(x, requires_grad=True) for x in args[:3]]
    t_loss = torch_reference.preference(torch, *leaves, torch.tensor(args[3]), **opts)
    dout = np.linspace(0.5, 1.5, len(args[0])) if opts["reduction"] == "none" else np.asarray(1.3)
    t_loss.backward(torch.tensor(dout))
    loss, cache = P.forward(*args, **opts)
    np.testing.assert_allclose(loss, t_loss.detach().numpy(), rtol=1e-10, atol=1e-12)
    for got, t in zip(P.backward(dout, cache), leaves):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- teaching form


@st.composite
def preference_arrays(draw):
    n, dim = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    refs_shape = (draw(st.integers(1, 3)), dim) if draw(st.booleans()) else (n, draw(st.integers(1, 3)), dim)
    prefer = hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0))
    return (draw(matrices(n, dim)), draw(matrices(n, dim)),
            draw(hnp.arrays(np.float64, refs_shape, elements=ELEMENTS)), draw(prefer))


@given(preference_arrays(), st.sampled_from(["mean", "sum", "none"]), st.booleans())
@example((np.ones((1, 2)), np.zeros((1, 2)), np.ones((1, 2)), np.array([0.5])), "mean", True)  # a zero row
def test_naive_form_equals_fast_form(arrays, reduction, normalize):
    assert_naive_matches_fast(P, arrays, dict(reduction=reduction, normalize=normalize))


@given(cases().filter(lambda case: case["variant"] == "paper"))
def test_naive_form_gradient_vjp(case):
    (u_i, u_j, refs, prefer), opts = _split(case)
    check_vjp(lambda u_i, u_j, refs: P.forward_naive(u_i, u_j, refs, prefer, **opts), P.backward_naive,
              [u_i, u_j, refs]).raise_if_failed()


def test_naive_form_refuses_the_official_variant():
    u_i, u_j, refs, prefer = make_inputs(2, 3, 1, True, seed=0, variant="official")
    with pytest.raises(ValueError, match="variant must be 'paper' for the teaching form"):
        P.forward_naive(u_i, u_j, refs, prefer, variant="official")
