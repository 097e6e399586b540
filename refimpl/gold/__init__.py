"""Gold data: check any implementation of refimpl's losses and layers against float64 references.

Each gold case holds, computed by refimpl in float64: the inputs, parameters
and state a function is called with, an upstream gradient ``dout``, the
outputs, and the gradient ``d<name>`` of ``sum(out * dout)`` with respect to
every input and parameter that has one. The cases cover every loss (paper and
official variants, baselines), every layer and TinyNet + head; the manifest
(``data/manifest.json``) gives each case's function, keyword arguments, the
role, dtype, shape and sha256 of each array, and its float64 and float32
tolerances. Gold is a regression oracle; correctness comes from gradient
checks, naive-loop oracles and the PyTorch cross-checks.

In Python, an implementation is a function ``fn(inputs) -> results``:
``inputs`` maps the names of the arrays (NumPy, float64) and of the keyword
arguments to their values; ``results`` maps ``"out"`` and each gradient key
(``"da"``, ``"dw"``, ...) to arrays (float64 or float32; any framework's CPU
arrays that NumPy can read):

>>> from refimpl import gold
>>> gold.cases("linear*")
['linear', 'linear-nobias']
>>> case = gold.load("linear")
>>> sorted(case.inputs), sorted(case.expected)
(['b', 'dout', 'w', 'x'], ['db', 'dw', 'dx', 'out'])
>>> def my_linear(inputs):
...     x, w, b, dout = inputs["x"], inputs["w"], inputs["b"], inputs["dout"]
...     return {"out": x @ w.T + b, "dx": dout @ w, "dw": dout.T @ x, "db": dout.sum(axis=0)}
>>> gold.verify("linear", my_linear).ok
True

Each loss's first case, ``<loss>-clean``, is the one to pass first (paper
variant, default keyword arguments, a small batch in which every anchor has
a positive); the manifest's ``conventions`` and each case's description say
every convention that changes a number. :func:`describe` (``refimpl gold
list``) lists the cases.

A report names, for each failing case, its worst entries and the likely
cause of a systematic error (``result.diagnosis``: a constant ratio matched
against the case's candidates such as ``1/dout`` or ``M/(M-k)``, a
transpose, NaN from anchors without positives, float32 saved as float64,
the loss recomputed under another convention), and, across cases, the
keyword values that separate passing from failing ones
(``report.patterns()``). Result keys a case does not have are reported and
not compared; ``strict=True`` fails on them, and in :func:`verify_results`
on the selected cases that have no result (``report.missing``).

From the command line, for any language: ``refimpl gold export --case
PATTERN --out DIR`` writes each case's given arrays (``DIR/<case>.npz``) and
``DIR/cases.json`` (keyword arguments, conventions, the keys, shapes and
dtypes expected back); save the results as ``<case>.npz`` with those keys and
run ``refimpl gold verify RESULTS [--case PATTERN | --exported DIR] [--strict]``.

Patterns: a case name selects that case; a pattern with ``*``, ``?`` or
``[`` is matched as in a shell (``"kernel-official-*"``); any other text
selects the names that start with it (``"conv2d"``); commas separate several.
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import inspect
import json
from pathlib import Path

from . import _diagnose, _store
from ._compare import DTYPES, ArrayResult, CaseResult, Report, as_host, compare_array, compare_case
from ._make import FORMAT_VERSION, SEED, make
from ._spec import GIVEN_ROLES, resolve
from ._store import GoldError
from .._validate import check_nonnegative, check_positive

#: the gold data shipped with refimpl.
DATA_DIR = Path(__file__).resolve().parent / "data"

__all__ = ["ArrayResult", "Case", "CaseResult", "DATA_DIR", "FORMAT_VERSION", "GoldError", "Report", "SEED", "cases",
           "check", "compare", "describe", "export", "load", "make", "manifest", "verify", "verify_results"]


def manifest(gold=None) -> dict:
    """The manifest of the gold folder ``gold`` (default: the shipped data), format checked."""
    return _open(gold)[1]


def _open(gold) -> tuple:
    """``(folder, manifest)`` of the gold folder ``gold`` (None: the shipped data)."""
    directory = Path(gold) if gold is not None else DATA_DIR
    found = _store.read_manifest(directory)
    version = found.get("format_version") if isinstance(found, dict) else None
    if version != FORMAT_VERSION or not isinstance(found.get("cases"), dict):
        raise GoldError(f"gold manifest in {directory} has format version {version!r}; this refimpl "
                        f"reads version {FORMAT_VERSION} (regenerate with `refimpl gold make --out {directory}`)")
    return directory, found


def _select(names, pattern: str) -> list:
    chosen = []
    for part in (p.strip() for p in pattern.split(",")):
        if part in names:
            hits = [part]
        elif any(c in part for c in "*?["):
            hits = [n for n in names if fnmatch.fnmatchcase(n, part)]
        else:
            hits = [n for n in names if n.startswith(part)]
        if not hits:
            prefixes = sorted({n.split("-")[0] for n in names})
            raise ValueError(f"no gold case matches {part!r}{_did_you_mean(part, prefixes + names)}; "
                             "the cases start with: " + ", ".join(sorted({n.split('-')[0] for n in names}))
                             + " (list them with `refimpl gold list`)")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def compare(key: str, got, want, *, rtol: float = 1e-12, atol: float = 1e-15,
            candidates: dict | None = None) -> ArrayResult:
    """Compare one array with a reference entry by entry, as :func:`verify` compares gold arrays.

    An entry passes when ``|got - want| <= atol + rtol * |want|`` (NaN never
    passes). ``want`` is read as float64; ``got`` may be float64 or float32,
    from any framework whose CPU arrays NumPy can read. ``str(result)`` is one
    line ``PASS  key: ...`` on a pass; on a failure ``FAIL  key: ...``, the
    worst entries (with the digits it takes to tell got from want) and a
    ``likely cause:`` line for each systematic error found (also in
    ``result.diagnosis``): a constant ratio got/want (with the
    ``candidates``, description -> ratio, that it matches, and -1: a flipped
    sign), the transpose, NaN entries, an all-zero result, errors all within
    the float32 tolerance. ``result.raise_if_failed()`` raises it as an
    AssertionError.

    >>> import numpy as np
    >>> from refimpl import gold
    >>> want = np.array([[0.5, 0.25], [1.0, 0.0]])
    >>> print(gold.compare("w", want.copy(), want))
    PASS  w: all 4 entries within rtol 1e-12 + atol 1e-15 (float64, max abs 0.0e+00)
    >>> print(gold.compare("w", want / 8, want, candidates={"1/batch (a mean where a sum is due)": 1 / 8}))
    FAIL  w: 3 of 4 entries outside rtol 1e-12 + atol 1e-15 (float64)
      w[1, 0]  got +1.250000e-01  want +1.000000e+00  |diff| 8.75e-01
      w[0, 0]  got +6.250000e-02  want +5.000000e-01  |diff| 4.38e-01
      w[0, 1]  got +3.125000e-02  want +2.500000e-01  |diff| 2.19e-01
    likely cause: w is 0.125 (1/8) × want, which matches 1/batch (a mean where a sum is due)
    """
    rtol, atol = check_positive("rtol", rtol), check_nonnegative("atol", atol)  # rtol > 0: it divides
    if candidates is not None and not (hasattr(candidates, "items") and all(
            isinstance(k, str) and isinstance(v, (int, float)) for k, v in candidates.items())):
        raise TypeError("candidates must be a dict {description: ratio} of strings to numbers, "
                        f"got {candidates!r}")
    tolerance = {dtype: {"rtol": rtol, "atol": atol} for dtype in DTYPES}
    result = compare_array(key, got, as_host(want).astype("float64"), tolerance,
                           {k: float(v) for k, v in (candidates or {}).items()})
    return dataclasses.replace(result, reference="want")


def cases(pattern: str = "*", *, gold=None) -> list:
    """Names of the gold cases that match ``pattern`` (see the module docstring), in manifest order.

    Made for ``pytest.mark.parametrize("name", gold.cases("kernel"))``.
    """
    return _select(list(manifest(gold)["cases"]), pattern)


def describe(pattern: str = "*", *, gold=None) -> list:
    """One row per matching case, as ``refimpl gold list`` prints them.

    Each row: ``name``, ``function`` (``losses.kernel``, ``layers.conv2d``),
    ``variant`` ("-" where the function has none), ``kwargs`` (those that
    differ from the function's defaults) and ``description``.

    >>> from refimpl import gold
    >>> row = gold.describe("kernel-wsp-tau0.02")[0]
    >>> row["function"], row["variant"], row["kwargs"]
    ('losses.kernel', 'paper', {'sigma': 0.3, 'temperature': 0.02})
    """
    found = manifest(gold)["cases"]
    rows = []
    for name in _select(list(found), pattern):
        entry = found[name]
        rows.append({"name": name, "function": entry["function"].removeprefix("refimpl.").removesuffix(".forward"),
                     "variant": entry["kwargs"].get("variant", "-"),
                     "kwargs": _non_default(entry["function"], entry["kwargs"]),
                     "description": entry["description"]})
    return rows


def _non_default(function: str, kwargs: dict) -> dict:
    """The keyword arguments of a case that differ from the function's defaults (all, for a composite)."""
    try:
        params = inspect.signature(resolve(function)).parameters
    except (ImportError, AttributeError, ValueError):  # a gold folder from another refimpl
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k != "variant" and (
        k not in params or params[k].default is inspect.Parameter.empty or params[k].default != v)}


