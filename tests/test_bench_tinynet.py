"""Smoke test of ``refimpl bench tinynet`` (the timings themselves are not tested)."""
import json

import pytest

import refimpl
from refimpl import cli
from refimpl.bench import _timing

from test_bench_losses import assert_fingerprint_recorded


def test_relaunch_only_when_the_thread_variables_differ(monkeypatch, capfd):
    for name in _timing.THREAD_VARIABLES:
        monkeypatch.setenv(name, "3")
    assert not _timing.needs_relaunch(3) and _timing.needs_relaunch(2)   # with or without threadpoolctl
    assert _timing.relaunch(["--version"], threads=1) == 0
    assert capfd.readouterr().out.strip() == f"refimpl {refimpl.__version__}"


@pytest.mark.torch
def test_quick_run_writes_every_kernel_size_and_dtype(torch, tmp_path, bench_threads):
    path = tmp_path / "tinynet.json"
    assert cli.main(["bench", "tinynet", "--quick", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [(r["kernel_size"], r["dtype"]) for r in rows] == [
        (5, "float32"), (5, "float64"), (3, "float32"), (3, "float64")]
    for r in rows:
        assert (r["batch"], r["size"]) == (4, 32)
        assert r["refimpl_s"] > 0 and r["torch_s"] > 0
        assert r["ratio"] == pytest.approx(r["refimpl_s"] / r["torch_s"])
    # the two dtypes compute the same loss (same seed and parameters)
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], rel=1e-4)
    assert rows[2]["loss"] == pytest.approx(rows[3]["loss"], rel=1e-4)


@pytest.mark.torch
def test_quick_run_times_each_algorithm_on_the_same_loss(torch, tmp_path, capsys, bench_threads):
    path = tmp_path / "tinynet.json"
    assert cli.main(["bench", "tinynet", "--quick", "--kernel-sizes", "5", "--dtypes", "float64",
                     "--algorithms", "im2col", "fft", "auto", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    rows = data["rows"]
    assert [r["algorithm"] for r in rows] == ["im2col", "fft", "auto"]
    assert rows[1]["loss"] == pytest.approx(rows[0]["loss"], rel=1e-12)
    assert rows[2]["loss"] == pytest.approx(rows[0]["loss"], rel=1e-12)
    assert_fingerprint_recorded(data["machine"], capsys.readouterr().out, threads=2)


@pytest.mark.torch
def test_quick_run_with_workers_times_the_split_step_on_the_same_loss(torch, tmp_path, bench_threads):
    serial, split = tmp_path / "serial.json", tmp_path / "split.json"
    common = ["bench", "tinynet", "--quick", "--kernel-sizes", "5", "--dtypes", "float64"]
    assert cli.main(common + ["--json", str(serial)]) == 0
    assert cli.main(common + ["--workers", "2", "--json", str(split)]) == 0
    one, two = (json.loads(p.read_text()) for p in (serial, split))
    assert (one["workers"], two["workers"]) == (1, 2) and two["rows"][0]["workers"] == 2
    assert two["rows"][0]["loss"] == pytest.approx(one["rows"][0]["loss"], rel=1e-12)
    processes = tmp_path / "processes.json"
    assert cli.main(common + ["--workers", "2", "--processes", "--json", str(processes)]) == 0
    three = json.loads(processes.read_text())
    assert three["processes"] and three["rows"][0]["processes"] and not two["rows"][0]["processes"]
    assert three["rows"][0]["loss"] == pytest.approx(one["rows"][0]["loss"], rel=1e-12)
    with pytest.raises(SystemExit) as refused:                      # refused while parsing, before any work
        cli.main(common + ["--workers", "0"])
    assert refused.value.code == 2


@pytest.mark.torch
def test_profile_with_workers_times_each_shard_alone_and_the_shards_in_threads_and_processes(torch, tmp_path, capsys, bench_threads):
    path = tmp_path / "split.json"
    assert cli.main(["bench", "tinynet", "--quick", "--kernel-sizes", "3", "--dtypes", "float64",
                     "--workers", "3", "--profile", "--json", str(path)]) == 0
    floor = json.loads(path.read_text())["rows"][0]["split_floor"]
    assert len(floor["shard_alone_s"]) == 3 and min(floor["shard_alone_s"]) > 0   # batch 4: shards of 2, 1, 1
    assert floor["shards_in_threads_s"] > 0 and floor["shards_in_processes_s"] > 0
    out = capsys.readouterr().out
    assert "all shards at once in plain threads" in out and "at once in processes" in out


@pytest.mark.torch
def test_a_run_in_process_leaves_the_callers_thread_counts(torch, bench_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def counts():
        return torch.get_num_threads(), [i["num_threads"] for i in threadpoolctl.threadpool_info()
                                         if i["user_api"] == "blas"]

    import scipy.linalg  # noqa: F401 -- SciPy's own OpenBLAS loaded now, so its count is the caller's too

    original = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        torch.set_num_threads(1)
        before = counts()
        try:
            assert cli.main(["bench", "tinynet", "--quick", "--kernel-sizes", "3", "--dtypes", "float64"]) == 0
            assert counts() == before   # the benchmark ran on 2 threads and gave the 1s back
        finally:
            torch.set_num_threads(original)
