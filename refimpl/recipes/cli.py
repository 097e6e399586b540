"""``refimpl run <recipe|all>``: train a paper's pipeline, print its metrics and claims.

    refimpl run conpro                 default run (each recipe < 3 min on 2 CPU cores)
    refimpl run conpro --fast          smoke run (< 30 s): same pipeline, fewer steps
    refimpl run all --seed 1 --out runs-seed1
    refimpl run claims                 every recipe's claims over seeds 0-4 -> docs/claims.md

Outputs go to ``--out`` (default ``runs/<recipe>``; with ``all``, one
sub-folder per recipe): ``metrics.json``, ``config.json``, PNG figures and
``params_*.npz``. A run never mixes its files with another run's: the folder
must be new or empty, or, with ``--overwrite``, an earlier run's folder, whose
files are removed first. Every argument is checked before any work starts
(exit status 2 and one line naming it). Progress bars go to stderr when it is
a terminal, the results table to stdout.

Every BLAS (NumPy's, SciPy's) runs on ``--threads`` threads (default 1):
small convolutions gain little from a second thread, and on a shared machine
a BLAS that spins on a busy core can be tens of times slower. Unless
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` already
say so, the command starts itself again with them set (see
:func:`refimpl.bench._timing.needs_relaunch` for why).
"""
from __future__ import annotations

import os

from .. import _cli_args
from ..bench import _timing
from . import RECIPES, _common, claims, module

CLAIMS_PATH = "docs/claims.md"  # what ``refimpl run claims`` writes without --out


def add_arguments(parser) -> None:
    parser.add_argument("recipe", choices=RECIPES + ("all", "claims"),
                        help="recipe to run, all of them, or claims (every recipe over --seeds, "
                             "tabled in docs/claims.md)")
    parser.add_argument("--fast", action="store_true", help="smoke run: fewer steps and images")
    parser.add_argument("--seed", type=_cli_args.non_negative_int, default=0,
                        help="seed of everything, an integer >= 0 (default 0)")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                        help="array library the networks run on (default numpy; cupy needs a CUDA GPU)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="floating-point type of the networks (default float32)")
    parser.add_argument("--out", default=None,
                        help="output folder, new or empty (default runs/<recipe>; with all: DIR/<recipe>); "
                             "with claims: the Markdown file (default docs/claims.md)")
    parser.add_argument("--overwrite", action="store_true",
                        help="remove the files of an earlier run in --out first (only a run's folder)")
    parser.add_argument("--seeds", type=_cli_args.non_negative_int, nargs="+", default=list(claims.DEFAULT_SEEDS),
                        help="seeds for claims, integers >= 0 (default 0 1 2 3 4)")
    parser.add_argument("--threads", type=_cli_args.positive_int, default=1,
                        help="threads of every BLAS (NumPy's, SciPy's), an integer >= 1 (default 1)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (they are shown only when stderr is a terminal)")


def _out_dir(args, name: str) -> str:
    if args.out is None:
        return os.path.join("runs", name)
    return os.path.join(args.out, name) if args.recipe == "all" else args.out


def _check(args) -> None:
    """Every argument that can fail, before any work; raises UsageError naming it."""
    from .. import backend

    if args.backend == "cupy" and not backend.cupy_available():
        raise _cli_args.UsageError("--backend: cupy needs CuPy with a CUDA device; install the 'gpu' extra "
                                   "(pip install 'refimpl[gpu]') on a machine with an NVIDIA driver")
    if args.recipe == "claims":
        return _cli_args.check_output_file("--out", args.out or CLAIMS_PATH)
    for name in RECIPES if args.recipe == "all" else (args.recipe,):
        _cli_args.check_run_folder("--out", _out_dir(args, name), overwrite=args.overwrite)
    return None


def run_one(name: str, args) -> dict:
    """Run one recipe as the command does and print its report; returns the metrics."""
    from ..fingerprint import describe, fingerprint

    out_dir = _out_dir(args, name)
    mode = "fast" if args.fast else "default"
    print(f"== refimpl run {name} ({mode}, seed {args.seed}, {args.backend} {args.dtype}) -> {out_dir}\n"
          f"== {describe(fingerprint())}", flush=True)
    if args.overwrite:
        _cli_args.clear_run_folder(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    before = set(os.listdir(out_dir))  # empty (checked before any run started)
    watch = _common.Stopwatch()
    result = module(name).run(seed=args.seed, fast=args.fast, backend=args.backend, dtype=args.dtype,
                              out_dir=out_dir, progress=not args.quiet)
    print(_common.results_table(result["methods"], legend=getattr(module(name), "METRICS", None)))
    print()
    print(_common.claims_text(result["claims"]))
    written = sorted(set(os.listdir(out_dir)) - before)
    print(f"\nwrote {len(written)} files to {out_dir}: {', '.join(written)}")
    print(f"took {watch.seconds():.1f} s", flush=True)
    return result


def main(args) -> int:
    try:
        _check(args)
    except _cli_args.UsageError as error:
        return _cli_args.usage_error("refimpl run", error)
    if _timing.needs_relaunch(args.threads):
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
