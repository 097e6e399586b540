"""Two-pass, row-blocked softmax-contrastive losses: O(block x M) memory, and any subset of anchors.

The WSP kernel loss (and SupCon, NT-Xent, y-Aware) and the AdaCon loss share one
form. For anchor ``t`` of a batch of M rows, with logits ``L_tj`` over the
other rows ``j != t`` and weights ``P_tj`` (0 at ``j = t``),

.. math::

    \\ell_t = c_t \\,\\mathrm{LSE}_t - \\sum_{j \\ne t} P_{tj} L_{tj}, \\qquad
    \\mathrm{LSE}_t = \\log \\sum_{j \\ne t} e^{L_{tj}}, \\qquad
    c_t = \\sum_{j \\ne t} P_{tj},

    L_{tj} = a\\, \\hat z_t^\\top \\hat z_j + b_{tj}

In plain text: ``l_t = c_t LSE_t - sum_{j != t} P_tj L_tj``, ``LSE_t = log sum_{j != t} exp(L_tj)``,
``c_t = sum_{j != t} P_tj``, ``L_tj = a zh_t . zh_j + b_tj`` (``zh`` the normalised rows).

(kernel: ``a = 1 / tau``, ``b = 0``, ``P`` the normalised kernel weights;
AdaCon: ``a = s``, ``b = s d_tj``, ``P = [j in P(t)] / |P(t)|``; on the
positives ``b = 0``, so ``sum_j P_tj L_tj`` is the positive term of both).
Its gradient needs only the softmax ``p_tj = exp(L_tj - LSE_t)``:

.. math::

    \\frac{\\partial \\ell_t}{\\partial L_{tj}} = c_t\\, p_{tj} - P_{tj}, \\qquad
    \\frac{\\partial L}{\\partial \\hat z} = a\\,(G \\hat Z + G^\\top \\hat Z_A),
    \\quad G_{tj} = g_t (c_t p_{tj} - P_{tj})

In plain text: ``dl_t/dL_tj = c_t p_tj - P_tj``, ``dL/dzh = a (G Zh + G^T Zh_A)``,
``G_tj = g_t (c_t p_tj - P_tj)``.

with ``g_t = dL/d\\ell_t`` from the reduction. Nothing here needs the whole
(M, M) matrix at once, which is the idea of memory-efficient attention (Rabe
and Staats 2021; FlashAttention): keep per-row softmax statistics, recompute
the blocks.

* Forward, one block of anchors (B rows) at a time: build ``L`` and ``P``
  (B, M), keep ``LSE_t`` and ``c_t`` (two numbers per anchor), drop the
  block. The cache is ``zn`` (M, D) and O(M) numbers.
* Backward: rebuild each block, ``p = exp(L - LSE)`` from the cached row
  statistics (no second log-sum-exp), ``G`` (B, M), and add ``a G zn`` to the
  block's rows and ``a G^T zn_B`` to every row.

About twice the matrix products of the dense form (the similarity block is
computed in both passes), and never more than a few (B, M) arrays alive.
An ``anchors`` subset runs the same loop over those rows only: its loss is
the sum of their terms and its gradient reaches every row of ``z``, so the
losses and gradients of any partition of the anchors add up to the full
ones (one rank of a data-parallel run, :mod:`refimpl.ddp`).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from .. import _ops, backend
from .._validate import check_array, check_integer


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`: O(M x D)."""

    build: Callable  # build(index (B,), is_self (B, M)) -> (L (B, M), P (B, M)), from O(M) arrays
    zn: object  # (M, D) the rows the logits are made of
    index: object  # (A,) the anchors
    log_sum_exp: object  # (A,) LSE_t
    total: object  # (A,) c_t = sum_j P_tj
    block_size: int
    slope: float  # a = dL_tj / d(zn_t . zn_j)


def check_block_size(block_size):
    """``None`` (dense) or a positive int; bools and floats are refused."""
    return None if block_size is None else check_integer("block_size", block_size, minimum=1)


