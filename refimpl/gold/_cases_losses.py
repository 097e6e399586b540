"""Gold cases of the losses: paper and official variants, baselines, several shapes and labels.

Each loss starts with its clean case, ``<loss>-clean`` (paper variant,
default keyword arguments, a small batch in which every anchor has a
positive): the one a reader of the paper can pass first. The edge cases
follow: label sets with ties and singletons (a label no other row has: an
anchor without positives), the defaults and a small temperature, every
reduction and variant. Shapes stay small, the file is for checking, not for
timing.
"""
from __future__ import annotations

import numpy as np

from ._spec import Spec, run_forward

L = "refimpl.losses."
#: each loss's clean case (its first): the one to pass before the edge cases
CLEAN = "Clean case, start here: "


def _normal(g, *shape, scale=1.0):
    return g.standard_normal(shape) * scale


def _labels(g, counts):
    """Integer labels with ``counts[k]`` rows of label k, shuffled (count 1: a singleton)."""
    return g.permutation(np.repeat(np.arange(len(counts)), counts))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _two_views(g, n, d, noise=0.5):
    """``z`` (2N, D) stacked view-major: view 2 is view 1 plus noise."""
    z = _normal(g, n, d)
    return np.concatenate([z, z + _normal(g, n, d, scale=noise)])


def _margin_pairs(g, n, d, same, near=0.0, unit=False):
    a = _normal(g, n, d)
    b = _normal(g, n, d) + near * a  # near > 0 brings b towards a (small distances)
    if unit:
        a, b = _unit(a), _unit(b)
    return {"a": a, "b": b, "same": g.permutation(np.asarray(same, dtype=np.int64))}


def _margin():
    f = L + "margin.forward"
    mixed = [1, 1, 1, 0, 0, 0]
    return [
        Spec("margin-clean", f, lambda g: _margin_pairs(g, 4, 3, [1, 1, 0, 0]),
             description=CLEAN + "ConPro Eq. 1-2 with d = 1 - cos, margin 2, the mean over 4 pairs"),
        Spec("margin-paper-mean", f, lambda g: _margin_pairs(g, 6, 4, mixed),
             description="ConPro Eq. 1-2 (d = 1 - cos), default margin 2"),
        Spec("margin-paper-sum-m0.5", f, lambda g: _margin_pairs(g, 6, 4, mixed, near=2.0),
             dict(margin=0.5, reduction="sum"),
             description="margin 0.5: the hinge binds for some negative pairs, not for others"),
        Spec("margin-paper-none-d8", f, lambda g: _margin_pairs(g, 5, 8, [1, 0, 0, 0, 0]),
             dict(reduction="none"), description="per-pair losses, D = 8"),
        Spec("margin-paper-unnormalized", f, lambda g: _margin_pairs(g, 6, 3, mixed, unit=True),
             dict(normalize=False, reduction="sum"),
             description="normalize=False on unit vectors: the gradient has no projection"),
        Spec("margin-official", f, lambda g: _margin_pairs(g, 6, 4, mixed), dict(variant="official"),
             description="Hong7Cong/ConPrO ContrastiveLoss: squared terms on the cosine similarity"),
        Spec("margin-official-m0.5", f, lambda g: _margin_pairs(g, 6, 4, [1, 1, 1, 1, 0, 1], near=2.0),
             dict(variant="official", margin=0.5),
             description="official, margin 0.5: the clamp binds for close positive pairs"),
    ]


def _preference_inputs(g, n, d, refs_shape, prefer, ref_norms=None, scale=1.0):
    refs = _normal(g, *refs_shape) + 0.5  # references share a direction, as normal-class embeddings
    if ref_norms is not None:
        refs = refs * np.asarray(ref_norms)[:, None]
    return {"u_i": _normal(g, n, d, scale=scale), "u_j": _normal(g, n, d, scale=scale), "refs": refs,
            "prefer_i": np.asarray(prefer, dtype=np.float64)}


