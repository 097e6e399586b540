"""Build the labs: stored references (``refimpl lab data``) and nbgrader source notebooks (``refimpl lab source``).

A lab source (``sources/<lab>.py``) is a jupytext percent script. Its
exercises are the tutorials' (one code, read by both): a code cell that is
only ``# from tutorial NN_name: function`` becomes the tutorial's code cell
that defines ``function``. The build inserts the set-up cell (one BLAS
thread, refimpl installed when missing, the lab's stored data loaded as
``lab``) after the first cell. The cells become nbgrader cells (metadata
schema 3):

* a code cell with ``### BEGIN SOLUTION`` is the solution cell of the
  exercises whose functions it defines (``grade_id`` = the first one);
* a code cell starting ``# check: <function>`` is that exercise's graded,
  locked test cell (``check_<function>``, the points of the lab's spec); its
  ``### BEGIN HIDDEN TESTS`` part is removed from the students' copy and
  restored by ``nbgrader autograde``;
* every other cell is locked (read-only).
"""
from __future__ import annotations

import re
from pathlib import Path

from ._references import CASES, SPECS

SCHEMA_VERSION = 3
CHECK = re.compile(r"^# check: (\w+)")
DEFINES = re.compile(r"^def (\w+)\(", re.M)
INCLUDE = re.compile(r"^# from tutorial (\w+): (\w+)\s*$")

SETUP = """\
# Set-up: one BLAS thread (set before NumPy loads: the arrays are tiny), refimpl installed if missing.
import os

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import importlib.util
import subprocess
import sys

REFIMPL_SOURCE = {install_from!r}  # what to install when refimpl is missing: a wheel (path or URL), git+https://...
if importlib.util.find_spec("refimpl") is None:
    if not REFIMPL_SOURCE:
        raise RuntimeError("refimpl is not installed and REFIMPL_SOURCE is empty: ask your instructor where from")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", REFIMPL_SOURCE])

from refimpl import labs

lab = labs.load({name!r})  # the checks' stored inputs and reference values
"""


def tutorials_dir() -> Path:
    """The tutorials of this refimpl: installed with the package, or the checkout's ``tutorials/``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_tutorials", package.parent / "tutorials"):
        if any(candidate.glob("[0-9][0-9]_*.ipynb")):
            return candidate
    raise FileNotFoundError("this refimpl has no tutorials (neither installed with it nor in its checkout)")


def tutorial_cell(tutorial: str, function: str) -> str:
    """The source of the code cell of tutorial ``tutorial`` that defines ``function``."""
    import jupytext

    nb = jupytext.reads((tutorials_dir() / f"{tutorial}.py").read_text(encoding="utf-8"), fmt="py:percent")
    found = [c.source for c in nb.cells if c.cell_type == "code" and function in DEFINES.findall(c.source)]
    if len(found) != 1:
        raise ValueError(f"tutorial {tutorial} has {len(found)} code cells defining {function}(), expected 1")
    return found[0]


def source_path(name: str) -> Path:
    from . import SOURCE_DIR

    return SOURCE_DIR / f"{name}.py"


def _metadata(cell, spec, state: dict) -> dict:
    """nbgrader metadata of one cell; ``state`` follows the exercises in order."""
    base = {"grade": False, "solution": False, "locked": True, "schema_version": SCHEMA_VERSION}
    if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
        exercises = [f for f in DEFINES.findall(cell.source) if f in {e.function for e in spec.exercises}]
        if not exercises:
            raise ValueError(f"lab {spec.name}: a solution cell defines no exercise function of the spec")
        state["solutions"] += exercises
        return {**base, "solution": True, "locked": False, "grade_id": exercises[0]}
    found = CHECK.match(cell.source) if cell.cell_type == "code" else None
    if found:
        exercise = spec.exercise(found[1])
        state["checks"].append(exercise.function)
        return {**base, "grade": True, "grade_id": f"check_{exercise.function}", "points": exercise.points}
    state["other"] += 1
    return {**base, "grade_id": f"{cell.cell_type}_{state['other']}"}


def notebook(name: str, *, install_from: str = ""):
    """The nbgrader source notebook of lab ``name`` (solutions in, hidden tests marked), not executed."""
    import jupytext
    import nbformat

    spec = SPECS[name]
    nb = jupytext.reads(source_path(name).read_text(encoding="utf-8"), fmt="py:percent")
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in nb.cells:
        included = INCLUDE.match(cell.source) if cell.cell_type == "code" else None
        if included:
            cell.source = tutorial_cell(*included.groups())
    nb.cells.insert(1, nbformat.v4.new_code_cell(SETUP.format(install_from=install_from, name=name)))
    state = {"solutions": [], "checks": [], "other": 0}
    for cell in nb.cells:
        cell.metadata["nbgrader"] = _metadata(cell, spec, state)
    order = [e.function for e in spec.exercises]
    if state["solutions"] != order or state["checks"] != order:
        raise ValueError(f"lab {name}: solution cells {state['solutions']} and check cells {state['checks']} "
                         f"must each follow the spec's exercises {order}")
    return nb


NBGRADER_CONFIG = '''\
c = get_config()  # noqa: F821 (nbgrader's config loader defines it)
c.CourseDirectory.course_id = {course!r}
# a lab runs in well under a minute; nbgrader's default per-cell timeout (30 s) stays
'''


def write_course(course, names=None, *, install_from: str = "", course_id: str = "refimpl-labs") -> list:
    """Write ``course/source/<lab>/<lab>.ipynb`` for each lab (and ``nbgrader_config.py`` if missing)."""
    import nbformat

    course = Path(course)
    written = []
    for name in names or SPECS:
        target = course / "source" / name / f"{name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook(name, install_from=install_from), target)
        written.append(target)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(NBGRADER_CONFIG.format(course=course_id), encoding="utf-8")
        written.append(config)
    return written


def compute(name: str) -> tuple:
    """``(arrays, meta)`` of lab ``name``: each case's inputs and references, the candidates, as stored."""
    spec = SPECS[name]
    arrays, candidates = {}, {}
    for case in CASES:
        inputs, expected, factors = spec.make(case)
        arrays.update({f"{case}/in/{k}": v for k, v in inputs.items()})
        for exercise, named in expected.items():
            arrays.update({f"{case}/{exercise}/{k}": v for k, v in named.items()})
        candidates[case] = {e: {k: float(v) for k, v in f.items()} for e, f in factors.items()}
    return arrays, {"lab": name, "candidates": candidates}


def write_data(names=None, out=None) -> list:
    """Compute and store every lab's cases (``<lab>.npz``, ``<lab>.json`` with hashes and the fingerprint)."""
    import numpy as np

    from .. import fingerprint
    from ..gold import _store
    from . import DATA_DIR

    out = Path(out) if out is not None else DATA_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or SPECS:
        arrays, meta = compute(name)
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        meta["sha256"] = {k: _store.array_sha256(a) for k, a in arrays.items()}
        meta["fingerprint"] = fingerprint.fingerprint()
        (out / f"{name}.npz").write_bytes(_store.npz_bytes(arrays))
        (out / f"{name}.json").write_text(_store.dump_json(meta), encoding="utf-8")
        written += [out / f"{name}.npz", out / f"{name}.json"]
    return written
