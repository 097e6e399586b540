"""``refimpl run claims --seeds 0 1 2``: every recipe's claims over several seeds, as Markdown.

Runs the default configuration of every installed recipe once per seed (no
output folders), then tables each claim: on how many seeds it holds, its
effect (the signed margin in the claim's direction, see
:func:`refimpl.recipes._common.claim`) per seed and on average, and, where it
does not hold on every seed, the recipe's explanation (its ``CLAIM_NOTES``).
The file written is ``docs/claims.md`` by default.
"""
from __future__ import annotations

import statistics

from . import RECIPES, _common, module


def collect(names, seeds, *, fast=False, progress=False, **options) -> dict:
    """``{recipe: {"runs": [metrics dict per seed], "seconds": [wall time per seed]}}``."""
    out = {}
    for name in names:
        runs, seconds = [], []
        for seed in seeds:
            watch = _common.Stopwatch()
            runs.append(module(name).run(seed=seed, fast=fast, progress=progress, **options))
            seconds.append(watch.seconds())
            print(f"{name} seed {seed}: {sum(c['holds'] for c in runs[-1]['claims'])}/"
                  f"{len(runs[-1]['claims'])} claims hold ({seconds[-1]:.0f} s)", flush=True)
        out[name] = {"runs": runs, "seconds": seconds}
    return out


def markdown(results: dict, seeds, *, fast=False, command="refimpl run claims") -> str:
    """The Markdown document for :func:`collect`'s results."""
    lines = ["# Claims of each paper, checked on the synthetic data",
             "",
             f"Written by `{command}` ({'fast' if fast else 'default'} configurations, seeds "
             f"{', '.join(map(str, seeds))}). Effect: the margin in the claim's direction (positive "
             "when it holds), per seed; the evidence column shows the first seed's numbers. Do not "
             "edit by hand: change the recipe and run the command again.", ""]
    for name, res in results.items():
        runs = res["runs"]
        notes = getattr(module(name), "CLAIM_NOTES", {})
        lines += [f"## {name}", "",
                  f"Wall time per run: median {statistics.median(res['seconds']):.0f} s "
                  f"(max {max(res['seconds']):.0f} s) on the machine that wrote this file.", "",
                  "| claim | holds on | effect per seed | mean effect | evidence (seed "
                  f"{seeds[0]}) |", "|---|---|---|---|---|"]
        why = []
        for k, first in enumerate(runs[0]["claims"]):
            per_seed = [r["claims"][k] for r in runs]
            holds = sum(c["holds"] for c in per_seed)
            effects = [c["effect"] for c in per_seed]
            shown = ", ".join("n/a" if e is None else f"{e:+.3f}" for e in effects)
            finite = [e for e in effects if e is not None]
            mean = f"{statistics.fmean(finite):+.3f}" if finite else "n/a"
            lines.append(f"| {first['claim']} | {holds}/{len(runs)} | {shown} | {mean} | {first['evidence']} |")
            if holds < len(runs):
                why.append(f"- **{first['claim']}** ({holds}/{len(runs)}): "
                           + notes.get(first["claim"], "no explanation recorded in the recipe's CLAIM_NOTES."))
        if why:
            lines += ["", "Where a claim does not hold on every seed, why:", ""] + why
        lines.append("")
    return "\n".join(lines)


def main(args) -> int:
    names = [n for n in RECIPES if installed(n)]
    results = collect(names, args.seeds, fast=args.fast, progress=not args.quiet, backend=args.backend,
                      dtype=args.dtype)
    seeds = " ".join(map(str, args.seeds))
    text = markdown(results, args.seeds, fast=args.fast,
                    command=f"refimpl run claims --seeds {seeds}" + (" --fast" if args.fast else ""))
    path = args.out or "docs/claims.md"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path}")
    return 0


def installed(name: str) -> bool:
    """Whether recipe ``name``'s module exists in this installation."""
    try:
        module(name)
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.{name}":
            raise
        return False
    return True
