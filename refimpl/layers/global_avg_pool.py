"""Global average pooling: the mean over the spatial axes, (N, C, H, W) -> (N, C).

Equivalent to ``torch.nn.functional.adaptive_avg_pool2d(x, 1)`` flattened, or
``x.mean(dim=(2, 3))`` in PyTorch.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate, backend


class Cache(NamedTuple):
    x_shape: tuple
    output: _validate.Output


def forward(x):
    """Mean over the spatial axes: x (N, C, H, W) -> out (N, C).

    .. math::
        \\mathrm{out}_{n,c} = \\frac{1}{HW} \\sum_{h,w} x_{n,c,h,w}

    >>> import numpy as np
    >>> forward(np.arange(8.0).reshape(1, 2, 2, 2))[0].tolist()
    [[1.5, 5.5]]
    """
    _validate.check_array("x", x, ndim=4, finite=False)
    xp = backend.namespace(x)
    out = xp.mean(x, axis=(2, 3))
    return out, Cache(tuple(x.shape), _validate.output_of(out))


def backward(dout, cache, *, check_finite: bool = True):
    """Gradient of :func:`forward`: ``dout / (H W)`` at every position.

    .. math::
        dx_{n,c,h,w} = dout_{n,c} / (HW)

    Returns ``(dx,)``, dx (N, C, H, W) (a new array, not a broadcast view).

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> _, cache = forward(np.zeros((1, 1, 1, 2)))
    >>> backward(np.array([[4.0]]), cache)[0].tolist()
    [[[[2.0, 2.0]]]]
    """
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    xp = backend.namespace(dout)
    n, c, h, w = cache.x_shape
    dx = xp.broadcast_to(dout[:, :, None, None] / (h * w), cache.x_shape)
    return (xp.asarray(dx, copy=True),)
