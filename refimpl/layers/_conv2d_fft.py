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
output length), which :func:`transform_lengths` picks. Per frequency
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
input spectrum :math:`\\hat x` and the filter spectrum of forward: one
transform (of ``dr``) and one inverse (of :math:`\\widehat{dx}`, whose first
:math:`H` entries are ``dx``); ``dw`` is ``dw'`` read back at the taps
:math:`(i - P) \\bmod L` only, and ``db`` sums ``dout``. The filter has only
:math:`K \\times K` taps, so its spectrum and the taps of ``dw'`` are small
matrix products with the DFT matrix (:func:`filter_spectrum`,
:func:`filter_gradient`) rather than transforms of mostly zero :math:`L \\times L` planes.

Layout: spectra are frequency-major, so that each frequency's matrices are
contiguous for one batched product, with the batch last in memory as
elsewhere in the layers (:mod:`refimpl._ops`). The 2-D transforms are
products with the DFT matrix of each axis, taken at the positions that hold
data (:func:`_spectrum`, :func:`_image`): the rows and columns that the zero
extension adds are never transformed, those that the crop drops never
computed, and a strided output's gradient is transformed at its positions
without being spread over a plane of zeros.

**Real arithmetic (what the code runs).** Every transform is a product
with a DFT matrix (the axes are short: TinyNet's are at most 34), and every
spectrum is kept as its real and imaginary *parts*, in real arrays: a
spectrum is ``(LH, 2, LW//2+1, channels, N)``, index 0 of the second axis
the real parts, 1 the imaginary parts. No complex array is made. Along W the
planes are real, so the half spectrum is one real product with the stacked
:math:`[\\cos;\\ -\\sin]` matrix; along H the data are complex, and
multiplying by a complex matrix :math:`E` is the real product with its
block form

.. math::
    \\begin{bmatrix} \\mathrm{Re}\\,E z \\\\ \\mathrm{Im}\\,E z \\end{bmatrix} =
    \\begin{bmatrix} \\mathrm{Re}\\,E & -\\mathrm{Im}\\,E \\\\ \\mathrm{Im}\\,E & \\mathrm{Re}\\,E \\end{bmatrix}
    \\begin{bmatrix} \\mathrm{Re}\\,z \\\\ \\mathrm{Im}\\,z \\end{bmatrix}

(rows and columns interleaved per frequency, :func:`_host_dft_block`), so
the parts come out stacked along the second axis. The inverse is the same
two products backwards, the W one weighting each half-spectrum column by how
many columns it stands for (:func:`_host_real_dft`). The filter's spectrum is
kept per frequency as :math:`P = [\\mathrm{Re}\\,\\hat w';\\ \\mathrm{Im}\\,\\hat w']`
((2F, C): one real product with the DFT matrix at its taps,
:func:`filter_spectrum_parts`); the per-frequency products are real products
of :math:`P` or its halves with the parts, their terms added as the complex
product says:

.. math::
    \\overline{\\hat w'}\\,\\hat x = (\\mathrm{Re}\\,\\hat w'\\, \\mathrm{Re}\\,\\hat x + \\mathrm{Im}\\,\\hat w'\\, \\mathrm{Im}\\,\\hat x)
    + i\\,(\\mathrm{Re}\\,\\hat w'\\, \\mathrm{Im}\\,\\hat x - \\mathrm{Im}\\,\\hat w'\\, \\mathrm{Re}\\,\\hat x)

(:func:`_conj_product`: :math:`P\\,\\mathrm{Re}\\,\\hat x` and :math:`P\\,\\mathrm{Im}\\,\\hat x`
hold the four terms), and in backward

.. math::
    \\begin{bmatrix} \\mathrm{Re}\\,\\widehat{dw'}^\\top \\\\ \\mathrm{Im}\\,\\widehat{dw'}^\\top \\end{bmatrix}
    = \\begin{bmatrix} \\mathrm{Re}\\,\\hat x & \\mathrm{Im}\\,\\hat x \\\\ \\mathrm{Im}\\,\\hat x & -\\mathrm{Re}\\,\\hat x \\end{bmatrix}
    \\begin{bmatrix} \\mathrm{Re}\\,\\widehat{dr}^\\top \\\\ \\mathrm{Im}\\,\\widehat{dr}^\\top \\end{bmatrix},
    \\qquad
    \\widehat{dx} = (\\mathrm{Re}\\,\\hat w'^\\top \\mathrm{Re}\\,\\widehat{dr} - \\mathrm{Im}\\,\\hat w'^\\top \\mathrm{Im}\\,\\widehat{dr})
    + i\\,(\\mathrm{Re}\\,\\hat w'^\\top \\mathrm{Im}\\,\\widehat{dr} + \\mathrm{Im}\\,\\hat w'^\\top \\mathrm{Re}\\,\\widehat{dr})

(:math:`\\widehat{dw'}^\\top = \\hat x\\,\\overline{\\widehat{dr}}^\\top`; the upstream gradient's
parts side by side, :math:`[\\mathrm{Re}\\,\\widehat{dr} \\;\\; \\mathrm{Im}\\,\\widehat{dr}]`, serve both
products). No conjugated or stacked copy of the filter's spectrum is made
(it is the largest array of the late layers: 256 x 128 per frequency in
TinyNet's conv5); the stacks run over the input and upstream sides, and the
filter gradient is read back from its stacked parts directly
(:func:`filter_gradient`). Why matrices and not FFTs: on axes this short a
product with the DFT matrix runs on the CPU's widest vector units (BLAS),
where an FFT library's strided lines did not, and it transforms only the
rows and columns that hold data and computes only those that are kept.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from .. import _ops, _validate, backend


class Cache(NamedTuple):
    """What :func:`backward` needs: the spectra of forward (no transform is repeated)."""

    x_parts: object          # (LH, 2, LW//2+1, C, N) real: Re, Im of the DFT of x, zero-extended to (LH, LW)
    w_parts: object          # (LH, LW//2+1, 2F, C) real: [Re; Im] of the DFT of the placed filter w'
    lengths: tuple           # (LH, LW)
    x_shape: tuple
    kernel: tuple            # (KH, KW)
    has_b: bool
    stride: int
    padding: int
    input_grad: bool         # False: no dx
    output: _validate.Output


def transform_lengths(x_shape, kernel, stride: int, padding: int) -> tuple:
    """``(LH, LW)``: per spatial axis the shortest length that makes the circular correlation exact.

    Along an axis of size H with kernel K, padding P and stride s the
    stride-1 outputs ``0 .. s (O - 1)`` read ``x[p + i - P]``; a wrapped index
    must land on an added zero (``L >= H + P``), the filter taps must not
    overlap (``L >= K``) and every output must fit (``L >= s (O - 1) + 1``).
    The transforms are products with DFT matrices, which take any length, so
    no rounding up to a length an FFT likes.

    >>> transform_lengths((64, 16, 32, 32), (5, 5), 1, 2)       # TinyNet's conv2: 34 x 34, not the padded 36
    (34, 34)
    """
    lengths = []
    for size, k in zip(x_shape[2:], kernel):
        out = _ops.window_output_size(size, k, stride, padding)
        lengths.append(max(size + padding, k, stride * (out - 1) + 1))
    return tuple(lengths)


def _channels_last(xp, a):
    """(N, C, H, W) -> (H, W, C, N), a view: spatial axes first for the transforms, the batch last."""
    return xp.permute_dims(a, (2, 3, 1, 0))


def input_spectrum(x, lengths):
    """(N, C, H, W) -> (LH, LW//2+1, C, N) complex: the 2-D DFT of ``x`` zero-extended to ``lengths`` (the
    half spectrum of ``rfftn``), assembled from the parts :func:`_spectrum` gives (which the layer uses)."""
    xp = backend.namespace(x)
    parts = _spectrum(_channels_last(xp, x), lengths)
    return _ops.complex_from_parts(parts[:, 0, ...], parts[:, 1, ...])


def _spectrum(planes, lengths, positions=None):
    """(PH, PW, K, N) real -> (LH, 2, LW//2+1, K, N) parts: the half-spectrum DFT of the (LH, LW) planes that
    hold ``planes`` at ``positions`` (two ranges, rows and columns; default the first PH and PW) and zeros
    elsewhere.

    Along W one real product with the (2 (LW//2+1), PW) matrix :math:`[\\cos;\\ -\\sin]` of the columns
    (:func:`_host_real_dft`), per row; along H one product with the real block form of the (LH, PH) DFT
    matrix of the rows (:func:`_host_dft_block`), the parts interleaved per row, which stacks them per
    frequency. The first reshape gathers the planes into (PH, PW, K N) order (a copy when they are a view
    of a batch-last array, as the layers pass them).
    """
    xp = backend.namespace(planes)
    ph, pw, k, n = planes.shape
    rows, columns = positions or (range(ph), range(pw))
    lw2 = lengths[1] // 2 + 1
    along_w = _placed(_host_real_dft, lengths[1], _key(columns), False, like=planes)    # (2 LW2, PW)
    lines = along_w @ xp.reshape(planes, (ph, pw, k * n))                               # (PH, 2 LW2, K N)
    along_h = _placed(_host_dft_block, lengths[0], _key(rows), False, like=planes)      # (2 LH, 2 PH)
    spectrum = along_h @ xp.reshape(lines, (2 * ph, lw2 * k * n))                       # (2 LH, LW2 K N)
    return xp.reshape(spectrum, (lengths[0], 2, lw2, k, n))


def _key(positions: range) -> tuple:
    """A range's ``(start, stop, step)``: a DFT matrix's memoisation key."""
    return positions.start, positions.stop, positions.step


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


@functools.lru_cache(maxsize=64)
def _host_dft_block(length: int, positions: tuple, inverse: bool, dtype: str):
    """The DFT matrix of one axis at ``range(*positions)`` in real block form, computed in float64, rounded to
    ``dtype``; read-only, memoised.

    The complex matrix :math:`E` is (L, P) :math:`e^{-2\\pi i k p / L}` (forward) or (P, L)
    :math:`e^{2\\pi i p k / L} / L` (inverse); its block form has each entry as the 2 x 2 real matrix
    :math:`\\begin{bmatrix} \\mathrm{Re} & -\\mathrm{Im} \\\\ \\mathrm{Im} & \\mathrm{Re} \\end{bmatrix}`, rows and
    columns interleaved, so that it maps parts stacked per row (Re, Im of row 0, Re, Im of row 1, ...)
    to parts stacked per row.

    >>> _host_dft_block(2, (0, 2, 1), False, "float64").tolist()       # E = [[1, 1], [1, -1]]
    [[1.0, -0.0, 1.0, -0.0], [0.0, 1.0, 0.0, 1.0], [1.0, -0.0, -1.0, -0.0], [0.0, 1.0, 0.0, -1.0]]
    """
    turns = np.outer(np.arange(*positions), np.arange(length))              # (P, L): p k
    e = roots_of_unity(turns, length) / length if inverse else roots_of_unity(-turns, length).T
    block = np.empty((e.shape[0], 2, e.shape[1], 2))
    block[:, 0, :, 0], block[:, 0, :, 1] = e.real, -e.imag
    block[:, 1, :, 0], block[:, 1, :, 1] = e.imag, e.real
    block = block.reshape(2 * e.shape[0], 2 * e.shape[1]).astype(dtype)
    block.setflags(write=False)
    return block


@functools.lru_cache(maxsize=64)
def _host_real_dft(length: int, positions: tuple, inverse: bool, dtype: str):
    """The half-spectrum DFT of real lines of length ``L`` at ``range(*positions)``, real, computed in float64
    and rounded to ``dtype``; read-only, memoised.

    Forward, (2 (L//2+1), P): the rows :math:`\\cos(2\\pi k p / L)` above :math:`-\\sin(2\\pi k p / L)`,
    :math:`k = 0 .. L/2`: real and imaginary parts of the half spectrum, stacked. Inverse, (P, 2 (L//2+1)):
    :math:`x_p = \\frac{1}{L}\\sum_k c_k (\\mathrm{Re}\\,z_k \\cos - \\mathrm{Im}\\,z_k \\sin)(2\\pi k p / L)`, with
    :math:`c_k` = 2 for the columns that also stand for their mirror image (:math:`0 < k < L/2`) and 1
    for the others (:func:`_mirror_counts`): ``irfft`` at those positions (the imaginary parts of :math:`k = 0` and :math:`L/2`,
    which a real line's spectrum does not have, meet exact zeros).

    >>> _host_real_dft(4, (0, 4, 1), False, "float64").round(12).tolist()[:3]    # Re rows for k = 0, 1, 2
    [[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, -1.0, 0.0], [1.0, -1.0, 1.0, -1.0]]
    """
    e = roots_of_unity(np.outer(np.arange(*positions), np.arange(length // 2 + 1)), length)  # e^{2 pi i p k / L}
    if inverse:
        weight = _mirror_counts(length) / length
        matrix = np.concatenate([weight * e.real, -weight * e.imag], axis=1)
    else:  # e^{-2 pi i k p / L} = conj(e)
        matrix = np.concatenate([e.real.T, -e.imag.T], axis=0)
    matrix = np.ascontiguousarray(matrix).astype(dtype)
    matrix.setflags(write=False)
    return matrix


def _mirror_counts(length: int):
    """How many columns of the full spectrum each of the ``L//2+1`` half-spectrum columns stands for: 1 for
    :math:`k = 0` and :math:`k = L/2`, which are their own mirror images, 2 for the others (a real line's
    spectrum has :math:`\\hat a_{L-k} = \\overline{\\hat a_k}`).

    >>> _mirror_counts(4).tolist(), _mirror_counts(5).tolist()
    ([1.0, 2.0, 1.0], [1.0, 2.0, 2.0])
    """
    k = np.arange(length // 2 + 1)
    return np.where((k == 0) | (2 * k == length), 1.0, 2.0)


def _dft_parts(lengths, kernel, padding: int, like):
    """(2 LH (LW//2+1), KH KW) real: the DFT matrix of the placed filter, each frequency's real row above its
    imaginary one.

    ``E[(kh, kw), (i, j)] = exp(-2 pi i (kh (i - P) / LH + kw (j - P) / LW))``: the
    filter has only KH x KW taps, at :math:`(i - P) \\bmod L`, so one small
    product with this matrix is its half-spectrum DFT (no zero-filled L x L
    array is transformed). The taps are real, so
    :math:`E t = \\mathrm{Re}(E)\\, t + i\\, \\mathrm{Im}(E)\\, t`: stacked as
    ``[Re E; Im E]`` the two parts make one real product, half the arithmetic
    of a complex one and no complex copy of the taps; interleaved per
    frequency, the product is the per-frequency stack :func:`filter_spectrum_parts`
    returns. Placed like ``like`` in the real dtype of its precision.
    """
    return _placed(_host_dft_parts, tuple(lengths), tuple(kernel), padding, like=like)


def _placed(host_matrix, *key, like):
    """``host_matrix(*key, dtype)`` (a memoised host array) placed like ``like``, in its dtype."""
    xp = backend.namespace(like)
    dtype = "float32" if like.dtype == xp.float32 else "float64"
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
    weight = _mirror_counts(lengths[1]) / (lengths[0] * lengths[1])
    parts = _host_dft_parts(lengths, kernel, padding, "float64")              # rows: (frequency, Re/Im)
    row_weight = np.repeat(np.tile(weight, lengths[0]), 2)                    # the weight of each row's frequency
    inverse = np.ascontiguousarray((parts * row_weight[:, None]).T).astype(dtype)
    inverse.setflags(write=False)
    return inverse


def _image(xp, parts, lengths, rows, columns):
    """(LH, 2, LW//2+1, K, N) parts -> (N, K, rows, columns): the inverse DFT at the kept ``rows`` and
    ``columns`` only (two ranges), batch last in memory.

    Along H one product with the real block form of the inverse DFT matrix at those rows
    (:func:`_host_dft_block`), along W one with the inverse half-spectrum matrix at those columns
    (:func:`_host_real_dft`), per row; the rows and columns that the crop drops are never computed.
    """
    lh, _, lw2, k, n = parts.shape
    along_h = _placed(_host_dft_block, lengths[0], _key(rows), True, like=parts)        # (2 R, 2 LH)
    lines = along_h @ xp.reshape(parts, (2 * lh, lw2 * k * n))                          # (2 R, LW2 K N)
    along_w = _placed(_host_real_dft, lengths[1], _key(columns), True, like=parts)      # (Q, 2 LW2)
    image = along_w @ xp.reshape(lines, (along_h.shape[0] // 2, 2 * lw2, k * n))        # (R, Q, K N)
    image = xp.reshape(image, (image.shape[0], image.shape[1], k, n))
    return _ops.batch_last_layout(xp.permute_dims(image, (3, 2, 0, 1)))


def _output_positions(out_shape, stride):
    """The stride-1 positions that are outputs: ``0, s, ..., s (O - 1)`` along each spatial axis."""
    oh, ow = out_shape[2:]
    return range(0, stride * (oh - 1) + 1, stride), range(0, stride * (ow - 1) + 1, stride)


def _conj_product(w_parts, x_parts):
    """:math:`\\overline{\\hat w'}\\,\\hat x` per frequency, (LH, 2, LW2, F, N) parts, from the filter's parts
    (LH, LW2, 2F, C) and the input's (LH, 2, LW2, C, N): the real products :math:`P\\,\\mathrm{Re}\\,\\hat x`
    and :math:`P\\,\\mathrm{Im}\\,\\hat x` hold the four terms of the complex product."""
    f = w_parts.shape[-2] // 2
    on_re = w_parts @ x_parts[:, 0, ...]                                 # [Re w' Re x; Im w' Re x]: (LH, LW2, 2F, N)
    on_im = w_parts @ x_parts[:, 1, ...]                                 # [Re w' Im x; Im w' Im x]
    lh, _, lw2, _, n = x_parts.shape
    out = _ops.empty((lh, 2, lw2, f, n), like=x_parts)
    _ops.set_sum(out, (slice(None), 0, ...), on_re[..., :f, :], on_im[..., f:, :])                 # real parts
    return _ops.set_sum(out, (slice(None), 1, ...), on_im[..., :f, :], on_re[..., f:, :], subtract=True)


def forward(x, w, b, *, stride: int, padding: int, input_grad: bool):
    """:func:`refimpl.layers.conv2d.forward` by the convolution theorem; arguments checked there.
    Returns ``(out, Cache)``.

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
    lengths = transform_lengths(x.shape, kernel, stride, padding)
    x_parts = _spectrum(_channels_last(xp, x), lengths)          # (LH, 2, LW2, C, N)
    w_parts = filter_spectrum_parts(w, lengths, padding)          # (LH, LW2, 2F, C): [Re; Im] of w' hat
    r_parts = _conj_product(w_parts, x_parts)                     # conj(w' hat) @ x hat: (LH, 2, LW2, F, N)
    if b is not None:  # a constant b over the plane is L_H L_W b at frequency 0 and nothing elsewhere
        r_parts[0, 0, 0, ...] = r_parts[0, 0, 0, ...] + xp.reshape(b * (lengths[0] * lengths[1]), (-1, 1))
    n, _, h, wd = x.shape
    oh = _ops.window_output_size(h, kernel[0], stride, padding)
    ow = _ops.window_output_size(wd, kernel[1], stride, padding)
    out = _image(xp, r_parts, lengths, *_output_positions((n, w.shape[0], oh, ow), stride))
    cache = Cache(x_parts, w_parts, lengths, tuple(x.shape), kernel, b is not None, stride, padding,
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
    xp = backend.namespace(dout, cache.x_parts)
    n, _, h, wd = cache.x_shape
    f = dout.shape[1]
    # dr hat: dout at the output positions of the (LH, LW) plane, zero elsewhere; its parts side by side,
    # [Re dr | Im dr], for both products below: (LH, LW2, F, 2N)
    dr_parts = _spectrum(_channels_last(xp, dout), cache.lengths, _output_positions(dout.shape, cache.stride))
    dr_side = xp.concat([dr_parts[:, 0, ...], dr_parts[:, 1, ...]], axis=-1)
    # dw'^T = x hat conj(dr hat)^T, as [Re; Im] parts: [[Re x, Im x], [Im x, -Re x]] (LH, LW2, 2C, 2N)
    # @ [Re dr | Im dr]^T -> (LH, LW2, 2C, F); the stack and the product are temporaries
    re_x, im_x = cache.x_parts[:, 0, ...], cache.x_parts[:, 1, ...]
    c = re_x.shape[-2]
    x_stack = _ops.empty((*re_x.shape[:2], 2 * c, 2 * n), like=re_x)
    x_stack[..., :c, :n], x_stack[..., :c, n:], x_stack[..., c:, :n], x_stack[..., c:, n:] = re_x, im_x, im_x, -re_x
    dw = filter_gradient(x_stack @ xp.matrix_transpose(dr_side), cache.lengths, cache.kernel, cache.padding)
    del x_stack
    db = xp.sum(dout, axis=(0, 2, 3)) if cache.has_b else None
    if not cache.input_grad:
        return None, dw, db
    # dx hat = w' hat^T dr hat: Re(w')^T and Im(w')^T (LH, LW2, C, F) times [Re dr | Im dr] (LH, LW2, F, 2N)
    re_w, im_w = cache.w_parts[..., :f, :], cache.w_parts[..., f:, :]
    by_re = xp.matrix_transpose(re_w) @ dr_side                          # [Re w'^T Re dr | Re w'^T Im dr]
    by_im = xp.matrix_transpose(im_w) @ dr_side                          # [Im w'^T Re dr | Im w'^T Im dr]
    dx_parts = _ops.empty((by_re.shape[0], 2, *by_re.shape[1:3], n), like=by_re)
    _ops.set_sum(dx_parts, (slice(None), 0, ...), by_re[..., :n], by_im[..., n:], subtract=True)
    _ops.set_sum(dx_parts, (slice(None), 1, ...), by_re[..., n:], by_im[..., :n])
    dx = _image(xp, dx_parts, cache.lengths, range(h), range(wd))
    return dx, dw, db
