"""The ``refimpl`` command: entry points, help, and errors for unknown commands."""
import subprocess
import sys

import pytest

import refimpl
from refimpl import cli, fingerprint


def test_info_prints_versions(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"refimpl {refimpl.__version__}" in out and "numpy" in out and "cupy" in out
    # what decides the last bits: the BLAS, its kernel and threads, the BLAS variables
    assert f"fingerprint {fingerprint.describe(fingerprint.fingerprint())}\n" in out


def test_python_dash_m_runs_the_same_command():
    done = subprocess.run([sys.executable, "-m", "refimpl", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"refimpl {refimpl.__version__}"


def test_subcommand_help_lists_its_own_options(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["bench", "losses", "--help"])
    assert stop.value.code == 0
    assert "--sizes" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["bench"], ["bench", "nope"], ["nope"]])
def test_missing_or_unknown_commands_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--help" in err  # one line, pointing to the usage
