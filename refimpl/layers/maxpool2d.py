"""2-D max pooling over square windows, as ``torch.nn.functional.max_pool2d``.

Windows are gathered with :func:`refimpl._ops.im2col` (padding is ``-inf``)
and gradients scattered back with :func:`refimpl._ops.col2im`. Conventions
follow PyTorch: ``stride`` defaults to ``kernel_size``, padding at most half
the kernel, ``ceil_mode=False``, ties send the gradient to the first maximum
in row-major order (PyTorch CPU).
"""
from __future__ import annotations

from .. import _ops, _validate, backend
from ._pool import WindowCache, _window_args


def forward(x, *, kernel_size: int = 2, stride: int | None = None, padding: int = 0):
    """Maximum over each ``kernel_size`` x ``kernel_size`` window (padding is ``-inf``).

    Parameters
    ----------
    x : array (N, C, H, W)
    kernel_size, stride, padding : int
        ``stride`` defaults to ``kernel_size``; ``padding <= kernel_size // 2``.

    Returns
    -------
    out : array (N, C, OH, OW), ``OH = (H + 2 padding - kernel_size) // stride + 1``
    cache : for :func:`backward` (the position of each maximum)

    Notes
    -----
    .. math::
        \\mathrm{out}_{n,c,p,q} = \\max_{0 \\le i, j < k} \\tilde x_{n,c,\\,ps+i,\\,qs+j}

    In plain text: ``out[n, c, p, q] = max_{0 <= i, j < k} xpad[n, c, p*s + i, q*s + j]``.

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 1.0]]]])
    >>> out, cache = forward(x)
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
    index = xp.int8 if k * k <= 128 else xp.int32  # int8: a quarter of the memory traffic
    argmax = xp.zeros_like(best, dtype=index)
    for offset in range(1, k * k):
        value = cols[:, offset, ...]
        argmax = xp.maximum(argmax, xp.astype(value > best, index) * offset)
        best = xp.maximum(best, value)
    # argmax (C, OH, OW, N) int8 is all backward keeps; it rebuilds the one-hot windows from it.
    out = _ops.batch_first(best)
    return out, WindowCache(tuple(x.shape), k, stride, padding, _validate.output_of(out), argmax)


def backward(dout, cache, *, check_finite: bool = True):
    """Gradient of :func:`forward`: each ``dout`` goes to its window's maximum.

    .. math::
        dx_{n,c,h,w} = \\sum_{p,q} dout_{n,c,p,q}\\,[\\,(h, w) = \\operatorname{argmax}_{p,q}\\,]

    In plain text: ``dx[n, c, h, w] = sum_{p, q} dout[n, c, p, q] [(h, w) is the argmax of window (p, q)]``.

    On ties the whole gradient goes to the first maximum of the window in
    row-major order (PyTorch's CPU behaviour). Returns ``(dx,)``, dx (N, C, H, W).

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 5.0]]]])
    >>> _, cache = forward(x)
    >>> backward(np.array([[[[10.0, 20.0]]]]), cache)[0].tolist()
    [[[[0.0, 0.0, 20.0, 0.0], [0.0, 10.0, 0.0, 0.0]]]]
    """
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    argmax, k = cache.argmax, cache.kernel_size
    xp = backend.namespace(dout, argmax)
    n, c, oh, ow = dout.shape
    dout = _ops.batch_last(dout)  # (C, OH, OW, N)
    # (C, KK, OH, OW, N): dout at each window's maximum, 0 elsewhere (a product: faster than where)
    dcols = xp.stack([dout * xp.astype(argmax == offset, dout.dtype) for offset in range(k * k)], axis=1)
    dx = _ops.col2im(xp.reshape(dcols, (c, k, k, oh, ow, n)), cache.x_shape, stride=cache.stride,
                     padding=cache.padding)
    return (dx,)
