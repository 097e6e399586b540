"""Timing and memory tools shared by the benchmarks.

Fair comparisons need the same thread count on both sides, each call timed
undisturbed by the other side's threads, and interleaved measurements (a
machine that slows down half-way then slows both sides):
:func:`undisturbed_rounds` times one call of each per round after a pause and
reports the median of the per-round ratios. Peak memory is measured in a fresh
subprocess per case (:func:`peak_rss_kib`) from the kernel's high-water mark
of resident memory, reset just before the measured call, so that imports and
earlier cases do not count and NumPy and PyTorch are measured the same way.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

from .. import fingerprint

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def limited_threads(n: int):
    """Limit NumPy's BLAS (and torch, if imported) to ``n`` threads inside the block; yield how.

    Uses threadpoolctl when it is installed; otherwise the BLAS keeps the thread
    count it started with, which the yielded text reports. The thread counts are
    restored on leaving the block, so a benchmark called in-process (the tests
    do) leaves its caller's BLAS and torch threads as they were.
    """
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(n)
        try:
            from threadpoolctl import threadpool_info, threadpool_limits
        except ImportError:
            found = {v: os.environ.get(v) for v in THREAD_VARIABLES if os.environ.get(v)}
            yield f"BLAS threads from the environment {found or '(unset: all cores)'}, {os.cpu_count()} cores"
            return
        with threadpool_limits(n):
            libs = ", ".join(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())
            yield f"threadpoolctl: {libs}"
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)


def needs_relaunch(threads: int) -> bool:
    """Whether this process must start again for ``threads`` to hold for every BLAS.

    Each BLAS reads its thread count once, when it loads. threadpoolctl could
    change the ones loaded now (NumPy's), but not one loaded later (SciPy's own
    OpenBLAS loads with scipy.linalg, torch's with torch), nor a library it does
    not know; the variables set before the interpreter starts reach them all,
    with or without threadpoolctl, at the cost of one interpreter start (well
    under a second, against a run of seconds to minutes).
    """
    return any(os.environ.get(v) != str(threads) for v in THREAD_VARIABLES)


def relaunch(argv, threads: int) -> int:
    """Run ``refimpl *argv`` again in a fresh interpreter with the thread variables set.

    NumPy's BLAS reads them once, when NumPy loads; the ``refimpl`` command has
    loaded it already.
    """
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES})
    return subprocess.run([sys.executable, "-m", "refimpl", *argv], env=env).returncode


def same_loss(a: float, b: float, dtype: str) -> bool:
    """Two implementations' loss values agree (float32: 1e-4, float64: 1e-10, relative above 1).

    Every benchmark checks this before timing, so it never times different functions.

    >>> same_loss(1.0, 1.0 + 5e-5, "float32"), same_loss(1.0, 1.0 + 5e-5, "float64")
    (True, False)
    """
    tol = 1e-4 if dtype == "float32" else 1e-10
    return abs(a - b) <= tol * max(1.0, abs(b))


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call of the candidates over rounds, and the per-round ratio first / second (with two or more)."""

    seconds: dict      # name -> list of seconds, one per round
    ratios: list       # per round: seconds[first] / seconds[second]; empty for one candidate

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    @property
    def ratio(self) -> float:
        """Median of the per-round ratios (not the ratio of medians: rounds pair up neighbours in time)."""
        return statistics.median(self.ratios)


def undisturbed_rounds(candidates: dict, *, rounds: int = 11, pause: float = 0.3, warmup: int = 2,
                       wake: bool = True) -> Timing:
    """Time zero-argument callables one call each per round, each after a pause and a warm call.

    The pause lets the other side's threads go idle first: OpenBLAS threads
    spin for a while after a NumPy call, and a PyTorch call timed right after
    one ran measurably slower (150 -> 190-215 ms for the TinyNet step), which
    flattered whichever side ran first. The untimed call after the pause wakes
    the timed side's own threads (PyTorch's pool took about 10 ms to wake for
    a 1 ms loss), as a training loop calling it back to back keeps them. The order alternates between rounds,
    and the ratio of each round compares calls made seconds apart, so a
    machine that slows down part-way slows both sides of a round.

    Calls of many seconds (the loss scaling benchmark) need neither the
    warm-up nor the wake call (``warmup=0, wake=False``): a 10 ms wake-up is
    lost in them, and each call allocates its large arrays afresh anyway.
    One candidate is allowed (``ratios`` is then empty); the usual case is two.
    """
    if not candidates:
        raise ValueError("candidates must hold at least one callable (usually two callables), got none")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    names = list(candidates)
    seconds = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            time.sleep(pause)
            if wake:
                candidates[name]()  # untimed: wakes this side's threads
            start = time.perf_counter()
            candidates[name]()
            seconds[name].append(time.perf_counter() - start)
    if len(names) < 2:
        return Timing(seconds, [])
    first, second = names[:2]
    return Timing(seconds, [a / b for a, b in zip(seconds[first], seconds[second])])


def machine() -> dict:
    """The CPU model, cores, load, the allocator variables and the numeric fingerprint, stored beside timings.

    The fingerprint (:func:`refimpl.fingerprint.fingerprint`) records the BLAS,
    its kernel and threads and every ``OPENBLAS_*``/``MKL_*``/``OMP_*``
    variable: ``OPENBLAS_CORETYPE=Haswell``, for one, halves NumPy's float32
    GEMM rate on an AVX-512 CPU. ``MALLOC_*`` variables move timings too.
    """
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
    except (OSError, AttributeError):
        pass
    allocator = {v: os.environ[v] for v in sorted(os.environ) if v.startswith("MALLOC_")}
    return {"cpu": model, "cores": os.cpu_count(), "load_1min": _load(), "allocator": allocator,
            "fingerprint": fingerprint.fingerprint()}


def describe(info: dict) -> str:
    """One line of :func:`machine`'s facts."""
    allocator = " ".join(f"{k}={v}" for k, v in info["allocator"].items()) or "no MALLOC_ variables set"
    return (f"CPU {info['cpu']}, {info['cores']} cores, load average {info['load_1min']:.2f}; "
            f"{fingerprint.describe(info['fingerprint'])}; {allocator}")


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def measure_peak_in_this_process(fn) -> int:
    """Peak resident memory (KiB) added by one call of ``fn`` (Linux only)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    base = _status_kib("VmRSS")
    fn()
    return _status_kib("VmHWM") - base


def peak_rss_kib(code: str, threads: int) -> int | None:
    """Run ``code`` (which must print one JSON number: its peak in KiB) in a fresh interpreter."""
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
