"""Likely causes of a systematic failure, for :func:`refimpl.gold.compare`, ``verify`` and the lab checks.

A failing array is examined for the errors that show as a pattern rather
than as noise: a constant ratio got/want (matched against named candidates:
``1/dout``, ``M/(M-k)`` for ``k`` anchors without positives, a temperature
ratio, the official two-view mean's 2, a sign flip ...), the transpose of
the expected array, NaN entries, zeros, and errors that all lie within the
float32 tolerance while the float64 one was applied. Each finding is a
sentence with ``{keys}`` and ``{be}`` placeholders, so that the findings of
several arrays of one case merge into one sentence ("out and dz are ...").
:func:`patterns` does the same across cases: which keyword values separate
the passing cases from the failing ones.
"""
from __future__ import annotations

import dataclasses
import difflib
from fractions import Fraction

import numpy as np

#: relative distance within which a ratio matches a candidate (float32 results are rounded earlier).
MATCH = {"float64": 1e-8, "float32": 1e-4}
#: float32 tolerance the "saved as float64" hint applies: gold's float32 rtol, atol a fraction of the scale.
FLOAT32_HINT = (1e-3, 1e-5)
#: a ratio is estimated on the entries whose |want| is at least this fraction of the largest.
_SIGNIFICANT = 1e-3
#: HobbitLong/SupContrast's base temperature (its loss is scaled by tau / base_tau).
SUPCON_BASE_TEMPERATURE = 0.07
L = "refimpl.losses."
#: default temperatures of other codes, tried on a failing case whose temperature differs
OTHER_TEMPERATURES = {
    0.07: "the default of HobbitLong/SupContrast and of pytorch-metric-learning's NTXentLoss",
    0.1: "the default of refimpl's contrastive losses and of pytorch-metric-learning's SupConLoss",
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One likely cause: ``text`` with ``{keys}`` (the arrays concerned), ``{be}``/``{have}`` (their verbs)
    and ``{ref}`` (what they were compared with: gold, or compare's ``want``)."""

    kind: str
    text: str
    keys: tuple = ()
    #: a finding that alone says little (the ratio of one number): kept only when another array shares it
    weak: bool = False

    def sentence(self, ref: str = "gold") -> str:
        keys = self.keys or ("the result",)
        named = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
        plural = len(keys) > 1
        return self.text.format(keys=named, be="are" if plural else "is", have="have" if plural else "has",
                                ref=ref)


def merge(findings) -> tuple:
    """Findings of several arrays with the same text as one finding naming all their keys, in order."""
    merged = {}
    for f in findings:
        if (f.kind, f.text) in merged:
            old = merged[f.kind, f.text]
            merged[f.kind, f.text] = dataclasses.replace(old, keys=old.keys + f.keys, weak=old.weak and f.weak)
        else:
            merged[f.kind, f.text] = f
    return tuple(f for f in merged.values() if not f.weak)


# ------------------------------------------------------------------ one array


def examine(key: str, got: np.ndarray, want: np.ndarray, dtype: str, tolerance: dict,
            candidates: dict | None = None) -> tuple:
    """Findings for one failing array: ``got`` (float64 values of a ``dtype`` result) against ``want``.

    ``tolerance``: the ``{"rtol", "atol"}`` applied; ``candidates``: description -> ratio.
    """
    rtol, atol = tolerance["rtol"], tolerance["atol"]
    if (np.isnan(got) & ~np.isnan(want)).any():
        return (Finding("nan", "{keys} {have} NaN entries where {ref} is finite", (key,)),)
    if want.ndim == 2 and within(got.T, want, rtol, atol):
        return (transposed(key),)
    if not got.any() and want.any():
        return (Finding("zero", "{keys} {be} all zero where {ref} is not (a gradient that never reached "
                                "this array, or a result left unfilled)", (key,)),)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    if dtype == "float64" and within(got, want, FLOAT32_HINT[0], max(atol, FLOAT32_HINT[1] * scale)):
        return (Finding("float32", _float32_text(got, rtol), (key,)),)
    ratio = constant_ratio(got, want, rtol, atol)
    if ratio is not None:
        return (_ratio_finding(key, ratio, want.size, dtype, candidates or {}),)
    return ()


def transposed(key: str) -> Finding:
    return Finding("transpose", "{keys} {be} the transpose of {ref} (rows and columns swapped: check the "
                                "layout in the case's conventions)", (key,))


def within(got, want, rtol, atol) -> bool:
    """Every entry of ``got`` within ``atol + rtol |want|`` of ``want`` (same shape; NaN never is)."""
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= atol + rtol * np.abs(want)))


