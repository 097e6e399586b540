"""Adaptive triplet loss: the AdaCon baseline of Zheng et al., as AdaCon App. B derives it.

AdaCon (Dai et al., IEEE TMI), Appendix B, writes its Eq. 6 for one anchor
:math:`i`, one positive :math:`p` and one negative :math:`n` (unit vectors
:math:`z`, scale :math:`s`, ECDF margins :math:`d` of Eq. 4):

.. math::

    L_{con} = -\\log \\frac{e^{s(z_i^\\top z_p + d_{i,p})}}
                          {e^{s(z_i^\\top z_p + d_{i,p})} + e^{s(z_i^\\top z_n + d_{i,n})}}
            = \\log\\bigl(1 + e^{s h / 2}\\bigr),
    \\qquad
    h = \\lVert z_i - z_p\\rVert^2 - \\lVert z_i - z_n\\rVert^2 + 2 (d_{i,n} - d_{i,p}),

In plain text:
``L_con = -log(e^{s (z_i.z_p + d_ip)} / (e^{s (z_i.z_p + d_ip)} + e^{s (z_i.z_n + d_in)})) = log(1 + exp(s h / 2))``,
``h = ||z_i - z_p||^2 - ||z_i - z_n||^2 + 2 (d_in - d_ip)``,

using :math:`2 z_i^\\top z_j = 2 - \\lVert z_i - z_j\\rVert^2` on the sphere,
and calls the result an approximation of the adaptive triplet loss of
Zheng et al. (arXiv:2103.13482), i.e. the hinge :math:`\\max(0, h)`.

Readings taken here (the appendix leaves these open):

* The appendix keeps :math:`d_{i,p}` in its first line and drops it in the
  second, which is exact only for a positive with the anchor's label (Eq. 14:
  :math:`d_{i,p} = 0`). We keep the first line: the margin is
  :math:`2(d_{i,n} - d_{i,p})`, which is the appendix's :math:`2 d_{i,n}` when
  ``y_positive == y_anchor`` (a second view of the anchor, as in AdaCon). It
  lies in (-4, 4) and is not clipped: a positive farther in label than the
  negative gets a negative margin.
* Its last line has no hinge, and its Taylor steps
  (:math:`\\log(1 + e^x) \\approx e^x \\approx 1 + x`) hold at no common
  :math:`x`. We take the triplet loss's hinge :math:`\\max(0, h)`, whose exact
  link to Eq. 6 is the limit :math:`\\tfrac{2}{s} L_{con} \\to \\max(0, h)` as
  :math:`s \\to \\infty` (error at most :math:`2 \\log 2 / s`; tested).
* The ECDF :math:`\\phi` of Eq. 5 (non-strict inequality) is taken over
  ``population``, by default the anchors' labels: with every batch sample the
  anchor of one triplet this is the batch ECDF of Eq. 5. Pass the batch or the
  training labels otherwise.

AdaCon notes that Zheng et al. apply the loss without L2 normalisation
(Sec. IV-A2): ``normalize=False`` gives that form (the sphere identity above
then no longer holds).
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._validate import check_array, check_choice, check_same_dtype, check_same_length, namespace
from ._common import REDUCTIONS, maybe_normalize, maybe_normalize_backward, reduce, reduce_backward
from .adacon import ecdf


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    to_pos: object  # (N, D) z_a - z_p
    to_neg: object  # (N, D) z_a - z_n
    active: object  # (N,) bool, the hinge is active
    anchor_norm: object  # l2_normalize caches, None without normalisation
    positive_norm: object
    negative_norm: object
    reduction: tuple


def forward(anchor, positive, negative, y_anchor, y_positive, y_negative, *, population=None,
            normalize: bool = True, reduction: str = "mean"):
    """Adaptive triplet loss with the ECDF margin of AdaCon (App. B, Eq. 4-5).

    .. math::

        \\ell_t = \\max\\bigl(0,\\; \\lVert z_a - z_p \\rVert^2 - \\lVert z_a - z_n \\rVert^2
                  + 2 (d_{a,n} - d_{a,p})\\bigr), \\qquad
        d_{a,q} = 2 \\lvert \\phi(y_a) - \\phi(y_q) \\rvert

    In plain text: ``l_t = max(0, ||z_a - z_p||^2 - ||z_a - z_n||^2 + 2 (d_an - d_ap))``,
    ``d_aq = 2 |phi(y_a) - phi(y_q)|``,

    for each triplet :math:`t = (a, p, n)` (AdaCon App. B, last line, with the
    hinge of the triplet loss; see the module docstring for the readings).
    The margin lies in (-4, 4), the range of the squared-distance difference
    on the unit sphere. Kink: where the argument of the max is exactly 0 the
    hinge's subgradient 0 is used (as ``relu``). Stabiliser: the L2 normalisation floors norms at 1e-12.

    Parameters
    ----------
    anchor, positive, negative : array (N, D), real floating, finite.
    y_anchor, y_positive, y_negative : array (N,), the triplets' labels (real or integer).
    population : array (M,), optional
        Labels defining the ECDF (:func:`refimpl.losses.adacon.ecdf`, Eq. 5);
        ``y_anchor`` by default.
    normalize : bool
        L2-normalise the embeddings first (default); False is Zheng et al.'s form.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    loss : array, scalar or (N,)
    cache : for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> p = np.array([[1.0, 1.0], [0.0, 1.0]])
    >>> n = np.array([[0.0, 1.0], [1.0, 1.0]])
    >>> y = np.array([0.1, 0.9])
    >>> loss, _ = forward(a, p, n, y, y, y[::-1], reduction="none")
    >>> loss.round(4).tolist()
    [0.5858, 1.4142]
    """
    xp = namespace(anchor=anchor, positive=positive, negative=negative, y_anchor=y_anchor,
                   y_positive=y_positive, y_negative=y_negative, population=population)
    check_choice("reduction", reduction, REDUCTIONS)
    check_array("anchor", anchor, ndim=2)
    n = anchor.shape[0]
    for name, z in (("positive", positive), ("negative", negative)):
        check_array(name, z, shape=tuple(anchor.shape))
        check_same_dtype(name, z, "anchor", anchor)
    for name, y in (("y_anchor", y_anchor), ("y_positive", y_positive), ("y_negative", y_negative)):
        check_array(name, y, ndim=1, floating=False, real=True)
        check_same_length(name, y, "anchor", n)
    population = y_anchor if population is None else population
    phi_a, phi_p, phi_n = (ecdf(y, population) for y in (y_anchor, y_positive, y_negative))
    margin = 4 * (xp.abs(phi_a - phi_n) - xp.abs(phi_a - phi_p))  # 2 (d_an - d_ap), (N,)
    margin = xp.astype(margin, anchor.dtype)  # integer labels give a float64 ECDF
    za, ca = maybe_normalize(anchor, normalize)
    zp, cp = maybe_normalize(positive, normalize)
    zn, cn = maybe_normalize(negative, normalize)
    to_pos, to_neg = za - zp, za - zn  # (N, D)
    h = xp.sum(to_pos * to_pos, axis=1) - xp.sum(to_neg * to_neg, axis=1) + margin  # (N,)
    active = h > 0
    loss, rcache = reduce(xp.where(active, h, xp.zeros_like(h)), reduction)
    return loss, Cache(to_pos, to_neg, active, ca, cp, cn, rcache)


def backward(dout, cache: Cache):
    """Gradient of :func:`forward`: ``(danchor, dpositive, dnegative, None, None, None)``."""
    to_pos, to_neg = cache.to_pos, cache.to_neg
    xp = backend.namespace(to_pos)
    dh = reduce_backward(dout, cache.reduction)  # (N,)
    dh = 2 * xp.where(cache.active, dh, xp.zeros_like(dh))[:, None]  # (N, 1), d|u|^2 = 2u
    da = maybe_normalize_backward(dh * (to_pos - to_neg), cache.anchor_norm)
    dp = maybe_normalize_backward(-dh * to_pos, cache.positive_norm)
    dn = maybe_normalize_backward(dh * to_neg, cache.negative_norm)
    return da, dp, dn, None, None, None
