# %% [markdown]
# # 05 · Augmentation scale: strong, weak and weak+medical views
#
# Cheng et al. (arXiv 2501.02451) pretrain DINO on retinal images and find
# that the strong augmentations of natural-image self-supervision hurt: every
# fundus photograph has the same layout (a "dense" distribution), so heavily
# cropped and colour-jittered views of one image look as different as views
# of two different images, and the contrastive signal drowns. They compare
# the presets of their Table 2 with the distances of positive pairs (two views
# of one image, Eq. 1) and negative pairs (views of different images, Eq. 2).

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from data_synth import ordinal_severity
from refimpl import metrics
from refimpl.augment import get_preset, two_views

QUICK = os.environ.get("REFIMPL_TUTORIAL_QUICK") == "1"  # the test suite runs this notebook small
PRESETS = ("strong", "weak", "weak+med")

# %% [markdown]
# ## The presets, side by side
#
# The same four synthetic fundus-like images (severity 0 to 5: the optic disc
# swells) under each preset: `strong` (DINO's crops from 40% of the image and
# its colour jitter), `weak` (crops from 50%, milder jitter), `weak+med`
# (weak plus the blur, noise and bias field of medical images).

# %%
data = ordinal_severity(64, size=64, seed=0)
images = data.images[np.argsort(data.severity)[::16]]           # four images, rising severity
for name in PRESETS:
    p = get_preset(name)
    print(f"{name:<9} crop scale {p.global_scale}, brightness/contrast {p.brightness}/{p.contrast} (p {p.jitter_p}), "
          f"blur p {p.blur_p}, noise p {p.noise_p}, bias field p {p.bias_p}")

fig, axes = plt.subplots(len(PRESETS) + 1, 4, figsize=(7, 7.4))
for col, image in enumerate(images):
    axes[0, col].imshow(image[0], cmap="gray", vmin=0, vmax=1)
for row, name in enumerate(PRESETS, start=1):
    view, _ = two_views(images, name, rng=row)
    for col in range(4):
        axes[row, col].imshow(view[col, 0], cmap="gray", vmin=0, vmax=1)
for row, label in enumerate(("original",) + PRESETS):
    axes[row, 0].set_ylabel(label)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Pair distances before any training
#
# On raw pixels: for each image two views under a preset, positive distances
# $\lVert x^1_i - x^2_i \rVert$ against negative distances
# $\lVert x^1_i - x^2_j \rVert$. The separation score is the AUROC of negatives
# against positives (1: every negative pair is farther than every positive
# pair; 0.5: no difference). Strong views of one image are about as far apart
# as views of different images.

# %%
data = ordinal_severity(64 if QUICK else 256, size=64, seed=1)
groups = {}
for name in PRESETS:
    v1, v2 = two_views(data.images, name, rng=7)
    positive, negative = metrics.pair_distances(v1, v2)
    groups[name] = (positive, negative)
    print(f"{name:<9} separation on pixels {metrics.separation_score(positive, negative):.3f}")
path = Path(tempfile.mkdtemp()) / "pixels.png"
metrics.pair_distance_figure(groups, path, title="Pair distances on raw pixels")
display(Image(filename=str(path)))

# %% [markdown]
# ## After DINO pretraining
#
# `refimpl run augscale` pretrains DINO (student, EMA teacher, centre,
# multi-crop) once per preset from the same initial weights, then measures the
# separation on the teacher's features and probes severity linearly (AUROC,
# AUPR).

# %%
from refimpl.recipes import augscale  # noqa: E402

out = Path(tempfile.mkdtemp()) / "augscale"
result = augscale.run(seed=0, fast=QUICK, out_dir=out, progress=False)
for method, values in result["methods"].items():
    print(f"{method:<12}" + "  ".join(f"{k} {v:.3f}" for k, v in values.items()))
for claim in result["claims"]:  # the verdict over seeds (docs/claims.md), then this run's own effect
    over_seeds = claim["multi_seed"]["verdict"] if claim["multi_seed"] else "not tabled"
    print(f"{over_seeds:<12} this run {claim['effect']:+.3f}  {claim['claim']}")

# %%
display(Image(filename=str(out / "pair_distances.png")))

# %% [markdown]
# What it means for contrastive learning on dense medical data: the views a
# method is asked to match must stay recognisably the same image, so the
# crop scale and the colour jitter should be milder than for natural images,
# and what is added (blur, noise, bias field) should imitate how the
# acquisition varies, not how scenes do.
#
# The first column printed above is each claim's verdict over seeds from
# `docs/claims.md`, the second this run's effect, which moves with the seed and
# the machine. Over seeds 0-4 all four claims **hold**, with the same verdicts
# under the Haswell kernel: weak augmentation separates positive from negative
# pairs better than strong (mean effect +0.197), the probe on weak-pretrained
# features has the higher severity AUROC (+0.034) and AUPR (+0.073), and adding
# the medical augmentations to weak lowers the AUROC (+0.063). The AUROC
# margins are a few hundredths, about the noise of a probe scored on ~400 test
# images: seed 0 (the run above) shows +0.051, other seeds half that, so the
# size of one run's effect is not the paper's effect, and it took the five
# seeds to settle the sign.
