"""The gold report diagnoses: each systematic failure, planted, is named by its cause; coverage, strictness,
lenient extra keys, nearest names, patterns across cases, clean cases and the conventions in the data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl import cli, gold
from refimpl.gold import _diagnose, _make, _spec

import torch_reference

SPECS = {s.name: s for s in _make.specs()}


def refimpl_results(name, dtype="float64"):
    """refimpl's own results on case ``name`` (right to the last bits), cast to ``dtype``."""
    inputs = gold.load(name).inputs
    return {k: np.asarray(v).astype(dtype) for k, v in _spec.replay(SPECS[name], inputs).items()}


def singletons(labels):
    values, counts = np.unique(labels, return_counts=True)
    return [i for i, v in enumerate(labels) if counts[values == v][0] == 1]


def only(diagnosis):
    assert len(diagnosis) == 1, diagnosis
    return diagnosis[0]


# ------------------------------------------------------------------ constant ratios and their candidates


def test_averaging_over_anchors_with_positives_names_8_7_and_the_anchor():
    """pytorch-metric-learning's default reducer, planted as its effect: the mean over M - k anchors."""
    case = gold.load("supcon-mean-tau0.07")
    anchors = singletons(case.arrays["labels"])
    m, k = len(case.arrays["z"]), len(anchors)
    assert (m, k) == (8, 1)
    results = {key: a * m / (m - k) for key, a in refimpl_results(case.name).items()}
    result = gold.check(case.name, results)
    assert not result.ok
    cause = only(result.diagnosis)
    assert cause.startswith("out and dz are 1.1428571 (8/7) × gold, which matches M/(M-k) = 8/7")
    assert f"row {anchors[0]}" in cause and "AvgNonZeroReducer" in cause
    assert f"likely cause: {cause}" in str(result)


def test_a_forgotten_dout_names_1_over_dout_on_the_gradients_only():
    case = gold.load("kernel-wsp-mean")
    dout = float(case.arrays["dout"])
    results = refimpl_results(case.name)
    results["dz"] = results["dz"] / dout
    result = gold.check(case.name, results)
    cause = only(result.diagnosis)
    assert cause.startswith("dz is ") and "1/dout" in cause and f"dout = {dout:.6g}" in cause
    assert float(cause.split()[2]) == pytest.approx(1 / dout, rel=1e-7)
    assert [a.key for a in result.arrays if not a.ok] == ["dz"]


@pytest.mark.parametrize("name,factor,candidate", [
    ("kernel-official-wsp", 0.5, "1/2: the mean over the 8 = 2N anchors where the official code divides"),
    ("ntxent-mean-tau0.5", 2.0, "2: the sum over the 8 = 2N anchors divided by N"),
    ("supcon-none-unnormalized", 0.07 / 0.3, "base_tau/tau = 0.07/0.3: SupCon's temperature factor"),
    ("supcon-sum-tau0.5", 0.5 / 0.07, "tau/0.07 = 0.5/0.07: HobbitLong/SupContrast's factor"),
    ("margin-clean", 4.0, "M = 4: the sum over the 4 rows where gold takes the mean"),
    ("npair-labels-sum-tau0.2", 0.2, "1/M = 1/5: the mean over the 5 rows where gold sums"),
    ("linear", -1.0, "-1 (the sign flipped)"),
])
def test_each_constant_ratio_is_matched_to_its_named_candidate(name, factor, candidate):
    result = gold.check(name, {k: a * factor for k, a in refimpl_results(name).items()})
    cause = only(result.diagnosis)
    assert "× gold, which matches " in cause and candidate in cause, cause


def test_an_unnamed_constant_ratio_is_still_reported_with_its_value():
    result = gold.check("conv2d-k3s1p1", {k: a * 1.37 for k, a in refimpl_results("conv2d-k3s1p1").items()})
    cause = only(result.diagnosis)
    assert cause.startswith("out, dx, dw and db are 1.37 × gold (a constant factor")


def test_a_ratio_of_one_number_alone_is_no_diagnosis():
    results = refimpl_results("margin-clean")
    results["out"] = results["out"] * 1.37
    assert gold.check("margin-clean", results).diagnosis == []


# ------------------------------------------------------------------ transpose, NaN, zeros, float32


