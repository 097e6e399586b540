"""AdaCon adaptive-margin loss: naive per-anchor loops, gradients, invariances, backends, torch."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import backend
from refimpl.gradcheck import check_gradients, check_vjp
from refimpl.losses import adacon

import torch_reference
from loss_helpers import assert_naive_matches_fast, embeddings, matrices

# ----------------------------------------------------------------------------------------------
# Naive oracles, written straight from the equations with Python loops and floats.


def naive_ecdf(y, population, bucket, kind):
    """Eq. 5 (paper, <=) or the authors' mid-rank, one label at a time."""
    key = (lambda v: float(v)) if bucket is None else (lambda v: float(v) // bucket)
    pop = [key(v) for v in population]
    out = []
    for v in y:
        b = key(v)
        below = sum(1 for p in pop if p < b)
        equal = sum(1 for p in pop if p == b)
        out.append((below + equal) / len(pop) if kind == "paper" else (below + equal / 2) / len(pop))
    return out


def naive_losses(z, y, scale, population=None, bucket=None, variant="paper", normalize=True):
    """Per-anchor AdaCon losses, Eq. 6 / Eq. 14 (official: the authors' margin arithmetic)."""
    z = np.asarray(z, dtype=np.float64)
    rows = [list(r / np.linalg.norm(r)) if normalize else list(r) for r in z]
    y = [float(v) for v in y]
    pop = y if population is None else [float(v) for v in population]
    if variant == "official" and bucket is None:
        bucket = 0.05
    key = (lambda v: v) if bucket is None else (lambda v: v // bucket)
    F = naive_ecdf(y, pop, bucket, variant)
    n = len(pop)

    def cos(i, a):
        return sum(p * q for p, q in zip(rows[i], rows[a]))

    def d(i, a):
        if variant == "official":  # clamp(|c_i - c_a| * 2 / N_train, 0, 2) on counts c = n F
            return min(max(abs(F[i] * n - F[a] * n) * (2 / n), 0.0), 2.0)
        return 2 * abs(F[i] - F[a])

    losses = []
    for i in range(len(rows)):
        positives = [p for p in range(len(rows)) if p != i and key(y[p]) == key(y[i])]
        if not positives:
            losses.append(0.0)
            continue
        denom = sum(math.exp(scale * (cos(i, a) + d(i, a))) for a in range(len(rows)) if a != i)
        losses.append(-sum(math.log(math.exp(scale * cos(i, p)) / denom) for p in positives)
                      / len(positives))
    return np.array(losses)


def naive_supcon(z, y, scale):
    """SupCon (AdaCon Eq. 1) per anchor, without any margin."""
    zn = [r / np.linalg.norm(r) for r in np.asarray(z, dtype=np.float64)]
    out = []
    for i in range(len(zn)):
        positives = [p for p in range(len(zn)) if p != i and y[p] == y[i]]
        if not positives:
            out.append(0.0)
            continue
        denom = sum(math.exp(scale * float(zn[i] @ zn[a])) for a in range(len(zn)) if a != i)
        out.append(-sum(scale * float(zn[i] @ zn[p]) - math.log(denom) for p in positives)
                   / len(positives))
    return np.array(out)


# ----------------------------------------------------------------------------------------------
# Strategies: valid by construction (row norms in [0.5, 2], labels with ties and singletons).


def _rows(gen, m, d):
    u = gen.standard_normal((m, d))
    return u / np.linalg.norm(u, axis=1, keepdims=True) * gen.uniform(0.5, 2.0, (m, 1))


ON_GRID = st.integers(0, 19).map(lambda k: round(k * 0.05, 2))  # bucket edges of floor_divide
#: labels in [0, 1] on a 1e-3 grid: distinct labels stay distinct under any increasing map tested
OFF_GRID = st.integers(0, 1000).map(lambda k: k / 1000)


@st.composite
def batches(draw, official=False, max_samples=8):
    """Labels from a few levels (ties and singletons), drawn as arrays; official: two views."""
    n = draw(st.integers(1 if official else 2, max_samples))
    n_levels = draw(st.integers(1, n))
    levels = draw(hnp.arrays(np.float64, n_levels, elements=ON_GRID | OFF_GRID))
    y = levels[draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_levels - 1)))]
    if official:
        y = np.concatenate([y, y])  # view-major: the second view repeats the labels
    z = draw(embeddings(y.shape[0], st.integers(2, 4)))
    return z, y, draw(st.floats(0.5, 20.0))


