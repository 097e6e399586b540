"""ConPro (Nguyen et al., CVPR-W 2024): Con step, then PrO step, against its baselines.

Pipeline (the paper's Algorithm 1 and Sec. 4, scaled down, see ``SCALED_DOWN``):

1. **Con step** (= the *SupCon-2* baseline): encoder ``f`` (TinyNet) and a
   one-layer projection ``g`` trained with the margin contrastive loss
   (:mod:`refimpl.losses.margin`, Eq. 1-2, m = 2) on pairs drawn half from
   the same binary class (normal = severity 0 vs abnormal), half across.
2. **PrO step**: a further layer ``h`` (same width, "keeps the preference
   vectors on the same dimension") and ``f``, ``g`` trained with the
   Bradley-Terry loss (:mod:`refimpl.losses.preference`, Eq. 3-4) on pairs of
   different severity, the more severe one preferred; the normality anchor of
   each pair is the mean of ``n`` reference vectors of the normal class,
   re-drawn for every pair from normal images embedded by the current
   network (gradients flow into them, as the paper's "we also update the
   normality anchor" says). ``n`` in {1, 10, 20} (Table 2).
3. Baselines trained for as many steps as Con + PrO: **SupCon-n** (SupCon
   on all severity levels, class-balanced batches), **SimCLR** (NT-Xent on
   two augmented views); and **random init** (the untrained encoder).

Evaluation (Sec. 4 "Evaluation"): the encoder ``f`` is frozen (``g``, ``h``
are discarded); ConPro's prediction head (2-layer MLP, ReLU, dropout 0.1,
class-weighted cross-entropy, :func:`refimpl.probe.fit_prediction_head`) is
trained on the training subjects' features, its epoch count chosen by the
validation macro-F1, and scored on the test subjects: macro-F1, macro recall
and MAEE (Eq. 5). Severity ordering: Spearman correlation between the
severity of each test image and the cosine distance of its representation to
the normality anchor (mean representation of the training normals).

Data: :func:`data_synth.ordinal_severity` (Papilledema-like: six levels,
imbalanced, several images per subject), split 70/15/15 by subject. Your own
data: ``run(data={"images": (N, C, H, W) float array in [0, 1], "severity":
(N,) int 0..L-1 with 0 = normal, "subject": (N,) optional group ids})``;
H and W must be multiples of 32.
"""
from __future__ import annotations

import os

import numpy as np

from ..augment import AugmentPreset
from ..losses import margin, preference, supcon
from ..model import Linear, Sequential, subtree
from . import _common as C

NAME = "conpro"

#: What the paper used and what this recipe uses instead (written to config.json).
SCALED_DOWN = {
    "data": "synthetic fundus-like discs (data_synth.ordinal_severity), 32x32 grey, instead of "
            "Papilledema fundus photographs (331 images, 105 subjects) and VinDr-Mammo",
    "encoder": "TinyNet with 3x3 kernels and widths 8-16-32-64-64 (about 70k parameters) instead of "
               "ResNet-50 (2048-d representation)",
    "projection": "g: one linear layer to 64-d (paper 256-d); h: linear 64 -> 64",
    "optimiser": "AdamW with a cosine schedule, one learning rate, instead of SGD momentum 0.9 with "
                 "lr 1e-3 (encoder) and 1e-2 (heads)",
    "steps": "a few hundred steps of 32 pairs instead of 10^5 preference pairs, batch 16",
    "prediction_head": "hidden 128 (paper 256)",
    "batchnorm": "batch norm after each convolution (ResNet-50 has it; our TinyNet would start with every "
                 "image at nearly one direction, cosine ~0.99)",
}

#: What each metric of the results table measures, and which way is better (printed under it).
METRICS = {
    "macro_f1": "macro-averaged F1 of the prediction head on the test subjects' true severity (higher is better)",
    "macro_recall": "macro-averaged recall, the same predictions (higher is better)",
    "maee": "mean absolute exponential error, mean of e^|true - predicted grade| (Eq. 5; 1 is perfect, "
            "lower is better)",
    "spearman": "Spearman correlation of severity with the distance to the normality anchor (higher is better)",
}