def test_a_transposed_weight_gradient_is_named_square_or_not():
    results = refimpl_results("linear")
    result = gold.check("linear", {**results, "dw": results["dw"].T})
    assert "dw: has shape (4, 3), expected (3, 4)" in str(result)
    assert only(result.diagnosis).startswith("dw is the transpose of gold")
    want = np.arange(9.0).reshape(3, 3)
    assert only(gold.compare("w", want.T, want).diagnosis).startswith("w is the transpose of want")


def test_nan_names_the_anchors_without_positives_of_the_case():
    case = gold.load("kernel-wsp-mean")
    anchors = singletons(case.arrays["labels"])
    results = {k: np.full_like(a, np.nan) for k, a in refimpl_results(case.name).items()}
    result = gold.check(case.name, results)
    nan, why = result.diagnosis
    assert nan == "out and dz have NaN entries where gold is finite"
    assert why.startswith(f"row {anchors[0]} of the batch is an anchor without positives") and "0/0" in why
    header = str(result).splitlines()[0]
    assert "max abs nan  max rel nan" in header  # as the rows say nan
    assert "got +nan" in str(result)
    clean = gold.check("kernel-clean", {k: np.full_like(a, np.nan) for k, a in
                                        refimpl_results("kernel-clean").items()})
    assert clean.diagnosis == ["out and dz have NaN entries where gold is finite"]  # no anchor to blame


def test_an_all_zero_gradient_is_named():
    results = refimpl_results("linear")
    result = gold.check("linear", {**results, "dx": np.zeros_like(results["dx"])})
    assert only(result.diagnosis).startswith("dx is all zero where gold is not")


def test_float32_saved_as_float64_is_named_and_its_digits_shown():
    results = refimpl_results("kernel-wsp-mean", "float32")
    assert gold.check("kernel-wsp-mean", results).ok  # as float32: the float32 tolerance
    result = gold.check("kernel-wsp-mean", {k: a.astype(np.float64) for k, a in results.items()})
    cause = only(result.diagnosis)
    assert "looks like float32 saved as float64" in cause and "rtol 1e-09" in cause
    for line in str(result).splitlines():  # every printed row shows two different numbers
        if " got " in line:
            got, want = line.split(" got ")[1].split("  want ")
            assert got.strip() != want.split("  |diff|")[0].strip(), line


def test_a_float32_step_inside_float64_is_told_apart_from_float32_saved():
    results = refimpl_results("kernel-wsp-mean")
    noisy = {k: a * (1 + 3e-7) for k, a in results.items()}  # float32-sized, not float32 numbers
    cause = only(gold.check("kernel-wsp-mean", noisy).diagnosis)
    assert "a float32 step inside a float64 computation" in cause and "saved" not in cause


def test_digits_grow_until_got_and_want_differ():
    assert _diagnose.digits([(1.0, 2.0)]) == 7
    for got, want in [(3.088068485, 3.088068495), (1.0, 1.0 + 2**-52), (-2.5e-3, -2.5000001e-3)]:
        n = _diagnose.digits([(1.0, 2.0), (got, want)])
        assert f"{got:.{n - 1}e}" != f"{want:.{n - 1}e}" and f"{got:.{n - 2}e}" == f"{want:.{n - 2}e}"


# ------------------------------------------------------------------ gold.compare, the contract the labs use


def test_compare_passes_in_one_line_and_fails_with_rows_and_causes():
    want = np.array([[1.0, 2.0], [3.0, 4.0]])
    ok = gold.compare("logits", want.copy(), want)
    assert str(ok).startswith("PASS  logits:") and "\n" not in str(ok) and ok.diagnosis == []
    ok.raise_if_failed()
    bad = gold.compare("logits", want / 4, want, candidates={"1/dout": 0.25, "2 (two views)": 2.0})
    text = str(bad)
    assert text.startswith("FAIL  logits: 4 of 4 entries") and text.count(" got ") == 3
    assert bad.diagnosis == ["logits is 0.25 (1/4) × want, which matches 1/dout"]
    assert text.endswith("likely cause: logits is 0.25 (1/4) × want, which matches 1/dout")
    with pytest.raises(AssertionError, match="likely cause: logits is 0.25"):
        bad.raise_if_failed()
    assert gold.compare("g", -want, want).diagnosis == ["g is -1 × want, which matches -1 (the sign flipped)"]
    nan = want.copy()
    nan[0, 1] = np.nan
    assert gold.compare("g", nan, want).diagnosis == ["g has NaN entries where want is finite"]
    braces = gold.compare("g", 2 * want, want, candidates={"2 {two views}": 2})
    assert braces.diagnosis == ["g is 2 × want, which matches 2 {two views}"]
    with pytest.raises(TypeError, match="candidates must be a dict"):
        gold.compare("g", want, want, candidates=[0.5])


