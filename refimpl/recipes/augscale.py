"""Augmentation scale for self-supervised pretraining (Cheng et al., arXiv 2501.02451): strong vs weak vs weak+med.

Pipeline (the paper's Sec. 2-3, scaled down, see ``SCALED_DOWN``):

* **DINO** (Caron et al. 2021), the paper's pretraining method, once per
  augmentation preset of its Table 2 (:mod:`refimpl.augment.presets`:
  ``strong``, ``weak``, ``weak+med``): a student (TinyNet + DINO head: MLP
  with batch norm, L2-normalised bottleneck, weight-normalised prototypes)
  sees two global and several local crops of each image
  (:func:`refimpl.augment.multi_crop`); the teacher, an exponential moving
  average of the student (momentum cosine-scheduled to 1), sees the two
  global crops; loss :mod:`refimpl.losses.dino` with its centre (EMA 0.9) and
  the teacher-temperature warm-up 0.04 -> 0.07. No labels are used.
  Every preset starts from the same weights and the same batches of images.
* **random init**: the untrained encoder, the reference for what pretraining adds (its
  pairs are drawn with the weak preset, the same views as the weak model's).

Evaluation on the teacher's encoder (the paper extracts "features using the
DINO teacher model (encoder)"), test subjects only:

* pair-distance separation (Eq. 1-3, Fig. 2a): two views of every test image
  under the preset the model was trained with; positive pairs = the two views
  of one image, negative pairs = views of different images; Euclidean
  distances of the features; the separation score is the AUROC of negative
  against positive distances (:func:`refimpl.metrics.separation_score`);
  ``pixel_separation`` is the same score on the raw pixels of those views
  (what the augmentation alone leaves to separate);
* linear probe on severity (Table 4's AUROC and AUPR): multinomial logistic
  regression (:func:`refimpl.probe.fit_logistic`) on the training subjects'
  features of the un-augmented images, macro one-vs-rest AUROC and AUPR on the
  test subjects.

Data: :func:`data_synth.ordinal_severity` (disc-centred fundus-like images,
six severity levels; every image has the same layout, the "dense
distribution" the paper blames), split by subject. Your own data:
``run(data={"images": (N, C, H, W) float array in [0, 1], "severity": (N,)
int 0..L-1, "subject": (N,) optional group ids})``; H and W must be multiples
of 32 (local crops are half as wide and must be multiples of 16).
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from ..augment import get_preset, multi_crop, two_views
from ..backend import to_numpy
from ..losses import dino
from ..metrics import aupr, auroc, pair_distance_figure, pair_distances, separation_score
from ..model import Sequential, subtree
from . import _common as C
from ._dino import dino_head, ema, teacher_momentum

NAME = "augscale"

#: What each metric of the results table measures, and which way is better (printed under it).
METRICS = {
    "separation": "P(a negative pair's teacher-feature distance > a positive pair's), on the model's own views "
                  "(Fig. 2a; 0.5 = none, higher is better)",
    "pixel_separation": "the same score on the views' raw pixels: what the augmentation leaves to separate "
                        "(context, not a claim)",
    "probe_auroc": "one-vs-rest AUROC of a linear severity probe on the test subjects, averaged (higher is better)",
    "probe_aupr": "one-vs-rest AUPR of the same probe, averaged (higher is better)",
}

#: What the paper used and what this recipe uses instead (written to config.json).
SCALED_DOWN = {
    "data": "synthetic disc-centred fundus-like images (data_synth.ordinal_severity), 32x32 grey, "
            "about 800 unlabelled training images, instead of 1.4 million Moorfields retinal "
            "photographs for pretraining and six labelled public data sets",
    "encoder": "TinyNet, 4 stages of 3x3 convolutions with batch norm, widths 16-32-64-128, randomly "
               "initialised, instead of an ImageNet-initialised ViT",
    "head": "Linear-BN-ReLU-Linear (hidden 256), bottleneck 64, 64 prototypes, instead of a 3-layer "
            "MLP (hidden 2048), bottleneck 256, 65536 prototypes",
    "crops": "2 global crops of 32 px and 4 local crops of 16 px (DINO: 224 and 96 px, 8-10 local crops)",
    "schedule": "400 AdamW steps of 32 images, lr 1e-2 with warm-up and cosine decay, weight decay 0.04 "
                "constant, teacher momentum from 0.99, teacher-temperature warm-up over the first 30% of "
                "the steps; DINO: 100+ epochs, lr 5e-4 x batch / 256, weight decay 0.04 -> 0.4, momentum "
                "from 0.996, warm-up over 30 epochs (a run 1000 times shorter needs larger steps)",
    "evaluation": "linear probe (logistic regression) on frozen teacher features instead of fine-tuning",
}


def default_config(fast: bool = False) -> dict:
    """Every hyperparameter of the recipe (``fast``: the smoke-test sizes)."""
    cfg = {
        "images": 1200, "levels": 6, "size": 32, "split": [0.65, 0.35],
        "presets": ["strong", "weak", "weak+med"],
        "widths": [16, 32, 64, 128], "kernel_size": 3, "batchnorm": True,
        "head_hidden": 256, "bottleneck": 64, "prototypes": 64,
        "images_per_step": 32, "local_crops": 4, "local_size": 16,
        "steps": 400, "lr": 1e-2, "weight_decay": 0.04, "warmup_steps": 40,
        "student_temp": 0.1, "teacher_temp": [0.04, 0.07], "teacher_temp_warmup": 0.3,
        "teacher_momentum": 0.99, "center_momentum": 0.9,
        "probe_l2": 1e-2,
    }
    if fast:
        cfg.update(images=240, steps=12, warmup_steps=2, local_crops=2)
    return cfg


def _load(data, cfg, seed):
    """``(images, severity, subject)`` from the generator or the user's arrays."""
    if data is None:
        from data_synth import ordinal_severity

        d = ordinal_severity(cfg["images"], levels=cfg["levels"], size=cfg["size"], seed=C.rng_for(seed, "data"))
        return d.images, d.severity, d.subject
    return C.graded_images(data, severity_min=None)


