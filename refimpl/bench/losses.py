"""``refimpl bench losses``: forward+backward time and peak memory, refimpl vs torch autograd.

For each loss (paper variant, mean reduction, normalisation inside) and each
batch size N (D = 128 by default), one call = forward and backward from raw
embeddings to their gradients. Time: both on the same number of threads in one
process, one call each per round after a pause
(:func:`refimpl.bench._timing.undisturbed_rounds`), medians per call and the
median of the per-round ratios. Memory:
peak resident memory added by one call, each measured in a fresh interpreter
(:func:`refimpl.bench._timing.peak_rss_kib`). Before timing, the two values of
the loss are compared, so the benchmark never compares different functions.

With ``--block-size B`` it measures how the kernel and AdaCon losses scale
(:func:`run_scaling_case`): refimpl's blocked form (blocks of B anchors), its
dense form and torch autograd, each only where its estimated peak memory fits
in ``--max-gib`` (the others are reported with what they would need). Calls
take seconds to minutes there, so each side is timed ``--rounds`` times
without warm-up or wake calls, and the memory probe warms up on a small batch.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from .._cli_args import positive_int
from . import _timing

SIZES = (256, 1024, 4096)
LOSSES = ("margin", "preference", "kernel", "adacon")
#: the losses with a blocked form (``block_size=``), and the sides of the scaling benchmark
BLOCKED_LOSSES = ("kernel", "adacon")
SIDES = ("blocked", "dense", "torch")
#: peak memory of a dense side in (N, N) arrays of the dtype, used when this run has measured no smaller N:
#: refimpl's dense kernel and AdaCon hold two (2072 MiB at N = 16,384 in float32), torch autograd about
#: seven (6.4-6.9 GiB there)
DENSE_ARRAYS = {"dense": 2, "torch": 7}
#: smallest measured peak (KiB) that :func:`estimated_bytes` extrapolates from: below it, allocator
#: granularity and the O(N D) arrays weigh as much as the (N, N) ones
MIN_EXTRAPOLATION_KIB = 64 * 1024
#: batch size of the memory probe's warm-up call in the scaling benchmark (imports, thread pools)
PROBE_WARMUP_N = 64
N_REFS = 20  # ConPro Table 2 averages n = 20 reference embeddings
#: below this peak (KiB) the resident-memory probe only sees allocator and page
#: granularity (freed blocks reused, 4 KiB pages), so no ratio is printed
MIN_MEMORY_KIB = 1024


@dataclasses.dataclass(frozen=True)
class Case:
    """One loss: host inputs, and one forward+backward in each library."""

    name: str
    n: int
    d: int
    dtype: str
    seed: int = 0
    block_size: int | None = None  # kernel and adacon: refimpl's blocked form

    def host_inputs(self) -> dict:
        g = np.random.default_rng(self.seed)
        n, d = self.n, self.d
        emb = lambda *shape: g.standard_normal(shape).astype(self.dtype)  # noqa: E731
        if self.name == "margin":
            return {"a": emb(n, d), "b": emb(n, d), "same": g.integers(0, 2, n).astype(self.dtype)}
        if self.name == "preference":
            return {"u_i": emb(n, d), "u_j": emb(n, d), "refs": emb(N_REFS, d),
                    "prefer_i": g.integers(0, 2, n).astype(self.dtype)}
        if self.name == "kernel":
            return {"z": emb(n, d), "labels": g.integers(0, 10, n),
                    "depth": g.uniform(0, 1, n).astype(self.dtype)}
        if self.name == "adacon":
            # labels on a 0.02 grid so that anchors have positives
            return {"z": emb(n, d), "y": (g.integers(0, 50, n) / 50).astype(self.dtype)}
        raise ValueError(f"loss must be one of {LOSSES}, got {self.name!r}")

    def refimpl_step(self, x: dict):
        """Forward and backward in refimpl; returns the loss as a float."""
        import importlib

        module = importlib.import_module(f"refimpl.losses.{self.name}")
        if self.name == "margin":
            loss, cache = module.forward(x["a"], x["b"], x["same"])
        elif self.name == "preference":
            loss, cache = module.forward(x["u_i"], x["u_j"], x["refs"], x["prefer_i"])
        elif self.name == "kernel":
            loss, cache = module.forward(x["z"], labels=x["labels"], depth=x["depth"], sigma=0.1,
                                         temperature=0.1, block_size=self.block_size)
        else:
            loss, cache = module.forward(x["z"], x["y"], scale=10.0, block_size=self.block_size)
        module.backward(1.0, cache)  # a Python number: any backend
        return float(loss)

    def torch_step(self, t: dict):
        """The same forward and backward with torch autograd; returns the loss as a float."""
        from . import torch_losses

        leaves = {k: v.detach().requires_grad_(k in DIFFERENTIABLE[self.name]) for k, v in t.items()}
        loss = getattr(torch_losses, self.name)(**leaves)
        loss.backward()
        return float(loss.detach())


DIFFERENTIABLE = {"margin": ("a", "b"), "preference": ("u_i", "u_j", "refs"), "kernel": ("z",),
                  "adacon": ("z",)}


def _probe_code(case: Case, library: str, threads: int, warmup_n: int | None = None) -> str:
    """Python source for a fresh interpreter that prints the peak KiB of one call.

    The warm-up call (lazy imports, thread pools, first-touch allocations) runs
    on the case itself, or on a batch of ``warmup_n`` rows when one call of
    the case takes minutes.
    """
    def fields(c):
        return ", ".join(f"{f.name}={getattr(c, f.name)!r}" for f in dataclasses.fields(c))

    small = case if warmup_n is None else dataclasses.replace(case, n=min(case.n, warmup_n))
    to_torch = "{k: torch.from_numpy(v) for k, v in %s.items()}"
    prepare = (f"import torch; torch.set_num_threads({threads}); x = {to_torch % 'x'}; "
               f"warm_x = {to_torch % 'warm_x'}") if library == "torch" else ""
    step = "torch_step" if library == "torch" else "refimpl_step"
    return (
        "import json\n"
        "from refimpl.bench._timing import measure_peak_in_this_process\n"
        "from refimpl.bench.losses import Case\n"
        f"case, warm = Case({fields(case)}), Case({fields(small)})\n"
        "x, warm_x = case.host_inputs(), warm.host_inputs()\n"
        f"{prepare}\n"
        f"warm.{step}(warm_x)\n"
        f"print(json.dumps(measure_peak_in_this_process(lambda: case.{step}(x))))\n"
    )


def run_case(case: Case, *, threads: int, rounds: int, pause: float, memory: bool) -> dict:
    import torch

    x = case.host_inputs()
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    ours, theirs = case.refimpl_step(x), case.torch_step(t)
    if not _timing.same_loss(ours, theirs, case.dtype):
        raise RuntimeError(f"{case.name} N={case.n}: refimpl {ours!r} != torch {theirs!r}")
    timing = _timing.undisturbed_rounds(
        {"refimpl": lambda: case.refimpl_step(x), "torch": lambda: case.torch_step(t)},
        rounds=rounds, pause=pause)
    row = {"loss": case.name, "n": case.n, "d": case.d, "dtype": case.dtype, "value": ours,
           "refimpl_s": timing.median("refimpl"), "torch_s": timing.median("torch"),
           "time_ratio": timing.ratio, "time_ratio_range": [min(timing.ratios), max(timing.ratios)]}
    if memory:
        row["refimpl_kib"] = _timing.peak_rss_kib(_probe_code(case, "refimpl", threads), threads)
        row["torch_kib"] = _timing.peak_rss_kib(_probe_code(case, "torch", threads), threads)
        if min(row["refimpl_kib"], row["torch_kib"]) >= MIN_MEMORY_KIB:
            row["memory_ratio"] = row["refimpl_kib"] / row["torch_kib"]
    return row


def estimated_bytes(case: Case, side: str, measured: dict) -> tuple[float, str]:
    """Peak bytes a dense side (``"dense"``, ``"torch"``) would need at ``case.n``, and how it was estimated.

    Quadratic in N: from the largest N this run measured for the same loss,
    side and dtype (``measured[(name, side, dtype)] = (n, kib)``) when that
    peak is large enough to be made of (N, N) arrays, else from
    :data:`DENSE_ARRAYS`.
    """
    key = (case.name, side, case.dtype)
    if key in measured and measured[key][1] >= MIN_EXTRAPOLATION_KIB:
        n, kib = measured[key]
        return kib * 1024 * (case.n / n) ** 2, f"measured {kib / 1024:.0f} MiB at N = {n}, times (N / {n})^2"
    arrays = DENSE_ARRAYS[side]
    return arrays * case.n**2 * np.dtype(case.dtype).itemsize, f"{arrays} (N, N) {case.dtype} arrays"


def run_scaling_case(case: Case, *, threads: int, rounds: int, pause: float, memory: bool, max_bytes: float,
                     measured: dict) -> dict:
    """Blocked vs dense vs torch for one loss and N; the dense sides only where they fit in ``max_bytes``.

    ``measured`` (updated) holds the dense sides' peaks of smaller N of this
    run, for :func:`estimated_bytes`. With two or more sides, their loss
    values are compared first.
    """
    x = case.host_inputs()
    cases = {"blocked": case, "dense": dataclasses.replace(case, block_size=None)}
    steps = {"blocked": lambda: case.refimpl_step(x)}
    row = {"loss": case.name, "n": case.n, "d": case.d, "dtype": case.dtype, "block_size": case.block_size}
    for side in ("dense", "torch"):
        need, how = estimated_bytes(case, side, measured)
        if need > max_bytes:
            row[f"{side}_needs_gib"], row[f"{side}_estimate"] = need / 2**30, how
        elif side == "dense":
            steps["dense"] = lambda: cases["dense"].refimpl_step(x)
        else:
            import torch

            t = {k: torch.from_numpy(v) for k, v in x.items()}
            steps["torch"] = lambda: case.torch_step(t)
    if len(steps) > 1:
        values = {side: fn() for side, fn in steps.items()}
        for side, value in values.items():
            if not _timing.same_loss(value, values["blocked"], case.dtype):
                raise RuntimeError(f"{case.name} N={case.n}: {side} {value!r} != blocked {values['blocked']!r}")
    timing = _timing.undisturbed_rounds(steps, rounds=rounds, pause=pause, warmup=0, wake=False)
    for side in steps:
        row[f"{side}_s"] = timing.median(side)
        if memory:
            library = "torch" if side == "torch" else "refimpl"
            code = _probe_code(cases.get(side, case), library, threads, warmup_n=PROBE_WARMUP_N)
            row[f"{side}_kib"] = _timing.peak_rss_kib(code, threads)
            if side != "blocked":
                measured[(case.name, side, case.dtype)] = (case.n, row[f"{side}_kib"])
    return row


def _scaling_line(row: dict) -> str:
    def seconds(side):
        return f"{row[f'{side}_s']:>9.2f}" if f"{side}_s" in row else f"{'-':>9}"

    def mib(side):
        if f"{side}_kib" in row:
            return f"{_mib(row[f'{side}_kib']):>11}"
        return f"{'~%.1f GiB' % row[f'{side}_needs_gib']:>11}" if f"{side}_needs_gib" in row else f"{'-':>11}"

    return (f"{row['loss']:<8}{row['n']:>7}  " + "  ".join(seconds(s) for s in SIDES) + "  "
            + "  ".join(mib(s) for s in SIDES))


def _scaling_main(args, threads: int) -> list:
    losses = args.losses or list(BLOCKED_LOSSES)
    if set(losses) - set(BLOCKED_LOSSES):
        raise SystemExit(f"--block-size applies to {', '.join(BLOCKED_LOSSES)}; got --losses {' '.join(losses)}")
    print(f"blocked: blocks of {args.block_size} anchors; dense and torch only where their estimated peak "
          f"fits in {args.max_gib:g} GiB (else: what they would need, ~); {args.rounds} timed call(s) per side")
    print(f"{'loss':<8}{'N':>7}  " + "  ".join(f"{s + ' s':>9}" for s in SIDES) + "  "
          + "  ".join(f"{s + ' MiB':>11}" for s in SIDES))
    rows, measured = [], {}
    for name in losses:
        for n in sorted(args.sizes):
            case = Case(name, n, args.dim, args.dtype, block_size=args.block_size)
            row = run_scaling_case(case, threads=args.threads, rounds=args.rounds, pause=args.pause,
                                   memory=not args.no_memory, max_bytes=args.max_gib * 2**30, measured=measured)
            rows.append(row)
            print(_scaling_line(row), flush=True)
            for side in ("dense", "torch"):
                if f"{side}_needs_gib" in row:
                    print(f"    {side}: not run, would need ~{row[f'{side}_needs_gib']:.1f} GiB "
                          f"({row[f'{side}_estimate']})")
    return rows


def _mib(kib: int) -> str:
    """Peak memory for the table: below the probe's resolution (1 MiB) it says so, never a negative number."""
    return f"{kib / 1024:.1f}" if kib >= MIN_MEMORY_KIB else "< 1"


