# %% [markdown]
# # 04 · AdaCon: a contrastive margin from the labels' ECDF
#
# Dai et al. (IEEE TMI) regress a continuous target (bone mineral density,
# ejection fraction) and add a contrastive term whose margin between two
# samples grows with how far apart their labels are *in rank*. With the
# empirical CDF of the labels (Eq. 5)
#
# $$F(v) = \frac1n \sum_{k=1}^{n} \mathbb 1[y_k \le v],$$
#
# the margin between anchor $i$ and sample $a$ is $d_{ia} = 2\,|F(y_i) - F(y_a)|$,
# added to the negatives' cosine similarities inside the softmax (Eq. 6):
#
# $$\ell_i = \log \sum_{a \ne i} e^{s(\cos\theta_{ia} + d_{ia})}
#   - \frac{s}{|P(i)|} \sum_{p \in P(i)} \cos\theta_{ip}.$$
#
# Course lab: two exercises build the ECDF and the margin by hand and check
# them against refimpl's gold data (solutions included; `python
# tutorials/build.py --student DIR` writes the version without them).

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from refimpl import gold
from refimpl.losses import adacon

QUICK = os.environ.get("REFIMPL_TUTORIAL_QUICK") == "1"  # the test suite runs this notebook small
rng = np.random.default_rng(0)


# %% [markdown]
# ## The ECDF and the margin, by hand
#
# **Exercise 1.** Eq. 5, the ECDF of labels `y` (M,) over a population of $n$
# labels $y'_1..y'_n$ (by default the batch itself):
#
# $$F(y_i) = \frac1n \sum_{k=1}^{n} \mathbb 1[y'_k \le y_i].$$
#
# Mind the ties: with $\le$, equal labels share the *largest* rank of their
# group, e.g. `[0.3, 0.1, 0.3, 0.7]` → `[0.75, 0.25, 0.75, 1.0]` (a rank
# from `argsort` would give them different values).

# %%
def ecdf(y, population=None):
    """F(y_i) (M,): the fraction of the population (default: y itself) at or below y_i (Eq. 5)."""
    population = y if population is None else population
    ### BEGIN SOLUTION
    at_or_below = population[None, :] <= y[:, None]                # (M, n)
    F = at_or_below.mean(axis=1)
    ### END SOLUTION
    return F


# %% [markdown]
# The check: a batch with ties against `adacon.ecdf`, then the gold case of
# Eq. 5 over a population (labels the population does not contain).

# %%
ties = np.array([0.3, 0.1, 0.3, 0.7, 0.9, 0.1, 0.3, 0.5])
result = gold.compare("F (batch)", ecdf(ties), adacon.ecdf(ties))
print(result)
result.raise_if_failed()
report = gold.verify("adacon-ecdf-paper", lambda inputs: {"out": ecdf(inputs["y"], inputs["population"])})
print(report)
report.raise_if_failed()

# %% [markdown]
# **Exercise 2.** Eq. 4, the margin of every pair of the batch, (M, M):
#
# $$d_{ia} = 2\,|F(y_i) - F(y_a)|.$$

# %%
def adaptive_margin(y, population=None):
    """d (M, M) from your ecdf (Eq. 4); 0 between equal labels."""
    ### BEGIN SOLUTION
    F = ecdf(y, population)
    d = 2 * np.abs(F[:, None] - F[None, :])                        # (M, 1) - (1, M)
    ### END SOLUTION
    return d


# %%
report = gold.verify("adacon-margin-paper", lambda inputs: {"out": adaptive_margin(inputs["y"])})
print(report)
report.raise_if_failed()
lab_population = np.array([0.2, 0.35, 0.3, 0.8, 0.45, 0.1])
result = gold.compare("d (population)", adaptive_margin(ties, lab_population), adacon.margin(ties, lab_population))
print(result)
result.raise_if_failed()

# %% [markdown]
# ## The ECDF margin
#
# A skewed target, as BMD is: most values near the mean, a long tail. The
# margin follows rank, not value: a pair in the dense middle gets a larger
# margin than a pair farther apart in the tail (the two pairs printed below).

