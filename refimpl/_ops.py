"""The few kernels outside the Array API standard, dispatched per backend.

Each public function here has a fast NumPy path, a CuPy path, and a
pure-standard fallback (used for array_api_strict and any other namespace),
all computing the same thing; tests compare the paths with each other.

Sliding windows (for im2col convolution and pooling) use a batch-last
layout: ``cols[c, i, j, oh, ow, n] = xpad[n, c, oh * stride + i, ow * stride + j]``,
so that ``reshape(cols, (C * KH * KW, OH * OW * N))`` is the right operand of
*one* matrix product for the whole batch, whose (F, OH * OW * N) result is an
(N, F, OH, OW) array by a transposed view (:func:`batch_first`), without a
copy. With the batch innermost, every strided slice of the window loops is a
run of N contiguous values even for 4x4 feature maps (5-10x faster slice-adds
than runs of OW). Arrays passed between layers are therefore often such
views (logically NCHW, (C, H, W, N) in memory); every function here accepts
any memory layout.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend


def _kind(xp) -> str:
    """"numpy", "cupy" or "standard": which implementation serves ``xp``."""
    name = xp.__name__
    return name if name in ("numpy", "cupy") else "standard"


def batch_last(x):
    """(N, C, H, W) -> (C, H, W, N), a view (no copy): :math:`y_{c,h,w,n} = x_{n,c,h,w}`.

    >>> batch_last(np.zeros((2, 3, 4, 5))).shape
    (3, 4, 5, 2)
    """
    return backend.namespace(x).permute_dims(x, (1, 2, 3, 0))


def batch_first(a):
    """(C, H, W, N) -> (N, C, H, W), a view: the inverse of :func:`batch_last`, :math:`x_{n,c,h,w} = y_{c,h,w,n}`.

    >>> batch_first(np.zeros((3, 4, 5, 2))).shape
    (2, 3, 4, 5)
    """
    return backend.namespace(a).permute_dims(a, (3, 0, 1, 2))


def batch_last_layout(x):
    """``x`` (N, C, H, W), the same values with memory ordered (C, H, W, N), as the layers here return.

    A :func:`batch_first` view of a new array when ``x`` is laid out otherwise
    (NumPy, CuPy), ``x`` itself when it already is; other namespaces have no
    layout to choose and get ``x``. Element-wise steps between two arrays of
    different layouts read one of them strided: a max-pool backward took 20
    instead of 6 ms on an FFT convolution's (H, W, C, N) gradient.

    >>> x = np.zeros((2, 3, 4, 5), order="F")
    >>> y = batch_last_layout(x)
    >>> y.shape, batch_last(y).flags.c_contiguous, batch_last_layout(y) is y
    ((2, 3, 4, 5), True, True)
    """
    xp = backend.namespace(x)
    if _kind(xp) == "standard":
        return x
    last = batch_last(x)
    return x if last.flags.c_contiguous else batch_first(xp.ascontiguousarray(last))


def contiguous(x):
    """``x`` in C (row-major) memory order: ``x`` itself when it is, else a copy (NumPy, CuPy); other
    namespaces have no layout to choose and get ``x``.

    For gradients that are made transposed: whoever reads them next (an
    optimiser step, a copy into a worker's shared buffer) reads them in order.

    >>> a = np.arange(6.0).reshape(3, 2).T                  # a transposed view
    >>> b = contiguous(a)
    >>> b.flags.c_contiguous, b.tolist(), contiguous(b) is b
    (True, [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]], True)
    """
    xp = backend.namespace(x)
    return x if _kind(xp) == "standard" else xp.ascontiguousarray(x)


def window_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Number of window positions along one axis.

    .. math::
        O = \\lfloor (S + 2P - K) / s \\rfloor + 1

    Raises ValueError when the kernel is larger than the padded input.

    >>> window_output_size(5, 3, 2, 1)
    3
    """
    padded = size + 2 * padding
    if kernel > padded:
        raise ValueError(
            f"kernel size {kernel} is larger than the padded input size {padded} "
            f"(input {size}, padding {padding})"
        )
    return (padded - kernel) // stride + 1


