"""Argument checks shared by layers and losses.

Every check raises ``ValueError`` (bad value or shape) or ``TypeError`` (not an
array, wrong kind of dtype) with a message that names the argument and says
what was expected. Nothing is clipped, cast or dropped silently.

>>> import numpy as np
>>> check_positive("temperature", 0.0)
Traceback (most recent call last):
...
ValueError: temperature must be a finite number > 0, got 0.0
>>> check_array("z", np.zeros((3, 2)), ndim=3)
Traceback (most recent call last):
...
ValueError: z must have 3 dimensions, got shape (3, 2)
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import NamedTuple

import numpy as np

from . import backend


def namespace(**arrays):
    """The array namespace shared by the named arguments (``None`` skipped), naming any that is not an array.

    >>> import numpy as np
    >>> namespace(z=np.zeros(2), labels=[0, 1])
    Traceback (most recent call last):
    ...
    TypeError: labels must be an array (NumPy, CuPy or another Array-API library), got list: convert it with numpy.asarray
    """
    for name, a in arrays.items():
        if a is not None and not _is_array(a):
            kind = f"{type(a).__module__}.{type(a).__name__}" if type(a).__module__ != "builtins" else type(a).__name__
            hint = ("convert it with tensor.detach().cpu().numpy(), or share GPU memory with cupy.from_dlpack"
                    if kind.startswith("torch.") else "convert it with numpy.asarray")
            raise TypeError(f"{name} must be an array (NumPy, CuPy or another Array-API library), got {kind}: {hint}")
    try:
        return backend.namespace(*arrays.values())
    except TypeError as e:
        given = ", ".join(name for name, a in arrays.items() if a is not None)
        raise TypeError(f"{given}: {e}") from None


def _is_array(a) -> bool:
    return hasattr(a, "__array_namespace__") or type(a).__module__.split(".")[0] in ("numpy", "cupy")


def check_array(name: str, x, *, ndim=None, shape=None, floating: bool = True, finite: bool = True,
                allow_empty: bool = False, real: bool = False):
    """Check that ``x`` is an array with the given number of dimensions / shape.

    ``shape`` may hold ``None`` for free axes. ``floating`` requires float32 or
    float64 (the dtype rule: every floating input of a layer or loss is one of
    the two, all of them the same, checked with :func:`check_same_dtype`;
    nothing is promoted); ``finite`` rejects NaN and infinity; an axis of length
    0 is refused unless ``allow_empty`` (one reduction: a
    device sync on GPUs, which we accept for input validation). ``real``
    (labels, targets, indices) requires a bool, integer or real floating
    dtype: complex, object and string labels are refused, not compared.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    xp = backend.namespace(x)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        if x.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, x.shape)):
            want = ", ".join("*" if s is None else str(s) for s in shape)
            want = f"({want},)" if len(shape) == 1 else f"({want})"
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if not allow_empty and any(s == 0 for s in x.shape):
        raise ValueError(f"{name} must not be empty (an axis of length 0), got shape {tuple(x.shape)}")
    if real and not xp.isdtype(x.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"{name} must have a bool, integer or real floating dtype, got {x.dtype}")
    if floating and not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")
    if floating and x.dtype not in (xp.float32, xp.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype} (too few bits for the "
                        "stabilisers, e.g. the 1e-12 norm floor; compute in float32)")
    if finite and xp.isdtype(x.dtype, ("real floating", "complex floating")) and not all_finite(x):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def all_finite(x) -> bool:
    """True when no entry of the array ``x`` is NaN or infinite (a device sync on GPUs).

    >>> import numpy as np
    >>> all_finite(np.array([1.0, np.inf]))
    False
    """
    xp = backend.namespace(x)
    return bool(xp.all(xp.isfinite(x)))


