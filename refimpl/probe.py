"""Probes on frozen features: logistic regression, ridge, ConPro's prediction head, grouped CV.

A representation is judged by what a small model trained on top of it can
read off: the encoder is frozen, features ``x`` (N, D) are extracted once, and
a probe is fitted on them.

* :func:`fit_logistic`: multinomial logistic regression with an L2 penalty,
  minimised by L-BFGS (``scipy.optimize``) with the analytic gradient (WSP's
  "regularized logistic regression on the frozen representations").
* :func:`fit_ridge`: ridge regression in closed form (a continuous target).
* :func:`fit_prediction_head`: ConPro's prediction head, Linear-ReLU-Dropout-Linear
  trained with class-weighted cross-entropy and AdamW, from refimpl's layers,
  loss and optimiser.
* :func:`group_kfold` and :func:`grouped_cv_logistic`: k-fold cross-validation
  in which all samples of a patient (or subject) fall in one fold, and the
  out-of-fold probabilities of a patient's samples (slices) are averaged:
  WSP's patient-level evaluation (Sarfati et al., MICCAI 2023, Sec. 3).

Everything runs on the host in float64: features from any backend are copied
to NumPy. Every probe standardises the features with the training mean and
standard deviation (a constant feature is centred and left unscaled), so the
penalties ``l2`` and ``alpha`` mean the same whatever the feature scale, and
the fitted probe applies the same map to new features. Class labels are
integer indices ``0 .. K-1``.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import NamedTuple

import numpy as np
from scipy import linalg, optimize

from . import backend
from ._validate import check_array, check_integer, check_nonnegative, check_positive, check_same_length
from .layers import dropout as dropout_layer
from .layers import linear, relu
from .losses import cross_entropy
from .losses._common import log_softmax
from .model import mlp_head
from .optim import AdamW


class ConvergenceWarning(UserWarning):
    """L-BFGS stopped before its gradient tolerance was met (e.g. ``max_iter`` reached)."""


# --- input checks and standardisation -------------------------------------------------------


def _features(name, x, n_features=None) -> np.ndarray:
    """``x`` as a float64 (N, D) host array, N >= 1, finite; D checked against ``n_features``."""
    x = backend.to_numpy(x)
    check_array(name, x, ndim=2, floating=False)
    if x.dtype.kind not in "iuf":
        raise TypeError(f"{name} must have a real (integer or floating) dtype, got {x.dtype}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"{name} has {x.shape[1]} features (columns), the probe was fitted on {n_features}")
    return x.astype(np.float64)


def _class_targets(y, n, n_classes=None):
    """``y`` as int64 class indices (N,) and the number of classes K; every class must occur."""
    y = backend.to_numpy(y)
    check_array("y", y, ndim=1, floating=False)
    check_same_length("y", y, "x", n)
    if y.dtype.kind not in "biu":
        raise TypeError(f"y must hold integer class indices (integer or bool dtype), got {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"y must hold class indices >= 0, got {int(y.min())}")
    k = int(y.max()) + 1 if n_classes is None else check_integer("n_classes", n_classes, minimum=2)
    if y.max() >= k:
        raise ValueError(f"y holds class {int(y.max())}, outside [0, n_classes={k})")
    if k < 2:
        raise ValueError("y must hold at least 2 classes, got only class 0")
    missing = np.flatnonzero(np.bincount(y, minlength=k) == 0)
    if missing.size:
        raise ValueError(f"y has no sample of class {missing.tolist()} in [0, {k}): "
                         "a probe cannot learn a class it never sees")
    return y, k


def _class_weight(class_weight, y, k):
    """None, ``"balanced"`` (``N / (K N_c)``, sklearn's estimate) or a non-negative array (K,)."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or an array of {k} weights, "
                             f"got {class_weight!r}")
        return y.shape[0] / (k * np.bincount(y, minlength=k))
    w = backend.to_numpy(class_weight)
    check_array("class_weight", w, shape=(k,))
    if np.any(w < 0):
        raise ValueError("class_weight must be >= 0 for every class")
    return w.astype(np.float64)


def _standardiser(x):
    """Training mean and scale (sd; 1 for a constant column, which would otherwise divide 0 by 0)."""
    constant = np.max(x, axis=0) == np.min(x, axis=0)  # exact test: sd of a constant column may round to 1e-17
    return np.mean(x, axis=0), np.where(constant, 1.0, np.std(x, axis=0))