def constant_ratio(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> float | None:
    """``r`` when ``got`` equals ``r * want`` within the tolerance at every entry (``r`` not 1), else None."""
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    significant = np.abs(want) >= _SIGNIFICANT * scale
    if scale == 0.0 or not np.all(np.isfinite(got)):
        return None
    ratio = float(np.median(got[significant] / want[significant]))
    if ratio == 0.0 or not np.isfinite(ratio) or abs(ratio - 1.0) <= rtol:
        return None
    if not within(got, ratio * want, rtol, atol * max(abs(ratio), 1.0)):
        return None
    return ratio


def ratio_text(ratio: float, dtype: str = "float64") -> str:
    """``1.1428571 (8/7)``: the ratio with a small fraction when it is one."""
    fraction = Fraction(ratio).limit_denominator(64)
    exact = fraction.denominator > 1 and abs(float(fraction) - ratio) <= MATCH[dtype] * abs(ratio)
    return f"{ratio:.8g}" + (f" ({fraction.numerator}/{fraction.denominator})" if exact else "")


def _ratio_finding(key, ratio, size, dtype, candidates) -> Finding:
    candidates = {"-1 (the sign flipped)": -1.0, **candidates}
    matched = [name for name, c in candidates.items() if c and abs(ratio / c - 1.0) <= MATCH[dtype]]
    shown = ratio_text(candidates[matched[0]] if matched else ratio, dtype)
    text = "{keys} {be} " + shown + " \u00d7 {ref}"
    if matched:  # the caller's descriptions, braces escaped for sentence()'s format
        text += ", which matches " + "; or ".join(matched).replace("{", "{{").replace("}", "}}")
    else:
        text += " (a constant factor: a reduction, a scale or a temperature factor)"
    # one number always has a ratio: alone, a cause only when it is a known one
    return Finding("ratio", text, (key,), weak=size == 1 and not matched)


def _float32_text(got: np.ndarray, rtol: float) -> str:
    within32 = ("{keys} {be} within the float32 tolerance (rtol " + f"{FLOAT32_HINT[0]:.0e}"
                + ") but not the float64 one applied (rtol " + f"{rtol:.0e}" + ")")
    if np.all(got.astype(np.float32).astype(np.float64) == got):
        return (within32 + ", and every entry is a float32 number: looks like float32 saved as float64 "
                "(save the float32 array as it is, so that the float32 tolerance applies, or compute in "
                "float64)")
    return within32 + ": a float32 step inside a float64 computation (a float32 constant, intermediate or matmul)"


def digits(pairs) -> int:
    """Significant digits (7 to 17) that print every ``(got, want)`` pair as two different numbers."""
    for n in range(7, 18):
        if all(f"{g:.{n - 1}e}" != f"{w:.{n - 1}e}" for g, w in pairs if g != w and not np.isnan(g - w)):
            return n
    return 17


def nearest(name: str, names) -> list:
    """Up to three of ``names`` nearest ``name`` (difflib, ignoring case), best first."""
    lower = {}
    for n in names:
        lower.setdefault(n.lower(), n)
    return [lower[n] for n in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]


# ------------------------------------------------------------------ what a case knows


def anchors_without_positives(function: str, kwargs: dict, arrays: dict) -> tuple | None:
    """Rows of a contrastive loss's batch that have no positive (None: the function has no such rows).

    Kernel/SupCon: a label no other row has (paper variant; official rows are
    two views, each the other's positive; without labels every row is a
    positive). AdaCon: a label (or, with buckets, a bucket ``y // bucket``)
    no other row has. These rows contribute 0 to the loss, still count in the
    mean, and get no gradient as anchors.
    """
    if function in (L + "kernel.forward", L + "supcon.forward"):
        if kwargs.get("variant") == "official" or arrays.get("labels") is None:
            return ()
        keys = np.asarray(arrays["labels"])
    elif function == L + "adacon.forward":
        keys = np.asarray(arrays["y"], dtype=np.float64)
        bucket = kwargs.get("bucket") or (0.05 if kwargs.get("variant") == "official" else None)
        if bucket is not None:
            keys = np.floor_divide(keys, bucket)
    else:
        return None
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return tuple(int(i) for i in np.flatnonzero(counts[inverse] == 1))


def rows(indices) -> str:
    return ("row " if len(indices) == 1 else "rows ") + ", ".join(str(i) for i in indices)


def case_candidates(function: str, kwargs: dict, arrays: dict) -> dict:
    """Named ratios got/want that a case makes likely: description -> ratio."""
    found = {}
    dout = arrays.get("dout")
    if dout is not None and np.ndim(dout) == 0:
        d = float(dout)
        found[f"1/dout (dout = {d:.6g}): the gradient not multiplied by the upstream gradient dout"] = 1 / d
        found[f"dout (= {d:.6g}): the output multiplied by dout, or dout applied twice"] = d
    first = next((a for k, a in arrays.items() if k != "dout" and np.ndim(a) >= 1), None)
    m = int(np.shape(first)[0]) if first is not None else 0
    reduction = kwargs.get("reduction")
    if reduction == "mean" and m > 1 and kwargs.get("variant") != "official":
        found[f"M = {m}: the sum over the {m} rows where gold takes the mean"] = float(m)
        if m % 2 == 0 and function.startswith((L + "kernel.", L + "supcon.", L + "adacon.")):
            found[f"2: the sum over the {m} = 2N anchors divided by N (the official WSP two-view mean) where "
                  f"gold divides by M = {m}"] = 2.0
    if reduction == "sum" and m > 1:
        found[f"1/M = 1/{m}: the mean over the {m} rows where gold sums"] = 1.0 / m
    if reduction is None and m > 1:  # a layer: batch sums (bias and weight gradients, statistics)
        found[f"1/N = 1/{m}: a mean over the N = {m} rows of the batch where gold sums"] = 1.0 / m
        found[f"N = {m}: a sum over the N = {m} rows of the batch where gold averages"] = float(m)
    if function == L + "kernel.forward" and kwargs.get("variant") == "official":
        found[f"1/2: the mean over the {m} = 2N anchors where the official code divides their sum by "
              f"N = {m // 2} (twice the mean)"] = 0.5
    anchors = anchors_without_positives(function, kwargs, arrays) or ()
    k = len(anchors)
    without = f"{k} without positives: {rows(anchors)}; e.g. pytorch-metric-learning's default AvgNonZeroReducer"
    if anchors and reduction == "mean" and m > k:
        found[f"M/(M-k) = {m}/{m - k}: the mean over the {m - k} anchors with positives where gold "
              f"divides by all M = {m} ({without})"] = m / (m - k)
    if anchors and reduction == "sum" and m > k:
        found[f"1/(M-k) = 1/{m - k}: the mean over the {m - k} anchors with positives where gold "
              f"sums ({without})"] = 1 / (m - k)
    tau, base = kwargs.get("temperature"), kwargs.get("base_temperature")
    if tau and base and tau != base:
        found[f"tau/base_tau = {tau:g}/{base:g}: SupCon's temperature factor applied twice"] = tau / base
        found[f"base_tau/tau = {base:g}/{tau:g}: SupCon's temperature factor tau/base_tau left out"] = base / tau
    elif tau and base is None and function.startswith((L + "kernel.", L + "supcon.")):
        found[f"tau/{SUPCON_BASE_TEMPERATURE:g} = {tau:g}/{SUPCON_BASE_TEMPERATURE:g}: HobbitLong/SupContrast's "
              f"factor tau/base_tau (base {SUPCON_BASE_TEMPERATURE:g}) where the case has none"] = \
            tau / SUPCON_BASE_TEMPERATURE
    return found


def case_findings(arrays: tuple, anchors) -> tuple:
    """Findings that need the case: NaN results where the case has anchors without positives."""
    if anchors and any(f.kind == "nan" for a in arrays for f in a.findings):
        one = len(anchors) == 1
        return (Finding("anchors", f"{rows(anchors)} of the batch {'is an anchor' if one else 'are anchors'} "
                                   f"without positives (no other row shares {'its' if one else 'their'} "
                                   "label): gold counts such an anchor as 0 in the loss, still in the mean, "
                                   "with no gradient as an anchor; an average over its empty set of "
                                   "positives is 0/0 = NaN"),)
    return ()


# ------------------------------------------------------------------ across cases

GIVEN = "given"
_ABSENT = object()


def features(function: str, kwargs: dict, given, dtype: str) -> dict:
    """What may separate passing from failing cases: the function, scalar keyword values, given arrays."""
    found = {"function": function.removeprefix("refimpl.").removesuffix(".forward"), "result dtype": dtype}
    found.update({k: v for k, v in kwargs.items() if v is None or isinstance(v, (bool, int, float, str))})
    found.update({k: GIVEN for k in given if k != "dout"})
    return found


#: keyword arguments that decide conventions: named first when several describe the same cases
_FIRST = ("variant", "normalize", "reduction")


def _feature(key, value) -> str:
    if value is _ABSENT:
        return f"no {key!r} argument"
    if value == GIVEN and not isinstance(value, bool):
        return f"{key} given"
    if key in ("function", "result dtype"):
        return f"{key} {value}"
    return f"{key}={value!r}"


def _groups(cases) -> dict:
    """``{cases sharing a feature value: [descriptions of the features they share]}``, best description first."""
    by_name = {n: f for n, _, f in cases}
    keys = list(dict.fromkeys(k for _, _, f in cases for k in f))
    keys.sort(key=lambda k: (k not in _FIRST, k in ("function", "result dtype"),
                             any(f.get(k) == GIVEN for f in by_name.values())))
    groups = {}
    for key in keys:
        values = {n: f.get(key, _ABSENT) for n, f in by_name.items()}
        for value in dict.fromkeys(values.values()):
            group = frozenset(n for n, v in values.items() if v == value and type(v) is type(value))
            groups.setdefault(group, []).append(_feature(key, value))
    return groups


def _say(features: list) -> str:
    return features[0] + (f" (equally {', '.join(features[1:3])})" if len(features) > 1 else "")


def patterns(cases, limit: int = 3) -> tuple:
    """Sentences naming the feature values that separate passing from failing cases.

    ``cases``: ``[(name, ok, features)]``. First a value shared by exactly the
    passing (or exactly the failing) cases; else two values whose cases are
    exactly the passing (or failing) ones; else values shared by at least two
    cases that all pass (or all fail).
    """
    passing = frozenset(n for n, ok, _ in cases if ok)
    failing = frozenset(n for n, ok, _ in cases if not ok)
    if not passing or not failing:
        return ()
    groups = _groups(cases)
    out = []
    for side, verdict, other in ((passing, "passes", "fails"), (failing, "fails", "passes")):
        if side in groups and not out:  # a two-valued key separates twice: say it once
            out.append(f"every case with {_say(groups[side])} {verdict}, every other {other}")
    if not out:
        for side, verdict in ((passing, "pass"), (failing, "fail")):
            pure = [g for g in groups if g <= side and g != side]
            pairs = [(a, b) for i, a in enumerate(pure) for b in pure[i + 1:] if a | b == side]
            out += [f"the cases that {verdict} are exactly those with {_say(groups[a])} or {_say(groups[b])}"
                    for a, b in pairs[:1]]
    if not out:
        pure = sorted((g for g in groups if len(g) >= 2 and (g <= passing or g <= failing)), key=len, reverse=True)
        out = [f"all {len(g)} cases with {_say(groups[g])} {'pass' if g <= passing else 'fail'}, "
               "the others are mixed" for g in pure]
    return tuple("pattern: " + s for s in out[:limit])


# ------------------------------------------------------------------ the case recomputed under other conventions


def _interleaved(n2: int) -> np.ndarray:
    """Rows as code that reads two views interleaved (2i, 2i+1) sees view-major data: q[t] = 2t, q[N+t] = 2t+1."""
    n = n2 // 2
    return np.concatenate([np.arange(n) * 2, np.arange(n) * 2 + 1])


def _alternatives(function: str, kwargs: dict, arrays: dict):
    """``(cause, kwargs, row order)``: conventions a failing implementation may have used instead."""
    tau = kwargs.get("temperature")
    if tau and tau != 1:
        yield f"with temperature = {tau:g}^2 = {tau * tau:g}: the temperature applied twice", \
            {**kwargs, "temperature": tau * tau}, None
        yield "with temperature = 1: the temperature left out", {**kwargs, "temperature": 1.0}, None
        for other, whose in OTHER_TEMPERATURES.items():
            if other != tau:
                yield f"with temperature = {other:g}: {whose}", {**kwargs, "temperature": other}, None
    if kwargs.get("normalize") is True and kwargs.get("variant", "paper") == "paper":
        yield "with normalize=False: the rows not L2-normalised", {**kwargs, "normalize": False}, None
    two_views = function == L + "supcon.ntxent_forward" or (
        function in (L + "kernel.forward", L + "adacon.forward") and kwargs.get("variant") == "official") or (
        function == L + "supcon.forward" and arrays.get("labels") is None)
    z = arrays.get("z")
    if two_views and z is not None and len(z) % 2 == 0 and len(z) > 2:
        yield ("on rows reordered: the views read interleaved (rows 2i, 2i+1 as the two views of sample i) "
               "where gold stacks them view-major (rows i and i + N)"), kwargs, _interleaved(len(z))


def replays(function: str, backward: str | None, kwargs: dict, arrays: dict, results: dict,
            tolerance: dict) -> tuple:
    """Findings: refimpl's loss recomputed under another convention matches every result.

    ``arrays``: the case's given arrays (``dout`` included); ``results``: the
    implementation's, as float64 NumPy arrays; ``tolerance``: the case's
    (by dtype).
    """
    dtypes = {k: str(np.asarray(a).dtype) for k, a in results.items()}
    if not function.startswith(L) or backward is None or not set(dtypes.values()) <= set(tolerance):
        return ()
    from ._spec import Spec, run_forward_backward  # refimpl's own losses, only when a case fails

    spec = Spec("replay", function, draw=None, backward=backward)
    given = {k: a for k, a in arrays.items() if k != "dout"}
    for cause, changed, order in _alternatives(function, kwargs, arrays):
        moved = given if order is None else {k: a[order] if np.ndim(a) >= 1 and len(a) == len(order) else a
                                             for k, a in given.items()}
        try:
            rows_ = run_forward_backward(spec, moved, changed, lambda out: arrays["dout"])
        except (ValueError, TypeError, ArithmeticError):  # a convention these arguments cannot take
            continue
        replayed = {name: a for name, role, a in rows_ if role in ("output", "grad")}
        if order is not None:  # gradients back to the rows the implementation was given
            replayed = {k: _unpermute(a, order) if k != "out" else a for k, a in replayed.items()}
        if replayed.keys() <= results.keys() and all(
                within(np.asarray(results[k], dtype=np.float64), np.asarray(a, dtype=np.float64),
                       tolerance[dtypes[k]]["rtol"], tolerance[dtypes[k]]["atol"]) for k, a in replayed.items()):
            return (Finding("replay", "the results match gold recomputed " + cause),)
    return ()


def _unpermute(a, order):
    a = np.asarray(a)
    if a.ndim == 0 or len(a) != len(order):
        return a
    out = np.empty_like(a)
    out[order] = a
    return out