# %%
y = np.round(np.exp(rng.normal(-0.4, 0.25, 12)), 2)
order = np.argsort(y)
y = y[order]
F = ecdf(y)
d = adaptive_margin(y)
print("y      ", y.tolist())
print("F(y)   ", F.round(3).tolist())
for i, a in ((2, 6), (8, 11)):
    print(f"y = {y[i]:.2f} and {y[a]:.2f}: difference {y[a] - y[i]:.2f}, margin d = {d[i, a]:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
axes[0].step(y, F, where="post")
axes[0].set_xlabel("label y")
axes[0].set_ylabel("ECDF F(y)")
axes[0].set_title("Eq. 5: the labels' empirical CDF")
image = axes[1].imshow(d, cmap="magma")
axes[1].set_title("margin $d_{ia} = 2|F(y_i) - F(y_a)|$")
axes[1].set_xlabel("sample a (sorted by label)")
axes[1].set_ylabel("anchor i")
fig.colorbar(image, ax=axes[1], fraction=0.046)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Why it is rank-invariant
#
# Any strictly increasing map of the labels (a change of units, a log, a
# calibration curve) leaves the ECDF, hence the margins, hence the loss,
# unchanged. A margin proportional to $|y_i - y_a|$ would not be.

# %%
z = rng.standard_normal((12, 6))
labels = np.repeat(y[::2], 2)                                  # pairs share a label: every anchor has a positive
for name, transform in (("y", lambda v: v), ("1000 y", lambda v: 1000 * v), ("log y", np.log),
                        ("y ** 3", lambda v: v**3)):
    loss = float(adacon.forward(z, transform(labels), scale=10.0)[0])
    print(f"loss with labels {name:<8} {loss:.12f}")

# %% [markdown]
# ## Erratum with numbers: whose ECDF?
#
# Eq. 5 sums over the $N$ *training* samples (Sec. III), but it is often read
# as the ECDF of the batch. The two give different margins: within a batch
# of 12, ranks are coarse (steps of 1/12) and depend on which samples were
# drawn. `population=` chooses; the authors' code counts the whole training
# split.

# %%
population = np.round(np.exp(rng.normal(-0.4, 0.25, 2000)), 2)   # the training labels
batch_margin = adacon.margin(y)
population_margin = adacon.margin(y, population)
print("margin between the smallest and the largest label of the batch:")
print(f"  batch ECDF       {batch_margin[0, -1]:.3f}")
print(f"  population ECDF  {population_margin[0, -1]:.3f}")
print(f"largest difference over all pairs: {np.abs(batch_margin - population_margin).max():.3f}")

# %% [markdown]
# ## The multitask regression
#
# `refimpl run adacon` trains an encoder with an L1 regression head plus
# γ times a contrastive term on synthetic hip-X-ray-like crops whose texture
# density encodes a skewed target: AdaCon against L1 alone and L1 with SupCon
# (binned labels), the adaptive triplet, and N-pair.

# %%
from refimpl.recipes import adacon as adacon_recipe  # noqa: E402

out = Path(tempfile.mkdtemp()) / "adacon"
result = adacon_recipe.run(seed=0, fast=QUICK, out_dir=out, progress=False)
for method, values in result["methods"].items():
    print(f"{method:<22}" + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
for claim in result["claims"]:  # the verdict over seeds (docs/claims.md), then this run's own effect
    over_seeds = claim["multi_seed"]["verdict"] if claim["multi_seed"] else "not tabled"
    print(f"{over_seeds:<12} this run {claim['effect']:+.3f}  {claim['claim']}")

# %% [markdown]
# Read the first column as the verdict over five seeds and the second as one
# sample of it. In `docs/claims.md` (seeds 0-4; the table written with
# `OPENBLAS_CORETYPE=Haswell` gives the same verdicts) AdaCon's feature
# similarity falls with the ECDF label distance more steadily than any other
# method's: the Fig. 3 claim **holds**. Neither MAE claim is settled
# (**inconclusive**): the MAE margins are a few thousandths of the target (its
# sd is 0.13), about what changes from seed to seed and from one BLAS kernel to
# another (another kernel changes the last bits, then the path training takes).
# Over the five seeds the mean effect against the best other method is
# -0.003 (AdaCon's MAE 0.003 above it; 95% interval -0.006 to +0.001) and
# against L1 alone +0.005 (-0.005 to +0.016); N-pair comes first on three of
# the five seeds. Seed 0, the run
# above, happens to put AdaCon first (MAE 0.0540 against N-pair's and SupCon's
# 0.0562): one run's order is not the verdict. The claims are about MAE, the
# paper's metric; compare RMSE and R2 too, since a lower MAE can come with a
# higher RMSE, which weighs the largest errors more (on the seed-0 run both
# fell: RMSE 0.0694 against L1 only's 0.0704).
#
# The paper's Fig. 3: with AdaCon, the similarity of two embeddings falls
# with the ECDF distance of their labels.

# %%
display(Image(filename=str(out / "similarity_vs_ecdf.png")))
