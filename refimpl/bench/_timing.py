"""Timing and memory tools shared by the benchmarks.

Fair comparisons need the same thread count on both sides and interleaved
measurements (a machine that slows down half-way then slows both sides):
:func:`alternating_medians` runs the candidates in alternating blocks after a
warm-up and reports per-call medians. Peak memory is measured in a fresh
subprocess per case (:func:`peak_rss_kib`) from the kernel's high-water mark
of resident memory, reset just before the measured call, so that imports and
earlier cases do not count and NumPy and PyTorch are measured the same way.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(n: int) -> str:
    """Limit NumPy's BLAS (and torch, if imported) to ``n`` threads; say how.

    Uses threadpoolctl when it is installed; otherwise the BLAS keeps the thread
    count it started with, which the returned text reports.
    """
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        found = {v: os.environ.get(v) for v in THREAD_VARIABLES if os.environ.get(v)}
        return f"BLAS threads from the environment {found or '(unset: all cores)'}, {os.cpu_count()} cores"
    threadpool_limits(n)
    libs = ", ".join(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())
    return f"threadpoolctl: {libs}"


def needs_relaunch(threads: int) -> bool:
    """True when NumPy's BLAS cannot be limited in this process (no threadpoolctl, variables unset)."""
    try:
        import threadpoolctl  # noqa: F401
        return False
    except ImportError:
        return any(os.environ.get(v) != str(threads) for v in THREAD_VARIABLES)


def relaunch(argv, threads: int) -> int:
    """Run ``refimpl *argv`` again in a fresh interpreter with the thread variables set.

    NumPy's BLAS reads them once, when NumPy loads; the ``refimpl`` command has
    loaded it already.
    """
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES})
    return subprocess.run([sys.executable, "-m", "refimpl", *argv], env=env).returncode


def alternating_medians(candidates: dict, *, blocks: int = 5, per_block: int = 3, warmup: int = 2) -> dict:
    """Median seconds per call of each zero-argument callable, timed in alternating blocks."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for _ in range(blocks):
        for name, fn in candidates.items():
            for _ in range(per_block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


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


def machine_load() -> str:
    """The 1-minute load average and core count, to print beside timings."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return f"{os.cpu_count()} cores"
    return f"load average {one:.2f} on {os.cpu_count()} cores"
