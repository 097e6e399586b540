"""Pieces shared by the losses: L2 normalisation, log-softmax, reductions.

Each piece follows the forward/backward contract so that a loss composes
them and its backward calls their backwards in reverse order.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _ops, _validate, backend
from .._validate import check_bool, check_choice

REDUCTIONS = ("mean", "sum", "none")
VARIANTS = ("paper", "official")

#: floor on the norm in :func:`l2_normalize` (as ``torch.nn.functional.normalize``).
NORM_EPS = 1e-12


class NormCache(NamedTuple):
    """What :func:`l2_normalize_backward` needs from :func:`l2_normalize`."""

    z: object  # (..., D) the unit rows
    denom: object  # (..., 1) the floored norms
    floored: object  # (..., 1) bool, the norm is at or below the floor


class ReduceCache(NamedTuple):
    """What :func:`reduce_backward` needs from :func:`reduce`."""

    reduction: str
    values: object  # (N,) the per-sample values
    count: int | None = None  # what "mean" divides by; None: N


def l2_normalize(x, *, eps: float = NORM_EPS):
    """Rows of ``x`` scaled to unit Euclidean norm.

    .. math:: z_i = x_i / \\max(\\lVert x_i \\rVert_2, \\epsilon)

    In plain text: ``z_i = x_i / max(||x_i||_2, eps)``.

    Stabilisers: the norm is floored at ``eps`` = 1e-12 so that a zero row gives
    a zero row instead of NaN; backward is the exact derivative of this
    floored map (above the floor it is the usual projection). The norm is
    computed as LAPACK's ``nrm2`` does, from the row scaled by its largest
    absolute value (:func:`_row_norm`): squaring float32 values overflows from
    about 1.8e19 (and underflows below 1e-19), which would make finite rows
    normalise to 0 or NaN.

    Shapes: ``x`` (..., D) -> ``z`` (..., D).

    >>> from typing import NamedTuple

import numpy as np
    >>> z, _ = l2_normalize(np.array([[3.0, 4.0]]))
    >>> z.tolist()
    [[0.6, 0.8]]
    """
    xp = backend.namespace(x)
    norm = _row_norm(x)  # (..., 1)
    floored = norm <= eps
    denom = xp.where(floored, xp.full_like(norm, eps), norm)
    z = x / denom
    return z, NormCache(z, denom, floored)


def _row_norm(x):
    """``||x||_2`` over the last axis, (..., 1), without squaring ``x`` itself.

    .. math:: \\lVert x \\rVert_2 = s \\, \\lVert x / s \\rVert_2, \\quad s = \\max_k |x_k|

    In plain text: ``||x||_2 = s ||x / s||_2`` with ``s = max_k |x_k|``.

    >>> from typing import NamedTuple

import numpy as np
    >>> x = np.array([[3e30, 4e30], [0.0, 0.0]], dtype=np.float32)   # x * x overflows float32
    >>> (_row_norm(x) / 1e30).ravel().round(4).tolist()
    [5.0, 0.0]
    """
    xp = backend.namespace(x)
    s = xp.max(xp.abs(x), axis=-1, keepdims=True)  # (..., 1)
    scaled = x / xp.where(s > 0, s, xp.ones_like(s))  # entries in [-1, 1]; zero rows stay 0
    return s * xp.sqrt(xp.sum(scaled * scaled, axis=-1, keepdims=True))


def l2_normalize_backward(dz, cache: NormCache):
    """Gradient of :func:`l2_normalize`: ``dx = (dz - z <z, dz>) / |x|`` above the floor."""
    xp = backend.namespace(dz)
    radial = xp.sum(dz * cache.z, axis=-1, keepdims=True)  # (..., 1)
    # below the floor the map is x / eps, whose derivative has no radial term;
    # masking the (..., 1) factor is much cheaper than a where over (..., D)
    radial = radial * xp.astype(xp.logical_not(cache.floored), radial.dtype)
    return (dz - cache.z * radial) / cache.denom


def maybe_normalize(x, normalize: bool):
    """``l2_normalize(x)`` when ``normalize`` else the identity (cache ``None``)."""
    if not check_bool("normalize", normalize):
        return x, None
    return l2_normalize(x)


def maybe_normalize_backward(dz, cache):
    return dz if cache is None else l2_normalize_backward(dz, cache)


def reduce(values, reduction: str, *, count: int | None = None):
    """Apply ``reduction`` in {"mean", "sum", "none"} to per-sample ``values`` (N,).

    ``count``: what "mean" divides by, when ``values`` are part of a larger
    batch (the anchors of one process, whose means over a partition add up to
    the batch mean); default N.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    xp = backend.namespace(values)
    if reduction == "none":
        out = values
    elif reduction == "sum":
        out = xp.sum(values)
    elif count is None:
        out = xp.mean(values)
    else:
        out = xp.sum(values) / count
    return out, ReduceCache(reduction, values, count)


def reduce_backward(dout, cache: ReduceCache):
    """Gradient of :func:`reduce` with respect to the per-sample values; checks ``dout`` first."""
    reduction, values = cache.reduction, cache.values
    xp = backend.namespace(values)
    shape = tuple(values.shape)
    if reduction == "none":
        return check_dout(dout, values, shape)
    dout = check_dout(dout, values, ())
    n = cache.count
    if n is None:
        n = 1
        for s in shape:
            n *= s
    scale = 1.0 if reduction == "sum" else 1.0 / n
    return xp.broadcast_to(dout * scale, shape)


