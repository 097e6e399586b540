"""The few kernels outside the Array API standard, dispatched per backend.

Each public function here has a fast NumPy path, a CuPy path, and a
pure-standard fallback (used for array_api_strict and any other namespace),
all computing the same thing; tests compare the paths with each other.
"""
from __future__ import annotations

from . import backend


def _kind(xp) -> str:
    """"numpy", "cupy" or "standard": which implementation serves ``xp``."""
    name = xp.__name__
    return name if name in ("numpy", "cupy") else "standard"
