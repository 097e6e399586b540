# %% [markdown]
# # Lab · Data parallel: one simulated DDP step, and the gradient a plain all-gather gives
#
# With DistributedDataParallel on W processes, rank $r$ embeds its shard
# $S_r$ of the batch (M/W of the M rows), all-gathers everyone's embeddings
# into $z$ (M, D), and computes the loss of its own anchors against the whole
# batch, $L_r = \frac1M \sum_{t \in S_r} \ell_t(z)$ (refimpl's `anchors=S_r`).
# Tutorial 07 derives why each rank must multiply its loss by W and what a
# plain `torch.distributed.all_gather` loses, and runs the real thing; this
# lab is graded. Two exercises, each with a check cell right after it. The
# checks compare what your function returns with reference values stored
# with refimpl (the second with what two `torch.distributed` processes
# computed); when your work is graded, each check runs again on other inputs
# (another batch, three ranks).
#
# **Rules.** Write the functions with NumPy and refimpl's kernel loss
# (`kernel.forward`, `kernel.backward`, `kernel.forward_naive` are allowed).
# An exercise may not call `refimpl.ddp`'s `expected`, `check`, `run`,
# `example_step` or `torch_wsp_loss`: the checks run with them unavailable,
# and a call to one scores nothing. The two exercises are independent.

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

from refimpl import ddp, labs
from refimpl.losses import kernel

lab = labs.load("data_parallel")

# %% [markdown]
# ## Exercise 1: a data-parallel step, simulated on one process (3 points)
#
# A bias-free linear layer of weight $\Theta$ (D, F) embeds float64 inputs
# $x$ (M, F): $z = x\,\Theta^\top$. Write what each of W ranks holds after one
# *right* DDP step of the WSP loss (each rank's loss times W, a differentiable
# all-gather, whose backward sums each row's gradient over the ranks; DDP then
# averages the weight's gradient over the ranks): for rank $r$ with rows
# `ddp.shards(M, W)[r]`,
#
# * `loss`: $L_r$, the loss of its anchors (before the factor W);
# * `dz`: the gradient that reached its own embeddings $z_{S_r}$ (M/W, D);
# * `dweight`: the gradient of $\Theta$ after DDP's average (the same on
#   every rank).
#
# Use `kernel.forward(z, ..., anchors=...)` and `kernel.backward`; the chain
# rule through the layer is $\partial / \partial \Theta = (\partial / \partial z)^\top x$.

# %%
def ddp_step_by_hand(x, weight, world_size, loss_kwargs):
    """Per rank: dict(loss, dz, dweight) of one right DDP step of kernel.forward(**loss_kwargs)."""
    z = x @ weight.T                                               # (M, D)
    shards = ddp.shards(len(x), world_size)
    # define losses (one float per rank), dz_local (per rank, (M/W, D)) and dweight (D, F)
    ### BEGIN SOLUTION
    losses, caches = zip(*(kernel.forward(z, **loss_kwargs, anchors=s) for s in shards))
    dz = sum(kernel.backward(1.0, c)[0] for c in caches)           # all-gather backward: sum over ranks
    dz_local = [world_size * dz[s] for s in shards]                # the loss times W
    dweight = sum(d.T @ x[s] for d, s in zip(dz_local, shards)) / world_size   # DDP's average
    ### END SOLUTION
    return [dict(loss=float(loss), dz=d, dweight=dweight) for loss, d in zip(losses, dz_local)]


# %%
# check: ddp_step_by_hand — loss, dz, dweight of each of two ranks, a batch of 16
def loss_kwargs(case):
    return {k: case[k] for k in ("labels", "depth", "sigma", "temperature")}


lab.check("ddp_step_by_hand",
          lambda case: ddp_step_by_hand(case["x"], case["weight"], case["world_size"], loss_kwargs(case)), globals())
### BEGIN HIDDEN TESTS
lab.check("ddp_step_by_hand",
          lambda case: ddp_step_by_hand(case["x"], case["weight"], case["world_size"], loss_kwargs(case)), globals(),
          case="hidden", quiet=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the gradient a plain all-gather gives (3 points)
#
# A plain `torch.distributed.all_gather` records no graph: the gathered rows
# are constants. Rank $r$ uses its local rows as the anchors and the gathered
# copy as the other rows, scales its loss by W and steps backward. With
# $G_{tj} = \partial L / \partial s_{tj}$ and $s_{tj} = \hat z_t^\top \hat z_j / \tau$,
# the gradient of a normalised row has two sides,
#
# $$\frac{\partial L}{\partial \hat z_k} = \frac1\tau \sum_j G_{kj}\, \hat z_j
#   \;+\; \frac1\tau \sum_t G_{tk}\, \hat z_t,$$
#
# row $k$ *as an anchor* (first sum) and *as another row* (second sum); the
# plain gather keeps only the first. Predict, in NumPy, what reaches each
# rank's embeddings: W times the anchor side for $k \in S_r$, taken back
# through $\hat z_k = z_k / \lVert z_k \rVert$,
#
# $$\frac{\partial L}{\partial z_k} = \frac{\partial L / \partial \hat z_k
#   - \hat z_k\, (\hat z_k^\top \partial L / \partial \hat z_k)}{\lVert z_k \rVert},$$
#
# with $G_{tj} = \frac1M (c_t\, p_{tj} - \tilde w_{tj})$ for the "mean" and
# $c_t = \sum_j \tilde w_{tj}$ (1, or 0 without positives). The teaching form
# `kernel.forward_naive` keeps the softmax `prob` $p$, the normalised weights
# `weights` $\tilde w$ and the normalised rows `zn` in its cache.

# %%
def plain_gather_dz(z, world_size, loss_kwargs):
    """Per rank: the gradient (M/W, D) a plain all_gather leaves on the rank's embeddings (loss times W)."""
    _, naive = kernel.forward_naive(z, **loss_kwargs)
    shards = ddp.shards(len(z), world_size)
    # define dz (M, D): every row's gradient as the plain gather leaves it, W included
    ### BEGIN SOLUTION
    c = naive.weights.sum(axis=1, keepdims=True)                   # (M, 1) c_t
    g = (c * naive.prob - naive.weights) / len(z)                  # (M, M) dL/ds_tj
    dzn = g @ naive.zn / loss_kwargs["temperature"]                # the anchor side only
    zn, norm = naive.zn, np.linalg.norm(z, axis=1, keepdims=True)
    dz = world_size * (dzn - zn * np.sum(zn * dzn, axis=1, keepdims=True)) / norm
    ### END SOLUTION
    return [dz[s] for s in shards]


# %%
# check: plain_gather_dz — dz of each rank against what two torch.distributed processes computed
lab.check("plain_gather_dz",
          lambda case: plain_gather_dz(case["x"] @ case["weight"].T, case["world_size"], loss_kwargs(case)),
          globals())
### BEGIN HIDDEN TESTS
lab.check("plain_gather_dz",
          lambda case: plain_gather_dz(case["x"] @ case["weight"].T, case["world_size"], loss_kwargs(case)),
          globals(), case="hidden", quiet=True)
### END HIDDEN TESTS
