"""WSP kernel-weighted contrastive loss (Sarfati et al., MICCAI 2023, Eq. 2-4).

One loss covers four methods: with a Dirac kernel on discrete ``labels`` and
a Gaussian kernel on continuous ``depth`` it is WSP; with ``depth`` only it is
y-Aware (Dufumier et al., MICCAI 2021); with ``labels`` only (or
``sigma -> inf``) it is SupCon (Khosla et al., NeurIPS 2020); with sample ids
as labels it is SimCLR's NT-Xent. :mod:`refimpl.losses.supcon` exposes the
last two under their own names.

Read :func:`forward_naive` first (Eq. 4 with (M, M) masks, one screen); :func:`forward`
is the fast form the project calls, each of its tricks in a named helper. Its
``block_size`` (two passes over blocks of anchors, O(block x M) memory) and
``anchors`` (one process of a data-parallel run) are in :func:`_forward_blocked`
and :mod:`refimpl.losses._blocked`.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

from .. import _ops, backend
from .._validate import check_array, check_bool, check_choice, check_positive, check_same_length, namespace
from . import _blocked
from ._common import (REDUCTIONS, VARIANTS, check_official, check_two_views, exp_without_self, fill_diagonal,
                      matmul_transposed, maybe_normalize, off_diagonal,
                      maybe_normalize_backward, reduce, reduce_backward)

#: the paper's sigma (WSP Sec. 2) and temperature (its code's default; the paper names none).
SIGMA = 0.1
TEMPERATURE = 0.1


class NaiveCache(NamedTuple):
    """What :func:`backward_naive` needs from :func:`forward_naive`."""

    zn: object  # (M, D) normalised rows
    prob: object  # (M, M) p_tj, softmax of s_tj over j != t (0 on the diagonal)
    weights: object  # (M, M) normalised kernel weights w~_ti (0 on the diagonal)
    temperature: float
    scale: float  # 2 for the official variant's -(1/N) sum over 2N anchors
    norm: object  # l2_normalize cache, None without normalisation
    reduction: tuple


def forward_naive(z, *, labels=None, depth=None, sigma=SIGMA, temperature=TEMPERATURE, variant="paper",
                  reduction="mean", normalize=True):
    """Teaching form of :func:`forward`: WSP Eq. 4 with (M, M) masks, both variants.

    .. math:: \\ell_t = -\\sum_{i \\ne t} \\tilde w_{ti} \\log p_{ti}, \\qquad
              p_{ti} = \\frac{e^{s_{ti}}}{\\sum_{j \\ne t} e^{s_{tj}}}, \\qquad
              \\tilde w_{ti} = \\frac{w_{ti}}{\\sum_{k \\ne t} w_{tk}}

    In plain text: ``l_t = -sum_{i != t} w~_ti log p_ti``,
    ``p_ti = exp(s_ti) / sum_{j != t} exp(s_tj)``, ``w~_ti = w_ti / sum_{k != t} w_tk``.

    Same arguments and values as :func:`forward` (see there for the errata and
    the official variant's column-wise weight normalisation). Several (M, M)
    arrays live at once. Stabiliser: the row maximum over ``j != t`` is
    subtracted inside the log-sum-exp. The Gaussian weights are used as they
    are, so a sigma small enough to underflow every weight of an anchor
    (``(d_t - d_i)^2 / 2 sigma^2 > 700``) leaves it without positives here,
    while :func:`forward` normalises them in log space.

    >>> import numpy as np
    >>> z = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8], [0.6, -0.8]])
    >>> labels, depth = np.array([0, 0, 1, 1, 0]), np.array([0.1, 0.2, 0.3, 0.5, 0.6])
    >>> loss, cache = forward_naive(z, labels=labels, depth=depth, sigma=0.1, temperature=0.5)
    >>> round(float(loss), 4)
    0.7636
    """
    xp = namespace(z=z, labels=labels, depth=depth)
    tau = _check(z, labels, depth, sigma, temperature, variant, reduction, normalize)
    zn, norm = maybe_normalize(z, normalize)
    others = off_diagonal(zn)  # (M, M) j != t
    s = zn @ xp.permute_dims(zn, (1, 0)) / tau  # (M, D) @ (D, M): s_tj
    w = xp.astype(others, zn.dtype)  # kernel w_ti (Eq. 2), an anchor is not its own positive
    if labels is not None:  # Dirac kernel on the weak labels
        w = w * xp.astype(labels[:, None] == labels[None, :], zn.dtype)
    if depth is not None:  # Gaussian kernel on the depth
        d = xp.astype(depth, zn.dtype)
        w = w * xp.exp(-(d[:, None] - d[None, :]) ** 2 / (2 * sigma**2))
    total = xp.sum(w, axis=1)  # (M,)
    if variant == "official":
        weights = w / total[None, :]  # the code's broadcast: column i over the row sum of i
    else:
        weights = w / xp.where(total > 0, total, xp.ones_like(total))[:, None]  # 0 without positives
    s_others = xp.where(others, s, xp.full_like(s, -xp.inf))  # the denominator runs over j != t
    row_max = xp.max(s_others, axis=1, keepdims=True)  # (M, 1)
    exp = xp.exp(s_others - row_max)
    log_denom = row_max + xp.log(xp.sum(exp, axis=1, keepdims=True))  # (M, 1)
    log_prob = s - log_denom  # (M, M) log p_ti
    per_anchor = -xp.sum(weights * log_prob, axis=1)  # Eq. 4 per anchor
    loss, reduce_cache = reduce(per_anchor, reduction)
    scale = 2.0 if variant == "official" else 1.0
    prob = exp / xp.sum(exp, axis=1, keepdims=True)
    return loss * scale, NaiveCache(zn, prob, weights, tau, scale, norm, reduce_cache)


def backward_naive(dout, cache: NaiveCache):
    """Gradient ``(dz,)`` of :func:`forward_naive`, one factor at a time.

    ``dl_t/ds_tj = (sum_i w~_ti) p_tj - w~_tj``; as ``s = zn zn^T / tau``,
    ``dzn = (ds + ds^T) zn / tau``; then the normalisation.
    """
    xp = backend.namespace(cache.zn)
    g = reduce_backward(dout, cache.reduction) * cache.scale  # (M,) dL/dl_t, dout checked
    total = xp.sum(cache.weights, axis=1, keepdims=True)  # (M, 1)
    ds = g[:, None] * (total * cache.prob - cache.weights)  # (M, M) dL/ds_tj
    dzn = (ds + xp.permute_dims(ds, (1, 0))) @ cache.zn / cache.temperature  # (M, M) @ (M, D)
    return (maybe_normalize_backward(dzn, cache.norm),)


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    dlogits: object  # (M, M) dl_t/ds_tj = (sum_k w_tk) p_tj - w_tj
    zn: object  # (M, D) normalised rows
    temperature: float
    scale: float  # 2 for the official variant's -(1/N) sum over 2N anchors
    norm: object  # l2_normalize cache, None without normalisation
    reduction: tuple


def forward(z, *, labels=None, depth=None, sigma=SIGMA, temperature=TEMPERATURE, variant="paper",
            reduction="mean", normalize=True, block_size=None, anchors=None, check_finite=True):
    """WSP loss: kernel-weighted log-probabilities of the positives of each anchor.

    With similarities :math:`s_{tj} = z_t^\\top z_j / \\tau` (rows L2-normalised
    unless ``normalize=False``), WSP Eq. 4 (errata fixed) for anchor ``t`` is

    .. math::
        \\ell_t = -\\sum_{i \\ne t} \\tilde w_{ti}
            \\log \\frac{e^{s_{ti}}}{\\sum_{j \\ne t} e^{s_{tj}}}, \\qquad
        \\tilde w_{ti} = \\frac{w_{ti}}{\\sum_{k \\ne t} w_{tk}}, \\qquad
        w_{ti} = \\delta(y_t - y_i)\\,
            \\exp\\!\\Big(-\\frac{(d_t - d_i)^2}{2\\sigma^2}\\Big)

    In plain text: ``l_t = -sum_{i != t} w~_ti log(exp(s_ti) / sum_{j != t} exp(s_tj))``,
    ``w~_ti = w_ti / sum_{k != t} w_tk``, ``w_ti = [y_t == y_i] exp(-(d_t - d_i)^2 / (2 sigma^2))``.

    (the composite kernel of Eq. 2; a factor is 1 when its ``labels`` or
    ``depth`` is None). ``reduction="sum"`` gives Eq. 4, ``"mean"`` Eq. 4 / M.

    Erratum (WSP Eq. 3-4): Eq. 3-4 write the denominator as ``j != i``; read
    literally it keeps the anchor's own ``s_tt``. We follow the authors' code and
    y-Aware: the anchor is excluded (``j != t``) and the positives stay in the
    denominator.

    Erratum (WSP Eq. 4): "``w_sigma`` normalised over ``i in P(t)``" is read
    as: each anchor's weights sum to 1.

    An anchor without positives (a label nobody
    else in the batch has) has an empty sum in Eq. 4: it contributes 0 and
    still counts in the mean (as in HobbitLong/SupContrast), so ``"mean"`` is
    always Eq. 4 divided by M.

    ``variant="official"`` reproduces ``WSPContrastiveLoss`` of
    Guerbet-AI/wsp-contrastive (and, with ``labels=None``, y-Aware's
    ``GeneralizedSupervisedNTXenLoss``) number for number, quirks included:

    * two views stacked view-major (M = 2N; ``labels``/``depth`` must repeat
      across the views, the code takes one per pair);
    * Erratum (WSP code, ``losses.py``): ``W /= W.sum(dim=1)`` broadcasts over the last axis, so ``w_tj`` is
      divided by the weight sum of anchor ``j``, not of ``t``: the weights of
      an anchor do not sum to 1 once ``depth`` is used (with labels only,
      ``j`` has as many positives as ``t`` and the quirk is harmless);
    * Erratum (WSP code, ``losses.py``): the loss is the code's ``-(1/N) sum`` over all 2N anchors, twice the
      mean over anchors (so only ``reduction="mean"``), and rows are always
      L2-normalised (``normalize=True`` required);
    * the code masks the diagonal with ``-1e8``; we use an exact mask (same
      value, as ``exp(-1e8)`` is 0 in every float type).

    The code's defaults disagree with the paper (sigma 1.0 in the class, 0.85
    in its config, 0.5 on its command line; tau 0.1 everywhere, which the paper
    does not state); both variants default to the paper's sigma = 0.1.

    Special cases (paper variant, tested): ``depth=None`` is ``sigma = inf``
    and gives SupCon, with HobbitLong/SupContrast's ``SupConLoss(features,
    labels, temperature=tau, base_temperature=b)`` equal to ``(tau / b) *
    forward(z, labels=..., temperature=tau)`` for ``z`` its normalised
    features stacked view-major; ``labels = t mod N`` for two views gives
    SimCLR's NT-Xent (mean over the 2N anchors); ``labels=None`` gives y-Aware.

    Stabilisers (exact, they cancel): the row maximum of ``s_tj`` over
    ``j != t`` is subtracted before ``exp`` (no overflow at small tau, no row
    that underflows to 0), and the Gaussian weights are normalised in log
    space, shifted by their row maximum over the positives, so that a small
    sigma cannot underflow every weight of an anchor to 0.

    Parameters
    ----------
    z : array (M, D)
        Embeddings, M >= 2; for two views, rows 0..N-1 are view 1 and N..2N-1 view 2.
    labels : array (M,), optional
        Discrete weak labels (Dirac kernel). None: every other row is a positive.
    depth : array (M,), optional
        Continuous variable, e.g. normalised slice depth (Gaussian kernel); treated
        as a constant (no gradient), as the code does.
    sigma, temperature : float > 0
        Gaussian bandwidth and temperature tau.
    variant : {"paper", "official"}
    reduction : {"mean", "sum", "none"}
        "none" returns the M per-anchor losses; "official" takes "mean" only.
    normalize : bool
        L2-normalise the rows of ``z`` inside the loss (always, for "official").
    block_size : int > 0, optional
        None: the dense form below, two (M, M) arrays. An int: the two-pass
        blocked form of :mod:`refimpl.losses._blocked` (forward keeps each
        anchor's log-sum-exp and weight total, backward recomputes the
        similarity blocks), at most a few (block_size, M) arrays at once and
        a cache of O(M x D); equal to the dense form up to rounding. The
        official variant's column totals ``sum_k w_jk`` take one more pass over
        the weight blocks.
    anchors : int array (A,), optional
        Distinct row indices: the loss of those anchors only, against the
        whole batch (one process of a data-parallel run); ``backward`` returns
        the gradient with respect to all of ``z``. "none" gives (A,), "sum"
        their sum, "mean" their sum divided by M (the whole batch), so that
        over a partition of ``range(M)`` losses and gradients add up to the
        full ones. Computed in blocks of ``block_size`` (default: all A at
        once, (A, M) arrays).
    check_finite : bool
        Refuse NaN and inf in ``z`` and ``depth`` (the default). The check
        reads one value back from the device, a host synchronisation on GPUs;
        ``False`` skips it (NaN then propagates into the loss, as in PyTorch),
        as a step captured in a CUDA graph must (:mod:`refimpl.graph`).

    Returns
    -------
    loss : array, () or (M,) ((A,) with ``anchors``)
    cache : tuple for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8], [0.6, -0.8]])
    >>> labels, depth = np.array([0, 0, 1, 1, 0]), np.array([0.1, 0.2, 0.3, 0.5, 0.6])
    >>> loss, cache = forward(z, labels=labels, depth=depth, sigma=0.1, temperature=0.5)
    >>> round(float(loss), 4)
    0.7636
    >>> round(float(forward(z, labels=labels, temperature=0.5)[0]), 4)  # no depth: SupCon
    0.8461
    >>> per_anchor, _ = forward(z, labels=np.array([0, 0, 1, 1, 2]), depth=depth,
    ...                         temperature=0.5, reduction="none")
    >>> per_anchor.round(4).tolist()  # anchor 4 has no positive
    [0.6591, 0.7295, 0.6487, 0.2547, 0.0]
    >>> backward(1.0, cache)[0].shape
    (5, 2)
    >>> blocked, _ = forward(z, labels=labels, depth=depth, sigma=0.1, temperature=0.5, block_size=2)
    >>> round(float(blocked), 4)  # the same loss, never more than (2, 5) arrays
    0.7636
    >>> parts = [forward(z, labels=labels, depth=depth, sigma=0.1, temperature=0.5,
    ...                  anchors=np.array(a))[0] for a in ([0, 3], [1, 2, 4])]
    >>> round(float(parts[0]), 4), round(float(parts[1]), 4), round(float(sum(parts)), 4)
    (0.1828, 0.5809, 0.7636)
    """
    xp = namespace(z=z, labels=labels, depth=depth, anchors=anchors)
    tau = _check(z, labels, depth, sigma, temperature, variant, reduction, normalize,
                 check_bool("check_finite", check_finite))
    block_size = _blocked.check_block_size(block_size)
    index = None if anchors is None else _blocked.anchor_index(anchors, z)
    zn, norm_cache = maybe_normalize(z, normalize)
    if block_size is not None or index is not None:
        return _forward_blocked(zn, norm_cache, labels, depth, sigma, tau, variant, reduction, block_size, index)
    # memory: at most two (M, M) float arrays live at once (w and sim, which becomes exp, then
    # dlogits), one cached
    w = _weights(zn, labels, depth, sigma, variant)  # (M, M)
    total_w = xp.sum(w, axis=1)  # (M,) 1 (paper), 0 without positives, free (official)
    sim = matmul_transposed(zn / tau, zn)  # (M, D) @ (D, M): s_tj
    positive_sim = _ops.rowdot(w, sim)  # (M,) sum_i w_ti s_ti, before the diagonal is -inf
    exp, row_max, denom = exp_without_self(sim)  # sim's buffer, not used after
    per_anchor = total_w * (row_max + xp.log(denom)) - positive_sim  # l_t
    dlogits = _dlogits_over_exp(exp, total_w / denom, w)  # exp's buffer, not used after
    loss, reduce_cache = reduce(per_anchor, reduction)
    scale = 2.0 if variant == "official" else 1.0  # the code's -(1/N) sum over 2N anchors
    return loss * scale, Cache(dlogits, zn, tau, scale, norm_cache, reduce_cache)


def backward(dout, cache: Cache):
    """Gradient of :func:`forward` with respect to ``z``; returns ``(dz,)``.

    With ``g_t = dL/dl_t`` and ``D_tj = (sum_k w_tk) p_tj - w_tj`` (cached),
    ``ds_tj = g_t D_tj`` and, as ``s = z z^T / tau``,
    ``dz = (G + G^T) z / tau = (g * (D z) + D^T (g * z)) / tau`` (no (M, M) temporary).
    """
    if isinstance(cache, BlockedCache):
        return _backward_blocked(dout, cache)
    dlogits, zn = cache.dlogits, cache.zn
    xp = backend.namespace(zn)
    g = (reduce_backward(dout, cache.reduction) * cache.scale)[:, None]  # (M, 1)
    dzn = (g * (dlogits @ zn) + xp.permute_dims(dlogits, (1, 0)) @ (g * zn)) / cache.temperature  # (M, D)
    return (maybe_normalize_backward(dzn, cache.norm),)


class BlockedCache(NamedTuple):
    """What :func:`backward` needs from the blocked :func:`forward` (``block_size`` or ``anchors``): O(M x D)."""

    blocks: _blocked.Cache
    scale: float
    norm: object
    reduction: tuple


def _forward_blocked(zn, norm_cache, labels, depth, sigma, tau, variant, reduction, block_size, index):
    """:func:`forward` in blocks of anchors: Eq. 4 as ``l_t = c_t LSE_t - sum_i w~_ti s_ti``
    (:mod:`refimpl.losses._blocked`), the weights of each block rebuilt from O(M) arrays."""
    xp = backend.namespace(zn)
    m = zn.shape[0]
    index = _blocked.anchor_index(None, zn) if index is None else index
    block_size = index.shape[0] if block_size is None else block_size
    d = None if depth is None else xp.astype(depth, zn.dtype)
    log_max = None if d is None else _log_kernel_max(d, labels, sigma)  # O(M log M), as the dense form
    raw = partial(_block_kernel, labels=labels, depth=d, sigma=sigma, log_max=log_max, dtype=zn.dtype)
    column_total = _column_totals(raw, zn, block_size) if variant == "official" else None
    build = partial(_block_similarities_and_weights, zn=zn, tau=tau, raw=raw, column_total=column_total)
    per_anchor, blocks = _blocked.forward(build, zn, index, block_size, 1.0 / tau)
    loss, reduce_cache = reduce(per_anchor, reduction, count=m)
    scale = 2.0 if variant == "official" else 1.0  # the code's -(1/N) sum over 2N anchors
    return loss * scale, BlockedCache(blocks, scale, norm_cache, reduce_cache)


def _backward_blocked(dout, cache: BlockedCache):
    g = reduce_backward(dout, cache.reduction) * cache.scale  # (A,) dL/dl_t, dout checked
    return (maybe_normalize_backward(_blocked.backward(g, cache.blocks), cache.norm),)


def _block_kernel(idx, is_self, *, labels, depth, sigma, log_max, dtype):
    """Unnormalised kernel weights ``w_ti`` (B, M) of the anchors ``idx`` (B,), shifted as :func:`_weights`
    (by the anchor's row maximum over its positives), 0 where ``is_self``."""
    xp = backend.namespace(is_self)
    others = xp.logical_not(is_self)
    if labels is not None:
        others = others & (xp.take(labels, idx)[:, None] == labels[None, :])  # Dirac kernel
    if depth is None:
        return xp.astype(others, dtype)
    log_kernel = xp.take(depth, idx)[:, None] - depth[None, :]  # (B, M) d_t - d_i, in place below
    log_kernel *= log_kernel
    log_kernel *= -0.5 / sigma**2
    log_kernel -= xp.take(log_max, idx)[:, None]
    return _ops.exp_where(log_kernel, others)


def _column_totals(raw, zn, block_size):
    """``sum_k w_jk`` for every row ``j`` (M,), one block of rows at a time: the official variant
    divides column ``j`` by it (its weights are symmetric, so the column total is row ``j``'s)."""
    xp = backend.namespace(zn)
    return xp.concat([xp.sum(raw(idx, _blocked.self_columns(idx, zn)), axis=1)
                      for idx in _blocked.blocks(_blocked.anchor_index(None, zn), block_size)])


def _block_similarities_and_weights(idx, is_self, *, zn, tau, raw, column_total):
    """``s_tj`` and the normalised weights ``w~_tj`` (B, M) of the anchors ``idx``: the
    ``build`` of :func:`refimpl.losses._blocked.forward`."""
    xp = backend.namespace(zn)
    sim = matmul_transposed(xp.take(zn, idx, axis=0) / tau, zn)  # (B, D) @ (D, M)
    w = raw(idx, is_self)
    if column_total is None:  # paper: per anchor, 0 without positives
        total = xp.sum(w, axis=1)
        w /= xp.where(total > 0, total, xp.ones_like(total))[:, None]
    else:  # official: the code's broadcast, column j over the row sum of j
        w /= column_total[None, :]
    return sim, w


def _dlogits_over_exp(exp, row_scale, w):
    """``dl_t/ds_tj = (sum_k w_tk) p_tj - w_tj`` with ``p = exp / denom``, given ``row_scale`` (M,) =
    ``(sum_k w_tk) / denom_t``; overwrites ``exp`` (M, M). Why: the gradient backward needs is
    built in the buffer of the last (M, M) temporary instead of a third one."""
    exp *= row_scale[:, None]
    exp -= w
    return exp


def _weights(zn, labels, depth, sigma, variant):
    """Composite kernel weights (M, M) normalised as ``variant`` does (see :func:`forward`)."""
    xp = backend.namespace(zn)
    m = zn.shape[0]
    same_label = None if labels is None else labels[:, None] == labels[None, :]  # (M, M) bool
    if depth is None:
        w = (backend.full((m, m), 1.0, xp=xp, dev=backend.device(zn), dtype=zn.dtype) if same_label is None
             else xp.astype(same_label, zn.dtype))  # made on zn's device (no round trip through the host)
        w = fill_diagonal(w, 0.0)  # an anchor is not its own positive
    else:
        log_kernel = _shifted_log_kernel(xp.astype(depth, zn.dtype), labels, sigma)
        # exp only where the Dirac kernel does not zero the weight; in log_kernel's buffer
        w = _ops.exp_(log_kernel) if same_label is None else _ops.exp_where(log_kernel, same_label)
    total = xp.sum(w, axis=1)  # (M,)
    if variant == "official":
        w /= total[None, :]  # the code's broadcast: column j over the row sum of j
    else:
        w /= xp.where(total > 0, total, xp.ones_like(total))[:, None]
    return w


def _shifted_log_kernel(d, labels, sigma):
    """``-(d_t - d_i)^2 / (2 sigma^2)`` minus its row maximum over the positives (M, M), -inf on the diagonal.

    Why in place: the differences are squared, scaled and shifted in their own
    (M, M) buffer, the largest temporary of the loss; the shift
    (:func:`_log_kernel_max`) keeps a small sigma from underflowing every
    weight of an anchor (it cancels in the normalisation).
    """
    xp = backend.namespace(d)
    log_kernel = d[:, None] - d[None, :]  # (M, M) d_t - d_i, turned into the log-kernel in place
    log_kernel *= log_kernel
    log_kernel *= -0.5 / sigma**2
    log_kernel -= _log_kernel_max(d, labels, sigma)[:, None]
    return fill_diagonal(log_kernel, -xp.inf)  # an anchor is not its own positive


def _log_kernel_max(d, labels, sigma):
    """Row maximum of the Gaussian log-kernel over each anchor's positives (M,), 0 without any.

    The log-space shift of :func:`_weights` (so that a small sigma cannot
    underflow every weight of an anchor), in O(M log M): the positive nearest
    in depth is a neighbour in the order sorted by (label, depth), and rounding
    is monotone, so ``-(d_t - d_i)^2 / (2 sigma^2)`` evaluated there is
    exactly the maximum of the (M, M) log-kernel over ``i != t`` with
    ``y_i = y_t``.
    """
    xp = backend.namespace(d)
    order = xp.argsort(d)
    if labels is not None:  # a stable sort keeps the depth order within each label
        order = xp.take(order, _ops.argsort_stable(xp.take(labels, order)))
    sorted_d = xp.take(d, order)
    gap = sorted_d[1:] - sorted_d[:-1]  # (M - 1,) to the next row in sorted order
    none = xp.full_like(d[:1], xp.inf)
    if labels is not None:
        sorted_labels = xp.take(labels, order)
        gap = xp.where(sorted_labels[1:] == sorted_labels[:-1], gap, xp.full_like(gap, xp.inf))
    nearest = xp.minimum(xp.concat((none, gap)), xp.concat((gap, none)))  # (M,) sorted order
    log_max = nearest * nearest * (-0.5 / sigma**2)  # -inf without positives
    log_max = xp.where(log_max == -xp.inf, xp.zeros_like(log_max), log_max)
    return xp.take(log_max, xp.argsort(order))  # back to anchor order


def _check(z, labels, depth, sigma, temperature, variant, reduction, normalize, finite=True):
    """Validate the arguments of :func:`forward`; returns the temperature as a float.

    ``finite``: refuse NaN and inf in ``z`` and ``depth`` (a device-to-host sync)."""
    check_array("z", z, ndim=2, finite=finite)
    m = z.shape[0]
    if m < 2:
        raise ValueError(f"z must have at least 2 rows (an anchor needs others), got shape {tuple(z.shape)}")
    check_choice("variant", variant, VARIANTS)
    check_choice("reduction", reduction, REDUCTIONS)
    check_positive("sigma", sigma)
    tau = check_positive("temperature", temperature)
    if variant == "official":
        check_official(reduction, normalize)
    for name, x, floating in (("labels", labels, False), ("depth", depth, True)):
        if x is not None:
            check_array(name, x, ndim=1, floating=floating, real=True, finite=finite)
            check_same_length(name, x, "z", m)
    if variant == "official":
        check_two_views(z, labels=labels, depth=depth)
    return tau
