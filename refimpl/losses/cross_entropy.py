"""Softmax cross-entropy from logits, with optional class weights and label smoothing.

The loss of classification heads and probes (e.g. the glaucoma and diabetic
retinopathy diagnosis on DINO features in Cheng et al., arXiv 2501.02451).
Label smoothing is that of Szegedy et al. (CVPR 2016, Sec. 7). Values and gradients follow
``torch.nn.functional.cross_entropy`` with integer targets, ``weight`` and
``label_smoothing`` (no ``ignore_index``).
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._validate import (check_array, check_choice, check_nonnegative, check_same_dtype,
                         check_same_length, namespace)
from ._common import (REDUCTIONS, log_softmax, log_softmax_backward, reduce,
                      reduce_backward)


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    coef: object  # (N, K) per-class coefficients of -log p (targets, smoothing, weights, mean)
    softmax: object  # log_softmax's cache
    reduction: tuple


def forward(logits, targets, weight=None, *, label_smoothing: float = 0.0, reduction: str = "mean"):
    """Cross-entropy between ``softmax(logits)`` and (smoothed) one-hot ``targets``.

    With :math:`\\log p_{ic} = s_{ic} - \\log\\sum_k e^{s_{ik}}`, class weights
    :math:`w` (all 1 by default) and smoothing :math:`\\varepsilon` over
    :math:`C` classes, the loss of sample :math:`i` is

    .. math::

        \\ell_i = -(1 - \\varepsilon)\\, w_{y_i} \\log p_{i y_i}
                  - \\frac{\\varepsilon}{C} \\sum_{c} w_c \\log p_{ic},

    In plain text: ``l_i = -(1 - eps) w[y_i] log p[i, y_i] - (eps / C) sum_c w[c] log p[i, c]``,

    and ``"mean"`` is the weighted mean of PyTorch,
    :math:`\\sum_i \\ell_i / \\sum_i w_{y_i}` (the plain mean when
    ``weight`` is None). Stabiliser: the row maximum is subtracted before
    ``exp`` (exact, it cancels).

    Parameters
    ----------
    logits : array (N, C), real floating, finite.
    targets : array (N,), integer class indices in ``[0, C)``.
    weight : array (C,), optional
        Non-negative class weights. With ``"mean"`` the targets' weights must
        not all be zero (the weighted mean would be 0/0).
    label_smoothing : float in [0, 1]
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    loss : array, scalar or (N,)
    cache : for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> logits, targets = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), np.array([0, 2])
    >>> round(float(forward(logits, targets)[0]), 4)
    0.8606
    >>> round(float(forward(logits, targets, np.array([1.0, 1.0, 3.0]))[0]), 4)
    1.2060
    """
    xp = namespace(logits=logits, targets=targets, weight=weight)
    check_choice("reduction", reduction, REDUCTIONS)
    eps = _check_smoothing(label_smoothing)
    check_array("logits", logits, ndim=2)
    n, n_classes = logits.shape
    _check_targets(targets, n, n_classes)
    if weight is not None:
        _check_weight(weight, n_classes, logits)
    classes = backend.asarray(list(range(n_classes)), like=targets, dtype=targets.dtype)
    one_hot = xp.astype(targets[:, None] == classes[None, :], logits.dtype)  # (N, C)
    w = xp.ones_like(logits[0, :]) if weight is None else weight  # (C,)
    # per-sample coefficients of log p: (1 - eps) w_y one-hot + eps w / C
    coef = (1 - eps) * one_hot * w[None, :] + (eps / n_classes) * w[None, :]  # (N, C)
    if reduction == "mean":
        # weighted mean = sum of the per-sample losses / sum_i w_{y_i}
        total = xp.sum(one_hot @ w)
        if weight is not None and not bool(total > 0):  # host sync only with weights
            raise ValueError("weight of the targets sums to 0, so the weighted mean is undefined")
        coef, reduction = coef / total, "sum"
    log_prob, lcache = log_softmax(logits)
    values = -xp.sum(coef * log_prob, axis=1)  # (N,)
    loss, rcache = reduce(values, reduction)
    return loss, Cache(coef, lcache, rcache)


def backward(dout, cache: Cache):
    """Gradient of :func:`forward`: ``(dlogits, None, None)`` (targets and weights get none)."""
    dvalues = reduce_backward(dout, cache.reduction)  # (N,)
    dlogits = log_softmax_backward(-cache.coef * dvalues[:, None], cache.softmax)
    return dlogits, None, None


def _check_smoothing(label_smoothing) -> float:
    v = check_nonnegative("label_smoothing", label_smoothing)
    if v > 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
    return v


def _check_targets(targets, n: int, n_classes: int):
    xp = backend.namespace(targets)
    check_array("targets", targets, ndim=1, floating=False)
    if not xp.isdtype(targets.dtype, "integral"):
        raise TypeError(f"targets must have an integer dtype (class indices), got {targets.dtype}")
    check_same_length("targets", targets, "logits", n)
    if bool(xp.any((targets < 0) | (targets >= n_classes))):
        raise ValueError(f"targets must be class indices in [0, {n_classes}), got values outside")


def _check_weight(weight, n_classes: int, logits):
    xp = backend.namespace(weight)
    check_array("weight", weight, shape=(n_classes,))
    check_same_dtype("weight", weight, "logits", logits)
    if bool(xp.any(weight < 0)):
        raise ValueError("weight must be >= 0 for every class")
