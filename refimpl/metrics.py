"""Evaluation metrics: AUROC and the positive / negative pair-distance diagnostic.

The pair-distance diagnostic follows Cheng et al. ("Enhancing
Contrastive Learning for Retinal Imaging via Adjusted Augmentation Scales",
arXiv 2501.02451), Sec. 2.1, Eq. 1-3 and Fig. 2: two augmented views
``x^1_i``, ``x^2_i`` of every image ``i``; positive pairs are the two views of
one image, negative pairs a first view of image ``i`` with a second view of
image ``j != i``. Distances are taken on raw pixels (flattened) or on
embeddings. The separation score is the AUROC of negative-pair against
positive-pair distances: the probability that a random negative pair lies
farther apart than a random positive pair (ties count one half).

Everything runs on the arrays' own backend with standard functions; only
the returned scalars are copied to the host.
"""
from __future__ import annotations

from . import backend
from ._validate import check_array, check_choice, check_unit_interval

METRICS = ("euclidean", "cosine")


def auroc(scores, labels) -> float:
    """Area under the ROC curve, by the Mann-Whitney rank-sum, ties as mid-ranks.

    .. math::
        \\mathrm{AUROC} = \\frac{R_+ - n_+ (n_+ + 1) / 2}{n_+ n_-}
        = \\frac{1}{n_+ n_-} \\sum_{i: y_i = 1} \\sum_{j: y_j = 0}
          \\Big([s_i > s_j] + \\tfrac12 [s_i = s_j]\\Big)

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
    fig = Figure(figsize=(4.5, 2.6 * len(groups)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (name, (positive, negative)) in zip(axes, groups.items()):
        score = separation_score(positive, negative)
        pos, neg = backend.to_numpy(positive), backend.to_numpy(negative)
        lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
        edges = [lo + (hi - lo) * k / bins for k in range(bins + 1)] if hi > lo else bins
        ax.hist(pos, bins=edges, density=True, alpha=0.6, label="positive pairs")
        ax.hist(neg, bins=edges, density=True, alpha=0.6, label="negative pairs")
        ax.set_title(f"{name}: separation AUROC {score:.3f}", fontsize=9)
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    axes[-1].set_xlabel("distance")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