def check_dout(dout, like, shape: tuple):
    """The upstream gradient of a loss of ``shape`` with ``like``'s dtype, namespace and device.

    :func:`refimpl._validate.check_dout`: a Python number only for a scalar loss.
    """
    return _validate.check_dout(dout, _validate.output_of(like, shape))


def check_official(reduction: str, normalize: bool) -> None:
    """``variant="official"`` reproduces code that always L2-normalises and has its own reduction."""
    if reduction != "mean":
        raise ValueError(
            f"reduction must be 'mean' with variant='official' (the authors' code has its own "
            f"reduction), got {reduction!r}")
    if not normalize:
        raise ValueError("normalize must be True with variant='official' "
                         "(the authors' code always takes the cosine of raw embeddings)")


def matmul_transposed(x, y):
    """``x @ y^T``, (M, D) @ (D, K) -> (M, K), with ``y^T`` copied first.

    Why the copy: for ``z @ z.T`` NumPy takes its syrk path, which fills the
    mirror triangle in one thread and is slower than a plain gemm on a
    (D, K) copy.
    """
    xp = backend.namespace(x, y)
    return x @ xp.astype(xp.permute_dims(y, (1, 0)), y.dtype)  # astype copies


def fill_diagonal(a, value):
    """Set ``a[t, t] = value`` for a square ``a`` the caller owns; use the returned array.

    Why a strided flat view: it writes M entries, where a where() over an
    (M, M) mask would read and write M^2 (the view is a copy on backends
    that cannot reshape in place, hence: use the result).
    """
    xp = backend.namespace(a)
    m = a.shape[0]
    flat = xp.reshape(a, (m * m,))  # a view where the backend allows it
    flat[::m + 1] = value
    return xp.reshape(flat, (m, m))


def exp_without_self(logits):
    """Shifted ``exp`` of square ``logits`` over ``j != t``; overwrites ``logits``.

    Returns ``e`` (M, M) with ``e_tj = exp(s_tj - m_t)`` and ``e_tt = 0``, the
    row maximum ``m`` (M,) over ``j != t`` and ``denom = sum_j e_tj`` (M,).
    Why: the anchor is excluded exactly (its entry is set to -inf), and
    subtracting ``m_t`` (finite, as M >= 2) cannot overflow and keeps
    ``denom >= 1``; all of it in the one (M, M) buffer of ``logits``.
    """
    xp = backend.namespace(logits)
    logits = fill_diagonal(logits, -xp.inf)
    row_max = xp.max(logits, axis=1)  # (M,)
    logits -= row_max[:, None]
    exp = _ops.exp_(logits)
    return exp, row_max, xp.sum(exp, axis=1)


def check_two_views(z, **per_row) -> None:
    """``variant="official"`` stacks two views view-major: an even number of rows of ``z``, and
    every per-row argument (None is skipped) equal on both views, as the authors' code keeps one per pair."""
    m = z.shape[0]
    if m % 2:
        raise ValueError(f"z must have an even number of rows with variant='official' (two views stacked "
                         f"view-major), got {m}")
    for name, x in per_row.items():
        if x is not None and not bool(backend.namespace(x).all(x[:m // 2] == x[m // 2:])):
            raise ValueError(f"{name} must give both views of a sample the same value with "
                             f"variant='official': {name}[:M // 2] == {name}[M // 2:]")


def off_diagonal(like):
    """The (M, M) bool mask ``j != t`` for the (M, ...) array ``like``, on its device (teaching forms)."""
    return backend.asarray(~np.eye(like.shape[0], dtype=bool), like=like)


def check_paper_only(variant: str) -> None:
    """A teaching form ``forward_naive`` that covers ``variant="paper"`` only refuses the others."""
    if variant != "paper":
        raise ValueError(f"variant must be 'paper' for the teaching form forward_naive (the official "
                         f"variant is in forward), got {variant!r}")


def log_softmax(logits):
    """Row-wise log-softmax, with its cache (the softmax) for :func:`log_softmax_backward`.

    .. math:: \\ell_{tj} = s_{tj} - \\log \\sum_k e^{s_{tk}}

    In plain text: ``l_tj = s_tj - log sum_k exp(s_tk)``.

    Stabiliser: the row maximum is subtracted before ``exp`` (exact: it cancels).

    Shapes: ``logits`` (M, K) -> (M, K).

    >>> from typing import NamedTuple

import numpy as np
    >>> out, _ = log_softmax(np.log(np.array([[1.0, 3.0]])))
    >>> np.exp(out).tolist()
    [[0.25, 0.75]]
    """
    xp = backend.namespace(logits)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)  # (M, K)
    exp = xp.exp(shifted)
    denom = xp.sum(exp, axis=-1, keepdims=True)  # (M, 1)
    return shifted - xp.log(denom), exp / denom


def log_softmax_backward(dlog_prob, softmax):
    """Gradient of :func:`log_softmax`: ``ds_tj = dl_tj - p_tj sum_k dl_tk``."""
    xp = backend.namespace(dlog_prob)
    return dlog_prob - softmax * xp.sum(dlog_prob, axis=-1, keepdims=True)