def _preference():
    f = L + "preference.forward"
    return [
        Spec("preference-clean", f, lambda g: _preference_inputs(g, 4, 3, (2, 3), [1, 0, 1, 0]),
             description=CLEAN + "ConPro Eq. 3-4: reward = cosine distance to the mean of 2 references, "
                                 "hard preferences, the mean over 4 pairs"),
        Spec("preference-paper-mean-r1", f,
             lambda g: _preference_inputs(g, 5, 4, (1, 4), [1, 0, 1, 1, 0]),
             description="ConPro Eq. 3-4 (reward: cosine distance to the anchor), one reference"),
        Spec("preference-paper-sum-r3-soft", f,
             lambda g: _preference_inputs(g, 5, 4, (3, 4), [0.5, 0.9, 0.0, 0.25, 1.0], [0.5, 1.0, 3.0]),
             dict(reduction="sum"),
             description="soft preferences (0.5: a tie); references of different norms, averaged raw"),
        Spec("preference-paper-none-perpair", f,
             lambda g: _preference_inputs(g, 4, 5, (4, 2, 5), [1, 0, 0.5, 1]), dict(reduction="none"),
             description="one pair of references per pair (refs (N, R, D))"),
        Spec("preference-paper-unnormalized", f,
             lambda g: _preference_inputs(g, 5, 3, (2, 3), [1, 0, 1, 0, 1], scale=0.5),
             dict(normalize=False), description="normalize=False: rewards from dot products"),
        Spec("preference-official-label0", f,
             lambda g: _preference_inputs(g, 5, 4, (20, 4), [0, 1, 1, 0, 1]), dict(variant="official"),
             description="Hong7Cong/ConPrO: -sigmoid(cos_i - cos_j)[label_0], label_0 = 0; 20 references"),
        Spec("preference-official-label1-perpair", f,
             lambda g: _preference_inputs(g, 5, 4, (5, 1, 4), [1, 0, 0, 1, 1]), dict(variant="official"),
             description="official, label_0 = 1 (reads pair 1); one reference per pair (train_conpre.py)"),
    ]


def _wsp(g, counts=(3, 2, 1, 2), d=4, labels=True, depth=True, scale=1.0):
    m = sum(counts)
    out = {"z": _normal(g, m, d, scale=scale)}
    if labels:
        out["labels"] = _labels(g, counts)
    if depth:
        out["depth"] = g.uniform(0.0, 1.0, m)
    return out


def _wsp_views(g, n=4, d=4, labels=True):
    out = {"z": _two_views(g, n, d), "depth": np.tile(g.uniform(0.0, 1.0, n), 2)}
    if labels:
        out["labels"] = np.tile(g.integers(0, 2, n), 2)
    return out


def _kernel():
    f = L + "kernel.forward"
    return [
        Spec("kernel-clean", f, lambda g: _wsp(g, (2, 2, 2)),
             description=CLEAN + "WSP Eq. 4: Dirac on labels x Gaussian on depth, sigma 0.1, temperature "
                                 "0.1, the mean over 6 anchors"),
        Spec("kernel-wsp-mean", f, _wsp,
             description="WSP Eq. 4: Dirac on labels (ties, a singleton) x Gaussian on depth, "
                         "default sigma 0.1 and temperature 0.1"),
        Spec("kernel-wsp-tau0.02", f, _wsp, dict(sigma=0.3, temperature=0.02),
             description="small temperature 0.02, sigma 0.3"),
        Spec("kernel-wsp-none-sigma1", f, lambda g: _wsp(g, (2, 2, 1, 1, 3)),
             dict(sigma=1.0, reduction="none"),
             description="per-anchor losses, two singletons, sigma 1"),
        Spec("kernel-yaware-sum", f, lambda g: _wsp(g, labels=False), dict(sigma=0.2, reduction="sum"),
             description="y-Aware: Gaussian kernel on depth only"),
        Spec("kernel-supcon-mean", f, lambda g: _wsp(g, depth=False), dict(temperature=0.5),
             description="SupCon: Dirac kernel on labels only"),
        Spec("kernel-wsp-unnormalized", f, lambda g: _wsp(g, scale=0.5),
             dict(normalize=False, temperature=0.5),
             description="normalize=False: similarities are raw dot products"),
        Spec("kernel-official-wsp", f, _wsp_views, dict(variant="official", sigma=0.5),
             description="Guerbet-AI/wsp-contrastive WSPContrastiveLoss: two views, column-normalised "
                         "weights, -(1/N) sum over 2N anchors"),
        Spec("kernel-official-yaware", f, lambda g: _wsp_views(g, labels=False),
             dict(variant="official", sigma=0.5),
             description="y-Aware's loss (official, labels=None)"),
    ]