def network(cfg: dict, channels: int = 1) -> Sequential:
    """The encoder (TinyNet) whose teacher parameters ``params_teacher_<preset>.npz`` hold.

    >>> network(default_config(fast=True)).layers[0][0]
    'conv1'
    """
    return C.encoder_from(cfg, channels)


def _student(cfg, channels):
    """Student / teacher: ``f`` (the encoder) then ``head`` (DINO head)."""
    head = dino_head(cfg["widths"][-1], hidden=cfg["head_hidden"], bottleneck=cfg["bottleneck"],
                     prototypes=cfg["prototypes"])
    return Sequential([("f", network(cfg, channels)), ("head", head)])


def _pretrain(s: C.Context, net, init, preset, images):
    """DINO on ``images`` (no labels) under ``preset``; returns (TrainResult, teacher params, teacher state).

    The training state carries, besides the student's batch-norm statistics,
    the teacher (parameters and statistics) and DINO's centre; the teacher is
    moved towards the student at the start of each step (and once after the
    last), i.e. after every optimiser step.
    """
    cfg, xp = s.cfg, s.xp
    b, steps = cfg["images_per_step"], cfg["steps"]
    batches = s.rng("batches")  # the same images for every preset
    crops = s.rng("crops", preset.name)
    warmup = max(1, round(cfg["teacher_temp_warmup"] * steps))
    start, end = cfg["teacher_temp"]
    size = images.shape[-2:]
    local = (cfg["local_size"], cfg["local_size"])

    def step(p, state, k):
        teacher = ema(state["teacher"], p, teacher_momentum(k, steps, cfg["teacher_momentum"]))
        x = s.device(images[C.random_batch(batches, len(images), b)])
        globals_, locals_ = multi_crop(x, preset, crops, n_local=cfg["local_crops"], global_size=size,
                                       local_size=local)
        views = [xp.concat(globals_), xp.concat(locals_)]  # (2B, C, H, W), (n_local B, C, h, w)
        t_out, t_cache = net.forward(teacher, views[0], train=True, state=state["teacher_state"],
                                     input_grad=False)  # batch statistics, no gradient: the official teacher
        student_state, outs, caches = state["student"], [], []
        for v in views:
            out, cache = net.forward(p, v, train=True, state=student_state, input_grad=False)
            student_state = net.new_state(cache)
            outs.append(out)
            caches.append(cache)
        temp = dino.teacher_temperature(k, warmup, start, end)
        value, cache = dino.forward(xp.concat(outs), t_out, state["center"], student_temp=cfg["student_temp"],
                                    teacher_temp=temp)
        dout = dino.backward(1.0, cache)[0]
        g_global, _ = net.backward(dout[:2 * b], caches[0])
        g_local, _ = net.backward(dout[2 * b:], caches[1])
        grads = {name: g_global[name] + g_local[name] for name in g_global}
        new_state = {"student": student_state, "teacher": teacher, "teacher_state": net.new_state(t_cache),
                     "center": dino.update_center(state["center"], t_out, cfg["center_momentum"])}
        return value, grads, new_state

    state = {"student": net.init_state(s.dtype, xp=xp), "teacher": dict(init),
             "teacher_state": net.init_state(s.dtype, xp=xp),
             "center": C.to_device(np.zeros((1, cfg["prototypes"])), xp, s.dtype)}
    result = C.train(step, init, steps=steps, lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                     warmup=cfg["warmup_steps"], state=state, desc=f"DINO {preset.name}",
                     images_per_step=b * (2 + cfg["local_crops"]), progress=s.progress)  # crops the student sees
    teacher = ema(result.state["teacher"], result.params, teacher_momentum(steps, steps, cfg["teacher_momentum"]))
    return result, teacher, result.state["teacher_state"]


