"""Rectified linear unit, element-wise."""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate, backend


class Cache(NamedTuple):
    """The mask ``x > 0`` in x's dtype (backward multiplies by it, several times faster than ``where``)."""

    positive: object
    output: _validate.Output


def forward(x):
    """``max(x, 0)`` element-wise; any shape.

    .. math::
        \\mathrm{out} = \\max(x, 0)

    Returns ``out`` (shape of ``x``) and the cache (:class:`Cache`).

    >>> import numpy as np
    >>> out, cache = forward(np.array([-1.0, 0.0, 2.0]))
    >>> out.tolist()
    [0.0, 0.0, 2.0]
    """
    _validate.check_array("x", x, finite=False)
    xp = backend.namespace(x)
    out = xp.maximum(x, 0.0)
    return out, Cache(xp.astype(x > 0, x.dtype), _validate.output_of(out))


def backward(dout, cache, *, check_finite: bool = True):
    """Gradient of :func:`forward`: ``dout`` where ``x > 0``, else 0.

    .. math::
        dx = dout \\cdot [x > 0]

    At exactly ``x = 0`` the gradient is 0 (PyTorch's convention for the kink).
    Returns ``(dx,)``.

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> _, cache = forward(np.array([-1.0, 0.0, 2.0]))
    >>> backward(np.array([5.0, 5.0, 5.0]), cache)[0].tolist()
    [0.0, 0.0, 5.0]
    """
    return (_validate.check_dout(dout, cache.output, finite=check_finite) * cache.positive,)
