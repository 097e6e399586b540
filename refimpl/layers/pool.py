"""Pooling over square windows (max, average) and global average pooling.

Each pooling is a ``<name>_forward(x, ...) -> (out, cache)`` /
``<name>_backward(dout, cache) -> (dx,)`` pair. Windows are gathered with
:func:`refimpl._ops.im2col` and gradients scattered back with
:func:`refimpl._ops.col2im`; conventions follow ``torch.nn.functional``
(``stride`` defaults to ``kernel_size``, padding at most half the kernel,
``ceil_mode=False``, average pooling counts the zero padding).
"""
from __future__ import annotations

from .. import _ops, _validate, backend


def _window_args(x, kernel_size, stride, padding):
    """Validate the pooling arguments; returns (kernel_size, stride, padding) as ints."""
    _validate.check_array("x", x, ndim=4, finite=False)
    kernel_size = _validate.check_integer("kernel_size", kernel_size, minimum=1)
    stride = kernel_size if stride is None else _validate.check_integer("stride", stride, minimum=1)
    padding = _validate.check_integer("padding", padding, minimum=0)
    if padding > kernel_size // 2:
        raise ValueError(f"padding must be at most kernel_size // 2 = {kernel_size // 2}, got {padding}")
    for axis in (2, 3):
        _ops.window_output_size(x.shape[axis], kernel_size, stride, padding)
    return kernel_size, stride, padding


def maxpool2d_forward(x, *, kernel_size: int = 2, stride: int | None = None, padding: int = 0):
    """Maximum over each ``kernel_size`` x ``kernel_size`` window (padding is ``-inf``).

    Parameters
    ----------
    x : array (N, C, H, W)
    kernel_size, stride, padding : int
        ``stride`` defaults to ``kernel_size``; ``padding <= kernel_size // 2``.

    Returns
    -------
    out : array (N, C, OH, OW), ``OH = (H + 2 padding - kernel_size) // stride + 1``
    cache : for :func:`maxpool2d_backward` (the position of each maximum)

    .. math::
        \\mathrm{out}_{n,c,p,q} = \\max_{0 \\le i, j < k} \\tilde x_{n,c,\\,ps+i,\\,qs+j}

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 1.0]]]])
    >>> out, cache = maxpool2d_forward(x)
    >>> out.tolist()
    [[[[4.0, 5.0]]]]
    """
    k, stride, padding = _window_args(x, kernel_size, stride, padding)
    xp = backend.namespace(x)
    cols = _ops.im2col(x, (k, k), stride=stride, padding=padding, fill=-float("inf"))
    c, _, _, oh, ow, n = cols.shape
    cols = xp.reshape(cols, (c, k * k, oh, ow, n))
    # Running maximum over the window offsets in row-major order; the strict ">" keeps
    # the first maximum on ties (PyTorch CPU). A later offset is larger than every
    # earlier one, so "maximum" records it (much faster than argmax over a middle axis).
    best = cols[:, 0, ...]
    argmax = xp.zeros_like(best, dtype=xp.int32)
    for offset in range(1, k * k):
        value = cols[:, offset, ...]
        argmax = xp.maximum(argmax, xp.astype(value > best, xp.int32) * offset)
        best = xp.maximum(best, value)
    # argmax (C, OH, OW, N) int32 is all backward keeps; it rebuilds the one-hot windows from it.
    cache = (argmax, tuple(x.shape), k, stride, padding)
    return _ops.batch_first(best), cache


def maxpool2d_backward(dout, cache):
    """Gradient of :func:`maxpool2d_forward`: each ``dout`` goes to its window's maximum.

    .. math::
        dx_{n,c,h,w} = \\sum_{p,q} dout_{n,c,p,q}\\,[\\,(h, w) = \\operatorname{argmax}_{p,q}\\,]

    On ties the whole gradient goes to the first maximum of the window in
    row-major order (PyTorch's CPU behaviour). Returns ``(dx,)``, dx (N, C, H, W).

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 5.0]]]])
    >>> _, cache = maxpool2d_forward(x)
    >>> maxpool2d_backward(np.array([[[[10.0, 20.0]]]]), cache)[0].tolist()
    [[[[0.0, 0.0, 20.0, 0.0], [0.0, 10.0, 0.0, 0.0]]]]
    """
    argmax, x_shape, k, stride, padding = cache
    xp = backend.namespace(dout, argmax)
    n, c, oh, ow = dout.shape
    dout = _ops.batch_last(dout)  # (C, OH, OW, N)
    # (C, KK, OH, OW, N): dout at each window's maximum, 0 elsewhere (a product: faster than where)
    dcols = xp.stack([dout * xp.astype(argmax == offset, dout.dtype) for offset in range(k * k)], axis=1)
    dx = _ops.col2im(xp.reshape(dcols, (c, k, k, oh, ow, n)), x_shape, stride=stride, padding=padding)
    return (dx,)


