"""``refimpl run <recipe|all>``: train a paper's pipeline, print its metrics and claims.

    refimpl run conpro                 default run (each recipe < 3 min on 2 CPU cores)
    refimpl run conpro --fast          smoke run (< 30 s): same pipeline, fewer steps
    refimpl run all --seed 1 --out runs-seed1
    refimpl run claims                 every recipe's claims over seeds 0-4 -> docs/claims.md

Outputs go to ``--out`` (default ``runs/<recipe>``; with ``all``, one
sub-folder per recipe): ``metrics.json``, ``config.json``, PNG figures and
``params_*.npz``. Progress bars go to stderr, the results table to stdout.

NumPy's BLAS runs on ``--threads`` threads (default 1; the command restarts
itself with the thread variables set when it cannot limit them in process):
small convolutions gain little from a second thread, and on a shared machine
a BLAS that spins on a busy core can be tens of times slower.
"""
from __future__ import annotations

import os
import sys

from . import RECIPES, _common, claims, module


def add_arguments(parser) -> None:
    parser.add_argument("recipe", choices=RECIPES + ("all", "claims"),
                        help="recipe to run, all of them, or claims (every recipe over --seeds, "
                             "tabled in docs/claims.md)")
    parser.add_argument("--fast", action="store_true", help="smoke run: fewer steps and images")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--out", default=None,
                        help="output folder (default runs/<recipe>; with all: DIR/<recipe>); "
                             "with claims: the Markdown file (default docs/claims.md)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(claims.DEFAULT_SEEDS),
                        help="seeds for claims (default 0 1 2 3 4)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _out_dir(args, name: str) -> str:
    if args.out is None:
        return os.path.join("runs", name)
    return os.path.join(args.out, name) if args.recipe == "all" else args.out


def run_one(name: str, args) -> dict:
    """Run one recipe as the command does and print its report; returns the metrics."""
    out_dir = _out_dir(args, name)
    mode = "fast" if args.fast else "default"
    print(f"== refimpl run {name} ({mode}, seed {args.seed}, {args.backend} {args.dtype}) -> {out_dir}",
          flush=True)
    watch = _common.Stopwatch()
    result = module(name).run(seed=args.seed, fast=args.fast, backend=args.backend, dtype=args.dtype,
                              out_dir=out_dir, progress=not args.quiet)
    print(_common.results_table(result["methods"], legend=getattr(module(name), "METRICS", None)))
    print()
    print(_common.claims_text(result["claims"]))
    files = sorted(os.listdir(out_dir))
    print(f"\nwrote {len(files)} files to {out_dir}: {', '.join(files)}")
    print(f"took {watch.seconds():.1f} s", flush=True)
    return result


def main(args) -> int:
    from .. import backend
    from ..bench import _timing

    if args.backend == "cupy" and not backend.cupy_available():
        print("refimpl run: --backend cupy needs CuPy with a CUDA device; install the 'gpu' extra "
              "(pip install 'refimpl[gpu]') on a machine with an NVIDIA driver", file=sys.stderr)
        return 2
    if args.backend == "numpy" and _timing.needs_relaunch(args.threads):
        return _timing.relaunch(args.argv, args.threads)
    if args.recipe == "claims":
        return claims.main(args)
    names = RECIPES if args.recipe == "all" else (args.recipe,)
    missing = []
    for name in names:
        if not claims.installed(name):
            missing.append(name)
            continue
        run_one(name, args)
    if missing:
        print(f"not installed in this version of refimpl: {', '.join(missing)}")
        return 1
    return 0
