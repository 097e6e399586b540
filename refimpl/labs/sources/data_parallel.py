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
import numpy as np

from refimpl import ddp
from refimpl.losses import kernel

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
# from tutorial 07_data_parallel: ddp_step_by_hand

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
# from tutorial 07_data_parallel: plain_gather_dz

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
