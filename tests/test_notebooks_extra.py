"""The ``notebooks`` extra brings what a reader needs: a front end to open the tutorials (Jupyter
Notebook 7, which brings JupyterLab) and nbconvert; without the extra these tests skip."""
import subprocess
import sys
from pathlib import Path

import pytest

nbconvert = pytest.importorskip("nbconvert")
pytest.importorskip("notebook")

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "00_quickstart.ipynb"


def test_the_front_end_starts():
    done = subprocess.run([sys.executable, "-m", "jupyter", "notebook", "--version"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip()[:1].isdigit(), done.stderr[-2000:]


def test_nbconvert_turns_a_tutorial_into_html_and_a_script():
    html, _ = nbconvert.HTMLExporter().from_filename(str(TUTORIAL))
    script, _ = nbconvert.ScriptExporter().from_filename(str(TUTORIAL))
    assert "<html" in html and "refimpl" in html and len(html) > 10_000
    assert "import" in script and "refimpl" in script
