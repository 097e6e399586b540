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
    # earlier one, so "maximum" records it (much faster than argmax over a middle axis,
    # and than NumPy's masked writes, copyto(where=) or putmask: 3-4x slower on random masks).
    best = offsets[0]
    index = xp.int8 if k * k <= 128 else xp.int32  # int8: a quarter of the memory traffic
    argmax = xp.zeros_like(best, dtype=index)
    for offset, value in enumerate(offsets[1:], start=1):
        argmax = _ops.maximum_(argmax, xp.astype(value > best, index) * offset)
        # a new array first (offsets[0] may be a view of x), then updated in place
        best = xp.maximum(best, value) if offset == 1 else _ops.maximum_(best, value)
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
    # dout at each window's maximum, 0 elsewhere (a product: faster than where), written per
    # offset straight into the (C, OH, KH, OW, KW, N) image where the windows tile it, else
    # into the (C, KH, KW, OH, OW, N) windows that col2im adds up
    tiling = _tiles(cache.x_shape, k, cache.stride, cache.padding)
    windows = _ops.empty((c, oh, k, ow, k, n) if tiling else (c, k, k, oh, ow, n), like=dout)
    for offset in range(k * k):
        i, j = divmod(offset, k)
        key = (slice(None), slice(None), i, slice(None), j, ...) if tiling else (slice(None), i, j, ...)
        _ops.set_product(windows, key, dout, argmax == offset)  # every entry is written
    if tiling:
        dx = _ops.batch_first(xp.reshape(windows, (c, oh * k, ow * k, n)))
    else:
        dx = _ops.col2im(windows, cache.x_shape, stride=cache.stride, padding=cache.padding)
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
