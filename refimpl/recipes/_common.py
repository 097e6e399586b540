"""Pieces shared by the training recipes: seeds, splits, batch samplers, the
training loop, embedding extraction, figures, claims and the output folder.

Everything here is general enough for classification (ConPro), pretraining
with a frozen-feature probe (WSP), regression (AdaCon) and self-supervised
(augmentation-scale) recipes. Host-side bookkeeping (samplers, splits,
figures, JSON) is NumPy; the networks run on the recipe's backend.

Reproducibility: every random draw of a recipe comes from :func:`rng_for`
(a generator keyed by the run's seed and a name, so adding a method does not
shift the numbers of another), and :func:`write_json` writes floats with
``repr`` precision, so one seed gives the same ``metrics.json`` bit for bit.

>>> gen = rng_for(0, "split")
>>> train, val, test = group_split(np.repeat(np.arange(10), 2), (0.7, 0.15, 0.15), rng=gen)
>>> len(train), len(val), len(test)
(14, 2, 4)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
import zlib

import numpy as np

from .. import __version__, backend
from ..optim import AdamW, cosine_lr

# ---------------------------------------------------------------- configuration and seeds


def rng_for(seed: int, *keys) -> np.random.Generator:
    """A generator for ``(seed, *keys)``, independent of every other key.

    Keys are hashed with CRC-32 (stable across Python runs, unlike ``hash``)
    into a :class:`numpy.random.SeedSequence`, so each method or phase of a
    recipe draws its own stream and reordering them changes nothing.

    >>> a, b = rng_for(3, "simclr").random(), rng_for(3, "simclr").random()
    >>> a == b, a == rng_for(3, "supcon").random()
    (True, False)
    """
    seed = check_seed(seed)
    words = [seed] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def check_seed(seed) -> int:
    """A non-negative Python int (not bool)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def resolve_config(defaults: dict, overrides: dict) -> dict:
    """``defaults`` updated with ``overrides``; unknown names raise TypeError.

    >>> resolve_config({"steps": 10, "lr": 0.1}, {"lr": 0.2})
    {'steps': 10, 'lr': 0.2}
    >>> resolve_config({"steps": 10}, {"step": 5})
    Traceback (most recent call last):
    ...
    TypeError: unknown hyperparameter(s) ['step']; this recipe has ['steps']
    """
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise TypeError(f"unknown hyperparameter(s) {unknown}; this recipe has {sorted(defaults)}")
    return {**defaults, **overrides}


def namespace_for(name: str):
    """The array namespace of a backend name: ``"numpy"`` or ``"cupy"``."""
    if name == "numpy":
        return np
    if name == "cupy":
        return backend.cupy()
    raise ValueError(f"backend must be 'numpy' or 'cupy', got {name!r}")


def check_dtype(dtype: str) -> str:
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dtype


def versions() -> dict:
    """Versions of everything that can change a number: refimpl, Python, NumPy, SciPy."""
    import scipy

    return {"refimpl": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__}


# ---------------------------------------------------------------- splits and batch samplers


def group_split(groups, fractions, *, rng) -> tuple:
    """Indices of each part of a split by *group* (subject, patient): no group in two parts.

    The unique groups are shuffled and cut at the cumulative ``fractions``
    (rounded to whole groups, every part at least one group when there are
    enough); all images of a group go to its part. Returns one sorted int
    index array per fraction.
    """
    groups = np.asarray(groups)
    fractions = np.asarray(fractions, dtype=np.float64)
    if groups.ndim != 1 or len(groups) == 0:
        raise ValueError(f"groups must be a non-empty 1-D array, got shape {groups.shape}")
    if fractions.ndim != 1 or np.any(fractions <= 0) or not math.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions.tolist()}")
    unique = rng.permutation(np.unique(groups))
    if len(unique) < len(fractions):
        raise ValueError(f"groups must have at least {len(fractions)} distinct values to split, "
                         f"got {len(unique)}")
    cuts = np.round(np.cumsum(fractions)[:-1] * len(unique)).astype(int)
    cuts = np.clip(cuts, np.arange(1, len(cuts) + 1), len(unique) - np.arange(len(cuts), 0, -1))
    part_of = np.empty(len(unique), dtype=int)
    for k, part in enumerate(np.split(np.arange(len(unique)), cuts)):
        part_of[part] = k
    lookup = dict(zip(unique.tolist(), part_of.tolist()))
    member = np.array([lookup[g] for g in groups.tolist()])
    return tuple(np.flatnonzero(member == k) for k in range(len(fractions)))