def _adacon_inputs(g, m=8, d=4, population=0):
    y = g.permutation(np.array([0.1, 0.1, 0.3, 0.3, 0.3, 0.5, 0.7, 0.9])[:m])
    out = {"z": _normal(g, m, d), "y": y}
    if population:
        out["population"] = g.uniform(0.0, 1.0, population)
    return out


def _adacon_pairs(g, d=3):
    """Six rows, each label twice (every anchor has a positive)."""
    return {"z": _normal(g, 6, d), "y": g.permutation(np.repeat([0.2, 0.5, 0.9], 2))}


def _off_edges(g, size, width=0.05):
    """Labels inside buckets of ``width``, at least 0.1 width from an edge (float32 keeps the bucket)."""
    return (g.integers(2, 18, size) + g.uniform(0.1, 0.9, size)) * width


def _adacon_views(g, n=4, d=4, population=0):
    y = _off_edges(g, n)
    y[1] = y[0]  # two samples with one label
    out = {"z": _unit(_two_views(g, n, d)), "y": np.tile(y, 2)}
    if population:
        out["population"] = _off_edges(g, population)
    return out


def _adacon():
    f = L + "adacon.forward"
    return [
        Spec("adacon-clean", f, _adacon_pairs, dict(scale=10.0),
             description=CLEAN + "AdaCon Eq. 4-6 with the batch ECDF (Eq. 5), every label twice, scale 10 "
                                 "(no default: the paper gives none, the code uses 150)"),
        Spec("adacon-paper-mean-s2", f, _adacon_inputs, dict(scale=2.0),
             description="AdaCon Eq. 4-6, batch ECDF (Eq. 5), labels with ties and singletons"),
        Spec("adacon-paper-none-s10", f, _adacon_inputs, dict(scale=10.0, reduction="none"),
             description="per-anchor losses, scale 10; anchors without positives give 0"),
        Spec("adacon-paper-sum-population-bucket", f, lambda g: _adacon_inputs(g, population=20),
             dict(scale=5.0, bucket=0.12, reduction="sum"),
             description="ECDF over a population of 20 labels, buckets of 0.12 (no label near an edge)"),
        Spec("adacon-official-s150", f, _adacon_views, dict(scale=150.0, variant="official"),
             description="XMed-Lab/AdaCon SupConLoss_admargin: two views, buckets of 0.05, "
                         "mid-rank ECDF, s = 150"),
        Spec("adacon-official-s150-population", f, lambda g: _adacon_views(g, population=30),
             dict(scale=150.0, variant="official"),
             description="official, ECDF over a training population of 30 labels"),
        Spec("adacon-ecdf-paper", L + "adacon.ecdf", lambda g: _adacon_inputs(g, population=12),
             description="Eq. 5 ECDF of y over a population (no gradient)", run=_drop_z(run_forward)),
        Spec("adacon-ecdf-official-bucket", L + "adacon.ecdf", lambda g: _adacon_views(g, population=12),
             dict(kind="official", bucket=0.05), description="mid-rank ECDF of 0.05 buckets (no gradient)",
             run=_drop_z(run_forward)),
        Spec("adacon-margin-paper", L + "adacon.margin", _adacon_inputs,
             description="Eq. 4 margins d_ia = 2 |F(y_i) - F(y_a)| (no gradient)", run=_drop_z(run_forward)),
    ]


