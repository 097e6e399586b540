"""``refimpl bench gpu`` and scripts/gpu_check.sh: the parts that run without a GPU."""
import pathlib
import subprocess

import pytest

from refimpl import backend, cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNS = sorted((ROOT / "docs" / "gpu").glob("*.json"))


def test_ranges_of_the_published_runs(capsys):
    """The GPU guide's table is what ``--ranges`` prints from the committed runs."""
    assert len(RUNS) >= 2
    assert cli.main(["bench", "gpu", "--ranges", *map(str, RUNS)]) == 0
    table = capsys.readouterr().out
    readme = (ROOT / "docs" / "guide" / "gpu.md").read_text()
    for line in table.splitlines():
        if line.startswith("| tinynet") or line.startswith("| kernel"):
            assert line in readme


@pytest.mark.skipif(backend.cupy_available(), reason="checks the message shown without a GPU")
def test_without_a_gpu_it_says_so(capsys):
    assert cli.main(["bench", "gpu", "--quick"]) == 2
    assert "CUDA device" in capsys.readouterr().out


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")], check=True)