def random_batch(rng, n: int, batch_size: int) -> np.ndarray:
    """``batch_size`` indices of ``range(n)``, without replacement when ``n`` allows it."""
    return rng.choice(n, size=batch_size, replace=batch_size > n)


def balanced_batch(rng, labels, batch_size: int) -> np.ndarray:
    """``batch_size`` indices with (nearly) the same number from every class.

    Each class gets ``batch_size // K`` draws, the remainder going to randomly
    chosen classes; within a class, members are drawn without replacement
    when there are enough of them, with replacement otherwise. The batch is
    shuffled.

    >>> idx = balanced_batch(np.random.default_rng(0), np.array([0] * 90 + [1] * 10), 20)
    >>> np.bincount(np.array([0] * 90 + [1] * 10)[idx]).tolist()
    [10, 10]
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    counts = np.full(len(classes), batch_size // len(classes))
    counts[rng.permutation(len(classes))[:batch_size % len(classes)]] += 1
    picks = []
    for c, k in zip(classes, counts):  # one draw per class (K is small)
        members = np.flatnonzero(labels == c)
        picks.append(rng.choice(members, size=k, replace=k > len(members)))
    return rng.permutation(np.concatenate(picks))


def one_per_group_batch(rng, groups, labels, batch_size: int) -> np.ndarray:
    """WSP's sampler: ``batch_size`` groups, class-balanced, then one random item of each.

    Sarfati et al. (MICCAI 2023), Sec. 3.2: "We first sample N patients ... in
    a balanced way with respect to the radiological/histological classes ...
    Then, we randomly select only one slice per subject." ``labels`` are per
    item and constant within a group. Groups are drawn without replacement
    within a class while the class has enough of them.

    >>> groups = np.repeat(np.arange(8), 5)
    >>> idx = one_per_group_batch(np.random.default_rng(0), groups, groups % 2, 6)
    >>> len(np.unique(groups[idx])), np.bincount((groups % 2)[idx]).tolist()
    (6, [3, 3])
    """
    groups, labels = np.asarray(groups), np.asarray(labels)
    order = np.argsort(groups, kind="stable")
    unique, first, counts = np.unique(groups[order], return_index=True, return_counts=True)
    group_label = labels[order][first]
    chosen = balanced_batch(rng, group_label, batch_size)  # (B,) indices into unique
    offset = np.floor(rng.random(len(chosen)) * counts[chosen]).astype(int)
    return order[first[chosen] + offset]


def sample_pairs(rng, labels, n_pairs: int, *, same_fraction: float = 0.5):
    """Pairs ``(i, j, same)``: a ``same_fraction`` of same-label pairs, the rest different.

    First members are drawn class-balanced (:func:`balanced_batch`); a
    partner of the same label, or of a different label, is then drawn
    uniformly among the candidates (never the item itself for a same pair
    when its class has another member).

    >>> labels = np.array([0, 0, 0, 1, 1, 2])
    >>> i, j, same = sample_pairs(np.random.default_rng(0), labels, 8)
    >>> bool(np.all((labels[i] == labels[j]) == same)), int(same.sum())
    (True, 4)
    """
    labels = np.asarray(labels)
    n = len(labels)
    i = balanced_batch(rng, labels, n_pairs)
    same = np.zeros(n_pairs, dtype=bool)
    same[rng.permutation(n_pairs)[:round(same_fraction * n_pairs)]] = True
    order = np.argsort(labels, kind="stable")  # classes are contiguous blocks in this order
    sorted_labels = labels[order]
    lo = np.searchsorted(sorted_labels, labels[i], side="left")  # (P,) start of i's block
    size = np.searchsorted(sorted_labels, labels[i], side="right") - lo  # (P,) its length
    if np.any(~same & (size == n)):
        raise ValueError("labels must hold at least two classes to draw different-label pairs")
    rank = np.empty(n, dtype=int)
    rank[order] = np.arange(n) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    u = rng.random(n_pairs)
    # same: uniform over the block without i itself (i only when it is alone in its class)
    own = np.floor(u * np.maximum(size - 1, 1)).astype(int)
    own += (own >= rank[i]) & (size > 1)
    # different: uniform over the n - size positions outside the block
    other = np.floor(u * np.maximum(n - size, 1)).astype(int)
    other += size * (other >= lo)
    j = order[np.where(same, lo + own, np.minimum(other, n - 1))]
    return i, j, labels[i] == labels[j]


# ---------------------------------------------------------------- networks, training, embeddings


def graded_images(data, *, severity_min: int = 0):
    """The user's ``data`` for the graded-image recipes: ``(images, severity, subject)`` as NumPy, checked.

    ``images`` (N, C, H, W) in [0, 1] with H and W multiples of 32 (the
    encoder halves them five times), ``severity`` (N,) integers whose smallest
    value is ``severity_min`` (0 = normal) or more when ``severity_min`` is
    None, ``subject`` (N,) optional group ids (default: one per image).
    """
    images = np.asarray(data["images"], dtype=np.float32)
    severity = np.asarray(data["severity"])
    subject = np.asarray(data.get("subject", np.arange(len(images))))
    if images.ndim != 4 or images.shape[-1] % 32 or images.shape[-2] % 32:
        raise ValueError(f"data['images'] must have shape (N, C, H, W) with H, W multiples of 32, "
                         f"got {images.shape}")
    if severity.shape != (len(images),) or not np.issubdtype(severity.dtype, np.integer) or severity.min() < 0:
        raise ValueError(f"data['severity'] must be ({len(images)},) integers >= 0")
    if severity_min is not None and severity.min() != severity_min:
        raise ValueError(f"data['severity'] must include {severity_min} (0 = normal)")
    if subject.shape != (len(images),):
        raise ValueError(f"data['subject'] must have shape ({len(images)},), got {subject.shape}")
    return images, severity, subject


def to_device(x, xp, dtype):
    """Host array ``x`` on the namespace ``xp``; floating arrays cast to ``dtype``, integer and
    boolean ones (labels, masks) keep theirs."""
    x = np.asarray(x)
    return backend.asarray(x, xp=xp, dtype=dtype if np.issubdtype(x.dtype, np.floating) else None)


@dataclasses.dataclass(frozen=True)
class Context:
    """What every part of a run needs: the resolved config, seed, backend and dtype.

    :meth:`device` moves host arrays to the run's backend; :meth:`augment`
    draws one augmented view (:func:`refimpl.augment.augment_view`) of host
    images at their own size.
    """

    cfg: dict
    seed: int
    xp: object
    dtype: str
    progress: bool = True

    @classmethod
    def make(cls, defaults: dict, overrides: dict, *, seed, backend, dtype, progress) -> "Context":
        """Validate the run's arguments and resolve its config."""
        return cls(resolve_config(defaults, overrides), check_seed(seed), namespace_for(backend),
                   check_dtype(dtype), bool(progress))

    def device(self, x):
        return to_device(x, self.xp, self.dtype)

    def augment(self, images, rng, preset):
        from ..augment import augment_view

        return augment_view(self.device(images), preset, rng, size=tuple(images.shape[-2:]))

    def rng(self, *keys) -> np.random.Generator:
        return rng_for(self.seed, *keys)


