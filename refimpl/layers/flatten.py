"""Flatten every axis but the first."""
from __future__ import annotations

import math
from typing import NamedTuple

from .. import _validate, backend


class Cache(NamedTuple):
    x_shape: tuple
    output: _validate.Output


def forward(x):
    """Reshape ``x`` (N, d1, d2, ...) to (N, d1 * d2 * ...).

    .. math::
        \\mathrm{out}_{n, k} = x_{n, (d_1, d_2, \\dots)[k]} \\quad\\text{(row-major order)}

    >>> import numpy as np
    >>> out, cache = forward(np.arange(8.0).reshape(2, 2, 2))
    >>> out.tolist()
    [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    """
    _validate.check_array("x", x, floating=False, finite=False)
    xp = backend.namespace(x)
    if x.ndim < 1:
        raise ValueError(f"x must have a batch axis, got shape {tuple(x.shape)}")
    shape = tuple(x.shape)
    out = xp.reshape(x, (shape[0], math.prod(shape[1:])))
    return out, Cache(shape, _validate.output_of(out))


def backward(dout, cache, *, check_finite: bool = True):
    """Gradient of :func:`forward`: ``dout`` reshaped back to the input's shape.

    .. math::
        dx = \\mathrm{reshape}(dout, \\mathrm{shape}(x))

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> _, cache = forward(np.zeros((2, 1, 2)))
    >>> backward(np.array([[1.0, 2.0], [3.0, 4.0]]), cache)[0].shape
    (2, 1, 2)
    """
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    return (backend.namespace(dout).reshape(dout, cache.x_shape),)
