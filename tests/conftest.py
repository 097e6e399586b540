"""Shared fixtures: one test body runs on every backend.

``xpd`` is parametrised over NumPy, array_api_strict on its CPU device, on its
non-CPU ``Device("device1")`` (which raises on any hidden conversion to NumPy),
and CuPy where a GPU exists (marked ``gpu``; skipped otherwise unless
``REFIMPL_REQUIRE_GPU=1``). ``xpd.put(np_array)`` moves host data there.

Hypothesis profiles, none with an example database: a draw that failed once
is never replayed from ``.hypothesis/`` (a saved draw can never be the only
reason a test fails; a failing draw worth keeping is pinned as an
``@example`` in the test). ``dev`` (the default) and ``ci`` (chosen when
``CI=true``, more examples) are derandomised: every run on every machine
draws the same examples. ``nightly`` draws fresh random examples, many of
them, and prints how to reproduce a failure. Pick one with
``HYPOTHESIS_PROFILE``.
"""
from __future__ import annotations

import dataclasses
import os
from types import ModuleType

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from refimpl import backend

settings.register_profile("dev", max_examples=25, deadline=None, derandomize=True, print_blob=True)
settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# derandomize=False said explicitly: an unset setting is inherited from the profile loaded when this
# one is registered, and with CI set in the environment hypothesis has already loaded its own
# derandomised "ci" profile
settings.register_profile("nightly", max_examples=500, deadline=None, database=None, derandomize=False,
                          print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)


@dataclasses.dataclass(frozen=True)
class XPD:
    """A backend under test: its namespace, device, and a host-to-device mover."""

    name: str
    xp: ModuleType
    device: object

    def put(self, a, dtype=None):
        return backend.asarray(np.asarray(a), xp=self.xp, dev=self.device, dtype=dtype)


def _require_gpu() -> bool:
    return os.environ.get("REFIMPL_REQUIRE_GPU") == "1"


def _make(name: str) -> XPD:
    if name == "numpy":
        return XPD(name, np, None)
    if name.startswith("strict"):
        strict = pytest.importorskip("array_api_strict")
        dev = strict.Device("CPU_DEVICE" if name == "strict-cpu" else "device1")
        return XPD(name, strict, dev)
    if not backend.cupy_available():
        if _require_gpu():
            pytest.fail("REFIMPL_REQUIRE_GPU=1 but CuPy has no CUDA device")
        pytest.skip("CuPy with a CUDA device is not available")
    return XPD(name, backend.cupy(), None)


BACKENDS = [
    "numpy",
    "strict-cpu",
    "strict-device1",
    pytest.param("cupy", marks=pytest.mark.gpu),
]


@pytest.fixture(params=BACKENDS)
def xpd(request) -> XPD:
    """Every backend: numpy, array_api_strict (CPU and device1), cupy."""
    return _make(request.param)


@pytest.fixture
def bench_threads(monkeypatch) -> int:
    """The benchmarks' thread variables set to 2, as if set before NumPy loaded: a benchmark called with
    ``--threads 2`` (its default) runs in this process instead of re-launching itself."""
    from refimpl.bench import _timing

    for name in _timing.THREAD_VARIABLES:
        monkeypatch.setenv(name, "2")
    return 2


@pytest.fixture
def torch():
    """The torch module (for float64 cross-checks), or skip when it is not installed."""
    return pytest.importorskip("torch")

