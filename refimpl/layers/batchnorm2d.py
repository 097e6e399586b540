"""Batch normalisation over (N, H, W) per channel (Ioffe & Szegedy 2015), as PyTorch's BatchNorm2d.

Training mode normalises with the batch statistics (biased variance) and
reports PyTorch's running-statistics update (unbiased variance) through
:func:`new_running_stats`; evaluation mode normalises with the running
statistics. Nothing is mutated: the running statistics come back as new arrays.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate, backend

_AXES = (0, 2, 3)


class Cache(NamedTuple):
    """backward needs x_hat, gamma and 1/std; the running update needs the batch statistics."""

    x_hat: object            # (N, C, H, W)
    gamma: object            # (C,)
    inv_std: object          # (C,)
    train: bool
    mean: object             # (C,) the batch mean (training) or running_mean (evaluation)
    scale: object            # (C,) s of the batch variance s**2 v (training), else None
    scaled_var: object       # (C,) v (training), else None
    count: int               # m = N H W values per channel
    running_mean: object
    running_var: object
    momentum: float
    output: _validate.Output


def _channel(xp, v):
    """(C,) -> (1, C, 1, 1), to broadcast against (N, C, H, W)."""
    return xp.reshape(v, (1, v.shape[0], 1, 1))


def forward(x, gamma, beta, running_mean, running_var, *, train: bool, momentum: float = 0.1,
            eps: float = 1e-5):
    """Normalise each channel, then scale by ``gamma`` and shift by ``beta``.

    Parameters
    ----------
    x : array (N, C, H, W)
    gamma, beta : arrays (C,)
    running_mean, running_var : arrays (C,)
        Used to normalise in evaluation mode; in training mode only kept for
        :func:`new_running_stats`.
    train : bool
        Batch statistics (True) or running statistics (False).
    momentum : float in [0, 1]
        Weight of the batch statistic in the running update.
    eps : float > 0
        Added to the variance inside the square root, so that a constant
        channel does not divide by zero (as PyTorch, default 1e-5).

    Stabiliser: the batch variance is never formed by squaring ``x``, which
    overflows float32 from about 1.8e19: it is kept as ``s**2 * v`` with
    ``s`` the channel's largest absolute deviation (:func:`_scaled_variance`),
    and the standard deviation is taken from that pair (:func:`_std`).
    :func:`new_running_stats` refuses a variance too large for the dtype.

    Returns
    -------
    out : array (N, C, H, W)
    cache : for :func:`backward` and :func:`new_running_stats`

    Notes
    -----
    .. math::
        \\hat x = \\frac{x - \\mu_c}{\\sqrt{\\sigma_c^2 + \\epsilon}},\\quad
        \\mathrm{out} = \\gamma_c \\hat x + \\beta_c

    In plain text: ``xh = (x - mu_c) / sqrt(var_c + eps)``, ``out = gamma_c xh + beta_c``.

    Ioffe & Szegedy (2015), Algorithm 1: in training :math:`\\mu_c` and the
    biased :math:`\\sigma_c^2` are taken over the batch and spatial axes
    (:math:`m = NHW` values); in evaluation they are the running statistics.

    >>> import numpy as np
    >>> x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1, 1, 1)
    >>> one, zero = np.ones(1), np.zeros(1)
    >>> out, cache = forward(x, one, zero, zero, one, train=True)
    >>> out.ravel().round(4).tolist()
    [-1.3416, -0.4472, 0.4472, 1.3416]
    >>> [v.round(4).tolist() for v in new_running_stats(cache)]
    [[0.25], [1.0667]]
    """
    momentum, eps = check_arguments(x, gamma, beta, running_mean, running_var, train=train, momentum=momentum,
                                    eps=eps)
    xp = backend.namespace(x, gamma, beta, running_mean, running_var)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    if train:
        if m < 2:
            raise ValueError(f"x must hold more than 1 value per channel in training mode, got shape {tuple(x.shape)}")
        mean = xp.mean(x, axis=_AXES)
        centred = x - _channel(xp, mean)
        s, v = _scaled_variance(centred)  # biased variance s**2 v: normalises the batch
        inv_std = 1.0 / _std(s, v, eps)
    else:
        mean, s, v = running_mean, None, None
        centred = x - _channel(xp, mean)
        inv_std = 1.0 / xp.sqrt(running_var + eps)
    x_hat, out = normalise(centred, inv_std, gamma, beta)
    return out, Cache(x_hat, gamma, inv_std, train, mean, s, v, m, running_mean, running_var, momentum,
                      _validate.output_of(out))


def check_arguments(x, gamma, beta, running_mean, running_var, *, train, momentum, eps):
    """Validate :func:`forward`'s arguments; returns ``(momentum, eps)`` as floats."""
    _validate.check_array("x", x, ndim=4, finite=False)
    c = x.shape[1]
    if c == 0:
        raise ValueError(f"x must have at least one channel, got shape {tuple(x.shape)}")
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        _validate.check_array(name, v, shape=(c,), finite=False)
        _validate.check_same_dtype(name, v, "x", x)
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {type(train).__name__}")
    momentum = _validate.check_nonnegative("momentum", momentum)
    if momentum > 1:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    eps = _validate.check_positive("eps", eps)
    if bool(backend.namespace(running_var).any(running_var < 0)):  # in training too, where it is only updated
        raise ValueError("running_var must be >= 0 (a variance)")
    return momentum, eps


def normalise(centred, inv_std, gamma, beta):
    """``(x_hat, out)``: ``x_hat = centred / std`` and ``out = gamma x_hat + beta``, per channel."""
    xp = backend.namespace(centred)
    x_hat = centred * _channel(xp, inv_std)
    return x_hat, x_hat * _channel(xp, gamma) + _channel(xp, beta)


