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
    offsets = _window_offsets(xp, x, k, stride, padding)  # k*k arrays (C, OH, OW, N)
    # Running maximum over the window offsets in row-major order; the strict ">" keeps
    # the first maximum on ties (PyTorch CPU). A later offset is larger than every
    # earlier one, so "maximum" records it (much faster than argmax over a middle axis).
    best = offsets[0]
    index = xp.int8 if k * k <= 128 else xp.int32  # int8: a quarter of the memory traffic
    argmax = xp.zeros_like(best, dtype=index)
    for offset, value in enumerate(offsets[1:], start=1):
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
    # dout at each window's maximum, 0 elsewhere, per offset (a product: faster than where)
    at_offset = [dout * xp.astype(argmax == offset, dout.dtype) for offset in range(k * k)]
    if _tiles(cache.x_shape, k, cache.stride, cache.padding):
        dx = _untile(xp, at_offset, k, dout)
    else:
        dcols = xp.stack(at_offset, axis=1)  # (C, KK, OH, OW, N)
        dx = _ops.col2im(xp.reshape(dcols, (c, k, k, oh, ow, n)), cache.x_shape, stride=cache.stride,
                         padding=cache.padding)
    return (dx,)


def _tiles(x_shape, k: int, stride: int, padding: int) -> bool:
    """Whether the windows tile the image (TinyNet's 2 x 2 pooling) and are larger than one pixel
    (1 x 1 windows would make the output a view of the input)."""
    return k > 1 and _ops.windows_tile(x_shape, (k, k), stride, padding)


def _window_offsets(xp, x, k: int, stride: int, padding: int) -> list:
    """The value at each of the k*k window offsets, row-major, each (C, OH, OW, N).

    Where the windows tile the image they are strided views of ``x`` itself
    (the im2col copy is a full pass over the largest activation of the network;
    views of a batch-last ``x`` still read runs of N contiguous values);
    otherwise slices of :func:`refimpl._ops.im2col` (padding ``-inf``).
    """
    n, c, h, w = x.shape
    if _tiles(x.shape, k, stride, padding):
        tiles = xp.reshape(_ops.batch_last(x), (c, h // k, k, w // k, k, n))  # (C, OH, KH, OW, KW, N)
        return [tiles[:, :, i, :, j, :] for i in range(k) for j in range(k)]
    cols = _ops.im2col(x, (k, k), stride=stride, padding=padding, fill=-float("inf"))
    oh, ow = cols.shape[3:5]
    cols = xp.reshape(cols, (c, k * k, oh, ow, n))
    return [cols[:, offset, ...] for offset in range(k * k)]


def _untile(xp, at_offset, k: int, like):
    """(N, C, H, W) image whose window offset ``i * k + j`` holds ``at_offset[i * k + j]`` (C, OH, OW, N):
    the adjoint of the tiling views of :func:`_window_offsets`, written in place (one pass, no col2im)."""
    c, oh, ow, n = at_offset[0].shape
    tiles = _ops.empty((c, oh, k, ow, k, n), like=like)  # every entry is written below
    for offset, values in enumerate(at_offset):
        i, j = divmod(offset, k)
        tiles[:, :, i, :, j, :] = values
    return _ops.batch_first(xp.reshape(tiles, (c, oh * k, ow * k, n)))
