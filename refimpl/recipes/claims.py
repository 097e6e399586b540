"""``refimpl run claims``: every recipe's claims as statistics over seeds.

One seed's sign is not a finding: the effects of these small runs move from
seed to seed, and with the last bits of a BLAS kernel (a different kernel
sends training down another path, as another seed does). So a claim's
verdict here is a statistic of the **paired effect** over seeds. Seed ``s``
gives every method of a recipe the same data, split and initial weights, so
the effect of one seed (the signed margin in the claim's direction,
:func:`refimpl.recipes._common.claim`) is a within-seed difference, and the
seeds are independent replicates of it.

Interval: Student's t over seeds,

.. math::

    \\bar e \\pm t_{0.975,\\,n-1}\\, s_e / \\sqrt{n},

with :math:`s_e` the sample standard deviation of the :math:`n` per-seed
effects. It covers what varies between seeds (data, split, initial weights,
batches, and the path training takes on a given BLAS). Verdict:
**holds** when the whole interval is above 0, **fails** when it is below 0,
**inconclusive** when it contains 0. The test subjects are fixed within a
seed; their sampling is part of the seed-to-seed spread, not a second level.

Ablation claims (``ABLATIONS``) run a recipe again on the same seeds
with one setting of the data removed and compare a margin with and without
it; WSP's centre-shift ablation is computed inside each run (the evaluation
cohort imaged as the pretraining cohort, the same patients).

The command writes the Markdown table (``docs/claims.md`` by default) and,
beside the package, the multi-seed file :data:`VERDICTS` (``claims.json``)
from which a single ``refimpl run`` prints each claim's verdict next to its
own seed's effect. With ``--out X.md`` the JSON goes to ``X.json`` instead.
After every run the per-seed results so far are written to
``<stem>.runs.json`` too, so an interrupted regeneration keeps what finished.

>>> s = interval([0.1, 0.2, 0.3])
>>> round(s["mean"], 3), round(s["low"], 3), round(s["high"], 3), s["verdict"]
(0.2, -0.048, 0.448, 'inconclusive')
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import statistics

import numpy as np

from . import RECIPES, _common, module

#: Seeds of ``refimpl run claims`` when none are given.
DEFAULT_SEEDS = (0, 1, 2, 3, 4)

#: Coverage of the interval around the mean effect.
LEVEL = 0.95

#: The multi-seed file read by single runs (written by ``refimpl run claims`` with the default ``--out``).
VERDICTS = os.path.join(os.path.dirname(__file__), "claims.json")

METHOD = ("95% Student-t interval of the mean paired effect over seeds (same seed: same data, split and "
          "initial weights for every method); holds = interval above 0, fails = below 0, "
          "inconclusive = contains 0")


def verdict(low: float, high: float) -> str:
    """``"holds"`` when ``low > 0``, ``"fails"`` when ``high < 0``, else ``"inconclusive"``.

    >>> verdict(0.01, 0.2), verdict(-0.3, -0.1), verdict(-0.1, 0.2)
    ('holds', 'fails', 'inconclusive')
    """
    if not low <= high:
        raise ValueError(f"low must be <= high, got low={low!r}, high={high!r}")
    return "holds" if low > 0 else "fails" if high < 0 else "inconclusive"


def interval(effects, *, level: float = LEVEL) -> dict:
    """Mean of the per-seed ``effects``, its t-interval and the verdict.

    Returns ``{"n", "mean", "sd", "low", "high", "level", "verdict"}``
    (``sd`` with ``n - 1`` degrees of freedom). At least two finite effects
    are needed: one seed has no spread to put an interval on.

    >>> s = interval([0.5, 0.7, 0.6, 0.8, 0.4])
    >>> s["n"], round(s["mean"], 3), round(s["high"] - s["mean"], 4), s["verdict"]
    (5, 0.6, 0.1963, 'holds')
    """
    from scipy.stats import t

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    x = np.asarray(effects, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"effects must be a 1-D sequence of per-seed effects, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("effects must be finite (drop the seeds whose effect is undefined first)")
    if len(x) < 2:
        raise ValueError(f"effects must hold at least 2 seeds for an interval, got {len(x)}")
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    half = float(t.ppf((1 + level) / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return {"n": len(x), "mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "level": level,
            "verdict": verdict(mean - half, mean + half)}


def summarise(effects) -> dict:
    """:func:`interval` of the finite ``effects`` (None = undefined on that seed); verdict ``"n/a"``
    with fewer than two."""
    finite = [e for e in effects if e is not None and math.isfinite(e)]
    if len(finite) < 2:
        return {"n": len(finite), "mean": None, "sd": None, "low": None, "high": None, "level": LEVEL,
                "verdict": "n/a"}
    return interval(finite)


# ---------------------------------------------------------------- ablations of the data's settings


@dataclasses.dataclass(frozen=True)
class Ablation:
    """A claim about a setting of the data: the recipe run again with ``overrides`` (the setting
    removed), ``margin(methods) -> (value, text)`` compared with and without it."""

    recipe: str
    claim: str
    overrides: dict
    margin: object
    note: str

    def compare(self, with_setting: dict, without: dict) -> dict:
        """The claim for one seed: effect = margin with the setting minus margin without it."""
        a, text_a = self.margin(with_setting)
        b, text_b = self.margin(without)
        return _common.claim(self.claim, a - b > 0,
                             f"with the setting: {text_a}; without: {text_b} (difference {a - b:+.4f})", a - b)


def _conpro_f1_margin(methods):
    best, rival = "ConPro (n=20)", "SupCon-n"
    gap = methods[best]["macro_f1"] - methods[rival]["macro_f1"]
    return gap, f"macro_f1 {best} {methods[best]['macro_f1']:.4f} vs {rival} {methods[rival]['macro_f1']:.4f}"


ABLATIONS = (
    Ablation(
        recipe="conpro",
        claim="ConPro's macro-F1 margin over SupCon-n is larger with the class imbalance than on balanced "
              "classes (its large margin is on the more imbalanced VinDr-Mammo)",
        # balanced classes; only the two methods the claim compares need n = 20
        overrides={"class_weights": [1, 1, 1, 1, 1, 1], "reference_counts": [20]},
        margin=_conpro_f1_margin,
        note="the data's class imbalance (data_synth.ordinal_severity's class_weights, the recipe's "
             "Papilledema-like default) is removed and ConPro and SupCon-n trained again on the same seed; "
             "the effect is how much larger ConPro's macro-F1 margin over SupCon-n is with the imbalance. "
             "The paper's large margin is on VinDr-Mammo, far more imbalanced than Papilledema, whose "
             "8 : 1 between the extreme grades this data follows; the text gives no class counts, and a "
             "stronger imbalance was not tried (a setting is fixed before the run, not tuned to a result).",
    ),
)


# ---------------------------------------------------------------- running and tabling


def collect(names, seeds, *, fast=False, progress=False, save=None, header=None, **options) -> dict:
    """Run every recipe in ``names`` (and its ``ABLATIONS``) on every seed, seed after seed.

    Returns ``{recipe: {"runs": [{"seed", "methods", "claims", "seconds"}], "ablations":
    {claim: [{"seed", "methods", "claims", "seconds"}]}}}``. With ``save`` (a JSON path) it is
    written there after every run as ``{**header, "runs": ...}`` (``header``: the command,
    ``fast`` and the fingerprint), so that an interrupted regeneration keeps every recipe's
    finished seeds and :func:`rewrite` can table them (seed-major order: all recipes have the
    same seeds up to the last one).
    """
    out = {name: {"runs": [], "ablations": {a.claim: [] for a in ABLATIONS if a.recipe == name}}
           for name in names}
    for seed in seeds:
        for name in names:
            out[name]["runs"].append(_timed(name, seed, fast, progress, options, {}))
            _report(name, seed, out[name]["runs"][-1])
            if save:
                _common.write_json(save, {**(header or {}), "runs": out})
            for ab in (a for a in ABLATIONS if a.recipe == name):
                out[name]["ablations"][ab.claim].append(_timed(name, seed, fast, progress, options, ab.overrides))
                _report(f"{name} without the setting", seed, out[name]["ablations"][ab.claim][-1])
                if save:
                    _common.write_json(save, {**(header or {}), "runs": out})
    return out


def _timed(name, seed, fast, progress, options, overrides) -> dict:
    watch = _common.Stopwatch()
    result = module(name).run(seed=seed, fast=fast, progress=progress, **options, **overrides)
    return {"seed": seed, "methods": result["methods"], "claims": result["claims"], "seconds": watch.seconds()}


def _report(label, seed, run):
    effects = ", ".join("n/a" if c["effect"] is None else f"{c['effect']:+.3f}" for c in run["claims"])
    print(f"{label} seed {seed}: effects {effects} ({run['seconds']:.0f} s)", flush=True)


def tables(results: dict) -> dict:
    """Per recipe, one summary per claim: ``{"claim", "effects", "seeds", "evidence"} | summarise(...)``.

    Ablation claims are paired by seed: a seed counts only when both its runs finished.
    """
    out = {}
    for name, res in results.items():
        runs = res["runs"]
        rows = []
        for k, first in enumerate(runs[0]["claims"] if runs else []):
            effects = [r["claims"][k]["effect"] for r in runs]
            rows.append({"claim": first["claim"], "effects": effects, "seeds": [r["seed"] for r in runs],
                         "evidence": f"seed {runs[0]['seed']}: {first['evidence']}", **summarise(effects)})
        for ab in (a for a in ABLATIONS if a.recipe == name):
            base = {r["seed"]: r for r in runs}
            pairs = [(base[r["seed"]], r) for r in res.get("ablations", {}).get(ab.claim, []) if r["seed"] in base]
            if not pairs:
                continue
            claims = [ab.compare(a["methods"], b["methods"]) for a, b in pairs]
            effects = [c["effect"] for c in claims]
            rows.append({"claim": ab.claim, "effects": effects, "seeds": [a["seed"] for a, _ in pairs],
                         "evidence": f"seed {pairs[0][0]['seed']}: {claims[0]['evidence']}",
                         **summarise(effects)})
        out[name] = rows
    return out


def _fmt(value, spec="+.3f"):
    return "n/a" if value is None else format(value, spec)


def markdown(results: dict, *, fast=False, command="refimpl run claims", fingerprint_text="", status="") -> str:
    """The Markdown document for :func:`collect`'s results."""
    summary = tables(results)
    lines = ["# Claims of each paper, checked on the synthetic data", "",
             f"Written by `{command}` ({'fast' if fast else 'default'} configurations). "
             + (f"**{status}** " if status else "")
             + "Do not edit by hand: change the recipe and run the command again.", "",
             f"Numeric fingerprint of the machine that wrote it: {fingerprint_text}", "",
             "**How to read it.** For each seed, a claim's *effect* is the margin in the claim's direction "
             "(positive when that seed agrees with the paper), a difference between methods that saw the same "
             "data, split and initial weights. Over the n seeds: the mean effect and its 95% Student-t "
             "interval (mean +- t(0.975, n - 1) sd / sqrt(n)). Verdict: **holds** when the interval is above "
             "0, **fails** when it is below 0, **inconclusive** when it contains 0 (the seeds do not settle "
             "the sign). A single `refimpl run` prints its own seed's effect beside the verdict read from "
             "this table: one seed's sign varies with the seed and with the machine (the BLAS kernel "
             "changes the last bits, then the path training takes).", ""]
    for name, rows in summary.items():
        res = results[name]
        mod = module(name)
        notes = {**getattr(mod, "CLAIM_NOTES", {}), **{a.claim: a.note for a in ABLATIONS if a.recipe == name}}
        # claims about a setting of the data are explained whatever their verdict
        settings = {a.claim for a in ABLATIONS} | set(getattr(mod, "SETTING_CLAIMS", ()))
        seconds = [r["seconds"] for r in res["runs"]]
        lines += [f"## {name}", ""]
        if not rows:
            lines += ["Not run in this regeneration (see the header).", ""]
            continue
        if seconds:
            lines += [f"Wall time per run: median {statistics.median(seconds):.0f} s (max {max(seconds):.0f} s, "
                      f"{len(seconds)} runs) on the machine that wrote this file.", ""]
        lines += ["| claim | n | mean effect | 95% interval | verdict | effect per seed (seeds "
                  f"{', '.join(str(s) for s in rows[0]['seeds']) if rows else ''}) |",
                  "|---|---|---|---|---|---|"]
        why = []
        for row in rows:
            shown = ", ".join(_fmt(e) for e in row["effects"])
            span = "n/a" if row["low"] is None else f"[{row['low']:+.3f}, {row['high']:+.3f}]"
            lines.append(f"| {row['claim']} | {row['n']} | {_fmt(row['mean'])} | {span} | "
                         f"**{row['verdict']}** | {shown} |")
            if row["verdict"] != "holds" or row["claim"] in settings:
                why.append(f"- **{row['claim']}** ({row['verdict']}): "
                           + notes.get(row["claim"], "no explanation recorded in the recipe's CLAIM_NOTES."))
        lines += ["", f"The metrics behind each effect, first seed ({rows[0]['seeds'][0] if rows else ''}):", ""]
        lines += [f"- *{r['claim']}*: {r['evidence'].split(': ', 1)[1]}" for r in rows]
        if why:
            lines += ["", "Notes on the claims about a setting of the data and on each claim that does not hold:",
                      ""] + why
        lines.append("")
    return "\n".join(lines)