def _evaluate(s: C.Context, encoder, params, state, images, severity, parts, preset):
    """Separation of positive / negative pairs under ``preset`` and the linear probe on severity."""
    from ..probe import fit_logistic

    cfg = s.cfg
    train, test = parts
    feats = C.embed(encoder, params, images, state=state, xp=s.xp, dtype=s.dtype)
    probe = fit_logistic(feats[train], severity[train], l2=cfg["probe_l2"], n_classes=cfg["levels"])
    proba = probe.predict_proba(feats[test])  # (N_test, K)
    present = [c for c in range(proba.shape[1]) if 0 < np.sum(severity[test] == c) < len(test)]
    metrics = {"probe_auroc": float(np.mean([auroc(proba[:, c], severity[test] == c) for c in present])),
               "probe_aupr": float(np.mean([aupr(proba[:, c], severity[test] == c) for c in present]))}
    v1, v2 = two_views(s.device(images[test]), preset, s.rng("views", preset.name))
    pos_px, neg_px = pair_distances(v1, v2)
    f1 = C.embed(encoder, params, _host(v1), state=state, xp=s.xp, dtype=s.dtype)
    f2 = C.embed(encoder, params, _host(v2), state=state, xp=s.xp, dtype=s.dtype)
    pairs = pair_distances(f1, f2)
    metrics = {"separation": separation_score(*pairs),
               "pixel_separation": separation_score(_host(pos_px), _host(neg_px)), **metrics}
    return metrics, feats, pairs


def _host(a):
    return np.asarray(to_numpy(a), dtype=np.float64)


def claims_from(methods: dict, cfg: dict) -> list:
    """The paper's claims, computed from the metrics of every method (``metrics.json["methods"]``)."""
    claims = [C.compare(CLAIMS[0], methods, "separation", "weak", "strong"),
              C.compare(CLAIMS[1], methods, "probe_auroc", "weak", "strong"),
              C.compare(CLAIMS[2], methods, "probe_aupr", "weak", "strong")]
    if "weak+med" in methods:
        claims.append(C.compare(CLAIMS[3], methods, "probe_auroc", "weak", "weak+med"))
    return claims


#: The claims (Fig. 2a, Table 4).
CLAIMS = (
    "Weak augmentation separates positive from negative pairs better than strong (Fig. 2a)",
    "A linear probe on weak-pretrained features has a higher severity AUROC than on strong-pretrained "
    "ones (Table 4)",
    "... and a higher severity AUPR (Table 4)",
    "Adding the medical augmentations to weak lowers the probe AUROC (Table 4)",
)

#: Why a claim may not hold on a seed (``refimpl run claims`` prints these).
CLAIM_NOTES = {
    CLAIMS[0]: "Separation is measured, as in the paper, on each model's own views, which are closer in "
               "pixels under weak augmentation too (pixel_separation); it fails only if strong pretraining "
               "made the features more invariant to its crops than weak pretraining to its own.",
    CLAIMS[1]: "DINO learns little in 400 steps on 800 images: the weak-pretrained features gain a few "
               "hundredths of AUROC over random init, about the noise of a probe scored on ~400 test "
               "images, so a seed can reverse the order. Under strong augmentation the loss drifts to "
               "ln K (the output collapses to uniform, training.png): the paper's 'difficult to converge'.",
    CLAIMS[2]: "As the AUROC claim; AUPR averages six one-vs-rest curves with 50-100 positives each on the "
               "test subjects and is the noisier of the two.",
    CLAIMS[3]: "Blur (p = 0.1) rarely hits; the noise and bias field act on every view. When the weak run "
               "itself learns little, the two are within the probe's noise.",
}