#: Why a claim may not hold on this data (``refimpl run claims`` quotes these in docs/claims.md).
CLAIM_NOTES = {
    "ConPro has a higher macro-F1 than SupCon-n, SimCLR and random init (Table 1)":
        "SupCon-n beats ConPro on macro-F1 here (ConPro beats SimCLR and random init). Its objective is "
        "the classification task itself: it clusters each of the six recorded levels, while the PrO step "
        "only orders distances to the normality anchor, one direction, in which neighbouring levels stay "
        "close (which is what lowers MAEE and raises the anchor Spearman over SupCon-2). On "
        "Papilledema the paper's own margin over SupCon-n, 48.5 vs 45.5 macro-F1, is inside its "
        "standard deviations (3.8 and 4.1); its large margin is on VinDr-Mammo, which is much more "
        "imbalanced than this data.",
    "More reference vectors lower MAEE (Table 2: n=20 vs n=1)":
        "the paper's own effect (MAEE 5.4 +- 0.52 vs 5.2 +- 0.39) is smaller than its spread over runs; "
        "an anchor averaged over more references is less noisy, but the difference it makes is small "
        "against the variation between seeds.",
}

#: label-preserving augmentation for the supervised steps: the severity cue is the disc's size,
#: so crops stay large (a strong zoom would change the apparent severity)
MILD = AugmentPreset("mild", global_scale=(0.85, 1.0), brightness=0.2, contrast=0.2)


def default_config(fast: bool = False) -> dict:
    """Every hyperparameter of the recipe (``fast``: the smoke-test sizes)."""
    cfg = {
        "images": 1500, "subjects": 500, "levels": 6, "size": 32,
        # The paper's text names the imbalance ("both datasets are unbalanced": class-weighted cross-entropy,
        # and MAEE "penalizes incorrect prediction at higher severity classes in case of data imbalance")
        # without per-class counts: normal the most frequent, severe grades the rarest, 8 : 1 between the
        # ends. None (or equal weights) switches it off; refimpl run claims ablates it.
        "class_weights": [4, 2, 2, 1.5, 1, 0.5],
        "grading_noise": 0.4,  # about one image in five recorded at a neighbouring level
        "split": [0.7, 0.15, 0.15],
        "widths": [8, 16, 32, 64, 64], "kernel_size": 3, "batchnorm": True, "proj_dim": 64,
        "pairs_per_step": 32, "con_steps": 300, "pro_steps": 300,
        "lr": 2e-3, "weight_decay": 1e-4, "warmup_steps": 20,
        "margin": margin.DEFAULT_MARGIN, "temperature": 0.1,
        "reference_counts": [1, 10, 20], "conpro_references": 20, "reference_pool": 32,
        "simclr_preset": "weak",
        "head_hidden": 128, "head_dropout": 0.1, "head_lr": 1e-3, "head_batch_size": 64,
        "head_epochs": [50, 100, 200],
    }
    if fast:
        cfg.update(images=300, subjects=100, con_steps=30, pro_steps=30, head_epochs=[50],
                   reference_counts=[1, 20])
    return cfg


def _load(data, cfg, seed):
    if data is None:
        from data_synth import ordinal_severity

        d = ordinal_severity(cfg["images"], levels=cfg["levels"], size=cfg["size"],
                             subjects=cfg["subjects"], class_weights=cfg["class_weights"],
                             grading_noise=cfg["grading_noise"], seed=C.rng_for(seed, "data"))
        return d.images, d.grade, d.severity, d.subject
    images, severity, subject = C.graded_images(data, severity_min=0)
    return images, severity, severity, subject