def _geometry(x_shape, kernel, stride, padding):
    """(OH, OW) and the slice of every kernel offset (i, j) into the padded input."""
    kh, kw = kernel
    oh = window_output_size(x_shape[2], kh, stride, padding)
    ow = window_output_size(x_shape[3], kw, stride, padding)
    # Stops are exact (last index + 1): the standard forbids out-of-bounds stops.
    offsets = [
        (i, j, (slice(i, i + stride * (oh - 1) + 1, stride), slice(j, j + stride * (ow - 1) + 1, stride)))
        for i in range(kh) for j in range(kw)
    ]
    return oh, ow, offsets


def im2col(x, kernel, *, stride: int = 1, padding: int = 0, fill: float = 0.0):
    """Extract every sliding window of ``x``: the gather of im2col convolution.

    Parameters
    ----------
    x : array (N, C, H, W)
    kernel : (KH, KW)
    stride, padding : int
        Window step and the number of ``fill`` rows/columns added on each side.
    fill : float
        Value of the padding (0 for convolution, ``-inf`` for max pooling).

    Returns
    -------
    cols : array (C, KH, KW, OH, OW, N), a new array

    Notes
    -----
    .. math::
        \\mathrm{cols}_{c,i,j,p,q,n} = \\tilde x_{n,c,\\,ps+i,\\,qs+j}

    where :math:`\\tilde x` is ``x`` padded with ``fill``.

    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> im2col(x, (2, 2))[0, :, :, 0, 0, 0].tolist()    # the top-left window
    [[0.0, 1.0], [3.0, 4.0]]
    >>> im2col(x, (2, 2), stride=2, padding=1)[0, :, :, 1, 1, 0].tolist()
    [[4.0, 5.0], [7.0, 8.0]]
    """
    xp = backend.namespace(x)
    kind = _kind(xp)
    if kind == "numpy":
        return _im2col_numpy(x, kernel, stride, padding, fill)
    if kind == "cupy":
        return _im2col_inplace(xp, x, kernel, stride, padding, fill)
    return _im2col_standard(xp, x, kernel, stride, padding, fill)


