"""Smoke test of ``refimpl bench tinynet`` (the timings themselves are not tested)."""
import argparse
import json

import pytest

from refimpl import cli
from refimpl.bench import _timing, tinynet


def test_argv_repeats_the_arguments():
    parser = argparse.ArgumentParser()
    tinynet.add_arguments(parser)
    args = parser.parse_args(["--dtypes", "float64", "--batch", "4", "--kernel-sizes", "3",
                              "--profile", "--json", "out.json"])
    assert parser.parse_args(tinynet._argv(args)) == args


@pytest.mark.torch
def test_quick_run_writes_every_kernel_size_and_dtype(torch, tmp_path, monkeypatch):
    for name in _timing.THREAD_VARIABLES:  # as if set before NumPy loaded: no re-launch
        monkeypatch.setenv(name, "2")
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
