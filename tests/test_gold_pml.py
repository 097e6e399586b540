"""A worked example with a library people use: pytorch-metric-learning's SupConLoss and NTXentLoss checked
against the gold data through ``gold.verify``, beside the torch formulations of ``torch_reference``.

The adapters a gold case needs, and why:

* reducer: the library's ``SupConLoss`` reduces with ``AvgNonZeroReducer``
  (the mean over the anchors whose loss is not 0), which leaves out the
  anchors without positives; gold's "mean" divides by every anchor, as
  HobbitLong/SupContrast. ``MeanReducer``, ``SumReducer`` and
  ``DoNothingReducer`` (per-anchor losses, with their indices) give gold's
  "mean", "sum" and "none". Left at the default, a case with k anchors
  without positives fails by exactly M/(M-k), and the report says so.
* temperature: both losses take it as gold does (logits = cosine / tau), but
  their defaults differ (SupConLoss 0.1, NTXentLoss 0.07): pass the case's.
  SupContrast's factor ``tau / base_tau`` is not in the library: a case with
  ``base_temperature`` is the library's loss times that factor.
* normalisation: ``CosineSimilarity`` L2-normalises (gold's ``normalize=True``);
  ``DotProductSimilarity(normalize_embeddings=False)`` is ``normalize=False``.
* views: the library pairs rows by label, so the two views of gold's
  view-major rows (rows i and i + N) are the labels ``arange(2N) % N``;
  ``arange(2N) // 2`` reads them interleaved, and fails.

Found on the way (pytorch-metric-learning 2.9.0): ``SupConLoss`` divides the
sum over an anchor's positives by ``count + tiny`` (the smallest normal
float), so an anchor without positives whose loss receives an upstream
gradient above about 4 in magnitude back-propagates ``inf * 0 = NaN`` into
every row: ``supcon-none-unnormalized`` (per-anchor losses, factor
0.3 / 0.07, two such anchors) gets the right losses and a NaN gradient, and
the report names the two anchors.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from refimpl import gold

pytestmark = pytest.mark.torch


@pytest.fixture
def pml(torch):
    """The library's distances, losses and reducers (skip without it: the torch extra installs it)."""
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses, reducers
    return SimpleNamespace(distances=distances, losses=losses, reducers=reducers)


def _reducer(pml, reduction):
    reducers = pml.reducers
    return {"mean": reducers.MeanReducer(), "sum": reducers.SumReducer(),
            "none": reducers.DoNothingReducer()}[reduction]


def _per_anchor(torch, loss, m):
    """A DoNothingReducer's losses, one per anchor in row order (NT-Xent gives one per positive pair)."""
    info = loss["loss"]
    anchors = info["indices"][0] if isinstance(info["indices"], tuple) else info["indices"]
    return torch.zeros(m, dtype=info["losses"].dtype).index_add(0, anchors, info["losses"])


def as_gold_function(torch, pml, make_loss, labels_of):
    """``fn(inputs)`` for gold.verify: the library's loss, its gradient by autograd, for the case's dout."""
    def fn(inputs):
        z = torch.tensor(inputs["z"], requires_grad=True)
        loss_fn, factor = make_loss(inputs)
        loss = loss_fn(z, torch.as_tensor(labels_of(inputs)))
        if inputs.get("reduction") == "none":
            loss = _per_anchor(torch, loss, len(z))
        loss = loss * factor
        loss.backward(torch.tensor(inputs["dout"]))
        return {"out": loss.detach().numpy(), "dz": z.grad.numpy()}
    return fn


def _distance(pml, inputs):
    if inputs.get("normalize", True):
        return pml.distances.CosineSimilarity()
    return pml.distances.DotProductSimilarity(normalize_embeddings=False)