def anchor_index(anchors, z):
    """The anchors as an index array (A,) on ``z``'s device: ``range(M)`` for ``None``, else validated.

    ``anchors`` must be a 1-D integer array of distinct indices in ``[0, M)``.
    """
    xp = backend.namespace(z)
    m = z.shape[0]
    if anchors is None:
        return backend.asarray(xp.arange(m), like=z)
    check_array("anchors", anchors, ndim=1, floating=False)
    if not xp.isdtype(anchors.dtype, "integral"):
        raise TypeError(f"anchors must be an integer index array, got dtype {anchors.dtype}")
    if not bool(xp.all((anchors >= 0) & (anchors < m))):
        raise ValueError(f"anchors must be row indices of z in [0, {m}), got values outside")
    ordered = xp.sort(anchors)
    if not bool(xp.all(ordered[1:] != ordered[:-1])):
        raise ValueError("anchors must be distinct row indices, got a repeated index")
    return anchors


def forward(build, zn, index, block_size: int, slope: float):
    """Per-anchor losses ``l_t`` (A,) for the anchors ``index``, and the :class:`Cache`.

    ``build(idx, is_self)`` returns the logits ``L`` and the weights ``P``
    (B, M) of the anchors ``idx`` (B,), ``P`` zero where ``is_self``.
    """
    xp = backend.namespace(zn)
    parts_lse, parts_total, parts_loss = [], [], []
    for idx in blocks(index, block_size):
        is_self = self_columns(idx, zn)
        logits, weights = build(idx, is_self)  # (B, M) each
        positive = _ops.rowdot(weights, logits)  # (B,) sum_j P_tj L_tj, before the -inf
        lse = _log_sum_exp_without_self(logits, is_self)
        total = xp.sum(weights, axis=1)  # (B,) c_t
        parts_lse.append(lse)
        parts_total.append(total)
        parts_loss.append(total * lse - positive)
    lse, total = xp.concat(parts_lse), xp.concat(parts_total)
    return xp.concat(parts_loss), Cache(build, zn, index, lse, total, block_size, slope)


def backward(g, cache: Cache):
    """``dL/dzn`` (M, D) for upstream weights ``g`` (A,) of the per-anchor losses."""
    zn = cache.zn
    xp = backend.namespace(zn)
    dzn = xp.zeros_like(zn)
    start = 0
    for idx in blocks(cache.index, cache.block_size):
        stop = start + idx.shape[0]
        is_self = self_columns(idx, zn)
        logits, weights = cache.build(idx, is_self)  # recomputed, (B, M)
        logits = xp.where(is_self, -xp.inf, logits)  # a Python scalar: no (B, M) fill
        logits -= cache.log_sum_exp[start:stop, None]
        prob = _ops.exp_(logits)  # (B, M) p_tj, 0 on the anchor's own column
        grad = prob  # G_tj = g_t (c_t p_tj - P_tj), in prob's buffer
        grad *= (g[start:stop] * cache.total[start:stop])[:, None]
        grad -= g[start:stop, None] * weights
        rows = xp.take(zn, idx, axis=0)  # (B, D)
        dzn += xp.permute_dims(grad, (1, 0)) @ rows  # (M, B) @ (B, D): t as the other row
        dzn = _ops.add_rows(dzn, idx, grad @ zn)  # (B, M) @ (M, D): t as the anchor
        start = stop
    return dzn * cache.slope


def blocks(index, block_size: int):
    """Consecutive slices of at most ``block_size`` anchors."""
    a = index.shape[0]
    for start in range(0, a, block_size):
        yield index[start:min(start + block_size, a)]


def self_columns(idx, zn):
    """(B, M) bool: column ``j`` is the anchor ``idx[b]`` itself."""
    xp = backend.namespace(zn)
    columns = backend.asarray(xp.arange(zn.shape[0]), like=idx)
    return idx[:, None] == columns[None, :]


def _log_sum_exp_without_self(logits, is_self):
    """``log sum_{j != t} exp(L_tj)`` per row (B,), in one (B, M) temporary.

    Stabiliser (exact, it cancels): the row maximum over ``j != t`` is
    subtracted before ``exp`` (finite as M >= 2).
    """
    xp = backend.namespace(logits)
    logits = xp.where(is_self, -xp.inf, logits)  # a Python scalar: no (B, M) fill
    row_max = xp.max(logits, axis=1)  # (B,)
    logits -= row_max[:, None]
    return row_max + xp.log(xp.sum(_ops.exp_(logits), axis=1))