def col2im(cols, x_shape, *, stride: int = 1, padding: int = 0):
    """Scatter-add windows back onto an image: the exact adjoint of :func:`im2col`.

    Parameters
    ----------
    cols : array (C, KH, KW, OH, OW, N)
    x_shape : (N, C, H, W), the shape of the image :func:`im2col` read
    stride, padding : int, as given to :func:`im2col`

    Returns
    -------
    dx : array (N, C, H, W) (a :func:`batch_first` view of a new array);
        values that fall on the padding are dropped

    Notes
    -----
    .. math::
        dx_{n,c,h,w} = \\sum_{(i,j,p,q):\\ ps+i-P=h,\\ qs+j-P=w} \\mathrm{cols}_{c,i,j,p,q,n}

    so that :math:`\\langle \\mathrm{im2col}(x), y\\rangle = \\langle x, \\mathrm{col2im}(y)\\rangle`.

    >>> ones = np.ones((1, 2, 2, 2, 2, 1))           # 2x2 windows over a 3x3 image
    >>> col2im(ones, (1, 1, 3, 3))[0, 0].tolist()   # how many windows cover each pixel
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    xp = backend.namespace(cols)
    n, c, h, w = x_shape
    kh, kw = cols.shape[1:3]
    if windows_tile(x_shape, (kh, kw), stride, padding):
        # The windows tile the image (2x2 pooling): a permutation, one copy, no zero fill.
        tiles = xp.permute_dims(cols, (0, 3, 1, 4, 2, 5))  # (C, OH, KH, OW, KW, N)
        return batch_first(xp.reshape(tiles, (c, h, w, n)))
    if _kind(xp) in ("numpy", "cupy"):
        return _col2im_inplace(xp, cols, x_shape, stride, padding)
    return _col2im_standard(xp, cols, x_shape, stride, padding)


def windows_tile(x_shape, kernel, stride: int, padding: int) -> bool:
    """Whether the sliding windows tile the (N, C, H, W) image exactly: square windows of side = stride,
    no padding, the side dividing H and W (each pixel in exactly one window).

    >>> windows_tile((1, 1, 4, 6), (2, 2), 2, 0), windows_tile((1, 1, 5, 6), (2, 2), 2, 0)
    (True, False)
    """
    h, w = x_shape[2:]
    kh, kw = kernel
    return padding == 0 and kh == kw == stride and h % stride == 0 and w % stride == 0


def _spatial_pad(padding):
    """np.pad / cupy.pad widths for a (C, H, W, N) array."""
    return ((0, 0), (padding, padding), (padding, padding), (0, 0))


def _im2col_numpy(x, kernel, stride, padding, fill):
    """One strided copy of a sliding-window view (no Python loop over offsets)."""
    _geometry(x.shape, kernel, stride, padding)  # validates the sizes
    x = batch_last(x)
    # a (C, H, W, N)-ordered copy first, so that the window copy reads runs of N values
    x = np.pad(x, _spatial_pad(padding), constant_values=fill) if padding else np.ascontiguousarray(x)
    view = np.lib.stride_tricks.sliding_window_view(x, tuple(kernel), axis=(1, 2))
    view = view[:, ::stride, ::stride]  # (C, OH, OW, N, KH, KW)
    # np.array copies even when the view is already contiguous (1x1 kernels): never alias x.
    return np.array(view.transpose(0, 4, 5, 1, 2, 3), order="C")  # (C, KH, KW, OH, OW, N)


def _im2col_inplace(xp, x, kernel, stride, padding, fill):
    """One strided slice copied per kernel offset into a preallocated array (NumPy or CuPy)."""
    n, c = x.shape[:2]
    oh, ow, offsets = _geometry(x.shape, kernel, stride, padding)
    x = batch_last(x)
    if padding:
        x = xp.pad(x, _spatial_pad(padding), constant_values=fill)
    cols = xp.empty((c, *kernel, oh, ow, n), dtype=x.dtype)
    for i, j, (rows, columns) in offsets:
        cols[:, i, j] = x[:, rows, columns]
    return cols


def _col2im_inplace(xp, cols, x_shape, stride, padding):
    """One in-place strided slice-add per kernel offset (no np.add.at); NumPy or CuPy."""
    n, c, h, w = x_shape
    _, _, offsets = _geometry(x_shape, cols.shape[1:3], stride, padding)
    dx = xp.zeros((c, h + 2 * padding, w + 2 * padding, n), dtype=cols.dtype)
    for i, j, (rows, columns) in offsets:
        dx[:, rows, columns] += cols[:, i, j]
    return batch_first(dx[:, padding:padding + h, padding:padding + w])


def _pad_standard(xp, x, padding, fill):
    """``x`` (C, H, W, N) inside a ``fill`` border of width ``padding``, on x's device."""
    c, h, w, n = x.shape
    out = xp.full((c, h + 2 * padding, w + 2 * padding, n), fill, dtype=x.dtype, device=x.device)
    out[:, padding:padding + h, padding:padding + w, :] = x
    return out


def _im2col_standard(xp, x, kernel, stride, padding, fill):
    """Pure-standard fallback: a stack of one strided slice per kernel offset."""
    n, c = x.shape[:2]
    oh, ow, offsets = _geometry(x.shape, kernel, stride, padding)
    x = batch_last(x)
    if padding:
        x = _pad_standard(xp, x, padding, fill)
    cols = xp.stack([x[:, rows, columns, :] for _, _, (rows, columns) in offsets], axis=1)
    return xp.reshape(cols, (c, *kernel, oh, ow, n))  # (C, KH*KW, OH, OW, N) -> 6-D


def _col2im_standard(xp, cols, x_shape, stride, padding):
    """Pure-standard fallback: one strided slice-add per kernel offset, by item assignment."""
    n, c, h, w = x_shape
    _, _, offsets = _geometry(x_shape, cols.shape[1:3], stride, padding)
    zero = xp.zeros((c, h, w, n), dtype=cols.dtype, device=cols.device)
    dx = _pad_standard(xp, zero, padding, 0.0)
    for i, j, (rows, columns) in offsets:
        dx[:, rows, columns, :] = dx[:, rows, columns, :] + cols[:, i, j, ...]
    return batch_first(dx[:, padding:padding + h, padding:padding + w, :])


def zeros(shape, like):
    """Zeros of ``like``'s dtype on ``like``'s device (CuPy's ``zeros`` has no ``device``: its context).

    >>> zeros((2,), np.ones(3, dtype=np.float32)).dtype
    dtype('float32')
    """
    xp = backend.namespace(like)
    if _kind(xp) == "cupy":
        with like.device:
            return xp.zeros(shape, dtype=like.dtype)
    return xp.zeros(shape, dtype=like.dtype, device=like.device)