@dataclasses.dataclass(frozen=True)
class Case:
    """One gold case, its arrays read and checked against their sha256.

    ``inputs``: the given arrays (roles input, param, state, dout) and the
    keyword arguments, as :func:`verify` passes them to an implementation.
    ``expected``: the outputs and gradients. ``roles``: array name -> role.
    ``tolerance``: ``{"float64": {"rtol", "atol"}, "float32": {...}}``.
    """

    name: str
    function: str
    backward: str | None
    kwargs: dict
    description: str
    roles: dict
    tolerance: dict
    arrays: dict = dataclasses.field(repr=False)

    @property
    def inputs(self) -> dict:
        given = {k: a.copy() for k, a in self.arrays.items() if self.roles[k] in GIVEN_ROLES}
        return {**given, **copy.deepcopy(self.kwargs)}  # fresh copies: fn may modify them

    @property
    def expected(self) -> dict:
        return {k: a.copy() for k, a in self.arrays.items() if self.roles[k] not in GIVEN_ROLES}


def _load(directory: Path, found: dict, name: str) -> Case:
    entry = found["cases"][name]
    arrays = _store.read_checked(directory, entry)
    for key, meta in entry["arrays"].items():
        a = arrays.get(key)
        if (a is None or str(a.dtype) != meta["dtype"] or list(a.shape) != meta["shape"]
                or _store.array_sha256(a) != meta["sha256"]):
            raise GoldError(f"gold array {key!r} of case {name} does not match {_store.MANIFEST} "
                            "(corrupted or modified); reinstall refimpl or run "
                            f"`refimpl gold make --out {directory}`")
    roles = {k: meta["role"] for k, meta in entry["arrays"].items()}
    return Case(name, entry["function"], entry["backward"], entry["kwargs"], entry["description"],
                roles, entry["tolerance"], {k: arrays[k] for k in roles})


