"""Regression losses: mean squared error, L1 and Huber (the AdaCon regression branch).

AdaCon (Dai et al., IEEE TMI) supervises its regression branch,
:math:`\\mathcal{L}_{reg}` of the total loss Eq. 8, "with either MSE or robust
alternatives like L1 and Huber loss" (Sec. III): L1 for BMD, MSE for LVEF
(following Ouyang et al.), and ablates all three in Tables III and X (Huber
with delta 0.05 for BMD, 4 for LVEF). Values, reductions and gradients follow
``torch.nn.functional.mse_loss``, ``l1_loss`` and ``huber_loss`` (reduction
``"mean"`` averages over every element).
"""
from __future__ import annotations

from typing import NamedTuple

from .._validate import check_array, check_choice, check_positive, check_same_dtype, namespace
from ._common import reduce, reduce_backward

KINDS = ("mse", "l1", "huber")


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    slope: object  # (N,) d(loss element)/dr
    reduction: tuple


def forward(pred, target, *, kind: str = "mse", delta: float = 1.0, reduction: str = "mean"):
    """Element-wise regression loss of ``pred`` against ``target``, reduced.

    With :math:`r = \\hat y - y`:

    .. math::

        \\ell_{\\mathrm{mse}} = r^2, \\qquad
        \\ell_{\\mathrm{l1}} = |r|, \\qquad
        \\ell_{\\mathrm{huber}} = \\begin{cases}
            \\tfrac12 r^2 & |r| \\le \\delta \\\\
            \\delta\\,(|r| - \\tfrac12 \\delta) & |r| > \\delta
        \\end{cases}

    In plain text: ``mse = r^2``, ``l1 = |r|``, ``huber = r^2 / 2`` if ``|r| <= delta``, else
    ``delta (|r| - delta / 2)``.

    Kinks: the L1 derivative at :math:`r = 0` is taken as the subgradient 0
    (``sign(0) = 0``, as PyTorch). Huber is continuously differentiable (its
    derivative :math:`\\mathrm{clip}(r, -\\delta, \\delta)` is continuous at
    :math:`|r| = \\delta`), so it has no gradient kink. No stabiliser is needed.
    ``huber`` with ``delta`` is ``delta`` times PyTorch's ``smooth_l1_loss``
    with ``beta = delta``.

    Parameters
    ----------
    pred, target : array (N,) or (N, K), the same shape, real floating, finite.
    kind : {"mse", "l1", "huber"}
    delta : float > 0
        Huber threshold (ignored by the other kinds).
    reduction : {"mean", "sum", "none"}
        ``"none"`` returns the element-wise losses with the shape of ``pred``.

    Returns
    -------
    loss : array, scalar or the shape of ``pred``
    cache : for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> pred, target = np.array([0.5, 2.0, -1.0]), np.array([0.0, 0.0, -1.0])
    >>> [round(float(forward(pred, target, kind=k)[0]), 4) for k in KINDS]
    [1.4167, 0.8333, 0.5417]
    """
    xp = namespace(pred=pred, target=target)
    check_choice("kind", kind, KINDS)
    delta = check_positive("delta", delta)
    check_array("pred", pred)
    if pred.ndim not in (1, 2):
        raise ValueError(f"pred must have shape (N,) or (N, K), got {tuple(pred.shape)}")
    check_array("target", target, shape=tuple(pred.shape))
    check_same_dtype("target", target, "pred", pred)
    r = pred - target
    if kind == "mse":
        values, slope = r * r, 2 * r
    elif kind == "l1":
        values, slope = xp.abs(r), xp.sign(r)
    else:
        inside = xp.abs(r) <= delta
        values = xp.where(inside, 0.5 * r * r, delta * (xp.abs(r) - 0.5 * delta))
        slope = xp.where(inside, r, delta * xp.sign(r))
    loss, rcache = reduce(values, reduction)
    # the slope d(loss element)/dr is cheap to keep and is all backward needs
    return loss, Cache(slope, rcache)


def backward(dout, cache: Cache):
    """Gradient of :func:`forward`: ``(dpred,)`` (the target gets none)."""
    return (reduce_backward(dout, cache.reduction) * cache.slope,)
