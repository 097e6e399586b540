"""The course labs' checks, run in this process: solutions pass, each mistake costs its exercise only,
shortcuts through the library score nothing, the stored references are current, feedback teaches.

``tests/test_labs_nbgrader.py`` runs the same labs under the real nbgrader.
"""
import contextlib
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from refimpl import labs
from refimpl.labs import _course, _references

from lab_answers import SHORTCUTS, WRONG, answered_cell

pytest.importorskip("jupytext")  # the sources are read as notebooks (notebooks or lab extra)

LABS = list(labs.LABS)
EXERCISES = [(lab, e.function) for lab in LABS for e in _references.SPECS[lab].exercises]


def code_cells(lab):
    return [c for c in _course.notebook(lab).cells if c.cell_type == "code"]


def grade_id(cell):
    return cell.metadata["nbgrader"]["grade_id"]


def exercises_in(cell, lab):
    """The exercise functions a solution cell defines."""
    functions = {e.function for e in _references.SPECS[lab].exercises}
    return [f for f in _course.DEFINES.findall(cell.source) if f in functions]


def run_lab(lab, monkeypatch, kinds=None):
    """Execute lab ``lab``'s cells here, each exercise answered as ``kinds`` says (default: its solution).

    Returns ``{exercise: None or the exception its check cell raised}`` and what the cells printed.
    The set-up cell's BLAS variables go to a copy of the environment, not to this process's.
    """
    kinds = kinds or {}
    monkeypatch.setattr(os, "environ", dict(os.environ))
    namespace, outcome, printed = {}, {}, io.StringIO()
    for cell in code_cells(lab):
        meta = cell.metadata["nbgrader"]
        source = cell.source
        if meta["solution"]:
            source = answered_cell(source, lab, {e: kinds.get(e, "solution") for e in exercises_in(cell, lab)})
        with contextlib.redirect_stdout(printed):
            try:
                exec(compile(source, f"<{lab}:{grade_id(cell)}>", "exec"), namespace)
            except (AssertionError, labs.LibraryCallForbidden) as e:
                if not meta["grade"]:
                    raise
                outcome[grade_id(cell)[len("check_"):]] = e
                continue
        if meta["grade"]:
            outcome[grade_id(cell)[len("check_"):]] = None
    return outcome, printed.getvalue()


@pytest.mark.parametrize("lab", LABS)
def test_solution_passes_every_check_visible_and_hidden(lab, monkeypatch):
    outcome, printed = run_lab(lab, monkeypatch)
    assert outcome == {e.function: None for e in _references.SPECS[lab].exercises}
    assert "FAIL" not in printed


@pytest.mark.parametrize("lab,exercise", EXERCISES, ids=[f"{a}-{b}" for a, b in EXERCISES])
def test_a_wrong_answer_costs_its_own_exercise_only(lab, exercise, monkeypatch):
    """The checks of the later exercises get the reference results of the earlier ones."""
    outcome, printed = run_lab(lab, monkeypatch, {exercise: "wrong"})
    failed = [k for k, v in outcome.items() if v is not None]
    assert failed == [exercise], printed
    assert isinstance(outcome[exercise], AssertionError)


SHORTCUT_CASES = [(lab, e) for lab, shortcuts in SHORTCUTS.items() for e in shortcuts]


@pytest.mark.parametrize("lab,exercise", [
    pytest.param(lab, e, marks=[pytest.mark.torch, pytest.mark.slow] if e == "plain_gather_dz" else [])
    for lab, e in SHORTCUT_CASES], ids=[f"{a}-{b}" for a, b in SHORTCUT_CASES])
def test_a_shortcut_through_the_library_is_right_and_scores_nothing(lab, exercise, monkeypatch):
    """Calling the library's function gives the right numbers; with it unavailable, the check fails."""
    if exercise == "plain_gather_dz":
        pytest.importorskip("torch")
    answer = {exercise: "shortcut"}
    with monkeypatch.context() as m:  # the library left available: the shortcut passes, it is a real one
        m.setattr(labs, "_forbidden", lambda e, namespace: contextlib.nullcontext())
        assert run_lab(lab, m, answer)[0][exercise] is None
    outcome, printed = run_lab(lab, monkeypatch, answer)
    assert isinstance(outcome[exercise], labs.LibraryCallForbidden)
    assert f"{exercise} may not call refimpl." in str(outcome[exercise])
    assert [k for k, v in outcome.items() if v is not None] == [exercise]


def test_every_exercise_has_a_wrong_answer_and_the_library_functions_a_shortcut():
    assert {(lab, e) for lab, d in WRONG.items() for e in d} == set(EXERCISES)
    assert set(SHORTCUTS) == {"conpro", "adacon", "data_parallel"}  # wsp's functions take arrays refimpl's do not