# --- logistic regression --------------------------------------------------------------------


def logistic_objective(theta, xs, y, n_classes, l2, weight=None):
    """Value and gradient of the L2-regularised multinomial logistic loss at ``theta``.

    ``theta = concat(W.ravel(), b)`` with ``W`` (K, D), ``b`` (K,); ``xs``
    (N, D) standardised features, ``y`` (N,) class indices.

    .. math::
        f(W, b) = \\frac{\\sum_n w_{y_n} \\big(-\\log \\mathrm{softmax}(W x_n + b)_{y_n}\\big)}
                       {\\sum_n w_{y_n}} + \\frac{\\lambda}{2} \\lVert W \\rVert_F^2

    In plain text:
    ``f(W, b) = sum_n w[y_n] (-log softmax(W x_n + b)[y_n]) / sum_n w[y_n] + (lambda / 2) ||W||_F^2``.

    The data term and its gradient come from :mod:`refimpl.losses.cross_entropy`
    (class weights ``w``, all 1 by default) and :mod:`refimpl.layers.linear`;
    the biases are not penalised (the intercept of sklearn and of most
    statistics texts). ``f`` is strictly convex in ``W``; the biases are
    determined up to a common shift (softmax ignores it), and the gradient
    of ``b`` always sums to 0, so L-BFGS from ``b = 0`` keeps ``sum(b) = 0``.

    Returns
    -------
    (float, numpy.ndarray (K * (D + 1),))
    """
    n, d = xs.shape
    w, b = theta[: n_classes * d].reshape(n_classes, d), theta[n_classes * d:]
    logits, lcache = linear.forward(xs, w, b, input_grad=False)  # (N, K)
    loss, ccache = cross_entropy.forward(logits, y, weight)
    _, dw, db = linear.backward(cross_entropy.backward(1.0, ccache)[0], lcache)
    value = float(loss) + 0.5 * l2 * float(np.sum(w * w))
    return value, np.concatenate([(dw + l2 * w).ravel(), db])


def _standardised(probe, x):
    return (_features("x", x, probe.mean.shape[0]) - probe.mean) / probe.scale