def encoder_from(cfg: dict, channels: int):
    """TinyNet as a recipe's config sets it (``widths``, ``kernel_size``, ``batchnorm``)."""
    from ..model import tinynet

    return tinynet(channels, widths=tuple(cfg["widths"]), kernel_size=cfg["kernel_size"],
                   batchnorm=cfg["batchnorm"])


def network_step(net, params, x, loss, *, state=None):
    """Forward ``net`` on ``x`` (training mode), ``loss(out) -> (value, dout)``, backward.

    Returns ``(value, grads, new_state)``. The image gradient is not computed
    (``input_grad=False``).
    """
    out, cache = net.forward(params, x, train=True, state=state, input_grad=False)
    value, dout = loss(out)
    grads, _ = net.backward(dout, cache)
    return value, grads, net.new_state(cache)


def with_grad(module, *args, **kwargs):
    """``loss(out)`` for :func:`network_step` from a loss module whose first input is ``out``.

    >>> from refimpl.losses import supcon
    >>> loss = with_grad(supcon, labels=np.array([0, 0, 1, 1]))
    >>> value, dz = loss(np.eye(4))
    >>> dz.shape
    (4, 4)
    """
    def loss(out):
        value, cache = module.forward(out, *args, **kwargs)
        return value, module.backward(1.0, cache)[0]
    return loss


