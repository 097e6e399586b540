"""The augmentation-scale recipe: end to end with --fast, determinism, claims computed, user data, DINO pieces."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refimpl import gradcheck
from refimpl.model import load_npz
from refimpl.recipes import _common as C
from refimpl.recipes import _dino, augscale

FIGURES = ("pair_distances.png", "representations.png", "augmentations.png", "training.png")


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("augscale")
    return augscale.run(seed=0, fast=True, out_dir=str(out), progress=False), out


def test_fast_run_writes_valid_outputs(fast_run):
    result, out = fast_run
    assert json.loads((out / "metrics.json").read_text()) == result
    assert result["recipe"] == "augscale" and result["seed"] == 0
    assert list(result["methods"]) == ["strong", "weak", "weak+med", "random init"]
    for name, row in result["methods"].items():
        assert set(row) == {"separation", "pixel_separation", "probe_auroc", "probe_aupr"}, name
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in row.values()), name
    config = json.loads((out / "config.json").read_text())
    assert config["hyperparameters"] == augscale.default_config(fast=True)
    assert config["scaled_down"] == augscale.SCALED_DOWN
    assert config["presets"]["weak"]["global_scale"] == [0.5, 1.0]
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # the random init is evaluated on the weak model's views: the same pixels
    assert result["methods"]["random init"]["pixel_separation"] == result["methods"]["weak"]["pixel_separation"]
    net = augscale.network(augscale.default_config(fast=True))
    for name in result["methods"]:
        params, state = load_npz(out / f"params_teacher_{C.file_stem(name)}.npz", net)
        assert "conv1.w" in params and "bn1.running_var" in state


def test_claims_compare_weak_with_strong_and_weak_med(fast_run):
    result, _ = fast_run
    m, claims = result["methods"], result["claims"]
    assert [c["claim"] for c in claims] == list(augscale.CLAIMS)
    expected = [m["weak"]["separation"] > m["strong"]["separation"],
                m["weak"]["probe_auroc"] > m["strong"]["probe_auroc"],
                m["weak"]["probe_aupr"] > m["strong"]["probe_aupr"],
                m["weak"]["probe_auroc"] > m["weak+med"]["probe_auroc"]]
    assert [c["holds"] for c in claims] == expected


def _tiny():
    return {"steps": 2, "warmup_steps": 0, "images_per_step": 8, "local_crops": 1}


def test_user_arrays():
    rng = np.random.default_rng(0)
    severity = np.repeat(np.arange(3), 16)
    images = np.clip(0.2 + 0.2 * severity[:, None, None, None] + 0.05 * rng.standard_normal((48, 1, 32, 32)), 0, 1)
    result = augscale.run(seed=2, data={"images": images, "severity": severity}, progress=False,
                          presets=["strong", "weak"], split=[0.5, 0.5], **_tiny())
    assert list(result["methods"]) == ["strong", "weak", "random init"]
    assert len(result["claims"]) == 3  # no weak+med, no claim about it


@pytest.mark.parametrize("data, message", [
    ({"images": np.zeros((4, 1, 48, 48)), "severity": np.zeros(4, int)}, "multiples of 32"),
    ({"images": np.zeros((4, 1, 32, 32)), "severity": np.zeros(4)}, "integers"),
    ({"images": np.zeros((4, 1, 32, 32)), "severity": np.zeros(4, int), "subject": np.zeros(3)}, "subject"),
])
def test_bad_user_arrays(data, message):
    with pytest.raises(ValueError, match=message):
        augscale.run(data=data, progress=False, **_tiny())


def test_presets_must_include_strong_and_weak():
    with pytest.raises(ValueError, match="presets must include"):
        augscale.run(fast=True, progress=False, presets=["weak"])


def test_prototypes_are_cosines_and_their_gradient_is_right():
    layer = _dino.Prototypes(4, 3)
    params = layer.init(0, "float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4))
    out, _ = layer.forward(params, x, train=True)
    w = params["w"]
    np.testing.assert_allclose(out, x @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T)
    scaled, _ = layer.forward({"w": 7.0 * w}, x, train=True)  # the norm of a prototype does not count
    np.testing.assert_allclose(scaled, out)

    def forward(x, w):
        return layer.forward({"w": w}, x, train=True)

    def backward(dout, cache):
        grads, dx = layer.backward(dout, cache)
        return dx, grads["w"]

    assert gradcheck.check_vjp(forward, backward, [x, w]).worst_rel_error < 1e-6


def test_head_gradient_and_batchnorm1d_matches_batchnorm2d():
    head = _dino.dino_head(4, hidden=6, bottleneck=3, prototypes=5)
    params, state = head.init(0, "float64"), head.init_state("float64")
    x = np.random.default_rng(2).standard_normal((7, 4))
    hidden = x @ params["fc1.w"].T + params["fc1.b"]
    normed = (hidden - hidden.mean(0)) / np.sqrt(hidden.var(0) + 1e-5)
    bn, _ = _dino.BatchNorm1d(6).forward(_dino.BatchNorm1d(6).init(0, "float64"), hidden, train=True,
                                         state=_dino.BatchNorm1d(6).init_state("float64"))
    np.testing.assert_allclose(bn, normed, atol=1e-12)

    def forward(x, w1, w2):
        return head.forward({**params, "fc1.w": w1, "fc2.w": w2}, x, train=True, state=state)

    def backward(dout, cache):
        grads, dx = head.backward(dout, cache)
        return dx, grads["fc1.w"], grads["fc2.w"]

    assert gradcheck.check_vjp(forward, backward, [x, params["fc1.w"], params["fc2.w"]]).worst_rel_error < 1e-5


def test_teacher_momentum_and_ema():
    assert _dino.teacher_momentum(0, 10, 0.99) == pytest.approx(0.99)
    assert _dino.teacher_momentum(10, 10, 0.99) == pytest.approx(1.0)
    m = [_dino.teacher_momentum(k, 10, 0.9) for k in range(11)]
    assert all(a < b for a, b in zip(m, m[1:]))
    teacher = {"w": np.array([1.0, 2.0])}
    new = _dino.ema(teacher, {"w": np.array([3.0, 0.0])}, 0.75)
    np.testing.assert_allclose(new["w"], [1.5, 1.5])
    np.testing.assert_array_equal(teacher["w"], [1.0, 2.0])  # not mutated
