"""Smoke tests of ``refimpl bench losses``: it runs, checks values, writes JSON."""
import json

import pytest

from refimpl import cli, fingerprint
from refimpl.bench import _timing, losses


def test_bench_losses_runs_and_writes_json(tmp_path, torch, capsys, bench_threads):
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "losses", "--sizes", "32", "--dim", "8", "--rounds", "1", "--pause", "0",
                     "--dtype", "float64", "--no-memory", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [r["loss"] for r in rows] == list(losses.LOSSES)
    assert all(r["refimpl_s"] > 0 and r["torch_s"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "kernel" in printed
    assert_fingerprint_recorded(data["machine"], printed, threads=2)


def assert_fingerprint_recorded(machine, printed, threads):
    """The JSON holds the numeric fingerprint taken after the thread limit, and the header prints it."""
    fp = machine["fingerprint"]
    assert set(fp) == set(fingerprint.fingerprint())
    assert fp["environment"]["OPENBLAS_NUM_THREADS"] == str(threads)
    if fp["blas_source"] == "threadpoolctl":
        assert fp["blas"] and all(b["threads"] == threads for b in fp["blas"])
    assert fingerprint.describe(fp) in printed


@pytest.mark.parametrize("name", losses.LOSSES)
def test_refimpl_and_torch_agree_before_timing(name, torch):
    case = losses.Case(name, 24, 6, "float64", seed=3)
    x = case.host_inputs()
    ours = case.refimpl_step(x)
    theirs = case.torch_step({k: torch.from_numpy(v) for k, v in x.items()})
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


def test_peak_memory_probe_sees_a_large_allocation():
    code = ("import json, numpy as np\n"
            "from refimpl.bench._timing import measure_peak_in_this_process\n"
            "print(json.dumps(measure_peak_in_this_process(lambda: np.ones(4 * 2**20).sum())))\n")
    kib = _timing.peak_rss_kib(code, threads=1)
    assert 30 * 1024 <= kib <= 40 * 1024  # 32 MiB of float64 ones


def test_undisturbed_rounds_alternate_and_pair_calls(monkeypatch):
    """A fake clock: each call of "a" takes 0.2 s and of "b" 0.1 s; every pause is taken."""
    clock, calls, pauses = [0.0], [], []
    monkeypatch.setattr(_timing.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(_timing.time, "sleep", pauses.append)

    def call(name, seconds):
        def run():
            calls.append(name)
            clock[0] += seconds
        return run

    timing = _timing.undisturbed_rounds({"a": call("a", 0.2), "b": call("b", 0.1)}, rounds=3, pause=0.5,
                                        warmup=1)
    # warm-up, then per round and side an untimed and a timed call; the order alternates
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert pauses == [0.5] * 6
    assert timing.seconds == {"a": [pytest.approx(0.2)] * 3, "b": [pytest.approx(0.1)] * 3}
    assert timing.ratio == pytest.approx(2.0) and len(timing.ratios) == 3
    with pytest.raises(ValueError, match="at least one callable"):
        _timing.undisturbed_rounds({})


def test_undisturbed_rounds_of_long_calls_skip_warmup_and_wake(monkeypatch):
    """One candidate (the only side that fits in memory), no warm-up, no wake call: one call per round."""
    clock, calls = [0.0], []
    monkeypatch.setattr(_timing.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(_timing.time, "sleep", lambda s: None)

    def run():
        calls.append("a")
        clock[0] += 3.0

    timing = _timing.undisturbed_rounds({"a": run}, rounds=2, warmup=0, wake=False)
    assert calls == ["a", "a"] and timing.seconds == {"a": [3.0, 3.0]} and timing.ratios == []


def test_machine_facts_are_printable():
    info = _timing.machine()
    assert info["cores"] >= 1 and info["cpu"]
    assert info["fingerprint"] == fingerprint.fingerprint()
    line = _timing.describe(info)
    assert info["cpu"] in line and fingerprint.describe(info["fingerprint"]) in line


def test_scaling_mode_times_blocked_dense_torch_and_says_what_does_not_fit(tmp_path, torch, capsys, bench_threads):
    out = tmp_path / "scaling.json"
    # 300 KiB: at N = 64 every side fits (torch: 7 * 64^2 * 8 B = 224 KiB); at N = 128 torch needs 896 KiB
    code = cli.main(["bench", "losses", "--sizes", "128", "64", "--dim", "8", "--block-size", "16", "--rounds", "1",
                     "--pause", "0", "--dtype", "float64", "--no-memory", "--max-gib", str(300 / 2**20),
                     "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["loss"], r["n"]) for r in rows] == [("kernel", 64), ("kernel", 128), ("adacon", 64), ("adacon", 128)]
    for small, large in (rows[:2], rows[2:]):
        assert all(small[f"{side}_s"] > 0 for side in losses.SIDES)
        assert large["blocked_s"] > 0 and large["dense_s"] > 0 and "torch_s" not in large
        assert large["torch_needs_gib"] * 2**30 == 7 * 128**2 * 8
    printed = capsys.readouterr().out
    assert "torch: not run, would need ~0.0 GiB (7 (N, N) float64 arrays)" in printed


def test_dense_memory_estimate_extrapolates_a_large_enough_measurement():
    case = losses.Case("kernel", 32768, 128, "float32", block_size=1024)
    need, how = losses.estimated_bytes(case, "dense", {})
    assert need == 2 * 32768**2 * 4 and "2 (N, N) float32 arrays" in how
    measured = {("kernel", "dense", "float32"): (16384, 2072 * 1024)}
    need, how = losses.estimated_bytes(case, "dense", measured)
    assert need == 4 * 2072 * 2**20 and "measured 2072 MiB at N = 16384" in how
    tiny = {("kernel", "dense", "float32"): (256, 900)}  # below the resolution that says anything about N^2
    assert losses.estimated_bytes(case, "dense", tiny)[0] == 2 * 32768**2 * 4


def test_scaling_mode_refuses_losses_without_a_blocked_form(torch, bench_threads):
    with pytest.raises(SystemExit, match="--block-size applies to kernel, adacon"):
        cli.main(["bench", "losses", "--losses", "margin", "--block-size", "16", "--sizes", "32"])
