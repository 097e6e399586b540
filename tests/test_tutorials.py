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


def test_strip_solutions_keeps_everything_else():
    text = ("x = 1\n"
            "def f():\n"
            "    ### BEGIN SOLUTION\n"
            "    return 2\n"
            "    ### END SOLUTION\n"
            "y = f\n")
    assert build.strip_solutions(text) == 'x = 1\ndef f():\n    raise NotImplementedError("your code here")\ny = f\n'
