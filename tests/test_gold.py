"""Gold data: regeneration (bit for bit on the gold's fingerprint, far inside the tolerances on any),
coverage, tamper detection, the verify path (Python and CLI), PyTorch implementations of every case
checked through it, and planted bugs that it must catch."""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import shutil

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import refimpl.layers
import refimpl.losses
from refimpl import cli, gold
from refimpl.fingerprint import describe, fingerprint, same_bits
from refimpl.gold import _make, _spec
from refimpl.gold._compare import compare_array

import torch_reference

SPECS = {s.name: s for s in _make.specs()}
NAMES = gold.cases()


def refimpl_fn(name, dtype="float64"):
    """refimpl itself as an implementation under test, on the case's arrays cast to ``dtype``."""
    def fn(inputs):
        cast = {k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v
                for k, v in inputs.items()}
        return _spec.replay(SPECS[name], cast)
    return fn


def tolerance_ratio(name, results, dtype, keys=None):
    """Largest |got - want| / (atol + rtol |want|) over the expected arrays, or the arrays ``keys`` (<= 1 passes)."""
    case = gold.load(name)
    t = case.tolerance[dtype]
    wanted = case.expected if keys is None else {k: case.arrays[k] for k in keys}
    return max((float(np.max(np.abs(np.asarray(results[k], dtype=np.float64) - want)
                             / (t["atol"] + t["rtol"] * np.abs(want)), initial=0.0))
                for k, want in wanted.items()), default=0.0)


# Bit-for-bit comparisons with the shipped gold only where this process has the fingerprint it was made
# with; elsewhere every number within INSIDE of the case's tolerance (far inside: a remake on another
# BLAS kernel stays within 7e-5 of it). The test ids and -ra's skip reasons say which applied.
SHIPPED = gold.manifest()
INSIDE = 1e-3


def bits_compared() -> tuple:
    """``(same, text)``: whether this process now has the gold's fingerprint, and both described.

    Asked when a test runs, not at collection: earlier tests may have limited the BLAS threads since.
    """
    here = fingerprint()
    same = same_bits(SHIPPED["generated_with"], here)
    return same, (f"gold made with {describe(SHIPPED['generated_with'])}; "
                  f"this process {'the same' if same else describe(here)}")


def skip_unless_same_bits() -> None:
    same, text = bits_compared()
    if not same:
        pytest.skip(f"bit-for-bit needs the gold's fingerprint; {text}: the tolerance test applies")


# ------------------------------------------------------------------ making and shipping


@pytest.fixture(scope="module")
def remade(tmp_path_factory):
    out = tmp_path_factory.mktemp("gold")
    return out, gold.make(out)


