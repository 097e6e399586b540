"""DINO self-distillation loss with its centring and teacher-temperature warm-up.

DINO (Caron et al., ICCV 2021) is the self-supervised method of the
augmentation-scale study on retinal images (Cheng et al., arXiv 2501.02451, Sec. 2, Fig. 1c). The
conventions follow ``DINOLoss`` of facebookresearch/dino (``main_dino.py``):
student logits divided by ``student_temp = 0.1``; teacher probabilities
``softmax((t - C) / teacher_temp)`` without gradient; cross-entropy over every
(teacher global crop, student crop) pair except the same view, averaged over
the batch and over the ``n_global * (ncrops - 1)`` terms (``2 * ncrops - 2``
for two global crops); the centre ``C`` updated by an EMA of the teacher batch
mean after the loss; the teacher temperature warmed up linearly
0.04 -> 0.07. Crops are stacked view-major: rows ``v * B : (v + 1) * B`` hold
view ``v`` of the ``B`` images, the ``n_global`` global views first.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._validate import check_array, check_nonnegative, check_positive, check_same_dtype, namespace
from ._common import check_dout, log_softmax, log_softmax_backward


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    q_sum: object  # (V, B*K) sum over the global views paired with each crop of the teacher's Q
    scale: float  # 1 / (B G (V - 1))
    softmax: object  # log_softmax's cache, (V*B, K)
    student_temp: float


def forward(student, teacher, center, *, student_temp: float = 0.1, teacher_temp: float = 0.04,
            n_global: int = 2):
    """DINO cross-entropy between centred, sharpened teacher and student crops.

    With :math:`P_v = \\mathrm{softmax}(s_v / \\tau_s)` for student crop
    :math:`v` and :math:`Q_g = \\mathrm{softmax}((t_g - C) / \\tau_t)` for
    teacher global crop :math:`g` (no gradient),

    .. math::

        L = \\frac{1}{G(V - 1)} \\sum_{g=1}^{G} \\sum_{v \\ne g}
            \\frac{1}{B} \\sum_{b=1}^{B} \\sum_k -Q_{g,bk} \\log P_{v,bk}

    In plain text:
    ``L = 1/(G (V - 1)) sum_g sum_{v != g} (1/B) sum_b sum_k -Q[g, b, k] log P[v, b, k]``.

    (Caron et al. 2021, Eq. 3, the multi-crop objective, which sums the
    cross-entropies; the official ``DINOLoss`` averages them over the batch
    and the :math:`G(V - 1)` pairs, and so do we; :math:`G` = ``n_global``
    global crops, :math:`V` = ``ncrops`` student crops). Stabiliser: both
    softmaxes subtract their row maximum (exact). Note the centre is *not*
    updated here; call :func:`update_center` with the same teacher logits after
    the loss, as the official code does.

    Parameters
    ----------
    student : array (ncrops * B, K) logits, view-major, global crops first.
    teacher : array (n_global * B, K) logits of the teacher (treated as constant).
    center : array (K,) or (1, K).
    student_temp, teacher_temp : float > 0
    n_global : int >= 1

    Returns
    -------
    loss : scalar array
    cache : for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> student = np.array([[1.0, 0.0], [0.0, 0.5], [0.2, 0.1]])  # ncrops = 3, B = 1
    >>> teacher = np.array([[0.3, 0.0], [0.0, 0.1]])
    >>> loss, _ = forward(student, teacher, np.zeros(2), student_temp=0.5, teacher_temp=0.25)
    >>> round(float(loss), 4)
    0.9421
    """
    xp = namespace(student=student, teacher=teacher, center=center)
    student_temp = check_positive("student_temp", student_temp)
    teacher_temp = check_positive("teacher_temp", teacher_temp)
    b = _check_views(student, teacher, center, n_global)
    k = teacher.shape[1]
    n_crops = student.shape[0] // b
    log_q, _ = log_softmax((teacher - xp.reshape(center, (1, k))) / teacher_temp)
    q = xp.reshape(xp.exp(log_q), (n_global, b * k))  # (G, B*K)
    log_p, lcache = log_softmax(student / student_temp)
    log_p = xp.reshape(log_p, (n_crops, b * k))  # (V, B*K)
    # pair (g, v) is used unless v is the same global view g
    pair = backend.asarray(  # (G, V): pair (g, v) is used unless v is the same global view g
        [[float(g != v) for v in range(n_crops)] for g in range(n_global)], like=student,
        dtype=student.dtype)
    scale = 1.0 / (b * n_global * (n_crops - 1))
    cross = -(q @ xp.permute_dims(log_p, (1, 0)))  # (G, V): sum_b sum_k -Q log P
    loss = xp.sum(pair * cross) * scale
    # the student's gradient needs sum_g pair[g, v] Q_g for every crop v
    q_sum = xp.permute_dims(pair, (1, 0)) @ q  # (V, B*K)
    return loss, Cache(q_sum, scale, lcache, student_temp)


def backward(dout, cache: Cache):
    """Gradient of :func:`forward`: ``(dstudent, None, None)``."""
    q_sum, softmax = cache.q_sum, cache.softmax
    xp = backend.namespace(q_sum)
    dlog_p = xp.reshape(-q_sum * (check_dout(dout, q_sum, ()) * cache.scale), tuple(softmax.shape))  # (V*B, K)
    dstudent = log_softmax_backward(dlog_p, softmax) / cache.student_temp
    return dstudent, None, None


def update_center(center, teacher, momentum: float = 0.9):
    """EMA of the teacher batch mean: the new centre (the inputs are not modified).

    .. math:: C \\leftarrow m\\, C + (1 - m) \\frac{1}{n} \\sum_{i=1}^{n} t_i

    In plain text: ``C <- m C + (1 - m) mean_i t_i``.

    over all ``n = n_global * B`` teacher rows (Caron et al. 2021, Eq. 4;
    official ``DINOLoss.update_center``, single process).

    Parameters
    ----------
    center : array (K,) or (1, K); the result has the same shape.
    teacher : array (n, K) teacher logits.
    momentum : float in [0, 1]

    >>> import numpy as np
    >>> update_center(np.zeros((1, 2)), np.array([[1.0, 2.0], [3.0, 0.0]])).tolist()
    [[0.2, 0.1]]
    """
    xp = backend.namespace(center, teacher)
    m = check_nonnegative("momentum", momentum)
    if m > 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
    check_array("teacher", teacher, ndim=2)
    k = teacher.shape[1]
    check_array("center", center)
    if tuple(center.shape) not in ((k,), (1, k)):
        raise ValueError(f"center must have shape ({k},) or (1, {k}), got {tuple(center.shape)}")
    check_same_dtype("center", center, "teacher", teacher)
    batch_mean = xp.reshape(xp.mean(teacher, axis=0), tuple(center.shape))
    return m * center + (1 - m) * batch_mean


def teacher_temperature(epoch: int, warmup_epochs: int, start: float = 0.04, end: float = 0.07) -> float:
    """Teacher temperature of ``epoch`` under DINO's linear warm-up.

    As the official schedule ``np.linspace(start, end, warmup_epochs)`` followed
    by ``end``: ``start + (end - start) * epoch / (warmup_epochs - 1)`` for
    ``epoch < warmup_epochs`` (so ``end`` is reached at epoch
    ``warmup_epochs - 1``), ``end`` afterwards; with ``warmup_epochs = 1`` epoch
    0 uses ``start``.

    .. math:: \\tau_t(e) = \\tau_0 + (\\tau_1 - \\tau_0) \\min(1, e / (W - 1))

    In plain text: ``tau_t(e) = tau_0 + (tau_1 - tau_0) min(1, e / (W - 1))``.

    >>> [round(teacher_temperature(e, 4), 4) for e in range(5)]
    [0.04, 0.05, 0.06, 0.07, 0.07]
    """
    if not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
    if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
    start, end = check_positive("start", start), check_positive("end", end)
    if epoch >= warmup_epochs:
        return end
    if warmup_epochs == 1:
        return start
    return start + (end - start) * epoch / (warmup_epochs - 1)


def _check_views(student, teacher, center, n_global: int) -> int:
    """Validate the shapes; return the batch size B."""
    if not isinstance(n_global, int) or isinstance(n_global, bool) or n_global < 1:
        raise ValueError(f"n_global must be an integer >= 1, got {n_global!r}")
    check_array("teacher", teacher, ndim=2)
    rows, k = teacher.shape
    if rows % n_global:
        raise ValueError(f"teacher has {rows} rows, expected a multiple of n_global={n_global}")
    b = rows // n_global
    check_array("student", student, shape=(None, k))
    check_same_dtype("teacher", teacher, "student", student)
    if student.shape[0] % b or student.shape[0] // b < max(n_global, 2):
        raise ValueError(
            f"student has {student.shape[0]} rows, expected ncrops * B with B={b} and "
            f"ncrops >= max(n_global, 2) (the global crops come first)"
        )
    check_array("center", center)
    if tuple(center.shape) not in ((k,), (1, k)):
        raise ValueError(f"center must have shape ({k},) or (1, {k}), got {tuple(center.shape)}")
    check_same_dtype("center", center, "student", student)
    return b
