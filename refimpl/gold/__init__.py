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

From the command line, for any language: ``refimpl gold export --case
PATTERN --out DIR`` writes each case's given arrays (``DIR/<case>.npz``) and
``DIR/cases.json`` (keyword arguments, conventions, the keys, shapes and
dtypes expected back); save the results as ``<case>.npz`` with those keys and
run ``refimpl gold verify RESULTS``.

Patterns: a case name selects that case; a pattern with ``*``, ``?`` or
``[`` is matched as in a shell (``"kernel-official-*"``); any other text
selects the names that start with it (``"conv2d"``); commas separate several.
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
from pathlib import Path

from . import _store
from ._compare import DTYPES, ArrayResult, CaseResult, Report, as_host, compare_array, compare_case
from ._make import FORMAT_VERSION, SEED, make
from ._spec import GIVEN_ROLES
from ._store import GoldError
from .._validate import check_nonnegative, check_positive

#: the gold data shipped with refimpl.
DATA_DIR = Path(__file__).resolve().parent / "data"

__all__ = ["ArrayResult", "Case", "CaseResult", "DATA_DIR", "FORMAT_VERSION", "GoldError", "Report", "SEED", "cases",
           "check", "compare", "export", "load", "make", "manifest", "verify", "verify_results"]


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
            raise ValueError(f"no gold case matches {part!r}; the cases start with: "
                             + ", ".join(sorted({n.split('-')[0] for n in names})))
        chosen += [n for n in hits if n not in chosen]
    return chosen


def compare(key: str, got, want, *, rtol: float = 1e-12, atol: float = 1e-15) -> ArrayResult:
    """Compare one array with a reference entry by entry, as :func:`verify` compares gold arrays.

    An entry passes when ``|got - want| <= atol + rtol * |want|`` (NaN never
    passes). ``str(result)`` names the worst failing entries with both values;
    ``result.raise_if_failed()`` raises them as an AssertionError. ``want`` is
    read as float64; ``got`` may be float64 or float32, from any framework
    whose CPU arrays NumPy can read.

    >>> import numpy as np
    >>> from refimpl import gold
    >>> result = gold.compare("w", np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([[0.5, 0.5], [0.0, 1.0]]))
    >>> result.ok
    False
    >>> print(result)
    w: 2 of 4 entries outside rtol 1e-12 + atol 1e-15 (float64)
      w[1, 0]  got +1.000000e+00  want +0.000000e+00  |diff| 1.00e+00
      w[1, 1]  got +0.000000e+00  want +1.000000e+00  |diff| 1.00e+00
    """
    rtol, atol = check_positive("rtol", rtol), check_nonnegative("atol", atol)  # rtol > 0: it divides
    tolerance = {dtype: {"rtol": rtol, "atol": atol} for dtype in DTYPES}
    return compare_array(key, got, as_host(want).astype("float64"), tolerance)


def cases(pattern: str = "*", *, gold=None) -> list:
    """Names of the gold cases that match ``pattern`` (see the module docstring), in manifest order.

    Made for ``pytest.mark.parametrize("name", gold.cases("kernel"))``.
    """
    return _select(list(manifest(gold)["cases"]), pattern)


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
        raise ValueError(f"no gold case named {name!r} (list them with refimpl.gold.cases())")
    return _load(directory, found, name)


def check(name: str, results, *, gold=None) -> CaseResult:
    """Compare ``results`` (a mapping of output and gradient keys to arrays) with case ``name``."""
    case = load(name, gold=gold)
    return compare_case(name, dict(results), case.expected, case.tolerance)


def verify(pattern: str, fn, *, gold=None) -> Report:
    """Run ``fn(case.inputs)`` on every case matching ``pattern`` and compare what it returns.

    ``fn`` returns a mapping with ``"out"`` and every gradient key of the case
    (see :attr:`Case.expected`); float32 results are compared with the float32
    tolerances. Returns a :class:`Report`: ``report.ok``, ``print(report)``,
    ``report.raise_if_failed()``.
    """
    directory, found = _open(gold)
    results = []
    for name in _select(list(found["cases"]), pattern):
        case = _load(directory, found, name)
        got = fn(case.inputs)
        if not hasattr(got, "keys"):
            raise TypeError(f"fn must return a mapping of result keys to arrays, got {type(got).__name__} "
                            f"for case {name}")
        results.append(compare_case(name, dict(got), case.expected, case.tolerance))
    return Report(tuple(results), len(found["cases"]))


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


def verify_results(path, pattern: str | None = None, *, gold=None) -> Report:
    """Compare the results saved in ``path`` (an .npz file or a folder of them) with the gold cases.

    Keys are ``<key>`` in a file named ``<case>.npz``, or ``<case>/<key>`` in
    any file. Files are read with ``allow_pickle=False``. ``pattern`` keeps
    only the matching cases; a case name that gold does not have fails.
    """
    directory, found = _open(gold)
    by_case = _result_files(Path(path))
    if pattern is not None:
        wanted = set(_select(list(found["cases"]), pattern))
        by_case = {n: results for n, results in by_case.items() if n in wanted}
    out = []
    for name in by_case:
        if name not in found["cases"]:
            out.append(CaseResult(name, problems=(f"no gold case named {name!r}",)))
            continue
        case = _load(directory, found, name)
        out.append(compare_case(name, by_case[name], case.expected, case.tolerance))
    return Report(tuple(out), len(found["cases"]))


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