@dataclasses.dataclass(frozen=True)
class LogisticProbe:
    """A fitted multinomial logistic regression (see :func:`fit_logistic`).

    ``mean``, ``scale`` (D,): the standardisation; ``weight`` (K, D), ``bias``
    (K,): the model on standardised features; ``n_iter``, ``converged``: the
    L-BFGS run; ``objective``: the minimised value of
    :func:`logistic_objective`.
    """

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    l2: float
    n_iter: int
    converged: bool
    objective: float

    def decision_function(self, x) -> np.ndarray:
        """Logits (N, K) of features ``x`` (N, D)."""
        return _standardised(self, x) @ self.weight.T + self.bias  # (N, D) @ (D, K) -> (N, K)

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities (N, K), rows sum to 1 (softmax of the logits)."""
        return np.exp(log_softmax(self.decision_function(x))[0])

    def predict(self, x) -> np.ndarray:
        """Most probable class (N,), int64 (ties: the lowest class index)."""
        return np.argmax(self.decision_function(x), axis=1)


def fit_logistic(x, y, *, l2=1e-2, max_iter=500, n_classes=None, class_weight=None,
                 gtol=1e-6) -> LogisticProbe:
    """Multinomial L2-regularised logistic regression on standardised features, by L-BFGS.

    Minimises :func:`logistic_objective` (mean cross-entropy + ``l2/2 |W|^2``)
    from ``W = 0, b = 0`` with ``scipy.optimize.minimize(method="L-BFGS-B")``
    and the analytic gradient, until the largest gradient entry is below
    ``gtol`` (or the relative decrease of ``f`` is at rounding level). The
    features are standardised with the training mean and sd. Two classes use
    the same softmax model (K = 2), equal to the sigmoid model with
    ``w = w_1 - w_0``. Deterministic: no random start.

    Parameters
    ----------
    x : array (N, D), real, finite
    y : array (N,), integer class indices; every class in ``[0, K)`` must occur
    l2 : float > 0
        Penalty on the weights (not the biases). Must be positive: on
        separable data the unpenalised optimum lies at infinity.
    max_iter : int >= 1
        L-BFGS iterations; a :class:`ConvergenceWarning` is issued when the
        tolerance is not met.
    n_classes : int, optional
        K (default: largest label + 1).
    class_weight : None, "balanced" or array (K,)
        Weights of the cross-entropy (weighted mean, as PyTorch).
    gtol : float > 0
        Tolerance on the largest absolute gradient entry.

    Returns
    -------
    LogisticProbe

    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> probe = fit_logistic(x, np.array([0, 0, 1, 1]), l2=0.1)
    >>> probe.predict(np.array([[0.2], [2.8]])).tolist()
    [0, 1]
    >>> probe.predict_proba(np.array([[1.5]])).round(4).tolist()     # the midpoint: undecided
    [[0.5, 0.5]]
    >>> probe.converged, round(probe.objective, 4)
    (True, 0.3042)
    """
    x = _features("x", x)
    y, k = _class_targets(y, x.shape[0], n_classes)
    l2 = check_positive("l2", l2)
    max_iter = check_integer("max_iter", max_iter, minimum=1)
    gtol = check_positive("gtol", gtol)
    weight = _class_weight(class_weight, y, k)
    mean, scale = _standardiser(x)
    xs = (x - mean) / scale
    d = x.shape[1]
    result = optimize.minimize(
        logistic_objective, np.zeros(k * (d + 1)), args=(xs, y, k, l2, weight), jac=True,
        method="L-BFGS-B", options={"maxiter": max_iter, "gtol": gtol, "ftol": 1e-15})
    converged = bool(np.max(np.abs(result.jac)) <= gtol or result.success)
    if not converged:
        warnings.warn(f"fit_logistic: L-BFGS stopped after {result.nit} iterations with gradient "
                      f"{np.max(np.abs(result.jac)):.2e} > gtol {gtol:g} ({result.message}); "
                      "raise max_iter or l2", ConvergenceWarning, stacklevel=2)
    theta = result.x
    return LogisticProbe(mean, scale, theta[: k * d].reshape(k, d), theta[k * d:], l2,
                         int(result.nit), converged, float(result.fun))


# --- ridge regression -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RidgeProbe:
    """A fitted ridge regression (see :func:`fit_ridge`): ``y = ((x - mean) / scale) @ coef + intercept``."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float

    def predict(self, x) -> np.ndarray:
        """Predictions (N,) for features ``x`` (N, D)."""
        return _standardised(self, x) @ self.coef + self.intercept


def fit_ridge(x, y, *, alpha=1.0) -> RidgeProbe:
    """Ridge regression on standardised features, closed form.

    .. math::
        \\min_{w, c} \\sum_n (y_n - \\tilde x_n^\\top w - c)^2 + \\alpha \\lVert w \\rVert^2
        \\;\\Rightarrow\\; c = \\bar y,\\quad
        (\\tilde X^\\top \\tilde X + \\alpha I)\\, w = \\tilde X^\\top (y - \\bar y)

    In plain text: minimise ``sum_n (y_n - x~_n . w - c)^2 + alpha ||w||^2``, so ``c = mean(y)`` and
    ``(X~^T X~ + alpha I) w = X~^T (y - mean(y))``,

    with ``x~`` the features standardised by the training mean and sd (so
    the columns of ``X~`` have mean 0 and the intercept decouples). The
    penalty is on the sum, not the mean, of the squared errors (sklearn's
    ``Ridge``); the intercept is not penalised. The (D, D) system is solved
    by Cholesky (``scipy.linalg.solve``, ``assume_a="pos"``).

    Parameters
    ----------
    x : array (N, D), real, finite
    y : array (N,), real, finite
    alpha : float > 0 (positive so that the system is non-singular, also for D > N)

    Returns
    -------
    RidgeProbe

    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> probe = fit_ridge(x, np.array([1.0, 3.0, 5.0, 7.0]), alpha=1.0)
    >>> round(float(probe.coef[0]), 4), probe.intercept      # slope 2 * sd(x) * N / (N + alpha)
    (1.7889, 4.0)
    >>> probe.predict(np.array([[1.5]])).tolist()
    [4.0]
    """
    x = _features("x", x)
    y = backend.to_numpy(y)
    check_array("y", y, ndim=1, floating=False)
    check_same_length("y", y, "x", x.shape[0])
    if y.dtype.kind not in "iuf":
        raise TypeError(f"y must have a real (integer or floating) dtype, got {y.dtype}")
    y = y.astype(np.float64)
    alpha = check_positive("alpha", alpha)
    mean, scale = _standardiser(x)
    xs = (x - mean) / scale
    intercept = float(np.mean(y))
    gram = xs.T @ xs + alpha * np.eye(x.shape[1])  # (D, D)
    coef = linalg.solve(gram, xs.T @ (y - intercept), assume_a="pos")
    return RidgeProbe(mean, scale, coef, intercept, alpha)


