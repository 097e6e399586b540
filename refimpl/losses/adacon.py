"""AdaCon adaptive-margin contrastive loss (Dai et al., IEEE TMI), Eq. 4-6 and Eq. 14.

SupCon (AdaCon Eq. 1) with an ECDF margin added to every negative logit, so that
a negative whose label is far from the anchor's is pushed further away:

.. math::

    \\ell_i = -\\frac{1}{|P(i)|} \\sum_{p \\in P(i)} \\log
        \\frac{e^{s \\cos\\theta_{ip}}}{\\sum_{a \\ne i} e^{s (\\cos\\theta_{ia} + d_{ia})}},
    \\qquad d_{ia} = 2\\,|F(y_i) - F(y_a)|

In plain text:
``l_i = -1/|P(i)| sum_{p in P(i)} log(exp(s cos_ip) / sum_{a != i} exp(s (cos_ia + d_ia)))``,
``d_ia = 2 |F(y_i) - F(y_a)|``.

with :math:`F` an empirical CDF of the labels (:func:`ecdf`) and
:math:`P(i)` the other rows with the anchor's label. Positives share the
anchor's label, hence its ECDF value, so :math:`d_{ip} = 0` (Eq. 14).

Two variants (``variant=``):

* ``"paper"``: Eq. 4-6. ECDF with the non-strict inequality of Eq. 5 over the
  batch (or over ``population``), positives = equal labels (equal label buckets
  when ``bucket`` is given).
* ``"official"``: ``SupConLoss_admargin`` of XMed-Lab/AdaCon as trained
  (``echonet/utils/video.py``): two views stacked view-major, labels bucketed
  ``y // 0.05`` (``numpy.floor_divide``), mid-rank ECDF of the bucket over the
  training population, positives = same bucket (a sample's other view
  included), mean over the 2N anchors.

Memory (:func:`forward`): the logits are built in one (M, M) buffer (margin,
then + cosine, a product of the same size that lives only while it is added,
then * s, then their shifted exponentials in place) that backward keeps; the
sums over positives use sorted label groups, O(M D), so no (M, M) positive mask
exists. With ``block_size`` the two-pass form of :mod:`refimpl.losses._blocked`
holds a few (block_size, M) arrays instead, and ``anchors`` gives one process's
share of a data-parallel loss. Read :func:`forward_naive` first: Eq. 4-6 with
(M, M) masks, one screen.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

from .. import _ops, backend
from .._validate import check_array, check_choice, check_positive, check_same_length, namespace
from . import _blocked
from ._common import (REDUCTIONS, VARIANTS, check_official, check_two_views, exp_without_self,
                      matmul_transposed, maybe_normalize, off_diagonal,
                      maybe_normalize_backward, reduce, reduce_backward)

ECDF_KINDS = ("paper", "official")
#: label bucket width of the authors' code (``EF // 0.05`` in ``echonet/datasets/echo.py``).
OFFICIAL_BUCKET = 0.05
#: scale ``s`` of the authors' code (``scale_s = 150``).
OFFICIAL_SCALE = 150.0


class NaiveCache(NamedTuple):
    """What :func:`backward_naive` needs from :func:`forward_naive`."""

    zn: object  # (M, D) normalised rows
    prob: object  # (M, M) softmax of the margin logits over a != i (0 on the diagonal)
    positive: object  # (M, M) 1 where a is in P(i)
    n_pos: object  # (M,) |P(i)|
    scale: float
    norm: object  # l2_normalize cache, None without normalisation
    reduction: tuple


def forward_naive(z, y, *, scale, population=None, bucket=None, variant="paper", reduction="mean",
                  normalize=True):
    """Teaching form of :func:`forward`: AdaCon Eq. 4-6 with (M, M) masks, both variants.

    .. math:: \\ell_i = -\\frac{1}{|P(i)|} \\sum_{p \\in P(i)} \\log
              \\frac{e^{s \\cos\\theta_{ip}}}{\\sum_{a \\ne i} e^{s (\\cos\\theta_{ia} + d_{ia})}}

    In plain text:
    ``l_i = -1/|P(i)| sum_{p in P(i)} log(exp(s cos_ip) / sum_{a != i} exp(s (cos_ia + d_ia)))``.

    Same arguments and values as :func:`forward` (see there for the variants,
    the errata and anchors without positives); ``d`` is :func:`margin` (Eq. 4,
    0 between positives), ``P(i)`` a mask. Several (M, M) arrays live at once.
    Stabiliser: the row maximum over ``a != i`` is subtracted inside the
    log-sum-exp.

    >>> import numpy as np
    >>> z = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> loss, cache = forward_naive(z, np.array([0.1, 0.1, 0.5, 0.9]), scale=2.0)
    >>> round(float(loss), 4)
    0.5385
    """
    xp = namespace(z=z, y=y, population=population)
    scale, keys, pop_keys = _check(z, y, scale, population, bucket, variant, reduction, normalize)
    zn, norm = maybe_normalize(z, normalize)
    others = off_diagonal(zn)  # (M, M) a != i
    counts = xp.astype(_counts(keys, pop_keys, variant), z.dtype)  # n F(y_i), Eq. 5
    d = _margin_from_counts(counts, pop_keys.shape[0])  # (M, M) Eq. 4
    cos = zn @ xp.permute_dims(zn, (1, 0))  # (M, D) @ (D, M)
    positive = xp.astype(others & (keys[:, None] == keys[None, :]), z.dtype)  # (M, M) P(i)
    n_pos = xp.sum(positive, axis=1)  # (M,)
    logits = xp.where(others, scale * (cos + d), xp.full_like(cos, -xp.inf))
    row_max = xp.max(logits, axis=1, keepdims=True)  # (M, 1)
    exp = xp.exp(logits - row_max)
    log_denom = row_max + xp.log(xp.sum(exp, axis=1, keepdims=True))  # (M, 1)
    log_prob = scale * cos - log_denom  # (M, M) the log of Eq. 6's fraction
    per_anchor = -xp.sum(positive * log_prob, axis=1) / xp.maximum(n_pos, xp.ones_like(n_pos))  # 0 if no P(i)
    loss, reduce_cache = reduce(per_anchor, reduction)
    prob = exp / xp.sum(exp, axis=1, keepdims=True)
    return loss, NaiveCache(zn, prob, positive, n_pos, scale, norm, reduce_cache)


def backward_naive(dout, cache: NaiveCache):
    """Gradient ``(dz,)`` of :func:`forward_naive`, one factor at a time.

    ``dl_i/dcos_ia = s (p_ia - [a in P(i)] / |P(i)|)`` for an anchor with
    positives (0 for one without); ``dzn = (dcos + dcos^T) zn``; then the
    normalisation.
    """
    xp = backend.namespace(cache.zn)
    g = reduce_backward(dout, cache.reduction)  # (M,) dL/dl_i, dout checked
    g = xp.where(cache.n_pos > 0, g, xp.zeros_like(g))  # l_i = 0 without positives
    n_pos = xp.maximum(cache.n_pos, xp.ones_like(cache.n_pos))[:, None]  # (M, 1)
    dcos = cache.scale * g[:, None] * (cache.prob - cache.positive / n_pos)  # (M, M)
    dzn = (dcos + xp.permute_dims(dcos, (1, 0))) @ cache.zn  # (M, M) @ (M, D)
    return (maybe_normalize_backward(dzn, cache.norm),)


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    exp: object  # (M, M) exp(logit - row max), 0 on the diagonal
    denom: object  # (M,) its row sums
    zn: object  # (M, D) normalised rows
    norm: object  # l2_normalize cache, None without normalisation
    groups: Groups  # rows grouped by key
    has_pos: object  # (M,) bool
    n_pos_safe: object  # (M,) |P(i)|, 1 where empty
    scale: float
    reduction: tuple


def forward(z, y, *, scale, population=None, bucket=None, variant="paper", reduction="mean",
            normalize=True, block_size=None, anchors=None):
    """AdaCon loss (Eq. 6) of embeddings ``z`` with continuous labels ``y``.

    .. math::

        \\ell_i = \\log \\sum_{a \\ne i} e^{s (\\cos\\theta_{ia} + d_{ia})}
            - \\frac{s}{|P(i)|} \\sum_{p \\in P(i)} \\cos\\theta_{ip},
        \\qquad d_{ia} = 2\\,|F(y_i) - F(y_a)|

    In plain text:
    ``l_i = log sum_{a != i} exp(s (cos_ia + d_ia)) - s/|P(i)| sum_{p in P(i)} cos_ip``,
    ``d_ia = 2 |F(y_i) - F(y_a)|``.

    the per-anchor form of Eq. 6 (Eq. 14 of App. A, with :math:`d_{ip} = 0`).
    :math:`\\cos\\theta_{ia} = \\hat z_i^\\top \\hat z_a` on L2-normalised
    rows (``normalize=False``: on ``z`` as given). ``P(i)`` = the other rows
    whose key equals the anchor's (label, or bucket ``y // bucket``).
    ``margin`` gives :math:`d`, ``ecdf`` gives :math:`F`.

    Variants:

    * ``"paper"``: ``F`` = Eq. 5 (``ecdf(kind="paper")``) over ``population``
      (default: the batch ``y``); ``bucket=None`` compares raw labels.
    * Erratum (AdaCon code, ``rnet2dp1.py``): ``"official"`` is ``SupConLoss_admargin`` of
      XMed-Lab/AdaCon: rows are two views stacked view-major (``z[:N]`` view 1, ``z[N:]`` view 2 of the same
      N samples, ``y[:N] == y[N:]``), ``bucket`` 0.05 by default, ``F`` the
      mid-rank ECDF of the bucket over ``population`` (their code: the whole
      training split, ``norm_val = 2 / N_train``; default here: the batch,
      whose two copies of each label give the same F), ``s = 150`` in their
      code (pass ``scale=OFFICIAL_SCALE``). Reduction "mean" and
      ``normalize=True`` only (their model normalises).

    Anchors without positives: Eq. 1 and 6 divide by ``|P(i)| = 0``; such an
    anchor contributes 0 (and gets no gradient as an anchor) and still counts
    in the mean, as HobbitLong/SupContrast. With two views every anchor has
    a positive.

    Erratum (AdaCon Eq. 6): Eq. 6 sums over anchors while the code averages; ``reduction``
    chooses ("sum" is Eq. 6 as printed, "mean" the code).

    Erratum (AdaCon Eq. 5): Eq. 5 sums over the
    training set (Sec. III), read here as the batch ECDF by default (see
    :func:`ecdf`).

    Erratum (AdaCon Eq. 4): The text says ``d`` lies in (0, 2); with Eq. 5 it lies in
    [0, 2 - 2/n].

    Stabilisers: the row maximum over ``a != i`` is subtracted before ``exp``
    (exact; needed: scale 150 makes logits up to 450 with normalised rows);
    the anchor's own entry is set to -inf, so the sum excludes it exactly.
    The official code takes its row maximum with the anchor included; the
    value is the same. Group sums over positives run in float64.

    Parameters
    ----------
    z : array (M, D), real floating, finite, M >= 2
    y : array (M,), integer or real floating, finite
    scale : float > 0
        ``s`` (inverse temperature); 150 in the authors' code.
    population : array (P,), optional
        Labels the ECDF counts (e.g. the training labels); default ``y``.
    bucket : float > 0, optional
        Label bucket width; default None (paper) or 0.05 (official).
    variant : {"paper", "official"}
    reduction : {"mean", "sum", "none"}
        "none" returns the (M,) per-anchor losses.
    normalize : bool
        L2-normalise the rows of ``z`` inside (floor 1e-12 on the norm).
    block_size : int > 0, optional
        None: the dense form (one (M, M) buffer, cached). An int: the
        two-pass blocked form of :mod:`refimpl.losses._blocked` (forward keeps
        each anchor's log-sum-exp, backward recomputes the logit blocks from
        ``zn`` and the ECDF counts), a few (block_size, M) arrays at once, a
        cache of O(M x D); equal to the dense form up to rounding.
    anchors : int array (A,), optional
        Distinct row indices: the loss of those anchors only against the whole
        batch (the ECDF too is the whole batch's or the population's), the
        gradient with respect to all of ``z``; "none" (A,), "sum", or "mean" =
        their sum divided by M, so that a partition of ``range(M)`` adds up to
        the full loss and gradient (one process of a data-parallel run).

    Returns
    -------
    loss : array, scalar or (M,) ((A,) with ``anchors``)
    cache : for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> y = np.array([0.1, 0.1, 0.5, 0.9])
    >>> loss, cache = forward(z, y, scale=2.0)
    >>> round(float(loss), 4)
    0.5385
    >>> per_anchor, _ = forward(z, y, scale=2.0, reduction="none")
    >>> per_anchor.round(4).tolist()        # the last two anchors have no positive
    [0.6922, 1.4619, 0.0, 0.0]
    >>> (dz,) = backward(1.0, cache)
    >>> dz.round(4).tolist()
    [[0.0, -0.153], [-0.4333, 0.5777], [0.3063, 0.0], [0.2103, 0.1577]]
    >>> first, cache_0 = forward(z, y, scale=2.0, anchors=np.array([0, 2]))
    >>> rest, cache_1 = forward(z, y, scale=2.0, anchors=np.array([1, 3]), block_size=1)
    >>> round(float(first), 4), round(float(rest), 4), round(float(first + rest), 4)
    (0.173, 0.3655, 0.5385)
    >>> (backward(1.0, cache_0)[0] + backward(1.0, cache_1)[0]).round(4).tolist()
    [[0.0, -0.153], [-0.4333, 0.5777], [0.3063, 0.0], [0.2103, 0.1577]]
    """
    xp = namespace(z=z, y=y, population=population, anchors=anchors)
    scale, keys, pop_keys = _check(z, y, scale, population, bucket, variant, reduction, normalize)
    block_size = _blocked.check_block_size(block_size)
    index = None if anchors is None else _blocked.anchor_index(anchors, z)
    counts = xp.astype(_counts(keys, pop_keys, variant), z.dtype)
    zn, norm_cache = maybe_normalize(z, normalize)
    if block_size is not None or index is not None:
        return _forward_blocked(zn, norm_cache, keys, counts, pop_keys.shape[0], scale, reduction, block_size,
                                index)

    # One (M, M) buffer, built in place: margin, + cosine, * s, then its shifted exp over a != i.
    logits = _margin_from_counts(counts, pop_keys.shape[0])
    logits += matmul_transposed(zn, zn)  # (M, D) @ (D, M): cos
    logits *= scale
    exp, row_max, denom = exp_without_self(logits)  # logits' buffer, not used after
    log_denom = row_max + xp.log(denom)

    groups = _groups(keys)
    n_pos = xp.astype(groups.stop - groups.start, z.dtype) - 1  # (M,) |P(i)|
    has_pos = n_pos > 0
    n_pos_safe = xp.where(has_pos, n_pos, xp.ones_like(n_pos))
    pos_cos = xp.sum(zn * _group_others(zn, groups), axis=1)  # (M,) sum_p cos_ip, d_ip = 0
    per_anchor = xp.where(has_pos, log_denom - scale * pos_cos / n_pos_safe,
                          xp.zeros_like(log_denom))
    loss, reduce_cache = reduce(per_anchor, reduction)
    cache = Cache(exp, denom, zn, norm_cache, groups, has_pos, n_pos_safe, scale, reduce_cache)
    return loss, cache


def backward(dout, cache: Cache):
    """Gradient of :func:`forward` with respect to ``z``; returns ``(dz,)``.

    With upstream weights ``g_i`` per anchor (0 for anchors without
    positives), :math:`\\partial \\ell_i / \\partial S_{ia} = g_i (p_{ia} -
    [a \\in P(i)] / |P(i)|)` for logits :math:`S = s(\\cos + d)` and softmax
    :math:`p` over ``a != i``; then ``dzn = s (dS + dS^T) zn`` and the
    normalisation's backward. The softmax is applied as ``exp / denom``
    row weights inside two (M, M) @ (M, D) products; the positive terms use
    group sums.
    """
    if isinstance(cache, BlockedCache):
        return _backward_blocked(dout, cache)
    exp, zn = cache.exp, cache.zn
    xp = backend.namespace(exp)
    g = reduce_backward(dout, cache.reduction)  # (M,)
    g = xp.where(cache.has_pos, g, xp.zeros_like(cache.denom))
    u = (g / cache.denom)[:, None]  # (M, 1) softmax rows as exp / denom
    k = (g / cache.n_pos_safe)[:, None]  # (M, 1)
    # sum_a dS_ia zn_a + sum_a dS_ai zn_a, softmax part
    dzn = u * (exp @ zn) + xp.permute_dims(exp, (1, 0)) @ (u * zn)  # (M, M) @ (M, D)
    # positive part: P x = the other rows of x with the anchor's key, P symmetric
    d = zn.shape[1]
    others = _group_others(xp.concat([zn, k * zn], axis=1), cache.groups)  # (M, 2D)
    dzn -= k * others[:, :d] + others[:, d:]
    dzn *= cache.scale
    return (maybe_normalize_backward(dzn, cache.norm),)


class BlockedCache(NamedTuple):
    """What :func:`backward` needs from the blocked :func:`forward` (``block_size`` or ``anchors``): O(M x D)."""

    blocks: _blocked.Cache
    norm: object
    reduction: tuple


def _forward_blocked(zn, norm_cache, keys, counts, n, scale, reduction, block_size, index):
    """:func:`forward` in blocks of anchors: Eq. 14 as ``l_i = c_i LSE_i - sum_p S_ip / |P(i)|``
    (:mod:`refimpl.losses._blocked`, ``c_i`` = 1 with positives, else 0), each block of logits
    ``s (cos + d)`` rebuilt from ``zn`` and the ECDF counts."""
    xp = backend.namespace(zn)
    index = _blocked.anchor_index(None, zn) if index is None else index
    block_size = index.shape[0] if block_size is None else block_size
    groups = _groups(keys)
    n_pos = xp.astype(groups.stop - groups.start, zn.dtype) - 1  # (M,) |P(i)|
    pos_weight = xp.where(n_pos > 0, 1 / xp.where(n_pos > 0, n_pos, xp.ones_like(n_pos)),
                          xp.zeros_like(n_pos))  # (M,) 1 / |P(i)|, 0 without positives
    build = partial(_block_logits_and_weights, zn=zn, keys=keys, counts=counts, n=n, scale=scale,
                    pos_weight=pos_weight)
    per_anchor, blocks = _blocked.forward(build, zn, index, block_size, scale)
    loss, reduce_cache = reduce(per_anchor, reduction, count=zn.shape[0])
    return loss, BlockedCache(blocks, norm_cache, reduce_cache)


def _backward_blocked(dout, cache: BlockedCache):
    g = reduce_backward(dout, cache.reduction)  # (A,), dout checked; anchors without positives have P = 0
    return (maybe_normalize_backward(_blocked.backward(g, cache.blocks), cache.norm),)


def _block_logits_and_weights(idx, is_self, *, zn, keys, counts, n, scale, pos_weight):
    """Logits ``s (cos_ia + d_ia)`` and weights ``[a in P(i)] / |P(i)|`` (B, M) of the anchors ``idx``:
    the ``build`` of :func:`refimpl.losses._blocked.forward`, built as :func:`forward` builds its buffer."""
    xp = backend.namespace(zn)
    logits = _margin_from_counts(counts, n, xp.take(counts, idx))  # (B, M) d_ia
    logits += matmul_transposed(xp.take(zn, idx, axis=0), zn)  # (B, D) @ (D, M): cos
    logits *= scale
    positive = xp.logical_not(is_self) & (xp.take(keys, idx)[:, None] == keys[None, :])  # (B, M) P(i)
    return logits, xp.astype(positive, zn.dtype) * xp.take(pos_weight, idx)[:, None]


def _labels(name, y):
    """Validated 1-D real labels; integer labels are promoted to float64."""
    check_array(name, y, ndim=1, floating=False)
    xp = backend.namespace(y)
    if not xp.isdtype(y.dtype, ("integral", "real floating")):
        raise TypeError(f"{name} must have an integer or real floating dtype, got {y.dtype}")
    return y if xp.isdtype(y.dtype, "real floating") else xp.astype(y, xp.float64)


def _keys(y, population, bucket):
    """Labels and population as comparable keys: bucket indices ``y // bucket`` or ``y``."""
    y = _labels("y", y)
    pop = y if population is None else _labels("population", population)
    xp = backend.namespace(y, pop)
    dtype = xp.result_type(y.dtype, pop.dtype)
    y, pop = xp.astype(y, dtype), xp.astype(pop, dtype)
    if bucket is None:
        return y, pop
    bucket = check_positive("bucket", bucket)
    # Floating floor division as numpy.floor_divide (and Python's //): 0.15 // 0.05 == 2.0,
    # while floor(0.15 / 0.05) == 2.0 but floor(0.25 / 0.05) == 5.0 != 0.25 // 0.05 == 4.0.
    return _ops.floor_divide(y, bucket), _ops.floor_divide(pop, bucket)