def test_compare_names_float32_saved_as_float64_against_a_float64_reference():
    want = np.random.default_rng(0).standard_normal((4, 5))
    result = gold.compare("h", want.astype(np.float32).astype(np.float64), want)
    assert "looks like float32 saved as float64" in only(result.diagnosis)


# ------------------------------------------------------------------ the case recomputed under other conventions


def _kernel_with(**changed):
    def formulation(torch, z, **kwargs):
        return torch_reference.kernel(torch, z, **{**kwargs, **{k: f(kwargs) for k, f in changed.items()}})
    return formulation


@pytest.mark.torch
def test_temperature_twice_and_no_normalisation_are_named_and_the_pattern_found(torch):
    twice = torch_reference.implementation(torch, "refimpl.losses.kernel.forward",
                                           formulation=_kernel_with(temperature=lambda k: k["temperature"] ** 2))
    report = gold.verify("kernel-clean,kernel-wsp-tau0.02", twice)
    assert [only(c.diagnosis) for c in report.cases] == [
        "the results match gold recomputed with temperature = 0.1^2 = 0.01: the temperature applied twice",
        "the results match gold recomputed with temperature = 0.02^2 = 0.0004: the temperature applied twice"]
    plain = torch_reference.implementation(torch, "refimpl.losses.kernel.forward",
                                           formulation=_kernel_with(normalize=lambda k: False))
    report = gold.verify("kernel-clean,kernel-wsp", plain)
    failing = [c for c in report.cases if not c.ok]
    assert failing and all(only(c.diagnosis).endswith("with normalize=False: the rows not L2-normalised")
                           for c in failing)
    (pattern,) = report.patterns()
    assert pattern.startswith("pattern: every case with normalize=False") and pattern.endswith(
        "passes, every other fails")
    assert pattern in str(report)


@pytest.mark.torch
def test_views_read_interleaved_are_named(torch):
    def interleaved(torch, z, **kwargs):
        # code that pairs rows 2i, 2i+1 computes the view-major loss of the rows in this order
        order = torch.as_tensor(_diagnose._interleaved(len(z)))
        return torch_reference.ntxent(torch, z[order], **kwargs)
    fn = torch_reference.implementation(torch, "refimpl.losses.supcon.ntxent_forward", formulation=interleaved)
    report = gold.verify("ntxent", fn)
    assert not report.ok
    for c in report.cases:
        assert "the views read interleaved (rows 2i, 2i+1" in only(c.diagnosis), str(c)


@pytest.mark.torch
def test_weights_normalised_on_the_wrong_axis_show_which_cases_pass(torch):
    """The official code's column normalisation in the paper variant: harmless where every anchor of a
    label has as many positives, so the passing cases point at the weights."""
    def column_normalised(torch, z, *, labels=None, depth=None, sigma, temperature, variant, reduction,
                          normalize):
        if variant == "official":
            return torch_reference.kernel(torch, z, labels=labels, depth=depth, sigma=sigma,
                                          temperature=temperature, variant=variant)
        m = z.shape[0]
        w = torch.ones(m, m, dtype=z.dtype)
        if labels is not None:
            w = w * (labels[:, None] == labels[None, :])
        if depth is not None:
            w = w * torch.exp(-(depth[:, None] - depth[None, :]) ** 2 / (2 * sigma**2))
        w = w.masked_fill(torch.eye(m, dtype=torch.bool), 0.0)
        w = w / w.sum(dim=0, keepdim=True).clamp(min=1e-300)  # the bug: columns
        zn = torch.nn.functional.normalize(z, dim=1) if normalize else z
        per = -(w * torch_reference._masked_log_softmax(torch, zn @ zn.T / temperature)).sum(dim=1)
        return torch_reference._reduce(per, reduction)
    fn = torch_reference.implementation(torch, "refimpl.losses.kernel.forward", formulation=column_normalised)
    report = gold.verify("kernel", fn)
    assert {c.name for c in report.cases if c.ok} >= {"kernel-supcon-mean", "kernel-official-wsp"}
    assert any("variant='official'" in p and "pass" in p for p in report.patterns()), report.patterns()