def run(*, seed=0, fast=False, backend="numpy", dtype="float32", out_dir=None, data=None, progress=True,
        **overrides) -> dict:
    """Pretrain DINO under each preset, evaluate, check the paper's claims (module docstring).

    Returns the ``metrics.json`` dictionary; writes it with ``config.json``,
    figures and the teachers' parameters to ``out_dir`` when given.
    """
    s = C.Context.make(default_config(fast), overrides, seed=seed, backend=backend, dtype=dtype, progress=progress)
    cfg, seed = s.cfg, s.seed
    for name in ("strong", "weak"):
        if name not in cfg["presets"]:
            raise ValueError(f"presets must include 'strong' and 'weak' (the claims compare them), "
                             f"got {cfg['presets']}")
    presets = {name: get_preset(name) for name in cfg["presets"]}
    images, severity, subject = _load(data, cfg, seed)
    if data is not None:
        cfg = {**cfg, "levels": int(severity.max()) + 1}
        s = dataclasses.replace(s, cfg=cfg)
    parts = C.group_split(subject, cfg["split"], rng=s.rng("split"))

    net = _student(cfg, images.shape[1])
    encoder = net.layers[0][1]
    init = net.init(s.rng("init"), s.dtype, xp=s.xp)
    runs, teachers = {}, {}
    for name, preset in presets.items():
        runs[name], params, state = _pretrain(s, net, init, preset, images[parts[0]])
        teachers[name] = (subtree(params, "f"), subtree(state, "f"))
    teachers["random init"] = (subtree(init, "f"), subtree(net.init_state(s.dtype, xp=s.xp), "f"))
    methods, feats, pairs = {}, {}, {}
    for name, (params, state) in teachers.items():
        views = presets.get(name, presets["weak"])  # random init: the weak model's views
        methods[name], feats[name], pairs[name] = _evaluate(s, encoder, params, state, images, severity, parts,
                                                            views)
    result = C.result_dict(NAME, seed, methods, claims_from(methods, cfg))
    if out_dir is not None:
        config = C.config_record(NAME, s, fast=fast, backend=backend, scaled_down=SCALED_DOWN,
                                 data="data_synth.ordinal_severity" if data is None else "user arrays")
        config["presets"] = {n: dataclasses.asdict(p) for n, p in presets.items()}
        C.write_outputs(out_dir, result, config, {f"teacher_{C.file_stem(n)}": t for n, t in teachers.items()})
        _figures(out_dir, s, images, severity, parts, presets, methods, feats, pairs, runs)
    return result


def _figures(out_dir, s, images, severity, parts, presets, methods, feats, pairs, runs):
    test = parts[1]
    pixels = {n: methods[n]["pixel_separation"] for n in pairs}
    pair_distance_figure({f"{n} (the same score on its views' raw pixels: {pixels[n]:.3f})": pairs[n]
                          for n in pairs},
                         os.path.join(out_dir, "pair_distances.png"),
                         title="Teacher-feature distances of positive vs negative pairs\n"
                               "(Fig. 2a; random init on the weak views)")
    fig, axes = C.new_figure(len(feats), ncols=len(feats), panel=(3.3, 3.1))
    for ax, (name, f) in zip(axes, feats.items()):
        C.pca_panel(ax, f[test], severity[test], title=f"{name}: probe AUROC {methods[name]['probe_auroc']:.3f}",
                    label="severity")
    C.save_figure(fig, os.path.join(out_dir, "representations.png"),
                  title="Teacher encoder representations of the test set, PCA of unit vectors")
    _crops_figure(os.path.join(out_dir, "augmentations.png"), s, images[test[:4]], presets)
    fig, axes = C.new_figure(len(runs), ncols=len(runs), panel=(3.4, 2.6))
    for ax, (name, r) in zip(axes, runs.items()):
        C.curves_panel(ax, r.losses, title=f"DINO {name}")
        ax.axhline(math.log(s.cfg["prototypes"]), color="C3", ls="--", lw=0.9, label="ln K (uniform output)")
        ax.legend(fontsize=6, loc="lower right")
    for ax in axes:  # one loss: one scale
        ax.set_ylim(min(a.get_ylim()[0] for a in axes), max(a.get_ylim()[1] for a in axes))
    C.save_figure(fig, os.path.join(out_dir, "training.png"),
                  title="DINO loss (teacher-student cross-entropy); stuck at ln K = the output collapsed to uniform")


def _crops_figure(path, s, images, presets):
    """Each image, its two global and first two local crops under each preset."""
    columns = ["image", "global 1", "global 2", "local 1", "local 2"]
    fig, axes = C.new_figure(len(images) * len(presets) * len(columns), ncols=len(columns) * len(presets),
                             panel=(1.1, 1.15))
    cells = iter(axes)
    for row in range(len(images)):
        for name, preset in presets.items():
            g, l = multi_crop(s.device(images[row:row + 1]), preset, s.rng("crop figure", name, row),
                              n_local=2, local_size=(s.cfg["local_size"],) * 2)
            for column, view in zip(columns, [images[row:row + 1], *g, *l]):
                ax = next(cells)
                ax.imshow(_host(view)[0, 0], cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"{name}\n{column}" if column == "image" else column, fontsize=7)
    C.save_figure(fig, path, title="Views drawn by each preset (global crops 32 px, local crops 16 px)")