# --- ConPro's prediction head ---------------------------------------------------------------


def _head_forward(params, x, *, p, train, seed=None):
    """Linear-ReLU-Dropout-Linear; logits (N, K) and the caches of the four layers."""
    h, c1 = linear.forward(x, params["fc1.w"], params["fc1.b"], input_grad=False)  # (N, H)
    a, c2 = relu.forward(h)
    a, c3 = dropout_layer.forward(a, p=p, train=train, seed=seed)
    logits, c4 = linear.forward(a, params["fc2.w"], params["fc2.b"])  # (N, K)
    return logits, (c1, c2, c3, c4)


def _head_backward(dlogits, cache):
    c1, c2, c3, c4 = cache
    da, dw2, db2 = linear.backward(dlogits, c4)
    (da,) = dropout_layer.backward(da, c3)
    (dh,) = relu.backward(da, c2)
    _, dw1, db1 = linear.backward(dh, c1)
    return {"fc1.w": dw1, "fc1.b": db1, "fc2.w": dw2, "fc2.b": db2}


@dataclasses.dataclass(frozen=True)
class HeadProbe:
    """A trained prediction head (see :func:`fit_prediction_head`).

    ``params``: ``fc1.w`` (H, D), ``fc1.b``, ``fc2.w`` (K, H), ``fc2.b``;
    ``history`` (epochs,): mean training loss of each epoch (dropout on).
    """

    mean: np.ndarray
    scale: np.ndarray
    params: dict
    dropout: float
    history: np.ndarray

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities (N, K), evaluation mode (no dropout)."""
        logits, _ = _head_forward(self.params, _standardised(self, x), p=self.dropout, train=False)
        return np.exp(log_softmax(logits)[0])

    def predict(self, x) -> np.ndarray:
        """Most probable class (N,), int64."""
        logits, _ = _head_forward(self.params, _standardised(self, x), p=self.dropout, train=False)
        return np.argmax(logits, axis=1)


def fit_prediction_head(x, y, *, hidden=128, dropout=0.1, epochs=100, lr=1e-3, batch_size=64,
                        class_weight="balanced", seed=0, weight_decay=1e-2, n_classes=None) -> HeadProbe:
    """ConPro's prediction head on frozen features (Nguyen et al., CVPR-W 2024, Sec. 4).

    The paper: "a 2-layer MLP with a hidden dimension of 256. The activation
    function is ReLU, and we use 10% dropout. [...] since both datasets are
    unbalanced, we use Cross Entropy with estimated class weights". Here:
    ``Linear(D, hidden) - ReLU - Dropout(dropout) - Linear(hidden, K)`` on
    standardised features, He-initialised (:func:`refimpl.model.mlp_head`),
    trained with :mod:`refimpl.losses.cross_entropy` (weighted mean over each
    minibatch, as PyTorch) and :class:`refimpl.optim.AdamW` at a constant
    ``lr``. ``hidden`` defaults to 128 (the paper's 256 is for 2048-d ResNet
    features; ours are smaller). ``class_weight="balanced"`` is
    ``N / (K N_c)``, the usual estimate (the paper does not give its formula).

    One generator seeded by ``seed`` draws, in order, the initial weights,
    then per epoch a permutation of the samples (minibatches of
    ``batch_size``, the last one smaller) and the dropout masks, so a seed
    gives the same head bit for bit. Dropout acts in training only.

    Parameters
    ----------
    x : array (N, D); y : array (N,) class indices, every class present
    hidden, epochs, batch_size : int >= 1
    dropout : float in [0, 1)
    lr, weight_decay : float >= 0 (AdamW)
    class_weight : "balanced", None or array (K,)
    seed : int
    n_classes : int, optional (default: largest label + 1)

    Returns
    -------
    HeadProbe

    >>> import numpy as np
    >>> x = np.array([[0.0, 1.0], [0.2, 0.9], [1.0, 0.0], [0.9, 0.1]])
    >>> head = fit_prediction_head(x, np.array([0, 0, 1, 1]), hidden=8, epochs=50, lr=1e-2)
    >>> head.predict(x).tolist(), bool(head.history[-1] < head.history[0])
    ([0, 0, 1, 1], True)
    """
    x = _features("x", x)
    y, k = _class_targets(y, x.shape[0], n_classes)
    hidden = check_integer("hidden", hidden, minimum=1)
    epochs = check_integer("epochs", epochs, minimum=1)
    batch_size = check_integer("batch_size", batch_size, minimum=1)
    dropout = check_nonnegative("dropout", dropout)
    if dropout >= 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    lr = check_nonnegative("lr", lr)
    weight = _class_weight(class_weight, y, k)
    mean, scale = _standardiser(x)
    xs = (x - mean) / scale
    gen = np.random.default_rng(seed)
    params = mlp_head(x.shape[1], hidden, k).init(gen, "float64")
    opt = AdamW(weight_decay=weight_decay)
    state = opt.init_state(params)
    n = x.shape[0]
    history = np.empty(epochs)
    for epoch in range(epochs):
        order = gen.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            logits, cache = _head_forward(params, xs[batch], p=dropout, train=True, seed=gen)
            loss, ccache = cross_entropy.forward(logits, y[batch], weight)
            grads = _head_backward(cross_entropy.backward(1.0, ccache)[0], cache)
            params, state = opt.step(params, grads, state, lr=lr)
            total += float(loss) * batch.shape[0]
        history[epoch] = total / n
    return HeadProbe(mean, scale, params, dropout, history)


# --- cross-validation grouped by patient ----------------------------------------------------


def _group_values(name, values, inverse, groups):
    """The one value of ``values`` in each group (G,); ValueError if a group holds two."""
    per_group = np.empty(groups.shape[0], dtype=values.dtype)
    per_group[inverse] = values  # any member's value; checked to be every member's below
    differ = per_group[inverse] != values
    if np.any(differ):
        bad = inverse[np.argmax(differ)]  # index of the first group found with two values
        found = np.unique(values[inverse == bad]).tolist()
        raise ValueError(f"{name} must be constant within each group; group {groups[bad].item()!r} "
                         f"has {name} {found}")
    return per_group


def _groups(groups, n=None):
    g = backend.to_numpy(groups)
    check_array("groups", g, ndim=1, floating=False)
    if g.shape[0] == 0:
        raise ValueError("groups must not be empty")
    if n is not None:
        check_same_length("groups", g, "x", n)
    return np.unique(g, return_inverse=True)  # (G,), (N,)


def group_kfold(groups, k=5, *, seed=0, labels=None):
    """Split samples into ``k`` folds of whole groups (patients): no group in two folds.

    The ``G`` distinct groups are shuffled by a generator seeded with ``seed``
    and dealt round-robin into the folds, so every fold holds ``floor(G/k)``
    or ``ceil(G/k)`` groups (balanced in groups, not in samples, unlike
    sklearn's ``GroupKFold``). With ``labels`` (one label per sample,
    constant within a group) the folds are also stratified: the shuffled
    groups are dealt class after class, continuing the round-robin, so each
    fold holds ``floor`` or ``ceil`` of ``G_c / k`` groups of every class
    ``c`` (WSP's "stratified 5-fold cross-validation", by patient).

    Parameters
    ----------
    groups : array (N,), the group (patient id) of each sample; any sortable dtype
    k : int, 2 <= k <= G
    seed : int
    labels : array (N,), optional; stratify by this group-level label

    Returns
    -------
    list of k ``(train_idx, test_idx)`` pairs of sorted int64 sample indices;
    each sample is in exactly one ``test_idx``

    >>> folds = group_kfold([0, 0, 1, 1, 2, 3, 3], k=2, seed=0)
    >>> [(train.tolist(), test.tolist()) for train, test in folds]
    [([0, 1, 5, 6], [2, 3, 4]), ([2, 3, 4], [0, 1, 5, 6])]
    """
    uniq, inverse = _groups(groups)
    n_groups = uniq.shape[0]
    k = check_integer("k", k, minimum=2)
    if k > n_groups:
        raise ValueError(f"k must be at most the number of groups ({n_groups}), got {k}")
    order = np.random.default_rng(seed).permutation(n_groups)
    if labels is not None:
        lab = backend.to_numpy(labels)
        check_array("labels", lab, ndim=1, floating=False)
        check_same_length("labels", lab, "groups", inverse.shape[0])
        group_label = _group_values("labels", lab, inverse, uniq)
        order = order[np.argsort(group_label[order], kind="stable")]  # classes in turn, shuffled within
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    fold_of_group[order] = np.arange(n_groups) % k
    fold = fold_of_group[inverse]  # (N,)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


class GroupedCV(NamedTuple):
    """Out-of-fold predictions aggregated per group: ``groups`` (G,) sorted ids, ``labels`` (G,),
    ``proba`` (G, K) = mean over the group's samples of the out-of-fold class probabilities."""

    groups: np.ndarray
    labels: np.ndarray
    proba: np.ndarray


def grouped_cv_logistic(x, y, groups, *, k=5, l2=1e-2, seed=0, stratify=True, max_iter=500,
                        class_weight=None) -> GroupedCV:
    """WSP's patient-level evaluation: grouped k-fold logistic probes, probabilities averaged per patient.

    Sarfati et al. (MICCAI 2023), Sec. 3: a regularised logistic regression
    is trained on frozen slice representations in "stratified 5-fold
    cross-validation"; "as we work with 2D slices rather than 3D volumes, we
    compute the average probability per patient of having the pathology.
    The evaluation results [...] are based on the patient-level aggregated
    prediction." Folds come from :func:`group_kfold` (stratified by the
    patient label when ``stratify``), so no patient is in both the training
    and the test part of a fold; each fold's probe is :func:`fit_logistic`
    on the other folds; a patient's probability is the mean over its slices:

    .. math::
        \\bar p_{g} = \\frac{1}{|S_g|} \\sum_{n \\in S_g} p^{(-f(g))}(x_n)

    where ``p^(-f)`` is the probe trained without fold ``f``. Score the result
    with e.g. ``auroc(cv.proba[:, 1], cv.labels)``.

    Parameters
    ----------
    x : array (N, D); y : array (N,) class indices, constant within a group
    groups : array (N,), the patient of each sample
    k, l2, seed, max_iter, class_weight : as :func:`group_kfold` / :func:`fit_logistic`
    stratify : bool, stratify the folds by the patients' labels

    Returns
    -------
    GroupedCV

    >>> import numpy as np
    >>> x = np.array([[0.0], [0.2], [1.0], [1.1], [0.1], [0.3], [0.9], [1.2]])
    >>> cv = grouped_cv_logistic(x, np.array([0, 0, 1, 1, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 2, 3, 3]), k=2)
    >>> cv.groups.tolist(), cv.labels.tolist(), cv.proba.argmax(axis=1).tolist()
    ([0, 1, 2, 3], [0, 1, 0, 1], [0, 1, 0, 1])
    """
    x = _features("x", x)
    y, n_classes = _class_targets(y, x.shape[0])
    uniq, inverse = _groups(groups, x.shape[0])
    group_label = _group_values("y", y, inverse, uniq)
    folds = group_kfold(groups, k, seed=seed, labels=y if stratify else None)
    proba = np.empty((x.shape[0], n_classes))
    for f, (train, test) in enumerate(folds):
        absent = np.flatnonzero(np.bincount(y[train], minlength=n_classes) == 0)
        if absent.size:
            raise ValueError(f"fold {f} leaves no training sample of class {absent.tolist()}: "
                             "too few groups of that class for k folds")
        probe = fit_logistic(x[train], y[train], l2=l2, max_iter=max_iter, n_classes=n_classes,
                             class_weight=class_weight)
        proba[test] = probe.predict_proba(x[test])
    sums = np.zeros((uniq.shape[0], n_classes))
    np.add.at(sums, inverse, proba)  # (G, K) per-group sums
    return GroupedCV(uniq, group_label, sums / np.bincount(inverse)[:, None])
