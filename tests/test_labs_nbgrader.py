"""The course labs under the real nbgrader: docs/guide/teaching.md's commands, run in a temporary course folder.

One course holds every lab and, per lab, these submissions: the solution,
the untouched release (for ``adacon`` the one a student fetched and submitted
through the exchange), one wrong answer per exercise, and the shortcuts that
call the library (where refimpl has the function). The guide's steps run in
its order, the test placing the submissions before ``collect``; then the
scores in nbgrader's gradebook, its ``grades.csv`` and the feedback are
asserted. Needs the ``lab`` extra (nbgrader).
"""
import csv
import getpass
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nbgrader")
pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")

from refimpl.labs import LABS, _course, _references  # noqa: E402

from lab_answers import SHORTCUTS, answered_cell  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide" / "teaching.md"
#: a lab under autograde, kernel start included, must finish within (issue 19: well under a minute)
LAB_SECONDS = 60


def guide_steps() -> dict:
    """The guide's bash blocks by the name in their first line (``# generate``, ...), in order."""
    blocks = re.findall(r"^```bash\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), re.M | re.S)
    steps = {}
    for block in blocks:
        first, _, body = block.partition("\n")
        steps[first.lstrip("# ").split(" ")[0]] = body
    return steps


def variants(lab: str) -> dict:
    """Submission name -> {exercise: the code of its solution cell, or None for the release's}."""
    exercises = [e.function for e in _references.SPECS[lab].exercises]
    out = {"solution": {e: "solution" for e in exercises}, "untouched": {e: None for e in exercises}}
    for wrong in exercises:
        out[f"wrong-{wrong}"] = {e: "wrong" if e == wrong else "solution" for e in exercises}
    if lab in SHORTCUTS:
        out["shortcut"] = {e: "shortcut" if e in SHORTCUTS[lab] else "solution" for e in exercises}
    return out


def expected_points(lab: str, variant: str) -> dict:
    """Each check's points for a submission: full for a solution, 0 for anything else."""
    return {f"check_{e.function}": e.points if kind == "solution" else 0
            for e, kind in zip(_references.SPECS[lab].exercises, variants(lab)[variant].values())}


def submission(course: Path, lab: str, kinds: dict):
    """The release notebook of ``lab`` with its solution cells answered as ``kinds`` says."""
    source = {c.metadata["nbgrader"]["grade_id"]: c.source
              for c in nbformat.read(course / "source" / lab / f"{lab}.ipynb", as_version=4).cells}
    nb = nbformat.read(course / "release" / lab / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata["nbgrader"]["solution"]:
            code = source[cell.metadata["nbgrader"]["grade_id"]]
            answer = answered_cell(code, lab, {e: kinds[e] for e in _course.DEFINES.findall(code) if e in kinds})
            cell.source = cell.source if answer is None else answer
    return nb


def shell(script: str, cwd: Path) -> str:
    """Run a guide step with bash; ``refimpl`` is this interpreter's (the checkout's, not whatever is on PATH)."""
    script = re.sub(r"^refimpl ", f'"{sys.executable}" -m refimpl ', script, flags=re.M)
    env = {**os.environ,
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"{script}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The guide run through on every lab; returns the course folder, what each step printed and timings."""
    root = tmp_path_factory.mktemp("teaching")
    course = root / "course"
    course.mkdir()
    steps = guide_steps()
    assert list(steps) == ["install", "generate", "release", "student", "collect", "grade", "hand-back"]
    printed = {"generate": shell(steps["generate"], course)}
    for lab in LABS:
        for name, kinds in variants(lab).items():
            if lab == "adacon" and name == "untouched":
                continue  # submitted through the exchange by the guide's student
            target = course / "submitted" / name / lab / f"{lab}.ipynb"
            target.parent.mkdir(parents=True)
            nbformat.write(submission(course, lab, kinds), target)
            (target.parent / "timestamp.txt").write_text("2026-01-01 12:00:00.000000 UTC")  # as collect writes
    for step in ("release", "student", "collect"):
        printed[step] = shell(steps[step], course)
    printed["validate wrong"] = shell("nbgrader validate submitted/wrong-ecdf/adacon/adacon.ipynb", course)
    seconds = {}
    for lab in LABS:  # the solution alone first, timed; the guide's loop then grades the others
        start = time.perf_counter()
        shell(f"nbgrader autograde {lab} --student solution", course)
        seconds[lab] = time.perf_counter() - start
    for step in ("grade", "hand-back"):
        printed[step] = shell(steps[step], course)
    print("autograde of each lab's solution (s):", {k: round(v, 1) for k, v in seconds.items()})
    return course, printed, seconds


def scores(course: Path, lab: str, student: str) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(lab, lab, student)
        return {grade.name: grade.score for grade in notebook.grades}


CASES = [(lab, v) for lab in LABS for v in variants(lab)]


@pytest.mark.parametrize("lab,variant", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_each_check_scores_as_the_submission_deserves(course, lab, variant):
    """Solution: full marks; untouched: 0; one wrong exercise: only its points lost; shortcut: 0 there."""
    folder, _, _ = course
    student = getpass.getuser() if (lab, variant) == ("adacon", "untouched") else variant
    assert scores(folder, lab, student) == expected_points(lab, variant)


def test_the_exported_grades_sum_the_checks(course):
    folder, _, _ = course
    with open(folder / "grades.csv", newline="") as f:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}
    for lab, variant in CASES:
        student = getpass.getuser() if (lab, variant) == ("adacon", "untouched") else variant
        row = rows[lab, student]
        assert float(row["raw_score"]) == sum(expected_points(lab, variant).values())
        assert float(row["max_score"]) == sum(e.points for e in _references.SPECS[lab].exercises)


def test_each_lab_grades_well_within_a_minute(course):
    _, _, seconds = course
    assert max(seconds.values()) < LAB_SECONDS, seconds


def test_validate_passes_the_source_and_fails_an_untouched_or_wrong_lab(course):
    _, printed, _ = course
    assert "Success! Your notebook passes all the tests." in printed["generate"]
    assert "VALIDATION FAILED" in printed["student"]
    assert "VALIDATION FAILED" in printed["validate wrong"] and "Success!" not in printed["validate wrong"]


def test_feedback_names_the_wrong_array(course):
    folder, _, _ = course
    html = (folder / "feedback" / "wrong-margin_backward" / "conpro" / "conpro.html").read_text()
    assert "FAIL" in html and "1/dout" in html
    solution = (folder / "feedback" / "solution" / "adacon" / "adacon.html").read_text()
    assert "PASS" in solution and "FAIL" not in solution
    handed_back = list((folder.parent / "student" / "adacon" / "feedback").glob("*/adacon.html"))
    assert len(handed_back) == 1 and "NotImplementedError" in handed_back[0].read_text()
