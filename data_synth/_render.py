"""Vectorised drawing primitives shared by the generators.

Every image is drawn on the same pixel grid: coordinates in [-1, 1] at pixel
centres, ``y`` pointing down (row index), ``x`` to the right (column index).
Per-image parameters are arrays of shape (N, 1, 1) (see :func:`col`), so one
expression draws all N images at once by broadcasting against the (H, W)
grid. Drawing is done in float32: NumPy's float32 transcendental functions are
several times faster than float64 ones, and the images are float32 anyway.

>>> yy, xx = grid(4)
>>> xx[0].tolist()
[-0.75, -0.25, 0.25, 0.75]
>>> round(float(soft_step(np.float32(0.0), 0.1)), 3)
0.5
>>> field = smooth_noise(np.random.default_rng(0), 4000, 16, 0.5)
>>> round(float(field[:, 8, 8].std()), 1)   # unit variance at the centre
1.0
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def grid(size: int):
    """Pixel-centre coordinates ``(yy, xx)``, each (size, size) float32, in [-1, 1]."""
    c = ((np.arange(size) + 0.5) * (2.0 / size) - 1.0).astype(F32)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return yy, xx


def col(values, dtype=F32):
    """A length-N vector as (N, 1, 1) float32 (or ``dtype``): one value per image."""
    return np.asarray(values, dtype=dtype)[:, None, None]


def radius(dy, dx):
    """Euclidean length ``sqrt(dy^2 + dx^2)`` (np.hypot is several times slower in float32)."""
    return np.sqrt(dy * dy + dx * dx)


def soft_step(signed_distance, width):
    """Smooth indicator of ``signed_distance > 0``: 0.5 at 0, logistic edge ``width`` wide.

    ``expit(d / w)`` written as ``(1 + tanh(d / 2w)) / 2`` (the same function;
    tanh is faster in float32). A soft edge rather than a hard threshold, so
    that the blur of a margin is a parameter and small shapes do not alias.
    """
    return F32(0.5) + F32(0.5) * np.tanh(signed_distance / (F32(2) * width))


def _gaussian_basis(size: int, scale: float):
    """(size, m) bumps ``exp(-(x - c_j)^2 / 2 scale^2)`` at centres ``c_j`` spaced ``scale`` apart."""
    centres = np.arange(-1.0 - 2 * scale, 1.0 + 2 * scale + 1e-9, scale)
    x = (np.arange(size) + 0.5) * (2.0 / size) - 1.0
    return np.exp(-0.5 * ((x[:, None] - centres[None, :]) / scale) ** 2).astype(F32)


def smooth_noise(rng: np.random.Generator, n: int, size: int, scale: float, scale_x: float | None = None):
    """Stationary smooth random fields, (n, size, size) float32, mean 0 and variance 1.

    A sum of Gaussian bumps with i.i.d. standard normal weights on a lattice of
    spacing ``scale`` (rows) by ``scale_x`` (columns, default ``scale``), that
    is white noise smoothed by a separable Gaussian of those widths, divided
    by its standard deviation at the centre of the image. Two matrix products
    instead of an FFT: O(n size^2 m) work for m ~ 2 / scale lattice points.
    """
    by = _gaussian_basis(size, scale)                                       # (H, my)
    bx = _gaussian_basis(size, scale if scale_x is None else scale_x)       # (W, mx)
    my, mx = by.shape[1], bx.shape[1]
    weights = rng.standard_normal((n * my, mx), dtype=F32)
    rows = (weights @ bx.T).reshape(n, my, size)                            # (n, my, W)
    field = by @ rows                                                       # (n, H, W)
    sd = np.sqrt((by[size // 2] ** 2).sum() * (bx[size // 2] ** 2).sum())
    return field / F32(sd)


#: Angular resolution of :func:`angle_bins`: finer than the pixels along any contour
#: that fits in a 64 x 64 image (perimeter < 2 pi 32 = 201 pixels).
ANGLE_BINS = 360


def angle_bins(dy, dx):
    """Index in 0..ANGLE_BINS-1 of the polar angle of each pixel, without arctan2.

    Bins are uniform in the "diamond angle" ``t = dy / (|dx| + |dy|)`` mapped
    to ``t`` (dx >= 0) or ``2 - t`` (dx < 0), a monotone stand-in for the
    angle on [-1, 3) that costs one division; :func:`bin_angles` gives the
    true angle of each bin. A per-image function of the angle tabulated at
    those angles, (N, ANGLE_BINS), is then read at every pixel by one gather
    (:func:`read_angular`), instead of evaluating it per pixel.
    """
    t = dy / np.maximum(np.abs(dx) + np.abs(dy), F32(1e-6))  # floor: the centre pixel may be 0
    diamond = np.where(dx >= 0, t, 2 - t)                       # [-1, 3), increasing with angle
    return np.minimum(((diamond + 1) * (ANGLE_BINS / 4)).astype(np.intp), ANGLE_BINS - 1)


def bin_angles():
    """Polar angle (radians, float32) at the centre of each bin of :func:`angle_bins`."""
    diamond = (np.arange(ANGLE_BINS) + 0.5) * (4 / ANGLE_BINS) - 1
    t = np.where(diamond <= 1, diamond, 2 - diamond)
    return np.arctan2(t, np.where(diamond <= 1, 1.0, -1.0) * (1 - np.abs(t))).astype(F32)


def read_angular(table, bins):
    """Values of per-image angular tables (N, ANGLE_BINS) at pixel bins (N, H, W)."""
    n = bins.shape[0]
    return np.take_along_axis(table, bins.reshape(n, -1), axis=1).reshape(bins.shape)


def to_images(canvas):
    """(N, H, W) canvas -> float32 (N, 1, H, W) clipped to [0, 1]."""
    return np.clip(canvas, 0.0, 1.0).astype(F32)[:, None]