def test_make_is_bit_for_bit(remade, tmp_path):
    out, manifest = remade
    assert gold.make(tmp_path) == manifest
    for entry in manifest["cases"].values():
        assert (tmp_path / entry["file"]).read_bytes() == (out / entry["file"]).read_bytes()
    assert (tmp_path / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()


def test_the_manifest_records_the_numeric_fingerprint(remade):
    """What decides the last bits (BLAS library, version, kernel, threads, ...), as refimpl.fingerprint gives it."""
    _, manifest = remade
    assert manifest["generated_with"] == fingerprint()
    assert set(SHIPPED["generated_with"]) == set(fingerprint()), "run `refimpl gold make` and commit"


def test_make_reproduces_the_shipped_gold_bit_for_bit(remade):
    """Same fingerprint (NumPy, SciPy, BLAS library, version, kernel, threads, CPU features): the same bytes."""
    out, manifest = remade
    skip_unless_same_bits()
    assert list(SHIPPED["cases"]) == list(manifest["cases"]), "run `refimpl gold make --out refimpl/gold/data` and commit"
    for entry in manifest["cases"].values():
        assert (gold.DATA_DIR / entry["file"]).read_bytes() == (out / entry["file"]).read_bytes(), entry["file"]
    # the manifest but for the fingerprint, whose environment and Python version do not decide bits
    assert {**SHIPPED, "generated_with": None} == {**manifest, "generated_with": None}


def test_make_reproduces_the_shipped_gold_far_inside_the_tolerances(remade):
    """Any fingerprint: every array within INSIDE of the case's float64 tolerance, integers and masks equal.

    Another BLAS kernel or thread count sums in another order, so the last bits
    of outputs and gradients move (by 7e-5 of the tolerance at most, measured
    between OpenBLAS's Haswell and SkylakeX kernels); a real change of the
    computation moves them by far more.
    """
    out, manifest = remade
    same, text = bits_compared()
    print(f"compared within {INSIDE:g} of the gold tolerances; bit for bit too: {same} ({text})")
    assert list(SHIPPED["cases"]) == list(manifest["cases"]), "run `refimpl gold make --out refimpl/gold/data` and commit"
    for name, entry in manifest["cases"].items():
        shipped = SHIPPED["cases"][name]
        assert {k: v for k, v in entry.items() if k not in ("sha256", "arrays", "tolerance")} == \
            {k: v for k, v in shipped.items() if k not in ("sha256", "arrays", "tolerance")}, name
        remade_arrays, case = np.load(out / entry["file"]), gold.load(name)
        assert list(remade_arrays.files) == list(case.arrays), name
        for key, want in case.arrays.items():
            got = remade_arrays[key]
            assert got.dtype == want.dtype and got.shape == want.shape, (name, key)
            if want.dtype.kind != "f":
                np.testing.assert_array_equal(got, want, err_msg=f"{name}/{key}")
            else:
                assert tolerance_ratio(name, {key: got}, "float64", keys=[key]) <= INSIDE, (name, key)


def test_make_removes_the_files_of_cases_it_no_longer_has(tmp_path):
    gold.make(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["cases"]["retired-case"] = {"file": "retired-case.npz"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "retired-case.npz").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("kept")
    gold.make(tmp_path)
    assert not (tmp_path / "retired-case.npz").exists() and (tmp_path / "notes.txt").exists()


def test_shipped_data_is_small_and_every_file_is_listed():
    files = sorted(p.name for p in gold.DATA_DIR.iterdir())
    listed = sorted([c["file"] for c in gold.manifest()["cases"].values()] + ["manifest.json"])
    assert files == listed
    assert sum(p.stat().st_size for p in gold.DATA_DIR.iterdir()) < 1024 * 1024


def _public_functions():
    """Forward functions of every loss and layer module, and of the network."""
    found = {"refimpl.model.Sequential.forward"}
    for package in (refimpl.losses, refimpl.layers):
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                found.add(f"{package.__name__}.{module.name}.forward")
    return found | {"refimpl.losses.supcon.ntxent_forward"}


def test_every_loss_layer_variant_and_reduction_has_a_case():
    manifest = gold.manifest()["cases"]
    functions = {c["function"] for c in manifest.values()}
    assert _public_functions() <= functions
    for function in functions - {"refimpl.model.Sequential.forward"}:
        params = inspect.signature(_spec.resolve(function)).parameters
        kwargs = [c["kwargs"] for c in manifest.values() if c["function"] == function]
        for option, values in (("variant", ("paper", "official")), ("reduction", ("mean", "sum", "none"))):
            if option in params:
                assert {k[option] for k in kwargs} >= set(values), (function, option)


def test_cases_have_ties_singletons_and_both_temperatures():
    for name in ("kernel-wsp-mean", "adacon-paper-mean-s2", "supcon-mean-tau0.07"):
        case = gold.load(name)
        labels = case.arrays["labels" if "labels" in case.arrays else "y"]
        _, counts = np.unique(labels, return_counts=True)
        assert counts.max() >= 2 and counts.min() == 1, name  # ties and a singleton
    temperatures = {c.kwargs["temperature"] for c in map(gold.load, gold.cases("kernel-wsp"))}
    assert 0.1 in temperatures and min(temperatures) <= 0.02


def test_every_expected_array_is_large_against_its_case_tolerance():
    """A case's atol follows its largest value; no array may be so small that the float32 atol hides it."""
    for name in NAMES:
        case = gold.load(name)
        for key, want in case.expected.items():
            assert np.max(np.abs(want)) > 500 * case.tolerance["float32"]["atol"], (name, key)


# ------------------------------------------------------------------ refimpl against its own gold


@pytest.mark.parametrize("name", NAMES)
def test_refimpl_passes_in_float64_and_float32_well_inside_the_tolerances(name):
    report = gold.verify(name, refimpl_fn(name))
    assert report.ok, str(report)
    assert tolerance_ratio(name, refimpl_fn(name)(gold.load(name).inputs), "float64") <= INSIDE, bits_compared()[1]
    results32 = refimpl_fn(name, "float32")(gold.load(name).inputs)
    assert gold.check(name, results32).ok
    assert tolerance_ratio(name, results32, "float32") < 0.1  # room for other float32 orders


def test_refimpl_reproduces_every_case_bit_for_bit():
    skip_unless_same_bits()
    for name in NAMES:
        report = gold.verify(name, refimpl_fn(name))
        assert all(a.max_abs == 0.0 for a in report.cases[0].arrays), str(report)


# ------------------------------------------------------------------ patterns, inputs, comparison


def test_patterns_select_names_prefixes_globs_and_lists():
    assert gold.cases("linear") == ["linear"]
    assert gold.cases("linear*") == ["linear", "linear-nobias"]
    assert set(gold.cases("conv2d")) == {n for n in NAMES if n.startswith("conv2d-")}
    assert gold.cases("kernel-official-*") == ["kernel-official-wsp", "kernel-official-yaware"]
    assert gold.cases("relu, flatten") == ["relu", "flatten"]
    with pytest.raises(ValueError, match="no gold case matches 'nope'"):
        gold.cases("nope")


def test_inputs_hold_the_given_arrays_and_every_keyword_argument_as_fresh_copies():
    case = gold.load("kernel-yaware-sum")
    inputs = case.inputs
    assert set(inputs) == {"z", "depth", "dout", "labels", "sigma", "temperature", "variant",
                           "reduction", "normalize"}
    assert inputs["labels"] is None and inputs["reduction"] == "sum"
    inputs["z"][:] = 0.0
    assert np.any(case.inputs["z"] != 0.0)
    assert set(case.expected) == {"out", "dz"}
    assert gold.load("dropout").inputs["keep"].dtype == bool


def test_float32_results_get_float32_tolerances():
    results = refimpl_fn("linear")(gold.load("linear").inputs)
    nudged = {k: v * (1 + 1e-5) for k, v in results.items()}  # a float32-sized error
    assert not gold.check("linear", nudged).ok
    assert gold.check("linear", {k: v.astype(np.float32) for k, v in nudged.items()}).ok


def test_missing_unexpected_misshapen_and_non_float_results_fail_with_their_reason():
    good = refimpl_fn("linear")(gold.load("linear").inputs)
    result = gold.check("linear", {**{k: v for k, v in good.items() if k != "db"}, "dB": good["db"]})
    assert not result.ok and "missing: db (3,) (the results have 'dB': misspelt?)" in str(result)
    assert "extra keys, not in the gold case: dB" in str(result)
    result = gold.check("linear", {**good, "dw": good["dw"].T})
    assert "dw: has shape (4, 3), expected (3, 4)" in str(result)
    result = gold.check("linear", {**good, "out": good["out"].astype(np.int64)})
    assert "out: has dtype int64, expected float64 or float32" in str(result)
    nan = good["dx"].copy()
    nan[1, 2] = np.nan
    result = gold.check("linear", {**good, "dx": nan})
    assert not result.ok and result.worst() == "dx[1, 2]"


@given(shape=st.lists(st.integers(1, 4), max_size=3).map(tuple), seed=st.integers(0, 2**32 - 1),
       n_wrong=st.integers(0, 5), dtype=st.sampled_from(["float64", "float32"]))
@example(shape=(), seed=0, n_wrong=1, dtype="float64")
def test_comparison_flags_exactly_the_entries_outside_the_tolerance(shape, seed, n_wrong, dtype):
    g = np.random.default_rng(seed)
    want = np.asarray(g.standard_normal(shape))
    tolerance = {"float64": {"rtol": 1e-9, "atol": 1e-12}, "float32": {"rtol": 1e-3, "atol": 1e-5}}
    allowed = tolerance[dtype]["atol"] + tolerance[dtype]["rtol"] * np.abs(want)
    got = np.array(want + g.uniform(-0.5, 0.5, shape) * allowed)  # inside (float32 rounding too)
    wrong = g.permutation(want.size)[:n_wrong]
    got.flat[wrong] += g.choice([-1.0, 1.0], len(wrong)) * (2 * allowed.flat[wrong] + 0.01)
    result = compare_array("x", got.astype(dtype), want, tolerance)
    assert result.ok == (n_wrong == 0) and result.n_bad == len(wrong)
    if n_wrong:  # the reported worst entries are wrong ones (a passing array shows its largest errors)
        reported = [int(np.ravel_multi_index(e.index, shape)) if shape else 0 for e in result.worst]
        assert set(reported) <= set(wrong.tolist()) and len(reported) == min(len(wrong), 3)


def test_compare_of_one_array_names_its_wrong_entries_and_raises_them():
    want = np.arange(6.0).reshape(2, 3)
    assert gold.compare("w", want.astype(np.float32), want).ok  # float32 against float64 reference
    got = want.copy()
    got[1, 2], got[0, 1] = np.nan, 1.5
    result = gold.compare("w", got, want)
    assert not result.ok and result.n_bad == 2 and {e.index for e in result.worst} == {(1, 2), (0, 1)}
    assert result.worst[0].index == (1, 2)  # NaN is the worst
    with pytest.raises(AssertionError, match=r"w\[0, 1\]  got \+1.5"):
        result.raise_if_failed()
    assert "has shape (3,)" in str(gold.compare("w", want[0], want))
    loose = gold.compare("w", want + 1e-6, want, rtol=1e-3, atol=1e-5)
    assert loose.ok and "all 6 entries" in str(loose)
    loose.raise_if_failed()
    with pytest.raises(ValueError, match="rtol must be a finite number > 0"):
        gold.compare("w", want, want, rtol=0.0)
    with pytest.raises(TypeError, match="atol must be a real number"):
        gold.compare("w", want, want, atol="0")


def test_fn_must_return_a_mapping():
    with pytest.raises(TypeError, match="fn must return a mapping"):
        gold.verify("relu", lambda inputs: inputs["x"])


# ------------------------------------------------------------------ damaged gold


@pytest.fixture
def gold_copy(tmp_path):
    shutil.copytree(gold.DATA_DIR, tmp_path / "gold")
    return tmp_path / "gold"


def test_a_modified_gold_file_is_detected_by_its_hash(gold_copy, capsys):
    path = gold_copy / "linear.npz"
    data = bytearray(path.read_bytes())
    data[-200] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(gold.GoldError, match="linear.npz does not match its sha256 in manifest.json"):
        gold.load("linear", gold=gold_copy)
    assert gold.load("relu", gold=gold_copy).name == "relu"  # the others still load
    assert cli.main(["gold", "export", "--case", "linear", "--out", str(gold_copy.parent / "x"),
                     "--gold", str(gold_copy)]) == 2
    assert "corrupted or modified" in capsys.readouterr().err


def test_a_missing_file_or_broken_manifest_is_a_clear_error(gold_copy):
    (gold_copy / "relu.npz").unlink()
    with pytest.raises(gold.GoldError, match="relu.npz is missing"):
        gold.load("relu", gold=gold_copy)
    (gold_copy / "manifest.json").write_text("{")
    with pytest.raises(gold.GoldError, match="not valid JSON"):
        gold.cases(gold=gold_copy)
    (gold_copy / "manifest.json").write_text(json.dumps({"format_version": 99, "cases": {}}))
    with pytest.raises(gold.GoldError, match="format version 99"):
        gold.cases(gold=gold_copy)


def test_results_are_read_without_pickle(tmp_path):
    path = tmp_path / "relu.npz"
    np.savez(path, out=np.array([{"a": 1}], dtype=object))
    with pytest.raises(gold.GoldError, match="no pickled objects"):
        gold.verify_results(path)


# ------------------------------------------------------------------ the command line


def _save_results(folder, names, dtype="float64", change=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        given = dict(np.load(folder.parent / "in" / f"{name}.npz"))
        kwargs = json.loads((folder.parent / "in" / "cases.json").read_text())["cases"][name]["kwargs"]
        results = refimpl_fn(name, dtype)({**given, **kwargs})
        if change:
            change(name, results)
        np.savez(folder / f"{name}.npz", **results)


def test_export_then_verify_passes_and_a_bug_fails_with_its_entries(tmp_path, capsys):
    argv = ["gold", "export", "--case", "linear,kernel-wsp-mean", "--out", str(tmp_path / "in")]
    assert cli.main(argv) == 0
    described = json.loads((tmp_path / "in" / "cases.json").read_text())
    assert set(described["cases"]) == {"linear", "kernel-wsp-mean"}
    assert described["cases"]["linear"]["expected"]["dw"] == {"role": "grad", "dtype": "float64",
                                                              "shape": [3, 4]}
    assert set(np.load(tmp_path / "in" / "linear.npz").files) == {"x", "w", "b", "dout"}
    _save_results(tmp_path / "ok", ["linear", "kernel-wsp-mean"], "float32")
    capsys.readouterr()
    assert cli.main(["gold", "verify", str(tmp_path / "ok")]) == 0
    out = capsys.readouterr().out
    assert "PASS  kernel-wsp-mean  float32" in out
    assert out.rstrip().endswith(f"OK: 2 passed, 0 failed (2 of {len(NAMES)} gold cases checked)")

    def wrong_entry(name, results):
        results["db"][1] += 0.5
    _save_results(tmp_path / "bad", ["linear"], change=wrong_entry)
    assert cli.main(["gold", "verify", str(tmp_path / "bad" / "linear.npz")]) == 1
    out = capsys.readouterr().out
    assert "FAIL  linear" in out and "db: 1 of 3 entries outside" in out and "  db[1]  got" in out
    assert cli.main(["gold", "verify", str(tmp_path / "bad"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    db = next(a for a in report["cases"][0]["arrays"] if a["key"] == "db")
    assert not report["ok"] and db["n_bad"] == 1 and db["worst"][0]["index"] == [1]


def test_verify_reads_one_file_with_case_prefixed_keys(tmp_path, capsys):
    results = {f"{name}/{k}": v for name in ("relu", "flatten")
               for k, v in refimpl_fn(name)(gold.load(name).inputs).items()}
    np.savez(tmp_path / "all.npz", **results)
    assert cli.main(["gold", "verify", str(tmp_path / "all.npz"), "--case", "relu"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    np.savez(tmp_path / "typo.npz", **{"reluu/out": np.zeros(2)})
    assert cli.main(["gold", "verify", str(tmp_path / "typo.npz")]) == 1
    assert "no gold case named 'reluu'" in capsys.readouterr().out


def test_make_command_writes_and_reports(tmp_path, capsys):
    assert cli.main(["gold", "make", "--out", str(tmp_path)]) == 0
    assert f"wrote {len(NAMES)} gold cases and manifest.json to {tmp_path}" in capsys.readouterr().out


def test_verify_errors_exit_2(tmp_path, capsys):
    assert cli.main(["gold", "verify", str(tmp_path / "none.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["gold", "verify", str(tmp_path)]) == 2
    assert "no .npz results" in capsys.readouterr().err


# ------------------------------------------------------------------ PyTorch, through the same path


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_torch_implementations_pass(torch, name, dtype):
    fn = torch_reference.implementation(torch, gold.load(name).function, dtype)
    report = gold.verify(name, fn)
    assert report.ok, str(report)
    if dtype == "float32":  # other float32 orders of summation stay well inside
        assert tolerance_ratio(name, fn(gold.load(name).inputs), dtype) < 0.2


def _kernel_anchor_in_denominator(torch, z, *, labels, depth, sigma, temperature, **_):
    """WSP Eq. 3-4 read literally: s_tt stays in the denominator (the erratum)."""
    z = torch.nn.functional.normalize(z, dim=1)
    eye = torch.eye(z.shape[0], dtype=torch.bool)
    w = ((labels[:, None] == labels[None, :]) * torch.exp(-(depth[:, None] - depth[None, :]) ** 2
                                                         / (2 * sigma**2))).masked_fill(eye, 0.0)
    w = w / w.sum(dim=1, keepdim=True).clamp(min=1e-300)
    return -(w * torch.log_softmax(z @ z.T / temperature, dim=1)).sum(dim=1).mean()


def _margin_without_normalisation(torch, a, b, same, *, margin, **_):
    d = 1 - (a * b).sum(dim=1)
    same = same.to(a.dtype)
    return (same * d + (1 - same) * torch.relu(margin - d)).mean()


def _conv_transposed_weight(torch, x, w, b=None, *, stride, padding):
    return torch.nn.functional.conv2d(x, w.transpose(2, 3), b, stride=stride, padding=padding)


def _preference_similarity_reward(torch, u_i, u_j, refs, prefer_i, **_):
    """The reward sign flipped: similarity to the anchor instead of distance (ConPro's code quirk)."""
    F = torch.nn.functional
    anchor = F.normalize(refs.mean(dim=0), dim=-1)
    r_i, r_j = (F.normalize(u, dim=1) @ anchor for u in (u_i, u_j))
    return -(prefer_i * F.logsigmoid(r_i - r_j) + (1 - prefer_i) * F.logsigmoid(r_j - r_i)).mean()


def _relu_gradient_one_at_zero(torch, x):
    return torch.where(x >= 0, x, 0.0)  # torch.where's gradient at x = 0 goes to the first branch


PLANTED = [  # case, formulation with the bug, arrays that must fail
    ("kernel-wsp-mean", _kernel_anchor_in_denominator, {"out", "dz"}),
    ("margin-paper-mean", _margin_without_normalisation, {"out", "da", "db"}),
    ("conv2d-k3s1p1", _conv_transposed_weight, {"out", "dx", "dw"}),  # db does not see the weight
    ("preference-paper-mean-r1", _preference_similarity_reward, {"out", "du_i", "du_j", "drefs"}),
    ("relu", _relu_gradient_one_at_zero, {"dx"}),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,bug,failing", PLANTED, ids=[p[1].__name__.strip("_") for p in PLANTED])
def test_planted_bugs_fail_and_the_report_points_at_the_wrong_entries(torch, name, bug, failing):
    case = gold.load(name)
    right = torch_reference.implementation(torch, case.function)(case.inputs)
    wrong = torch_reference.implementation(torch, case.function, formulation=bug)(case.inputs)
    report = gold.verify(name, lambda inputs: wrong)
    assert not report.ok
    result = report.cases[0]
    assert {a.key for a in result.arrays if not a.ok} == failing
    for a in result.arrays:
        changed = np.abs(wrong[a.key] - right[a.key]) > (a.atol + a.rtol * np.abs(right[a.key]))
        assert a.n_bad == changed.sum()  # exactly the entries the bug changed
        assert all(changed[e.index] for e in a.worst if not a.ok)
    if name == "relu":  # the wrong entries are where x is exactly 0
        zeros = {tuple(int(i) for i in ix) for ix in np.argwhere(case.arrays["x"] == 0)}
        dx = next(a for a in result.arrays if a.key == "dx")
        assert dx.n_bad == len(zeros) and {e.index for e in dx.worst} <= zeros
    assert str(result).count("got") == sum(len(a.worst) for a in result.arrays if not a.ok)


def test_public_api_is_importable_as_documented():
    module = importlib.import_module("refimpl.gold")
    for name in module.__all__:
        assert hasattr(module, name), name
