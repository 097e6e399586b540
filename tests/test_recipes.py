"""Every recipe end to end: ``refimpl run <recipe> --fast`` writes valid outputs, claims are
computed from the metrics, one seed gives the same metrics.json bit for bit, ``data=`` runs on
a user's arrays.

The fast runs go through the command line in a subprocess (which limits NumPy's BLAS to one
thread, as ``refimpl run`` does), once per recipe and session. ``slow`` tests (excluded by
default, ``python -m pytest -m slow``) run each default recipe on the five seeds of ``refimpl run claims``.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from refimpl.model import load_npz, tinynet
from refimpl.recipes import RECIPES, claims, module

INSTALLED = [name for name in RECIPES if claims.installed(name)]
PNG = b"\x89PNG\r\n\x1a\n"


def _run_cli(*argv):
    done = subprocess.run([sys.executable, "-m", "refimpl", "run", *argv, "--quiet"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module", params=INSTALLED)
def fast_run(request, tmp_path_factory):
    """(recipe name, output folder, printed text) of one ``--fast`` run, seed 0."""
    out = tmp_path_factory.mktemp(request.param)
    return request.param, out, _run_cli(request.param, "--fast", "--seed", "0", "--out", str(out))


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_fast_run_writes_valid_metrics_and_config(fast_run):
    name, out, printed = fast_run
    metrics, config = _load(out / "metrics.json"), _load(out / "config.json")
    assert set(metrics) == {"recipe", "seed", "methods", "claims", "fingerprint"}
    for record in (metrics, config):                                  # what made these numbers
        assert record["fingerprint"]["numpy"] == np.__version__ and record["fingerprint"]["blas"]
        assert record["fingerprint"]["environment"].get("OPENBLAS_NUM_THREADS") == "1"  # --threads 1
    assert printed.splitlines()[1].startswith(f"== NumPy {np.__version__} on ")  # the header's fingerprint
    assert metrics["recipe"] == name and metrics["seed"] == 0
    assert len(metrics["methods"]) >= 3
    for method, row in metrics["methods"].items():
        assert row and all(isinstance(v, float) and np.isfinite(v) for v in row.values()), method
        assert method in printed                                      # the printed table has every row
    assert metrics["claims"]
    for c in metrics["claims"]:
        assert {"claim", "holds", "evidence", "effect"} <= set(c)
        assert isinstance(c["holds"], bool) and c["evidence"]
        assert c["holds"] == (c["effect"] > 0)                       # holds is the sign of the effect
        ms = c["multi_seed"]                                         # the verdict over seeds, or None
        label = ("none recorded" if ms is None else ms["verdict"] if ms["mean"] is not None
                 else f"n/a, {ms['n']} seed(s) in docs/claims.md")
        assert f"[multi-seed verdict: {label}] {c['claim']}" in printed
        assert f"this seed: effect {c['effect']:+.4f}" in printed    # never a one-seed sign as a verdict
        assert "[holds]" not in printed and "[fails]" not in printed
    for metric in module(name).METRICS:                              # one line per metric under the table
        assert f"  {metric}: " in printed
    assert config["hyperparameters"] == module(name).default_config(fast=True)
    assert config["seed"] == 0 and config["fast"] is True and config["scaled_down"]
    assert {"refimpl", "numpy", "python"} <= set(config["versions"])


def test_fast_run_writes_figures_and_loadable_parameters(fast_run):
    name, out, _ = fast_run
    pngs = sorted(p for p in os.listdir(out) if p.endswith(".png"))
    assert pngs
    for p in pngs:
        with open(out / p, "rb") as f:
            assert f.read(8) == PNG
        assert os.path.getsize(out / p) > 10_000                     # drawn, not blank
    npz = sorted(p for p in os.listdir(out) if p.endswith(".npz"))
    assert len(npz) >= 3
    cfg = module(name).default_config(fast=True)
    if "widths" in cfg:                                              # TinyNet encoders
        net = tinynet(1, widths=tuple(cfg["widths"]), kernel_size=cfg["kernel_size"],
                      batchnorm=cfg.get("batchnorm", False))
        if hasattr(module(name), "network"):                         # the recipe builds what its files hold
            net = module(name).network(cfg, 1)
        for p in npz:
            params, _ = load_npz(out / p, net)
            assert all(np.all(np.isfinite(v)) for v in params.values())


def test_claims_are_computed_from_the_metrics(fast_run):
    """Recomputing the claims from metrics.json gives them back, and each claim follows its metric:
    the method it is about made far better, then far worse, than every other turns it around."""
    name, out, _ = fast_run
    mod = module(name)
    metrics, cfg = _load(out / "metrics.json"), mod.default_config(fast=True)
    methods = metrics["methods"]
    assert mod.claims_from(methods, cfg) == metrics["claims"]
    for k, c in enumerate(metrics["claims"]):
        metric, rest = c["evidence"].split(": ", 1)                   # "<metric>: <method> <value> ..."
        subject = next(m for m in methods if rest.startswith(m + " "))
        values = [row[metric] for row in methods.values()]
        spread = max(values) - min(values) + 1.0
        outcomes = set()
        for moved in (max(values) + spread, min(values) - spread):
            changed = {m: dict(row) for m, row in methods.items()}
            changed[subject][metric] = moved
            outcomes.add(mod.claims_from(changed, cfg)[k]["holds"])
        assert outcomes == {True, False}, c["claim"]


def test_same_seed_same_metrics_bit_for_bit(fast_run, tmp_path):
    name = fast_run[0]
    _run_cli(name, "--fast", "--seed", "0", "--out", str(tmp_path))
    with open(fast_run[1] / "metrics.json", "rb") as a, open(tmp_path / "metrics.json", "rb") as b:
        assert a.read() == b.read()


def test_conpro_on_user_arrays():
    gen = np.random.default_rng(0)
    severity = np.repeat(np.arange(3), 20)
    images = gen.random((60, 1, 32, 32), dtype=np.float32) * 0.2
    images[:, :, 8:24, 8:24] += severity[:, None, None, None] * 0.3          # a brighter square per level
    result = module("conpro").run(data={"images": images, "severity": severity}, progress=False,
                                  con_steps=3, pro_steps=3, warmup_steps=0, reference_counts=[1, 2], conpro_references=2,
                                  head_epochs=[5], reference_pool=4, pairs_per_step=8)
    assert set(result["methods"]) >= {"SupCon-2", "ConPro (n=2)", "random init"}
    with pytest.raises(ValueError, match="severity"):
        module("conpro").run(data={"images": images, "severity": severity + 1}, progress=False)


def test_wsp_on_user_arrays():
    gen = np.random.default_rng(0)
    patient = np.repeat(np.arange(20), 4)
    depth = np.tile(np.arange(4) / 4, 20)
    label = patient % 2
    images = gen.random((80, 1, 32, 32), dtype=np.float32)
    part = {"images": images, "patient": patient, "depth": depth}
    result = module("wsp").run(data={"pretrain": {**part, "weak_label": label},
                                     "evaluate": {**part, "strong_label": label}},
                               progress=False, steps=2, warmup_steps=0, batch_patients=8, folds=2)
    assert set(result["methods"]) == {"random init", "SimCLR", "SupCon", "y-Aware", "WSP"}
    with pytest.raises(ValueError, match="missing"):
        module("wsp").run(data={"pretrain": part, "evaluate": part}, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", INSTALLED)
def test_default_run_five_seeds(name, tmp_path):
    """Each default recipe on the seeds of ``refimpl run claims``: valid outputs, and the claims those
    runs print are the ones the multi-seed file summarises (the budget is reported, not asserted)."""
    for seed in claims.DEFAULT_SEEDS:
        out = tmp_path / str(seed)
        printed = _run_cli(name, "--seed", str(seed), "--out", str(out))
        metrics = _load(out / "metrics.json")
        assert metrics["seed"] == seed and metrics["claims"]
        assert all(c["multi_seed"] is not None for c in metrics["claims"]), "run refimpl run claims"
        print(printed.splitlines()[-1])                               # "took ... s"


def test_cli_help_and_unavailable_backend(capsys):
    from refimpl import backend, cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--help"])
    assert stop.value.code == 0 and "--fast" in capsys.readouterr().out
    if not backend.cupy_available():
        assert cli.main(["run", "conpro", "--backend", "cupy"]) == 2
        assert "CuPy" in capsys.readouterr().err
