"""Optimisers and the learning-rate schedule, as pure functions of dictionaries.

Parameters, gradients and optimiser state are dictionaries ``name -> array``
(the layout of :mod:`refimpl.model`). An optimiser is a frozen dataclass of
hyper-parameters with two methods:

* ``init_state(params) -> state``
* ``step(params, grads, state, *, lr) -> (new_params, new_state)``

Nothing is mutated: every step returns fresh dictionaries and arrays, so an
old ``(params, state)`` pair can be kept and replayed. The learning rate is an
argument of ``step`` so that a schedule (:func:`cosine_lr`) drives it from
outside. The update rules are those of ``torch.optim.SGD`` and
``torch.optim.AdamW`` (same order of operations, so float64 runs agree to
rounding).

For a step captured as a CUDA graph (:mod:`refimpl.graph`), where every
input must be an array on the device and no value may be read back to the
host, ``lr`` may be a 0-d array of the parameters' dtype and namespace and
``state["step"]`` a 0-d integer array (:func:`device_state` makes one from
``init_state``): AdamW's bias corrections are then computed on the device.
An array ``lr`` is not checked for sign (that would read it back). The
numbers agree with the host form to float rounding.

>>> import numpy as np
>>> opt = SGD(momentum=0.9)
>>> params, grads = {"w": np.array([1.0, -2.0])}, {"w": np.array([0.5, 0.5])}
>>> state = opt.init_state(params)
>>> params, state = opt.step(params, grads, state, lr=0.1)
>>> params, state = opt.step(params, grads, state, lr=0.1)
>>> params["w"].round(4).tolist()     # 1 - 0.1 * 0.5 - 0.1 * (0.9 * 0.5 + 0.5)
[0.855, -2.145]
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import backend
from ._validate import _is_array, check_nonnegative, check_positive, real


def _check_grads(params: dict, grads: dict) -> None:
    if set(grads) != set(params):
        missing = sorted(set(params) - set(grads))
        extra = sorted(set(grads) - set(params))
        raise ValueError(f"grads must have the keys of params; missing {missing}, unexpected {extra}")
    for name, p in params.items():
        if tuple(grads[name].shape) != tuple(p.shape):
            raise ValueError(
                f"grads[{name!r}] has shape {tuple(grads[name].shape)}, expected {tuple(p.shape)}")


def _check_lr(lr, params: dict):
    """``lr``: a finite number >= 0, or a 0-d array of the parameters' namespace, device and dtype.

    An array is not read back (no host sync), so its sign is not checked.
    """
    if isinstance(lr, (bool, int, float, np.generic)) or not _is_array(lr):
        return check_nonnegative("lr", lr)  # numbers; refuses str, bool and other objects by name
    if lr.ndim != 0:
        raise ValueError(f"lr must be a number or a 0-d array, got an array of shape {tuple(lr.shape)}")
    p = next(iter(params.values()), None)  # the parameters share namespace, device and dtype
    if p is None:
        return lr
    if backend.namespace(lr) is not backend.namespace(p):
        raise TypeError(f"lr is a {type(lr).__module__}.{type(lr).__name__}, the parameters are "
                        f"{type(p).__module__}.{type(p).__name__} arrays: put lr where they are")
    if backend.device(lr) != backend.device(p):
        raise ValueError(f"lr is on device {backend.device(lr)}, the parameters on {backend.device(p)}")
    if lr.dtype != p.dtype:
        raise TypeError(f"lr has dtype {lr.dtype}, expected the parameters' dtype ({p.dtype}); "
                        "nothing is promoted")
    return lr


def _bias_corrections(betas, t, params: dict):
    """``1 - beta1^t`` and ``sqrt(1 - beta2^t)`` for AdamW's step ``t``: host floats for an integer ``t``,
    0-d arrays in the parameters' dtype for a 0-d integer array ``t`` (computed on its device)."""
    beta1, beta2 = betas
    if isinstance(t, (int, np.integer)):  # NumPy scalars too: a 0-d NumPy array + 1 gives one
        return 1 - beta1**int(t), math.sqrt(1 - beta2**int(t))
    xp = backend.namespace(t)
    if t.ndim != 0 or not xp.isdtype(t.dtype, "integral"):
        raise TypeError(f"state['step'] must be an int or a 0-d integer array, got {t.dtype} of shape "
                        f"{tuple(t.shape)}")
    dtype = next(iter(params.values())).dtype if params else xp.float64
    tf = xp.astype(t, dtype)
    return 1 - beta1**tf, xp.sqrt(1 - beta2**tf)


