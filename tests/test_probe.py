"""Tests of refimpl.probe: logistic (gradient, optimum, Newton), ridge (lstsq), prediction head, grouped CV."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl.gradcheck import check_gradients, numerical_gradient
from refimpl.losses import cross_entropy
from refimpl.metrics import auroc, macro_recall
from refimpl.probe import (ConvergenceWarning, _head_backward, _head_forward, fit_logistic,
                           fit_prediction_head, fit_ridge, group_kfold, grouped_cv_logistic,
                           logistic_objective)


def blobs(n, d, k, *, spread=1.0, seed=0, imbalance=None):
    """``k`` Gaussian classes in ``d`` dimensions, class means ``spread`` apart on average."""
    gen = np.random.default_rng(seed)
    y = gen.choice(k, size=n, p=imbalance) if imbalance is not None else np.arange(n) % k
    centres = gen.standard_normal((k, d)) * spread / np.sqrt(2 * d)
    return centres[y] * np.sqrt(d) + gen.standard_normal((n, d)), y


def standardise(x):
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(x.max(axis=0) == x.min(axis=0), 1.0, sd)


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- logistic regression --------------------------------------------------------------------

problems = st.tuples(st.integers(2, 12), st.integers(1, 4), st.integers(2, 4), st.integers(0, 10**6),
                     st.sampled_from([1e-3, 0.1, 2.0]), st.booleans())


@given(problems)
@example((2, 1, 2, 0, 0.1, False))
def test_logistic_gradient_matches_central_differences(problem):
    n, d, k, seed, l2, weighted = problem
    gen = np.random.default_rng(seed)
    xs, y = gen.standard_normal((n, d)), gen.integers(0, k, n)
    weight = gen.uniform(0.2, 2.0, k) if weighted else None
    theta = gen.standard_normal(k * (d + 1))
    value, grad = logistic_objective(theta, xs, y, k, l2, weight)
    numeric = numerical_gradient(lambda t: np.asarray(logistic_objective(t, xs, y, k, l2, weight)[0]), [theta])[0]
    # central differences at h = 1e-6 carry ~1e-10 of rounding: small entries need an absolute tolerance
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    assert abs(np.sum(grad[k * d:])) < 1e-12  # the bias gradient sums to 0 (softmax ignores a common shift)


def newton_logistic(x, y, k, l2, iters=30):
    """Independent solver: Newton's method with the full Hessian, built sample by sample.

    The Hessian is singular along "add one constant to every bias"; the least-squares
    (minimum-norm) step never moves that way, so the biases keep summing to 0.
    """
    xs = standardise(x)
    n, d = xs.shape
    xa = np.hstack([xs, np.ones((n, 1))])  # (N, D + 1)
    penalty = np.diag([l2] * d + [0.0])
    theta = np.zeros((k, d + 1))  # row c: [w_c, b_c]
    for _ in range(iters):
        p = softmax(xa @ theta.T)
        grad = (p - np.eye(k)[y]).T @ xa / n + theta @ penalty
        hess = np.kron(np.eye(k), penalty)
        for i in range(n):
            hess += np.kron(np.diag(p[i]) - np.outer(p[i], p[i]), np.outer(xa[i], xa[i])) / n
        theta -= np.linalg.lstsq(hess, grad.ravel(), rcond=None)[0].reshape(k, d + 1)
    return theta[:, :d], theta[:, d], np.max(np.abs(grad))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logistic_agrees_with_newton_on_a_tiny_problem(seed):
    x, y = blobs(15, 3, 3, spread=2.0, seed=seed)
    x = x * np.array([1.0, 10.0, 0.1]) + 5.0  # scales that standardisation must undo
    probe = fit_logistic(x, y, l2=0.05, gtol=1e-10)
    w, b, newton_grad = newton_logistic(x, y, 3, 0.05)
    assert newton_grad < 1e-12 and probe.converged
    np.testing.assert_allclose(probe.weight, w, atol=1e-8)
    np.testing.assert_allclose(probe.bias, b, atol=1e-8)
    np.testing.assert_allclose(probe.predict_proba(x), softmax(standardise(x) @ w.T + b), atol=1e-9)


def test_logistic_reaches_the_optimum():
    x, y = blobs(300, 256, 4, spread=1.0, seed=3)
    probe = fit_logistic(x, y)
    theta = np.concatenate([probe.weight.ravel(), probe.bias])
    value, grad = logistic_objective(theta, standardise(x), y, 4, probe.l2)
    assert probe.converged and np.max(np.abs(grad)) < 1e-6
    assert value == pytest.approx(probe.objective, abs=1e-12)
    assert abs(np.sum(probe.bias)) < 1e-10
    gen = np.random.default_rng(0)
    for _ in range(5):  # convex: every nearby point is higher
        assert logistic_objective(theta + 1e-3 * gen.standard_normal(theta.shape), standardise(x), y, 4,
                                  probe.l2)[0] > value


def test_logistic_classifies_separable_and_near_separable_data():
    x, y = blobs(400, 256, 3, spread=6.0, seed=4)
    x_train, y_train, x_test, y_test = x[:300], y[:300], x[300:], y[300:]
    probe = fit_logistic(x_train, y_train)
    assert np.mean(probe.predict(x_train) == y_train) == 1.0
    assert np.mean(probe.predict(x_test) == y_test) >= 0.97
    flipped = y_train.copy()  # near-separable: 5 % of the training labels are wrong
    noisy = np.random.default_rng(0).choice(300, 15, replace=False)
    flipped[noisy] = (flipped[noisy] + 1) % 3
    assert np.mean(fit_logistic(x_train, flipped).predict(x_test) == y_test) >= 0.95
    proba = probe.predict_proba(x_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(np.argmax(proba, axis=1), probe.predict(x_test))


def test_logistic_invariances():
    x, y = blobs(60, 5, 3, spread=1.5, seed=5)
    probe = fit_logistic(x, y, gtol=1e-10)
    proba = probe.predict_proba(x)
    scale = np.array([3.0, -0.5, 100.0, 1e-3, 1.0])  # per-feature affine maps (sign flips too)
    rescaled = fit_logistic(x * scale + 7.0, y, gtol=1e-10)
    np.testing.assert_allclose(rescaled.predict_proba(x * scale + 7.0), proba, atol=1e-7)
    order = np.random.default_rng(0).permutation(60)
    np.testing.assert_allclose(fit_logistic(x[order], y[order], gtol=1e-10).predict_proba(x), proba, atol=1e-7)
    perm = np.array([2, 0, 1])  # class c renamed perm[c]: probability columns move with it
    renamed = fit_logistic(x, perm[y], gtol=1e-10).predict_proba(x)
    np.testing.assert_allclose(renamed[:, perm], proba, atol=1e-7)
    constant = np.hstack([x, np.full((60, 1), 0.1)])  # a constant feature carries nothing
    np.testing.assert_allclose(fit_logistic(constant, y, gtol=1e-10).predict_proba(constant), proba, atol=1e-7)


def test_logistic_penalty_and_class_weights():
    x, y = blobs(200, 10, 2, spread=1.0, seed=6, imbalance=[0.85, 0.15])
    strong, weak = fit_logistic(x, y, l2=10.0), fit_logistic(x, y, l2=1e-3)
    assert np.linalg.norm(strong.weight) < 0.2 * np.linalg.norm(weak.weight)
    plain, balanced = fit_logistic(x, y), fit_logistic(x, y, class_weight="balanced")
    assert macro_recall(y, balanced.predict(x)) > macro_recall(y, plain.predict(x))
    ones = fit_logistic(x, y, class_weight=np.ones(2))
    np.testing.assert_array_equal(ones.weight, plain.weight)  # unit weights: the same objective


def test_logistic_warns_when_not_converged_and_is_fast():
    x, y = blobs(400, 256, 5, spread=1.0, seed=7)
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        assert not fit_logistic(x, y, max_iter=2).converged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seconds = {}
        for name, fit in (("logistic", lambda: fit_logistic(x, y)), ("ridge", lambda: fit_ridge(x, y * 1.0))):
            seconds[name] = min(_timed(fit) for _ in range(3))
    # a few hundred samples x 256 features: well under a second each (~0.02 s and ~0.005 s
    # with one BLAS thread on a quiet machine). CPU seconds of this process, not wall time: other
    # programs on a loaded machine delay the fit without costing it CPU (wall time failed at a load
    # average of 15 on 2 cores)
    assert seconds["logistic"] < 1.0 and seconds["ridge"] < 1.0, seconds


def _timed(fn):
    start = time.process_time()
    fn()
    return time.process_time() - start


# --- ridge ----------------------------------------------------------------------------------

ridge_problems = st.tuples(st.integers(2, 20), st.integers(1, 8), st.integers(0, 10**6),
                           st.sampled_from([1e-6, 0.3, 1.0, 50.0]))


@given(ridge_problems)
@example((2, 8, 0, 1e-6))
def test_ridge_equals_lstsq_on_the_augmented_system(problem):
    n, d, seed, alpha = problem
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((n, d)) * gen.uniform(0.1, 10, d) + gen.uniform(-5, 5, d)
    y = gen.standard_normal(n)
    probe = fit_ridge(x, y, alpha=alpha)
    # min |y - [xs 1] [w; c]|^2 + alpha |w|^2 as one least-squares problem:
    # [[xs, 1], [sqrt(alpha) I, 0]] [w; c] ~ [y; 0]
    xs = standardise(x)
    a = np.block([[xs, np.ones((n, 1))], [np.sqrt(alpha) * np.eye(d), np.zeros((d, 1))]])
    solution = np.linalg.lstsq(a, np.concatenate([y, np.zeros(d)]), rcond=None)[0]
    np.testing.assert_allclose(probe.coef, solution[:d], rtol=1e-7, atol=1e-7)
    assert probe.intercept == pytest.approx(solution[d], abs=1e-7)
    np.testing.assert_allclose(probe.predict(x), xs @ solution[:d] + solution[d], atol=1e-7)


def test_ridge_limits_and_invariances():
    gen = np.random.default_rng(8)
    x = gen.standard_normal((50, 4)) * [1.0, 5.0, 0.2, 3.0]
    y = x @ np.array([1.0, -0.5, 2.0, 0.0]) + 0.1 * gen.standard_normal(50) + 3.0
    ols = np.linalg.lstsq(np.hstack([x, np.ones((50, 1))]), y, rcond=None)[0]
    np.testing.assert_allclose(fit_ridge(x, y, alpha=1e-9).predict(x), np.hstack([x, np.ones((50, 1))]) @ ols,
                               atol=1e-7)  # alpha -> 0: ordinary least squares
    flat = fit_ridge(x, y, alpha=1e9)  # alpha -> infinity: the mean
    np.testing.assert_allclose(flat.predict(x), np.mean(y), atol=1e-6)
    probe = fit_ridge(x, y)
    scaled = fit_ridge(x * [2.0, -1.0, 10.0, 0.5] - 4.0, y)
    np.testing.assert_allclose(scaled.predict(x * [2.0, -1.0, 10.0, 0.5] - 4.0), probe.predict(x), atol=1e-10)
    order = gen.permutation(50)
    np.testing.assert_allclose(fit_ridge(x[order], y[order]).predict(x), probe.predict(x), atol=1e-10)
    with_constant = fit_ridge(np.hstack([x, np.ones((50, 1))]), y)
    assert with_constant.coef[-1] == 0.0
    wide = fit_ridge(gen.standard_normal((10, 256)), gen.standard_normal(10))  # D > N
    assert np.all(np.isfinite(wide.coef))
    assert fit_ridge(x, np.arange(50)).predict(x).dtype == np.float64  # integer targets


# --- ConPro's prediction head ---------------------------------------------------------------


def test_head_backward_matches_central_differences():
    gen = np.random.default_rng(9)
    xs, y = gen.standard_normal((7, 5)), gen.integers(0, 3, 7)
    weight = np.array([1.0, 2.0, 0.5])
    names = ("fc1.w", "fc1.b", "fc2.w", "fc2.b")
    params = [gen.standard_normal((6, 5)), gen.standard_normal(6), gen.standard_normal((3, 6)), gen.standard_normal(3)]

    def forward(*arrays):  # dropout with a fixed int seed: the same mask in every call
        logits, cache = _head_forward(dict(zip(names, arrays)), xs, p=0.3, train=True, seed=1)
        loss, ccache = cross_entropy.forward(logits, y, weight)
        return loss, (cache, ccache)

    def backward(dout, caches):
        cache, ccache = caches
        grads = _head_backward(cross_entropy.backward(dout, ccache)[0], cache)
        return tuple(grads[name] for name in names)

    report = check_gradients(forward, backward, params)
    assert report.ok, str(report)


def test_head_is_deterministic_and_learns():
    x, y = blobs(150, 32, 3, spread=3.0, seed=10)
    head = fit_prediction_head(x, y, hidden=16, epochs=30, batch_size=32, seed=0)
    again = fit_prediction_head(x, y, hidden=16, epochs=30, batch_size=32, seed=0)
    other = fit_prediction_head(x, y, hidden=16, epochs=30, batch_size=32, seed=1)
    for name, value in head.params.items():
        assert np.array_equal(value, again.params[name])  # bit for bit
    assert np.array_equal(head.history, again.history)
    assert not np.array_equal(head.params["fc1.w"], other.params["fc1.w"])
    assert head.history[-1] < 0.5 * head.history[0]
    assert np.mean(head.predict(x) == y) >= 0.95
    assert head.params["fc1.w"].shape == (16, 32) and head.params["fc2.w"].shape == (3, 16)


def test_head_dropout_only_in_training():
    x, y = blobs(40, 6, 2, spread=2.0, seed=11)
    head = fit_prediction_head(x, y, hidden=8, epochs=5, seed=0, dropout=0.5)
    p = head.params
    xs = (x - head.mean) / head.scale
    manual = softmax(np.maximum(xs @ p["fc1.w"].T + p["fc1.b"], 0.0) @ p["fc2.w"].T + p["fc2.b"])
    np.testing.assert_allclose(head.predict_proba(x), manual, atol=1e-14)  # no mask, no rescaling
    assert np.array_equal(head.predict_proba(x), head.predict_proba(x))
    no_dropout = fit_prediction_head(x, y, hidden=8, epochs=5, seed=0, dropout=0.0)
    assert not np.array_equal(no_dropout.history, head.history)  # the masks changed the training


def test_head_class_weights_raise_minority_recall():
    x, y = blobs(300, 8, 2, spread=1.0, seed=12, imbalance=[0.9, 0.1])
    plain = fit_prediction_head(x, y, hidden=16, epochs=20, class_weight=None)
    balanced = fit_prediction_head(x, y, hidden=16, epochs=20)  # "balanced" by default, as ConPro
    assert np.mean(balanced.predict(x)[y == 1] == 1) > np.mean(plain.predict(x)[y == 1] == 1)


# --- grouped cross-validation ---------------------------------------------------------------

grouping = st.integers(2, 15).flatmap(lambda g: st.tuples(
    st.lists(st.integers(0, g - 1), min_size=g, max_size=60).map(lambda v: v + list(range(g))),  # all g occur
    st.integers(2, g), st.integers(0, 10**6), st.lists(st.integers(0, 2), min_size=g, max_size=g)))


@given(grouping)
@example(([0, 1], 2, 0, [0, 1]))
def test_group_kfold_partitions_whole_groups_in_balanced_folds(data):
    groups, k, seed, group_labels = np.array(data[0]), data[1], data[2], np.array(data[3])
    for labels in (None, group_labels[groups]):
        folds = group_kfold(groups, k, seed=seed, labels=labels)
        assert len(folds) == k
        tested = np.concatenate([test for _, test in folds])
        assert np.array_equal(np.sort(tested), np.arange(len(groups)))  # every sample tested once
        for train, test in folds:
            assert np.array_equal(np.union1d(train, test), np.arange(len(groups)))
            assert not set(groups[train]) & set(groups[test])  # no group on both sides
            assert np.all(np.diff(test) > 0) and test.dtype == np.int64
        counts = [len(set(groups[test])) for _, test in folds]
        assert max(counts) - min(counts) <= 1
        if labels is not None:  # stratified: every class spread evenly too
            for c in range(3):
                per_fold = [len(set(groups[test][labels[test] == c])) for _, test in folds]
                assert max(per_fold) - min(per_fold) <= 1
        again = group_kfold(groups, k, seed=seed, labels=labels)
        assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_group_kfold_hand_example_and_string_ids():
    folds = group_kfold(np.array(["p1", "p1", "p2", "p3", "p3", "p4"]), 2, seed=3)
    for train, test in folds:
        assert len(test) in (2, 3, 4) and len(train) + len(test) == 6
    shuffles = {tuple(group_kfold(np.arange(10), 2, seed=s)[0][1]) for s in range(5)}
    assert len(shuffles) > 1  # the seed matters


def grouped_cv_loop(x, y, groups, k, seed):
    """Independent aggregation: one probe per fold, then a Python loop over patients."""
    proba = {}
    for train, test in group_kfold(groups, k, seed=seed, labels=y):
        probe = fit_logistic(x[train], y[train], n_classes=int(y.max()) + 1)
        for i, p in zip(test, probe.predict_proba(x[test])):
            proba.setdefault(groups[i], []).append(p)
    ids = sorted(proba)
    return ids, np.array([np.mean(proba[g], axis=0) for g in ids])


def patients(n_patients, slices, d, *, signal, seed):
    """Slices of patients: a patient-specific random vector + (label signal) + slice noise."""
    gen = np.random.default_rng(seed)
    label = np.arange(n_patients) % 2
    gen.shuffle(label)
    groups = np.repeat(np.arange(n_patients), slices)
    identity = gen.standard_normal((n_patients, d)) * 2.0
    x = identity[groups] + signal * label[groups, None] + 0.3 * gen.standard_normal((len(groups), d))
    return x, label[groups], groups


def test_grouped_cv_averages_out_of_fold_probabilities_per_patient():
    x, y, groups = patients(20, 4, 6, signal=1.5, seed=13)
    cv = grouped_cv_logistic(x, y, groups, k=4, seed=2)
    ids, want = grouped_cv_loop(x, y, groups, 4, 2)
    assert cv.groups.tolist() == ids and cv.proba.shape == (20, 2)
    np.testing.assert_allclose(cv.proba, want, atol=1e-15)
    assert cv.labels.tolist() == [int(y[groups == g][0]) for g in ids]
    np.testing.assert_allclose(cv.proba.sum(axis=1), 1.0, atol=1e-12)
    assert auroc(cv.proba[:, 1], cv.labels) > 0.9


def test_grouped_cv_does_not_leak_patients():
    """Labels carried only by patient identity: sample-level folds leak it, patient-level folds do not."""
    x, y, groups = patients(40, 5, 64, signal=0.0, seed=14)
    leaky = grouped_cv_logistic(x, y, np.arange(len(y)), k=5)  # every slice its own "patient"
    honest = grouped_cv_logistic(x, y, groups, k=5)
    assert auroc(leaky.proba[:, 1], leaky.labels) > 0.99
    # chance level: AUROC of 20 vs 20 patients under the null has sd 0.09
    assert auroc(honest.proba[:, 1], honest.labels) < 0.75


# --- bad input ------------------------------------------------------------------------------

X, Y = np.random.default_rng(0).standard_normal((6, 3)), np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("call, match", [
    (lambda: fit_logistic(X[:, 0], Y), "x must have 2 dimensions"),
    (lambda: fit_logistic(X, Y[:5]), "y has 5 rows, expected 6"),
    (lambda: fit_logistic(X, Y * 1.0), "y must hold integer class indices"),
    (lambda: fit_logistic(X, Y - 1), "y must hold class indices >= 0"),
    (lambda: fit_logistic(X, np.zeros(6, int)), "at least 2 classes"),
    (lambda: fit_logistic(X, 2 * (Y > 0)), r"no sample of class \[1\]"),
    (lambda: fit_logistic(X, Y, n_classes=2), "outside \\[0, n_classes=2\\)"),
    (lambda: fit_logistic(np.where(X > 1, np.nan, X), Y), "x must be finite"),
    (lambda: fit_logistic(X, Y, l2=0.0), "l2 must be a finite number > 0"),
    (lambda: fit_logistic(X, Y, max_iter=0), "max_iter must be an integer >= 1"),
    (lambda: fit_logistic(X, Y, class_weight="auto"), "class_weight must be None, 'balanced'"),
    (lambda: fit_logistic(X, Y, class_weight=np.ones(2)), "class_weight must have shape"),
    (lambda: fit_logistic(X, Y).predict(X[:, :2]), "x has 2 features .* fitted on 3"),
    (lambda: fit_logistic(np.zeros((0, 3)), np.zeros(0, int)), "x must not be empty"),
    (lambda: fit_ridge(X, Y[:4] * 1.0), "y has 4 rows"),
    (lambda: fit_ridge(X, Y, alpha=-1.0), "alpha must be a finite number > 0"),
    (lambda: fit_ridge(X, np.array(["a"] * 6)), "y must have a real"),
    (lambda: fit_ridge(X, Y * 1.0).predict(X[:, :1]), "fitted on 3"),
    (lambda: fit_prediction_head(X, Y, dropout=1.0), "dropout must be in \\[0, 1\\)"),
    (lambda: fit_prediction_head(X, Y, hidden=0), "hidden must be an integer >= 1"),
    (lambda: fit_prediction_head(X, Y, batch_size=0), "batch_size must be an integer >= 1"),
    (lambda: fit_prediction_head(X, Y, lr=-1.0), "lr must be a finite number >= 0"),
    (lambda: group_kfold([0, 1, 2], 4), "k must be at most the number of groups \\(3\\)"),
    (lambda: group_kfold([0, 1, 2], 1), "k must be an integer >= 2"),
    (lambda: group_kfold([], 2), "groups must not be empty"),
    (lambda: group_kfold([0, 0, 1], 2, labels=[0, 1, 1]), "labels must be constant within each group; group 0"),
    (lambda: group_kfold([0, 1], 2, labels=[0]), "labels has 1 rows, expected 2"),
    (lambda: grouped_cv_logistic(X, Y, np.array([0, 0, 1, 1, 2, 2])), "y must be constant within each group"),
    (lambda: grouped_cv_logistic(X, Y, np.arange(5)), "groups has 5 rows, expected 6"),
    (lambda: grouped_cv_logistic(X, Y, np.arange(6), k=3, stratify=False, seed=1),
     "leaves no training sample of class"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
