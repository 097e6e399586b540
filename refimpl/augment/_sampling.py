"""Per-image resampling operators shared by the transforms (private).

Each geometric or smoothing transform is written as linear weights built on the
device from per-image parameters: separable ones (crop-and-resize, Gaussian
blur) as one (N, out, in) matrix per axis applied with two batched matmuls,
rotation as four bilinear gathers from the flattened batch. Coordinates follow
the pixel-centre convention: pixel ``k`` covers ``[k, k + 1)`` and its centre
is ``k + 0.5``; samples outside the image take the nearest border pixel.
"""
from __future__ import annotations

import math

from .. import _validate, backend
from .._validate import check_array


def grid(like, n: int):
    """``[0., 1., ..., n - 1.]`` in float64 on the device of ``like``.

    Built from a host list so that no ``device=`` keyword is needed.
    """
    return backend.asarray([float(i) for i in range(n)], like=like, dtype="float64")


def uniform(gen, shape, low: float, high: float, like):
    """Host float64 draws on ``[low, high)`` moved to the device of ``like``."""
    return backend.uniform(gen, shape, low=low, high=high, like=like, dtype="float64")


def applied(gen, n: int, p: float, like):
    """(N,) bool: True for the images a transform applies to (each with probability p)."""
    return uniform(gen, (n,), 0.0, 1.0, like) < p


def clip01(x):
    """Clamp to the image range [0, 1]."""
    xp = backend.namespace(x)
    return xp.clip(x, 0.0, 1.0)


def per_image(v, x):
    """(N,) float64 parameters as (N, 1, 1, 1) in the dtype of the images ``x``."""
    xp = backend.namespace(x)
    return xp.reshape(xp.astype(v, x.dtype), (-1, 1, 1, 1))


def crop_matrix(start, length, n_in: int, n_out: int):
    """(N, n_out, n_in) bilinear weights that sample ``[start, start + length)`` at n_out points.

    Output pixel ``j`` of image ``b`` reads the input at pixel-index coordinate
    ``start_b + (j + 1/2) length_b / n_out - 1/2`` (the centre of the j-th of
    n_out equal cells), clamped to ``[0, n_in - 1]``. With ``start = 0`` and
    ``length = n_in = n_out`` the coordinates are the integers themselves and
    the matrix is exactly the identity.
    """
    xp = backend.namespace(start)
    j = grid(start, n_out)
    pos = start[:, None] + (j[None, :] + 0.5) * (length[:, None] / n_out) - 0.5  # (N, n_out)
    pos = xp.clip(pos, 0.0, float(n_in - 1))
    lo = xp.floor(pos)
    frac = pos - lo
    hi = xp.minimum(lo + 1.0, float(n_in - 1))
    k = grid(start, n_in)[None, None, :]  # (1, 1, n_in)
    return (xp.where(k == lo[..., None], (1.0 - frac)[..., None], 0.0)
            + xp.where(k == hi[..., None], frac[..., None], 0.0))


def blur_matrix(sigma, n: int, radius: int):
    """(N, n, n) matrix of a 1-D Gaussian filter with per-image std ``sigma`` (N,).

    Taps at offsets ``-radius..radius``, weights ``exp(-d^2 / (2 sigma^2))``
    normalised to sum 1, the border replicated. ``sigma = 0`` gives the unit
    impulse, so the matrix is exactly the identity (no division by zero: the
    exponent uses a dummy denominator there and is discarded).
    """
    xp = backend.namespace(sigma)
    positive = sigma > 0
    denom = xp.where(positive, 2.0 * sigma * sigma, 1.0)
    offsets = range(-radius, radius + 1)
    taps = [xp.where(positive, xp.exp(-float(d * d) / denom), 1.0 if d == 0 else 0.0)
            for d in offsets]  # each (N,)
    total = sum(taps)
    rows = grid(sigma, n)[:, None]  # (n, 1) output index
    cols = grid(sigma, n)[None, :]  # (1, n) input index
    out = 0.0
    for d, tap in zip(offsets, taps):  # loop over kernel offsets, not images
        source = xp.clip(rows + float(d), 0.0, float(n - 1))
        hit = xp.astype(cols == source, xp.float64)  # (n, n) one-hot rows
        out = out + hit[None, :, :] * (tap / total)[:, None, None]
    return out


def apply_separable(x, rows, cols):
    """``out_b = rows_b @ x_b @ cols_b^T`` for every image and channel.

    Shapes: ``x`` (N, C, H, W), ``rows`` (N, H', H), ``cols`` (N, W', W) ->
    (N, C, H', W').
    """
    xp = backend.namespace(x)
    rows = xp.astype(rows, x.dtype)[:, None, :, :]  # (N, 1, H', H)
    cols_t = xp.permute_dims(xp.astype(cols, x.dtype), (0, 2, 1))[:, None, :, :]  # (N, 1, W, W')
    return xp.matmul(xp.matmul(rows, x), cols_t)  # (N, C, H', W')