def _train_con(s: C.Context, net, start, images, severity):
    """Con step: margin loss on same / different binary-class pairs (Eq. 1)."""
    cfg, rng = s.cfg, s.rng("con")
    b, abnormal = cfg["pairs_per_step"], (severity > 0).astype(int)

    def step(p, state, k):
        i, j, same = C.sample_pairs(rng, abnormal, b)
        x = s.augment(images[np.concatenate([i, j])], rng, MILD)

        def loss(out):
            value, cache = margin.forward(out[:b], out[b:], s.device(same), margin=cfg["margin"])
            da, db = margin.backward(1.0, cache)
            return value, s.xp.concat([da, db])
        return C.network_step(net, p, x, loss, state=state)

    return C.train(step, *start, steps=cfg["con_steps"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                   warmup=cfg["warmup_steps"], desc="Con (SupCon-2)", images_per_step=2 * b,
                   progress=s.progress)


def _severity_pairs(rng, severity, n):
    """``n`` pairs of different severity (first member class-balanced) and ``prefer_i``."""
    i = C.balanced_batch(rng, severity, n)
    j = rng.integers(0, len(severity), n)
    clash = severity[i] == severity[j]
    while np.any(clash):  # redraw the partners of equal severity (a few rounds at most)
        j[clash] = rng.integers(0, len(severity), int(clash.sum()))
        clash = severity[i] == severity[j]
    return i, j, (severity[i] > severity[j]).astype(np.float64)


def _train_pro(s: C.Context, net, start, images, severity, n_refs):
    """PrO step: Bradley-Terry preference over pairs, anchor = mean of ``n_refs`` normal references."""
    cfg, rng = s.cfg, s.rng("pro", n_refs)
    b, pool = cfg["pairs_per_step"], cfg["reference_pool"]
    normals = np.flatnonzero(severity == 0)
    if len(normals) < n_refs:
        raise ValueError(f"the training split has {len(normals)} normal images, fewer than the "
                         f"{n_refs} reference vectors asked for")
    xp = s.xp
    pool = max(min(pool, len(normals)), n_refs)  # normal images embedded per step

    def step(p, state, k):
        i, j, prefer = _severity_pairs(rng, severity, b)
        refs = rng.choice(normals, size=pool, replace=False)
        pick = np.argsort(rng.random((b, len(refs))), axis=1)[:, :n_refs]  # (B, n) refs of each pair
        onehot = np.zeros((b * n_refs, len(refs)))
        onehot[np.arange(b * n_refs), pick.ravel()] = 1.0  # (B*n, P) scatters drefs to the pool
        x = s.augment(images[np.concatenate([i, j, refs])], rng, MILD)

        def loss(out):
            u_i, u_j, pooled = out[:b], out[b:2 * b], out[2 * b:]
            picked = s.device(onehot) @ pooled  # (B*n, P) @ (P, D)
            ref_vectors = xp.reshape(picked, (b, n_refs, pooled.shape[1]))  # (B, n, D)
            value, cache = preference.forward(u_i, u_j, ref_vectors, s.device(prefer))
            du_i, du_j, drefs = preference.backward(1.0, cache)
            dpool = xp.permute_dims(s.device(onehot), (1, 0)) @ xp.reshape(drefs, (b * n_refs, -1))
            return value, xp.concat([du_i, du_j, dpool])  # (2B + P, D)
        return C.network_step(net, p, x, loss, state=state)

    return C.train(step, *start, steps=cfg["pro_steps"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                   warmup=cfg["warmup_steps"], desc=f"PrO (n={n_refs})",
                   images_per_step=2 * b + pool, progress=s.progress)


def _train_supcon(s: C.Context, net, start, images, severity):
    """SupCon-n: supervised contrastive loss on every severity level, random batches (as SupCon)."""
    cfg, rng = s.cfg, s.rng("supcon")
    batch = 2 * cfg["pairs_per_step"]

    def step(p, state, k):
        idx = C.random_batch(rng, len(severity), batch)
        x = s.augment(images[idx], rng, MILD)
        return C.network_step(net, p, x, C.with_grad(supcon, labels=s.device(severity[idx]),
                                                     temperature=cfg["temperature"]), state=state)

    return C.train(step, *start, steps=cfg["con_steps"] + cfg["pro_steps"], lr=cfg["lr"],
                   weight_decay=cfg["weight_decay"], warmup=cfg["warmup_steps"], desc="SupCon-n",
                   images_per_step=batch, progress=s.progress)


def _train_simclr(s: C.Context, net, start, images):
    """SimCLR: NT-Xent between two augmented views of each image (no labels)."""
    cfg, rng = s.cfg, s.rng("simclr")
    b = cfg["pairs_per_step"]

    def step(p, state, k):
        x = images[C.random_batch(rng, len(images), b)]
        views = [s.augment(x, rng, cfg["simclr_preset"]) for _ in range(2)]
        return C.network_step(net, p, s.xp.concat(views), C.ntxent(cfg["temperature"]), state=state)

    return C.train(step, *start, steps=cfg["con_steps"] + cfg["pro_steps"], lr=cfg["lr"],
                   weight_decay=cfg["weight_decay"], warmup=cfg["warmup_steps"], desc="SimCLR",
                   images_per_step=2 * b, progress=s.progress)


def _evaluate(s: C.Context, features, grade, severity, parts):
    """Prediction head on frozen features (epochs chosen on validation macro-F1) and the anchor Spearman.

    The head learns the recorded ``grade`` (as a clinic would) and is chosen
    on the validation grades; the test scores compare with the true
    ``severity``, which only synthetic data knows (for user data the two are
    the same labels).
    """
    from ..metrics import macro_f1, macro_recall, maee, spearman
    from ..probe import fit_prediction_head

    cfg = s.cfg
    train, val, test = parts
    mu, sd = features[train].mean(axis=0), features[train].std(axis=0) + 1e-8
    x = (features - mu) / sd
    k = int(max(grade.max(), severity.max())) + 1
    best = None
    for epochs in cfg["head_epochs"]:
        head = fit_prediction_head(x[train], grade[train], hidden=cfg["head_hidden"],
                                   dropout=cfg["head_dropout"], epochs=epochs, lr=cfg["head_lr"],
                                   batch_size=cfg["head_batch_size"], seed=s.seed)
        score = macro_f1(grade[val], head.predict(x[val]), n_classes=k)
        if best is None or score > best[0]:
            best = (score, head)
    pred = best[1].predict(x[test])
    anchor = features[train][grade[train] == 0].mean(axis=0)
    distance = C.cosine_to(features[test], anchor)
    return {"macro_f1": macro_f1(severity[test], pred, n_classes=k),
            "macro_recall": macro_recall(severity[test], pred, n_classes=k),
            "maee": maee(severity[test], pred),
            "spearman": spearman(severity[test], distance)}


def claims_from(methods: dict, cfg: dict) -> list:
    """The paper's claims, computed from the metrics of every method (``metrics.json["methods"]``)."""
    best = f"ConPro (n={cfg['conpro_references']})"
    counts = cfg["reference_counts"]
    fewest, most = f"ConPro (n={min(counts)})", f"ConPro (n={max(counts)})"
    rivals = [m for m in ("SupCon-n", "SimCLR", "random init") if m in methods]
    f1_gap = min(methods[best]["macro_f1"] - methods[m]["macro_f1"] for m in rivals)
    return [
        C.compare("ConPro orders severity by distance to the normality anchor better than SupCon-2 "
                  "(its Con step alone)", methods, "spearman", best, "SupCon-2"),
        C.compare("ConPro has a lower MAEE than SupCon-2 (Table 1)", methods, "maee", best, "SupCon-2",
                  higher_is_better=False),
        C.compare(f"More reference vectors lower MAEE (Table 2: n={max(counts)} vs n={min(counts)})",
                  methods, "maee", most, fewest, higher_is_better=False),
        C.claim("ConPro has a higher macro-F1 than SupCon-n, SimCLR and random init (Table 1)",
                f1_gap > 0, "macro_f1: " + ", ".join(f"{m} {methods[m]['macro_f1']:.4f}" for m in [best] + rivals)
                + f" (smallest margin {f1_gap:+.4f})", f1_gap),
    ]


def run(*, seed=0, fast=False, backend="numpy", dtype="float32", out_dir=None, data=None, progress=True,
        **overrides) -> dict:
    """Train ConPro and its baselines, evaluate, check the paper's claims (module docstring).

    Returns the ``metrics.json`` dictionary; writes it with ``config.json``,
    figures and parameters to ``out_dir`` when given.
    """
    s = C.Context.make(default_config(fast), overrides, seed=seed, backend=backend, dtype=dtype,
                       progress=progress)
    cfg, seed = s.cfg, s.seed
    images, grade, severity, subject = _load(data, cfg, seed)
    parts = C.group_split(subject, cfg["split"], rng=s.rng("split"))
    train = parts[0]
    tr_images, tr_severity = images[train], grade[train]

    encoder = C.encoder_from(cfg, images.shape[1])
    width = cfg["widths"][-1]
    g = Linear(width, cfg["proj_dim"])
    h = Linear(cfg["proj_dim"], cfg["proj_dim"])
    with_g = Sequential([("f", encoder), ("g", g)])
    with_h = Sequential([("f", encoder), ("g", g), ("h", h)])
    init = (with_g.init(s.rng("init"), dtype, xp=s.xp), with_g.init_state(dtype, xp=s.xp))

    runs = {"SupCon-2": _train_con(s, with_g, init, tr_images, tr_severity)}
    head_init = {f"h.{k}": v for k, v in h.init(s.rng("init h"), dtype, xp=s.xp).items()}
    con = runs["SupCon-2"]
    for n in cfg["reference_counts"]:
        runs[f"ConPro (n={n})"] = _train_pro(s, with_h, ({**con.params, **head_init}, con.state),
                                             tr_images, tr_severity, n)
    runs["SupCon-n"] = _train_supcon(s, with_g, init, tr_images, tr_severity)
    runs["SimCLR"] = _train_simclr(s, with_g, init, tr_images)
    encoders = {name: (subtree(r.params, "f"), subtree(r.state, "f")) for name, r in runs.items()}
    encoders["random init"] = (subtree(init[0], "f"), subtree(init[1], "f"))
    features = {name: C.embed(encoder, p, images, state=st, xp=s.xp, dtype=dtype)
                for name, (p, st) in encoders.items()}
    order = ["random init", "SimCLR", "SupCon-n", "SupCon-2"] + [f"ConPro (n={n})" for n in cfg["reference_counts"]]
    methods = {name: _evaluate(s, features[name], grade, severity, parts) for name in order}
    result = C.result_dict(NAME, seed, methods, claims_from(methods, cfg))
    if out_dir is not None:
        config = C.config_record(NAME, s, fast=fast, backend=backend, scaled_down=SCALED_DOWN,
                                 data="data_synth.ordinal_severity" if data is None else "user arrays")
        C.write_outputs(out_dir, result, config, {C.file_stem(n): e for n, e in encoders.items()})
        _figures(out_dir, features, grade, severity, parts, runs, cfg)
    return result


def _figures(out_dir, features, grade, severity, parts, runs, cfg):
    test = parts[2]
    shown = ["random init", "SimCLR", "SupCon-n", "SupCon-2", f"ConPro (n={cfg['conpro_references']})"]
    fig, axes = C.new_figure(len(shown) + 1, ncols=3)
    for ax, name in zip(axes, shown):
        C.pca_panel(ax, features[name][test], severity[test], title=f"{name} (test set)", label="severity")
    _anchor_panel(axes[-1], {n: features[n] for n in ("SupCon-2", shown[-1])}, grade, severity, parts)
    C.save_figure(fig, os.path.join(out_dir, "representations.png"),
                  title="Encoder representations, PCA of unit vectors, coloured by severity")
    fig, (ax,) = C.new_figure(1, panel=(5.5, 3.8))
    C.similarity_panel(ax, {n: (features[n][test], severity[test]) for n in shown},
                       title="Similarity of test pairs vs severity difference", xlabel="|severity difference|")
    C.save_figure(fig, os.path.join(out_dir, "similarity.png"))
    _training_figure(runs, cfg, os.path.join(out_dir, "training.png"))


def _training_figure(runs, cfg, path):
    """Loss curves; ConPro's PrO runs continue its Con step (the SupCon-2 run) and are drawn after it."""
    title, first, loss = {}, {}, {}
    for name in runs:
        if name == "SupCon-2":
            title[name], loss[name] = "SupCon-2 = ConPro's Con step", "margin loss (Eq. 1)"
        elif name.startswith("ConPro"):
            title[name], loss[name] = f"{name}: PrO step after Con", "Bradley-Terry loss (Eq. 4)"
            first[title[name]] = cfg["con_steps"] + 1
        else:
            title[name] = name
            loss[name] = "SupCon loss" if name == "SupCon-n" else "NT-Xent loss"
    C.curves_figure({title[n]: r.losses for n, r in runs.items()}, path,
                    first_step=first, loss_of={title[n]: loss[n] for n in runs},
                    title="Training loss per step; the PrO runs start from the Con step's weights, "
                          "panels of one loss share its scale")


def _anchor_panel(ax, feats, grade, severity, parts):
    """Box plots of the cosine distance to the normality anchor per severity, one colour per method."""
    train, _, test = parts
    levels = np.unique(severity[test])
    for k, (name, f) in enumerate(feats.items()):
        anchor = f[train][grade[train] == 0].mean(axis=0)
        d = C.cosine_to(f[test], anchor)
        pos = levels + (k - (len(feats) - 1) / 2) * 0.35
        box = ax.boxplot([d[severity[test] == v] for v in levels], positions=pos, widths=0.3,
                         patch_artist=True, showfliers=False)
        for patch in box["boxes"]:
            patch.set_facecolor(f"C{k}")
            patch.set_alpha(0.6)
        ax.plot([], [], color=f"C{k}", lw=6, alpha=0.6, label=name)
    ax.set_xticks(levels)
    ax.set_xticklabels([str(v) for v in levels])
    ax.set_xlabel("true severity", fontsize=8)
    ax.set_ylabel("cosine distance to normality anchor", fontsize=8)
    ax.set_title("Distance to the normal class (test set)", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
