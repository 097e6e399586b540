"""The ``refimpl`` command refuses a mistake before any work: exit status 2, one line naming the argument,
within seconds. Also: help on every option, ``--threads`` counted in the process that trains, an output
folder never shared between runs, quiet broken pipes, JSON alone on stdout, bars only on a terminal.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import refimpl
from refimpl import _cli_args, cli
from refimpl.fingerprint import describe, fingerprint
from refimpl.recipes import _common
from refimpl.recipes import cli as run_cli

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 5.0  # a refusal; even a --fast run trains for longer


def _unwritable_dir(tmp_path) -> Path:
    """A folder where files cannot be created: chmod 555, or (a superuser passes that) /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder
    if _cli_args._writable(Path("/sys")) is None:
        pytest.skip("running as a superuser and /sys is writable: no read-only folder to try")
    return Path("/sys")


def _main(argv):
    try:
        return cli.main(argv)
    except SystemExit as stop:  # argparse's refusals
        return stop.code


def _assert_refused(capsys, argv, option, expected=""):
    start = time.perf_counter()
    code = _main(argv)
    seconds = time.perf_counter() - start
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (argv, out, err)
    assert len(lines) == 1 and option in lines[0], err
    assert expected in lines[0], lines[0]
    assert out == "", "nothing (no run header) may reach stdout before a refusal"
    assert seconds < SECONDS, f"{argv} took {seconds:.1f} s to refuse"
    return lines[0]


@pytest.mark.parametrize("argv, option, expected", [
    (["run", "wsp", "--seed", "-1"], "--seed", "non-negative integer"),
    (["run", "wsp", "--seed", "1.5"], "--seed", "non-negative integer"),
    (["run", "wsp", "--seed", "abc"], "--seed", "non-negative integer"),
    (["run", "claims", "--seeds", "0", "-1"], "--seeds", "non-negative integer"),
    (["run", "wsp", "--threads", "0"], "--threads", "positive integer"),
    (["run", "wsp", "--threads", "-2"], "--threads", "positive integer"),
    (["run", "wsp", "--threads", "two"], "--threads", "positive integer"),
    (["run", "wsp", "--dtype", "float16"], "--dtype", "float32"),
    (["run", "wsp", "--backend", "jax"], "--backend", "numpy"),
    (["run", "wsp", "--out", "/proc/x/y"], "--out", "/proc/x/y"),
    (["data", "gallery", "--seed", "-3"], "--seed", "non-negative integer"),
    (["data", "gallery", "--size", "8"], "--size", "at least 16"),
    (["data", "gallery", "--out", "/proc/x/g.png"], "--out", "/proc/x/g.png"),
    (["gold", "make"], "--out", "required"),
    (["gold", "make", "--out", "/proc/x/y"], "--out", "/proc/x/y"),
])
def test_each_mistake_is_refused_in_one_line(argv, option, expected, capsys):
    _assert_refused(capsys, argv, option, expected)


def test_cupy_backend_without_a_gpu_is_refused(capsys):
    if refimpl.backend.cupy_available():
        pytest.skip("CuPy with a CUDA device is available here")
    _assert_refused(capsys, ["run", "wsp", "--backend", "cupy"], "--backend", "CUDA")