def _fwd(y, **kw):
    return lambda z: adacon.forward(z, y, **kw)


# ----------------------------------------------------------------------------------------------
# ECDF


def test_floor_divide_edges_pinned():
    assert 0.15 // 0.05 == 2.0  # numpy.floor_divide / Python //, not the decimal 3
    assert 0.25 // 0.05 == 4.0 and math.floor(0.25 / 0.05) == 5  # where floor(y / b) differs
    f = adacon.ecdf(np.array([0.15, 0.25, 0.2]), bucket=0.05, kind="official")
    # buckets 2, 4, 4 -> mid-ranks 0.5, 2, 2 over n = 3
    np.testing.assert_allclose(f, [0.5 / 3, 2 / 3, 2 / 3], rtol=0, atol=1e-15)


@given(st.lists(st.integers(0, 6), min_size=1, max_size=12), st.sampled_from(["paper", "official"]),
       st.sampled_from([None, 0.05, 0.3]))
@example([3], "paper", None)
@example([0, 0, 0], "official", None)
def test_ecdf_equals_naive_and_properties(ints, kind, bucket):
    y = np.array(ints) * 0.05  # ties, and values on bucket edges
    f = adacon.ecdf(y, bucket=bucket, kind=kind)
    np.testing.assert_allclose(f, naive_ecdf(y, y, bucket, kind), rtol=0, atol=1e-15)
    assert np.all(f > 0) and np.all(f <= 1)
    order = np.argsort(y, kind="stable")
    assert np.all(np.diff(f[order]) >= 0)  # monotone
    keys = y if bucket is None else y // bucket
    same = keys[:, None] == keys[None, :]
    assert np.all((f[:, None] == f[None, :]) == same)  # ties share a value, and only ties
    if kind == "paper":
        assert f[np.argmax(y)] == 1.0


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=10, unique=True))
def test_mid_rank_is_paper_minus_half_step_on_distinct_values(values):
    y = np.array(values)
    half_step = 1 / (2 * len(y))
    np.testing.assert_allclose(adacon.ecdf(y, kind="official"), adacon.ecdf(y) - half_step,
                               rtol=0, atol=1e-15)


def test_ecdf_over_a_population():
    pop = np.array([0.1, 0.2, 0.2, 0.9])
    y = np.array([0.0, 0.2, 0.5, 1.0])
    np.testing.assert_allclose(adacon.ecdf(y, pop), [0.0, 0.75, 0.75, 1.0])
    np.testing.assert_allclose(adacon.ecdf(y, pop, kind="official"), [0.0, 0.5, 0.75, 1.0])
    assert adacon.ecdf(np.array([1, 2, 2])).dtype == np.float64  # integer labels promoted


def test_margin_grows_with_label_distance_and_vanishes_on_ties():
    y = np.array([0.5, 0.1, 0.4, 0.9, 0.5, 0.45])
    for kind in ("paper", "official"):
        d = adacon.margin(y, kind=kind)
        np.testing.assert_array_equal(d, d.T)
        assert d[0, 4] == 0 and np.all(np.diag(d) == 0)
        # anchor 0.5: 0.45 < 0.4 < 0.1 in distance below; 0.9 above
        assert d[0, 5] < d[0, 2] < d[0, 1]
        assert np.all((d >= 0) & (d < 2))
    # extreme counts 0 and n (keys outside the population): the code's clamp at 2 never binds
    for n in range(1, 200):
        pop = np.zeros(n) + 0.5
        assert adacon.margin(np.array([0.0, 1.0]), pop).max() <= 2.0
        assert adacon.margin(np.array([0.0, 1.0], dtype=np.float32), pop.astype(np.float32)).max() <= 2


# ----------------------------------------------------------------------------------------------
# Vectorised == naive loops


@given(batches(), st.sampled_from([None, 0.05, 0.3]), st.booleans())
@example((np.eye(3) + 0.5, np.full(3, 0.2), 3.0), None, True)  # one class: no margin at all
def test_paper_equals_naive(batch, bucket, normalize):
    z, y, scale = batch
    got, _ = adacon.forward(z, y, scale=scale, bucket=bucket, normalize=normalize, reduction="none")
    want = naive_losses(z, y, scale, bucket=bucket, normalize=normalize)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


