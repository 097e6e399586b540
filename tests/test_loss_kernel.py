"""WSP kernel loss (and its SupCon / SimCLR / y-Aware special cases) against references.

The references below are written straight from the equations (per-anchor loops)
or from the documented semantics of the authors' code, independently of
refimpl's vectorised implementation.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import _ops, backend, gradcheck
from refimpl.losses import kernel, supcon

import torch_reference
from loss_helpers import assert_naive_matches_fast, embeddings, matrices

# ---------------------------------------------------------------- references


def _unit_rows(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _reduce(per_anchor, reduction):
    if reduction == "none":
        return np.array(per_anchor)
    total = math.fsum(per_anchor)
    return total if reduction == "sum" else total / len(per_anchor)


def naive_paper(z, labels=None, depth=None, sigma=0.1, temperature=0.1, reduction="mean"):
    """WSP Eq. 4, denominator j != t, weights normalised over P(t); loops over t, i, j."""
    z = _unit_rows(z)
    m = len(z)
    s = [[float(z[t] @ z[j]) / temperature for j in range(m)] for t in range(m)]
    per_anchor = []
    for t in range(m):
        log_denom = math.log(math.fsum(math.exp(s[t][j]) for j in range(m) if j != t))
        w = {}
        for i in range(m):
            if i != t and (labels is None or labels[i] == labels[t]):
                w[i] = 1.0 if depth is None else math.exp(-(depth[t] - depth[i]) ** 2 / (2 * sigma**2))
        total = math.fsum(w.values())
        per_anchor.append(-math.fsum(w_i / total * (s[t][i] - log_denom) for i, w_i in w.items()))
    return _reduce(per_anchor, reduction)


def naive_official(z, labels=None, depth=None, sigma=0.1, temperature=0.1):
    """WSPContrastiveLoss as its code computes it: w_tj / (row sum of j), -(1/N) sum."""
    z = _unit_rows(z)
    m = len(z)
    raw = [[0.0] * m for _ in range(m)]
    for t in range(m):
        for j in range(m):
            if j != t and (labels is None or labels[j] == labels[t]):
                raw[t][j] = 1.0 if depth is None else math.exp(-(depth[t] - depth[j]) ** 2 / (2 * sigma**2))
    row_sum = [math.fsum(raw[j]) for j in range(m)]
    per_anchor = []
    for t in range(m):
        s = [float(z[t] @ z[j]) / temperature for j in range(m)]
        log_denom = math.log(math.fsum(math.exp(s[j]) for j in range(m) if j != t))
        per_anchor.append(-math.fsum(raw[t][j] / row_sum[j] * (s[j] - log_denom)
                                     for j in range(m) if j != t))
    return math.fsum(per_anchor) / (m // 2)


def hobbitlong_supcon(features, labels, temperature, base_temperature):
    """SupConLoss semantics of HobbitLong/SupContrast: features (bsz, n_views, D), already normalised."""
    bsz, n_views, _ = features.shape
    contrast = np.concatenate([features[:, v] for v in range(n_views)])  # view-major (V bsz, D)
    all_labels = np.tile(labels, n_views)
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(axis=1, keepdims=True)  # their max includes the anchor itself
    not_self = 1.0 - np.eye(len(contrast))
    mask = (all_labels[:, None] == all_labels[None, :]) * not_self
    log_prob = logits - np.log((np.exp(logits) * not_self).sum(axis=1, keepdims=True))
    count = mask.sum(axis=1)
    mean_log_prob_pos = (mask * log_prob).sum(axis=1) / np.where(count < 1e-6, 1.0, count)
    return float(np.mean(-(temperature / base_temperature) * mean_log_prob_pos))


def simclr_ntxent(z, temperature):
    """SimCLR Eq. 1: l(i, j) = -log(exp(s_ij) / sum_{k != i} exp(s_ik)), averaged over 2N anchors."""
    z = _unit_rows(z)
    n = len(z) // 2
    s = z @ z.T / temperature

    def ell(i, j):
        return -(s[i, j] - math.log(math.fsum(math.exp(s[i, k]) for k in range(2 * n) if k != i)))

    return math.fsum(ell(k, k + n) + ell(k + n, k) for k in range(n)) / (2 * n)


def yaware_paper(z, y, sigma, temperature):
    """y-Aware (Dufumier et al. 2021): Gaussian weights on y normalised per anchor; sum over anchors / M."""
    z = _unit_rows(z)
    m = len(z)
    off = ~np.eye(m, dtype=bool)
    s = z @ z.T / temperature
    log_p = s - np.log(np.where(off, np.exp(s), 0.0).sum(axis=1, keepdims=True))
    w = np.where(off, np.exp(-np.subtract.outer(y, y) ** 2 / (2 * sigma**2)), 0.0)
    return float(-(w / w.sum(axis=1, keepdims=True) * np.where(off, log_p, 0.0)).sum() / m)


def yaware_code(z_i, z_j, y, sigma, temperature):
    """GeneralizedSupervisedNTXenLoss semantics: block similarity, -1e8 diagonal, quirky weights."""
    n = len(z_i)
    z_i, z_j = _unit_rows(z_i), _unit_rows(z_j)
    big = 1e8 * np.eye(n)
    sim = np.block([[z_i @ z_i.T / temperature - big, z_i @ z_j.T / temperature],
                    [z_j @ z_i.T / temperature, z_j @ z_j.T / temperature - big]])
    log_sim = sim - np.log(np.exp(sim - sim.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)) \
        - sim.max(axis=1, keepdims=True)
    yy = np.concatenate([y, y])
    weights = np.exp(-(1 / (2 * sigma**2)) * np.subtract.outer(yy, yy) ** 2) * (1 - np.eye(2 * n))
    weights /= weights.sum(axis=1)  # the broadcast of the code
    return float(-1.0 / n * (weights * log_sim).sum())


# ---------------------------------------------------------------- strategies


def _embeddings(gen, m, d):
    """Rows with norms in [0.5, 2]: away from the zero-norm kink of the normalisation."""
    return _unit_rows(gen.standard_normal((m, d))) * gen.uniform(0.5, 2.0, (m, 1))


def _labels_and_depth(m):
    """Optional labels (1 class: all tied, up to m: mostly singletons) and depth in [0, 1], as arrays."""
    labels = st.integers(1, m).flatmap(
        lambda n_classes: hnp.arrays(np.int64, m, elements=st.integers(0, n_classes - 1)))
    return st.tuples(st.none() | labels, st.none() | hnp.arrays(np.float64, m, elements=st.floats(0.0, 1.0)))


@st.composite
def paper_cases(draw, min_rows=3):
    m = draw(st.integers(min_rows, 7))
    labels, depth = draw(_labels_and_depth(m))
    return dict(z=draw(embeddings(m, st.integers(1, 4))), labels=labels, depth=depth,
                sigma=draw(st.floats(0.1, 2.0)), temperature=draw(st.floats(0.05, 1.0)))


@st.composite
def official_cases(draw):
    n = draw(st.integers(1, 4))
    labels, depth = (None if x is None else np.tile(x, 2) for x in draw(_labels_and_depth(n)))
    return dict(z=draw(embeddings(2 * n, st.integers(1, 4))), labels=labels, depth=depth,
                sigma=draw(st.floats(0.1, 2.0)), temperature=draw(st.floats(0.05, 1.0)))


def _loss(case, **extra):
    kwargs = {k: v for k, v in case.items() if k != "z"}
    return lambda z: kernel.forward(z, **kwargs, **extra)


REDUCTIONS = st.sampled_from(["mean", "sum", "none"])
TIED = dict(z=np.array([[1.0, 0.2], [0.3, 1.0], [-0.5, 0.4], [0.9, -0.7], [0.1, 0.1], [-1.0, -0.3]]),
            labels=np.array([0, 0, 1, 0, 1, 2]), depth=np.array([0.1, 0.5, 0.2, 0.15, 0.9, 0.4]),
            sigma=0.3, temperature=0.2)
GOOD = dict(TIED, labels=np.array([0, 1, 0, 0, 1, 0]), depth=np.tile(TIED["depth"][:3], 2))  # two views

# ---------------------------------------------------------------- vectorised == naive


@given(case=paper_cases(min_rows=2), reduction=REDUCTIONS)
@example(case=dict(TIED), reduction="none")
def test_paper_equals_naive_loops(case, reduction):
    loss, _ = kernel.forward(**case, reduction=reduction)
    np.testing.assert_allclose(loss, naive_paper(**case, reduction=reduction), rtol=1e-12, atol=1e-12)


@given(case=official_cases())
def test_official_equals_naive_loops(case):
    loss, _ = kernel.forward(**case, variant="official")
    np.testing.assert_allclose(loss, naive_official(**case), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- gradients


@given(case=paper_cases(), reduction=REDUCTIONS)
def test_paper_vjp(case, reduction):
    gradcheck.check_vjp(_loss(case, reduction=reduction), kernel.backward, [case["z"]]).raise_if_failed()


@given(case=official_cases())
def test_official_vjp(case):
    gradcheck.check_vjp(_loss(case, variant="official"), kernel.backward, [case["z"]]).raise_if_failed()


@pytest.mark.parametrize("variant, normalize, reduction", [
    ("paper", True, "mean"), ("paper", False, "none"), ("paper", True, "sum"), ("official", True, "mean")])
def test_full_gradient_check(variant, normalize, reduction):
    report = gradcheck.check_gradients(
        _loss(GOOD, variant=variant, normalize=normalize, reduction=reduction), kernel.backward,
        [GOOD["z"]])
    assert report.ok, str(report)


def test_two_rows_loss_is_constant_zero():
    # M = 2: the only other row is the positive and the whole denominator (drawn cases use M >= 3)
    loss, cache = kernel.forward(TIED["z"][:2], depth=TIED["depth"][:2], reduction="none")
    assert np.all(loss == 0.0)
    assert np.all(kernel.backward(np.ones(2), cache)[0] == 0.0)


def test_anchor_without_positive_contributes_zero_and_counts_in_mean():
    per_anchor, _ = kernel.forward(**TIED, reduction="none")  # label 2 is a singleton (row 5)
    assert per_anchor[5] == 0.0 and np.all(per_anchor[:5] > 0)
    mean, cache = kernel.forward(**TIED)
    np.testing.assert_allclose(mean, per_anchor.sum() / 6, rtol=1e-14)
    (dz,) = kernel.backward(np.float64(1.0), cache)
    assert np.all(np.isfinite(dz)) and np.any(dz[5] != 0)  # still a negative for the others
    assert gradcheck.check_gradients(_loss(TIED), kernel.backward, [TIED["z"]]).ok


def test_small_sigma_keeps_only_the_nearest_positive():
    # exp(-0.01 / 2e-6) underflows to 0 for every positive of anchor 0; the
    # log-space normalisation still gives weight 1 to the nearest one (row 1).
    z, labels = TIED["z"][:4], np.array([0, 0, 1, 0])
    depth = np.array([0.0, 0.1, 0.5, 0.3])
    tiny, _ = kernel.forward(z, labels=labels, depth=depth, sigma=1e-3, reduction="none")
    nearest_only = naive_paper(z, labels=np.array([0, 0, 1, 2]), reduction="none")[0]
    np.testing.assert_allclose(tiny[0], nearest_only, rtol=1e-12)
    assert np.all(np.isfinite(tiny))


def test_backward_twice_identical_and_inputs_not_mutated():
    case = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in TIED.items()}
    _, cache = kernel.forward(**case)
    first = kernel.backward(np.float64(1.3), cache)[0]
    second = kernel.backward(np.float64(1.3), cache)[0]
    np.testing.assert_array_equal(first, second)
    for key in ("z", "labels", "depth"):
        np.testing.assert_array_equal(case[key], TIED[key])


# ---------------------------------------------------------------- special cases


@pytest.mark.parametrize("base", [0.07, 0.2])
def test_labels_only_and_huge_sigma_equal_hobbitlong_supcon(base):
    gen = np.random.default_rng(3)
    tau, n = 0.2, 5
    feats = _unit_rows(gen.standard_normal((2 * n, 3))).reshape(2, n, 3).transpose(1, 0, 2)
    y = np.array([0, 1, 0, 2, 1])
    z, labels = np.concatenate([feats[:, 0], feats[:, 1]]), np.tile(y, 2)
    reference = hobbitlong_supcon(feats, y, tau, base)
    no_depth, _ = kernel.forward(z, labels=labels, temperature=tau)
    flat, _ = kernel.forward(z, labels=labels, depth=gen.uniform(0, 1, 2 * n), sigma=1e6,
                             temperature=tau)
    named, _ = supcon.forward(z, labels=labels, temperature=tau, base_temperature=base)
    np.testing.assert_allclose(tau / base * no_depth, reference, rtol=1e-12)
    np.testing.assert_allclose(tau / base * flat, reference, rtol=1e-10)
    np.testing.assert_allclose(named, reference, rtol=1e-12)


def test_single_view_supcon_with_singletons_equals_hobbitlong():
    gen = np.random.default_rng(4)
    feats = _unit_rows(gen.standard_normal((6, 4)))
    y = np.array([3, 1, 3, 0, 1, 2])  # labels 0 and 2 are singletons
    loss, _ = kernel.forward(feats, labels=y, temperature=0.07)
    np.testing.assert_allclose(loss, hobbitlong_supcon(feats[:, None], y, 0.07, 0.07), rtol=1e-12)


def test_sample_ids_as_labels_equal_simclr_ntxent():
    z = _embeddings(np.random.default_rng(5), 8, 3)
    ids = np.arange(8) % 4
    reference = simclr_ntxent(z, 0.5)
    np.testing.assert_allclose(kernel.forward(z, labels=ids, temperature=0.5)[0], reference, rtol=1e-12)
    np.testing.assert_allclose(supcon.ntxent_forward(z, temperature=0.5)[0], reference, rtol=1e-12)
    np.testing.assert_allclose(supcon.forward(z, temperature=0.5)[0], reference, rtol=1e-12)


def test_supcon_entry_points_gradients():
    z = _embeddings(np.random.default_rng(6), 6, 3)
    labels = np.array([0, 1, 0, 1, 1, 2])

    def scaled(x):
        return supcon.forward(x, labels=labels, temperature=0.1, base_temperature=0.07)

    assert gradcheck.check_gradients(scaled, supcon.backward, [z]).ok
    assert gradcheck.check_gradients(lambda x: supcon.ntxent_forward(x), supcon.ntxent_backward, [z]).ok


def test_depth_only_equals_yaware_paper_and_code():
    gen = np.random.default_rng(7)
    z_i, z_j, y = gen.standard_normal((5, 3)), gen.standard_normal((5, 3)), gen.uniform(0, 1, 5)
    z, yy = np.concatenate([z_i, z_j]), np.tile(y, 2)
    paper, _ = kernel.forward(z, depth=yy, sigma=0.3, temperature=0.2)
    official, _ = kernel.forward(z, depth=yy, sigma=0.3, temperature=0.2, variant="official")
    np.testing.assert_allclose(paper, yaware_paper(z, yy, 0.3, 0.2), rtol=1e-12)
    np.testing.assert_allclose(official, yaware_code(z_i, z_j, y, 0.3, 0.2), rtol=1e-12)


def test_official_quirk_is_harmless_with_labels_only_and_not_with_depth():
    z = np.concatenate([TIED["z"], [[0.4, -0.8], [0.7, 0.7]]])
    case = dict(TIED, z=z, labels=np.tile([0, 0, 0, 1], 2), depth=np.tile([0.1, 0.5, 0.2, 0.4], 2))
    labels_only = dict(case, depth=None)
    np.testing.assert_allclose(kernel.forward(**labels_only, variant="official")[0],
                               2 * kernel.forward(**labels_only)[0], rtol=1e-12)
    official = kernel.forward(**case, variant="official")[0]
    assert abs(official - 2 * kernel.forward(**case)[0]) > 1e-3


# ---------------------------------------------------------------- invariances


def _value_and_grad(z, **kwargs):
    loss, cache = kernel.forward(z, **kwargs)
    return loss, kernel.backward(np.ones_like(loss), cache)[0]


@given(case=paper_cases(), data=st.data())
def test_row_permutation_permutes_the_gradient(case, data):
    perm = np.asarray(data.draw(st.permutations(range(len(case["z"])))))
    moved = {k: (v[perm] if isinstance(v, np.ndarray) else v) for k, v in case.items()}
    loss, dz = _value_and_grad(**case)
    loss_p, dz_p = _value_and_grad(**moved)
    # the loss is a difference of terms of size ~1 / temperature: rounding is absolute there
    np.testing.assert_allclose(loss_p, loss, rtol=1e-12, atol=1e-14 / case["temperature"])
    np.testing.assert_allclose(dz_p, dz[perm], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", ["paper", "official"])
@given(case=official_cases(), c=st.floats(0.1, 10.0), shift=st.floats(-5, 5),
       seed=st.integers(0, 2**32 - 1))
def test_scale_rotation_and_depth_shift_invariance(variant, case, c, shift, seed):
    z = case.pop("z")
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((z.shape[1],) * 2))
    shifted = dict(case, depth=None if case["depth"] is None else case["depth"] + shift)
    loss, dz = _value_and_grad(z, variant=variant, **case)
    loss_c, dz_c = _value_and_grad(c * z, variant=variant, **case)
    loss_q, dz_q = _value_and_grad(z @ q, variant=variant, **case)
    loss_d, dz_d = _value_and_grad(z, variant=variant, **shifted)
    for other in (loss_c, loss_q, loss_d):
        np.testing.assert_allclose(other, loss, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(c * dz_c, dz, rtol=1e-9, atol=1e-12)  # f(cz) = f(z)
    np.testing.assert_allclose(dz_q, dz @ q, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dz_d, dz, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- stability


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_temperature_001_float32_agrees_with_float64(variant):
    gen = np.random.default_rng(8)
    z = _embeddings(gen, 16, 8)
    labels, depth = np.tile(gen.integers(0, 3, 8), 2), np.tile(gen.uniform(0, 1, 8), 2)
    results = {}
    for dtype in ("float32", "float64"):
        loss, cache = kernel.forward(z.astype(dtype), labels=labels, depth=depth.astype(dtype),
                                     temperature=0.01, variant=variant)
        (dz,) = kernel.backward(np.ones((), dtype), cache)
        assert loss.dtype == dtype and dz.dtype == dtype
        assert np.isfinite(loss) and np.all(np.isfinite(dz))
        results[dtype] = (float(loss), dz.astype(np.float64))
    (l32, g32), (l64, g64) = results["float32"], results["float64"]
    assert abs(l32 - l64) <= 1e-4 * abs(l64)
    assert np.max(np.abs(g32 - g64)) <= 1e-4 * np.max(np.abs(g64))


# ---------------------------------------------------------------- bad input



@pytest.mark.parametrize("change, name", [
    (dict(labels=np.array([0, 1, 0])), "labels"),
    (dict(depth=np.zeros(7)), "depth"),
    (dict(z=np.full((6, 2), np.nan)), "z"),
    (dict(z=np.where(np.eye(6, 2) > 0, np.inf, 1.0)), "z"),
    (dict(depth=np.array([0.1, np.nan, 0.2, 0.1, np.nan, 0.2])), "depth"),
    (dict(labels=np.array([0.0, np.inf, 0.0, 0.0, np.inf, 0.0])), "labels"),
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-0.1), "temperature"),
    (dict(sigma=0.0), "sigma"),
    (dict(sigma=float("nan")), "sigma"),
    (dict(z=np.ones((1, 2)), labels=None, depth=None), "z"),
    (dict(z=np.ones(6), labels=None, depth=None), "z"),
    (dict(variant="offical"), "variant"),
    (dict(reduction="avg"), "reduction"),
    (dict(z=np.ones((5, 2)), labels=None, depth=None, variant="official"), "z"),
    (dict(labels=np.array([0, 1, 0, 1, 1, 0]), variant="official"), "labels"),
    (dict(depth=np.arange(6.0), variant="official"), "depth"),
    (dict(reduction="sum", variant="official"), "reduction"),
    (dict(normalize=False, variant="official"), "normalize"),
])
def test_bad_input_raises_value_error_naming_the_argument(change, name):
    with pytest.raises(ValueError, match=name):
        kernel.forward(**dict(GOOD, **change))


def test_supcon_bad_input():
    with pytest.raises(ValueError, match="z"):
        supcon.ntxent_forward(np.ones((5, 2)))
    with pytest.raises(ValueError, match="base_temperature"):
        supcon.forward(np.ones((4, 2)), labels=np.zeros(4), base_temperature=0.0)


# ---------------------------------------------------------------- backends and torch


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_runs_on_every_backend(xpd, variant):
    case = GOOD
    reduction, dout = ("mean", np.float64(0.7)) if variant == "official" else \
        ("none", np.linspace(-1, 1, 6))
    ref, ref_cache = kernel.forward(**case, variant=variant, reduction=reduction)
    (ref_dz,) = kernel.backward(dout, ref_cache)
    loss, cache = kernel.forward(xpd.put(case["z"]), labels=xpd.put(case["labels"]),
                                 depth=xpd.put(case["depth"]), sigma=case["sigma"],
                                 temperature=case["temperature"], variant=variant, reduction=reduction)
    (dz,) = kernel.backward(xpd.put(dout), cache)
    np.testing.assert_allclose(backend.to_numpy(loss), ref, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dz), ref_dz, rtol=1e-10, atol=1e-14)
    ids, ids_cache = supcon.ntxent_forward(xpd.put(case["z"]))
    np.testing.assert_allclose(float(ids), simclr_ntxent(case["z"], 0.1), rtol=1e-12)
    assert supcon.backward(xpd.put(np.float64(1.0)), ids_cache)[0].shape == (6, 2)


@pytest.mark.torch
@pytest.mark.parametrize("variant", ["paper", "official"])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # torch is a module
@given(data=st.data(), weights=st.lists(st.floats(-2, 2), min_size=8, max_size=8))
def test_equals_torch_autograd(torch, variant, data, weights):
    case = data.draw(official_cases() if variant == "official" else paper_cases())
    z = case["z"]
    m = len(z)
    labels = np.zeros(m, int) if case["labels"] is None else case["labels"]
    depth = np.zeros(m) if case["depth"] is None else case["depth"]
    # per-anchor losses against a random dout (paper); the code's scalar loss (official)
    reduction, dout = ("mean", np.float64(weights[0])) if variant == "official" else \
        ("none", np.asarray(weights[:m]))
    loss, cache = kernel.forward(z, labels=labels, depth=depth, sigma=case["sigma"],
                                 temperature=case["temperature"], variant=variant, reduction=reduction)
    (dz,) = kernel.backward(dout, cache)
    zt = torch.tensor(z, requires_grad=True)
    ref = torch_reference.kernel(torch, zt, labels=torch.tensor(labels), depth=torch.tensor(depth),
                                 sigma=case["sigma"], temperature=case["temperature"], variant=variant,
                                 reduction=reduction)
    (ref * torch.tensor(dout)).sum().backward()
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_ops_exp_and_rowdot_agree_on_every_backend(xpd):
    # the two helpers the kernel loss uses to keep at most two (M, M) arrays alive
    a, b = np.linspace(-2, 2, 12).reshape(3, 4), np.linspace(1, 0, 12).reshape(3, 4)
    np.testing.assert_allclose(backend.to_numpy(_ops.exp_(xpd.put(a.copy()))), np.exp(a), rtol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(_ops.rowdot(xpd.put(a), xpd.put(b))),
                               (a * b).sum(axis=1), rtol=1e-15)
    x, mask = np.array([[0.0, 800.0, -1.0], [2.0, -np.inf, 3.0]]), np.array([[1, 0, 1], [0, 1, 1]]) > 0
    expected = np.where(mask, np.exp(np.where(mask, x, 0.0)), 0.0)  # exp(800) would overflow
    out = _ops.exp_where(xpd.put(x.copy()), xpd.put(mask))
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-15)
    keys = np.array([2, 0, 2, 1, 0, 2])
    assert backend.to_numpy(_ops.argsort_stable(xpd.put(keys))).tolist() == [1, 4, 3, 0, 2, 5]


@given(m=st.integers(2, 12), n_classes=st.integers(0, 12), grid=st.sampled_from([4, 1000]),
       sigma=st.floats(1e-3, 2.0), data=st.data())
def test_log_kernel_max_equals_masked_row_max_of_the_dense_log_kernel(m, n_classes, grid, sigma, data):
    # the sorted-neighbour shift must be bit for bit the row max over positives (ties from a
    # coarse depth grid; n_classes 0: labels=None), and 0 for an anchor without positives
    depth = data.draw(hnp.arrays(np.int64, m, elements=st.integers(0, grid - 1))) / grid
    labels = data.draw(hnp.arrays(np.int64, m, elements=st.integers(0, n_classes - 1))) if n_classes else None
    log_kernel = (depth[:, None] - depth[None, :]) ** 2 * (-0.5 / sigma**2)
    positive = ~np.eye(m, dtype=bool)
    if labels is not None:
        positive &= labels[:, None] == labels[None, :]
    dense = np.where(positive, log_kernel, -np.inf).max(axis=1)
    expected = np.where(dense == -np.inf, 0.0, dense)
    assert kernel._log_kernel_max(depth, labels, sigma).tolist() == expected.tolist()


# ---------------------------------------------------------------- teaching form


@st.composite
def kernel_arrays(draw, official=False):
    """z, labels and depth drawn as arrays; official: two views that repeat labels and depth."""
    n = draw(st.integers(1, 4)) if official else draw(st.integers(2, 7))
    z = draw(matrices(2 * n if official else n, st.integers(1, 4)))
    labels = draw(st.none() | hnp.arrays(np.int64, n, elements=st.integers(0, 3)))
    depth = draw(st.none() | hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    if official:
        labels, depth = (None if x is None else np.tile(x, 2) for x in (labels, depth))
    return dict(z=z, labels=labels, depth=depth, sigma=draw(st.floats(0.1, 2.0)),
                temperature=draw(st.floats(0.05, 1.0)))


@given(kernel_arrays(), REDUCTIONS, st.booleans())
@example(dict(TIED), "none", True)
def test_naive_form_equals_fast_form_paper(case, reduction, normalize):
    z = case.pop("z")
    assert_naive_matches_fast(kernel, (z,), dict(case, reduction=reduction, normalize=normalize), atol=1e-9)


@given(kernel_arrays(official=True))
def test_naive_form_equals_fast_form_official(case):
    z = case.pop("z")
    assert_naive_matches_fast(kernel, (z,), dict(case, variant="official"), atol=1e-9)


@given(case=paper_cases(), reduction=REDUCTIONS)
def test_naive_form_gradient_vjp(case, reduction):
    kwargs = {k: v for k, v in case.items() if k != "z"}
    gradcheck.check_vjp(lambda z: kernel.forward_naive(z, **kwargs, reduction=reduction), kernel.backward_naive,
                        [case["z"]]).raise_if_failed()


def test_check_finite_false_skips_the_finite_check_and_nan_propagates():
    """The check reads a value back to the host (a sync on GPUs); a captured CUDA graph step turns it off."""
    z = np.array([[1.0, 0.0], [np.nan, 1.0], [0.5, 0.5]])
    labels = np.array([0, 0, 1])
    with pytest.raises(ValueError, match="z must be finite"):
        kernel.forward(z, labels=labels)
    loss, cache = kernel.forward(z, labels=labels, check_finite=False)
    assert np.isnan(loss) and np.isnan(kernel.backward(1.0, cache)[0]).any()
    with pytest.raises(TypeError, match="check_finite must be a bool"):
        kernel.forward(z, labels=labels, check_finite=0)
