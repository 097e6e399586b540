"""Fully connected layer, PyTorch layout: ``out = x @ w.T + b``."""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate, backend


class Cache(NamedTuple):
    """What :func:`backward` needs: the input (for dw) and the weights (for dx)."""

    x: object                # (N, D_in)
    w: object                # (D_out, D_in)
    has_b: bool
    input_grad: bool         # False: no dx
    output: _validate.Output


def forward(x, w, b, *, input_grad: bool = True):
    """Affine map of each row of ``x``.

    Parameters
    ----------
    x : array (N, D_in)
    w : array (D_out, D_in), as ``torch.nn.Linear.weight``
    b : array (D_out,) or None
    input_grad : bool
        False: :func:`backward` returns ``dx = None`` without computing it
        (like ``requires_grad=False`` on the input in PyTorch).

    Returns
    -------
    out : array (N, D_out)
    cache : for :func:`backward`

    Notes
    -----
    .. math::
        \\mathrm{out}_{n,o} = \\sum_i x_{n,i}\\, w_{o,i} + b_o

    >>> import numpy as np
    >>> out, cache = forward(np.array([[1.0, 2.0]]), np.array([[1.0, -1.0], [0.5, 0.5]]), np.array([0.0, 1.0]))
    >>> out.tolist()
    [[-1.0, 2.5]]
    """
    _validate.check_array("x", x, ndim=2, finite=False)
    _validate.check_array("w", w, ndim=2, finite=False)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w has {w.shape[1]} input features (shape {tuple(w.shape)}), "
                         f"x has {x.shape[1]} (shape {tuple(x.shape)})")
    _validate.check_same_dtype("w", w, "x", x)
    if b is not None:
        _validate.check_array("b", b, shape=(w.shape[0],), finite=False)
        _validate.check_same_dtype("b", b, "x", x)
    _validate.check_bool("input_grad", input_grad)
    xp = backend.namespace(x, w, b)
    out = x @ xp.permute_dims(w, (1, 0))  # (N, D_in) @ (D_in, D_out) -> (N, D_out)
    if b is not None:
        out = out + b
    return out, Cache(x, w, b is not None, input_grad, _validate.output_of(out))


def backward(dout, cache, *, check_finite: bool = True):
    """Gradients of :func:`forward`.

    Parameters
    ----------
    dout : array (N, D_out)
    cache : from :func:`forward`

    Returns
    -------
    dx : array (N, D_in), or None when forward had ``input_grad=False``
    dw : array (D_out, D_in)
    db : array (D_out,), or None when ``b`` was None

    Notes
    -----
    .. math::
        dx = dout\\, w,\\quad dw = dout^\\top x,\\quad db = \\textstyle\\sum_n dout_n

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> out, cache = forward(np.array([[1.0, 2.0]]), np.array([[1.0, -1.0], [0.5, 0.5]]), None)
    >>> dx, dw, db = backward(np.array([[1.0, 2.0]]), cache)
    >>> dx.tolist(), dw.tolist(), db
    ([[2.0, 0.0]], [[1.0, 2.0], [2.0, 4.0]], None)
    >>> out, cache = forward(np.array([[1.0, 2.0]]), np.array([[1.0, -1.0]]), None, input_grad=False)
    >>> backward(np.array([[3.0]]), cache)[:2]
    (None, array([[3., 6.]]))
    """
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    xp = backend.namespace(dout)
    dx = dout @ cache.w if cache.input_grad else None  # (N, D_out) @ (D_out, D_in) -> (N, D_in)
    dw = xp.permute_dims(dout, (1, 0)) @ cache.x  # (D_out, N) @ (N, D_in) -> (D_out, D_in)
    db = xp.sum(dout, axis=0) if cache.has_b else None
    return dx, dw, db
