"""Comparison of an implementation's results with the gold arrays, and the report it prints.

An entry passes when ``|got - want| <= atol + rtol * |want|`` (NaN never
passes), with the case's float64 or float32 tolerances chosen by the dtype of
the result. The reported relative error is ``|got - want| / max(|want|,
atol / rtol)``: below ``atol / rtol`` the absolute tolerance governs, so tiny
expected values (cancellation) do not show huge ratios. A failing array is
handed to :mod:`._diagnose` for its likely cause; a case merges the causes
of its arrays into one sentence each.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import backend
from . import _diagnose

#: result dtypes that can be compared, each with its own tolerances.
DTYPES = ("float64", "float32")
N_WORST = 3


@dataclasses.dataclass(frozen=True)
class Entry:
    """One entry of a result array: where, the two values, and the error."""

    index: tuple
    got: float
    want: float

    @property
    def abs_error(self) -> float:
        return abs(self.got - self.want)

    def to_dict(self) -> dict:
        return {"index": list(self.index), "got": _json_number(self.got), "want": _json_number(self.want),
                "abs_error": _json_number(self.abs_error)}


@dataclasses.dataclass(frozen=True)
class ArrayResult:
    """One expected array (``out``, a gradient ``d<name>``, ...) against the result.

    ``str(result)``: one line ``PASS  key: ...`` when it passes; otherwise
    ``FAIL  key: ...``, the worst entries (with as many digits as it takes
    to show got and want differ) and a ``likely cause:`` line for each
    systematic error found (:attr:`diagnosis`).
    """

    key: str
    dtype: str
    ok: bool
    n_bad: int = 0
    size: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    rtol: float = 0.0
    atol: float = 0.0
    worst: tuple = ()
    problem: str = ""
    findings: tuple = ()
    #: what the diagnosis calls the expected array: "gold", or "want" for :func:`refimpl.gold.compare`
    reference: str = "gold"

    @property
    def diagnosis(self) -> list:
        """The likely causes of the failure, one sentence each (empty when none is found)."""
        return [f.sentence(self.reference) for f in _diagnose.merge(self.findings)]

    def lines(self) -> list:
        """The failure and its worst entries (no diagnosis: a case merges those of its arrays)."""
        if self.problem:
            return [f"{self.key}: {self.problem}"]
        if self.ok:
            return []
        out = [f"{self.key}: {self.n_bad} of {self.size} entries outside rtol {self.rtol:.0e} + "
               f"atol {self.atol:.0e} ({self.dtype})"]
        n = _diagnose.digits([(e.got, e.want) for e in self.worst])
        out += [f"  {self.key}{_index(e.index)}  got {e.got:+.{n - 1}e}  want {e.want:+.{n - 1}e}  "
                f"|diff| {e.abs_error:.2e}" for e in self.worst]
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        del d["findings"], d["reference"]
        d.update(max_abs=_json_number(self.max_abs), max_rel=_json_number(self.max_rel),
                 worst=[e.to_dict() for e in self.worst], diagnosis=self.diagnosis)
        return d

    def __str__(self) -> str:
        if self.ok:
            return (f"PASS  {self.key}: all {self.size} entries within rtol {self.rtol:.0e} + "
                    f"atol {self.atol:.0e} ({self.dtype}, max abs {self.max_abs:.1e})")
        return "\n".join(["FAIL  " + line for line in self.lines()[:1]] + self.lines()[1:]
                         + ["likely cause: " + s for s in self.diagnosis])

    def raise_if_failed(self) -> None:
        """AssertionError with the worst entries when the array differs (for check cells and tests)."""
        if not self.ok:
            raise AssertionError(str(self))


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """All arrays of one case.

    ``problems``: keys missing, an unknown case (the case fails). ``extra``:
    result keys the case does not have, reported and not compared (the case
    fails on them only when ``strict``). ``findings``: the likely causes,
    merged over the arrays (:attr:`diagnosis`). ``features``: what
    :meth:`Report.patterns` compares across cases (function, keyword
    values, given arrays, result dtype).
    """

    name: str
    arrays: tuple = ()
    problems: tuple = ()
    extra: tuple = ()
    strict: bool = False
    findings: tuple = ()
    features: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems and all(a.ok for a in self.arrays) and not (self.strict and self.extra)

    @property
    def diagnosis(self) -> list:
        """Likely causes of the case's failure, one sentence each (empty when none is found)."""
        return [f.sentence() for f in self.findings]

    @property
    def dtype(self) -> str:
        return "+".join(sorted({a.dtype for a in self.arrays if a.dtype})) or "-"

    def worst(self):
        """The compared array and entry with the largest error relative to its tolerance."""
        compared = [a for a in self.arrays if a.worst]
        if not compared:  # nothing compared, or every entry exact
            return None
        a = max(compared, key=lambda a: (not a.ok, _rank(a.max_rel)))
        return a.key + _index(a.worst[0].index)

    def line(self, width: int = 0) -> str:
        status = "PASS" if self.ok else "FAIL"
        numbers = [a for a in self.arrays if not a.problem]
        text = f"{status}  {self.name:<{width}}  {self.dtype:<7}"
        if numbers:
            text += (f"  max abs {_largest(a.max_abs for a in numbers):.1e}"
                     f"  max rel {_largest(a.max_rel for a in numbers):.1e}")
        where = self.worst()
        return text + (f"  worst {where}" if where else "")

    def details(self) -> list:
        """Problems, extra keys, failing arrays with their worst entries, the likely causes."""
        out = list(self.problems)
        if self.extra:
            out.append(f"extra keys, not in the gold case: {', '.join(self.extra)} ("
                       + ("fails under strict" if self.strict else "not compared; strict fails on them") + ")")
        out += [line for a in self.arrays for line in a.lines()]
        return out + ["likely cause: " + s for s in self.diagnosis]

    def __str__(self) -> str:
        return "\n".join([self.line()] + ["      " + line for line in self.details()])

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "dtype": self.dtype, "worst": self.worst(),
                "problems": list(self.problems), "extra": list(self.extra), "diagnosis": self.diagnosis,
                "arrays": [a.to_dict() for a in self.arrays]}


