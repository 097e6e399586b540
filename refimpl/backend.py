"""Array backends: one code path for NumPy, CuPy and any Array-API namespace.

Every op in refimpl starts with ``xp = backend.namespace(*arrays)`` and then
uses only functions of the Python Array API standard through ``xp``; the few
kernels outside the standard live in :mod:`refimpl._ops`. This module is the
only place that imports CuPy, and it does so lazily: ``import cupy`` succeeds
on machines without a CUDA driver, so availability is decided by asking the
runtime for a device inside ``try/except``.

Random numbers are always drawn on the host from a seeded
:class:`numpy.random.Generator` (in float64) and then moved to the target
device and dtype, so one seed gives the same numbers on every backend, and a
float32 draw is the float64 draw rounded.

>>> import numpy as np
>>> x = np.ones((2, 3))
>>> namespace(x) is np
True
>>> y = asarray(np.arange(3.0), like=x)
>>> to_numpy(y).tolist()
[0.0, 1.0, 2.0]
>>> normal(rng(0), (2,), like=x).round(4).tolist()
[0.1257, -0.1321]
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

import numpy as np

#: dtype used for training by default.
TRAIN_DTYPE = "float32"
#: dtype of gold data and gradient checks.
CHECK_DTYPE = "float64"

_SCALARS = (bool, int, float, complex)


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device; never raises."""
    try:
        cupy = importlib.import_module("cupy")
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError, driver errors, ...
        return False


def cupy() -> ModuleType:
    """The CuPy module; raises RuntimeError with the reason when it is unusable."""
    if not cupy_available():
        raise RuntimeError(
            "CuPy with a CUDA device is not available; install the 'gpu' extra "
            "(pip install 'refimpl[gpu]') on a machine with an NVIDIA driver"
        )
    return importlib.import_module("cupy")


def _is_cupy_array(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def _is_strict_array(a) -> bool:
    return type(a).__module__.split(".")[0] == "array_api_strict"


def namespace(*arrays) -> ModuleType:
    """Return the array namespace shared by ``arrays``.

    ``None`` and Python scalars are ignored (they combine with any namespace).
    NumPy arrays give :mod:`numpy` itself (NumPy >= 2.1 implements the
    standard in its main namespace), CuPy arrays give :mod:`cupy`, and any
    other array gives ``a.__array_namespace__()``.

    Raises
    ------
    TypeError
        If an argument is not an array, or the arrays come from different
        namespaces (a silent host/device mix is exactly what we forbid).
    """
    found = None
    for a in arrays:
        if a is None or isinstance(a, _SCALARS):
            continue
        if isinstance(a, (np.ndarray, np.generic)):
            ns = np
        elif _is_cupy_array(a):
            ns = sys.modules["cupy"]
        elif hasattr(a, "__array_namespace__"):
            ns = a.__array_namespace__()
        else:
            raise TypeError(f"expected an array, got {type(a).__name__}")
        if found is None:
            found = ns
        elif ns is not found:
            raise TypeError(
                f"arrays from different namespaces: {found.__name__} and {ns.__name__}; "
                "move them to one backend first (backend.asarray)"
            )
    return np if found is None else found


def device(a):
    """The device an array lives on (``"cpu"`` for NumPy)."""
    return getattr(a, "device", "cpu")


def asarray(a, *, like=None, xp: ModuleType | None = None, dev=None, dtype=None):
    """Move host data ``a`` to the namespace and device of ``like`` (or ``xp``/``dev``).

    ``dtype`` is a dtype object of the target namespace or its name
    (``"float32"``); by default the dtype of ``a`` is kept.
    """
    if like is not None:
        xp, dev = namespace(like), device(like)
    xp = np if xp is None else xp
    if isinstance(dtype, str):
        dtype = getattr(xp, dtype)
    if xp is np:
        return np.asarray(a, dtype=dtype)
    if xp.__name__ == "cupy":
        if _is_cupy_array(a) and dev is None:
            return xp.asarray(a, dtype=dtype)
        a = to_numpy(a)
        if dev is None or dev == "cpu":
            return xp.asarray(a, dtype=dtype)
        with dev:
            return xp.asarray(a, dtype=dtype)
    if not isinstance(a, (np.ndarray, np.generic) + _SCALARS) and not isinstance(a, list):
        a = to_numpy(a)
    if dev is None:
        return xp.asarray(a, dtype=dtype)
    return xp.asarray(a, dtype=dtype, device=dev)


def full(shape, value, *, xp: ModuleType, dev=None, dtype):
    """An array of ``shape`` holding the Python number ``value``, made on the device itself.

    Unlike :func:`asarray` of a number, nothing is copied from the host: the
    value is written by a fill kernel, so this may run inside a CUDA graph
    capture (:mod:`refimpl.graph`). ``dtype`` is a dtype of ``xp`` or its name.

    >>> full((), 1.0, xp=np, dtype="float32")
    array(1., dtype=float32)
    """
    if isinstance(dtype, str):
        dtype = getattr(xp, dtype)
    if xp is np or dev is None or dev == "cpu":
        return xp.full(shape, value, dtype=dtype)
    if xp.__name__ == "cupy":
        with dev:
            return xp.full(shape, value, dtype=dtype)
    return xp.full(shape, value, dtype=dtype, device=dev)


def to_numpy(a) -> np.ndarray:
    """Copy any array (NumPy, CuPy, array_api_strict on any device) to a NumPy array."""
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, (np.generic,) + _SCALARS):
        return np.asarray(a)
    if _is_cupy_array(a):
        return a.get()
    if _is_strict_array(a):
        strict = a.__array_namespace__()
        return np.asarray(a.to_device(strict.Device("CPU_DEVICE")))
    return np.asarray(a)


def rng(seed) -> np.random.Generator:
    """Host-side seeded generator: every random draw in refimpl comes from one."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def normal(gen: np.random.Generator, shape, *, like=None, xp=None, dev=None, dtype=None, scale=1.0):
    """Standard normal draws (times ``scale``) made on the host in float64, then moved."""
    host = gen.standard_normal(shape) * scale
    dtype = dtype if dtype is not None else (like.dtype if like is not None else None)
    return asarray(host, like=like, xp=xp, dev=dev, dtype=dtype)


def uniform(gen: np.random.Generator, shape, *, low=0.0, high=1.0, like=None, xp=None, dev=None, dtype=None):
    """Uniform draws on ``[low, high)`` made on the host in float64, then moved."""
    host = gen.uniform(low, high, size=shape)
    dtype = dtype if dtype is not None else (like.dtype if like is not None else None)
    return asarray(host, like=like, xp=xp, dev=dev, dtype=dtype)
