"""Course labs: graded exercises that check a student's functions against stored reference values.

Each lab (``refimpl lab list``) is a notebook of exercises with nbgrader
metadata (``refimpl lab source --out COURSE`` writes them into an nbgrader
course folder; ``docs/guide/teaching.md`` walks an instructor through it). A
lab's check cells use this module:

>>> from refimpl import labs
>>> lab = labs.load("adacon")
>>> lab["y"].tolist()
[0.3, 0.1, 0.3, 0.7, 0.9, 0.1, 0.3, 0.5]
>>> def ecdf(y, population):
...     return (population[None, :] <= y[:, None]).mean(axis=1)
>>> lab.check("ecdf", lambda case: ecdf(case["y"], case["population"]), {"ecdf": ecdf})  # doctest: +ELLIPSIS
PASS ...F...

``Lab.check`` runs the exercise on the stored inputs of a case (``"visible"``
in the student's notebook, ``"hidden"`` in the hidden test nbgrader restores
when grading), with

* the functions of earlier exercises replaced by references in the
  notebook's namespace, so that a wrong Ex1 costs Ex1's points only;
* the library functions the exercise may not call made unavailable (they
  raise :class:`LibraryCallForbidden`), so that calling them scores nothing;

and compares every returned array, named as the notebook names it, with the
stored reference by :func:`refimpl.gold.compare`: a pass is one line, a
failure shows the worst entries and the likely cause of a systematic error (a
constant factor such as a forgotten ``dout``, a sign, a transpose).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

from ._references import ATOL, CASES, RTOL, SPECS, resolve

#: the stored inputs and references, one ``<lab>.npz`` and ``<lab>.json`` per lab (``refimpl lab data``)
DATA_DIR = Path(__file__).resolve().parent / "data"
#: the jupytext sources of the labs, with their solutions
SOURCE_DIR = Path(__file__).resolve().parent / "sources"

__all__ = ["DATA_DIR", "LABS", "Lab", "LabCheck", "LibraryCallForbidden", "SOURCE_DIR", "load"]

#: lab names in course order
LABS = tuple(SPECS)


class LibraryCallForbidden(RuntimeError):
    """Raised by a library function an exercise may not call, while its check runs."""


@dataclasses.dataclass(frozen=True)
class LabCheck:
    """The outcome of one exercise's check: each returned array compared with its reference."""

    exercise: str
    case: str
    results: tuple

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.results)

    def raise_if_failed(self) -> None:
        if not self.ok:
            wrong = ", ".join(r.key for r in self.results if not r.ok)
            raise AssertionError(f"{self.exercise}: {wrong} differ from the reference ({self.case} case)")


class Lab:
    """A lab's stored cases: ``lab[name]`` is an input of the visible case; :meth:`check` grades."""

    def __init__(self, name: str, arrays: dict, meta: dict):
        self.name, self.spec, self.meta = name, SPECS[name], meta
        self._arrays = arrays

    def case(self, case: str = "visible") -> dict:
        """The inputs of ``case`` (fresh copies), by name."""
        if case not in CASES:
            raise ValueError(f"case must be one of {CASES}, got {case!r}")
        prefix = f"{case}/in/"
        return {k[len(prefix):]: _scalar(a.copy()) for k, a in self._arrays.items() if k.startswith(prefix)}

    def __getitem__(self, name: str):
        inputs = self.case("visible")
        if name not in inputs:
            raise KeyError(f"lab {self.name!r} has no input {name!r}; it has {', '.join(inputs)}")
        return inputs[name]

    def expected(self, exercise: str, case: str = "visible") -> dict:
        e = self.spec.exercise(exercise)
        prefix = f"{case}/{e.function}/"
        return {k[len(prefix):]: a.copy() for k, a in self._arrays.items() if k.startswith(prefix)}

    def check(self, exercise: str, run, namespace: dict, *, case: str = "visible", quiet: bool = False) -> None:
        """Run the exercise on ``case``, print the comparison once, raise an AssertionError if it failed.

        ``quiet`` prints nothing on a pass (the hidden test's re-run). Returns
        nothing: the value of an nbgrader test cell would count as its score.
        """
        outcome = self.outcome(exercise, run, namespace, case=case)
        if not (quiet and outcome.ok):
            print(outcome)
        outcome.raise_if_failed()

    def outcome(self, exercise: str, run, namespace: dict, *, case: str = "visible") -> LabCheck:
        """``run(inputs)`` (the exercise on ``case``'s inputs) compared with the stored references.

        ``namespace`` is the notebook's ``globals()``: while ``run`` runs, the
        earlier exercises' functions in it are replaced by references, and the
        library functions the exercise may not call raise
        :class:`LibraryCallForbidden`.
        """
        e = self.spec.exercise(exercise)
        inputs = self.case(case)
        feeds = {k: v for k, v in self.spec.feeds(self).items() if k in e.feeds}  # before the library is blocked
        with _forbidden(e, namespace), _replaced(namespace, feeds):
            got = _named(run(inputs), e.returns)
        candidates = self.meta["candidates"][case][e.function]
        results = []
        for key, reference in self.expected(exercise, case).items():
            if key not in got:
                raise AssertionError(f"{exercise} returned {', '.join(got) or 'nothing'}; the check expects {key}")
            results.append(_compare(key, got[key], reference, candidates))
        return LabCheck(e.function, case, tuple(results))

    def __repr__(self) -> str:
        return f"Lab({self.name!r}: {', '.join(e.function for e in self.spec.exercises)})"