def add_arguments(parser) -> None:
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=None,
                        help=f"default: all ({', '.join(LOSSES)}); with --block-size: {', '.join(BLOCKED_LOSSES)}")
    parser.add_argument("--sizes", nargs="+", type=positive_int, default=list(SIZES), help="batch sizes N")
    parser.add_argument("--dim", type=positive_int, default=128, help="embedding dimension D")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="precision to time")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="threads of every BLAS and of PyTorch (the command restarts with them set)")
    parser.add_argument("--rounds", type=positive_int, default=11, help="timed rounds, one call of each side per round")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds of rest before every timed call")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--block-size", type=positive_int, default=None, metavar="B",
                        help="scaling mode: kernel and adacon, blocked (B anchors per block) vs dense vs torch")
    parser.add_argument("--max-gib", type=float, default=12.0,
                        help="scaling mode: run the dense and torch sides only where they need at most this")


def main(args) -> int:
    try:
        import torch
    except ImportError:
        print("refimpl bench losses needs torch: pip install 'refimpl[torch]'")
        return 2
    if _timing.needs_relaunch(args.threads):
        return _timing.relaunch(args.argv, args.threads)
    with _timing.limited_threads(args.threads) as threads:
        return _measure(args, threads)


def _measure(args, threads) -> int:
    """The benchmark proper, its thread counts set."""
    import torch

    machine = _timing.machine()
    print(f"threads: {threads}; torch {torch.__version__} on {args.threads} threads")
    print(_timing.describe(machine))
    if args.block_size is not None:
        if args.block_size < 1:
            raise SystemExit(f"--block-size must be an integer >= 1, got {args.block_size}")
        rows = _scaling_main(args, threads)
        _write_json(args, threads, machine, rows)
        return 0
    print(f"{args.rounds} rounds, {args.pause} s pause before every call; time = median of per-round ratios")
    header = f"{'loss':<11}{'N':>6}  {'refimpl ms':>10}  {'torch ms':>9}  {'time':>6}  " \
             f"{'refimpl MiB':>11}  {'torch MiB':>9}  {'memory':>6}"
    print(header)
    rows = []
    for name in args.losses or LOSSES:
        for n in args.sizes:
            row = run_case(Case(name, n, args.dim, args.dtype), threads=args.threads,
                           rounds=args.rounds, pause=args.pause, memory=not args.no_memory)
            rows.append(row)
            mem = ""
            if "refimpl_kib" in row:
                ratio = f"{row['memory_ratio']:>5.2f}x" if "memory_ratio" in row else f"{'-':>6}"
                mem = f"{_mib(row['refimpl_kib']):>11}  {_mib(row['torch_kib']):>9}  {ratio}"
            print(f"{name:<11}{n:>6}  {row['refimpl_s'] * 1e3:>10.2f}  {row['torch_s'] * 1e3:>9.2f}  "
                  f"{row['time_ratio']:>5.2f}x  {mem}", flush=True)
    _write_json(args, threads, machine, rows)
    return 0


def _write_json(args, threads, machine, rows) -> None:
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": threads, "machine": machine, "rounds": args.rounds, "pause_s": args.pause,
                       "block_size": args.block_size, "rows": rows}, f, indent=2)