# ------------------------------------------------------------------ the nbgrader cells


@pytest.mark.parametrize("lab", LABS)
def test_cells_carry_nbgrader_metadata(lab):
    nb = _course.notebook(lab, install_from="dist/refimpl.whl")
    meta = [c.metadata["nbgrader"] for c in nb.cells]
    spec = _references.SPECS[lab]
    assert all(m["schema_version"] == 3 for m in meta)
    assert len({m["grade_id"] for m in meta}) == len(meta)
    solutions = [e for c, m in zip(nb.cells, meta) if m["solution"] for e in exercises_in(c, lab)]
    graded = {m["grade_id"]: m["points"] for m in meta if m["grade"]}
    assert solutions == [e.function for e in spec.exercises]
    assert graded == {f"check_{e.function}": e.points for e in spec.exercises}
    assert all(m["locked"] for m in meta if not m["solution"])
    # hidden tests only in graded cells, solutions only in solution cells
    for cell, m in zip(nb.cells, meta):
        assert ("### BEGIN HIDDEN TESTS" in cell.source) == m["grade"]
        assert ("### BEGIN SOLUTION" in cell.source) == m["solution"]
    assert "REFIMPL_SOURCE = 'dist/refimpl.whl'" in nb.cells[1].source


@pytest.mark.parametrize("lab", LABS)
def test_the_notebook_names_the_functions_an_exercise_may_not_call(lab):
    text = _course.source_path(lab).read_text()
    for e in _references.SPECS[lab].exercises:
        for dotted in e.forbidden:
            module, name = dotted.split(":")
            named = f"`{name}`" in text or name.endswith("_naive") and "`_naive` forms" in text
            assert named and f"`{module}`" in text or f"`{module}.{name}`" in text, dotted


def test_a_source_whose_cells_do_not_follow_the_spec_is_refused(monkeypatch, tmp_path):
    source = _course.source_path("adacon").read_text()
    (tmp_path / "adacon.py").write_text(source.replace("# check: adaptive_margin", "# a check"))
    monkeypatch.setattr(labs, "SOURCE_DIR", tmp_path)
    with pytest.raises(ValueError, match="check cells"):
        _course.notebook("adacon")


# ------------------------------------------------------------------ stored references


@pytest.mark.parametrize("lab", [pytest.param(n, marks=[pytest.mark.torch, pytest.mark.slow])
                                 if _references.SPECS[n].needs_torch else n for n in LABS])
def test_stored_references_are_current(lab):
    """Recomputed from refimpl's losses, the references equal the stored ones (to rounding)."""
    if _references.SPECS[lab].needs_torch:
        pytest.importorskip("torch")
    arrays, meta = _course.compute(lab)
    stored = labs.load(lab)
    assert meta["candidates"] == stored.meta["candidates"]
    assert set(arrays) == set(stored._arrays)
    for key, a in arrays.items():
        np.testing.assert_allclose(stored._arrays[key], a, rtol=1e-13, atol=1e-15, err_msg=key)


def test_the_data_parallel_references_without_torch_are_current():
    """Its single-process part (the right DDP step) in the default run; the torch part is marked slow."""
    from refimpl import ddp
    from refimpl.losses import kernel
    import functools

    lab = labs.load("data_parallel")
    for case in ("visible", "hidden"):
        c = lab.case(case)
        want = ddp.expected(c["x"], c["weight"], functools.partial(
            kernel.forward, **{k: c[k] for k in ("labels", "depth", "sigma", "temperature")}),
            kernel.backward, c["world_size"])
        stored = lab.expected("ddp_step_by_hand", case)
        for rank, w in enumerate(want):
            for key, value in w.items():
                np.testing.assert_allclose(stored[f"{key} (rank {rank})"], value, rtol=1e-13, atol=1e-15)