def _counts(keys, pop_keys, kind):
    """``n F(key)``: #{pop <= key} (paper) or #{pop < key} + #{pop == key} / 2 (official)."""
    xp = backend.namespace(keys)
    ref = xp.sort(pop_keys)
    right = xp.astype(xp.searchsorted(ref, keys, side="right"), keys.dtype)
    if kind == "paper":
        return right
    left = xp.astype(xp.searchsorted(ref, keys, side="left"), keys.dtype)
    return (left + right) / 2


def ecdf(y, population=None, *, bucket=None, kind="paper"):
    """Empirical CDF of labels ``y`` over ``population`` (AdaCon Eq. 5).

    .. math::

        F_{\\mathrm{paper}}(v) = \\frac{1}{n} \\sum_{k=1}^{n} \\mathbb{1}[b_k \\le v],
        \\qquad
        F_{\\mathrm{official}}(v) = \\frac{1}{n} \\Big(\\#\\{b_k < v\\}
            + \\tfrac12 \\#\\{b_k = v\\}\\Big)

    In plain text: ``F_paper(v) = #{k : b_k <= v} / n``,
    ``F_official(v) = (#{k : b_k < v} + #{k : b_k = v} / 2) / n``.

    evaluated at :math:`v = b(y_i)`, where :math:`b_1..b_n` are the keys of the
    population and :math:`b(y) = y` or, with ``bucket``, the bucket index
    ``y // bucket`` (``numpy.floor_divide`` semantics, so ``0.15 // 0.05 ==
    2.0``). ``kind="paper"`` is Eq. 5 with its non-strict inequality;
    ``kind="official"`` is the mid-rank of the authors' ``echo.py``
    (``EF_CLS``: cumulative count up to the bucket minus half its own count),
    divided by ``n`` here (their code multiplies by ``2 / n`` in the loss).

    Erratum (AdaCon Eq. 5): Eq. 5 is written as a sum over the N training samples (Sec. III)
    but is commonly read as the ECDF of the batch; ``population=None`` (the batch
    ``y`` itself) gives the batch reading, the training labels as
    ``population`` the other.

    Erratum (AdaCon Eq. 5): The text calls F "the sample estimate of
    Pr(Y < y)" (strict), Eq. 5 uses <=; we follow Eq. 5.

    Values: in ``(0, 1]`` for keys present in the population (the paper kind
    reaches 1 at the largest); a key absent from it gets the count of the
    population keys below it (possibly 0). At a key that occurs once in the
    population the two kinds differ by exactly ``1 / (2n)``. Without
    ``bucket``, any strictly increasing map of ``y`` and ``population``
    leaves both kinds unchanged.

    Parameters
    ----------
    y : array (M,), integer or real floating, finite
    population : array (P,), P >= 1, optional
        The labels the ECDF counts; ``None`` means ``y`` itself (the batch).
    bucket : float > 0, optional
        Bucket width; ``None`` compares raw labels.
    kind : {"paper", "official"}

    Returns
    -------
    array (M,) in the floating dtype of the labels (float64 for integers).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0.3, 0.1, 0.3, 0.7])
    >>> ecdf(y).tolist()
    [0.75, 0.25, 0.75, 1.0]
    >>> ecdf(y, kind="official").tolist()
    [0.5, 0.125, 0.5, 0.875]
    >>> ecdf(np.array([0.15, 0.25]), bucket=0.05, kind="official").tolist()
    [0.25, 0.75]
    """
    check_choice("kind", kind, ECDF_KINDS)
    keys, pop_keys = _keys(y, population, bucket)
    return _counts(keys, pop_keys, kind) / pop_keys.shape[0]