def _scaled_variance(centred):
    """Per channel ``(s, v)``, the biased variance of ``centred`` being ``s**2 * v``.

    .. math:: s_c = \\max |x - \\mu_c|, \\quad v_c = \\mathrm{mean}\\big(((x - \\mu_c) / s_c)^2\\big)

    (``s = 0``: a constant channel, ``v = 0``.) Both are (C,) and never overflow.
    """
    xp = backend.namespace(centred)
    s = xp.max(xp.abs(centred), axis=_AXES)  # (C,)
    scaled = centred / _channel(xp, xp.where(s > 0, s, xp.ones_like(s)))
    return s, xp.mean(scaled * scaled, axis=_AXES)


def _std(s, v, eps: float):
    """``sqrt(s**2 v + eps)`` without forming ``s**2`` where it could overflow.

    ``s >= 1``: ``s sqrt(v + eps / s / s)``; ``s < 1``: the plain formula (no
    overflow, and ``eps / s / s`` could overflow there instead).
    """
    xp = backend.namespace(s)
    large = s >= 1
    s_large = xp.where(large, s, xp.ones_like(s))
    s_small = xp.where(large, xp.zeros_like(s), s)
    return xp.where(large, s_large * xp.sqrt(v + eps / s_large / s_large), xp.sqrt(s_small * s_small * v + eps))


def backward(dout, cache, *, check_finite: bool = True):
    """Gradients of :func:`forward` with respect to ``x``, ``gamma`` and ``beta``.

    Returns ``(dx, dgamma, dbeta)``: dx (N, C, H, W), dgamma and dbeta (C,).

    .. math::
        d\\beta_c = \\sum dout,\\quad d\\gamma_c = \\sum dout\\,\\hat x,\\quad
        dx = \\frac{\\gamma_c}{\\sqrt{\\sigma_c^2 + \\epsilon}}
        \\Big(dout - \\frac{d\\beta_c}{m} - \\hat x \\frac{d\\gamma_c}{m}\\Big)

    In plain text: ``dbeta_c = sum dout``, ``dgamma_c = sum dout xh``,
    ``dx = gamma_c / sqrt(var_c + eps) (dout - dbeta_c / m - xh dgamma_c / m)``.

    (sums over the :math:`m = NHW` values of channel :math:`c`; in evaluation
    mode the statistics are constants and :math:`dx = \\gamma_c\\, dout /
    \\sqrt{\\sigma_c^2 + \\epsilon}`).

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1, 1, 1)
    >>> _, cache = forward(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), train=True)
    >>> dx, dgamma, dbeta = backward(np.array([1.0, 0.0, 0.0, 0.0]).reshape(4, 1, 1, 1), cache)
    >>> dx.ravel().round(4).tolist(), dgamma.round(4).tolist(), dbeta.tolist()
    ([0.2683, -0.3578, -0.0894, 0.1789], [-1.3416], [1.0])
    """
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    xp = backend.namespace(dout, cache.x_hat)
    dbeta = xp.sum(dout, axis=_AXES)
    dgamma = xp.sum(dout * cache.x_hat, axis=_AXES)
    if not cache.train:
        return dout * _channel(xp, cache.gamma * cache.inv_std), dgamma, dbeta
    return training_input_gradient(dout, cache, dgamma, dbeta), dgamma, dbeta


def training_input_gradient(dout, cache, dgamma, dbeta):
    """``dx`` of a training-mode pass from ``dgamma`` and ``dbeta``, the channel sums over all ``m`` values."""
    xp = backend.namespace(dout, cache.x_hat)
    m = cache.count
    scale = _channel(xp, cache.gamma * cache.inv_std)
    return (dout - _channel(xp, dbeta / m) - cache.x_hat * _channel(xp, dgamma / m)) * scale


def new_running_stats(cache):
    """Running statistics after the :func:`forward` pass that made ``cache``.

    Training mode applies PyTorch's update with the *unbiased* batch variance;
    evaluation mode returns the running statistics unchanged (the same arrays).

    .. math::
        \\hat\\mu \\leftarrow (1 - \\alpha)\\hat\\mu + \\alpha\\mu_c,\\quad
        \\hat\\sigma^2 \\leftarrow (1 - \\alpha)\\hat\\sigma^2 + \\alpha \\frac{m}{m - 1}\\sigma_c^2

    In plain text: ``running_mean <- (1 - a) running_mean + a mu_c``,
    ``running_var <- (1 - a) running_var + a m / (m - 1) var_c``,

    with :math:`\\alpha` the momentum. Returns ``(running_mean, running_var)``.

    >>> import numpy as np
    >>> x = np.array([0.0, 2.0]).reshape(2, 1, 1, 1)
    >>> _, cache = forward(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), train=True, momentum=0.5)
    >>> [v.tolist() for v in new_running_stats(cache)]
    [[0.5], [1.5]]
    """
    running_mean, running_var, momentum = cache.running_mean, cache.running_var, cache.momentum
    if not cache.train:
        return running_mean, running_var
    s, m = cache.scale, cache.count
    xp = backend.namespace(s)
    unbiased = cache.scaled_var * (m / (m - 1))  # var = s * (s * unbiased), formed only if it fits the dtype
    s_large = xp.where(s >= 1, s, xp.ones_like(s))  # below 1, s * s * unbiased < 2 fits any dtype
    if bool(xp.any(s_large * unbiased > xp.finfo(s.dtype).max / s_large)):
        raise ValueError(f"the batch variance of a channel exceeds the largest {s.dtype} value, so the "
                         "running variance cannot be stored: rescale the input or use float64")
    return ((1 - momentum) * running_mean + momentum * cache.mean,
            (1 - momentum) * running_var + momentum * (s * (s * unbiased)))