def _compare(key, got, want, candidates):
    from .. import gold

    return gold.compare(key, got, want, rtol=RTOL, atol=ATOL, candidates=candidates)


def _scalar(a):
    return a.item() if a.ndim == 0 else a


def _named(result, returns: tuple) -> dict:
    """What an exercise returned, by the names the notebook uses (``da``, ``drefs``, ``dz (rank 1)``)."""
    if isinstance(result, dict):
        return dict(result)
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        return {f"{k} (rank {rank})": v for rank, r in enumerate(result) for k, v in r.items()}
    if isinstance(result, list):
        return {f"{returns[0]} (rank {rank})": v for rank, v in enumerate(result)}
    if isinstance(result, tuple):
        if len(result) != len(returns):
            raise AssertionError(f"the exercise returned {len(result)} values; expected {len(returns)}: "
                                 + ", ".join(returns))
        return dict(zip(returns, result))
    return {returns[0]: result}


@contextlib.contextmanager
def _replaced(namespace: dict, values: dict):
    """Set names in ``namespace`` for the duration, then put back what was there."""
    missing = object()
    saved = {k: namespace.get(k, missing) for k in values}
    namespace.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is missing:
                namespace.pop(k, None)
            else:
                namespace[k] = v


def _stub(dotted: str, exercise: str):
    def forbidden(*args, **kwargs):
        raise LibraryCallForbidden(f"{exercise} may not call {dotted.replace(':', '.')}: the exercise is to "
                                   "write it yourself (the check runs with the library's version unavailable)")
    return forbidden


@contextlib.contextmanager
def _forbidden(e, namespace: dict):
    """The library functions ``e`` may not call, replaced by stubs that raise, wherever the notebook sees them."""
    stubs, originals = {}, []
    for dotted in e.forbidden:
        module, name = resolve(dotted)
        original = getattr(module, name)
        stub = _stub(dotted, e.function)
        stubs[id(original)] = stub
        originals.append((module, name, original))
        setattr(module, name, stub)
    aliases = {k: stubs[id(v)] for k, v in namespace.items() if id(v) in stubs}  # `from ... import ecdf`
    try:
        with _replaced(namespace, aliases):
            yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def load(name: str, *, data_dir=None) -> Lab:
    """The stored cases of lab ``name`` (see :data:`LABS`), hashes checked."""
    from ..gold import _store

    if name not in SPECS:
        raise ValueError(f"no lab named {name!r}; the labs are {', '.join(LABS)}")
    directory = Path(data_dir) if data_dir is not None else DATA_DIR
    meta = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
    arrays = _store.load_npz(directory / f"{name}.npz", what=f"lab data of {name}")
    for key, digest in meta["sha256"].items():
        if key not in arrays or _store.array_sha256(arrays[key]) != digest:
            raise _store.GoldError(f"lab data {key!r} of {name} does not match {name}.json (corrupted or modified); "
                                   "reinstall refimpl or run `refimpl lab data`")
    return Lab(name, arrays, meta)
