"""Tests of refimpl.metrics: AUROC against pair counts and the ROC trapezoid, pair distances of Cheng et al."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, example, given
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


# --- classification: confusion matrix, macro F1, macro recall, balanced accuracy ------------

from scipy import stats  # noqa: E402

from refimpl.metrics import (aupr, balanced_accuracy, confusion_matrix, kendall, macro_f1,  # noqa: E402
                             macro_recall, mae, maee, r2, rmse, spearman)

class_pairs = st.integers(1, 5).flatmap(lambda k: st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
    st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
    st.permutations(range(k)),
)))

HAND_TRUE, HAND_PRED = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]


def per_class_loop(y_true, y_pred):
    """Precision, recall and F1 of every class present in either vector, by counting samples."""
    out = {}
    for c in sorted(set(y_true) | set(y_pred)):
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        n_pred, n_true = sum(p == c for p in y_pred), sum(t == c for t in y_true)
        precision = tp / n_pred if n_pred else None  # 0/0: undefined
        recall = tp / n_true if n_true else None
        f1 = 0.0 if not precision or not recall else 2 * precision * recall / (precision + recall)
        out[c] = precision, recall, f1
    return out


def test_classification_metrics_on_a_hand_computed_example():
    assert confusion_matrix(HAND_TRUE, HAND_PRED).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    # F1 per class: 2 TP / (2 TP + FP + FN) = 2/4, 2/3, 4/5; recall per class: 1/2, 1, 2/3
    assert macro_f1(HAND_TRUE, HAND_PRED) == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3, abs=1e-15)
    assert macro_recall(HAND_TRUE, HAND_PRED) == pytest.approx((1 / 2 + 1 + 2 / 3) / 3, abs=1e-15)
    assert balanced_accuracy(HAND_TRUE, HAND_PRED) == pytest.approx((1 / 2 + 1 + 2 / 3) / 3, abs=1e-15)
    c = confusion_matrix(np.array(HAND_TRUE), np.array(HAND_PRED), n_classes=5)
    assert c.shape == (5, 5) and c.dtype == np.int64 and c[3:].sum() == 0 and c[:, 3:].sum() == 0
    # classes 3 and 4 occur nowhere: left out of the means, not counted as 0
    assert macro_f1(HAND_TRUE, HAND_PRED, n_classes=5) == macro_f1(HAND_TRUE, HAND_PRED)
    assert macro_recall(HAND_TRUE, HAND_PRED, n_classes=5) == macro_recall(HAND_TRUE, HAND_PRED)


def test_classification_edge_conventions():
    # class 1 is never predicted: its F1 is 0 (precision 0/0), class 0 has F1 2*2/(2*2+1) = 0.8
    assert macro_f1([0, 0, 1], [0, 0, 0]) == pytest.approx(0.4, abs=1e-15)
    # class 2 is predicted but never true: F1 0 and no recall (left out of the recall mean)
    assert macro_f1([0, 1], [0, 2]) == pytest.approx((1 + 0 + 0) / 3, abs=1e-15)
    assert macro_recall([0, 1], [0, 2]) == 0.5 == balanced_accuracy([0, 1], [0, 2])
    # a single class in y_true is fine for recall (= accuracy)
    assert macro_recall([1, 1, 1, 1], [1, 0, 1, 1]) == 0.75 == balanced_accuracy([1, 1, 1, 1], [1, 0, 1, 1])
    assert macro_f1([2, 2], [2, 2]) == 1.0 and macro_recall([True, False], [True, False]) == 1.0


@given(class_pairs)
@example(([0], [0], [0]))
@example(([0, 1, 1], [1, 1, 1], [1, 0]))
def test_f1_and_recall_equal_per_class_loops_and_recall_equals_balanced_accuracy(data):
    y_true, y_pred, _ = data
    loop = per_class_loop(y_true, y_pred)
    want_f1 = np.mean([f1 for _, _, f1 in loop.values()])
    want_recall = np.mean([r for _, r, _ in loop.values() if r is not None])
    assert macro_f1(y_true, y_pred) == pytest.approx(want_f1, abs=1e-12)
    assert macro_recall(y_true, y_pred) == pytest.approx(want_recall, abs=1e-12)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(macro_recall(y_true, y_pred), abs=1e-12)
    c = confusion_matrix(y_true, y_pred)
    assert c.sum() == len(y_true) and np.trace(c) == sum(t == p for t, p in zip(y_true, y_pred))
    assert c.sum(axis=1).tolist() == np.bincount(y_true, minlength=len(c)).tolist()
    assert c.sum(axis=0).tolist() == np.bincount(y_pred, minlength=len(c)).tolist()
    assert 0.0 <= macro_f1(y_true, y_pred) <= 1.0 and 0.0 <= macro_recall(y_true, y_pred) <= 1.0


@given(class_pairs)
def test_classification_metrics_invariant_to_sample_order_and_class_names(data):
    y_true, y_pred, perm = np.array(data[0]), np.array(data[1]), np.array(data[2])
    k = len(perm)
    order = np.random.default_rng(len(y_true)).permutation(len(y_true))
    renamed_true, renamed_pred = perm[y_true], perm[y_pred]  # class c is now called perm[c]
    c = confusion_matrix(y_true, y_pred, n_classes=k)
    c_renamed = confusion_matrix(renamed_true, renamed_pred, n_classes=k)
    assert np.array_equal(c_renamed[np.ix_(perm, perm)], c)
    assert np.array_equal(confusion_matrix(y_true[order], y_pred[order], n_classes=k), c)
    for metric in (macro_f1, macro_recall, balanced_accuracy):
        got = metric(y_true, y_pred, n_classes=k)
        assert metric(y_true[order], y_pred[order], n_classes=k) == pytest.approx(got, abs=1e-12)
        assert metric(renamed_true, renamed_pred, n_classes=k) == pytest.approx(got, abs=1e-12)


@given(st.lists(st.booleans(), min_size=2, max_size=30).filter(lambda y: 0 < sum(y) < len(y)),
       st.lists(st.booleans(), min_size=30, max_size=30))
def test_binary_balanced_accuracy_is_mean_of_sensitivity_and_specificity(y_true, y_pred):
    t, p = np.array(y_true), np.array(y_pred[:len(y_true)])
    sensitivity, specificity = np.mean(p[t]), np.mean(~p[~t])
    assert balanced_accuracy(t, p) == pytest.approx((sensitivity + specificity) / 2, abs=1e-12)


# --- MAEE (ConPro Eq. 5) --------------------------------------------------------------------


def test_maee_hand_example_and_conpro_fig5_point():
    assert maee([0, 1, 2, 3], [0, 2, 2, 0]) == pytest.approx((1 + math.e + 1 + math.e ** 3) / 4, abs=1e-14)
    assert maee([3, 1], [3, 1]) == 1.0  # perfect: e^0, not 0
    # ConPro Fig. 5: two predictions with the same macro F1; calling a grade-4 case grade 0
    # costs e^4 against e^1 for calling it grade 3
    y = [0, 1, 2, 3, 4]
    near, far = [0, 1, 2, 3, 3], [0, 1, 2, 3, 0]
    assert macro_f1(y, near) == pytest.approx(macro_f1(y, far), abs=1e-15)
    assert maee(y, near) == pytest.approx((4 + math.e) / 5, abs=1e-14)
    assert maee(y, far) == pytest.approx((4 + math.e ** 4) / 5, abs=1e-14)


@given(class_pairs)
def test_maee_from_the_confusion_matrix_and_jensen(data):
    y_true, y_pred, _ = np.array(data[0]), np.array(data[1]), data[2]
    c = confusion_matrix(y_true, y_pred)
    i, j = np.indices(c.shape)
    got = maee(y_true, y_pred)
    assert got == pytest.approx(np.sum(c * np.exp(np.abs(i - j))) / len(y_true), rel=1e-12)
    assert got >= math.exp(mae(y_true, y_pred)) * (1 - 1e-12)  # Jensen: mean e^|d| >= e^mean|d|
    assert (got == 1.0) == bool(np.all(y_true == y_pred))
    assert maee(y_pred, y_true) == got and maee(y_true + 7, y_pred + 7) == got  # symmetric, shift-free
    order = np.random.default_rng(1).permutation(len(y_true))
    assert maee(y_true[order], y_pred[order]) == pytest.approx(got, rel=1e-12)


# --- AUPR (average precision) ---------------------------------------------------------------


def aupr_stepwise(scores, labels):
    """Brute force: at every distinct score, from high to low, add (R_k - R_{k-1}) P_k."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= t
        precision, recall = np.mean(labels[chosen]), np.sum(labels[chosen]) / np.sum(labels)
        total += (recall - prev_recall) * precision
        prev_recall = recall
    return total


