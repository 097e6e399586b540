"""2-D convolution (cross-correlation, as PyTorch's ``conv2d``) by im2col or by the convolution theorem.

Two algorithms, chosen by ``forward(..., algorithm=...)``; :func:`backward`
follows the one its cache came from. ``"im2col"`` (the default) does one
matrix product per pass for the whole batch: the windows of ``x`` are gathered once by
:func:`refimpl._ops.im2col` into ``cols`` (C*KH*KW, OH*OW*N), and ``w``
(F, C*KH*KW) times ``cols`` is returned as an (N, F, OH, OW) transposed view
((F, OH, OW, N) in memory), which the next layer's window gather reads in order.
``"fft"`` (:mod:`refimpl.layers._conv2d_fft`, where its backward is derived
from the convolution theorem) does one complex matrix product per frequency
(N x C by C x F) between 2-D discrete Fourier transforms, themselves products
with DFT matrices: for 5x5 kernels on 32x32 to 4x4 maps a fraction of
im2col's arithmetic, and faster on CPUs (``refimpl bench tinynet
--algorithms``); strides are supported by keeping every s-th output.
The naive pair (:func:`forward_naive` / :func:`backward_naive`) loops over
output positions straight from the definition; the tests hold the three
against each other.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _ops, _validate, backend
from . import _conv2d_fft

#: the values of ``forward(..., algorithm=...)``
ALGORITHMS = ("im2col", "fft")


class Cache(NamedTuple):
    """What :func:`backward` needs: x is not kept and nothing is recomputed."""

    cols: object             # (C*KH*KW, OH*OW*N) window columns of x, for dw
    w: object                # (F, C, KH, KW), for dx
    x_shape: tuple
    has_b: bool
    stride: int
    padding: int
    input_grad: bool         # False: no dx
    output: _validate.Output


class NaiveCache(NamedTuple):
    """What :func:`backward_naive` needs: the zero-padded input and the filters."""

    xpad: object             # (N, C, H + 2P, W + 2P)
    w: object
    has_b: bool
    stride: int
    padding: int
    input_grad: bool
    output: _validate.Output


def _check(x, w, b, stride, padding, input_grad):
    """Validate the arguments; returns (stride, padding) as ints."""
    _validate.check_array("x", x, ndim=4, finite=False)
    _validate.check_array("w", w, ndim=4, finite=False)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"w has {w.shape[1]} input channels (shape {tuple(w.shape)}), "
            f"x has {x.shape[1]} (shape {tuple(x.shape)})"
        )
    _validate.check_same_dtype("w", w, "x", x)
    if b is not None:
        _validate.check_array("b", b, shape=(w.shape[0],), finite=False)
        _validate.check_same_dtype("b", b, "x", x)
    stride = _validate.check_integer("stride", stride, minimum=1)
    padding = _validate.check_integer("padding", padding, minimum=0)
    _validate.check_bool("input_grad", input_grad)
    for axis in (2, 3):
        _ops.window_output_size(x.shape[axis], w.shape[axis], stride, padding)
    return stride, padding


def forward(x, w, b, *, stride: int = 1, padding: int = 0, input_grad: bool = True, algorithm: str = "im2col"):
    """Convolve ``x`` with the filters ``w`` (zero padding, PyTorch layout).

    Parameters
    ----------
    x : array (N, C, H, W)
    w : array (F, C, KH, KW)
    b : array (F,) or None
    stride, padding : int
        ``stride >= 1``; ``padding >= 0`` zero rows/columns on each side.
    input_grad : bool
        False: :func:`backward` returns ``dx = None`` and skips its product and
        scatter (like ``requires_grad=False`` on the input in PyTorch, e.g. images).
    algorithm : "im2col" or "fft"
        How to compute it (the same numbers to float rounding): one matrix
        product over gathered windows, or products per frequency between
        discrete Fourier transforms (:mod:`refimpl.layers._conv2d_fft`).

    Returns
    -------
    out : array (N, F, OH, OW), ``OH = (H + 2 padding - KH) // stride + 1`` (OW alike)
    cache : for :func:`backward`

    Notes
    -----
    .. math::
        \\mathrm{out}_{n,f,p,q} = b_f + \\sum_{c,i,j} w_{f,c,i,j}\\,
        \\tilde x_{n,c,\\,ps+i,\\,qs+j}

    In plain text: ``out[n, f, p, q] = b[f] + sum_{c, i, j} w[f, c, i, j] xpad[n, c, p*s + i, q*s + j]``,

    with :math:`\\tilde x` the zero-padded input (LeCun et al. 1998; the
    layout and cross-correlation convention of ``torch.nn.functional.conv2d``).

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])      # x[p, q] - x[p + 1, q + 1]
    >>> out, cache = forward(x, w, np.array([0.5]), stride=2)
    >>> out.tolist()
    [[[[-4.5, -4.5], [-4.5, -4.5]]]]
    >>> out, cache = forward(x, w, np.array([0.5]), stride=2, algorithm="fft")
    >>> out.round(12).tolist()
    [[[[-4.5, -4.5], [-4.5, -4.5]]]]
    """
    stride, padding = _check(x, w, b, stride, padding, input_grad)
    _validate.check_choice("algorithm", algorithm, ALGORITHMS)
    if algorithm == "fft":
        return _conv2d_fft.forward(x, w, b, stride=stride, padding=padding, input_grad=input_grad)
    xp = backend.namespace(x, w, b)
    n, c = x.shape[:2]
    f, _, kh, kw = w.shape
    cols = _ops.im2col(x, (kh, kw), stride=stride, padding=padding)  # (C, KH, KW, OH, OW, N)
    oh, ow = cols.shape[3:5]
    cols = xp.reshape(cols, (c * kh * kw, oh * ow * n))
    out = xp.reshape(w, (f, c * kh * kw)) @ cols  # (F, CKK) @ (CKK, P*N) -> (F, P*N)
    if b is not None:
        out += xp.reshape(b, (f, 1))
    # (F, OH, OW, N) -> (N, F, OH, OW): a transposed view, no copy
    out = _ops.batch_first(xp.reshape(out, (f, oh, ow, n)))
    return out, Cache(cols, w, tuple(x.shape), b is not None, stride, padding, input_grad, _validate.output_of(out))


def backward(dout, cache, *, check_finite: bool = True):
    """Gradients of :func:`forward`.

    Parameters
    ----------
    dout : array (N, F, OH, OW)
    cache : from :func:`forward` (either algorithm)

    Returns
    -------
    dx : array (N, C, H, W), or None when forward had ``input_grad=False``
    dw : array (F, C, KH, KW)
    db : array (F,), or None when ``b`` was None

    Notes
    -----
    .. math::
        dw_{f,c,i,j} = \\sum_{n,p,q} dout_{n,f,p,q}\\,\\tilde x_{n,c,ps+i,qs+j},\\quad
        db_f = \\sum_{n,p,q} dout_{n,f,p,q},\\quad
        dx = \\mathrm{col2im}\\big(w^\\top dout\\big)

    In plain text: ``dw[f, c, i, j] = sum_{n, p, q} dout[n, f, p, q] xpad[n, c, p*s + i, q*s + j]``,
    ``db[f] = sum_{n, p, q} dout[n, f, p, q]``, ``dx = col2im(w^T dout)``.

    (``col2im`` is the adjoint of the window gather; the padding is dropped).

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, cache = forward(x, np.ones((1, 1, 2, 2)), None, stride=2)
    >>> dx, dw, db = backward(np.ones_like(out), cache)
    >>> dw.tolist(), db is None, float(dx.sum())
    ([[[[20.0, 24.0], [36.0, 40.0]]]], True, 16.0)
    >>> out, cache = forward(x, np.ones((1, 1, 2, 2)), None, stride=2, input_grad=False)
    >>> dx, dw, db = backward(np.ones_like(out), cache)
    >>> dx is None, dw.tolist()
    (True, [[[[20.0, 24.0], [36.0, 40.0]]]])
    """
    if isinstance(cache, _conv2d_fft.Cache):
        return _conv2d_fft.backward(dout, cache, check_finite=check_finite)
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    w = cache.w
    xp = backend.namespace(dout, w)
    n, f, oh, ow = dout.shape
    _, c, kh, kw = w.shape
    # (N, F, OH, OW) -> (F, P*N): free when dout is batch-last in memory, as the layers here return
    dout2 = xp.reshape(_ops.batch_last(dout), (f, oh * ow * n))
    # (CKK, P*N) @ (P*N, F) -> (CKK, F), then transposed: the same product as
    # dout2 @ cols.T, but OpenBLAS runs this operand order 2-7x faster here.
    dw = xp.reshape(xp.permute_dims(cache.cols @ xp.permute_dims(dout2, (1, 0)), (1, 0)), w.shape)
    dw = _ops.contiguous(dw)  # read in order by whoever comes next (an optimiser, a worker's gradient buffer)
    db = xp.sum(dout2, axis=1) if cache.has_b else None
    if not cache.input_grad:
        return None, dw, db
    # (CKK, F) @ (F, P*N) -> (CKK, P*N): gradient of every window, scattered back
    dcols = xp.permute_dims(xp.reshape(w, (f, c * kh * kw)), (1, 0)) @ dout2
    dx = _ops.col2im(xp.reshape(dcols, (c, kh, kw, oh, ow, n)), cache.x_shape, stride=cache.stride,
                     padding=cache.padding)
    return dx, dw, db


def _zero_pad(xp, x, padding):
    """``x`` (N, C, H, W) with ``padding`` zero rows/columns on each side (by concatenation)."""
    if padding == 0:
        return x
    row = xp.zeros_like(x[:, :, :1, :])
    x = xp.concat([row] * padding + [x] + [row] * padding, axis=2)
    column = xp.zeros_like(x[:, :, :, :1])
    return xp.concat([column] * padding + [x] + [column] * padding, axis=3)


def forward_naive(x, w, b, *, stride: int = 1, padding: int = 0, input_grad: bool = True):
    """:func:`forward` as a loop over output positions, straight from the definition.

    Same arguments and output as :func:`forward`; slow, for tests. For every
    output position :math:`(p, q)`, with :math:`W_{pq}` the (N, C, KH, KW)
    window of the zero-padded input that it reads:

    .. math::
        \\mathrm{out}_{:,f,p,q} = b_f + \\sum_{c,i,j} w_{f,c,i,j}\\,(W_{pq})_{:,c,i,j}

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    >>> forward_naive(x, w, np.array([0.5]), stride=2)[0].tolist()
    [[[[-4.5, -4.5], [-4.5, -4.5]]]]
    """
    stride, padding = _check(x, w, b, stride, padding, input_grad)
    xp = backend.namespace(x, w, b)
    xpad = _zero_pad(xp, x, padding)
    f, _, kh, kw = w.shape
    oh = (xpad.shape[2] - kh) // stride + 1
    ow = (xpad.shape[3] - kw) // stride + 1
    rows = []
    for p in range(oh):
        row = []
        for q in range(ow):
            window = xpad[:, :, p * stride:p * stride + kh, q * stride:q * stride + kw]  # (N, C, KH, KW)
            value = xp.sum(window[:, None, ...] * w[None, ...], axis=(2, 3, 4))  # (N, F)
            row.append(value if b is None else value + b)
        rows.append(xp.stack(row, axis=-1))  # (N, F, OW)
    out = xp.stack(rows, axis=-2)  # (N, F, OH, OW)
    return out, NaiveCache(xpad, w, b is not None, stride, padding, input_grad, _validate.output_of(out))


def backward_naive(dout, cache):
    """:func:`backward` as a loop over output positions, straight from the definition.

    Every output position adds ``dout * window`` to ``dw`` and ``dout * w`` to
    the window of ``dx`` it read (``dx`` is None when forward had ``input_grad=False``):

    .. math::
        dw \\mathrel{+}= \\sum_n dout_{n,:,p,q} \\otimes (W_{pq})_{n},\\quad
        d\\tilde x[W_{pq}]_{n} \\mathrel{+}= \\sum_f dout_{n,f,p,q}\\, w_{f}

    >>> import numpy as np                       # 1x1 kernel: dw = sum(dout * x), dx = w dout
    >>> out, cache = forward_naive(np.array([[[[1.0, 2.0]]]]), np.array([[[[3.0]]]]), np.zeros(1))
    >>> [g.tolist() for g in backward_naive(np.array([[[[1.0, -1.0]]]]), cache)]
    [[[[[3.0, -3.0]]]], [[[[-1.0]]]], [0.0]]
    """
    dout = _validate.check_dout(dout, cache.output)
    xpad, w, stride, padding = cache.xpad, cache.w, cache.stride, cache.padding
    xp = backend.namespace(dout, w)
    _, _, kh, kw = w.shape
    dxpad = xp.zeros_like(xpad)
    dw = xp.zeros_like(w)
    for p in range(dout.shape[2]):
        for q in range(dout.shape[3]):
            rows, columns = slice(p * stride, p * stride + kh), slice(q * stride, q * stride + kw)
            g = dout[:, :, p, q]  # (N, F)
            dw = dw + xp.sum(g[:, :, None, None, None] * xpad[:, None, :, rows, columns], axis=0)
            dxpad[:, :, rows, columns] = dxpad[:, :, rows, columns] + xp.sum(
                g[:, :, None, None, None] * w[None, ...], axis=1)
    h, wd = xpad.shape[2] - 2 * padding, xpad.shape[3] - 2 * padding
    dx = dxpad[:, :, padding:padding + h, padding:padding + wd] if cache.input_grad else None
    db = xp.sum(dout, axis=(0, 2, 3)) if cache.has_b else None
    return dx, dw, db