def verdict_file(results: dict, *, fast: bool, command: str, fingerprint: dict) -> dict:
    """The multi-seed file's contents: per claim its summary; the per-seed metrics for the record."""
    return {"command": command, "fast": bool(fast), "method": METHOD, "fingerprint": fingerprint,
            "claims": {name: rows for name, rows in tables(results).items()}, "runs": results}


@functools.lru_cache(maxsize=4)
def _load_verdicts(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    return {row["claim"]: {k: row[k] for k in ("verdict", "n", "mean", "low", "high", "level")}
            for rows in doc["claims"].values() for row in rows}, bool(doc.get("fast"))


def multi_seed(claim_text: str, path: str = VERDICTS) -> dict | None:
    """The multi-seed verdict of ``claim_text`` from ``path`` (default: :data:`VERDICTS`), or None."""
    loaded = _load_verdicts(path)
    if loaded is None or claim_text not in loaded[0]:
        return None
    return {**loaded[0][claim_text], "source": "docs/claims.md", "fast": loaded[1]}


def main(args) -> int:
    from ..fingerprint import describe, fingerprint

    names = [n for n in RECIPES if installed(n)]
    seeds = list(args.seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        print(f"refimpl run claims: --seeds must be at least 2 distinct seeds for an interval, got {seeds}")
        return 2
    path = args.out or os.path.join("docs", "claims.md")
    stem = os.path.splitext(path)[0]
    json_path = VERDICTS if args.out is None else stem + ".json"
    command = f"refimpl run claims --seeds {' '.join(map(str, seeds))}" + (" --fast" if args.fast else "")
    fp = fingerprint()
    results = collect(names, seeds, fast=args.fast, progress=not args.quiet, save=stem + ".runs.json",
                      header={"command": command, "fast": bool(args.fast), "fingerprint": fp},
                      backend=args.backend, dtype=args.dtype)
    write(results, path, json_path, fast=args.fast, command=command, fp=fp, describe=describe)
    os.remove(stem + ".runs.json")  # everything it held is in the multi-seed file now
    print(f"wrote {path} and {json_path}")
    return 0


def rewrite(json_path: str, path: str, *, out_json: str | None = None, note: str = "") -> None:
    """Write the Markdown table at ``path`` and the multi-seed file ``out_json`` (default
    ``json_path``) again from ``json_path``: a multi-seed file, or the ``.runs.json`` an
    interrupted regeneration left (its finished runs only; the header says which seeds ran).
    The same numbers and fingerprint, the recipes' current notes; ``note`` is added to the header
    (how the runs were made, the machine's load)."""
    from ..fingerprint import describe

    with open(json_path, encoding="utf-8") as f:
        doc = json.load(f)
    status = doc.get("status", "")
    if "claims" not in doc:  # a .runs.json: say what finished
        done = {name: sorted({r["seed"] for r in res["runs"]}) for name, res in doc["runs"].items()}
        status = ("It was stopped before every seed had run; these are the runs that finished (seeds "
                  + "; ".join(f"{name} {', '.join(map(str, s)) or 'none'}" for name, s in done.items()) + ").")
    write(doc["runs"], path, out_json or json_path, fast=doc["fast"], command=doc["command"],
          fp=doc["fingerprint"], describe=describe, status=" ".join(t for t in (status, note) if t))


def write(results, path, json_path, *, fast, command, fp, describe, status="") -> None:
    """Write the Markdown table and the multi-seed file for ``results`` (``status``: a sentence on
    how the run ended, when it did not finish)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(markdown(results, fast=fast, command=command, fingerprint_text=describe(fp), status=status))
    _common.write_json(json_path, {**verdict_file(results, fast=fast, command=command, fingerprint=fp),
                                   "status": status})


def installed(name: str) -> bool:
    """Whether recipe ``name``'s module exists in this installation."""
    try:
        module(name)
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.{name}":
            raise
        return False
    return True