def _drop_z(run):
    """The ECDF functions take labels only: the embeddings of the shared drawer are left out."""
    def without_z(spec, arrays, kwargs, dout_for):
        return run(spec, {k: v for k, v in arrays.items() if k != "z"}, kwargs, dout_for)
    return without_z


def _supcon():
    f = L + "supcon.forward"
    return [
        Spec("supcon-clean", f, lambda g: _wsp(g, (2, 2, 2), depth=False),
             description=CLEAN + "SupCon (Khosla et al. Eq. 2, L_out), temperature 0.1, no tau / base_tau "
                                 "factor, the mean over 6 anchors"),
        Spec("ntxent-clean", L + "supcon.ntxent_forward", lambda g: {"z": _two_views(g, 3, 4)},
             backward=L + "supcon.ntxent_backward",
             description=CLEAN + "SimCLR NT-Xent, temperature 0.1, the mean over the 6 anchors"),
        Spec("supcon-mean-tau0.07", f, lambda g: _wsp(g, depth=False),
             dict(temperature=0.07, base_temperature=0.07),
             description="SupCon (Khosla et al. Eq. 2) as HobbitLong/SupContrast, tau = base tau = 0.07"),
        Spec("supcon-sum-tau0.5", f, lambda g: _wsp(g, (2, 1, 3, 2), depth=False),
             dict(temperature=0.5, reduction="sum"), description="no tau / base_tau factor"),
        Spec("supcon-none-unnormalized", f, lambda g: _wsp(g, (1, 3, 1, 2), depth=False, scale=0.5),
             dict(temperature=0.3, base_temperature=0.07, normalize=False, reduction="none"),
             description="per-anchor losses of rows as given; two anchors without positives give 0"),
        Spec("ntxent-mean-tau0.5", L + "supcon.ntxent_forward", lambda g: {"z": _two_views(g, 4, 4)},
             dict(temperature=0.5), backward=L + "supcon.ntxent_backward",
             description="SimCLR NT-Xent over 2N view-major rows"),
        Spec("ntxent-none-tau0.1", L + "supcon.ntxent_forward", lambda g: {"z": _two_views(g, 3, 5, 1.5)},
             dict(reduction="none"), backward=L + "supcon.ntxent_backward",
             description="per-anchor NT-Xent, default temperature 0.1"),
        Spec("ntxent-sum-tau0.2", L + "supcon.ntxent_forward", lambda g: {"z": _two_views(g, 2, 3, 1.0)},
             dict(temperature=0.2, reduction="sum"), backward=L + "supcon.ntxent_backward",
             description="two samples: each anchor's denominator holds its positive and two negatives"),
    ]


def _npair():
    f = L + "npair.forward"
    pairs = lambda g, scale=1.0: {"anchor": _normal(g, 5, 4, scale=scale),  # noqa: E731
                                  "positive": _normal(g, 5, 4, scale=scale)}
    return [
        Spec("npair-clean", f, lambda g: {"anchor": _normal(g, 4, 3), "positive": _normal(g, 4, 3)},
             description=CLEAN + "Sohn's N-pair-mc loss, every pair its own class, temperature 1"),
        Spec("npair-mean", f, pairs, description="Sohn's N-pair-mc loss, every pair its own class"),
        Spec("npair-labels-sum-tau0.2", f, lambda g: {**pairs(g), "labels": _labels(g, (2, 1, 2))},
             dict(temperature=0.2, reduction="sum"), description="shared labels: targets spread over them"),
        Spec("npair-l2reg-unnormalized", f, lambda g: pairs(g, 0.5),
             dict(l2_reg=0.01, normalize=False, reduction="none"),
             description="raw inner products with the L2 regulariser on the embeddings"),
    ]


def _triplets(g, n=5, d=4, population=0, same_positive=True):
    y_a = g.uniform(0.0, 1.0, n)
    y_p = y_a if same_positive else g.uniform(0.0, 1.0, n)
    out = {"anchor": _normal(g, n, d), "positive": _normal(g, n, d), "negative": _normal(g, n, d),
           "y_anchor": y_a, "y_positive": y_p.copy(), "y_negative": g.uniform(0.0, 1.0, n)}
    if population:
        out["population"] = g.uniform(0.0, 1.0, population)
    return out