def rotate_bilinear(x, theta):
    """Rotate every image about its centre by its angle ``theta`` (N,) in radians.

    Output pixel ``p`` reads the input at ``c + R(theta) (p - c)`` with
    ``R = [[cos, -sin], [sin, cos]]`` acting on (row, column) coordinates and
    ``c`` the image centre, bilinearly, border replicated. ``theta = 0`` reads
    every pixel at its own integer position: exactly the identity.
    Shapes: ``x`` (N, C, H, W) -> (N, C, H, W).
    """
    xp = backend.namespace(x)
    n, c, height, width = x.shape
    cy, cx = (height - 1) / 2, (width - 1) / 2
    cos = xp.cos(theta)[:, None, None]  # (N, 1, 1)
    sin = xp.sin(theta)[:, None, None]
    dy = (grid(theta, height) - cy)[None, :, None]  # (1, H, 1)
    dx = (grid(theta, width) - cx)[None, None, :]  # (1, 1, W)
    sy = xp.clip(cos * dy - sin * dx + cy, 0.0, float(height - 1))  # (N, H, W)
    sx = xp.clip(sin * dy + cos * dx + cx, 0.0, float(width - 1))
    y0, x0 = xp.floor(sy), xp.floor(sx)
    fy, fx = sy - y0, sx - x0
    y1 = xp.minimum(y0 + 1.0, float(height - 1))
    x1 = xp.minimum(x0 + 1.0, float(width - 1))
    flat = xp.reshape(x, (-1,))  # (N*C*H*W,)
    plane = xp.reshape(grid(theta, n * c) * float(height * width), (n, c, 1, 1))

    def gather(yy, xx):  # (N, H, W) float coordinates -> (N, C, H, W) values
        index = xp.astype(plane + (yy * float(width) + xx)[:, None, :, :], xp.int64)
        return xp.reshape(xp.take(flat, xp.reshape(index, (-1,))), (n, c, height, width))

    def weight(w):  # (N, H, W) float64 -> (N, 1, H, W) in the image dtype
        return xp.astype(w, x.dtype)[:, None, :, :]

    return (weight((1.0 - fy) * (1.0 - fx)) * gather(y0, x0)
            + weight((1.0 - fy) * fx) * gather(y0, x1)
            + weight(fy * (1.0 - fx)) * gather(y1, x0)
            + weight(fy * fx) * gather(y1, x1))


def legendre_rows(t, degree: int):
    """Legendre polynomials ``P_0..P_degree`` at points ``t``, by Bonnet's recurrence.

    .. math:: (k + 1) P_{k+1}(t) = (2k + 1)\\, t\\, P_k(t) - k\\, P_{k-1}(t)
    """
    rows = [t * 0.0 + 1.0, t]
    for k in range(1, degree):
        rows.append(((2 * k + 1) * t * rows[k] - k * rows[k - 1]) / (k + 1))
    return rows[: degree + 1]


def pixel_centres(like, n: int):
    """Pixel centres of an n-pixel axis mapped to (-1, 1): ``(2k + 1) / n - 1``."""
    return (2.0 * grid(like, n) + 1.0) / float(n) - 1.0


def check_range(name: str, pair, *, high: float = math.inf, positive: bool = False):
    """``(low, high)`` numbers with ``0 <= low <= high <= high-bound`` (``> 0`` if positive)."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{name} must be a pair of numbers (low, high), got {pair!r}")
    lo, hi = (_validate.real(f"{name}[{k}]", v) for k, v in enumerate(pair))
    if not (0.0 <= lo <= hi <= high) or (positive and lo <= 0.0):
        bound = "0 <" if positive else "0 <="
        raise ValueError(f"{name} must satisfy {bound} low <= high <= {high}, got {pair!r}")
    return lo, hi


def check_probability(name: str, p) -> float:
    """A number in [0, 1]."""
    v = _validate.real(name, p)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return v


def check_size(size) -> tuple[int, int]:
    """An output size: one positive int (square) or a pair ``(height, width)``."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair):
        raise ValueError(f"size must be a positive int or a pair of positive ints, got {size!r}")
    return pair


def check_images(x):
    """Images (N, C, H, W), real floating, finite, within [0, 1]; returns the namespace."""
    check_array("x", x, ndim=4)
    xp = backend.namespace(x)
    if not bool(xp.all((x >= 0.0) & (x <= 1.0))):
        raise ValueError("x must hold images with values in [0, 1]")
    return xp
