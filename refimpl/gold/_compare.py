"""Comparison of an implementation's results with the gold arrays, and the report it prints.

An entry passes when ``|got - want| <= atol + rtol * |want|`` (NaN never
passes), with the case's float64 or float32 tolerances chosen by the dtype of
the result. The reported relative error is ``|got - want| / max(|want|,
atol / rtol)``: below ``atol / rtol`` the absolute tolerance governs, so tiny
expected values (cancellation) do not show huge ratios.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import backend

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
        return {"index": list(self.index), "got": self.got, "want": self.want, "abs_error": self.abs_error}


@dataclasses.dataclass(frozen=True)
class ArrayResult:
    """One expected array (``out``, a gradient ``d<name>``, ...) against the result."""

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

    def lines(self) -> list:
        if self.problem:
            return [f"{self.key}: {self.problem}"]
        if self.ok:
            return []
        out = [f"{self.key}: {self.n_bad} of {self.size} entries outside rtol {self.rtol:.0e} + "
               f"atol {self.atol:.0e} ({self.dtype})"]
        out += [f"  {self.key}{_index(e.index)}  got {e.got:+.6e}  want {e.want:+.6e}  "
                f"|diff| {e.abs_error:.2e}" for e in self.worst]
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["worst"] = [e.to_dict() for e in self.worst]
        return d

    def __str__(self) -> str:
        if self.ok:
            return (f"{self.key}: all {self.size} entries within rtol {self.rtol:.0e} + atol {self.atol:.0e} "
                    f"(max abs {self.max_abs:.1e})")
        return "\n".join(self.lines())

    def raise_if_failed(self) -> None:
        """AssertionError with the worst entries when the array differs (for check cells and tests)."""
        if not self.ok:
            raise AssertionError(str(self))


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """All arrays of one case; ``problems`` are keys missing, unexpected, or an unknown case."""

    name: str
    arrays: tuple = ()
    problems: tuple = ()

    @property
    def ok(self) -> bool:
        return not self.problems and all(a.ok for a in self.arrays)

    @property
    def dtype(self) -> str:
        return "+".join(sorted({a.dtype for a in self.arrays if a.dtype})) or "-"

    def worst(self):
        """The compared array and entry with the largest error relative to its tolerance."""
        compared = [a for a in self.arrays if a.worst]
        if not compared:  # nothing compared, or every entry exact
            return None
        a = max(compared, key=lambda a: (not a.ok, a.max_rel))
        return a.key + _index(a.worst[0].index)

    def line(self, width: int = 0) -> str:
        status = "PASS" if self.ok else "FAIL"
        numbers = [a for a in self.arrays if not a.problem]
        text = f"{status}  {self.name:<{width}}  {self.dtype:<7}"
        if numbers:
            text += (f"  max abs {max(a.max_abs for a in numbers):.1e}"
                     f"  max rel {max(a.max_rel for a in numbers):.1e}")
        where = self.worst()
        return text + (f"  worst {where}" if where else "")

    def __str__(self) -> str:
        details = list(self.problems) + [line for a in self.arrays for line in a.lines()]
        return "\n".join([self.line()] + ["      " + line for line in details])

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "dtype": self.dtype, "worst": self.worst(),
                "problems": list(self.problems), "arrays": [a.to_dict() for a in self.arrays]}


@dataclasses.dataclass(frozen=True)
class Report:
    """Results of several cases: ``ok``, ``str(report)`` the table, ``to_dict()`` for JSON."""

    cases: tuple
    n_gold: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)

    def summary(self) -> str:
        if not self.cases:
            return f"FAILED: no results to check ({self.n_gold} gold cases)"
        passed = sum(c.ok for c in self.cases)
        failed = len(self.cases) - passed
        verdict = "OK" if self.ok else "FAILED"
        return (f"{verdict}: {passed} passed, {failed} failed "
                f"({len(self.cases)} of {self.n_gold} gold cases checked)")

    def __str__(self) -> str:
        width = max((len(c.name) for c in self.cases), default=0)
        lines = []
        for c in self.cases:
            details = str(c).split("\n")[1:]
            lines += [c.line(width)] + details
        return "\n".join(lines + [self.summary()])

    def to_dict(self) -> dict:
        return {"ok": self.ok, "summary": self.summary(), "cases": [c.to_dict() for c in self.cases]}

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


def compare_array(key: str, got, want: np.ndarray, tolerance: dict) -> ArrayResult:
    """Compare one result array with its gold array under the tolerances of the result's dtype."""
    try:
        got = as_host(got)
    except Exception as e:  # whatever the framework raises (e.g. a tensor that requires grad)
        return ArrayResult(key, "", False, problem=f"could not be read as an array ({e})")
    dtype = str(got.dtype)
    if dtype not in DTYPES:
        return ArrayResult(key, dtype, False, problem=f"has dtype {dtype}, expected float64 or float32")
    if got.shape != want.shape:
        return ArrayResult(key, dtype, False, problem=f"has shape {got.shape}, expected {want.shape}")
    rtol, atol = tolerance[dtype]["rtol"], tolerance[dtype]["atol"]
    diff = np.abs(got.astype(np.float64) - want)
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
    return ArrayResult(key, dtype, not bad.any(), int(bad.sum()), int(want.size),
                       _max(diff), _max(rel), rtol, atol, worst)


def _max(a) -> float:
    if a.size == 0:
        return 0.0
    return float("inf") if np.isnan(a).any() else float(a.max())


def compare_case(name: str, results: dict, expected: dict, tolerance: dict) -> CaseResult:
    """Compare a mapping of results with the expected arrays (outputs and gradients) of one case."""
    missing = [k for k in expected if k not in results]
    unexpected = sorted(k for k in results if k not in expected)
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(f"{k} {tuple(expected[k].shape)}" for k in missing))
    if unexpected:
        problems.append("unexpected (not in the gold case): " + ", ".join(unexpected))
    arrays = tuple(compare_array(k, results[k], want, tolerance) for k, want in expected.items()
                   if k in results)
    return CaseResult(name, arrays, tuple(problems))