def load(name: str, *, gold=None) -> Case:
    """The gold case ``name``; a GoldError if its file is missing or does not match its hash."""
    directory, found = _open(gold)
    if name not in found["cases"]:
        raise ValueError(f"no gold case named {name!r}{_did_you_mean(name, found['cases'])} "
                         "(list them with refimpl.gold.cases() or `refimpl gold list`)")
    return _load(directory, found, name)


def _did_you_mean(name: str, names) -> str:
    near = _diagnose.nearest(name, names)
    return f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""


def _check(case: Case, results: dict, strict: bool) -> CaseResult:
    """``results`` against ``case``, with what the case knows for the diagnosis and the patterns."""
    result = compare_case(case.name, results, case.expected, case.tolerance, strict=strict,
                          candidates=_diagnose.case_candidates(case.function, case.kwargs, case.arrays),
                          anchors=_diagnose.anchors_without_positives(case.function, case.kwargs, case.arrays))
    given = {k: a for k, a in case.arrays.items() if case.roles[k] in GIVEN_ROLES}
    findings = result.findings
    if not result.ok and not findings and not result.problems:
        findings = _diagnose.replays(case.function, case.backward, case.kwargs, given,
                                     {k: as_host(v) for k, v in results.items()}, case.tolerance)
    return dataclasses.replace(result, findings=findings,
                               features=_diagnose.features(case.function, case.kwargs, given, result.dtype))


def check(name: str, results, *, gold=None, strict: bool = False) -> CaseResult:
    """Compare ``results`` (a mapping of output and gradient keys to arrays) with case ``name``.

    Keys the case does not have are reported and not compared; ``strict=True`` fails on them.
    """
    return _check(load(name, gold=gold), dict(results), strict)


def verify(pattern: str, fn, *, gold=None, strict: bool = False) -> Report:
    """Run ``fn(case.inputs)`` on every case matching ``pattern`` and compare what it returns.

    ``fn`` returns a mapping with ``"out"`` and every gradient key of the case
    (see :attr:`Case.expected`); float32 results are compared with the float32
    tolerances; other keys (a gradient the case does not have, such as
    ``ddepth``) are reported, and fail only with ``strict=True``. Returns a
    :class:`Report`: ``report.ok``, ``print(report)`` (each failing case with
    its worst entries and likely causes, then the keyword values that
    separate passing from failing cases), ``report.raise_if_failed()``.
    """
    directory, found = _open(gold)
    names = _select(list(found["cases"]), pattern)
    results = []
    for name in names:
        case = _load(directory, found, name)
        got = fn(case.inputs)
        if not hasattr(got, "keys"):
            raise TypeError(f"fn must return a mapping of result keys to arrays, got {type(got).__name__} "
                            f"for case {name}")
        results.append(_check(case, dict(got), strict))
    return Report(tuple(results), len(found["cases"]), strict=strict, selection=f"matching {pattern!r}",
                  n_matched=len(names))