def supcon(torch, pml, reducer=True):
    def make(inputs):
        kwargs = {"reducer": _reducer(pml, inputs.get("reduction", "mean"))} if reducer else {}
        loss = pml.losses.SupConLoss(temperature=inputs["temperature"], distance=_distance(pml, inputs), **kwargs)
        base = inputs.get("base_temperature")
        return loss, 1.0 if base is None else inputs["temperature"] / base  # SupContrast's tau / base_tau
    return as_gold_function(torch, pml, make, lambda inputs: inputs["labels"])


def ntxent(torch, pml, labels="view-major"):
    def make(inputs):
        return pml.losses.NTXentLoss(temperature=inputs["temperature"], distance=_distance(pml, inputs),
                                     reducer=_reducer(pml, inputs["reduction"])), 1.0

    def pair_labels(inputs):
        m = len(inputs["z"])
        return np.arange(m) % (m // 2) if labels == "view-major" else np.arange(m) // 2
    return as_gold_function(torch, pml, make, pair_labels)


SUPCON_CASES = gold.cases("supcon-clean,supcon-mean,supcon-sum,kernel-supcon-mean")


@pytest.mark.parametrize("name", SUPCON_CASES)
def test_pml_supcon_passes_with_gold_reductions_and_supcontrast_factor(torch, pml, name):
    report = gold.verify(name, supcon(torch, pml))
    assert report.ok, str(report)


def test_pml_supcon_nan_gradient_of_anchors_without_positives_is_named(torch, pml):
    case = gold.load("supcon-none-unnormalized")
    factor = case.kwargs["temperature"] / case.kwargs["base_temperature"]
    anchors = [3, 4]  # labels 0 and 2 occur once
    assert [int(np.sum(case.arrays["labels"] == case.arrays["labels"][i])) for i in anchors] == [1, 1]
    assert np.all(np.abs(case.arrays["dout"][anchors] * factor) > 4)  # dout / tiny overflows
    result = gold.verify(case.name, supcon(torch, pml)).cases[0]
    out, dz = result.arrays
    assert out.ok and not dz.ok and dz.n_bad == dz.size
    assert result.diagnosis == [
        "dz has NaN entries where gold is finite",
        "rows 3, 4 of the batch are anchors without positives (no other row shares their label): gold counts "
        "such an anchor as 0 in the loss, still in the mean, with no gradient as an anchor; an average over "
        "its empty set of positives is 0/0 = NaN"]


@pytest.mark.parametrize("name", gold.cases("ntxent"))
def test_pml_ntxent_passes_with_view_major_labels(torch, pml, name):
    report = gold.verify(name, ntxent(torch, pml))
    assert report.ok, str(report)


def test_pml_default_reducer_fails_by_m_over_m_minus_k_and_the_report_says_why(torch, pml):
    report = gold.verify("supcon-clean,supcon-mean-tau0.07", supcon(torch, pml, reducer=False))
    clean, with_singleton = report.cases
    assert clean.ok  # every anchor has a positive: AvgNonZeroReducer is the mean
    assert not with_singleton.ok
    (cause,) = with_singleton.diagnosis
    assert cause.startswith("out and dz are 1.1428571 (8/7) × gold, which matches M/(M-k) = 8/7")
    assert "AvgNonZeroReducer" in cause


def test_pml_ntxent_with_interleaved_labels_is_named(torch, pml):
    report = gold.verify("ntxent-mean-tau0.5", ntxent(torch, pml, labels="interleaved"))
    (cause,) = report.cases[0].diagnosis
    assert "the views read interleaved" in cause


def test_pml_ntxent_default_temperature_is_named(torch, pml):
    def default_temperature(inputs):
        return pml.losses.NTXentLoss(), 1.0  # its default 0.07, where the case says 0.1
    report = gold.verify("ntxent-clean", as_gold_function(torch, pml, default_temperature,
                                                          lambda inputs: np.arange(6) % 3))
    (cause,) = report.cases[0].diagnosis
    assert "with temperature = 0.07" in cause