def empty(shape, like, dtype=None):
    """An uninitialised array of ``dtype`` (default ``like``'s) on ``like``'s device, for a caller that
    writes every entry.

    >>> empty((2, 3), np.ones(1, dtype=np.float32)).shape
    (2, 3)
    """
    xp = backend.namespace(like)
    dtype = like.dtype if dtype is None else dtype
    if _kind(xp) == "cupy":
        with like.device:
            return xp.empty(shape, dtype=dtype)
    return xp.empty(shape, dtype=dtype, device=like.device)


def complex_from_parts(re, im):
    """``re + 1j im``: a complex array of the real arrays' precision (float32 -> complex64).

    NumPy and CuPy write the two parts into one new array (one pass); other
    namespaces add them as complex arrays.

    >>> complex_from_parts(np.array([1.0, 2.0], dtype=np.float32), np.array([0.5, -1.0], dtype=np.float32))
    array([1.+0.5j, 2.-1.j ], dtype=complex64)
    """
    xp = backend.namespace(re, im)
    dtype = xp.complex64 if re.dtype == xp.float32 else xp.complex128
    if _kind(xp) in ("numpy", "cupy"):
        out = empty(re.shape, re, dtype=dtype)
        out.real[...] = re
        out.imag[...] = im
        return out
    return xp.astype(re, dtype) + xp.astype(im, dtype) * 1j


def exp_(x):
    """``exp(x)``, overwriting ``x`` where the backend can (NumPy and CuPy ``out=``).

    For large temporaries that the caller owns: one (M, M) buffer instead of
    two. Use the returned array; the standard fallback returns a new one.

    >>> x = np.zeros(2)
    >>> exp_(x) is x, x.tolist()
    (True, [1.0, 1.0])
    """
    xp = backend.namespace(x)
    if _kind(xp) == "standard":
        return xp.exp(x)
    return xp.exp(x, out=x)


def maximum_(a, b):
    """``maximum(a, b)``, overwriting ``a`` where the backend can (NumPy and CuPy ``out=``).

    For a running maximum the caller owns: no new array (and, for large
    arrays, no fresh pages to fault in) per step. Use the returned array;
    the standard fallback returns a new one. NaN propagates as in ``maximum``.

    >>> a = np.array([1.0, 5.0, np.nan])
    >>> maximum_(a, np.array([3.0, 2.0, 0.0])) is a, a.tolist()
    (True, [3.0, 5.0, nan])
    """
    xp = backend.namespace(a, b)
    if _kind(xp) == "standard":
        return xp.maximum(a, b)
    return xp.maximum(a, b, out=a)


def set_product(out, key, a, mask):
    """``out[key] = a * mask`` for a boolean ``mask``: ``a`` where it holds, ``a * 0`` elsewhere (so NaN stays NaN).

    ``key`` is basic indexing (integers, slices, ``...``), so that ``out[key]``
    is a view. NumPy and CuPy multiply by the booleans straight into it (no
    float copy of the mask, no product to copy: max pooling's backward). The
    standard, which mixes no bool and float operands, multiplies by the mask
    cast to ``a``'s dtype and assigns. Returns ``out``.

    >>> out = np.zeros((2, 2))
    >>> set_product(out, (slice(None), 1), np.array([2.0, -3.0]), np.array([True, False])).tolist()
    [[0.0, 2.0], [0.0, -0.0]]
    """
    xp = backend.namespace(out, a, mask)
    if _kind(xp) == "standard":
        out[key] = a * xp.astype(mask, a.dtype)
    else:
        xp.multiply(a, mask, out=out[key])
    return out


def set_sum(out, key, a, b, *, subtract: bool = False):
    """``out[key] = a + b`` (``a - b`` with ``subtract``); ``key`` is basic indexing, so ``out[key]`` is a view.

    NumPy and CuPy add straight into that view: one pass, no sum to copy (the
    FFT convolution writes the real and imaginary parts of its complex
    products into their places this way). The standard assigns. Returns ``out``.

    >>> out = np.zeros((2, 2))
    >>> set_sum(out, (0, ...), np.array([1.0, 2.0]), np.array([3.0, 5.0]), subtract=True).tolist()
    [[-2.0, -3.0], [0.0, 0.0]]
    """
    xp = backend.namespace(out, a, b)
    if _kind(xp) == "standard":
        out[key] = a - b if subtract else a + b
    else:
        (xp.subtract if subtract else xp.add)(a, b, out=out[key])
    return out