def _result_files(path: Path) -> dict:
    """``{case name: {key: array}}`` from a results .npz file or a folder of them."""
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files:
        raise GoldError(f"no .npz results in {path}")
    by_case = {}
    for f in files:
        arrays = _store.load_npz(f, what="results file")
        grouped = {k for k in arrays if "/" in k}
        if grouped and len(grouped) != len(arrays):
            raise GoldError(f"results file {f} mixes keys <case>/<key> with plain keys")
        for key, a in arrays.items():
            case, _, inner = key.rpartition("/") if grouped else (f.stem, "", key)
            by_case.setdefault(case, {})[inner] = a
    return by_case


def verify_results(path, pattern: str | None = None, *, gold=None, strict: bool = False,
                   exported=None) -> Report:
    """Compare the results saved in ``path`` (an .npz file or a folder of them) with the gold cases.

    Keys are ``<key>`` in a file named ``<case>.npz``, or ``<case>/<key>`` in
    any file. Files are read with ``allow_pickle=False``. ``pattern`` keeps
    only the matching cases, ``exported`` (the folder :func:`export` wrote,
    or its ``cases.json``) only the exported ones; the cases they select that
    have no result are reported (``report.missing``) and fail with
    ``strict=True``, as do result keys a case does not have. A case name that
    gold does not have fails, with the nearest names.
    """
    directory, found = _open(gold)
    by_case = _result_files(Path(path))
    selected, selection = None, []
    if pattern is not None:
        selected = _select(list(found["cases"]), pattern)
        selection.append(f"matching {pattern!r}")
    if exported is not None:
        listed = _exported_cases(Path(exported))
        selected = [n for n in (selected if selected is not None else listed) if n in listed]
        selection.append(f"exported to {exported}")
    if selected is not None:
        by_case = {n: results for n, results in by_case.items() if n in selected}
    out = []
    order = {n: i for i, n in enumerate(found["cases"])}  # manifest order, then unknown names
    for name in sorted(by_case, key=lambda n: (order.get(n, len(order)), n)):
        if name not in found["cases"]:
            out.append(CaseResult(name, problems=(f"no gold case named {name!r}"
                                                  + _did_you_mean(name, found["cases"]),)))
            continue
        out.append(_check(_load(directory, found, name), by_case[name], strict))
    missing = tuple(n for n in selected or () if n not in by_case)
    return Report(tuple(out), len(found["cases"]), missing, strict, " ".join(selection),
                  len(selected) if selected is not None else 0)


def _exported_cases(path: Path) -> list:
    """The case names of the ``cases.json`` that :func:`export` wrote (``path``: it or its folder)."""
    listing = path / "cases.json" if path.is_dir() else path
    try:
        return list(json.loads(listing.read_text(encoding="utf-8"))["cases"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GoldError(f"{listing} is not a cases.json written by `refimpl gold export` ({e})") from None


def export(pattern: str, out, *, gold=None) -> list:
    """Write the given arrays of the matching cases to ``out/<case>.npz`` and ``out/cases.json``.

    ``cases.json`` holds the conventions and, per case, the function, keyword
    arguments, the given arrays and the result keys expected back (shape,
    dtype) with the tolerances. Returns the case names.
    """
    directory, found = _open(gold)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = _select(list(found["cases"]), pattern)
    described = {}
    for name in names:
        case = _load(directory, found, name)
        given = {k: a for k, a in case.arrays.items() if case.roles[k] in GIVEN_ROLES}
        (out / f"{name}.npz").write_bytes(_store.npz_bytes(given))
        arrays = {k: {"role": meta["role"], "dtype": meta["dtype"], "shape": meta["shape"]}
                  for k, meta in found["cases"][name]["arrays"].items()}
        described[name] = {"function": case.function, "backward": case.backward, "kwargs": case.kwargs,
                           "description": case.description,
                           "given": {k: arrays[k] for k in given},
                           "expected": {k: arrays[k] for k in case.expected}, "tolerance": case.tolerance}
    document = {"refimpl_gold_format": found["format_version"], "conventions": found["conventions"],
                "result_dtypes": list(DTYPES), "cases": described}
    (out / "cases.json").write_text(_store.dump_json(document), encoding="utf-8")
    return names