def aupr_per_positive(scores, labels):
    """Mean over the positives of the precision of the rule 'score >= that positive's score'."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    return np.mean([np.mean(labels[scores >= s]) for s in scores[labels]])


def test_aupr_hand_examples():
    # thresholds 0.8 (P 1, R 1/2), 0.4 (P 1/2, R 1/2), 0.35 (P 2/3, R 1), 0.1 (P 1/2, R 1)
    assert aupr([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(1 / 2 + 1 / 2 * 2 / 3, abs=1e-15)
    assert aupr([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0  # perfect ranking
    assert aupr([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx((1 / 3 + 2 / 4) / 2, abs=1e-15)
    assert aupr(np.full(5, 2.0), np.array([True, False, True, False, False])) == pytest.approx(0.4, abs=1e-15)


@given(scored_labels)
@example(([3, 3], [True, False]))
@example(([0, 1, 2], [False, True, False]))
def test_aupr_equals_stepwise_sum_and_per_positive_precision(data):
    scores, labels = data
    got = aupr(np.array(scores, float), np.array(labels))
    assert got == pytest.approx(aupr_stepwise(scores, labels), abs=1e-12)
    assert got == pytest.approx(aupr_per_positive(scores, labels), abs=1e-12)
    assert 0.0 < got <= 1.0


@given(scored_labels)
def test_aupr_invariant_to_sample_order_and_monotone_transforms(data):
    scores, labels = np.array(data[0], float), np.array(data[1])
    a = aupr(scores, labels)
    assert aupr(2.0 * scores ** 3 + scores + 7.0, labels) == a
    assert aupr(np.exp(scores), labels) == pytest.approx(a, abs=1e-15)
    order = np.random.default_rng(len(scores)).permutation(len(scores))
    assert aupr(scores[order], labels[order]) == pytest.approx(a, abs=1e-15)
    assert aupr(scores, labels.astype(np.int64)) == a and aupr(list(scores), list(labels)) == a


def test_aupr_of_a_random_scorer_is_the_prevalence_in_expectation():
    gen = np.random.default_rng(0)
    labels = np.arange(60) % 4 == 0  # prevalence 0.25
    values = [aupr(gen.standard_normal(60), labels) for _ in range(300)]
    # AP of random scores has mean slightly above the prevalence for finite samples
    # (about 0.27 at n+ = 15); sd about 0.06 here, so the mean of 300 draws is within 0.01
    assert 0.25 < np.mean(values) < 0.30


# --- regression: MAE, RMSE, R2 --------------------------------------------------------------

hundredths = st.integers(-10_000, 10_000).map(lambda v: v / 100)  # [-100, 100], no values near underflow
real_pairs = st.integers(2, 30).flatmap(lambda n: st.tuples(
    st.lists(hundredths, min_size=n, max_size=n).filter(lambda v: len(set(v)) > 1),
    st.lists(hundredths, min_size=n, max_size=n),
))


def test_regression_metrics_hand_examples():
    t, p = [1.0, 2.0, 3.0], [1.5, 2.0, 1.0]  # errors 0.5, 0, 2
    assert mae(t, p) == pytest.approx(2.5 / 3, abs=1e-15)
    assert rmse(t, p) == pytest.approx(math.sqrt(4.25 / 3), abs=1e-15)
    assert r2(t, p) == pytest.approx(1 - 4.25 / 2, abs=1e-15)
    assert r2(t, t) == 1.0 and mae(t, t) == 0.0 == rmse(t, t)
    assert mae([0, 0], [1, -1]) == 1.0 == rmse([0, 0], [1, -1])  # equal |errors|: RMSE = MAE


@given(real_pairs)
@example(([0.0, 1.0], [0.0, 1.0]))
def test_regression_metrics_independent_formulas(data):
    t, p = np.array(data[0]), np.array(data[1])
    err = t - p
    assert mae(t, p) == pytest.approx(sum(abs(e) for e in err) / len(t), rel=1e-12, abs=1e-12)
    assert rmse(t, p) >= mae(t, p) * (1 - 1e-12)  # Cauchy-Schwarz
    assert r2(t, p) == pytest.approx(1 - np.mean(err ** 2) / np.var(t), rel=1e-9, abs=1e-9)
    assert r2(t, np.full_like(t, np.mean(t))) == 0.0  # the mean predictor
    assert r2(3.0 * t - 1.0, 3.0 * p - 1.0) == pytest.approx(r2(t, p), rel=1e-9, abs=1e-9)
    order = np.random.default_rng(len(t)).permutation(len(t))
    assert rmse(t[order], p[order]) == pytest.approx(rmse(t, p), rel=1e-12, abs=1e-12)


@given(real_pairs)
def test_r2_of_the_least_squares_line_is_squared_pearson(data):
    x, y = np.array(data[1]), np.array(data[0])
    assume(np.ptp(x) > 1e-3)  # a line through (almost) constant x is ill-conditioned
    slope, intercept = np.polyfit(x, y, 1)
    assert r2(y, slope * x + intercept) == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, abs=1e-8)


# --- rank correlation -----------------------------------------------------------------------

rank_pairs = st.integers(2, 30).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-5, 5), min_size=n, max_size=n).filter(lambda v: len(set(v)) > 1),
    st.lists(st.integers(-5, 5), min_size=n, max_size=n).filter(lambda v: len(set(v)) > 1),
))


def kendall_tau_b_pairs(x, y):
    """Brute force tau-b: concordant minus discordant pairs over the tie-corrected pair count."""
    n0 = nc = nd = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            n0 += 1
            s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
            nc, nd = nc + (s > 0), nd + (s < 0)
            ties_x, ties_y = ties_x + (x[i] == x[j]), ties_y + (y[i] == y[j])
    return (nc - nd) / math.sqrt((n0 - ties_x) * (n0 - ties_y))


def test_rank_correlation_hand_examples():
    x, y = [1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 20.0, 40.0]  # ranks 1 2 3 4 / 1 3 2 4
    assert spearman(x, y) == pytest.approx(1 - 6 * 2 / (4 * 15), abs=1e-15)  # 1 - 6 sum d^2 / n(n^2-1)
    assert kendall(x, y) == pytest.approx((5 - 1) / 6, abs=1e-15)
    assert spearman(x, [4, 3, 2, 1]) == pytest.approx(-1.0, abs=1e-15)
    assert kendall(x, np.exp(x)) == pytest.approx(1.0, abs=1e-15)


@given(rank_pairs)
@example(([0, 1], [1, 0]))
def test_spearman_is_pearson_of_ranks_and_kendall_is_pair_count(data):
    x, y = np.array(data[0], float), np.array(data[1], float)
    ranks_x, ranks_y = stats.rankdata(x), stats.rankdata(y)
    assert spearman(x, y) == pytest.approx(np.corrcoef(ranks_x, ranks_y)[0, 1], abs=1e-12)
    assert kendall(x, y) == pytest.approx(kendall_tau_b_pairs(x, y), abs=1e-12)


@given(rank_pairs)
def test_rank_correlations_invariant_to_monotone_transforms_and_order(data):
    x, y = np.array(data[0], float), np.array(data[1], float)
    order = np.random.default_rng(len(x)).permutation(len(x))
    for metric in (spearman, kendall):
        r = metric(x, y)
        assert -1.0 <= r <= 1.0
        assert metric(np.exp(x), 2.0 * y ** 3 + y) == pytest.approx(r, abs=1e-12)
        assert metric(x[order], y[order]) == pytest.approx(r, abs=1e-12)
        assert metric(y, x) == pytest.approx(r, abs=1e-12)
        assert metric(x, -y) == pytest.approx(-r, abs=1e-12)


def test_host_metrics_accept_every_backend(xpd):
    t, p = np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 1, 1])
    assert macro_f1(xpd.put(t), xpd.put(p)) == macro_f1(t, p)
    assert maee(xpd.put(t), xpd.put(p)) == maee(t, p)
    s = np.array([0.3, 0.1, 0.9, 0.5, 0.2])
    assert aupr(xpd.put(s), xpd.put(t == 2)) == aupr(s, t == 2)
    assert spearman(xpd.put(s), xpd.put(p)) == spearman(s, p)


@pytest.mark.parametrize("call, match", [
    (lambda: confusion_matrix([0, 1], [0, 1, 1]), "y_pred has 3 rows, expected 2"),
    (lambda: confusion_matrix([], []), "y_true must not be empty"),
    (lambda: confusion_matrix([0, -1], [0, 1]), "y_true must hold class indices >= 0"),
    (lambda: confusion_matrix([0, 1], [0, 3], n_classes=3), "y_pred holds class 3, outside"),
    (lambda: confusion_matrix([0.0, 1.0], [0, 1]), "y_true must hold integer class indices"),
    (lambda: confusion_matrix([[0, 1]], [[0, 1]]), "y_true must have 1 dimensions"),
    (lambda: macro_f1([0, 1], [0, 1], n_classes=0), "n_classes must be an integer >= 1"),
    (lambda: macro_recall(["a", "b"], [0, 1]), "y_true must hold integer class indices"),
    (lambda: balanced_accuracy([0, 1], [1]), "y_pred has 1 rows"),
    (lambda: maee([1.0, np.nan], [1.0, 2.0]), "y_true must be finite"),
    (lambda: maee([1.0, 2.0], [1.0, np.inf]), "y_pred must be finite"),
    (lambda: aupr([0.1, 0.2], [1, 1]), "both classes"),
    (lambda: aupr([0.1, 0.2], [0, 2]), "labels must hold only 0 or 1"),
    (lambda: aupr([0.1, 0.2, 0.3], [0, 1]), "labels has 2 rows, expected 3"),
    (lambda: aupr([0.1, np.nan], [0, 1]), "scores must be finite"),
    (lambda: mae([1.0], []), "y_pred must not be empty"),
    (lambda: rmse(["a"], [1.0]), "y_true must have a real"),
    (lambda: r2([2.0, 2.0], [1.0, 2.0]), "y_true is constant"),
    (lambda: spearman([1.0, 2.0], [3.0, 3.0]), "y is constant"),
    (lambda: kendall([1.0], [2.0]), "at least 2 samples"),
    (lambda: kendall([1.0, 2.0, 3.0], [1.0, 2.0]), "y has 2 rows, expected 3"),
])
def test_bad_input_to_host_metrics_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
