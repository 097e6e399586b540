"""Multi-class N-pair loss (Sohn, NeurIPS 2016), an AdaCon baseline.

AdaCon (Dai et al., IEEE TMI, Sec. IV-A3) compares with the N-pair loss,
"treating each unique label as an individual class". Sohn's N-pair-mc loss
(Sec. 3.2) assumes the N pairs come from N distinct classes; with ``labels``
given, pairs that share a label are all counted as positives of each other,
with the target spread uniformly over them (the convention of TensorFlow's
``npairs_loss``); without labels every pair is its own class (the paper).
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._validate import (check_array, check_choice, check_nonnegative, check_positive, check_same_dtype,
                         check_same_length, namespace)
from ._common import (REDUCTIONS, log_softmax, log_softmax_backward, maybe_normalize,
                      maybe_normalize_backward, reduce, reduce_backward)


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    anchor: object  # (N, D) raw, for the L2 penalty
    positive: object
    za: object  # (N, D) normalised anchors
    zp: object  # (N, D) normalised positives
    target: object  # (N, N) target distribution over the pairs
    softmax: object  # log_softmax's cache
    anchor_norm: object  # l2_normalize caches, None without normalisation
    positive_norm: object
    l2_reg: float
    temperature: float
    reduction: tuple


def forward(anchor, positive, labels=None, *, l2_reg: float = 0.0, temperature: float = 1.0,
            normalize: bool = True, reduction: str = "mean"):
    """Multi-class N-pair loss over anchors and their positives.

    With similarities :math:`s_{ij} = z_i^\\top z^+_j / \\tau` and targets
    :math:`T_{ij}` (the identity without labels; otherwise
    :math:`\\mathbb 1[c_i = c_j]` normalised per row), the loss of anchor
    :math:`i` is

    .. math::

        \\ell_i = -\\sum_j T_{ij} \\log \\frac{e^{s_{ij}}}{\\sum_k e^{s_{ik}}}
                  + \\lambda \\bigl(\\lVert f_i \\rVert^2 + \\lVert f^+_i \\rVert^2\\bigr),

    In plain text:
    ``l_i = -sum_j T_ij log(exp(s_ij) / sum_k exp(s_ik)) + lambda (||f_i||^2 + ||f+_i||^2)``,

    which without labels and with :math:`\\tau = 1` is Sohn's (2016)
    (N+1)-tuplet loss (Eq. 3) of anchor :math:`i` within an N-pair batch, the
    N-pair-mc loss (Sec. 3.2),
    :math:`\\log(1 + \\sum_{j \\ne i} e^{z_i^\\top z^+_j - z_i^\\top z^+_i})`.
    The regulariser (Sohn, "L2 norm regularization of embedding vectors": keep
    the norms small, as the unnormalised inner products are unbounded) acts on
    the *inputs* :math:`f` (before any normalisation) and is off by default
    (``l2_reg = 0``); TensorFlow's ``npairs_loss`` uses
    ``0.25 * reg_lambda`` times the same mean, i.e. ``l2_reg = reg_lambda / 4``.
    Stabilisers: the row maximum is subtracted in the log-softmax (exact);
    L2 normalisation floors norms at 1e-12.

    Parameters
    ----------
    anchor, positive : array (N, D), real floating, finite; row i of each is a pair.
    labels : array (N,), optional
        Class of each pair (any dtype compared with ``==``).
    l2_reg : float >= 0
        :math:`\\lambda` of the regulariser.
    temperature : float > 0
        :math:`\\tau`; 1 in the paper.
    normalize : bool
        L2-normalise the embeddings (default); False is the paper's form.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    loss : array, scalar or (N,)
    cache : for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> p = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    >>> round(float(forward(a, p)[0]), 4)
    0.9357
    >>> round(float(forward(a, p, normalize=False, l2_reg=0.01)[0]), 4)
    1.1109
    """
    xp = namespace(anchor=anchor, positive=positive, labels=labels)
    check_choice("reduction", reduction, REDUCTIONS)
    l2_reg = check_nonnegative("l2_reg", l2_reg)
    temperature = check_positive("temperature", temperature)
    check_array("anchor", anchor, ndim=2)
    n = anchor.shape[0]
    check_array("positive", positive, shape=tuple(anchor.shape))
    check_same_dtype("positive", positive, "anchor", anchor)
    if labels is None:  # every pair its own class
        labels = backend.asarray(list(range(n)), like=anchor, dtype=xp.int64)
    else:
        check_array("labels", labels, ndim=1, floating=False, real=True)
        check_same_length("labels", labels, "anchor", n)
    same = labels[:, None] == labels[None, :]  # (N, N)
    target = xp.astype(same, anchor.dtype)
    target = target / xp.sum(target, axis=1, keepdims=True)  # rows sum to 1
    za, ca = maybe_normalize(anchor, normalize)
    zp, cp = maybe_normalize(positive, normalize)
    logits = (za @ xp.permute_dims(zp, (1, 0))) / temperature  # (N, N)
    log_prob, lcache = log_softmax(logits)
    values = -xp.sum(target * log_prob, axis=1)  # (N,)
    if l2_reg > 0:
        values = values + l2_reg * (xp.sum(anchor * anchor, axis=1) + xp.sum(positive * positive, axis=1))
    loss, rcache = reduce(values, reduction)
    return loss, Cache(anchor, positive, za, zp, target, lcache, ca, cp, l2_reg, temperature, rcache)


def backward(dout, cache: Cache):
    """Gradient of :func:`forward`: ``(danchor, dpositive, None)``."""
    za, zp, l2_reg = cache.za, cache.zp, cache.l2_reg
    xp = backend.namespace(za)
    dvalues = reduce_backward(dout, cache.reduction)[:, None]  # (N, 1)
    dlogits = log_softmax_backward(-cache.target * dvalues, cache.softmax) / cache.temperature  # (N, N)
    da = maybe_normalize_backward(dlogits @ zp, cache.anchor_norm)  # (N, D)
    dp = maybe_normalize_backward(xp.permute_dims(dlogits, (1, 0)) @ za, cache.positive_norm)  # (N, D)
    if l2_reg > 0:
        da = da + 2 * l2_reg * dvalues * cache.anchor
        dp = dp + 2 * l2_reg * dvalues * cache.positive
    return da, dp, None
