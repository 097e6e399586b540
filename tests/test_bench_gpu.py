"""``refimpl bench gpu`` and scripts/gpu_check.sh: the parts that run without a GPU."""
import json
import pathlib
import subprocess
import sys
import types

import pytest

from refimpl import backend, cli, fingerprint
from refimpl.bench import gpu

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


def test_json_records_the_device_and_the_hosts_fingerprint(tmp_path, monkeypatch, capsys):
    """The writing path, with the GPU workloads replaced by stand-ins (no GPU needed)."""
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setattr(backend, "cupy_available", lambda: True)
    monkeypatch.setattr(gpu, "describe", lambda: {"gpu": "stand-in"})
    row = {"workload": "w", "dtype": "float32", "refimpl_s": 2e-3, "torch_s": 1e-3, "ratio": 2.0}
    monkeypatch.setattr(gpu, "tinynet_row", lambda *a, **k: row)
    monkeypatch.setattr(gpu, "loss_row", lambda *a, **k: row)
    refused = dict(row, workload="train step", captured_error="NotImplementedError: cuBLAS")
    monkeypatch.setattr(gpu, "captured_row", lambda *a, **k: refused)
    path = tmp_path / "gpu.json"
    assert cli.main(["bench", "gpu", "--quick", "--dtypes", "float32", "--kernel-sizes", "5",
                     "--losses", "margin", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["device"] == {"gpu": "stand-in"} and len(data["rows"]) == 5  # 3 algorithms, the train step, a loss
    assert data["rows"][3]["captured_error"] == "NotImplementedError: cuBLAS"
    assert data["fingerprint"] == fingerprint.fingerprint()
    printed = capsys.readouterr().out
    assert f"host: {fingerprint.describe(data['fingerprint'])}" in printed
    assert "not captured: NotImplementedError: cuBLAS" in printed


def test_algorithms_and_the_train_step_can_be_chosen(monkeypatch):
    """``--algorithms`` reaches tinynet_row; ``--no-captured`` skips the train step."""
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setattr(backend, "cupy_available", lambda: True)
    monkeypatch.setattr(gpu, "describe", lambda: {"gpu": "stand-in"})
    seen = []
    row = {"workload": "w", "dtype": "float32", "refimpl_s": 2e-3, "torch_s": 1e-3, "ratio": 2.0}
    monkeypatch.setattr(gpu, "tinynet_row", lambda *a, algorithm, **k: seen.append(algorithm) or row)
    monkeypatch.setattr(gpu, "loss_row", lambda *a, **k: row)
    monkeypatch.setattr(gpu, "captured_row", lambda *a, **k: seen.append("captured") or row)
    assert cli.main(["bench", "gpu", "--quick", "--dtypes", "float32", "--kernel-sizes", "5", "--losses", "margin",
                     "--algorithms", "fft", "--no-captured"]) == 0
    assert seen == ["fft"]