@dataclasses.dataclass(frozen=True)
class Report:
    """Results of several cases: ``ok``, ``str(report)`` the table, ``to_dict()`` for JSON.

    ``missing``: cases that the pattern (or an export) selected and that have
    no result; ``ok`` ignores them unless ``strict``. ``selection`` says what
    selected the cases (``"matching 'kernel'"``) and ``n_matched`` how many.
    """

    cases: tuple
    n_gold: int = 0
    missing: tuple = ()
    strict: bool = False
    selection: str = ""
    n_matched: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases) and not (self.strict and self.missing)

    def patterns(self) -> list:
        """Which keyword values separate the passing cases from the failing ones (sentences)."""
        return list(_diagnose.patterns([(c.name, c.ok, c.features) for c in self.cases if c.features]))

    def summary(self) -> str:
        if not self.cases:
            if not self.selection:
                return f"FAILED: no results to check ({self.n_gold} gold cases)"
            return (f"FAILED: no results to check: none for the {self.n_matched} gold cases {self.selection} "
                    f"({self.n_gold} in all)")
        passed = sum(c.ok for c in self.cases)
        text = f"{'OK' if self.ok else 'FAILED'}: {passed} passed, {len(self.cases) - passed} failed"
        if self.missing:
            return (text + f", {len(self.missing)} without a result ({len(self.cases)} of the "
                    f"{self.n_matched} gold cases {self.selection} checked; {self.n_gold} in all)")
        return text + f" ({len(self.cases)} of {self.n_gold} gold cases checked)"

    def notes(self) -> list:
        """Cases without a result, and the patterns across cases."""
        out = []
        if self.missing:
            out.append(f"no result for {len(self.missing)} of the {self.n_matched} gold cases {self.selection}: "
                       + ", ".join(self.missing)
                       + (" (strict: they fail)" if self.strict else " (strict fails on them)"))
        return out + self.patterns()

    def __str__(self) -> str:
        width = max((len(c.name) for c in self.cases), default=0)
        lines = []
        for c in self.cases:
            lines += [c.line(width)] + ["      " + line for line in c.details()]
        return "\n".join(lines + self.notes() + [self.summary()])

    def to_dict(self) -> dict:
        return {"ok": self.ok, "summary": self.summary(), "missing": list(self.missing),
                "patterns": self.patterns(), "cases": [c.to_dict() for c in self.cases]}

    def raise_if_failed(self) -> None:
        """AssertionError with the table when any case fails (for test suites)."""
        if not self.ok:
            raise AssertionError("gold verification failed\n" + str(self))


def _index(index: tuple) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]" if index else ""


