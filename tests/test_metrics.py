"""Tests of refimpl.metrics: AUROC against pair counts and the ROC trapezoid, pair distances of Cheng et al."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import backend
from refimpl.augment import two_views
from refimpl.metrics import auroc, distance_gap, pair_distance_figure, pair_distances, separation_score


def auroc_pair_count(scores, labels):
    """Brute force: every (positive, negative) pair, ties one half."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def auroc_trapezoid(scores, labels):
    """Area under the empirical ROC curve: thresholds at every distinct score, trapezoid rule."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    tpr, fpr = [0.0], [0.0]
    for t in sorted(set(scores.tolist()), reverse=True):
        tpr.append(np.mean(scores[labels] >= t))
        fpr.append(np.mean(scores[~labels] >= t))
    return sum((f1 - f0) * (t0 + t1) / 2 for f0, f1, t0, t1 in zip(fpr, fpr[1:], tpr, tpr[1:]))


scored_labels = st.integers(2, 30).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-4, 4), min_size=n, max_size=n),  # few values: many ties
    st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < len(y)),
))


@given(scored_labels)
@example(([3, 3], [True, False]))
@example(([0, 1, 2], [False, True, False]))
def test_auroc_equals_pair_count_and_roc_trapezoid(data):
    scores, labels = data
    got = auroc(np.array(scores, float), np.array(labels))
    assert got == pytest.approx(auroc_pair_count(scores, labels), abs=1e-12)
    assert got == pytest.approx(auroc_trapezoid(scores, labels), abs=1e-12)


@given(scored_labels)
def test_auroc_symmetries_and_monotone_invariance(data):
    scores, labels = np.array(data[0], float), np.array(data[1])
    a = auroc(scores, labels)
    assert auroc(2.0 * scores ** 3 + scores + 7.0, labels) == a  # strictly increasing, exact in float
    assert auroc(np.exp(scores), labels) == pytest.approx(a, abs=1e-15)
    assert auroc(-scores, labels) == pytest.approx(1.0 - a, abs=1e-12)
    assert auroc(scores, ~labels) == pytest.approx(1.0 - a, abs=1e-12)
    order = np.random.default_rng(len(scores)).permutation(len(scores))
    assert auroc(scores[order], labels[order]) == a


def test_auroc_special_cases():
    labels = np.array([0, 0, 1, 1, 1])
    assert auroc(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), labels) == 1.0
    assert auroc(np.array([0.5, 0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert auroc(np.full(5, 0.3), labels) == 0.5
    assert auroc(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 1.0  # float labels
    assert auroc(np.array([3, 1, 2]), np.array([1, 0, 0])) == 1.0  # integer scores


def test_auroc_of_identical_distributions_is_one_half_in_expectation():
    gen = np.random.default_rng(0)
    values = [auroc(gen.standard_normal(40), np.arange(40) % 2) for _ in range(400)]
    # Under the null, Var(AUROC) = (n+ + n- + 1) / (12 n+ n-) (Mann-Whitney): sd 0.0924 here,
    # so the mean of 400 draws has standard error 0.0046.
    null_sd = math.sqrt(41 / (12 * 20 * 20))
    assert abs(np.mean(values) - 0.5) < 0.015
    assert np.std(values) == pytest.approx(null_sd, rel=0.15)


def test_auroc_on_every_backend(xpd):
    gen = np.random.default_rng(1)
    scores, labels = gen.integers(0, 5, 50).astype(float), np.arange(50) % 3 == 0
    want = auroc_pair_count(scores.tolist(), labels.tolist())
    assert auroc(xpd.put(scores), xpd.put(labels)) == pytest.approx(want, abs=1e-12)
    assert auroc(xpd.put(scores), xpd.put(labels.astype(np.int64))) == pytest.approx(want, abs=1e-12)


def pair_distances_naive(v1, v2, metric):
    a, b = v1.reshape(len(v1), -1), v2.reshape(len(v2), -1)

    def dist(u, w):
        if metric == "euclidean":
            return math.sqrt(sum((p - q) ** 2 for p, q in zip(u, w)))
        return 1.0 - float(u @ w) / (math.sqrt(float(u @ u)) * math.sqrt(float(w @ w)))

    pos = [dist(a[i], b[i]) for i in range(len(a))]  # Eq. 1
    neg = [dist(a[i], b[j]) for i in range(len(a)) for j in range(len(a)) if j != i]  # Eq. 2
    return np.array(pos), np.array(neg)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("shape", [(2, 3), (5, 4), (4, 1, 3, 3)])
def test_pair_distances_equal_eq_1_and_2_on_every_backend(xpd, metric, shape):
    gen = np.random.default_rng(2)
    v1, v2 = gen.uniform(0.1, 1.0, shape), gen.uniform(0.1, 1.0, shape)
    want_pos, want_neg = pair_distances_naive(v1, v2, metric)
    pos, neg = pair_distances(xpd.put(v1), xpd.put(v2), metric=metric)
    np.testing.assert_allclose(backend.to_numpy(pos), want_pos, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(neg), want_neg, atol=1e-12)


def test_identical_views_have_zero_positive_distance():
    x = np.random.default_rng(3).uniform(0, 1, (6, 1, 4, 4))
    pos, neg = pair_distances(x, x)
    assert np.all(pos == 0.0) and np.all(neg > 0.1)
    assert separation_score(pos, neg) == 1.0
    pos, _ = pair_distances(x, 2.0 * x, metric="cosine")
    np.testing.assert_allclose(pos, 0.0, atol=1e-15)


def test_gap_and_separation_match_their_definitions():
    gen = np.random.default_rng(4)
    pos, neg = gen.uniform(0, 1, 7), gen.uniform(0.3, 1.3, 12)
    assert distance_gap(pos, neg) == pytest.approx(neg.mean() - pos.mean(), abs=1e-15)
    want = auroc_pair_count(neg.tolist() + pos.tolist(), [True] * 12 + [False] * 7)
    assert separation_score(pos, neg) == pytest.approx(want, abs=1e-15)


def test_figure_is_a_png(tmp_path):
    gen = np.random.default_rng(5)
    groups = {"strong": (gen.uniform(0, 1, 20), gen.uniform(0.5, 1.5, 90)),
              "weak": (gen.uniform(0, 0.5, 20), gen.uniform(0.5, 1.5, 90)),
              "constant": (np.ones(3), np.ones(6))}
    path = pair_distance_figure(groups, tmp_path / "pairs.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.parametrize("call, match", [
    (lambda: auroc(np.array([0.1, 0.2]), np.array([1, 1])), "both classes"),
    (lambda: auroc(np.array([0.1, 0.2]), np.array([0, 2])), "labels must hold only 0 or 1"),
    (lambda: auroc(np.array([0.1, 0.2]), np.array([0, 1, 1])), "labels must have shape"),
    (lambda: auroc(np.array([[0.1, 0.2]]), np.array([0, 1])), "scores must have 1 dimensions"),
    (lambda: auroc(np.array([0.1, np.nan]), np.array([0, 1])), "scores must be finite"),
    (lambda: pair_distances(np.ones((3, 2)), np.ones((3, 3))), "view2 must have the shape of view1"),
    (lambda: pair_distances(np.ones((1, 2)), np.ones((1, 2))), "at least 2 images"),
    (lambda: pair_distances(np.ones(3), np.ones(3)), "at least 2 dimensions"),
    (lambda: pair_distances(np.zeros((2, 2)), np.ones((2, 2)), metric="cosine"), "non-zero rows"),
    (lambda: pair_distances(np.ones((2, 2)), np.ones((2, 2)), metric="manhattan"), "metric must be one of"),
    (lambda: pair_distance_figure({}, "x.png"), "at least one"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_weak_separates_pairs_better_than_strong_on_ordinal_severity_pixels():
    """Seed 003, Fig. 2a, on raw pixels: weak augmentation separates the pair distances better."""
    try:
        from data_synth import ordinal_severity
    except ImportError:
        pytest.skip("data_synth.ordinal_severity is not available")
    x = ordinal_severity(48, seed=0).images.astype(np.float64)
    for seed in range(2):
        score = {name: separation_score(*pair_distances(*two_views(x, name, seed))) for name in ("strong", "weak")}
        assert score["weak"] > score["strong"] + 0.03, score