def real(name: str, value) -> float:
    """A real number (Python or NumPy int/float, not bool, str or array) as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_positive(name: str, value) -> float:
    """A finite real number ``> 0``; returned as float.

    >>> check_positive("temperature", "0.1")
    Traceback (most recent call last):
    ...
    TypeError: temperature must be a real number, got str '0.1'
    """
    v = real(name, value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_nonnegative(name: str, value) -> float:
    """A finite real number ``>= 0``; returned as float."""
    v = real(name, value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_choice(name: str, value, choices) -> str:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_same_length(name: str, x, ref_name: str, n: int):
    """``x`` must have ``n`` rows, as ``ref_name`` has."""
    if x.shape[0] != n:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {n} (one per row of {ref_name})")
    return x


def check_unit_interval(name: str, x, *, binary: bool = False):
    """A 1-D array of labels or probabilities: values in [0, 1], or in {0, 1} when ``binary``.

    Bool, integer and real floating dtypes are accepted (NaN and inf rejected).

    >>> import numpy as np
    >>> check_unit_interval("same", np.array([0, 2]), binary=True)
    Traceback (most recent call last):
    ...
    ValueError: same must hold only 0 or 1, got values outside {0, 1}
    """
    check_array(name, x, ndim=1, floating=False, real=True)
    xp = backend.namespace(x)
    if xp.isdtype(x.dtype, "bool"):
        return x
    if binary:
        if not bool(xp.all((x == 0) | (x == 1))):
            raise ValueError(f"{name} must hold only 0 or 1, got values outside {{0, 1}}")
    elif not bool(xp.all((x >= 0) & (x <= 1))):
        raise ValueError(f"{name} must hold values in [0, 1], got values outside [0, 1]")
    return x


def check_integer(name: str, value, *, minimum: int = 0) -> int:
    """A Python (or NumPy) integer ``>= minimum``, bools excluded; returned as int.

    >>> check_integer("stride", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: stride must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_same_dtype(name: str, x, ref_name: str, ref):
    """``x`` must have the dtype of ``ref`` (no silent promotion between float32 and float64).

    >>> import numpy as np
    >>> check_same_dtype("w", np.zeros(2, dtype=np.float32), "x", np.zeros(2))
    Traceback (most recent call last):
    ...
    TypeError: w has dtype float32, expected the dtype of x (float64)
    """
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected the dtype of {ref_name} ({ref.dtype})")
    return x


def check_bool(name: str, value) -> bool:
    """A Python ``bool`` (not 0/1, not a NumPy bool: a flag, not a number); returned as is.

    >>> check_bool("input_grad", 0)
    Traceback (most recent call last):
    ...
    TypeError: input_grad must be a bool, got int
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


class Output(NamedTuple):
    """What a backward pass needs to check ``dout``: its forward output's shape, dtype, namespace, device."""

    shape: tuple
    dtype: object
    xp: ModuleType
    device: object


def output_of(out, shape=None) -> Output:
    """The :class:`Output` of array ``out`` (or of an array like it with ``shape``)."""
    return Output(tuple(out.shape) if shape is None else tuple(shape), out.dtype, backend.namespace(out),
                  backend.device(out))


def check_like(name: str, x, like: Output, whose: str, *, fixed_shapes: str = ""):
    """The array ``x`` has ``like``'s namespace, device, shape and dtype (nothing is moved, broadcast or cast),
    else a named error saying which differs from ``whose`` (e.g. "the forward output"); ``fixed_shapes``, if
    given, says why the shape cannot change.

    >>> import numpy as np
    >>> check_like("dout", np.ones(2, np.float32), output_of(np.zeros(2)), "the forward output")
    Traceback (most recent call last):
    ...
    TypeError: dout has dtype float32, expected the dtype of the forward output (float64): nothing is cast
    """
    if backend.namespace(x) is not like.xp:
        raise TypeError(f"{name} must be an array of {whose}'s namespace ({like.xp.__name__}), "
                        f"got {type(x).__module__}.{type(x).__name__}")
    if backend.device(x) != like.device:
        raise ValueError(f"{name} is on device {backend.device(x)}, {whose} on {like.device}")
    if tuple(x.shape) != like.shape:
        raise ValueError(f"{name} must have shape {like.shape}, the shape of {whose}, got {tuple(x.shape)}"
                         + (f" ({fixed_shapes})" if fixed_shapes else ""))
    if x.dtype != like.dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected the dtype of {whose} ({like.dtype}): nothing is cast")
    return x


def check_dout(dout, output: Output, *, finite: bool = True):
    """The upstream gradient of ``output``: an array of its shape, dtype, namespace and device, finite.

    A Python number is accepted for a scalar output (and written there by a
    fill kernel, without a host-to-device copy); nothing is broadcast or cast.
    An array ``dout`` is checked for NaN and inf (unless ``finite=False``), a
    device sync on GPUs: a captured CUDA graph step (:mod:`refimpl.graph`)
    passes a number to the loss and ``check_finite=False`` to the layers.

    >>> import numpy as np
    >>> check_dout(np.ones(6), output_of(np.zeros(())))
    Traceback (most recent call last):
    ...
    ValueError: dout must have shape (), the shape of the forward output, got (6,)
    """
    if isinstance(dout, (int, float)) and not isinstance(dout, bool):
        if output.shape != ():
            raise ValueError(f"dout must be an array of shape {output.shape}, the shape of the forward "
                             "output, got a number")
        if not math.isfinite(dout):
            raise ValueError(f"dout must be finite, got {dout!r}")
        # a fill kernel, not a host-to-device copy: a captured CUDA graph step may pass 1.0
        return backend.full((), dout, xp=output.xp, dev=output.device, dtype=output.dtype)
    if not _is_array(dout):
        raise TypeError(f"dout must be an array or a Python number, got {type(dout).__name__}")
    check_like("dout", dout, output, "the forward output")
    if finite and not all_finite(dout):
        raise ValueError("dout must be finite (no NaN or inf)")
    return dout