def _margin_from_counts(counts, n, anchor_counts=None):
    """``d_ia = 2 |c_i - c_a| / n`` as a fresh (M, M) array (counts ``c = n F``); (B, M) for the
    ``anchor_counts`` (B,) of some anchors."""
    xp = backend.namespace(counts)
    anchor_counts = counts if anchor_counts is None else anchor_counts
    d = xp.abs(anchor_counts[:, None] - counts[None, :])  # (M, 1) - (1, M) -> (M, M)
    d *= 2.0 / n
    return d


def margin(y, population=None, *, bucket=None, kind="paper"):
    """Adaptive margins of every pair (AdaCon Eq. 4): ``d_ia = 2 |F(y_i) - F(y_a)|``.

    .. math:: d_{ia} = 2\\,|F(y_i) - F(y_a)| \\in [0, 2]

    ``F`` is :func:`ecdf` with the same arguments. Pairs with equal keys (the
    positives) get exactly 0 (Eq. 14), and for ``y_i < y_j < y_k`` (keys
    distinct in the population) ``d_ik > d_ij``. The bound 2 is reached only
    by keys outside the population (counts 0 and n); labels of the population
    stay below it. The authors' code computes
    ``clamp(|c_i - c_a| * 2 / N_train, 0, 2)`` on mid-rank counts ``c``; the
    clamp never binds (``|c_i - c_a| <= n`` and ``fl(n * fl(2 / n)) <= 2``), so
    it is omitted; the product is formed in that order, number for number.

    Shapes: ``y`` (M,) -> (M, M) in the floating dtype of the labels.

    >>> import numpy as np
    >>> margin(np.array([0.1, 0.5, 0.5, 0.9])).tolist()
    [[0.0, 1.0, 1.0, 1.5], [1.0, 0.0, 0.0, 0.5], [1.0, 0.0, 0.0, 0.5], [1.5, 0.5, 0.5, 0.0]]
    """
    check_choice("kind", kind, ECDF_KINDS)
    keys, pop_keys = _keys(y, population, bucket)
    return _margin_from_counts(_counts(keys, pop_keys, kind), pop_keys.shape[0])


