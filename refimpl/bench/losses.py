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
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from . import _timing

SIZES = (256, 1024, 4096)
LOSSES = ("margin", "preference", "kernel", "adacon")
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
                                         temperature=0.1)
        else:
            loss, cache = module.forward(x["z"], x["y"], scale=10.0)
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


def _probe_code(case: Case, library: str, threads: int) -> str:
    """Python source for a fresh interpreter that prints the peak KiB of one call."""
    fields = ", ".join(f"{f.name}={getattr(case, f.name)!r}" for f in dataclasses.fields(case))
    prepare = "import torch; torch.set_num_threads(%d); x = {k: torch.from_numpy(v) for k, v in x.items()}" \
        % threads if library == "torch" else ""
    step = "torch_step" if library == "torch" else "refimpl_step"
    return (
        "import json\n"
        "from refimpl.bench._timing import measure_peak_in_this_process\n"
        "from refimpl.bench.losses import Case\n"
        f"case = Case({fields})\n"
        "x = case.host_inputs()\n"
        f"{prepare}\n"
        f"case.{step}(x)\n"  # warm-up: lazy imports and first-touch allocations
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


def _mib(kib: int) -> str:
    """Peak memory for the table: below the probe's resolution (1 MiB) it says so, never a negative number."""
    return f"{kib / 1024:.1f}" if kib >= MIN_MEMORY_KIB else "< 1"


def add_arguments(parser) -> None:
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), help="batch sizes N")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension D")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=11, help="timed rounds, one call of each side per round")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds of rest before every timed call")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")


def main(args) -> int:
    try:
        import torch
    except ImportError:
        print("refimpl bench losses needs torch: pip install 'refimpl[torch]'")
        return 2
    if _timing.needs_relaunch(args.threads):
        return _timing.relaunch(args.argv, args.threads)
    threads = _timing.limit_threads(args.threads)
    torch.set_num_threads(args.threads)
    machine = _timing.machine()
    print(f"threads: {threads}; torch {torch.__version__} on {args.threads} threads")
    print(_timing.describe(machine))
    print(f"{args.rounds} rounds, {args.pause} s pause before every call; time = median of per-round ratios")
    header = f"{'loss':<11}{'N':>6}  {'refimpl ms':>10}  {'torch ms':>9}  {'time':>6}  " \
             f"{'refimpl MiB':>11}  {'torch MiB':>9}  {'memory':>6}"
    print(header)
    rows = []
    for name in args.losses:
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": threads, "machine": machine, "rounds": args.rounds, "pause_s": args.pause,
                       "rows": rows}, f, indent=2)
    return 0
