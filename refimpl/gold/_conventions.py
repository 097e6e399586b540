"""The conventions that decide the numbers of the gold data, as the manifest and ``cases.json`` state them.

Every convention that changes a number is written here precisely enough to
implement from (with :file:`PAPERS.md`-level detail for the official
variants); :func:`case_notes` adds to a case's description what applies to
that case alone (which rows are anchors without positives, the view layout).
"""
from __future__ import annotations

from ._diagnose import SUPCON_BASE_TEMPERATURE, anchors_without_positives, rows

L = "refimpl.losses."

CONVENTIONS = {
    "layout": "images NCHW; conv2d weights (F, C, KH, KW); linear weights (out, in) as torch.nn.Linear",
    "convolution": "cross-correlation (no kernel flip) with zero padding, as torch.nn.functional.conv2d",
    "views": "two views are stacked view-major: rows 0..N-1 are view 1, rows N..2N-1 view 2 of the same N "
             "samples, so row t's other view is row (t + N) mod 2N (not interleaved 2i, 2i+1); labels and "
             "depth repeat across the views (labels[:N] == labels[N:])",
    "reductions": "'mean' and 'sum' over the per-sample (per-pair, per-anchor) losses, 'none' returns them "
                  "in row order; 'mean' divides by all M rows, anchors without positives included; the "
                  "official variants take 'mean' only, with their own divisor (official_variants)",
    "anchors_without_positives": "kernel, supcon and adacon, paper variant: an anchor with no positive (a "
                                 "label no other row has; adacon: a label, or bucket y // bucket, no other "
                                 "row has) contributes 0 to the loss, still counts in 'mean' (the divisor "
                                 "stays M), and its own term gives no gradient (the row still gets gradient "
                                 "as another anchor's negative); the case's description names these rows. "
                                 "Averaging only over the anchors with positives (pytorch-metric-learning's "
                                 "AvgNonZeroReducer) gives M/(M-k) times gold; dividing by |P(t)| = 0 gives "
                                 "NaN",
    "normalization": "embeddings are L2-normalised per row inside the loss, x / max(||x||, 1e-12), and the "
                     "gradient flows through the normalisation, unless normalize=False (then rows are used "
                     "as given); a logit is a similarity divided by the temperature once",
    "temperatures": "kernel, supcon, ntxent: logits s_tj = z_t . z_j / temperature; supcon multiplies the "
                    "loss by temperature / base_temperature when base_temperature is given (HobbitLong/"
                    f"SupContrast: base {SUPCON_BASE_TEMPERATURE:g}) and by nothing when it is None; adacon: "
                    "logits scale * (cos + margin), scale = 1 / temperature; npair: logits a_i . p_j / "
                    "temperature",
    "softmax_denominators": "kernel, supcon, ntxent, adacon: the anchor itself is left out of its softmax "
                            "denominator (j != t) and its positives stay in it",
    "gradients": "d<name> is the gradient of sum(out * dout) with respect to the array <name>: a "
                 "vector-Jacobian product, torch's out.backward(dout); a scalar loss has a 0-d dout drawn in "
                 "[0.5, 1.5) (so that an implementation which ignores dout fails: every gradient off by "
                 "1/dout), other outputs a standard normal dout of their shape; arrays without a gradient "
                 "(labels, depth, targets, running statistics) have no d<name>",
    "subgradients": "relu'(0) = 0, a hinge's slope at its kink is 0, |r|' = 0 at r = 0; max-pool ties "
                    "send the gradient to the first maximum of the window in row-major order",
    "dtypes": "real arrays float64, labels and targets int64, masks bool",
    "roles": "input, param, state (running statistics) and dout are given to the implementation; "
             "output and grad are what it must return",
    "results": "an .npz per case named <case>.npz holding every output and grad key of the case "
               "(or one .npz with keys <case>/<key>), float64 or float32; other keys are reported and "
               "not compared (verify --strict fails on them)",
    "comparison": "entry-wise |got - want| <= atol + rtol * |want| with the case's tolerances for the "
                  "result's dtype; relative errors are reported as |got - want| / max(|want|, atol / rtol)",
    "clean_cases": "<loss>-clean: the first case to pass for each loss: paper variant, default keyword "
                   "arguments (adacon's scale has none: 10), float64, a small batch, every anchor with a "
                   "positive; the other cases add the edge cases",
    "official_variants": {
        "margin": "Hong7Cong/ConPrO ContrastiveLoss: s_k = cos(a_k, b_k) (the code calls it a distance), "
                  "l_k = (1 - same_k) s_k^2 + same_k max(0, margin - s_k)^2, the mean over the N pairs; "
                  "with margin 2 the clamp never binds",
        "preference": "Hong7Cong/ConPrO: anchor = the unnormalised mean of the raw references (refs (R, D), "
                      "or (N, R, D): one set per pair), s = cos(u, anchor) (similarity, not distance), "
                      "loss = -sigmoid(s_i - s_j)[label_0] with label_0 = prefer_i[0] in {0, 1}: one "
                      "element, pair 0 or pair 1, negative, in [-1, 0] (torch's NLLLoss of a 1-D "
                      "probability vector); the other pairs get no gradient; gradients reach the references",
        "kernel": "Guerbet-AI/wsp-contrastive WSPContrastiveLoss (labels=None: y-Aware's loss): rows are two "
                  "views stacked view-major (M = 2N), L2-normalised; logits z z^T / tau with the diagonal "
                  "masked; w_tj = [labels_t == labels_j] (1 without labels) exp(-(d_t - d_j)^2 / (2 sigma^2)) off the diagonal, "
                  "divided by the weight sum of row j, not of the anchor t (W /= W.sum(dim=1) broadcasts "
                  "over the last axis); loss = -(1/N) sum over all 2N anchors t and j of w_tj log_softmax_t(j), "
                  "twice the mean over anchors",
        "adacon": "XMed-Lab/AdaCon SupConLoss_admargin: rows are two views stacked view-major, L2-normalised; "
                  "bucket b = numpy.floor_divide(y, 0.05) (0.15 // 0.05 == 2); F = (#{b' < b} + #{b' <= b}) "
                  "/ (2 P), the mid-rank ECDF over the population (default: the batch labels); margin "
                  "d_ia = clamp(2 |F_i - F_a|, 0, 2) added only where buckets differ; logits scale (cos + "
                  "d) (scale 150 in the code); positives = same bucket, the anchor excluded from numerator "
                  "and denominator; l_i = -mean over positives of log_softmax; the mean over the 2N anchors",
    },
}


def case_notes(function: str, kwargs: dict, arrays: dict) -> list:
    """Sentences for a case's description: its anchors without positives and its view layout."""
    notes = []
    anchors = anchors_without_positives(function, kwargs, arrays)
    if anchors:
        notes.append(f"Anchors without positives: {rows(anchors)} (each contributes 0, still counts in the "
                     "mean, no gradient from its own term).")
    elif anchors is not None:
        notes.append("Every anchor has a positive.")
    views = function == L + "supcon.ntxent_forward" or (
        function in (L + "kernel.forward", L + "adacon.forward") and kwargs.get("variant") == "official")
    if views:
        n = len(arrays["z"]) // 2
        notes.append(f"Two views, view-major: rows 0..{n - 1} view 1, rows {n}..{2 * n - 1} view 2; "
                     f"row t's other view is row (t + {n}) mod {2 * n}.")
    return notes