class Groups(NamedTuple):
    """Rows grouped by key: the sort order and, per row, the slice [start, stop) of its group."""

    order: object  # (M,)
    start: object  # (M,)
    stop: object  # (M,)


def _groups(keys) -> Groups:
    """:class:`Groups` of ``keys``."""
    xp = backend.namespace(keys)
    order = xp.argsort(keys)
    ordered = xp.take(keys, order)
    start = xp.searchsorted(ordered, keys, side="left")
    stop = xp.searchsorted(ordered, keys, side="right")
    return Groups(order, start, stop)


def _group_others(x, groups):
    """Per row, the sum of the *other* rows of ``x`` (M, K) with the same key (itself excluded).

    Stabiliser: the prefix sums, and the row's own removal from its group's
    sum, run in float64: differences of float32 prefix sums over thousands of
    rows would lose about 1e-4 of a group's sum, and a row much larger than
    the others of its group would leave only rounding error of itself.
    """
    xp = backend.namespace(x)
    order, start, stop = groups.order, groups.start, groups.stop
    rows = xp.astype(xp.take(x, order, axis=0), xp.float64)  # (M, K), sorted by key
    prefix = xp.cumulative_sum(rows, axis=0, include_initial=True)  # (M + 1, K)
    total = xp.take(prefix, stop, axis=0) - xp.take(prefix, start, axis=0)  # (M, K) group sums
    return xp.astype(total - xp.astype(x, xp.float64), x.dtype)


def _check(z, y, scale, population, bucket, variant, reduction, normalize):
    """Validate the arguments of :func:`forward`; returns ``scale`` and the keys of ``y`` and the population."""
    check_array("z", z, ndim=2)
    m_rows = z.shape[0]
    if m_rows < 2:
        raise ValueError(f"z must have at least 2 rows (an anchor and another sample), got {m_rows}")
    scale = check_positive("scale", scale)
    check_choice("variant", variant, VARIANTS)
    check_choice("reduction", reduction, REDUCTIONS)
    if variant == "official":
        check_official(reduction, normalize)
        bucket = OFFICIAL_BUCKET if bucket is None else bucket
    keys, pop_keys = _keys(y, population, bucket)
    check_same_length("y", keys, "z", m_rows)
    if variant == "official":
        check_two_views(z, y=y)
    return scale, keys, pop_keys
