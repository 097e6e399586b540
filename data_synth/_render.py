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
>>> smooth_noise(np.random.default_rng(0), 2, 16, 0.3).std(axis=(1, 2)).round(3).tolist()
[1.0, 1.0]
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
    """Stationary smooth random fields, (n, size, size) float32, mean 0 and sd 1 per image.

    A sum of Gaussian bumps with i.i.d. normal weights on a lattice of spacing
    ``scale`` (rows) by ``scale_x`` (columns, default ``scale``), i.e. white
    noise smoothed by a separable Gaussian of those widths. Two small matmuls
    per image instead of an FFT: O(n size^2 m) with m ~ 2 / scale lattice points.
    """
    by = _gaussian_basis(size, scale)
    bx = _gaussian_basis(size, scale if scale_x is None else scale_x)
    weights = rng.standard_normal((n, by.shape[1], bx.shape[1])).astype(F32)
    field = by @ weights @ bx.T                                    # (n, H, W)
    field -= field.mean(axis=(1, 2), keepdims=True)
    return field / field.std(axis=(1, 2), keepdims=True)


def to_images(canvas):
    """(N, H, W) canvas -> float32 (N, 1, H, W) clipped to [0, 1]."""
    return np.clip(canvas, 0.0, 1.0).astype(F32)[:, None]
