"""2-D convolution by the convolution theorem: :func:`refimpl.layers.conv2d.forward` with ``algorithm="fft"``.

Call it through :func:`refimpl.layers.conv2d.forward` (which checks the
arguments) and :func:`refimpl.layers.conv2d.backward`; the functions here
assume checked arguments. The result equals the im2col and loop forms to
float rounding, forward and backward.

The lesson, in one dimension (the two spatial axes work alike). Index
everything modulo a length :math:`L` and write :math:`\\hat a_k = \\sum_m
a_m e^{-2\\pi i k m / L}` for the DFT. The *circular cross-correlation*
:math:`(a \\star b)_p = \\sum_m a_m\\, b_{m+p}` and *convolution*
:math:`(a * b)_j = \\sum_p a_p\\, b_{j-p}` become products, frequency by frequency:

.. math::
    \\widehat{a \\star b} = \\overline{\\hat a}\\,\\hat b, \\qquad
    \\widehat{a * b} = \\hat a\\,\\hat b
    \\qquad \\text{(the convolution theorem; real } a\\text{: } \\hat a_{-k} = \\overline{\\hat a_k}).

**Forward.** ``out[p] = sum_i w[i] xpad[p + i] = sum_i w[i] x[p + i - P]``
(P the padding). Place the filter at :math:`w'_{(i - P) \\bmod L} = w_i`
(zero elsewhere) and extend ``x`` with zeros to length :math:`L`; then
:math:`r = w' \\star x` reads ``x[(p + i - P) mod L]``, which is the padded
input as long as every index that wraps around lands on one of the added
zeros: :math:`L \\ge H + P` (and :math:`L \\ge K`, :math:`L \\ge` the stride-1
output length), which :func:`fft_lengths` picks. Per frequency
:math:`k`, with channels summed, this is one complex matrix product:

.. math::
    \\hat r_{f,n}(k) = \\sum_c \\overline{\\hat w'_{f,c}(k)}\\; \\hat x_{c,n}(k), \\qquad
    \\mathrm{out} = r[\\,0 : s(O-1)+1 : s\\,] + b

and the bias, a constant over the :math:`L \\times L` plane, is added to the
zero frequency only: :math:`\\hat r_{f,n}(0) \\mathrel{+}= L_H L_W\\, b_f`.

**Backward.** ``r[p] = sum_m w'[m] x[m + p]`` is bilinear, so

.. math::
    \\frac{\\partial \\mathcal L}{\\partial w'_m} = \\sum_p dr_p\\, x_{m+p} = (dr \\star x)_m, \\qquad
    \\frac{\\partial \\mathcal L}{\\partial x_j} = \\sum_p dr_p\\, w'_{j-p} = (dr * w')_j

(``dr`` is ``dout`` placed at the output positions, zero elsewhere): the
filter gradient is a *correlation* of the upstream gradient with the input,
the input gradient a *convolution* (the filter turned around) of it with the
filter. By the convolution theorem, frequency by frequency:

.. math::
    \\widehat{dw'}_{f,c}(k) = \\sum_n \\overline{\\widehat{dr}_{f,n}(k)}\\; \\hat x_{c,n}(k), \\qquad
    \\widehat{dx}_{c,n}(k) = \\sum_f \\hat w'_{f,c}(k)\\; \\widehat{dr}_{f,n}(k).

Forward multiplies by :math:`\\overline{\\hat w'}`; its adjoint multiplies by
:math:`\\hat w'` (the conjugate transpose of the per-frequency matrix); the
filter gradient conjugates the upstream spectrum instead. Backward reuses the
input spectrum :math:`\\hat x` and the filter spectrum of forward: one real
FFT (of ``dr``) and one inverse (of :math:`\\widehat{dx}`, whose first
:math:`H` entries are ``dx``); ``dw`` is ``dw'`` read back at the taps
:math:`(i - P) \\bmod L` only, and ``db`` sums ``dout``. The filter has only
:math:`K \\times K` taps, so its spectrum and the taps of ``dw'`` are small
matrix products with the DFT matrix (:func:`filter_spectrum`,
:func:`filter_gradient`) rather than FFTs of mostly zero :math:`L \\times L` planes.

Layout: spectra are frequency-major, ``(LH, LW // 2 + 1, channels, N)``, so
that each frequency's matrices are contiguous for one batched product, with
the batch last in memory as elsewhere in the layers (:mod:`refimpl._ops`).
The 2-D transforms run along W as real FFTs and along H as one product with
the DFT matrix of that axis (:func:`_spectrum`, :func:`_image`): the rows that
the zero extension adds are never transformed, and the rows that the crop
drops are never computed.

**Real arithmetic (what the code runs).** The filter's spectrum is kept as
its parts, per frequency the real part above the imaginary part,
:math:`P = [\\mathrm{Re}\\,\\hat w';\\ \\mathrm{Im}\\,\\hat w']` ((2F, C): the output of
one real product with the DFT matrix, :func:`filter_spectrum_parts`), and a
complex spectrum is read as a real matrix of twice the columns, real and
imaginary parts side by side (:func:`refimpl._ops.real_view`), so that a real
matrix times that view is the real matrix times the complex one. The real
product of two such views, :math:`\\langle A, B\\rangle = \\mathrm{Re}(\\overline{A} B^\\top)`
(:math:`\\sum_n \\mathrm{Re}\\,a\\,\\mathrm{Re}\\,b + \\mathrm{Im}\\,a\\,\\mathrm{Im}\\,b`), gives the real
part of a product with one side conjugated, and, since
:math:`\\mathrm{Re}(\\overline{-i a}\\, b) = \\mathrm{Im}(a\\,\\overline{b})`, its imaginary part too:

.. math::
    \\widehat{dw'}^\\top = \\hat x\\,\\overline{\\widehat{dr}}^\\top:\\quad
    \\begin{bmatrix} \\mathrm{Re}\\,\\widehat{dw'}^\\top \\\\ \\mathrm{Im}\\,\\widehat{dw'}^\\top \\end{bmatrix}
    = \\Big\\langle \\begin{bmatrix} \\hat x \\\\ -i\\,\\hat x \\end{bmatrix}, \\widehat{dr} \\Big\\rangle,
    \\qquad
    \\widehat{dx} = (\\mathrm{Re}\\,\\hat w')^\\top \\widehat{dr} + i\\,(\\mathrm{Im}\\,\\hat w')^\\top \\widehat{dr},

and forward
:math:`\\overline{\\hat w'}\\,\\hat x = \\mathrm{Re}\\,\\hat w'\\,\\hat x - i\\,\\mathrm{Im}\\,\\hat w'\\,\\hat x`
is the product :math:`P\\,\\hat x` split in its halves (:func:`_conj_product`).
No complex, conjugated or stacked copy of the filter's spectrum is made (it is
the largest array of the late layers: 256 x 128 per frequency in TinyNet's
conv5), nor a conjugated copy of the upstream gradient's; the extra passes
(the stack :math:`[\\hat x; -i\\,\\hat x]`, the sums :math:`a \\pm i b`) run over the
input and output sides, and the filter gradient is read back from its
stacked parts directly (:func:`filter_gradient`).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from .. import _ops, _validate, backend


class Cache(NamedTuple):
    """What :func:`backward` needs: the spectra of forward (no FFT is repeated)."""

    x_spectrum: object       # (LH, LW//2+1, C, N) rfft of x, zero-extended to (LH, LW)
    w_parts: object          # (LH, LW//2+1, 2F, C) real: [Re; Im] of the rfft of the placed filter w'
    lengths: tuple           # (LH, LW)
    x_shape: tuple
    kernel: tuple            # (KH, KW)
    has_b: bool
    stride: int
    padding: int
    input_grad: bool         # False: no dx
    output: _validate.Output


def fft_lengths(x_shape, kernel, stride: int, padding: int) -> tuple:
    """``(LH, LW)``: per spatial axis the shortest length that makes the circular correlation exact.

    Along an axis of size H with kernel K, padding P and stride s the
    stride-1 outputs ``0 .. s (O - 1)`` read ``x[p + i - P]``; a wrapped index
    must land on an added zero (``L >= H + P``), the filter taps must not
    overlap (``L >= K``) and every output must fit (``L >= s (O - 1) + 1``).
    Along H the transforms are products with a DFT matrix (:func:`_spectrum`),
    which take any length, so ``LH`` is that bound itself; along W they are
    FFTs, so ``LW`` is the next length whose only prime factors are 2, 3 and 5
    (:func:`refimpl._ops.fft_length`).

    >>> fft_lengths((64, 16, 32, 32), (5, 5), 1, 2)       # TinyNet's conv2: 34, and 36 for the FFT
    (34, 36)
    """
    bounds = []
    for size, k in zip(x_shape[2:], kernel):
        out = _ops.window_output_size(size, k, stride, padding)
        bounds.append(max(size + padding, k, stride * (out - 1) + 1))
    return bounds[0], _ops.fft_length(bounds[1])


def _channels_last(xp, a):
    """(N, C, H, W) -> (H, W, C, N), a view: spatial axes first for the FFT, the batch last."""
    return xp.permute_dims(a, (2, 3, 1, 0))


def input_spectrum(x, lengths):
    """(N, C, H, W) -> (LH, LW//2+1, C, N): the rfft of ``x`` zero-extended to ``lengths``."""
    xp = backend.namespace(x)
    return _spectrum(_channels_last(xp, x), lengths)


def _spectrum(planes, lengths):
    """(H, W, K, N) real -> (LH, LW//2+1, K, N): the 2-D rfft of each plane zero-extended to ``lengths``.

    Along W a real FFT of the H rows (:func:`refimpl._ops.rfft`); along H one complex product with the
    (LH, H) DFT matrix :math:`E_{kh} = e^{-2\\pi i k h / L_H}` (:func:`_axis_dft`): the zero rows that the
    extension adds are never transformed, and for these short axes (L <= 36) the product ran faster
    than FFTs of strided lines.
    """
    xp = backend.namespace(planes)
    h, lw2 = planes.shape[0], lengths[1] // 2 + 1
    lines = _ops.rfft(planes, lengths[1], 1)                                # (H, LW2, K, N)
    dft = _axis_dft(lengths[0], (0, h, 1), lines, inverse=False)             # (LH, H)
    spectrum = dft @ xp.reshape(lines, (h, -1))
    return xp.reshape(spectrum, (lengths[0], lw2, *planes.shape[2:]))


def roots_of_unity(turns, length: int):
    """:math:`e^{2\\pi i m / L}` for an integer array ``m`` (``turns``), complex128, exact at the quarter turns.

    ``m`` is reduced modulo ``L`` in integers before the angle is formed, and
    where :math:`m / L` is a multiple of 1/4 the value is exactly 1, i, -1 or
    -i: ``np.sin(np.pi)`` is 1.2e-16, not 0. Why it matters: the DFT matrices
    built from these make the spectra of the self-conjugate frequencies
    (:math:`k = 0` or :math:`L/2` along both axes) exactly real, as they are in
    exact arithmetic. With the crumbs left in, a small gradient (1e-8 is
    ordinary deep in a network) times a crumb in a per-frequency product gave
    subnormal floats, which x86 CPUs compute in slow microcode: in the
    training step of ``refimpl bench tinynet --profile``, conv5's backward
    took a fifth longer with the crumbs than without.

    >>> roots_of_unity(np.array([0, 1, 2, 3, 4, 9]), 4).tolist()
    [(1+0j), 1j, (-1+0j), -1j, (1+0j), 1j]
    >>> float(np.exp(2j * np.pi * 2 / 4).imag), float(roots_of_unity(np.array([2]), 4)[0].imag)
    (1.2246467991473532e-16, 0.0)
    """
    m = np.mod(turns, length)
    roots = np.exp(2j * np.pi * m / length)
    for quarter, value in enumerate((1, 1j, -1, complex(0, -1))):
        roots[4 * m == quarter * length] = value
    return roots


def _axis_dft(length: int, positions: tuple, like, *, inverse: bool):
    """The DFT matrix of one axis of length ``L`` at the positions ``range(*positions)``, complex, placed like
    ``like``: (L, P) :math:`e^{-2\\pi i k p / L}` (forward), or (P, L) :math:`e^{2\\pi i p k / L} / L` (inverse)."""
    return _placed(_host_axis_dft, length, positions, inverse, like=like, complex_=True)


@functools.lru_cache(maxsize=64)
def _host_axis_dft(length: int, positions: tuple, inverse: bool, dtype: str):
    """:func:`_axis_dft` on the host, computed in float64 and rounded to ``dtype``; read-only, memoised."""
    turns = np.outer(np.arange(*positions), np.arange(length))              # (P, L): p k
    matrix = roots_of_unity(turns, length) / length if inverse else roots_of_unity(-turns, length).T
    matrix = np.ascontiguousarray(matrix).astype(dtype)
    matrix.setflags(write=False)
    return matrix


def _dft_parts(lengths, kernel, padding: int, like):
    """(2 LH (LW//2+1), KH KW) real: the DFT matrix of the placed filter, each frequency's real row above its
    imaginary one.

    ``E[(kh, kw), (i, j)] = exp(-2 pi i (kh (i - P) / LH + kw (j - P) / LW))``: the
    filter has only KH x KW taps, at :math:`(i - P) \\bmod L`, so one small
    product with this matrix is its rfft (no zero-filled L x L array, no FFT;
    2-6x faster for TinyNet's layers). The taps are real, so
    :math:`E t = \\mathrm{Re}(E)\\, t + i\\, \\mathrm{Im}(E)\\, t`: stacked as
    ``[Re E; Im E]`` the two parts make one real product, half the arithmetic
    of a complex one and no complex copy of the taps; interleaved per
    frequency, the product is the per-frequency stack :func:`filter_spectrum_parts`
    returns. Placed like ``like`` in the real dtype of its precision.
    """
    return _placed(_host_dft_parts, tuple(lengths), tuple(kernel), padding, like=like)


def _placed(host_matrix, *key, like, complex_: bool = False):
    """``host_matrix(*key, dtype)`` (a memoised host array) placed like ``like``, in the real (or, with
    ``complex_``, complex) dtype of ``like``'s precision (float32 / complex64 for float32 and complex64)."""
    xp = backend.namespace(like)
    single = like.dtype in (xp.float32, xp.complex64)
    dtype = ("complex64" if single else "complex128") if complex_ else ("float32" if single else "float64")
    return backend.asarray(host_matrix(*key, dtype), like=like, dtype=getattr(xp, dtype))


@functools.lru_cache(maxsize=64)
def _host_dft_parts(lengths, kernel, padding: int, dtype: str):
    """:func:`_dft_parts` on the host, computed in float64 and rounded to ``dtype``; read-only.

    Memoised: a constant of the layer's geometry, whose cosines and sines took
    as long as the product with the taps (TinyNet's conv2: 0.4 ms a call).
    """
    (lh, lw), (kh, kw) = lengths, kernel
    # the phase kh (i - P) / LH + kw (j - P) / LW in units of 1 / (LH LW), an integer
    turns_h = np.outer(np.arange(lh), np.arange(kh) - padding) * lw          # (LH, KH)
    turns_w = np.outer(np.arange(lw // 2 + 1), np.arange(kw) - padding) * lh  # (LW//2+1, KW)
    turns = turns_h[:, None, :, None] + turns_w[None, :, None, :]            # (LH, LW2, KH, KW)
    e = roots_of_unity(-turns.reshape(lh * (lw // 2 + 1), kh * kw), lh * lw)
    parts = np.stack([e.real, e.imag], axis=1)                               # (LH LW2, 2, KH KW)
    parts = parts.reshape(2 * lh * (lw // 2 + 1), kh * kw).astype(dtype)     # rows: Re, Im of each frequency
    parts.setflags(write=False)
    return parts


def filter_spectrum(w, lengths, padding: int):
    """(F, C, KH, KW) -> (LH, LW//2+1, F, C) complex: the rfft of the placed filter ``w'[(i - P) mod L] = w[i]``.

    The spectrum of the module docstring, assembled from :func:`filter_spectrum_parts` (which the layer uses).
    """
    parts = filter_spectrum_parts(w, lengths, padding)
    f = w.shape[0]
    return _ops.complex_from_parts(parts[..., :f, :], parts[..., f:, :])


def filter_spectrum_parts(w, lengths, padding: int):
    """(F, C, KH, KW) -> (LH, LW//2+1, 2F, C) real: per frequency, the real parts of :func:`filter_spectrum`
    above its imaginary parts, :math:`P(k) = [\\mathrm{Re}\\,\\hat w'(k);\\ \\mathrm{Im}\\,\\hat w'(k)]`.

    One real product of the DFT matrix with the taps (:func:`_dft_parts`), its rows already in this order:
    no complex array is assembled.
    """
    xp = backend.namespace(w)
    f, c, kh, kw = w.shape
    parts = _dft_parts(lengths, (kh, kw), padding, w)                      # (LH LW2 2, KH KW): Re E, Im E rows
    taps = xp.reshape(w, (f * c, kh * kw))                                  # (F C, KH KW)
    products = parts @ xp.matrix_transpose(taps)                            # (LH LW2 2, F C)
    return xp.reshape(products, (lengths[0], lengths[1] // 2 + 1, 2 * f, c))


def filter_gradient(dw_parts, lengths, kernel, padding: int):
    """(LH, LW//2+1, 2C, F) real parts of the transposed spectrum of ``dw'`` (per frequency
    ``[Re; Im]`` of :math:`\\widehat{dw'}^\\top`) -> (F, C, KH, KW), C-contiguous: ``dw'`` read back at the
    taps ``(i - P) mod L``.

    The inverse rfft evaluated at the KH x KW taps only: with :math:`E` of
    :func:`_dft_parts`, :math:`dw = \\mathrm{Re}\\big(\\overline{E}^\\top (c \\odot \\widehat{dw'})\\big) / (L_H L_W)`,
    where ``c`` = 2 for the half-spectrum columns that also stand for their
    mirror image (``0 < kw < LW / 2``) and 1 for the others; the same numbers
    as ``irfftn`` at those taps. In real arithmetic,
    :math:`\\mathrm{Re}(\\overline{E}^\\top S) = \\mathrm{Re}(E)^\\top \\mathrm{Re}(S) + \\mathrm{Im}(E)^\\top \\mathrm{Im}(S)`:
    one real product of the stacked parts with the stacked spectrum.
    """
    xp = backend.namespace(dw_parts)
    lh, lw2, c2, f = dw_parts.shape
    c, (kh, kw) = c2 // 2, kernel
    # (KH KW, LH LW2 2)
    inverse = _placed(_host_inverse_parts, tuple(lengths), tuple(kernel), padding, like=dw_parts)
    # the product transposed, (C F, KH KW), so that each filter's taps come out contiguous (a (KH KW, C F)
    # product leaves them strided across the whole array)
    taps = xp.matrix_transpose(xp.reshape(dw_parts, (lh * lw2 * 2, c * f))) @ xp.matrix_transpose(inverse)
    # then reordered to (F, C) while fresh in the cache: read cold and strided later (a DataParallel worker's
    # copy into its gradient buffer, an optimiser step), conv5's dw was slow to gather
    return _ops.contiguous(xp.permute_dims(xp.reshape(taps, (c, f, kh, kw)), (1, 0, 2, 3)))


@functools.lru_cache(maxsize=64)
def _host_inverse_parts(lengths, kernel, padding: int, dtype: str):
    """(KH KW, 2 LH (LW//2+1)) read-only: :func:`_host_dft_parts` weighted by ``c / (LH LW)`` per row, transposed
    (the matrix :func:`filter_gradient` applies; memoised with it)."""
    columns = np.arange(lengths[1] // 2 + 1)
    weight = np.where((columns == 0) | (2 * columns == lengths[1]), 1.0, 2.0) / (lengths[0] * lengths[1])
    parts = _host_dft_parts(lengths, kernel, padding, "float64")              # rows: (frequency, Re/Im)
    row_weight = np.repeat(np.tile(weight, lengths[0]), 2)                    # the weight of each row's frequency
    inverse = np.ascontiguousarray((parts * row_weight[:, None]).T).astype(dtype)
    inverse.setflags(write=False)
    return inverse


def _image(xp, spectrum, lengths, rows, columns):
    """(LH, LW//2+1, K, N) spectrum -> (N, K, rows, columns): its inverse rfft, cropped, batch last in memory.

    Along H one complex product with the inverse DFT matrix at the kept ``rows`` only (the cropped rows
    are never computed; :func:`_axis_dft`), then along W an inverse real FFT (:func:`refimpl._ops.irfft_`).
    """
    lh, lw2 = spectrum.shape[:2]
    dft = _axis_dft(lengths[0], (rows.start, rows.stop, rows.step or 1), spectrum, inverse=True)  # (R, LH)
    lines = xp.reshape(dft @ xp.reshape(spectrum, (lh, -1)), (dft.shape[0], lw2, *spectrum.shape[2:]))
    image = _ops.irfft_(lines, lengths[1], 1)[:, columns, ...]           # (rows, columns, K, N)
    return _ops.batch_last_layout(xp.permute_dims(image, (3, 2, 0, 1)))


def _output_positions(out_shape, stride):
    """The stride-1 positions that are outputs: ``0, s, ..., s (O - 1)`` along each spatial axis."""
    oh, ow = out_shape[2:]
    return slice(0, stride * (oh - 1) + 1, stride), slice(0, stride * (ow - 1) + 1, stride)


def _conj_product(w_parts, x_spectrum):
    """:math:`\\overline{\\hat w'}\\,\\hat x` per frequency, (LH, LW2, F, N) complex, from the filter's parts
    (LH, LW2, 2F, C) and the input spectrum (LH, LW2, C, N): one real product :math:`P\\,\\hat x`, whose
    halves :math:`a = \\mathrm{Re}\\,\\hat w'\\,\\hat x` and :math:`b = \\mathrm{Im}\\,\\hat w'\\,\\hat x`
    give :math:`a - i b`."""
    f = w_parts.shape[-2] // 2
    products = _ops.complex_view(w_parts @ _ops.real_view(x_spectrum))  # (LH, LW2, 2F, N): [Re w'; Im w'] x
    return _ops.add_multiple(products[..., :f, :], products[..., f:, :], -1j)


def forward(x, w, b, *, stride: int, padding: int, input_grad: bool):
    """:func:`refimpl.layers.conv2d.forward` by FFT; arguments checked there. Returns ``(out, Cache)``.

    .. math::
        \\hat r_{f,n}(k) = \\sum_c \\overline{\\hat w'_{f,c}(k)}\\,\\hat x_{c,n}(k) + L_H L_W\\, b_f\\,[k = 0]

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])      # x[p, q] - x[p + 1, q + 1]
    >>> out, cache = forward(x, w, np.array([0.5]), stride=2, padding=0, input_grad=True)
    >>> out.round(12).tolist()
    [[[[-4.5, -4.5], [-4.5, -4.5]]]]
    """
    xp = backend.namespace(x, w, b)
    kernel = tuple(w.shape[2:])
    lengths = fft_lengths(x.shape, kernel, stride, padding)
    x_spectrum = input_spectrum(x, lengths)                       # (LH, LW2, C, N)
    w_parts = filter_spectrum_parts(w, lengths, padding)          # (LH, LW2, 2F, C): [Re; Im] of w' hat
    r_spectrum = _conj_product(w_parts, x_spectrum)               # conj(w' hat) @ x hat: (LH, LW2, F, N)
    if b is not None:  # a constant b over the plane is L_H L_W b at frequency 0 and nothing elsewhere
        r_spectrum[0, 0, ...] = r_spectrum[0, 0, ...] + xp.reshape(b * (lengths[0] * lengths[1]), (-1, 1))
    n, _, h, wd = x.shape
    oh = _ops.window_output_size(h, kernel[0], stride, padding)
    ow = _ops.window_output_size(wd, kernel[1], stride, padding)
    out = _image(xp, r_spectrum, lengths, *_output_positions((n, w.shape[0], oh, ow), stride))
    cache = Cache(x_spectrum, w_parts, lengths, tuple(x.shape), kernel, b is not None, stride, padding,
                  input_grad, _validate.output_of(out))
    return out, cache


def backward(dout, cache, *, check_finite: bool = True):
    """Gradients of :func:`forward` (see the module docstring for the derivation); ``(dx, dw, db)``.

    .. math::
        \\widehat{dw'}_{f,c}(k) = \\sum_n \\overline{\\widehat{dr}_{f,n}(k)}\\,\\hat x_{c,n}(k), \\quad
        \\widehat{dx}_{c,n}(k) = \\sum_f \\hat w'_{f,c}(k)\\,\\widehat{dr}_{f,n}(k), \\quad
        db_f = \\sum_{n,p,q} dout_{n,f,p,q}

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, cache = forward(x, np.ones((1, 1, 2, 2)), None, stride=2, padding=0, input_grad=True)
    >>> dx, dw, db = backward(np.ones_like(out), cache)
    >>> dw.round(12).tolist(), db is None, round(float(dx.sum()), 12)
    ([[[[20.0, 24.0], [36.0, 40.0]]]], True, 16.0)
    """
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    xp = backend.namespace(dout, cache.x_spectrum)
    lengths, stride, padding = cache.lengths, cache.stride, cache.padding
    n, _, h, wd = cache.x_shape
    f = dout.shape[1]
    # dr: dout at the output positions of the (LH, LW) plane, zero elsewhere; (OH1, OW1, F, N)
    rows, columns = _output_positions(dout.shape, stride)
    if stride == 1:
        dr = _channels_last(xp, dout)
    else:
        dr = _ops.zeros((rows.stop, columns.stop, f, n), like=dout)
        dr[rows, columns, ...] = _channels_last(xp, dout)
    dr_view = _ops.real_view(_spectrum(dr, lengths))                         # dr hat: (LH, LW2, F, 2N)
    # dw'^T = x (correlated with) dr, as [Re; Im] parts: [x hat; -i x hat] (LH, LW2, 2C, 2N) @ (LH, LW2, 2N, F)
    # -> (LH, LW2, 2C, F); the stack and the product are temporaries, gone before dx's arrays are made
    dw = filter_gradient(_ops.real_view(_ops.stack_minus_i(cache.x_spectrum)) @ xp.matrix_transpose(dr_view),
                         lengths, cache.kernel, padding)                              # (F, C, KH, KW)
    db = xp.sum(dout, axis=(0, 2, 3)) if cache.has_b else None
    if not cache.input_grad:
        return None, dw, db
    # dx = dr convolved with w' = Re(w')^T dr + i Im(w')^T dr: (LH, LW2, C, F) @ (LH, LW2, F, 2N), twice
    re_w, im_w = cache.w_parts[..., :f, :], cache.w_parts[..., f:, :]
    dx_spectrum = _ops.add_multiple(_ops.complex_view(xp.matrix_transpose(re_w) @ dr_view),
                                    _ops.complex_view(xp.matrix_transpose(im_w) @ dr_view), 1j)  # (LH, LW2, C, N)
    dx = _image(xp, dx_spectrum, lengths, slice(0, h), slice(0, wd))
    return dx, dw, db