def _triplet():
    f = L + "triplet.forward"
    return [
        Spec("triplet-clean", f, lambda g: _triplets(g, 4, 3),
             description=CLEAN + "adaptive triplet (AdaCon App. B), batch ECDF margins, the mean"),
        Spec("triplet-mean", f, _triplets, description="adaptive triplet (AdaCon App. B), ECDF margins"),
        Spec("triplet-none", f, lambda g: _triplets(g, 6, 3, same_positive=False), dict(reduction="none"),
             description="positives with their own labels (margin 2 (d_an - d_ap))"),
        Spec("triplet-sum-population-unnormalized", f, lambda g: _triplets(g, population=12),
             dict(normalize=False, reduction="sum"),
             description="Zheng et al.'s unnormalised form, ECDF over a population"),
    ]


def _regression():
    f = L + "regression.forward"
    return [
        Spec("regression-clean", f, lambda g: {"pred": _normal(g, 5), "target": _normal(g, 5)},
             description=CLEAN + "mean squared error"),
        Spec("regression-mse-mean", f, lambda g: {"pred": _normal(g, 6), "target": _normal(g, 6)},
             dict(kind="mse"), description="mean squared error"),
        Spec("regression-l1-sum-2d", f, lambda g: {"pred": _normal(g, 4, 3), "target": _normal(g, 4, 3)},
             dict(kind="l1", reduction="sum"), description="L1 on (N, K)"),
        Spec("regression-huber-none", f, lambda g: {"pred": _normal(g, 8), "target": _normal(g, 8)},
             dict(kind="huber", delta=0.5, reduction="none"),
             description="Huber, residuals on both sides of delta"),
    ]


def _logits(g, n=6, c=4, weight=False):
    out = {"logits": _normal(g, n, c, scale=2.0), "targets": g.integers(0, c, n)}
    if weight:
        out["weight"] = g.uniform(0.5, 2.0, c)
    return out


def _cross_entropy():
    f = L + "cross_entropy.forward"
    return [
        Spec("cross_entropy-clean", f, lambda g: _logits(g, 4, 3),
             description=CLEAN + "softmax cross-entropy, the mean, as torch's cross_entropy"),
        Spec("cross_entropy-mean", f, _logits, description="softmax cross-entropy, as torch's cross_entropy"),
        Spec("cross_entropy-weighted-smoothing", f, lambda g: _logits(g, weight=True),
             dict(label_smoothing=0.1),
             description="class weights (weighted mean) and label smoothing 0.1"),
        Spec("cross_entropy-sum-smoothing", f, _logits, dict(label_smoothing=0.2, reduction="sum")),
        Spec("cross_entropy-none-weighted", f, lambda g: _logits(g, 5, 3, weight=True),
             dict(reduction="none")),
    ]


def _crops(g, b=3, k=5, n_global=2, n_crops=4):
    return {"student": _normal(g, n_crops * b, k), "teacher": _normal(g, n_global * b, k),
            "center": _normal(g, k, scale=0.1)}


def _dino():
    f = L + "dino.forward"
    return [
        Spec("dino-clean", f, lambda g: _crops(g, b=2, k=4, n_crops=2),
             description=CLEAN + "DINO, 2 global crops only, default temperatures"),
        Spec("dino-default", f, _crops, description="DINO: 2 global + 2 local crops, default temperatures"),
        Spec("dino-ncrops2-tt0.07", f, lambda g: _crops(g, n_crops=2), dict(teacher_temp=0.07),
             description="global crops only, teacher temperature after warm-up"),
        Spec("dino-nglobal1", f, lambda g: _crops(g, b=2, n_global=1, n_crops=3), dict(n_global=1)),
    ]


def specs() -> list:
    return (_margin() + _preference() + _kernel() + _adacon() + _supcon() + _npair() + _triplet()
            + _regression() + _cross_entropy() + _dino())