def rowdot(a, b):
    """``sum(a * b, axis=-1)`` without the full-size product temporary (einsum on NumPy/CuPy).

    >>> rowdot(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 1.0], [0.5, 0.0]])).tolist()
    [3.0, 1.5]
    """
    xp = backend.namespace(a, b)
    if _kind(xp) == "standard":
        return xp.sum(a * b, axis=-1)
    return xp.einsum("...k,...k->...", a, b)


def exp_where(x, mask):
    """``where(mask, exp(x), 0)``; NumPy evaluates ``exp`` only where ``mask`` holds.

    For a sparse ``mask`` of an (M, M) array: NumPy's float64 ``exp`` is not
    vectorised, so gathering the masked entries, one ``exp`` on them and one
    scatter cost less than ``exp`` of every entry. Overwrites ``x`` where the
    backend can (NumPy); use the returned array.

    >>> exp_where(np.array([0.0, 1e4, -1.0]), np.array([True, False, True])).round(4).tolist()
    [1.0, 0.0, 0.3679]
    """
    xp = backend.namespace(x, mask)
    if _kind(xp) == "numpy":
        x = np.ascontiguousarray(x)  # reshape(-1) below is then a view
        flat, flat_index = x.reshape(-1), np.flatnonzero(mask)
        values = np.exp(flat[flat_index])
        flat.fill(0)
        flat[flat_index] = values
        return x
    return xp.exp(xp.where(mask, x, xp.full_like(x, -math.inf)))  # no overflow off the mask


def argsort_stable(x):
    """Indices that sort the 1-D ``x`` ascending, equal values in their input order.

    NumPy sorts stably only when asked, CuPy always (it takes no ``stable``
    argument), the standard via ``stable=True``.

    >>> argsort_stable(np.array([2, 1, 2, 1])).tolist()
    [1, 3, 0, 2]
    """
    xp = backend.namespace(x)
    kind = _kind(xp)
    if kind == "numpy":
        return np.argsort(x, kind="stable")
    if kind == "cupy":
        return xp.argsort(x)
    return xp.argsort(x, stable=True)


def floor_divide(x, divisor: float):
    """``x // divisor`` for a float array and a positive float, as Python's ``//`` and NumPy.

    Python and NumPy round the *exact* quotient down: ``0.25 // 0.05 == 4.0``,
    because the double nearest 0.05 is slightly above 0.05. CuPy's float
    ``//`` is ``floor(x / divisor)``, and the rounded quotient ``0.25 / 0.05``
    is exactly 5.0, so CuPy gives 5.0: label buckets would differ by backend.
    NumPy and the standard fallback (whose libraries follow Python) use
    ``//``; CuPy uses :func:`_floor_divide_by_fmod`.

    >>> floor_divide(np.array([0.15, 0.25, -0.25]), 0.05).tolist()
    [2.0, 4.0, -5.0]
    """
    xp = backend.namespace(x)
    if _kind(xp) == "cupy":
        return _floor_divide_by_fmod(xp, x, divisor)
    return x // divisor


def _floor_divide_by_fmod(xp, x, divisor: float):
    """CPython's float floor division (``float_floor_div``) from the exact C ``fmod``."""
    mod = xp.fmod(x, divisor)  # exact: x - mod is a multiple of divisor
    div = (x - mod) / divisor
    div = xp.where((mod != 0) & ((mod < 0) != (divisor < 0)), div - 1, div)
    floor = xp.floor(div)
    return xp.where(div - floor > 0.5, floor + 1, floor)  # div is an integer up to rounding


def add_rows(x, index, values):
    """``x[index] += values`` for distinct row indices ``index`` (B,); use the returned array.

    NumPy and CuPy add in place (distinct indices, so no ``add.at`` is
    needed); the standard has no integer-array assignment, so its fallback
    adds a one-hot (M, B) @ (B, K) product instead.

    >>> add_rows(np.zeros((3, 2)), np.array([2, 0]), np.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]]
    """
    xp = backend.namespace(x, index, values)
    if _kind(xp) == "standard":
        rows = backend.asarray(xp.arange(x.shape[0]), like=index)
        one_hot = xp.astype(rows[:, None] == index[None, :], x.dtype)  # (M, B)
        return x + one_hot @ values  # (M, B) @ (B, K)
    x[index] += values
    return x
