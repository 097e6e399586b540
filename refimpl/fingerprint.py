"""What decides the last bits of a number: the numeric fingerprint of this process.

Two runs of the same code give the same bits only when the same libraries run
the same kernels on the same number of threads: NumPy's version, its BLAS
library, that library's version, the kernel it picked for this CPU (OpenBLAS
picks one at load time, and ``OPENBLAS_CORETYPE`` overrides the choice), and
its thread count. :func:`fingerprint` records those facts, and
:func:`same_bits` says whether two fingerprints promise identical bits. Every
file of numbers refimpl writes (the gold manifest, a run's ``config.json`` and
``metrics.json``, benchmark JSON, ``docs/claims.md``) carries one.

The BLAS facts come from threadpoolctl (the ``blas`` extra) when it is
installed, which asks the loaded libraries themselves; otherwise from NumPy's
build configuration, which knows the library and version but not the kernel
or the threads, and says so (``"source": "numpy build configuration"``).

>>> fp = fingerprint()
>>> sorted(fp)
['blas', 'blas_source', 'environment', 'machine', 'numpy', 'python', 'scipy', 'simd']
>>> same_bits(fp, fingerprint())
True
"""
from __future__ import annotations

import os
import platform

import numpy as np

# Environment variables that change which kernel or how many threads a BLAS uses.
ENV_PREFIXES = ("OPENBLAS_", "MKL_", "OMP_", "GOTO_", "BLIS_")

# The fields of a fingerprint that decide bits (``environment`` acts through ``blas``).
_BIT_FIELDS = ("numpy", "scipy", "machine", "simd", "blas")


def _blas_from_threadpoolctl() -> list | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    # No file paths: a fingerprint is written into files that travel between machines. Sorted:
    # threadpoolctl lists the libraries in no fixed order (NumPy's and SciPy's OpenBLAS swap places
    # between two runs of one command), and a fingerprint must compare equal to itself.
    return sorted(({"library": i.get("internal_api"), "version": i.get("version"),
                    "kernel": i.get("architecture"), "threads": i.get("num_threads"),
                    "threading_layer": i.get("threading_layer")}
                   for i in threadpool_info() if i.get("user_api") == "blas"),
                  key=lambda b: tuple(str(v) for v in b.values()))


def _blas_from_numpy() -> list:
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return [{"library": blas.get("name"), "version": blas.get("version"),
             "kernel": None, "threads": None, "threading_layer": None}]


def fingerprint() -> dict:
    """The numeric fingerprint of this process, as a JSON-ready dict.

    Keys: ``python``, ``numpy``, ``scipy``, ``machine`` (e.g. ``x86_64``),
    ``simd`` (the CPU extensions NumPy found), ``blas`` (one dict per loaded
    BLAS: ``library``, ``version``, ``kernel``, ``threads``,
    ``threading_layer``), ``blas_source`` (``"threadpoolctl"`` or
    ``"numpy build configuration"``, which cannot see the kernel or threads)
    and ``environment`` (every ``OPENBLAS_*``, ``MKL_*``, ``OMP_*``,
    ``GOTO_*``, ``BLIS_*`` variable that is set).
    """
    import scipy
    import scipy.linalg  # noqa: F401  loads SciPy's own BLAS: the same libraries listed whatever ran before

    config = np.show_config(mode="dicts")
    blas = _blas_from_threadpoolctl()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
        "simd": sorted(config.get("SIMD Extensions", {}).get("found", [])),
        "blas": blas if blas is not None else _blas_from_numpy(),
        "blas_source": "threadpoolctl" if blas is not None else "numpy build configuration",
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
    }


def same_bits(a: dict, b: dict) -> bool:
    """True when fingerprints ``a`` and ``b`` promise bit-identical results.

    Needs every bit-deciding field equal and both taken by threadpoolctl: a
    fingerprint without the BLAS kernel and threads cannot promise bits.
    """
    if a.get("blas_source") != "threadpoolctl" or b.get("blas_source") != "threadpoolctl":
        return False
    return all(a.get(k) == b.get(k) for k in _BIT_FIELDS)


def describe(fp: dict) -> str:
    """One line: NumPy, each BLAS with its kernel and threads, and the BLAS variables set.

    >>> describe({"numpy": "2.4.6", "machine": "x86_64", "blas_source": "threadpoolctl",
    ...           "blas": [{"library": "openblas", "version": "0.3.31", "kernel": "Haswell",
    ...                     "threads": 2}], "environment": {"OPENBLAS_CORETYPE": "Haswell"}})
    'NumPy 2.4.6 on x86_64; openblas 0.3.31 kernel Haswell, 2 threads; OPENBLAS_CORETYPE=Haswell'
    """
    libs = "; ".join(
        f"{b['library']} {b['version']}"
        + (f" kernel {b['kernel']}, {b['threads']} threads" if fp.get("blas_source") == "threadpoolctl"
           else " (kernel and threads unknown: install threadpoolctl)")
        for b in fp["blas"])
    env = " ".join(f"{k}={v}" for k, v in fp.get("environment", {}).items()) or "no BLAS variables set"
    return f"NumPy {fp['numpy']} on {fp['machine']}; {libs}; {env}"
