"""The AdaCon recipe: end to end with --fast, determinism, claims computed, user data, its pieces."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import gradcheck
from refimpl.model import Linear, ReLU, Sequential, load_npz
from refimpl.recipes import adacon
from refimpl.recipes import _common as C

FIGURES = ("predictions.png", "similarity_vs_ecdf.png", "representations.png", "training.png")


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adacon")
    return adacon.run(seed=0, fast=True, out_dir=str(out), progress=False), out


def test_fast_run_writes_valid_outputs(fast_run):
    result, out = fast_run
    assert json.loads((out / "metrics.json").read_text()) == result
    assert result["recipe"] == "adacon" and result["seed"] == 0
    assert list(result["methods"]) == list(adacon.METHODS)
    for name, row in result["methods"].items():
        assert set(row) == {"mae", "rmse", "r2", "sim_vs_ecdf_spearman"}, name
        assert all(math.isfinite(v) for v in row.values()), name
        assert 0 < row["mae"] <= row["rmse"]  # MAE <= RMSE for any residuals
        assert -1 <= row["sim_vs_ecdf_spearman"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["hyperparameters"] == adacon.default_config(fast=True)
    assert config["scaled_down"] == adacon.SCALED_DOWN and config["seed"] == 0
    assert set(config["gamma_con"]) == set(adacon.METHODS) and config["gamma_con"]["L1 only"] == 0
    assert all(config["gamma_con"][m] > 0 for m in adacon.METHODS[1:])
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    net = adacon.network(adacon.default_config(fast=True))
    for method in adacon.METHODS:
        params, state = load_npz(out / f"params_{C.file_stem(method)}.npz", net)
        assert "f.bn1.running_mean" in state and "heads.reg.w" in params


def test_claims_compare_adacon_with_the_best_other_method(fast_run):
    result, _ = fast_run
    methods, claims = result["methods"], result["claims"]
    assert [c["claim"] for c in claims] == list(adacon.CLAIMS)
    others = [m for m in methods if m != "L1 + AdaCon"]
    lowest = min(methods[m]["mae"] for m in others)
    assert claims[0]["effect"] == pytest.approx(lowest - methods["L1 + AdaCon"]["mae"])
    assert claims[1]["holds"] == (methods["L1 + AdaCon"]["mae"] < methods["L1 only"]["mae"])
    steepest = min(methods[m]["sim_vs_ecdf_spearman"] for m in others)
    assert claims[2]["holds"] == (methods["L1 + AdaCon"]["sim_vs_ecdf_spearman"] < steepest)


def test_user_arrays():
    rng = np.random.default_rng(0)
    target = rng.uniform(0.0, 1.0, 48)
    images = np.clip(target[:, None, None, None] + 0.1 * rng.standard_normal((48, 1, 16, 16)), 0, 1)
    result = adacon.run(seed=1, data={"images": images, "target": target}, progress=False,
                        **{**_tiny(), "split": [0.5, 0.5]})
    assert all(math.isfinite(v) for row in result["methods"].values() for v in row.values())


def _tiny():
    return {"steps": 2, "warmup_steps": 0, "images_per_step": 8, "similarity_pairs": 20}


@pytest.mark.parametrize("data, message", [
    ({"images": np.zeros((4, 1, 20, 20)), "target": np.zeros(4)}, "multiples of 16"),
    ({"images": np.zeros((4, 1, 16, 16)), "target": np.zeros(3)}, "target"),
    ({"images": np.zeros((4, 1, 16, 16)), "target": np.zeros(4), "subject": np.zeros(5)}, "subject"),
])
def test_bad_user_arrays(data, message):
    with pytest.raises(ValueError, match=message):
        adacon.run(data=data, progress=False, **_tiny())


def test_unknown_hyperparameter():
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        adacon.run(fast=True, progress=False, step=3)


def test_branches_gradient():
    """Branches = the branches' outputs side by side; its backward matches central differences."""
    heads = adacon.Branches([("a", Linear(3, 1)), ("b", Sequential([("fc", Linear(3, 2)), ("relu", ReLU())]))])
    params = heads.init(0, "float64")
    x = np.random.default_rng(1).standard_normal((5, 3))
    out, _ = heads.forward(params, x, train=True)
    assert out.shape == (5, 3)
    np.testing.assert_array_equal(out[:, :1], x @ params["a.w"].T + params["a.b"])

    def forward(x, w_a, w_b):
        return heads.forward({**params, "a.w": w_a, "b.fc.w": w_b}, x, train=True)

    def backward(dout, cache):
        grads, dx = heads.backward(dout, cache)
        return dx, grads["a.w"], grads["b.fc.w"]

    assert gradcheck.check_vjp(forward, backward, [x, params["a.w"], params["b.fc.w"]]).worst_rel_error < 1e-6


def test_gamma_rule():
    """First epoch: the first batch's ratio; from then on the ratio of the first epoch's means."""
    gamma = adacon._Gamma("auto", epoch_steps=2)
    assert gamma(0, 1.0, 4.0) == 0.25
    assert gamma(1, 3.0, 4.0) == 0.25
    assert gamma(2, 9.0, 1.0) == pytest.approx(2.0 / 4.0)  # mean(1, 3) / mean(4, 4)
    assert gamma(3, 9.0, 1.0) == pytest.approx(0.5)
    assert adacon._Gamma(0.1, epoch_steps=2)(0, 1.0, 4.0) == 0.1
    for bad in ("fixed", -0.5, float("nan"), True):
        with pytest.raises(ValueError, match="gamma must be"):
            adacon._Gamma(bad, epoch_steps=2)


@given(st.lists(st.integers(0, 3), min_size=2, max_size=12), st.integers(0, 2**16))
def test_negatives_have_another_label(labels, seed):
    classes = np.array(labels)
    if np.all(classes == classes[0]):
        with pytest.raises(ValueError, match="single label"):
            adacon._negatives(np.random.default_rng(seed), classes, classes)
        return
    pick = adacon._negatives(np.random.default_rng(seed), classes, classes)
    assert pick.shape == classes.shape
    assert np.all(classes[pick] != classes)


def test_negatives_are_uniform_among_the_allowed():
    pool = np.array([0, 1, 1, 2, 0])
    pick = adacon._negatives(np.random.default_rng(0), np.zeros(6000, dtype=int), pool)
    counts = np.bincount(pick, minlength=5)
    assert counts[0] == counts[4] == 0
    np.testing.assert_allclose(counts[1:4] / 6000, 1 / 3, atol=0.03)


def test_triplet_gradient_scatters_to_the_negatives():
    """(copy, partner, negative copy) triplets: the assembled dz matches central differences."""
    rng = np.random.default_rng(3)
    s = C.Context.make(adacon.default_config(fast=True), {}, seed=0, backend="numpy", dtype="float64",
                       progress=False)
    y = np.tile(np.array([0.1, 0.5, 0.9, 0.3]), 2)
    pick = np.array([1, 2, 0, 2])  # the third copy is the negative of two anchors
    z = rng.standard_normal((8, 3))

    def forward(z):
        value, dz = adacon._triplet(s, z, y, y, pick)
        return value, dz

    def backward(dout, dz):
        return (dout * dz,)

    assert gradcheck.check_vjp(forward, backward, [z]).worst_rel_error < 1e-6