def ntxent(temperature: float):
    """``loss(out)`` of SimCLR's NT-Xent for ``out`` (2N, D) stacked view-major."""
    from ..losses import supcon

    def loss(out):
        value, cache = supcon.ntxent_forward(out, temperature=temperature)
        return value, supcon.ntxent_backward(1.0, cache)[0]
    return loss


@dataclasses.dataclass
class TrainResult:
    """Parameters and state after training, and the loss of every step."""

    params: dict
    state: dict
    losses: list


def train(step, params, state=None, *, steps: int, lr: float, weight_decay: float = 1e-4, warmup: int = 0,
          desc: str = "train", images_per_step: int = 1, progress: bool = True,
          optimizer=None) -> TrainResult:
    """Run ``steps`` optimiser steps; ``step(params, state, k) -> (loss, grads, new_state)``.

    ``state`` (batch-norm running statistics, :meth:`refimpl.model.Sequential.init_state`)
    is carried from step to step and returned with the parameters.

    AdamW (the WSP paper's optimiser, lr and weight decay 1e-4 there) with a
    cosine schedule and linear warm-up (:func:`refimpl.optim.cosine_lr`) unless
    ``optimizer`` is given. A tqdm bar (stderr, only when it is a terminal:
    a log file gets no bars) shows the loss and the images per second; the
    losses are returned, the timings are not (they are not reproducible).
    """
    from tqdm import tqdm  # text bars everywhere (tqdm.auto wants ipywidgets in notebooks)

    optimizer = AdamW(weight_decay=weight_decay) if optimizer is None else optimizer
    opt_state = optimizer.init_state(params)
    state = {} if state is None else state
    losses = []
    bar = tqdm(total=steps * images_per_step, desc=desc, unit="img", unit_scale=True,
               disable=None if progress else True, leave=False, dynamic_ncols=True)  # None: a terminal only
    with bar:
        for k in range(steps):
            value, grads, state = step(params, state, k)
            rate = cosine_lr(k, base_lr=lr, total_steps=steps, warmup_steps=warmup)
            params, opt_state = optimizer.step(params, grads, opt_state, lr=rate)
            losses.append(float(value))
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"{desc}: loss is {losses[-1]} at step {k}; lower the learning rate")
            bar.update(images_per_step)
            if k % 10 == 0 or k == steps - 1:
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    return TrainResult(params, state, losses)


def embed(net, params, images, *, state=None, xp=np, dtype="float32", batch_size: int = 256) -> np.ndarray:
    """Outputs of ``net`` (evaluation mode) on host ``images``, in batches; float64 host (N, D)."""
    parts = []
    for start in range(0, len(images), batch_size):
        x = to_device(images[start:start + batch_size], xp, dtype)
        out, _ = net.forward(params, x, train=False, state=state, input_grad=False)
        parts.append(backend.to_numpy(out).astype(np.float64))
    return np.concatenate(parts)


