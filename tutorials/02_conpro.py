# %% [markdown]
# # 02 · ConPro: contrast normal from abnormal, then order the abnormal
#
# Nguyen et al. (CVPR-W 2024) learn a severity-ordered representation in two
# steps. The **Con step** pulls pairs of the same class (normal / abnormal)
# together and pushes others apart (Eq. 1–2). The **PrO step** fits a
# Bradley–Terry preference model (Eq. 3–4): of two abnormal images, the more
# severe one should lie farther from a *normality anchor*, the mean embedding
# of n normal references. Performance is reported with macro-F1 and MAEE
# (Eq. 5), which also counts *how far* a wrong grade is.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from refimpl import metrics
from refimpl.losses import margin, preference

QUICK = os.environ.get("REFIMPL_TUTORIAL_QUICK") == "1"  # the test suite runs this notebook small
rng = np.random.default_rng(0)

# %% [markdown]
# ## Con step: a margin loss on the cosine distance
#
# With $d = 1 - \cos(a, b) \in [0, 2]$ and $y = 1$ for a pair of the same
# class, Eq. 1 is $\ell = y\, d + (1 - y) \max(0, m - d)$, here with the
# paper's $m = 2$.
#
# **Erratum with numbers.** Eq. 2 defines $d_{cos}$ as the cosine
# *similarity*, yet Eq. 1 uses it as a distance with a margin in [0, 2]; the
# consistent reading is $1 - \cos$ (`variant="paper"`). The authors' code
# (`variant="official"`) uses the similarity $s$ with squared terms,
# $(1 - y) s^2 + y \max(0, m - s)^2$ where its $y = 1$ means *same* class: a
# same-class pair is pulled towards $s = 2$, which no pair of unit vectors
# reaches, so even identical embeddings keep a loss of 1 and a gradient.

# %%
a = rng.standard_normal((1, 8))
identical, opposite = a.copy(), -a
for name, b in (("identical", identical), ("opposite", opposite)):
    for same in (1, 0):
        paper = float(margin.forward(a, b, np.array([same]))[0])
        official = float(margin.forward(np.concatenate([a, a]), np.concatenate([b, b]), np.array([same, same]),
                                        variant="official")[0])
        print(f"{name:<9} pair, same class = {same}:  paper {paper:.3f}   official {official:.3f}")

# %%
cos = np.linspace(-1, 1, 201)
d = 1 - cos
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(cos, d, label="paper, same class: d")
ax.plot(cos, np.maximum(0, 2 - d), label="paper, different: max(0, 2 - d)")
ax.plot(cos, np.maximum(0, 2 - cos) ** 2, "--", label="official, same class: max(0, 2 - s)^2")
ax.plot(cos, cos**2, "--", label="official, different: s^2")
ax.set_xlabel("cosine similarity of the pair")
ax.set_ylabel("loss")
ax.legend(fontsize=8)
ax.set_title("Con step, per pair")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## PrO step: Bradley–Terry on the distance to the normality anchor
#
# The reward of an embedding is its cosine distance to the anchor $\pi_0$,
# the plain mean of n normal reference embeddings (Sec. 4):
# $r(u) = 1 - \cos(u, \pi_0)$. The probability that sample $i$ is the more
# severe one is $\sigma(r_i - r_j)$, and Eq. 4 is its negative log-likelihood
# (the paper's Eq. 3 flips the sign of the exponent in its second line and
# Eq. 4 lacks the minus sign; both fixed here).

# %%
refs = rng.standard_normal((20, 8)) * 0.3 + 1.0            # normal images: near one direction
mild = refs.mean(axis=0, keepdims=True) + rng.standard_normal((1, 8)) * 0.5
severe = -refs.mean(axis=0, keepdims=True) + rng.standard_normal((1, 8)) * 0.5
for prefer_severe in (1.0, 0.0):
    loss = float(preference.forward(severe, mild, refs, np.array([prefer_severe]))[0])
    print(f"prefer_i = {prefer_severe} (i = the severe image): loss {loss:.4f}")

# %% [markdown]
# The loss is low when the preference agrees with the geometry (the severe
# image is farther from the anchor). With n = 1 the anchor is one normal
# image, a noisy direction; averaging more references steadies it
# (the paper's Table 2 compares n = 1, 10, 20).

# %%
anchors = {n: [refs[rng.choice(20, n, replace=False)].mean(axis=0) for _ in range(200)] for n in (1, 5, 20)}
mean_direction = refs.mean(axis=0) / np.linalg.norm(refs.mean(axis=0))
for n, drawn in anchors.items():
    spread = [1 - a @ mean_direction / np.linalg.norm(a) for a in drawn]
    print(f"n = {n:>2}: mean cosine distance of the anchor to the references' mean direction {np.mean(spread):.4f}")

# %% [markdown]
# ## MAEE: how far off a wrong grade is
#
# Eq. 5, $\mathrm{MAEE} = \frac1N \sum_i e^{|\hat y_i - y_i|}$ (1 is perfect):
# the cost of an error grows exponentially with its distance in grades. Two
# predictions with the same macro-F1 can differ a lot in MAEE: the normal
# images called grade 1 in one, grade 5 in the other.

# %%
truth = np.array([0, 1, 2, 3, 4, 5] * 5)
near = truth.copy()
near[::6] = 1                                               # normal graded 1
far = truth.copy()
far[::6] = 5                                                # normal graded 5
for name, pred in (("off by one", near), ("off by five", far)):
    print(f"{name:<12} macro-F1 {metrics.macro_f1(truth, pred):.3f}   MAEE {metrics.maee(truth, pred):.3f}")

# %% [markdown]
# ## Representations before and after the PrO step
#
# `refimpl run conpro` trains the Con step alone (SupCon-2) and Con then PrO
# (ConPro) on synthetic fundus-like images graded 0–5. After the Con step
# the abnormal grades lie together, away from normal; the PrO step spreads
# them out in the order of severity along the distance to the anchor.

# %%
from refimpl.recipes import conpro  # noqa: E402

out = Path(tempfile.mkdtemp()) / "conpro"
result = conpro.run(seed=0, fast=QUICK, out_dir=out, progress=False)
for method in ("SupCon-2", "ConPro (n=1)", "ConPro (n=20)"):
    values = result["methods"][method]
    print(f"{method:<15} spearman {values['spearman']:.3f}   maee {values['maee']:.3f}   "
          f"macro_f1 {values['macro_f1']:.3f}")
display(Image(filename=str(out / "representations.png")))
