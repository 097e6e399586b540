"""Margin contrastive loss of ConPro's 'Con' step (Nguyen et al., CVPR-W 2024, Eq. 1-2).

Pairs ``(a_k, b_k)`` with ``same_k = 1`` (same class) are pulled together and
pairs with ``same_k = 0`` pushed apart, in cosine geometry. Two variants:

* ``variant="paper"`` (default): Eq. 1 as printed, terms *not* squared, with the
  erratum of Eq. 2 fixed (Eq. 2 prints the cosine similarity; the distance is
  ``d = 1 - cos``, range [0, 2], which is what makes m in (0, 2] meaningful).
* Erratum (ConPro code, ``losses/losses.py``): ``variant="official"`` is the
  authors' ``ContrastiveLoss`` (``Hong7Cong/ConPrO``): squared terms on the cosine *similarity* ``s``,
  ``mean[(1 - y) s^2 + y max(0, m - s)^2]``. Their label is 1 for a same-class
  pair (the loaders write ``complabels = (same group) * 1``), so ``y = same``.
  With m = 2 the clamp never binds: positives are pushed towards ``s = 2``
  (unreachable, so simply towards ``s = 1``) and negatives towards ``s = 0``
  (orthogonal, not opposite). Its reduction is the mean, so ``reduction`` must
  be ``"mean"``, and it always normalises, so ``normalize`` must be True.

Kinks and the subgradients chosen (as PyTorch's ``relu``: ``max'(0) = 0``): the
paper hinge at ``d = m`` gets slope 0. The squared hinge of the official variant
is differentiable there (slope 0 on both sides). ``d = 1 - cos`` has no kink at
``a = b``: the cosine is smooth and stationary there, so the gradient is 0.

Read :func:`forward_naive` first (the paper variant, Eq. 1-2 line by line);
:func:`forward` adds the official variant.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._validate import (check_array, check_choice, check_positive, check_same_dtype, check_same_length,
                         check_unit_interval, namespace)
from ._common import (REDUCTIONS, VARIANTS, check_official, check_paper_only, maybe_normalize,
                      maybe_normalize_backward, reduce, reduce_backward)

#: ConPro Sec. 3.1: "m is maximum margin, ranging from 0 to 2 (here we choose m = 2)".
DEFAULT_MARGIN = 2.0


class NaiveCache(NamedTuple):
    """What :func:`backward_naive` needs from :func:`forward_naive`."""

    a_hat: object  # (N, D) normalised a
    b_hat: object  # (N, D) normalised b
    a_norm: object  # l2_normalize cache of a, None without normalisation
    b_norm: object
    y: object  # (N,) same, as floats
    pushed: object  # (N,) 1 where the hinge of a negative pair is active
    reduction: tuple  # reduce's cache


def forward_naive(a, b, same, *, margin: float = DEFAULT_MARGIN, variant: str = "paper",
                  reduction: str = "mean", normalize: bool = True):
    """Teaching form of :func:`forward`: ConPro Eq. 1-2 written out, paper variant only.

    Same arguments and values as :func:`forward` with ``variant="paper"``
    (``"official"`` is refused: its squared terms live in :func:`forward`):

    .. math:: d_k = 1 - \\hat a_k^\\top \\hat b_k, \\qquad
              \\ell_k = y_k\\, d_k + (1 - y_k) \\max(0,\\, m - d_k)

    In plain text: ``d_k = 1 - cos(a_k, b_k)``, ``l_k = y_k d_k + (1 - y_k) max(0, m - d_k)``.

    >>> import numpy as np
    >>> a, b = np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 1.0], [0.0, 2.0]])
    >>> loss, cache = forward_naive(a, b, np.array([1, 0]))
    >>> round(float(loss), 4)
    0.6464
    """
    xp = namespace(a=a, b=b, same=same)
    margin = _check_inputs(a, b, same, margin, variant, reduction, normalize)
    check_paper_only(variant)
    a_hat, a_norm = maybe_normalize(a, normalize)
    b_hat, b_norm = maybe_normalize(b, normalize)
    y = xp.astype(same, a.dtype)
    d = 1.0 - xp.sum(a_hat * b_hat, axis=-1)  # (N,) Eq. 2, as a distance
    pushed = xp.astype(margin - d > 0, a.dtype)  # the hinge is active (slope 0 at the kink)
    per_pair = y * d + (1 - y) * pushed * (margin - d)  # Eq. 1
    loss, reduce_cache = reduce(per_pair, reduction)
    return loss, NaiveCache(a_hat, b_hat, a_norm, b_norm, y, pushed, reduce_cache)


def backward_naive(dout, cache: NaiveCache):
    """Gradients ``(da, db)`` of :func:`forward_naive`: the chain rule one factor at a time.

    ``dl/dd`` is ``y`` on a positive pair and ``-[m > d]`` on a negative one;
    ``dd/da_hat = -b_hat``, ``dd/db_hat = -a_hat``; then the normalisation.
    """
    xp = backend.namespace(cache.a_hat)
    dper = reduce_backward(dout, cache.reduction)  # (N,) dL/dl_k, dout checked
    dper_dd = cache.y - (1 - cache.y) * cache.pushed  # (N,) dl_k / dd_k
    dd = xp.expand_dims(dper * dper_dd, axis=-1)  # (N, 1) dL/dd_k
    da_hat = -dd * cache.b_hat
    db_hat = -dd * cache.a_hat
    return (maybe_normalize_backward(da_hat, cache.a_norm),
            maybe_normalize_backward(db_hat, cache.b_norm))


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    a_hat: object  # (N, D) normalised a
    b_hat: object  # (N, D) normalised b
    a_norm: object  # l2_normalize cache of a, None without normalisation
    b_norm: object
    dper_dcos: object  # (N,) dl_k / dcos_k
    reduction: tuple  # reduce's cache


def forward(a, b, same, *, margin: float = DEFAULT_MARGIN, variant: str = "paper",
            reduction: str = "mean", normalize: bool = True):
    """ConPro margin contrastive loss over pairs (Eq. 1-2), with its cache.

    .. math::

        \\text{paper:}\\quad \\ell_k = y_k\\, d_k + (1 - y_k) \\max(0,\\, m - d_k),
        \\qquad d_k = 1 - \\frac{a_k^\\top b_k}{\\lVert a_k\\rVert \\lVert b_k\\rVert}

        \\text{official:}\\quad \\ell_k = (1 - y_k)\\, s_k^2 + y_k \\max(0,\\, m - s_k)^2,
        \\qquad s_k = \\frac{a_k^\\top b_k}{\\lVert a_k\\rVert \\lVert b_k\\rVert}

    In plain text: paper ``l_k = y_k d_k + (1 - y_k) max(0, m - d_k)``, ``d_k = 1 - cos(a_k, b_k)``;
    official ``l_k = (1 - y_k) s_k^2 + y_k max(0, m - s_k)^2``, ``s_k = cos(a_k, b_k)``.

    with ``y_k = same_k``; the loss is ``reduce(l)`` (official: the mean).

    Erratum (ConPro Eq. 2): Eq. 2 defines ``d_cos`` as the cosine *similarity*, yet Eq. 1 uses
    it as a distance with m in [0, 2]; the paper variant reads ``d = 1 - cos``.

    Stabiliser: the L2 normalisation floors each norm at 1e-12
    (:func:`refimpl.losses._common.l2_normalize`); PyTorch's
    ``cosine_similarity`` floors at 1e-8, so the official variant matches the
    authors' numbers whenever every norm exceeds 1e-8.

    Parameters
    ----------
    a, b : array (N, D)
        Raw embeddings of the two members of each pair (L2-normalised inside,
        backward through the normalisation, unless ``normalize=False``, where
        they must already be unit vectors).
    same : array (N,)
        1 for a same-class pair, 0 otherwise (bool, integer or float).
    margin : float
        ``m``; in (0, 2] for the paper variant, > 0 for the official one.
    variant : {"paper", "official"}
    reduction : {"mean", "sum", "none"}
        "none" returns the per-pair losses (N,).
    normalize : bool

    Returns
    -------
    loss : 0-d array, or (N,) for ``reduction="none"``
    cache : for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [1.0, 0.0]])
    >>> b = np.array([[1.0, 1.0], [0.0, 2.0]])
    >>> loss, cache = forward(a, b, np.array([1, 0]))
    >>> round(float(loss), 4)            # (d = 0.2929 + max(0, 2 - 1)) / 2
    0.6464
    >>> round(float(forward(a, b, np.array([1, 0]), variant="official")[0]), 4)
    0.8358
    >>> da, db = backward(1.0, cache)
    >>> da.round(4).tolist()
    [[0.0, -0.3536], [0.0, 0.5]]
    """
    xp = namespace(a=a, b=b, same=same)
    margin = _check_inputs(a, b, same, margin, variant, reduction, normalize)
    a_hat, a_cache = maybe_normalize(a, normalize)
    b_hat, b_cache = maybe_normalize(b, normalize)
    cos = xp.sum(a_hat * b_hat, axis=-1)  # (N,)
    y = xp.astype(same, a.dtype)
    if variant == "paper":
        gap = margin - (1.0 - cos)  # m - d
        active = xp.astype(gap > 0, a.dtype)  # hinge slope 0 at the kink, as relu
        per_pair = y * (1.0 - cos) + (1 - y) * active * gap
        # dl/dcos = -dl/dd: cached because it is as cheap as the loss itself
        dper_dcos = (1 - y) * active - y
    else:
        gap = margin - cos
        hinge = xp.where(gap > 0, gap, xp.zeros_like(gap))
        per_pair = (1 - y) * cos ** 2 + y * hinge ** 2
        dper_dcos = 2 * (1 - y) * cos - 2 * y * hinge
    loss, reduce_cache = reduce(per_pair, reduction)
    return loss, Cache(a_hat, b_hat, a_cache, b_cache, dper_dcos, reduce_cache)


def backward(dout, cache: Cache):
    """Gradients ``(da, db)`` of :func:`forward`, each (N, D).

    ``dout``: a 0-d array or a Python number for "mean"/"sum", an (N,) array for
    "none". With ``dcos_k = dout_k * dl_k/dcos_k``: ``da_hat = dcos b_hat``,
    ``db_hat = dcos a_hat``, then back through the normalisation.
    """
    xp = backend.namespace(cache.a_hat)
    dper = reduce_backward(dout, cache.reduction)  # (N,)
    dcos = xp.expand_dims(dper * cache.dper_dcos, axis=-1)  # (N, 1)
    da = maybe_normalize_backward(dcos * cache.b_hat, cache.a_norm)
    db = maybe_normalize_backward(dcos * cache.a_hat, cache.b_norm)
    return da, db


def _check_inputs(a, b, same, margin, variant, reduction, normalize) -> float:
    check_choice("variant", variant, VARIANTS)
    check_choice("reduction", reduction, REDUCTIONS)
    check_array("a", a, ndim=2)
    check_array("b", b, shape=tuple(a.shape))
    check_same_dtype("b", b, "a", a)
    check_unit_interval("same", same, binary=True)
    check_same_length("same", same, "a", a.shape[0])
    margin = check_positive("margin", margin)
    if variant == "paper" and margin > 2.0:
        raise ValueError(f"margin must lie in (0, 2] for variant='paper' (the cosine distance "
                         f"lies in [0, 2]), got {margin!r}")
    if variant == "official":
        check_official(reduction, normalize)
    return margin
