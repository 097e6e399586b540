# %% [markdown]
# # Lab · WSP: the composite kernel, its weights, and the loss's backward pass
#
# Sarfati et al. (MICCAI 2023) weigh the positives of a contrastive loss by a
# composite kernel: two slices of the same weak class are positives, more so
# when they come from similar depths (tutorial 03 reads the paper and its
# erratum; this lab is graded). Three exercises, each with a check cell right
# after it. The checks compare what your function returns with reference
# values stored with refimpl; when your work is graded, each check runs again
# on other inputs.
#
# **Rules.** Write the functions with NumPy. An exercise may not call
# refimpl's kernel and SupCon losses (`refimpl.losses.kernel`: `forward`,
# `backward` and their `_naive` forms; `refimpl.losses.supcon`: `forward`,
# `backward`, `ntxent_forward`): the checks run with them unavailable, and a
# call to one scores nothing.
# Each check gives your function the reference results of the exercises
# before it, so a mistake in Exercise 1 costs Exercise 1's points only.

# %%
# Set-up: one BLAS thread (set before NumPy loads: the arrays are tiny), refimpl installed if missing.
import os

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import importlib.util
import subprocess
import sys

REFIMPL_SOURCE = ""  # where to install refimpl from when missing: a wheel (path or URL) or "git+https://..."
if importlib.util.find_spec("refimpl") is None:
    if not REFIMPL_SOURCE:
        raise RuntimeError("refimpl is not installed and REFIMPL_SOURCE is empty: ask your instructor where from")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", REFIMPL_SOURCE])

import numpy as np

from refimpl import labs

lab = labs.load("wsp")

# %% [markdown]
# ## Exercise 1: the composite kernel (1 point)
#
# Eq. 2 for M samples as an (M, M) matrix,
#
# $$w_{tj} = \delta(y_t - y_j)\; \exp\!\Big(-\frac{(d_t - d_j)^2}{2\sigma^2}\Big),$$
#
# with the anchor excluded: $w_{tt} = 0$ (an anchor is not its own positive).

# %%
def composite_kernel(labels, depth, sigma):
    """w (M, M): Dirac on the labels x Gaussian on the depth (Eq. 2), 0 on the diagonal."""
    ### BEGIN SOLUTION
    same_label = labels[:, None] == labels[None, :]                # (M, M) Dirac factor
    w = same_label * np.exp(-(depth[:, None] - depth[None, :]) ** 2 / (2 * sigma**2))
    np.fill_diagonal(w, 0.0)
    ### END SOLUTION
    return w


# %%
# check: composite_kernel — w of six slices, three classes, one class with a single slice
lab.check("composite_kernel", lambda case: composite_kernel(case["labels"], case["depth"], case["sigma"]),
          globals())
### BEGIN HIDDEN TESTS
lab.check("composite_kernel", lambda case: composite_kernel(case["labels"], case["depth"], case["sigma"]),
          globals(), case="hidden", quiet=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the weights of Eq. 4 (1 point)
#
# Normalise per anchor (per row),
# $\tilde w_{tj} = w_{tj} / \sum_{k \ne t} w_{tk}$. An anchor whose label no
# other sample has has no positive: Eq. 4's sum is empty, so its row of
# $\tilde w$ is 0 (not 0/0).

# %%
def normalise_per_anchor(w):
    """w_tilde (M, M): each row of w divided by its sum; rows without positives stay 0."""
    ### BEGIN SOLUTION
    total = w.sum(axis=1, keepdims=True)                           # (M, 1)
    w_tilde = w / np.where(total > 0, total, 1.0)
    ### END SOLUTION
    return w_tilde


# %%
# check: normalise_per_anchor — w_tilde from the reference w (sample 5 has no positive)
lab.check("normalise_per_anchor", lambda case: normalise_per_anchor(case["w"]), globals())
### BEGIN HIDDEN TESTS
lab.check("normalise_per_anchor", lambda case: normalise_per_anchor(case["w"]), globals(), case="hidden", quiet=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3: the loss's backward pass (3 points)
#
# Eq. 4, the loss of anchor $t$ with $s_{tj} = \hat z_t^\top \hat z_j / \tau$
# on the L2-normalised rows, mean over the M anchors:
#
# $$\ell_t = -\sum_{j \ne t} \tilde w_{tj}
#   \log \frac{e^{s_{tj}}}{\sum_{k \ne t} e^{s_{tk}}} .$$
#
# With the softmax $p_{tj}$ over $j \ne t$,
# $\partial \ell_t / \partial s_{tj} = (\sum_i \tilde w_{ti})\, p_{tj} - \tilde w_{tj}$
# (the row sum is 1, or 0 for an anchor without positives). With
# $G = \partial L / \partial s$ and $s = \hat z \hat z^\top / \tau$,
# $\partial L / \partial \hat z = (G + G^\top)\, \hat z / \tau$; then through
# $\hat z_t = z_t / \lVert z_t \rVert$:
#
# $$\frac{\partial L}{\partial z_t} = \frac{\partial L / \partial \hat z_t
#   - \hat z_t\, (\hat z_t^\top \partial L / \partial \hat z_t)}{\lVert z_t \rVert}.$$
#
# Return `dz` (M, D) of the loss times `dout`.

# %%
def wsp_forward(z, w_tilde, tau=0.1):
    """WSP Eq. 4 with the weights w_tilde (M, M), mean over anchors; (loss, cache)."""
    norm = np.linalg.norm(z, axis=1, keepdims=True)                # (M, 1)
    zn = z / norm
    s = zn @ zn.T / tau                                            # (M, M) s_tj
    others = ~np.eye(len(z), dtype=bool)                           # j != t
    s_max = np.max(np.where(others, s, -np.inf), axis=1, keepdims=True)
    e = np.where(others, np.exp(s - s_max), 0.0)
    prob = e / e.sum(axis=1, keepdims=True)                        # p_tj, 0 on the diagonal
    log_prob = s - s_max - np.log(e.sum(axis=1, keepdims=True))    # (the diagonal is weighted 0)
    loss = -np.sum(w_tilde * log_prob, axis=1).mean()
    return loss, (zn, norm, prob, w_tilde, tau)


# %%
def wsp_backward(dout, cache):
    """dz (M, D) of wsp_forward's loss times dout."""
    zn, norm, prob, w_tilde, tau = cache
    ### BEGIN SOLUTION
    g = dout / len(zn) * (w_tilde.sum(axis=1, keepdims=True) * prob - w_tilde)   # (M, M) dL/ds
    dzn = (g + g.T) @ zn / tau                                     # (M, D)
    dz = (dzn - zn * np.sum(zn * dzn, axis=1, keepdims=True)) / norm
    ### END SOLUTION
    return dz


# %%
# check: wsp_backward — dz of six embeddings with the reference weights, for an upstream dout
lab.check("wsp_backward", lambda case: wsp_backward(case["dout"], wsp_forward(case["z"], case["w_tilde"],
                                                                              case["tau"])[1]), globals())
### BEGIN HIDDEN TESTS
lab.check("wsp_backward", lambda case: wsp_backward(case["dout"], wsp_forward(case["z"], case["w_tilde"],
                                                                              case["tau"])[1]),
          globals(), case="hidden", quiet=True)
### END HIDDEN TESTS