def cosine_to(x, anchor) -> np.ndarray:
    """Cosine distance ``1 - cos(x_i, anchor)`` of each row of ``x`` (N, D) to ``anchor`` (D,)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.asarray(anchor, dtype=np.float64)
    return 1.0 - (x @ a) / (np.linalg.norm(x, axis=1) * np.linalg.norm(a))


# ---------------------------------------------------------------- claims and the printed table


def claim(text: str, holds: bool, evidence: str, effect: float) -> dict:
    """One entry of ``metrics.json["claims"]``; ``effect`` > 0 means in the claim's direction.

    ``holds`` is this seed's sign only; ``multi_seed`` is the claim's verdict
    over seeds from the multi-seed file (:func:`refimpl.recipes.claims.multi_seed`,
    None when the file has no such claim).
    """
    from .claims import multi_seed

    return {"claim": text, "holds": bool(holds), "evidence": evidence, "effect": _finite(effect),
            "multi_seed": multi_seed(text)}


def compare(text: str, methods: dict, metric: str, better: str, worse: str, *,
            higher_is_better: bool = True) -> dict:
    """The claim "``better`` beats ``worse`` on ``metric``", computed from the metrics.

    ``effect`` is the difference in the claim's direction (positive when it
    holds); the evidence names both values.

    >>> m = {"a": {"f1": 0.6}, "b": {"f1": 0.5}}
    >>> c = compare("a beats b", m, "f1", "a", "b")
    >>> c["holds"], c["evidence"]
    (True, 'f1: a 0.6000 vs b 0.5000 (difference +0.1000)')
    """
    a, b = methods[better][metric], methods[worse][metric]
    effect = (a - b) if higher_is_better else (b - a)
    evidence = f"{metric}: {better} {a:.4f} vs {worse} {b:.4f} (difference {a - b:+.4f})"
    return claim(text, effect > 0, evidence, effect)


def results_table(methods: dict, *, digits: int = 3, legend: dict | None = None) -> str:
    """A plain-text table, one row per method, one column per metric (first-seen order).

    ``legend`` (``{metric: what it measures and which way is better}``, a
    recipe's ``METRICS``) adds one line per metric under the table.

    >>> print(results_table({"a": {"f1": 0.5, "mae": 1.25}, "b": {"f1": 0.75}}))
    method    f1    mae
    a      0.500  1.250
    b      0.750      -
    >>> print(results_table({"a": {"f1": 0.5}}, legend={"f1": "F1 score (higher is better)"}))
    method    f1
    a      0.500
    <BLANKLINE>
      f1: F1 score (higher is better)
    """
    columns = list(dict.fromkeys(k for row in methods.values() for k in row))
    cells = [["method"] + columns]
    for name, row in methods.items():
        cells.append([name] + [("-" if k not in row else f"{row[k]:.{digits}f}") for k in columns])
    widths = [max(len(r[c]) for r in cells) for c in range(len(cells[0]))]
    lines = [" ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines = [line.rstrip() for line in lines]
    if legend:
        lines.append("")
        lines += [f"  {k}: {legend[k]}" for k in columns if k in legend]
    return "\n".join(lines)


def claims_text(claims: list) -> str:
    """The claims as printed by ``refimpl run``: the multi-seed verdict, then this seed's effect.

    A single seed's sign is not a finding (it changes with the seed and the
    BLAS kernel): the verdict shown is the one over seeds in ``docs/claims.md``,
    labelled as such, and this run's effect is printed beside it.

    >>> c = {"claim": "a beats b", "holds": True, "effect": 0.1, "evidence": "f1: a 0.6 vs b 0.5",
    ...      "multi_seed": {"verdict": "holds", "n": 5, "mean": 0.08, "low": 0.02, "high": 0.14,
    ...                     "level": 0.95, "fast": False}}
    >>> print(claims_text([c]))  # doctest: +NORMALIZE_WHITESPACE
    Claims. Verdict: over seeds, from docs/claims.md (holds / fails / inconclusive: the 95% interval
    of the mean effect is above 0 / below 0 / contains 0). This seed: its effect, the margin in the
    claim's direction (> 0 agrees with the paper); it varies with the seed and the machine.
    [multi-seed verdict: holds] a beats b
        over 5 seeds: mean effect +0.0800, 95% interval [+0.0200, +0.1400]
        this seed: effect +0.1000 (f1: a 0.6 vs b 0.5)
    """
    lines = ["Claims. Verdict: over seeds, from docs/claims.md (holds / fails / inconclusive: the 95% interval",
             "of the mean effect is above 0 / below 0 / contains 0). This seed: its effect, the margin in the",
             "claim's direction (> 0 agrees with the paper); it varies with the seed and the machine."]
    for c in claims:
        ms = c.get("multi_seed")
        effect = "n/a" if c["effect"] is None else f"{c['effect']:+.4f}"
        if ms is None:
            lines.append(f"[multi-seed verdict: none recorded] {c['claim']}")
        elif ms["mean"] is None:
            lines.append(f"[multi-seed verdict: n/a, {ms['n']} seed(s) in docs/claims.md] {c['claim']}")
        else:
            config = ", fast configuration" if ms.get("fast") else ""
            lines += [f"[multi-seed verdict: {ms['verdict']}] {c['claim']}",
                      f"    over {ms['n']} seeds{config}: mean effect {ms['mean']:+.4f}, "
                      f"{round(100 * ms['level'])}% interval [{ms['low']:+.4f}, {ms['high']:+.4f}]"]
        lines.append(f"    this seed: effect {effect} ({c['evidence']})")
    return "\n".join(lines)


# ---------------------------------------------------------------- output folder


def _finite(value):
    """A float, or None for NaN / infinity (JSON has no such numbers)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _finite(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def write_json(path, obj) -> str:
    """Indented JSON in the dictionaries' own order (methods as the recipe lists them); NumPy
    scalars converted, NaN and infinity written as null."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_jsonable(obj), f, indent=2, allow_nan=False)
        f.write("\n")
    return str(path)


def result_dict(recipe: str, seed: int, methods: dict, claims: list) -> dict:
    """The ``metrics.json`` dictionary, floats made JSON-safe, with the numeric fingerprint of the run
    (:func:`refimpl.fingerprint.fingerprint`: which BLAS, kernel and threads made these numbers)."""
    from ..fingerprint import fingerprint

    return _jsonable({"recipe": recipe, "seed": seed, "methods": methods, "claims": claims,
                      "fingerprint": fingerprint()})


def config_record(recipe: str, ctx: Context, *, fast: bool, backend: str, data: str,
                  scaled_down: dict) -> dict:
    """The ``config.json`` dictionary: every hyperparameter, the seed, what was scaled down, versions
    and the numeric fingerprint."""
    from ..fingerprint import fingerprint

    return {"recipe": recipe, "seed": ctx.seed, "fast": bool(fast), "backend": backend, "dtype": ctx.dtype,
            "data": data, "hyperparameters": ctx.cfg, "scaled_down": scaled_down, "versions": versions(),
            "fingerprint": fingerprint()}


def file_stem(name: str) -> str:
    """A method name as a file name: ``"ConPro (n=20)"`` -> ``"ConPro_n20"``.

    >>> file_stem("ConPro (n=20)"), file_stem("random init")
    ('ConPro_n20', 'random_init')
    """
    out = "".join(c if c.isalnum() or c in "-_" else ("_" if c in " (" else "") for c in name.strip())
    return "_".join(part for part in out.split("_") if part)


def write_outputs(out_dir, result: dict, config: dict, trained: dict) -> list:
    """Write ``metrics.json``, ``config.json`` and ``<name>.npz`` per trained network.

    ``trained``: ``{name: (params, state)}`` (saved by
    :func:`refimpl.model.save_npz`). Returns the written paths; figures are
    written by the recipe beside them.
    """
    from ..model import save_npz

    os.makedirs(out_dir, exist_ok=True)
    paths = [write_json(os.path.join(out_dir, "metrics.json"), result),
             write_json(os.path.join(out_dir, "config.json"), config)]
    for name, (params, state) in trained.items():
        path = os.path.join(out_dir, f"params_{name}.npz")
        save_npz(path, params, state)
        paths.append(path)
    return paths


class Stopwatch:
    """Wall-clock seconds since creation, for the printed summary only (never in metrics.json)."""

    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start


# ---------------------------------------------------------------- figures


def new_figure(n_panels: int, *, ncols: int = 3, panel=(3.6, 3.2), layout: str | None = None):
    """A matplotlib Figure on an Agg canvas (no pyplot state) and a flat list of its axes.

    ``layout="constrained"`` for figures with colour bars beside several panels
    (:func:`save_figure` then leaves the layout to it).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(ncols, n_panels)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def save_figure(fig, path, *, title: str | None = None) -> str:
    if title:
        fig.suptitle(title, fontsize=11)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    return str(path)


def pca_2d(x) -> np.ndarray:
    """Projection of the rows of ``x`` (N, D) on their first two principal axes, (N, 2).

    Each axis's sign is fixed so that its largest loading is positive (a
    deterministic picture for a given input).
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # (min(N, D), D)
    axes = vt[:2]
    signs = np.sign(axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)])
    proj = centred @ (axes * signs[:, None]).T  # (N, D) @ (D, 2)
    if proj.shape[1] < 2:
        proj = np.concatenate([proj, np.zeros((len(proj), 2 - proj.shape[1]))], axis=1)
    return proj


def unit_rows(x) -> np.ndarray:
    """Rows scaled to unit length (the geometry the contrastive losses see)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


#: One marker per ordinal level (with the colour, so that neighbouring levels differ in two ways).
LEVEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pca_panel(ax, emb, values, *, title: str, label: str, discrete: bool = True, cmap: str = "viridis"):
    """Scatter of the unit-normalised embeddings projected by PCA, coloured by ``values``.

    Discrete values (ordinal levels) get one colour of an ordered map and
    one marker each, and a legend (up to 8 levels: colour alone does not tell
    neighbouring levels apart); continuous ones a colour bar.
    """
    xy = pca_2d(unit_rows(emb))
    values = np.asarray(values)
    if discrete:
        levels = np.unique(values)
        for k, (level, colour) in enumerate(zip(levels, level_colours(len(levels)))):
            m = values == level
            ax.scatter(xy[m, 0], xy[m, 1], s=12, color=colour, marker=LEVEL_MARKERS[k % len(LEVEL_MARKERS)],
                       alpha=0.8, linewidths=0, label=f"{label} {level}")
        ax.legend(fontsize=6, markerscale=1.3, loc="best", framealpha=0.7)
    else:
        sc = ax.scatter(xy[:, 0], xy[:, 1], s=9, c=values, cmap=cmap, alpha=0.8, linewidths=0)
        ax.figure.colorbar(sc, ax=ax, label=label, fraction=0.046, pad=0.02)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("PC 1", fontsize=8)
    ax.set_ylabel("PC 2", fontsize=8)
    ax.tick_params(labelsize=7)


def level_colours(n: int):
    """``n`` colours of an ordered map (plasma, dark blue to yellow-orange) spaced evenly, stopping
    before its palest yellow (invisible on white)."""
    from matplotlib import colormaps

    cm = colormaps["plasma"]
    return [cm(0.82 * k / max(n - 1, 1)) for k in range(n)]


def similarity_by_label_distance(emb, labels, *, bins=None):
    """Median and quartiles of the cosine similarity of all pairs, by label distance.

    ``labels`` (N,) ordinal or continuous; pairs ``i < j`` are grouped by
    ``|y_i - y_j|``: per distinct value for integer labels, else into
    ``bins`` (default 8) equal-width bins. Returns ``(centres, median, q25, q75)``.
    """
    z = unit_rows(emb)
    y = np.asarray(labels, dtype=np.float64)
    i, j = np.triu_indices(len(z), 1)
    sim = np.sum(z[i] * z[j], axis=1)  # (P,)
    dist = np.abs(y[i] - y[j])
    if bins is None and np.all(y == np.round(y)):
        centres = np.unique(dist)
        which = np.searchsorted(centres, dist)
    else:
        edges = np.linspace(0, dist.max() + 1e-12, (bins or 8) + 1)
        which = np.clip(np.searchsorted(edges, dist, side="right") - 1, 0, len(edges) - 2)
        centres = (edges[:-1] + edges[1:]) / 2
    stats = [tuple(np.quantile(sim[which == k], [0.5, 0.25, 0.75]))
             if np.any(which == k) else (np.nan,) * 3 for k in range(len(centres))]
    median, q25, q75 = (np.array(s) for s in zip(*stats))
    return centres, median, q25, q75


def similarity_panel(ax, curves: dict, *, title: str, xlabel: str):
    """Median cosine similarity against label distance, one line per method, its interquartile
    range as bars (methods side by side, so that no band hides another).

    ``curves``: ``{method: (emb, labels)}``.
    """
    colours = [f"C{k}" for k in range(len(curves))]
    width = None
    for k, ((name, (emb, labels)), colour) in enumerate(zip(curves.items(), colours)):
        centres, median, q25, q75 = similarity_by_label_distance(emb, labels)
        if width is None:
            width = 0.6 * (np.min(np.diff(centres)) if len(centres) > 1 else 1.0) / len(curves)
        x = centres + (k - (len(curves) - 1) / 2) * width
        ax.errorbar(x, median, yerr=[median - q25, q75 - median], fmt="o-", color=colour, ms=3, lw=1.1,
                    elinewidth=0.9, capsize=1.5, label=name)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("cosine similarity: median, bar = quartiles", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)


def curves_panel(ax, losses, *, title: str, window: int = 20, first_step: int = 1, ylabel: str = "loss"):
    """Training loss per step (grey) and its moving average over ``window`` steps (blue), the steps
    numbered from ``first_step``."""
    losses = np.asarray(losses, dtype=np.float64)
    steps = np.arange(first_step, first_step + len(losses))
    ax.plot(steps, losses, color="0.7", lw=0.6, label="per step")
    w = max(1, min(window, len(losses) // 5))
    smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
    ax.plot(steps[w - 1:], smooth, color="C0", lw=1.4, label=f"mean of {w} steps")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def curves_figure(histories: dict, path, *, title: str = "Training curves", first_step: dict | None = None,
                  loss_of: dict | None = None) -> str:
    """One panel per training run: ``histories`` is ``{run name: losses}``.

    ``first_step``: ``{run: number of its first step}`` (a run that continues
    another starts where it ended); ``loss_of``: ``{run: the loss it
    minimises}`` (default: one loss for all). Panels share the step axis, and
    panels of the same loss share the loss axis; the grid has no empty slot.
    """
    first_step, loss_of = first_step or {}, loss_of or {}
    n = len(histories)
    ncols = n if n <= 5 else (3 if n % 3 == 0 else 4 if n % 4 == 0 else n)
    fig, axes = new_figure(n, ncols=ncols, panel=(3.0, 2.4))
    last = max(first_step.get(k, 1) + len(v) - 1 for k, v in histories.items())
    for ax, (name, losses) in zip(axes, histories.items()):
        curves_panel(ax, losses, title=name, first_step=first_step.get(name, 1),
                     ylabel=loss_of.get(name, "loss"))
        ax.set_xlim(0, last + 1)
    for loss in set(loss_of.get(name, "loss") for name in histories):
        group = [ax for ax, name in zip(axes, histories) if loss_of.get(name, "loss") == loss]
        lo = min(ax.get_ylim()[0] for ax in group)
        hi = max(ax.get_ylim()[1] for ax in group)
        for ax in group:
            ax.set_ylim(lo, hi)
    axes[0].legend(fontsize=6, loc="upper right")
    return save_figure(fig, path, title=title)