def test_out_that_cannot_be_written_is_refused(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    _assert_refused(capsys, ["run", "wsp", "--out", str(tmp_path / "a-file")], "--out", "existing file")
    _assert_refused(capsys, ["run", "all", "--out", str(tmp_path / "a-file")], "--out", "is a file")
    _assert_refused(capsys, ["run", "claims", "--out", str(tmp_path)], "--out", "is a folder")
    _assert_refused(capsys, ["gold", "export", "--out", str(tmp_path / "a-file")], "--out", "existing file")
    unwritable = _unwritable_dir(tmp_path)
    _assert_refused(capsys, ["run", "wsp", "--out", str(unwritable / "run")], "--out", "cannot write")
    _assert_refused(capsys, ["gold", "make", "--out", str(unwritable / "gold")], "--out", "cannot write")


def test_a_non_empty_folder_needs_overwrite_and_only_a_runs_folder_is_overwritten(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    line = _assert_refused(capsys, ["run", "wsp", "--out", str(tmp_path)], "--out", "not empty")
    assert "--overwrite" in line
    _assert_refused(capsys, ["run", "wsp", "--out", str(tmp_path), "--overwrite"], "--out",
                    "not the folder of an earlier")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_gold_make_never_writes_into_an_installed_package(tmp_path, monkeypatch, capsys):
    package = tmp_path / "lib" / "site-packages" / "refimpl"
    (package / "gold" / "data").mkdir(parents=True)
    monkeypatch.setattr(refimpl, "__file__", str(package / "__init__.py"))
    _assert_refused(capsys, ["gold", "make", "--out", str(package / "gold" / "data")], "--out", "installed refimpl")
    assert not any((package / "gold" / "data").iterdir())
    assert _cli_args.inside_installed_package(ROOT / "refimpl" / "gold" / "data", ROOT / "refimpl") is False


def test_refusal_is_exit_status_2_from_the_installed_command():
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "refimpl", "run", "conpro", "--seed", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "refimpl run: error: argument --seed: expected a non-negative integer, got '-1' (see refimpl run --help)"]
    assert time.perf_counter() - start < 30


def test_gold_verify_names_a_garbage_file_without_numpys_pickle_advice(tmp_path, capsys):
    for content in (b"not an archive", bytes(range(256)) * 8):
        (tmp_path / "bad.npz").write_bytes(content)
        assert cli.main(["gold", "verify", str(tmp_path / "bad.npz")]) == 2
        err = capsys.readouterr().err
        assert "bad.npz is not valid" in err and "allow_pickle" not in err and "pickle.load" not in err


# ------------------------------------------------------------------ help, pipes, JSON, bars

def _command_paths():
    parser = cli.build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in top.choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        yield from ([[name, inner] for inner in nested[0].choices] if nested else [[name]])


def _parser_of(path):
    parser = cli.build_parser(path)
    for word in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


# The benchmark modules' options get their help with issue 17's benchmark changes (another branch).


@pytest.mark.parametrize("path", list(_command_paths()), ids=" ".join)
def test_every_option_of_every_command_has_help(path):
    parser = _parser_of(path)
    assert parser.description, f"refimpl {' '.join(path)} has no description"
    bare = [a.option_strings or [a.dest] for a in parser._actions
            if not isinstance(a, argparse._HelpAction) and a.help in (None, "", argparse.SUPPRESS)]
    assert not bare, f"refimpl {' '.join(path)}: options without help: {bare}"


def test_top_level_help_describes_the_command(capsys):
    assert _main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "ConPro" in out and "gold" in out and "The ``refimpl`` command" not in out


def _typo_results(tmp_path) -> Path:
    np.savez(tmp_path / "typo.npz", **{f"nope{k}/out": np.zeros(2) for k in range(50)})
    return tmp_path / "typo.npz"


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    child = subprocess.Popen([sys.executable, "-m", "refimpl", "gold", "verify", str(_typo_results(tmp_path)),
                              "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # the reader leaves before the command writes (`| head` that has seen enough)
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141 and err == ""


def test_json_report_is_alone_on_stdout(tmp_path):
    done = subprocess.run([sys.executable, "-m", "refimpl", "gold", "verify", str(_typo_results(tmp_path)),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert not report["ok"] and len(report["cases"]) == 50


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stderr, bars", [(io.StringIO, False), (_Terminal, True)])
def test_progress_bars_only_on_a_terminal(stderr, bars, monkeypatch):
    monkeypatch.setattr(sys, "stderr", stderr())
    step = lambda params, state, k: (1.0, {"w": np.zeros(2)}, state)  # noqa: E731
    _common.train(step, {"w": np.ones(2)}, steps=3, lr=0.1, desc="probe", progress=True)
    assert ("probe" in sys.stderr.getvalue()) == bars


# ------------------------------------------------------------------ a run's output folder

def _fake_recipe(files):
    """A recipe module whose run writes ``files`` (and an earlier run's marker) without training."""
    def run(*, out_dir, **_):
        os.makedirs(out_dir, exist_ok=True)
        for name in files:
            Path(out_dir, name).write_text(json.dumps({"recipe": "fake"}))
        return {"methods": {"m": {"x": 1.0}}, "claims": []}
    return type("Fake", (), {"run": staticmethod(run)})


def test_run_lists_what_it_wrote_and_overwrite_removes_the_earlier_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_cli._timing, "needs_relaunch", lambda threads: False)
    out = tmp_path / "run"
    monkeypatch.setattr(run_cli, "module", lambda name: _fake_recipe(["config.json", "old.npz"]))
    assert cli.main(["run", "wsp", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 files to" in printed
    assert printed.splitlines()[1] == f"== {describe(fingerprint())}"  # the header names what makes the bits
    _assert_refused(capsys, ["run", "wsp", "--out", str(out)], "--out", "not empty")
    monkeypatch.setattr(run_cli, "module", lambda name: _fake_recipe(["config.json", "new.png"]))
    assert cli.main(["run", "wsp", "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert f"wrote 2 files to {out}: config.json, new.png\n" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["config.json", "new.png"]


# ------------------------------------------------------------------ --threads, counted

SITECUSTOMIZE = textwrap.dedent('''
    """Test probe: stands in for the conpro recipe, loads NumPy's and SciPy's BLAS, counts threads."""
    import json, os, sys, types

    class HideThreadpoolctl:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "threadpoolctl":
                raise ImportError("threadpoolctl hidden by the test")

    if os.environ.get("PROBE_HIDE_THREADPOOLCTL"):
        sys.meta_path.insert(0, HideThreadpoolctl())

    def run(**kwargs):
        import numpy as np
        import scipy.linalg  # SciPy's own BLAS, loaded only now: after the command set the threads
        a = np.ones((300, 300))
        a @ a, scipy.linalg.blas.dgemm(1.0, a, a)
        tasks = len(os.listdir("/proc/self/task"))  # OpenBLAS keeps its worker threads alive
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, HideThreadpoolctl)]
        from threadpoolctl import threadpool_info
        blas = [(i["prefix"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
        with open(os.environ["PROBE_OUT"], "w") as f:
            json.dump({"blas": blas, "tasks": tasks, "pid": os.getpid()}, f)
        return {"methods": {}, "claims": []}

    fake = types.ModuleType("refimpl.recipes.conpro")
    fake.run = run
    sys.modules["refimpl.recipes.conpro"] = fake
''')


@pytest.mark.parametrize("hide_threadpoolctl", [False, True], ids=["threadpoolctl", "no-threadpoolctl"])
@pytest.mark.parametrize("threads", [1, 2])
def test_threads_hold_for_every_blas_in_the_process_that_trains(threads, hide_threadpoolctl, tmp_path):
    pytest.importorskip("threadpoolctl")  # the probe reads the thread counts with it
    if threads > os.cpu_count():
        pytest.skip(f"{threads} threads need {threads} cores (OpenBLAS caps its threads at the cores)")
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
               PROBE_OUT=str(tmp_path / "probe.json"), PROBE_HIDE_THREADPOOLCTL="1" if hide_threadpoolctl else "")
    done = subprocess.run([sys.executable, "-m", "refimpl", "run", "conpro", "--threads", str(threads), "--quiet",
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert len(probe["blas"]) == 2, probe  # NumPy's and SciPy's OpenBLAS (wheels bundle one each)
    assert all(n == threads for _, n in probe["blas"]), probe
    assert probe["tasks"] == 1 + len(probe["blas"]) * (threads - 1), probe  # main thread + BLAS workers
