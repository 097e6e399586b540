"""The tutorials: rendered notebooks current with their sources, each runs top to bottom, labs check.

Executing a notebook needs the ``notebooks`` extra (jupytext, nbclient,
ipykernel); without it these tests skip.
"""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("tutorials_build", ROOT / "tutorials" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)
pytest.importorskip("jupytext")
pytest.importorskip("nbclient")
if importlib.util.find_spec("ipykernel") is None:
    pytest.skip("ipykernel is not installed (the notebooks extra)", allow_module_level=True)

SOURCES = build.sources()
LABS = [s for s in SOURCES if build.SOLUTION.search(s.read_text())]
#: (source, k): the k-th solution block of a lab, one per exercise (or per function of one)
SOLUTION_BLOCKS = [(s, k) for s in LABS for k in range(len(build.SOLUTION.findall(s.read_text())))]
STUDENT_CODE = 'raise NotImplementedError("your code here")'


def without_solution(text: str, k: int) -> str:
    """The source with only its k-th solution block replaced, as the student version replaces it."""
    block = list(build.SOLUTION.finditer(text))[k]
    return text[:block.start()] + build.strip_solutions(block.group(0)) + text[block.end():]


def test_there_are_tutorials_and_labs():
    assert len(SOURCES) >= 3 and LABS


def test_every_notebook_is_rendered_from_its_current_source():
    """A source edited without `python tutorials/build.py` leaves a stale notebook: this says which."""
    assert build.stale() == []


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_tutorial_runs_top_to_bottom(source):
    nb = build.execute(build.notebook(source.read_text()), quick=True)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("source", LABS, ids=lambda p: p.stem)
def test_student_version_fails_its_first_check(source):
    """Without the solutions the notebook stops at the first exercise, with NotImplementedError."""
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="NotImplementedError"):
        build.execute(build.notebook(build.strip_solutions(source.read_text())), quick=True)


@pytest.mark.parametrize("source,k", SOLUTION_BLOCKS, ids=[f"{s.stem}-{k}" for s, k in SOLUTION_BLOCKS])
def test_each_exercise_fails_the_check_cell_right_after_it(source, k):
    """Without solution k alone, the first code cell after the exercise's is the one that fails.

    So every exercise is checked, by the cell that follows it, and nothing
    before that cell needs the missing code.
    """
    from nbclient.exceptions import CellExecutionError

    nb = build.notebook(without_solution(source.read_text(), k))
    with pytest.raises(CellExecutionError, match="NotImplementedError"):
        build.execute(nb, quick=True)  # executes in place: the outputs stay in nb
    code = [c for c in nb.cells if c.cell_type == "code"]
    exercise = next(i for i, c in enumerate(code) if STUDENT_CODE in c.source)
    failed = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed == [exercise + 1], f"the exercise is code cell {exercise}, the failure came in {failed}"


def test_strip_solutions_keeps_everything_else():
    text = ("x = 1\n"
            "def f():\n"
            "    ### BEGIN SOLUTION\n"
            "    return 2\n"
            "    ### END SOLUTION\n"
            "y = f\n")
    assert build.strip_solutions(text) == 'x = 1\ndef f():\n    raise NotImplementedError("your code here")\ny = f\n'
