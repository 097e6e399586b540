"""Evaluation metrics: classification, ranking, regression, and the pair-distance diagnostic.

Classification on class indices ``0 .. K-1`` (rows of the confusion matrix are
the true class): :func:`confusion_matrix`, :func:`macro_f1`,
:func:`macro_recall`, :func:`balanced_accuracy`, and MAEE (ConPro, Nguyen et
al. 2024, Eq. 5), the ordinal error of severity grades. Binary scores:
:func:`auroc`, :func:`aupr`. Regression: :func:`mae`, :func:`rmse`,
:func:`r2`. Rank correlation: :func:`spearman`, :func:`kendall`
(``scipy.stats``). These run on the host: any array (NumPy, CuPy,
array_api_strict) or list is copied to NumPy first, and each returns a
Python float (the confusion matrix an int64 NumPy array). Bad input (empty,
lengths that differ, NaN, labels out of range, a metric undefined on the
data such as R2 of a constant target) raises ValueError or TypeError naming
the argument; nothing is dropped or clipped.

The pair-distance diagnostic follows Cheng et al. ("Enhancing
Contrastive Learning for Retinal Imaging via Adjusted Augmentation Scales",
arXiv 2501.02451), Sec. 2.1, Eq. 1-3 and Fig. 2: two augmented views
``x^1_i``, ``x^2_i`` of every image ``i``; positive pairs are the two views of
one image, negative pairs a first view of image ``i`` with a second view of
image ``j != i``. Distances are taken on raw pixels (flattened) or on
embeddings. The separation score is the AUROC of negative-pair against
positive-pair distances: the probability that a random negative pair lies
farther apart than a random positive pair (ties count one half).

:func:`auroc` and the pair distances run on the arrays' own backend with
standard functions; only the returned scalars are copied to the host.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from . import backend
from ._validate import check_array, check_choice, check_integer, check_same_length, check_unit_interval

METRICS = ("euclidean", "cosine")


def auroc(scores, labels) -> float:
    """Area under the ROC curve, by the Mann-Whitney rank-sum, ties as mid-ranks.

    .. math::
        \\mathrm{AUROC} = \\frac{R_+ - n_+ (n_+ + 1) / 2}{n_+ n_-}
        = \\frac{1}{n_+ n_-} \\sum_{i: y_i = 1} \\sum_{j: y_j = 0}
          \\Big([s_i > s_j] + \\tfrac12 [s_i = s_j]\\Big)

    In plain text: ``AUROC = (R+ - n+ (n+ + 1) / 2) / (n+ n-)``, the fraction of (positive,
    negative) pairs ordered right, ties counting 1/2,

    where ``R_+`` is the sum of the (1-based, mid-rank) ranks of the positive
    scores among all scores. The mid-rank of ``s`` is
    ``(#{s' < s} + #{s' <= s} + 1) / 2``, read off the sorted scores with two
    ``searchsorted`` calls (no Python loop, no data-dependent shapes).

    Parameters
    ----------
    scores : array (M,), real; larger means "more positive"
    labels : array (M,), bool or 0/1; both classes must be present

    Returns
    -------
    float in [0, 1]

    >>> import numpy as np
    >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    >>> auroc(np.array([1.0, 1.0, 2.0]), np.array([1, 0, 1]))
    0.75
    """
    check_array("scores", scores, ndim=1, floating=False)
    xp = backend.namespace(scores)
    if not xp.isdtype(scores.dtype, ("integral", "real floating")):
        raise TypeError(f"scores must have a real dtype, got {scores.dtype}")
    check_unit_interval("labels", labels, binary=True)
    if labels.shape != scores.shape:
        raise ValueError(f"labels must have shape {tuple(scores.shape)} (one per score), got {tuple(labels.shape)}")
    positive = labels if xp.isdtype(labels.dtype, "bool") else labels == 1
    n_pos = int(xp.sum(xp.astype(positive, xp.int64)))
    n_neg = scores.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"labels must contain both classes, got {n_pos} positive and {n_neg} negative")
    ordered = xp.sort(scores)
    below = xp.searchsorted(ordered, scores, side="left")  # (M,) #{s' < s}
    upto = xp.searchsorted(ordered, scores, side="right")  # (M,) #{s' <= s}
    twice_rank = xp.astype(below + upto + 1, xp.float64)  # 2 x mid-rank, exact
    rank_sum = xp.sum(xp.where(positive, twice_rank, 0.0)) / 2.0
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _flat(name, v):
    check_array(name, v)
    if v.ndim < 2:
        raise ValueError(f"{name} must have shape (N, ...) with at least 2 dimensions, got {tuple(v.shape)}")
    xp = backend.namespace(v)
    return xp.reshape(v, (v.shape[0], -1))  # (N, D)


def pair_distances(view1, view2, *, metric="euclidean"):
    """Positive- and negative-pair distances of Cheng et al., Eq. 1 and Eq. 2.

    .. math::
        \\mathrm{Dis}(P^+_i) = \\lVert x^1_i - x^2_i \\rVert \\quad (1), \\qquad
        \\mathrm{Dis}(P^-_{ij}) = \\lVert x^1_i - x^2_j \\rVert, \\; j \\ne i \\quad (2)

    The paper prints ``| . |``; we read it as the Euclidean norm, the distance
    of its Fig. 2. ``metric="cosine"`` uses ``1 - cos(x^1, x^2)`` instead (for
    embeddings). Every ordered pair ``(i, j)``, ``i != j``, is one negative
    pair (the paper samples them; we take them all).

    Euclidean negatives use the Gram expansion
    ``|a|^2 + |b|^2 - 2 a.b``, floored at 0 before the square root because
    rounding can make it slightly negative; positives are computed from the
    differences directly, so two identical views give exactly 0.

    Parameters
    ----------
    view1, view2 : arrays (N, ...) of the same shape, N >= 2: first and second
        views (images (N, C, H, W) or embeddings (N, D)); flattened per row
    metric : "euclidean" or "cosine" (rows must be non-zero)

    Returns
    -------
    positive : array (N,), ``positive[i] = Dis(P^+_i)``
    negative : array (N * (N - 1),), row-major over ``i``, then ``j != i``

    >>> import numpy as np
    >>> a = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> pos, neg = pair_distances(a, a + 1.0)
    >>> pos.round(4).tolist(), neg.round(4).tolist()
    ([1.4142, 1.4142], [6.4031, 3.6056])
    """
    check_choice("metric", metric, METRICS)
    a, b = _flat("view1", view1), _flat("view2", view2)
    if tuple(view1.shape) != tuple(view2.shape):
        raise ValueError(f"view2 must have the shape of view1 {tuple(view1.shape)}, got {tuple(view2.shape)}")
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"view1 must hold at least 2 images to form negative pairs, got {n}")
    xp = backend.namespace(a, b)
    cross = xp.matmul(a, xp.permute_dims(b, (1, 0)))  # (N, N): a_i . b_j
    sq_a = xp.sum(a * a, axis=1)  # (N,)
    sq_b = xp.sum(b * b, axis=1)
    if metric == "euclidean":
        positive = xp.sqrt(xp.sum((a - b) ** 2, axis=1))
        full = xp.sqrt(xp.maximum(sq_a[:, None] + sq_b[None, :] - 2.0 * cross, 0.0))
    else:
        if not bool(xp.all(sq_a > 0) & xp.all(sq_b > 0)):
            raise ValueError("cosine distance needs non-zero rows in view1 and view2")
        na, nb = xp.sqrt(sq_a), xp.sqrt(sq_b)
        positive = 1.0 - xp.sum(a * b, axis=1) / (na * nb)
        full = 1.0 - cross / (na[:, None] * nb[None, :])
    # Off-diagonal entries: drop the first element of the flattened (N, N)
    # matrix; the rest splits into N - 1 rows of N + 1 that each end on a diagonal entry.
    off = xp.reshape(xp.reshape(full, (-1,))[1:], (n - 1, n + 1))[:, :n]  # (N - 1, N)
    return positive, xp.reshape(off, (-1,))


def distance_gap(positive, negative) -> float:
    """The quantity Cheng et al.'s Eq. 3 maximises, averaged over pairs.

    .. math::
        f^* = \\arg\\max_f \\big(\\mathrm{Dis}(P^-) - \\mathrm{Dis}(P^+)\\big) \\quad (3),
        \\qquad \\mathrm{gap} = \\overline{\\mathrm{Dis}(P^-)} - \\overline{\\mathrm{Dis}(P^+)}

    Eq. 3 compares one negative with one positive distance; its expectation
    over pairs is the difference of the means, which is what we return.

    >>> import numpy as np
    >>> distance_gap(np.array([1.0, 2.0]), np.array([4.0, 5.0, 6.0]))
    3.5
    """
    check_array("positive", positive, ndim=1)
    check_array("negative", negative, ndim=1)
    xp = backend.namespace(positive, negative)
    return float(xp.mean(negative) - xp.mean(positive))


def separation_score(positive, negative) -> float:
    """AUROC of negative- against positive-pair distances: ``P(Dis(P^-) > Dis(P^+))``.

    1 when every negative pair is farther apart than every positive pair,
    0.5 when the two distributions coincide; ties count one half.

    >>> import numpy as np
    >>> separation_score(np.array([1.0, 2.0]), np.array([1.5, 3.0]))
    0.75
    """
    check_array("positive", positive, ndim=1)
    check_array("negative", negative, ndim=1)
    xp = backend.namespace(positive, negative)
    scores = xp.concat([negative, positive])
    labels = xp.concat([xp.ones_like(negative), xp.zeros_like(positive)])
    return auroc(scores, labels)


def pair_distance_figure(groups, path, *, bins=40, title="Pair distances"):
    """Histograms of positive- and negative-pair distances, one panel per group (Fig. 2a of Cheng et al.).

    Parameters
    ----------
    groups : mapping name -> (positive (N,), negative (M,)), e.g. one per preset
    path : where the PNG is written (matplotlib, Agg canvas, no pyplot state)
    bins : histogram bins shared by the two distributions of a panel

    Returns
    -------
    path

    >>> import numpy as np, os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "pairs.png")
    >>> pair_distance_figure({"weak": (np.array([1.0, 1.2]), np.array([3.0, 2.5]))}, out) == out
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not groups:
        raise ValueError("groups must hold at least one (positive, negative) pair of arrays")
    fig = Figure(figsize=(4.8, 2.6 * len(groups)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 1, squeeze=False, sharex=True)[:, 0]
    data = {name: (backend.to_numpy(p), backend.to_numpy(n)) for name, (p, n) in groups.items()}
    lo = min(min(p.min(), n.min()) for p, n in data.values())  # one axis: panels comparable
    hi = max(max(p.max(), n.max()) for p, n in data.values())
    edges = [lo + (hi - lo) * k / bins for k in range(bins + 1)] if hi > lo else bins
    for ax, (name, (pos, neg)) in zip(axes, data.items()):
        score = separation_score(pos, neg)
        ax.hist(pos, bins=edges, density=True, alpha=0.6, label="positive pairs")
        ax.hist(neg, bins=edges, density=True, alpha=0.6, label="negative pairs")
        ax.set_title(f"{name}\nseparation AUROC {score:.3f}", fontsize=8)
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    axes[-1].set_xlabel("distance (shared axis)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


# --- host metrics: classification, ranking, regression ------------------------------------


def _host_vector(name, a, *, kind):
    """``a`` copied to a 1-D NumPy array, checked: non-empty, finite, and of ``kind``.

    ``kind="class"``: integer or bool dtype, values >= 0, returned as int64.
    ``kind="real"``: bool, integer or real floating dtype, returned as float64.
    """
    v = backend.to_numpy(a)
    check_array(name, v, ndim=1, floating=False)
    if v.shape[0] == 0:
        raise ValueError(f"{name} must not be empty")
    if kind == "class":
        if v.dtype.kind not in "biu":
            raise TypeError(f"{name} must hold integer class indices (integer or bool dtype), got {v.dtype}")
        if v.min() < 0:
            raise ValueError(f"{name} must hold class indices >= 0, got {int(v.min())}")
        return v.astype(np.int64)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real (bool, integer or floating) dtype, got {v.dtype}")
    return v.astype(np.float64)


def _real_pair(y_true, y_pred, names=("y_true", "y_pred")):
    t = _host_vector(names[0], y_true, kind="real")
    p = check_same_length(names[1], _host_vector(names[1], y_pred, kind="real"), names[0], t.shape[0])
    return t, p


def _class_pair(y_true, y_pred, n_classes):
    """Both label vectors as int64 and the number of classes ``K`` (given, or the largest label + 1)."""
    t = _host_vector("y_true", y_true, kind="class")
    p = check_same_length("y_pred", _host_vector("y_pred", y_pred, kind="class"), "y_true", t.shape[0])
    if n_classes is None:
        return t, p, int(max(t.max(), p.max())) + 1
    k = check_integer("n_classes", n_classes, minimum=1)
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.max() >= k:
            raise ValueError(f"{name} holds class {int(v.max())}, outside [0, n_classes={k})")
    return t, p, k


def confusion_matrix(y_true, y_pred, *, n_classes=None):
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as class ``j``.

    .. math::
        C_{ij} = \\#\\{n : y_n = i,\\ \\hat y_n = j\\}

    Parameters
    ----------
    y_true, y_pred : array-like (N,), integer class indices >= 0
    n_classes : int, optional
        ``K``; by default the largest label in either vector + 1. Labels must
        lie in ``[0, K)``.

    Returns
    -------
    numpy.ndarray (K, K), int64; rows: true class, columns: predicted class

    >>> confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]).tolist()
    [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    >>> confusion_matrix([1, 1], [1, 0], n_classes=3).tolist()
    [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    """
    t, p, k = _class_pair(y_true, y_pred, n_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)  # flat index i * K + j -> (K, K)


def macro_f1(y_true, y_pred, *, n_classes=None) -> float:
    """Unweighted mean over classes of the F1 score (ConPro's "macro F1", Table 1).

    .. math::
        F_1^{(c)} = \\frac{2\\,TP_c}{2\\,TP_c + FP_c + FN_c}, \\qquad
        \\mathrm{macro\\text{-}F_1} = \\frac{1}{|\\mathcal C|} \\sum_{c \\in \\mathcal C} F_1^{(c)}

    In plain text: ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``, ``macro-F1 = mean_c F1_c``.

    ``2TP / (2TP + FP + FN)`` is the harmonic mean of precision and recall
    wherever both are defined. Edge conventions: a class that is never
    predicted (precision 0/0) or never true (recall 0/0) but occurs in the
    other vector has ``TP = 0`` and so F1 = 0 (sklearn's ``zero_division=0``);
    the set :math:`\\mathcal C` holds the classes that occur in ``y_true`` or
    ``y_pred``: a class absent from both has F1 = 0/0 and is left out, also
    when ``n_classes`` names it (the explicit ``n_classes`` only bounds the labels).

    >>> round(macro_f1([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]), 4)   # (1/2 + 2/3 + 4/5) / 3
    0.6556
    >>> macro_f1([0, 0, 1], [0, 0, 0])                               # class 1 never predicted: F1 0
    0.4
    """
    c = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    tp = np.diag(c).astype(np.float64)
    denom = c.sum(axis=1) + c.sum(axis=0)  # 2TP + FP + FN = support + predicted count
    present = denom > 0
    return float(np.mean(2.0 * tp[present] / denom[present]))


def macro_recall(y_true, y_pred, *, n_classes=None) -> float:
    """Unweighted mean over the classes present in ``y_true`` of the recall ``TP_c / N_c``.

    .. math::
        \\mathrm{macro\\ recall} = \\frac{1}{|\\mathcal C|} \\sum_{c \\in \\mathcal C}
            \\frac{C_{cc}}{\\sum_j C_{cj}}, \\qquad \\mathcal C = \\{c : N_c > 0\\}

    In plain text: ``macro recall = mean over classes c with N_c > 0 of C[c, c] / sum_j C[c, j]``,

    ConPro's "Recall" (Table 1) next to macro F1. A class with no true sample
    has recall 0/0 and is left out (predictions of it still lower the recall
    of the true classes). Equal to :func:`balanced_accuracy`.

    >>> round(macro_recall([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]), 4)   # (1/2 + 1 + 2/3) / 3
    0.7222
    """
    c = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    support = c.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(c)[present] / support[present]))


def balanced_accuracy(y_true, y_pred, *, n_classes=None) -> float:
    """Accuracy with each sample weighted by one over its class count (WSP, Table 2 "bACC").

    .. math::
        \\mathrm{bACC} = \\frac{\\sum_n [\\hat y_n = y_n] / N_{y_n}}{\\sum_n 1 / N_{y_n}}

    In plain text: ``bACC = sum_n [yhat_n == y_n] / N_{y_n}  /  sum_n 1 / N_{y_n}``,

    where ``N_c`` is the number of samples of true class ``c`` (the
    denominator is the number of classes present in ``y_true``). It equals
    :func:`macro_recall` (the mean of the per-class recalls); computed here
    from the samples rather than the confusion matrix. For two classes:
    (sensitivity + specificity) / 2.

    >>> round(balanced_accuracy([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]), 4)
    0.7222
    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])                  # (1 + 0) / 2
    0.5
    """
    t, p, _ = _class_pair(y_true, y_pred, n_classes)
    weight = 1.0 / np.bincount(t)[t]  # (N,) 1 / N_{y_n}
    return float(np.sum(weight * (t == p)) / np.sum(weight))


def maee(y_true, y_pred) -> float:
    """Mean Absolute Exponential Error of severity grades, ConPro (Nguyen et al. 2024) Eq. 5.

    .. math::
        \\mathrm{MAEE} = \\frac{1}{n} \\sum_{i=1}^{n} e^{|y_i - \\hat y_i|} \\quad (5)

    In plain text: ``MAEE = mean_i exp(|y_i - yhat_i|)``.

    The error grows exponentially with the distance between true and
    predicted grade, so a grade-4 case called grade 0 costs ``e^4 = 54.6``
    against ``e^1 = 2.7`` for an off-by-one. A perfect prediction scores 1,
    not 0 (``e^0 = 1``); the paper's Table 1 values (2.4 to 6.4) are on this
    scale. By Jensen's inequality MAEE >= exp(MAE). Grades are real numbers
    (class indices or any ordinal scale).

    >>> round(maee([0, 1, 2, 3], [0, 2, 2, 0]), 4)      # (1 + e + 1 + e^3) / 4
    6.201
    >>> maee([2, 1], [2, 1])
    1.0
    """
    t, p = _real_pair(y_true, y_pred)
    return float(np.mean(np.exp(np.abs(t - p))))


def aupr(scores, labels) -> float:
    """Area under the precision-recall curve, as average precision (step-wise, no interpolation).

    .. math::
        \\mathrm{AP} = \\sum_k (R_k - R_{k-1})\\, P_k

    In plain text: ``AP = sum_k (R_k - R_{k-1}) P_k``,

    over the thresholds ``t_k`` = the distinct scores in decreasing order,
    where ``P_k`` and ``R_k`` are the precision and recall of the rule
    ``score >= t_k`` and ``R_0 = 0``. Tied scores enter together (one
    threshold), so the result does not depend on the order of the samples.
    This is sklearn's ``average_precision_score``; the trapezoid rule on the
    PR curve is avoided because it is optimistic. A random scorer gives the
    prevalence ``n_+ / N`` in expectation, as do constant scores exactly.

    Parameters
    ----------
    scores : array-like (M,), real; larger means "more positive"
    labels : array-like (M,), bool or 0/1; both classes must be present

    >>> round(aupr([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 4)   # 0.5 * 1 + 0.5 * 2/3
    0.8333
    >>> aupr([1.0, 1.0, 1.0, 1.0], [0, 1, 0, 0])              # all tied: the prevalence
    0.25
    """
    s = _host_vector("scores", scores, kind="real")
    y = backend.to_numpy(labels)
    check_unit_interval("labels", y, binary=True)
    check_same_length("labels", y, "scores", s.shape[0])
    y = y.astype(np.float64)
    n_pos = float(np.sum(y))
    if n_pos == 0 or n_pos == y.shape[0]:
        raise ValueError(f"labels must contain both classes, got {int(n_pos)} positive of {y.shape[0]}")
    order = np.argsort(-s, kind="stable")  # decreasing score
    s, y = s[order], y[order]
    last = np.append(s[1:] != s[:-1], True)  # (M,) last sample of each tie block = one threshold
    tp = np.cumsum(y)[last]
    fp = np.cumsum(1.0 - y)[last]
    precision, recall = tp / (tp + fp), tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def mae(y_true, y_pred) -> float:
    """Mean absolute error, :math:`\\frac1N \\sum_n |y_n - \\hat y_n|` (AdaCon's headline metric).

    >>> mae([1.0, 2.0, 3.0], [1.5, 2.0, 1.0])
    0.8333333333333334
    """
    t, p = _real_pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error, :math:`\\sqrt{\\frac1N \\sum_n (y_n - \\hat y_n)^2}`; always >= MAE.

    >>> rmse([1.0, 2.0, 3.0], [1.5, 2.0, 1.0])        # sqrt((0.25 + 0 + 4) / 3)
    1.1902380714238083
    """
    t, p = _real_pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def r2(y_true, y_pred) -> float:
    """Coefficient of determination.

    .. math::
        R^2 = 1 - \\frac{\\sum_n (y_n - \\hat y_n)^2}{\\sum_n (y_n - \\bar y)^2}

    In plain text: ``R2 = 1 - sum_n (y_n - yhat_n)^2 / sum_n (y_n - mean(y))^2``.

    1 for a perfect prediction, 0 for the constant prediction ``\\bar y``,
    negative for anything worse (unbounded below). Undefined, so a
    ValueError, when ``y_true`` is constant (the denominator is 0).

    >>> r2([1.0, 2.0, 3.0], [1.5, 2.0, 1.0])          # 1 - 4.25 / 2
    -1.125
    >>> r2([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    0.0
    """
    t, p = _real_pair(y_true, y_pred)
    total = np.sum((t - np.mean(t)) ** 2)
    if total == 0:
        raise ValueError("y_true is constant, so R2 is undefined (its total sum of squares is 0)")
    return float(1.0 - np.sum((t - p) ** 2) / total)


def _rank_pair(x, y):
    x, y = _real_pair(x, y, names=("x", "y"))
    if x.shape[0] < 2:
        raise ValueError(f"x and y need at least 2 samples for a correlation, got {x.shape[0]}")
    for name, v in (("x", x), ("y", y)):
        if np.all(v == v[0]):
            raise ValueError(f"{name} is constant, so its rank correlation is undefined")
    return x, y


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the mid-ranks (``scipy.stats.spearmanr``).

    .. math::
        \\rho = \\frac{\\mathrm{cov}(r_x, r_y)}{\\sigma_{r_x} \\sigma_{r_y}}

    with ties given their average rank. Invariant under strictly increasing
    transforms of either variable. Constant input: ValueError.

    >>> spearman([1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 20.0, 40.0])   # ranks 1,2,3,4 vs 1,3,2,4
    0.8
    """
    x, y = _rank_pair(x, y)
    return float(stats.spearmanr(x, y).statistic)


def kendall(x, y) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``): concordant minus discordant pairs, tie-corrected.

    .. math::
        \\tau_b = \\frac{n_c - n_d}{\\sqrt{(n_0 - n_x)(n_0 - n_y)}}

    In plain text: ``tau_b = (n_c - n_d) / sqrt((n_0 - n_x) (n_0 - n_y))``,

    with ``n_0 = N(N-1)/2`` pairs, ``n_x`` / ``n_y`` the pairs tied in ``x`` /
    in ``y``. Invariant under strictly increasing transforms. Constant input:
    ValueError.

    >>> round(kendall([1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 20.0, 40.0]), 4)   # (5 - 1) / 6
    0.6667
    """
    x, y = _rank_pair(x, y)
    return float(stats.kendalltau(x, y).statistic)