def avgpool2d_forward(x, *, kernel_size: int = 2, stride: int | None = None, padding: int = 0):
    """Mean over each ``kernel_size`` x ``kernel_size`` window, zero padding counted.

    Same arguments and output shape as :func:`maxpool2d_forward`
    (``count_include_pad=True`` as in PyTorch).

    .. math::
        \\mathrm{out}_{n,c,p,q} = \\frac{1}{k^2} \\sum_{0 \\le i, j < k} \\tilde x_{n,c,\\,ps+i,\\,qs+j}

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 1.0]]]])
    >>> avgpool2d_forward(x)[0].tolist()
    [[[[2.5, 1.75]]]]
    """
    k, stride, padding = _window_args(x, kernel_size, stride, padding)
    xp = backend.namespace(x)
    cols = _ops.im2col(x, (k, k), stride=stride, padding=padding)  # (C, K, K, OH, OW, N)
    return _ops.batch_first(xp.mean(cols, axis=(1, 2))), (tuple(x.shape), k, stride, padding)


def avgpool2d_backward(dout, cache):
    """Gradient of :func:`avgpool2d_forward`: ``dout / k**2`` spread over each window.

    .. math::
        dx_{n,c,h,w} = \\frac{1}{k^2} \\sum_{p,q:\\ (h, w) \\in \\mathrm{window}(p, q)} dout_{n,c,p,q}

    Returns ``(dx,)``, dx (N, C, H, W).

    >>> import numpy as np
    >>> _, cache = avgpool2d_forward(np.zeros((1, 1, 2, 4)))
    >>> avgpool2d_backward(np.array([[[[4.0, 8.0]]]]), cache)[0].tolist()
    [[[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]]
    """
    x_shape, k, stride, padding = cache
    xp = backend.namespace(dout)
    n, c, oh, ow = dout.shape
    dcols = xp.broadcast_to(_ops.batch_last(dout)[:, None, None, ...] / (k * k), (c, k, k, oh, ow, n))
    return (_ops.col2im(dcols, x_shape, stride=stride, padding=padding),)


def global_avg_pool_forward(x):
    """Mean over the spatial axes: x (N, C, H, W) -> out (N, C).

    .. math::
        \\mathrm{out}_{n,c} = \\frac{1}{HW} \\sum_{h,w} x_{n,c,h,w}

    >>> import numpy as np
    >>> global_avg_pool_forward(np.arange(8.0).reshape(1, 2, 2, 2))[0].tolist()
    [[1.5, 5.5]]
    """
    _validate.check_array("x", x, ndim=4, finite=False)
    xp = backend.namespace(x)
    return xp.mean(x, axis=(2, 3)), tuple(x.shape)


def global_avg_pool_backward(dout, cache):
    """Gradient of :func:`global_avg_pool_forward`: ``dout / (H W)`` at every position.

    .. math::
        dx_{n,c,h,w} = dout_{n,c} / (HW)

    Returns ``(dx,)``, dx (N, C, H, W) (a new array, not a broadcast view).

    >>> import numpy as np
    >>> _, cache = global_avg_pool_forward(np.zeros((1, 1, 1, 2)))
    >>> global_avg_pool_backward(np.array([[4.0]]), cache)[0].tolist()
    [[[[2.0, 2.0]]]]
    """
    xp = backend.namespace(dout)
    n, c, h, w = cache
    dx = xp.broadcast_to(dout[:, :, None, None] / (h * w), cache)
    return (xp.asarray(dx, copy=True),)
