"""Inverted dropout (Srivastava et al. 2014) with a host-drawn, seeded mask."""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate, backend


class Cache(NamedTuple):
    """The scaled mask ``r / (1 - p)`` (None when nothing is dropped)."""

    mask: object
    output: _validate.Output


def forward(x, *, p: float, train: bool, seed=None):
    """Zero each entry with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Parameters
    ----------
    x : array, any shape
    p : float in [0, 1)
        Drop probability.
    train : bool
        In evaluation mode (or with ``p = 0``) the output is ``x`` itself.
    seed : int or numpy.random.Generator
        Required in training mode with ``p > 0``. The mask is drawn on the host
        from ``backend.rng(seed)`` and moved to x's device, so one seed gives
        one mask on every backend.

    Returns
    -------
    out : array, shape of ``x``
    cache : :class:`Cache`, the scaled mask (None when nothing is dropped)

    Notes
    -----
    .. math::
        \\mathrm{out} = x \\odot \\frac{r}{1 - p},\\quad r_k \\sim \\mathrm{Bernoulli}(1 - p)

    (the "inverted" form of Srivastava et al. 2014: the expectation of ``out``
    is ``x``, so evaluation needs no rescaling).

    >>> import numpy as np
    >>> out, cache = forward(np.ones(6), p=0.5, train=True, seed=0)
    >>> out.tolist()
    [2.0, 0.0, 0.0, 0.0, 2.0, 2.0]
    """
    _validate.check_array("x", x, finite=False)
    p = _validate.check_nonnegative("p", p)
    if p >= 1:
        raise ValueError(f"p must be in [0, 1), got {p!r}")
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {type(train).__name__}")
    if not train or p == 0:
        return x, Cache(None, _validate.output_of(x))
    if seed is None:
        raise ValueError("seed is required for dropout in training mode (an int or a numpy Generator)")
    keep = backend.rng(seed).uniform(size=tuple(x.shape)) >= p  # host draw, float64
    mask = backend.asarray(keep / (1.0 - p), like=x, dtype=x.dtype)
    return x * mask, Cache(mask, _validate.output_of(x))


def backward(dout, cache, *, check_finite: bool = True):
    """Gradient of :func:`forward`: ``dout`` times the same scaled mask.

    .. math::
        dx = dout \\odot \\frac{r}{1 - p}

    Returns ``(dx,)``.

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> _, cache = forward(np.ones(6), p=0.5, train=True, seed=0)
    >>> backward(np.arange(6.0), cache)[0].tolist()
    [0.0, 0.0, 0.0, 0.0, 8.0, 10.0]
    """
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    return (dout if cache.mask is None else dout * cache.mask,)