def test_patterns_name_single_values_pairs_and_pure_groups():
    def case(name, ok, **features):
        return (name, ok, features)
    one = [case("a", True, normalize=False, reduction="sum"), case("b", False, normalize=True, reduction="sum"),
           case("c", False, normalize=True, reduction="mean")]
    assert _diagnose.patterns(one) == ("pattern: every case with normalize=False passes, every other fails",)
    two = [case("a", True, variant="official", normalize=True), case("b", True, variant="paper", normalize=False),
           case("c", False, variant="paper", normalize=True), case("d", False, variant="paper", normalize=True)]
    assert _diagnose.patterns(two) == (
        "pattern: the cases that pass are exactly those with variant='official' or normalize=False",)
    assert _diagnose.patterns([case("a", True, x=1), case("b", True, x=2)]) == ()


# ------------------------------------------------------------------ coverage, strictness, names, messages


@pytest.fixture
def kernel_results(tmp_path):
    """Results for the kernel cases, but two (the official ones), with a natural extra ``ddepth``."""
    folder = tmp_path / "results"
    folder.mkdir()
    for name in gold.cases("kernel"):
        if "official" not in name:
            np.savez(folder / f"{name}.npz", **refimpl_results(name), ddepth=np.zeros(3))
    return folder


def test_cases_without_a_result_are_listed_and_strict_fails_on_them_and_on_extra_keys(kernel_results, capsys):
    report = gold.verify_results(kernel_results, "kernel")
    assert report.ok and report.missing == ("kernel-official-wsp", "kernel-official-yaware")
    text = str(report)
    assert "no result for 2 of the 9 gold cases matching 'kernel': kernel-official-wsp, kernel-official-yaware" \
        in text
    assert "extra keys, not in the gold case: ddepth (not compared; strict fails on them)" in text
    assert text.endswith(f"OK: 7 passed, 0 failed, 2 without a result (7 of the 9 gold cases matching 'kernel' "
                         f"checked; {len(gold.cases())} in all)")
    strict = gold.verify_results(kernel_results, "kernel", strict=True)
    assert not strict.ok and not any(c.ok for c in strict.cases)
    assert cli.main(["gold", "verify", str(kernel_results), "--case", "kernel"]) == 0
    assert cli.main(["gold", "verify", str(kernel_results), "--case", "kernel", "--strict"]) == 1
    capsys.readouterr()
    assert cli.main(["gold", "verify", str(kernel_results), "--case", "kernel-wsp", "--strict", "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["missing"] == [] and document["cases"][0]["extra"] == ["ddepth"]


def test_cases_exported_without_a_result_are_listed(kernel_results, tmp_path, capsys):
    gold.export("kernel-clean,kernel-official-wsp", tmp_path / "in")
    report = gold.verify_results(kernel_results, exported=tmp_path / "in")
    assert [c.name for c in report.cases] == ["kernel-clean"] and report.missing == ("kernel-official-wsp",)
    assert f"exported to {tmp_path / 'in'}" in report.summary()
    assert cli.main(["gold", "verify", str(kernel_results), "--exported", str(tmp_path / "in"), "--strict"]) == 1
    assert cli.main(["gold", "verify", str(kernel_results), "--exported", str(tmp_path / "nowhere")]) == 2
    assert "is not a cases.json written by `refimpl gold export`" in capsys.readouterr().err


def test_no_results_for_the_pattern_names_it_and_the_count(kernel_results):
    report = gold.verify_results(kernel_results, "preference")
    n = len(gold.cases("preference"))
    assert report.summary() == (f"FAILED: no results to check: none for the {n} gold cases matching "
                                f"'preference' ({len(gold.cases())} in all)")
    assert not report.ok and len(report.missing) == n


def test_misspelt_names_get_the_nearest_ones(tmp_path):
    with pytest.raises(ValueError, match=r"no gold case matches 'kernal' \(did you mean 'kernel'\?\)"):
        gold.cases("kernal")
    with pytest.raises(ValueError, match=r"did you mean 'kernel-wsp-mean'"):
        gold.load("kernel-wsp-maen")
    np.savez(tmp_path / "kernel-wsp-maen.npz", out=np.zeros(()))
    report = gold.verify_results(tmp_path)
    assert "no gold case named 'kernel-wsp-maen' (did you mean 'kernel-wsp-mean'" in str(report)


def test_report_json_holds_diagnosis_patterns_and_no_nan_literals(tmp_path):
    np.savez(tmp_path / "kernel-wsp-mean.npz",
             **{k: np.full_like(a, np.nan) for k, a in refimpl_results("kernel-wsp-mean").items()})
    np.savez(tmp_path / "kernel-clean.npz", **refimpl_results("kernel-clean"))
    document = gold.verify_results(tmp_path).to_dict()
    text = json.dumps(document, allow_nan=False)  # strict JSON: NaN as "nan"
    case = next(c for c in document["cases"] if c["name"] == "kernel-wsp-mean")
    assert len(case["diagnosis"]) == 2 and case["arrays"][0]["max_abs"] == "nan"
    assert document["patterns"] == [] and "kernel-clean" in text  # the two cases differ in no feature


def test_gold_list_prints_each_case_with_its_function_variant_kwargs_and_description(capsys):
    assert cli.main(["gold", "list", "kernel-wsp-tau0.02"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[:5] == ["kernel-wsp-tau0.02", "losses.kernel", "paper", "sigma=0.3", "temperature=0.02"]
    assert "small temperature" in line
    assert cli.main(["gold", "list", "*-clean", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["description"].startswith("Clean case") for r in rows)
    assert cli.main(["gold", "list", "kernal"]) == 2
    assert "did you mean 'kernel'" in capsys.readouterr().err


# ------------------------------------------------------------------ clean cases and conventions in the data


def _loss_functions():
    """Every loss function with a gradient that has gold cases (the ECDF helpers have none)."""
    return sorted({c["function"] for c in gold.manifest()["cases"].values()
                   if c["function"].startswith("refimpl.losses.") and c["backward"]})


@pytest.mark.parametrize("function", _loss_functions())
def test_every_loss_has_a_clean_case_first(function):
    cases = gold.manifest()["cases"]
    mine = [n for n, c in cases.items() if c["function"] == function]
    clean = [n for n in mine if n.endswith("-clean")]
    assert len(clean) == 1 and clean[0] == mine[0], mine  # the first case of its loss
    case = gold.load(clean[0])
    defaults = gold.describe(clean[0])[0]["kwargs"]
    assert set(defaults) <= {"scale"}  # default keyword arguments (adacon's scale has none)
    assert case.kwargs.get("variant", "paper") == "paper"
    assert _diagnose.anchors_without_positives(case.function, case.kwargs, case.arrays) in (None, ())
    assert all(a.dtype == np.float64 for a in case.arrays.values() if a.dtype.kind == "f")
    assert max(a.size for a in case.arrays.values()) <= 32
    assert case.description.startswith("Clean case, start here")


def test_descriptions_name_the_anchors_without_positives_and_the_views():
    for name in gold.cases("kernel,supcon,adacon"):
        case = gold.load(name)
        labels = case.arrays.get("labels")
        if case.kwargs.get("variant", "paper") == "paper" and labels is not None:
            expected = singletons(labels)
            if expected:
                assert f"Anchors without positives: row{'s' if len(expected) > 1 else ''} " \
                       f"{', '.join(map(str, expected))} " in case.description, name
            else:
                assert "Every anchor has a positive." in case.description, name
    assert "row t's other view is row (t + 4) mod 8" in gold.load("ntxent-mean-tau0.5").description


def test_conventions_state_what_changes_the_numbers():
    conventions = gold.manifest()["conventions"]
    assert set(conventions["official_variants"]) == {"margin", "preference", "kernel", "adacon"}
    assert "W /= W.sum(dim=1)" in conventions["official_variants"]["kernel"]
    assert "label_0" in conventions["official_variants"]["preference"]
    assert "floor_divide" in conventions["official_variants"]["adacon"]
    for word in ("M/(M-k)", "still counts in 'mean'"):
        assert word in conventions["anchors_without_positives"]
    assert "(t + N) mod 2N" in conventions["views"] and "1/dout" in conventions["gradients"]