def as_host(value):
    """Any array (NumPy, CuPy, Array API, torch CPU tensor without grad, ...) as a NumPy array."""
    if hasattr(value, "__array_namespace__") or type(value).__module__.split(".")[0] == "cupy":
        return backend.to_numpy(value)
    return np.asarray(value)


def compare_array(key: str, got, want: np.ndarray, tolerance: dict, candidates: dict | None = None) -> ArrayResult:
    """Compare one result array with its gold array under the tolerances of the result's dtype.

    A failing array is examined for systematic errors (:mod:`._diagnose`);
    ``candidates`` (description -> ratio) name the constant ratios the caller
    knows of.
    """
    try:
        got = as_host(got)
    except Exception as e:  # whatever the framework raises (e.g. a tensor that requires grad)
        return ArrayResult(key, "", False, problem=f"could not be read as an array ({e})")
    dtype = str(got.dtype)
    if dtype not in DTYPES:
        return ArrayResult(key, dtype, False, problem=f"has dtype {dtype}, expected float64 or float32")
    rtol, atol = tolerance[dtype]["rtol"], tolerance[dtype]["atol"]
    if got.shape != want.shape:
        transposed = got.ndim == 2 and _diagnose.within(got.T.astype(np.float64), want, rtol, atol)
        return ArrayResult(key, dtype, False, problem=f"has shape {got.shape}, expected {want.shape}",
                           findings=(_diagnose.transposed(key),) if transposed else ())
    got64 = got.astype(np.float64)
    diff = np.abs(got64 - want)
    allowed = atol + rtol * np.abs(want)
    bad = ~(diff <= allowed)  # NaN fails
    # the worst entries: the largest errors among the failing entries (among all when none fails)
    score = np.where(np.isnan(diff), np.inf, diff)
    if bad.any():
        score = np.where(bad, score, -1.0)
    order = np.argsort(-score, axis=None, kind="stable")[:N_WORST]
    worst = tuple(Entry(tuple(int(i) for i in np.unravel_index(j, want.shape)), float(got.flat[j]),
                        float(want.flat[j])) for j in order if score.flat[j] > 0)
    rel = diff / np.maximum(np.abs(want), atol / rtol)
    findings = _diagnose.examine(key, got64, want, dtype, tolerance[dtype], candidates) if bad.any() else ()
    return ArrayResult(key, dtype, not bad.any(), int(bad.sum()), int(want.size),
                       _max(diff), _max(rel), rtol, atol, worst, findings=findings)


def _max(a) -> float:
    """The largest entry; NaN when any entry is NaN (the header then says nan, as the rows do)."""
    if a.size == 0:
        return 0.0
    return float("nan") if np.isnan(a).any() else float(a.max())


def _rank(x: float) -> float:
    return float("inf") if np.isnan(x) else x


def _largest(values) -> float:
    """max() that NaN wins (a NaN error is the worst)."""
    values = list(values)
    return float("nan") if any(np.isnan(v) for v in values) else max(values)


def _json_number(x: float):
    """A float as JSON can hold it: finite numbers as they are, NaN and infinities as "nan", "inf", "-inf"."""
    return x if np.isfinite(x) else str(x)


def compare_case(name: str, results: dict, expected: dict, tolerance: dict, *, strict: bool = False,
                 candidates: dict | None = None, anchors=None, features: dict | None = None) -> CaseResult:
    """Compare a mapping of results with the expected arrays (outputs and gradients) of one case.

    ``candidates`` (description -> ratio) and ``anchors`` (rows without
    positives, or None) come from the case, for the diagnosis; ``features``
    for the patterns across cases. Keys the case does not have are reported
    as ``extra`` (they fail only when ``strict``).
    """
    missing = [k for k in expected if k not in results]
    extra = tuple(sorted(k for k in results if k not in expected))
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(f"{k} {tuple(expected[k].shape)}" + _near(k, extra)
                                                for k in missing))
    arrays = tuple(compare_array(k, results[k], want, tolerance, candidates) for k, want in expected.items()
                   if k in results)
    findings = _diagnose.merge([f for a in arrays for f in a.findings])
    if any(not a.ok and all(f.kind != "float32" for f in a.findings) for a in arrays):
        findings = tuple(f for f in findings if f.kind != "float32")  # a float32 error explains all or none
    findings += _diagnose.case_findings(arrays, anchors)
    return CaseResult(name, arrays, tuple(problems), extra, strict, findings, dict(features or {}))


def _near(key: str, names) -> str:
    near = _diagnose.nearest(key, names)
    return f" (the results have {near[0]!r}: misspelt?)" if near else ""
