"""SupCon and SimCLR's NT-Xent under their own names: special cases of the WSP kernel loss.

Both delegate to :mod:`refimpl.losses.kernel` (Dirac kernel on ``labels``, no
Gaussian factor); nothing is computed here but the labels and a constant factor.
The teaching form is :func:`refimpl.losses.kernel.forward_naive` with ``labels``
and without ``depth``.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._validate import check_array, check_positive, namespace
from . import kernel


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward` (or :func:`ntxent_forward`)."""

    kernel: object  # kernel.Cache
    factor: float  # temperature / base_temperature


def forward(z, *, labels=None, temperature=0.1, base_temperature=None, reduction="mean",
            normalize=True, block_size=None, anchors=None):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020, Eq. 2, "L_out").

    .. math::
        \\ell_t = -\\frac{\\tau}{\\tau_b} \\frac{1}{|P(t)|} \\sum_{i \\in P(t)}
            \\log \\frac{e^{s_{ti}}}{\\sum_{j \\ne t} e^{s_{tj}}}, \\qquad
        s_{tj} = z_t^\\top z_j / \\tau

    In plain text:
    ``l_t = -(tau / tau_b) (1/|P(t)|) sum_{i in P(t)} log(exp(s_ti) / sum_{j != t} exp(s_tj))``,
    ``s_tj = z_t . z_j / tau``,

    with ``P(t)`` the other rows of the same label. This is WSP Eq. 4 with the
    Dirac kernel alone: ``forward(z, labels=y, temperature=tau,
    base_temperature=b) == (tau / b) * kernel.forward(z, labels=y,
    temperature=tau)``. As in HobbitLong/SupContrast's ``SupConLoss``: the
    anchor is excluded from numerator and denominator, positives stay in the
    denominator, an anchor without positives contributes 0 and still counts in
    the mean, and the loss is scaled by ``tau / base_tau`` (there 0.07 / 0.07;
    ``base_temperature=None`` means no scaling). Their row-max stabiliser is
    taken over ``j != t`` here (see :func:`refimpl.losses.kernel.forward`). Unlike that code,
    rows are L2-normalised inside unless ``normalize=False``.

    ``labels=None`` gives SimCLR (see :func:`ntxent_forward`). ``block_size``
    (memory-bounded two-pass form) and ``anchors`` (the loss of some anchors
    against the whole batch, one process of a data-parallel run) are those of
    :func:`refimpl.losses.kernel.forward`.

    Shapes: ``z`` (M, D), rows stacked view-major when there are several views;
    ``labels`` (M,). Returns ``(loss, cache)``.

    >>> import numpy as np
    >>> z = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> loss, _ = forward(z, labels=np.array([0, 0, 1, 1]), temperature=0.07, base_temperature=0.07)
    >>> round(float(loss), 4)
    0.0279
    """
    factor = 1.0
    if base_temperature is not None:
        factor = check_positive("temperature", temperature) / check_positive(
            "base_temperature", base_temperature)
    if labels is None:
        labels = _pair_ids(z)
    loss, cache = kernel.forward(z, labels=labels, temperature=temperature, reduction=reduction,
                                 normalize=normalize, block_size=block_size, anchors=anchors)
    return loss * factor, Cache(cache, factor)


def backward(dout, cache: Cache):
    """Gradient of :func:`forward` (or :func:`ntxent_forward`) w.r.t. ``z``; returns ``(dz,)``."""
    (dz,) = kernel.backward(dout, cache.kernel)  # checks dout; the loss is linear in it
    return (dz * cache.factor,)


def ntxent_forward(z, *, temperature=0.1, reduction="mean", normalize=True, block_size=None, anchors=None):
    """SimCLR's NT-Xent (Chen et al., ICML 2020, Eq. 1): two views, the other view is the positive.

    .. math::
        \\ell_t = -\\log \\frac{e^{s_{t,t'}}}{\\sum_{j \\ne t} e^{s_{tj}}}, \\qquad
        t' = t \\pm N

    In plain text: ``l_t = -log(exp(s_{t,t'}) / sum_{j != t} exp(s_tj))``, ``t' = t +- N``,

    for ``z`` (2N, D) stacked view-major (rows ``t`` and ``t + N`` are the two
    views of sample ``t``); ``"mean"`` is SimCLR's average over the 2N anchors.
    WSP Eq. 4 with sample ids ``t mod N`` as labels. The NTXenLoss of the WSP
    and y-Aware repositories returns twice this mean (``loss_i + loss_j``).
    ``block_size`` and ``anchors`` as in :func:`refimpl.losses.kernel.forward`.

    >>> import numpy as np
    >>> z = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [-0.6, 0.8]])
    >>> loss, _ = ntxent_forward(z, temperature=0.5)
    >>> round(float(loss), 4)
    0.4302
    """
    return forward(z, labels=None, temperature=temperature, reduction=reduction,
                   normalize=normalize, block_size=block_size, anchors=anchors)


ntxent_backward = backward


def _pair_ids(z):
    """Sample ids ``t mod N`` (M,) for two views, on the device of ``z``."""
    check_array("z", z, ndim=2)
    m = z.shape[0]
    if m % 2 or m < 2:
        raise ValueError(f"z must stack two views (an even number of rows >= 2) when labels is None, "
                         f"got shape {tuple(z.shape)}")
    xp = namespace(z=z)
    return backend.asarray(xp.arange(m) % (m // 2), like=z)