def test_load_refuses_modified_data(tmp_path):
    from refimpl.gold import GoldError

    shutil.copy(labs.DATA_DIR / "adacon.json", tmp_path)
    arrays = dict(np.load(labs.DATA_DIR / "adacon.npz"))
    arrays["visible/ecdf/F"] = arrays["visible/ecdf/F"] + 1e-3
    np.savez(tmp_path / "adacon.npz", **arrays)
    with pytest.raises(GoldError, match="visible/ecdf/F"):
        labs.load("adacon", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no lab named 'nope'"):
        labs.load("nope")


def test_the_visible_and_hidden_cases_differ():
    for lab in LABS:
        loaded = labs.load(lab)
        visible, hidden = loaded.case("visible"), loaded.case("hidden")
        assert any(np.shape(visible[k]) != np.shape(hidden[k]) or not np.array_equal(visible[k], hidden[k])
                   for k in visible if np.ndim(visible[k]))


# ------------------------------------------------------------------ feedback (gold.compare's report)


def feedback(lab, exercise, kind, monkeypatch):
    return run_lab(lab, monkeypatch, {exercise: kind})[1]


def test_a_pass_is_one_line_per_array_named_as_the_notebook_names_it(monkeypatch):
    printed = feedback("conpro", "preference_backward", "solution", monkeypatch)
    lines = [line for line in printed.splitlines() if "du_i" in line or "du_j" in line or "drefs" in line]
    assert len(lines) == 3 and all(line.startswith("PASS") for line in lines)  # once: the hidden re-run is quiet
    assert "|diff|" not in printed and "input" not in printed


def test_a_forgotten_dout_is_named(monkeypatch):
    printed = feedback("conpro", "margin_backward", "wrong", monkeypatch)
    failing = printed[printed.index("FAIL"):]
    assert "da" in failing and "likely cause:" in failing and "1/dout" in failing
    assert printed.count("FAIL") == 2  # da and db, printed once (the hidden re-run does not run after a failure)


def test_a_flipped_sign_is_named(monkeypatch):
    printed = feedback("conpro", "cosine_backward", "wrong", monkeypatch)
    assert any(line.startswith("PASS") and "da" in line for line in printed.splitlines())
    failing = printed[printed.index("FAIL"):]
    assert "db" in failing and "likely cause:" in failing and "sign" in failing


def test_a_factor_of_the_references_count_is_named(monkeypatch):
    printed = feedback("conpro", "preference_backward", "wrong", monkeypatch)
    failing = printed[printed.index("FAIL"):]
    assert "drefs" in failing and "R (the references)" in failing


def test_a_hidden_failure_is_reported(monkeypatch):
    """An answer fitted to the visible case passes it and fails the hidden re-run, which then prints."""
    fitted = '''\
def ecdf(y, population=None):
    return lab.expected("ecdf")["F"].copy()
'''
    monkeypatch.setitem(SHORTCUTS["adacon"], "ecdf", fitted)
    outcome, printed = run_lab("adacon", monkeypatch, {"ecdf": "shortcut"})
    assert isinstance(outcome["ecdf"], AssertionError) and "hidden case" in str(outcome["ecdf"])
    assert printed.count("FAIL") == 1


# ------------------------------------------------------------------ the commands


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "refimpl", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
                              str(labs.DATA_DIR.parents[2]), os.environ.get("PYTHONPATH"))))})


def test_lab_list_names_every_exercise_and_its_points():
    out = cli("lab", "list")
    assert out.returncode == 0
    for lab, exercise in EXERCISES:
        assert lab in out.stdout and exercise in out.stdout


def test_lab_source_writes_a_course_and_refuses_to_overwrite(tmp_path):
    out = cli("lab", "source", "--out", str(tmp_path), "--lab", "adacon,wsp")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "source" / "adacon" / "adacon.ipynb").exists()
    assert (tmp_path / "nbgrader_config.py").exists() and not (tmp_path / "source" / "conpro").exists()
    again = cli("lab", "source", "--out", str(tmp_path), "--lab", "adacon")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--overwrite" in again.stderr
    assert cli("lab", "source", "--out", str(tmp_path), "--lab", "adacon", "--overwrite").returncode == 0
    wrong = cli("lab", "source", "--out", str(tmp_path), "--lab", "nope")
    assert wrong.returncode == 2 and "--lab" in wrong.stderr and "conpro" in wrong.stderr


def test_lab_data_writes_the_stored_references(tmp_path):
    out = cli("lab", "data", "--out", str(tmp_path), "--lab", "adacon")
    assert out.returncode == 0, out.stderr
    written = labs.load("adacon", data_dir=tmp_path)
    assert written.meta["candidates"] == labs.load("adacon").meta["candidates"]


def test_tutorials_are_copied_out(tmp_path):
    out = cli("tutorials", "--out", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr
    names = {p.name for p in (tmp_path / "t").iterdir()}
    assert {"02_conpro.ipynb", "02_conpro.py", "build.py"} <= names
    again = cli("tutorials", "--out", str(tmp_path / "t"))
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize("install_from", ["", "dist/refimpl-0.1.0-py3-none-any.whl"])
def test_the_set_up_cell_installs_refimpl_when_missing(install_from, monkeypatch):
    """Where refimpl cannot be imported, the first cell pip-installs what the instructor set, or says to ask."""
    import importlib.util

    cell = _course.notebook("adacon", install_from=install_from).cells[1].source
    calls = []
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(subprocess, "check_call", lambda argv: calls.append(argv))
    setup = cell[:cell.index("from refimpl import labs")]  # up to the install
    if not install_from:
        with pytest.raises(RuntimeError, match="REFIMPL_SOURCE is empty"):
            exec(setup, {})
        return
    exec(setup, {})
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet", install_from]]