@given(batches(official=True), st.booleans())
def test_official_equals_naive(batch, with_population):
    z, y, _ = batch
    gen = np.random.default_rng(len(y))
    pop = np.concatenate([y, np.round(gen.uniform(0, 1, 7), 2)]) if with_population else None
    scale = adacon.OFFICIAL_SCALE  # the code's value; the naive loop is exact enough in float64
    got, _ = adacon.forward(z, y, scale=scale, population=pop, variant="official")
    want = naive_losses(z, y, scale, population=pop, variant="official").mean()
    np.testing.assert_allclose(float(got), want, rtol=1e-10, atol=1e-11)


def test_paper_with_population_equals_naive():
    gen = np.random.default_rng(3)
    z, y = _rows(gen, 6, 3), np.array([0.2, 0.7, 0.2, 0.4, 0.7, 0.9])
    pop = gen.uniform(0, 1, 11)
    got, _ = adacon.forward(z, y, scale=7.0, population=pop, reduction="none")
    np.testing.assert_allclose(got, naive_losses(z, y, 7.0, population=pop), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Gradients


@given(batches(), st.sampled_from(["mean", "sum", "none"]), st.sampled_from([None, 0.3]),
       st.booleans())
@example((np.eye(3) + 0.5, np.array([0.1, 0.2, 0.3]), 3.0), "mean", None, True)  # no positives
def test_vjp_paper(batch, reduction, bucket, normalize):
    z, y, scale = batch
    # atol: central differences of losses of size ~scale carry ~1e-16 * scale / 1e-6 of noise
    check_vjp(_fwd(y, scale=scale, bucket=bucket, reduction=reduction, normalize=normalize),
              adacon.backward, [z], rtol=1e-6, atol=1e-7).raise_if_failed()


@given(batches(official=True, max_samples=4))
def test_vjp_official(batch):
    z, y, scale = batch
    check_vjp(_fwd(y, scale=scale, variant="official"), adacon.backward, [z], rtol=1e-6, atol=1e-7).raise_if_failed()


@pytest.mark.parametrize("normalize", [True, False])
def test_full_gradient_check(normalize):
    gen = np.random.default_rng(0)
    z = _rows(gen, 6, 3) * (0.5 if not normalize else 1.0)  # moderate logits without normalising
    y = np.array([0.1, 0.5, 0.1, 0.9, 0.5, 0.3])  # pairs and a singleton
    report = check_gradients(_fwd(y, scale=4.0, reduction="none", normalize=normalize),
                             adacon.backward, [z])
    report.raise_if_failed()


def test_backward_twice_identical_and_inputs_untouched():
    gen = np.random.default_rng(1)
    z, y = _rows(gen, 6, 3), np.array([0.1, 0.5, 0.1, 0.9, 0.5, 0.3])
    z0, y0 = z.copy(), y.copy()
    loss, cache = adacon.forward(z, y, scale=5.0, reduction="none")
    dout = gen.standard_normal(6)
    (a,), (b,) = adacon.backward(dout, cache), adacon.backward(dout, cache)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(y, y0)


def test_anchor_without_positives_contributes_zero_and_counts_in_the_mean():
    gen = np.random.default_rng(2)
    z, y = _rows(gen, 4, 3), np.array([0.1, 0.1, 0.5, 0.9])
    per, _ = adacon.forward(z, y, scale=3.0, reduction="none")
    mean, cache = adacon.forward(z, y, scale=3.0)
    assert per[2] == 0 and per[3] == 0 and np.all(per[:2] > 0)
    assert float(mean) == pytest.approx(per.sum() / 4, rel=1e-14)
    # all singletons: zero loss and zero gradient
    loss, cache = adacon.forward(z, np.array([0.1, 0.2, 0.3, 0.4]), scale=3.0)
    assert float(loss) == 0 and np.all(adacon.backward(1.0, cache)[0] == 0)


# ----------------------------------------------------------------------------------------------
# Invariances, reductions to SupCon, orderings


@given(batches())
def test_row_permutation_permutes_loss_and_gradient(batch):
    z, y, scale = batch
    perm = np.random.default_rng(len(y)).permutation(len(y))
    dout = np.random.default_rng(0).standard_normal(len(y))
    per, cache = adacon.forward(z, y, scale=scale, reduction="none")
    per_p, cache_p = adacon.forward(z[perm], y[perm], scale=scale, reduction="none")
    np.testing.assert_allclose(per_p, per[perm], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(adacon.backward(dout[perm], cache_p)[0],
                               adacon.backward(dout, cache)[0][perm], rtol=1e-10, atol=1e-12)


def test_official_sample_permutation_and_view_swap():
    gen = np.random.default_rng(4)
    y1 = np.array([0.12, 0.33, 0.12, 0.81, 0.5])
    z, y = _rows(gen, 10, 3), np.concatenate([y1, y1])
    perm = gen.permutation(5)
    rows = np.concatenate([perm + 5, perm])  # permute samples and swap the two views
    loss, cache = adacon.forward(z, y, scale=10.0, variant="official")
    loss_p, cache_p = adacon.forward(z[rows], y[rows], scale=10.0, variant="official")
    assert float(loss_p) == pytest.approx(float(loss), rel=1e-13)
    np.testing.assert_allclose(adacon.backward(1.0, cache_p)[0], adacon.backward(1.0, cache)[0][rows],
                               rtol=1e-10, atol=1e-13)


@given(batches(), st.floats(0.1, 10.0))
def test_scaling_and_rotating_z_change_nothing(batch, c):
    z, y, scale = batch
    q, _ = np.linalg.qr(np.random.default_rng(len(y)).standard_normal((z.shape[1],) * 2))
    dout = np.random.default_rng(1).standard_normal(len(y))
    per, cache = adacon.forward(z, y, scale=scale, reduction="none")
    (dz,) = adacon.backward(dout, cache)
    for moved, dz_expected in ((c * z, dz / c), (z @ q, dz @ q)):
        per_m, cache_m = adacon.forward(moved, y, scale=scale, reduction="none")
        np.testing.assert_allclose(per_m, per, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(adacon.backward(dout, cache_m)[0], dz_expected,
                                   rtol=1e-8, atol=1e-10)


@given(batches())
def test_strictly_increasing_label_map_changes_nothing(batch):
    z, y, scale = batch
    mapped = np.exp(3 * y) - 7.0  # strictly increasing
    a, cache_a = adacon.forward(z, y, scale=scale, reduction="none")
    b, cache_b = adacon.forward(z, mapped, scale=scale, reduction="none")
    np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(adacon.backward(1.0 + a, cache_b)[0],
                               adacon.backward(1.0 + a, cache_a)[0], rtol=1e-12, atol=1e-13)


@given(batches())
def test_zero_margins_give_supcon(batch):
    """A population entirely below the batch puts every label at F = 1: all margins 0,
    classes still by label, so AdaCon is SupCon (Eq. 1) with the same scale."""
    z, y, scale = batch
    below = np.array([-3.0, -2.0, -1.0])
    got, _ = adacon.forward(z, y, scale=scale, population=below, reduction="none")
    np.testing.assert_allclose(adacon.margin(y, below), 0)
    np.testing.assert_allclose(got, naive_supcon(z, y, scale), rtol=1e-11, atol=1e-11)
    if len(set(y.tolist())) > 1:  # the batch ECDF gives non-zero margins: AdaCon > SupCon
        adaptive, _ = adacon.forward(z, y, scale=scale, reduction="none")
        has_pos = got > 0
        assert np.all(adaptive[has_pos] >= got[has_pos])


def test_label_far_negative_costs_more_when_it_is_the_closer_one():
    """The order property behind Eq. 2: for an anchor at 0, negatives at labels 0.4 and 1.0,
    the loss is higher when the label-far negative is the more similar one."""
    y = np.array([0.0, 0.0, 0.4, 1.0])
    anchor, positive = [1.0, 0.0, 0.0], [0.9, 0.3, 0.0]
    near, far = [0.2, 0.98, 0.0], [-0.5, 0.0, 0.87]  # cos with the anchor: 0.2 vs -0.5
    good, _ = adacon.forward(np.array([anchor, positive, near, far]), y, scale=5.0, reduction="none")
    bad, _ = adacon.forward(np.array([anchor, positive, far, near]), y, scale=5.0, reduction="none")
    assert bad[0] > good[0]
    d = adacon.margin(y)
    assert d[0, 3] > d[0, 2] > 0


# ----------------------------------------------------------------------------------------------
# Stability


def test_scale_150_float32_agrees_with_float64():
    gen = np.random.default_rng(5)
    y1 = np.round(gen.uniform(0, 1, 32), 1)
    z64 = _rows(gen, 64, 16).astype(np.float32).astype(np.float64)
    y = np.concatenate([y1, y1])
    for variant in ("paper", "official"):
        out = {}
        for dt in (np.float32, np.float64):
            loss, cache = adacon.forward(z64.astype(dt), y, scale=150.0, variant=variant)
            (dz,) = adacon.backward(1.0, cache)
            assert loss.dtype == dt and dz.dtype == dt
            assert np.isfinite(float(loss)) and np.all(np.isfinite(dz))
            out[dt] = float(loss), dz.astype(np.float64)
        assert out[np.float32][0] == pytest.approx(out[np.float64][0], rel=1e-4)
        g32, g64 = out[np.float32][1], out[np.float64][1]
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4 * np.abs(g64).max())


def test_logits_far_beyond_exp_range_stay_finite():
    z = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    loss, cache = adacon.forward(z, np.array([0.0, 0.0, 1.0, 2.0]), scale=1e4, reduction="none")
    (dz,) = adacon.backward(np.ones(4), cache)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(dz))


# ----------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("kwargs, y, match", [
    ({}, np.zeros(3), "y has 3 rows"),
    ({}, np.array([0.0, np.nan, 1.0, 1.0]), "y must be finite"),
    ({}, np.array([0.0, np.inf, 1.0, 1.0]), "y must be finite"),
    ({"scale": 0.0}, None, "scale"),
    ({"scale": -1.0}, None, "scale"),
    ({"bucket": 0.0}, None, "bucket"),
    ({"bucket": -0.05}, None, "bucket"),
    ({"population": np.zeros(0)}, None, "population must not be empty"),
    ({"population": np.array([np.nan])}, None, "population must be finite"),
    ({"variant": "code"}, None, "variant"),
    ({"reduction": "max"}, None, "reduction"),
    ({"variant": "official", "reduction": "sum"}, None, "reduction"),
])
def test_bad_input_raises_naming_the_argument(kwargs, y, match):
    z = np.eye(4)
    y = np.array([0.1, 0.1, 0.2, 0.2]) if y is None else y
    kwargs = {"scale": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        adacon.forward(z, y, **kwargs)


def test_bad_input_official_views_and_shapes():
    with pytest.raises(ValueError, match="z must have an even number of rows"):
        adacon.forward(np.eye(3), np.zeros(3), scale=1.0, variant="official")
    with pytest.raises(ValueError, match=r"y must give both views"):
        adacon.forward(np.eye(4), np.array([0.1, 0.2, 0.1, 0.3]), scale=1.0, variant="official")
    with pytest.raises(ValueError, match="z must have at least 2 rows"):
        adacon.forward(np.ones((1, 3)), np.zeros(1), scale=1.0)
    with pytest.raises(ValueError, match="z must have 2 dimensions"):
        adacon.forward(np.ones(3), np.zeros(3), scale=1.0)
    with pytest.raises(ValueError, match="z must be finite"):
        adacon.forward(np.array([[np.nan, 1.0], [1.0, 0.0]]), np.zeros(2), scale=1.0)
    with pytest.raises(TypeError, match="y must have an integer or real floating dtype"):
        adacon.forward(np.eye(2), np.array([True, False]), scale=1.0)
    with pytest.raises(ValueError, match="kind"):
        adacon.ecdf(np.zeros(2), kind="strict")
    with pytest.raises(ValueError, match="bucket"):
        adacon.ecdf(np.zeros(2), bucket=0)


# ----------------------------------------------------------------------------------------------
# Backends and torch


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_runs_on_every_backend(xpd, variant):
    gen = np.random.default_rng(6)
    y1 = np.array([0.15, 0.25, 0.15, 0.6])
    z, y = _rows(gen, 8, 3), np.concatenate([y1, y1])
    pop = np.round(gen.uniform(0, 1, 9), 2)
    dout = gen.standard_normal(8)
    kw = {"scale": 12.0, "variant": variant, "population": pop}
    kw["reduction"] = "mean" if variant == "official" else "none"
    want, cache = adacon.forward(z, y, **kw)
    (want_dz,) = adacon.backward(1.0 if variant == "official" else dout, cache)
    kw["population"] = xpd.put(pop)
    got, cache = adacon.forward(xpd.put(z), xpd.put(y), **kw)
    (dz,) = adacon.backward(xpd.put(np.asarray(1.0) if variant == "official" else dout), cache)
    assert backend.namespace(got, dz) is xpd.xp
    if xpd.device is not None:
        assert dz.device == xpd.device
    np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(dz), want_dz, rtol=1e-10, atol=1e-14)
    for kind in ("paper", "official"):
        np.testing.assert_array_equal(
            backend.to_numpy(adacon.ecdf(xpd.put(y), xpd.put(pop), bucket=0.05, kind=kind)),
            adacon.ecdf(y, pop, bucket=0.05, kind=kind))


