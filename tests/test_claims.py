"""The claims' statistic: the t-interval over seeds, the three verdicts, the multi-seed file and the
Markdown table, on made-up per-seed results (no training)."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from refimpl.fingerprint import describe, fingerprint
from refimpl.recipes import _common, claims


def test_interval_matches_a_hand_computed_t_interval():
    # effects 1, 2, 3, 4, 5: mean 3, sd sqrt(2.5), t(0.975, 4) = 2.7764451
    s = claims.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451052 * math.sqrt(2.5) / math.sqrt(5)
    assert s["n"] == 5 and s["mean"] == pytest.approx(3.0) and s["sd"] == pytest.approx(math.sqrt(2.5))
    assert (s["low"], s["high"]) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert s["verdict"] == "holds" and s["level"] == 0.95


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=12),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_interval_agrees_with_scipy_and_contains_the_mean(effects, level):
    s = claims.interval(effects, level=level)
    if np.std(effects) > 1e-9:
        lo, hi = stats.t.interval(level, len(effects) - 1, loc=np.mean(effects), scale=stats.sem(effects))
        assert (s["low"], s["high"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))
    assert s["low"] <= s["mean"] <= s["high"]
    assert s["verdict"] == claims.verdict(s["low"], s["high"])


@pytest.mark.parametrize("effects, expected", [
    ([0.10, 0.12, 0.09, 0.11, 0.10], "holds"),                    # every seed positive, tight
    ([-0.10, -0.12, -0.09, -0.11, -0.10], "fails"),               # every seed negative, tight
    ([0.10, -0.08, 0.05, -0.02, 0.01], "inconclusive"),           # signs disagree
    ([0.30, 0.01, 0.02, 0.01, 0.02], "inconclusive"),             # all positive, but one seed carries it
])
def test_three_verdicts(effects, expected):
    assert claims.interval(effects)["verdict"] == expected


def test_wider_level_never_turns_inconclusive_into_a_finding():
    effects = [0.05, 0.01, 0.04, -0.005, 0.03]
    s90, s99 = claims.interval(effects, level=0.90), claims.interval(effects, level=0.99)
    assert s90["high"] - s90["low"] < s99["high"] - s99["low"]
    assert s90["verdict"] == "holds" and s99["verdict"] == "inconclusive"


@pytest.mark.parametrize("effects, match", [
    ([0.1], "at least 2 seeds"), ([], "at least 2 seeds"), ([0.1, float("nan")], "finite"),
    ([[0.1, 0.2]], "1-D"),
])
def test_interval_refuses_what_has_no_interval(effects, match):
    with pytest.raises(ValueError, match=match):
        claims.interval(effects)


def test_interval_refuses_bad_level_and_verdict_bad_bounds():
    with pytest.raises(ValueError, match="level"):
        claims.interval([0.1, 0.2], level=1.0)
    with pytest.raises(ValueError, match="low must be <= high"):
        claims.verdict(0.2, 0.1)


def test_summarise_drops_undefined_seeds_and_says_n_a_below_two():
    assert claims.summarise([0.1, None, 0.2, 0.3])["n"] == 3
    assert claims.summarise([0.1, None])["verdict"] == "n/a"


def _fake_results(effects_per_seed):
    """One recipe, 'wsp', whose single claim has the given per-seed effects."""
    runs = [{"seed": k, "seconds": 1.0, "methods": {"WSP": {"auc": 0.5 + e}, "SupCon": {"auc": 0.5}},
             "claims": [_common.compare("WSP beats SupCon", {"WSP": {"auc": 0.5 + e}, "SupCon": {"auc": 0.5}},
                                        "auc", "WSP", "SupCon")]}
            for k, e in enumerate(effects_per_seed)]
    return {"wsp": {"runs": runs, "ablations": {}}}


def test_tables_markdown_and_verdict_file(tmp_path):
    results = _fake_results([0.02, 0.03, 0.01, 0.04, 0.02])
    (row,) = claims.tables(results)["wsp"]
    assert row["n"] == 5 and row["verdict"] == "holds" and row["seeds"] == [0, 1, 2, 3, 4]
    assert row["effects"] == pytest.approx([0.02, 0.03, 0.01, 0.04, 0.02])
    md, js = tmp_path / "c.md", tmp_path / "c.json"
    fp = fingerprint()
    claims.write(results, str(md), str(js), fast=True, command="refimpl run claims --seeds 0 1 2 3 4 --fast",
                 fp=fp, describe=describe)
    text = md.read_text()
    assert describe(fp) in text and "| WSP beats SupCon | 5 | +0.024 |" in text and "**holds**" in text
    doc = json.loads(js.read_text())
    assert doc["fingerprint"] == json.loads(json.dumps(fp)) and doc["claims"]["wsp"][0]["verdict"] == "holds"
    found = claims.multi_seed("WSP beats SupCon", str(js))
    assert found["verdict"] == "holds" and found["n"] == 5 and found["fast"] is True
    assert claims.multi_seed("no such claim", str(js)) is None
    assert claims.multi_seed("WSP beats SupCon", str(tmp_path / "missing.json")) is None
    again = tmp_path / "again.md"                                      # the table again from the file alone
    claims.rewrite(str(js), str(again))
    assert again.read_text() == text


def test_ablation_pairs_runs_by_seed():
    ab = claims.ABLATIONS[0]
    base = {"ConPro (n=20)": {"macro_f1": 0.6}, "SupCon-n": {"macro_f1": 0.5}}
    flat = {"ConPro (n=20)": {"macro_f1": 0.55}, "SupCon-n": {"macro_f1": 0.5}}
    c = ab.compare(base, flat)
    assert c["effect"] == pytest.approx(0.05) and c["holds"]
    results = {ab.recipe: {"runs": [{"seed": s, "seconds": 1.0, "methods": base, "claims": []} for s in (0, 1, 2)],
                           "ablations": {ab.claim: [{"seed": s, "seconds": 1.0, "methods": flat, "claims": []}
                                                    for s in (0, 2)]}}}  # seed 1's ablation unfinished
    (row,) = claims.tables(results)[ab.recipe]
    assert row["seeds"] == [0, 2] and row["n"] == 2


def test_claims_command_refuses_a_single_seed(capsys):
    class Args:
        seeds, out, fast, quiet, backend, dtype = [0], None, True, True, "numpy", "float32"
    assert claims.main(Args()) == 2
    assert "at least 2 distinct seeds" in capsys.readouterr().out


def test_an_interrupted_regeneration_is_tabled_as_such(tmp_path):
    """The .runs.json written after every run tables what finished, and says so in the header."""
    fp = fingerprint()
    results = _fake_results([0.02, 0.03])
    saved = tmp_path / "c.runs.json"
    _common.write_json(saved, {"command": "refimpl run claims --seeds 0 1 2", "fast": False, "fingerprint": fp,
                               "runs": results})
    claims.rewrite(str(saved), str(tmp_path / "c.md"), out_json=str(tmp_path / "c.json"))
    text = (tmp_path / "c.md").read_text()
    assert "stopped before every seed had run" in text and "(seeds wsp 0, 1)" in text
    assert json.loads((tmp_path / "c.json").read_text())["claims"]["wsp"][0]["n"] == 2
