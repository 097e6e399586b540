"""Argument checks for the generators (ValueError/TypeError naming the argument).

>>> check_int("n", 3, minimum=1)
3
>>> check_weights("class_weights", [1, 3], 2).tolist()
[0.25, 0.75]
>>> check_int("levels", 1, minimum=2)
Traceback (most recent call last):
...
ValueError: levels must be an integer >= 2, got 1
"""
from __future__ import annotations

import math
import numbers

import numpy as np


def check_int(name: str, value, *, minimum: int) -> int:
    """An integer (not bool) ``>= minimum``; returned as int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_range(name: str, value, *, high: float = 1.0) -> float:
    """A finite real number (not bool) in [0, high] (a probability by default); returned as float.

    >>> check_range("sd", float("inf"), high=float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: sd must be a finite number in [0, inf], got inf
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 <= value <= high):
        raise ValueError(f"{name} must be a finite number in [0, {high}], got {value}")
    return float(value)


def check_weights(name: str, weights, length: int) -> np.ndarray:
    """``length`` non-negative finite weights with a positive finite sum, normalised to sum 1.

    >>> check_weights("class_weights", [1e308, 1e308], 2)
    Traceback (most recent call last):
    ...
    ValueError: class_weights must have a finite sum (scale them down), got [1e+308, 1e+308]
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (length,):
        raise ValueError(f"{name} must have {length} entries (one per class), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError(f"{name} must be finite, >= 0 and not all 0, got {w.tolist()}")
    with np.errstate(over="ignore"):
        total = w.sum()
    if not np.isfinite(total):
        raise ValueError(f"{name} must have a finite sum (scale them down), got {w.tolist()}")
    return w / total


def check_seed(seed):
    """A seed for ``numpy.random.default_rng``: an integer >= 0 (not bool) or a Generator, returned as is.

    Bools are refused (``seed=True`` is a flag set by mistake, not seed 1), and so is None
    (fresh entropy: data that no one can draw again).

    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    ValueError: seed must be a non-negative integer or a numpy.random.Generator, got -1
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative integer or a numpy.random.Generator, "
                        f"got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer or a numpy.random.Generator, got {seed}")
    return seed