@pytest.mark.torch
@given(batches(), st.sampled_from(["paper", "official"]), st.sampled_from(["mean", "sum", "none"]),
       st.booleans())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # torch is a module
def test_equals_torch_autograd(torch, batch, variant, reduction, with_population):
    z, y, scale = batch
    if variant == "official":
        y, z, reduction = np.concatenate([y, y]), np.concatenate([z, z[::-1]]), "mean"
    pop = np.random.default_rng(1).uniform(0, 1, 5) if with_population else None
    bucket = 0.05 if variant == "official" else None
    loss, cache = adacon.forward(z, y, scale=scale, population=pop, variant=variant,
                                 reduction=reduction)
    zt = torch.tensor(z, requires_grad=True)
    ref = torch_reference.adacon(torch, zt, torch.tensor(y), scale=scale, bucket=bucket, variant=variant,
                                 population=None if pop is None else torch.tensor(pop), reduction=reduction)
    dout = np.random.default_rng(2).standard_normal(np.shape(loss))
    ref.backward(torch.tensor(dout))
    # atol: a loss that is 0 in exact arithmetic (two rows, one pair) comes out as ~1e-16
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(adacon.backward(dout, cache)[0], zt.grad.numpy(), rtol=1e-10,
                               atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Teaching form


LEVELS = st.sampled_from([0.0, 0.05, 0.1, 0.15, 0.25, 0.5, 0.9])  # ties, singletons and bucket edges


@st.composite
def adacon_arrays(draw, official=False):
    n = draw(st.integers(1, 4)) if official else draw(st.integers(2, 7))
    y = draw(hnp.arrays(np.float64, n, elements=LEVELS))
    y = np.tile(y, 2) if official else y
    return draw(matrices(y.shape[0], st.integers(1, 4))), y


@given(adacon_arrays(), st.floats(0.5, 20.0), st.sampled_from([None, 0.05, 0.3]),
       st.sampled_from(["mean", "sum", "none"]), st.booleans(), st.booleans())
@example((np.eye(3) + 0.5, np.full(3, 0.2)), 3.0, None, "none", True, False)  # one class: no margin
def test_naive_form_equals_fast_form_paper(arrays, scale, bucket, reduction, normalize, with_population):
    population = np.array([0.05, 0.3, 0.5, 0.7]) if with_population else None
    assert_naive_matches_fast(adacon, arrays, dict(scale=scale, bucket=bucket, reduction=reduction,
                                                   normalize=normalize, population=population), atol=1e-9)


@given(adacon_arrays(official=True))
def test_naive_form_equals_fast_form_official(arrays):
    assert_naive_matches_fast(adacon, arrays, dict(scale=adacon.OFFICIAL_SCALE, variant="official"), atol=1e-8)


@given(batches(), st.sampled_from(["mean", "sum", "none"]), st.booleans())
def test_naive_form_gradient_vjp(batch, reduction, normalize):
    z, y, scale = batch
    check_vjp(lambda z: adacon.forward_naive(z, y, scale=scale, reduction=reduction, normalize=normalize),
              adacon.backward_naive, [z], rtol=1e-6, atol=1e-7).raise_if_failed()