def device_state(state: dict, like) -> dict:
    """``state`` with its step count as a 0-d int64 array placed like ``like`` (the other entries as they are).

    What a step captured as a CUDA graph needs (:mod:`refimpl.graph`): the count
    is then advanced on the device, and AdamW's bias corrections computed there.

    >>> import numpy as np
    >>> opt = AdamW()
    >>> params = {"w": np.ones(2)}
    >>> state = device_state(opt.init_state(params), like=params["w"])
    >>> _, state = opt.step(params, {"w": np.ones(2)}, state, lr=np.asarray(0.1))
    >>> int(state["step"])
    1
    """
    return {**state, "step": backend.asarray(state["step"], like=like, dtype="int64")}


def _zeros_like(params: dict) -> dict:
    return {name: backend.namespace(p).zeros_like(p) for name, p in params.items()}


@dataclasses.dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with momentum (``torch.optim.SGD``, no dampening).

    .. math::

        g_t = \\nabla_\\theta f(\\theta_{t-1}) + \\lambda\\,\\theta_{t-1}, \\quad
        b_t = \\mu\\, b_{t-1} + g_t \\ (b_0 = 0), \\quad
        \\theta_t = \\theta_{t-1} - \\eta\\, d_t,

    In plain text: ``g_t = grad + lambda theta``, ``b_t = mu b_{t-1} + g_t``,
    ``theta_t = theta_{t-1} - lr d_t``,

    with :math:`d_t = b_t`, or :math:`d_t = g_t + \\mu\\, b_t` when
    ``nesterov``. The weight decay :math:`\\lambda` is coupled (an L2 term
    added to the gradient), as in PyTorch. Starting the buffer at zero equals
    PyTorch's first-step ``b_1 = g_1`` because there is no dampening.

    State: ``{"step": int, "momentum": {name: array}}`` (the buffers are
    absent when ``momentum == 0``).

    >>> import numpy as np
    >>> opt = SGD(momentum=0.0, weight_decay=0.5)
    >>> p, s = opt.step({"w": np.array([2.0])}, {"w": np.array([1.0])},
    ...                 opt.init_state({"w": np.array([2.0])}), lr=0.1)
    >>> p["w"].tolist()                  # 2 - 0.1 * (1 + 0.5 * 2)
    [1.8]
    """

    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def __post_init__(self):
        check_nonnegative("momentum", self.momentum)
        check_nonnegative("weight_decay", self.weight_decay)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def init_state(self, params: dict) -> dict:
        """``{"step": 0, "momentum": zeros like params}``."""
        buffers = _zeros_like(params) if self.momentum > 0 else {}
        return {"step": 0, "momentum": buffers}

    def step(self, params: dict, grads: dict, state: dict, *, lr):
        """One update; returns ``(new_params, new_state)``, inputs untouched.

        ``lr``: a number >= 0, or a 0-d array of the parameters' dtype (see the module docstring).
        """
        lr = _check_lr(lr, params)
        _check_grads(params, grads)
        new_params, new_buffers = {}, {}
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum > 0:
                buf = self.momentum * state["momentum"][name] + g
                new_buffers[name] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            new_params[name] = p - lr * g
        return new_params, {"step": state["step"] + 1, "momentum": new_buffers}


@dataclasses.dataclass(frozen=True)
class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    .. math::

        \\theta \\leftarrow \\theta (1 - \\eta\\lambda), \\quad
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,

        \\theta_t = \\theta - \\frac{\\eta}{1-\\beta_1^t}\\,
        \\frac{m_t}{\\sqrt{v_t}/\\sqrt{1-\\beta_2^t} + \\epsilon}.

    In plain text: ``theta <- theta (1 - lr lambda)``, ``m_t = b1 m + (1 - b1) g``,
    ``v_t = b2 v + (1 - b2) g^2``,
    ``theta_t = theta - lr / (1 - b1^t) m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps)``.

    Stabiliser: ``eps`` (1e-8) is added to the bias-corrected root of the
    second moment, outside the square root, exactly where PyTorch adds it, so
    that a zero gradient history gives a finite step. ``weight_decay``
    defaults to PyTorch's 1e-2 (the WSP paper uses lr = weight decay = 1e-4).

    State: ``{"step": int, "exp_avg": {...}, "exp_avg_sq": {...}}``.

    >>> import numpy as np
    >>> opt = AdamW(weight_decay=0.0)
    >>> p = {"w": np.array([1.0, 1.0])}
    >>> p, s = opt.step(p, {"w": np.array([3.0, -0.2])}, opt.init_state(p), lr=0.1)
    >>> p["w"].round(6).tolist()          # first step moves each entry by ~lr * sign(g)
    [0.9, 1.1]
    """

    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2

    def __post_init__(self):
        for k, beta in enumerate(self.betas):
            if not 0.0 <= real(f"betas[{k}]", beta) < 1.0:
                raise ValueError(f"betas[{k}] must be in [0, 1), got {beta!r}")
        check_positive("eps", self.eps)
        check_nonnegative("weight_decay", self.weight_decay)

    def init_state(self, params: dict) -> dict:
        """``{"step": 0, "exp_avg": zeros, "exp_avg_sq": zeros}``."""
        return {"step": 0, "exp_avg": _zeros_like(params), "exp_avg_sq": _zeros_like(params)}

    def step(self, params: dict, grads: dict, state: dict, *, lr):
        """One update; returns ``(new_params, new_state)``, inputs untouched.

        ``lr``: a number >= 0, or a 0-d array of the parameters' dtype; ``state["step"]`` an int or a
        0-d integer array (see the module docstring).
        """
        lr = _check_lr(lr, params)
        _check_grads(params, grads)
        beta1, beta2 = self.betas
        t = state["step"] + 1
        bias_correction1, root_bc2 = _bias_corrections(self.betas, t, params)
        step_size = lr / bias_correction1
        new_params, exp_avg, exp_avg_sq = {}, {}, {}
        for name, p in params.items():
            xp = backend.namespace(p)
            g = grads[name]
            p = p * (1 - lr * self.weight_decay)
            m = beta1 * state["exp_avg"][name] + (1 - beta1) * g
            v = beta2 * state["exp_avg_sq"][name] + (1 - beta2) * (g * g)
            denom = xp.sqrt(v) / root_bc2 + self.eps
            new_params[name] = p - step_size * (m / denom)
            exp_avg[name], exp_avg_sq[name] = m, v
        return new_params, {"step": t, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def cosine_lr(step: int, *, base_lr: float, total_steps: int, warmup_steps: int = 0,
              min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine decay.

    .. math::

        \\eta(s) = \\begin{cases}
            \\eta_0\\, s / W & s < W \\\\
            \\eta_{\\min} + \\tfrac12(\\eta_0 - \\eta_{\\min})
            \\bigl(1 + \\cos(\\pi \\min(1, (s - W)/(T - W)))\\bigr) & s \\ge W
        \\end{cases}

    In plain text: ``lr(s) = lr_0 s / W`` for ``s < W``, else
    ``min_lr + (lr_0 - min_lr) (1 + cos(pi min(1, (s - W) / (T - W)))) / 2``,

    with ``W = warmup_steps`` and ``T = total_steps`` (the cosine decay of
    Loshchilov & Hutter without restarts, used by the WSP paper; after ``T``
    the rate stays at ``min_lr``). Without warm-up it equals
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max = T``.

    >>> [round(cosine_lr(s, base_lr=1.0, total_steps=6, warmup_steps=2), 4) for s in range(7)]
    [0.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 0.0]
    """
    if int(step) != step or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
    if int(warmup_steps) != warmup_steps or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be an integer in [0, total_steps), got {warmup_steps!r}")
    base_lr = check_nonnegative("base_lr", base_lr)
    min_lr = check_nonnegative("min_lr", min_lr)
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
