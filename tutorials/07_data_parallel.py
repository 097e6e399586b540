# %% [markdown]
# # 07 · Large batches and data-parallel losses
#
# Contrastive losses want large batches: every anchor is compared with every
# other sample, and more negatives make a better estimate of the softmax
# denominator. That comparison is what makes them expensive: the loss of a
# batch of N embeddings is built from an (N, N) similarity matrix, so memory
# grows as N². Two ways out, often together:
#
# 1. compute the loss **in blocks of anchors**, never holding the whole
#    matrix (`block_size=`);
# 2. **split the batch over W processes** (PyTorch DistributedDataParallel):
#    each embeds its shard, all-gathers the embeddings and computes the loss of
#    its own anchors against the whole batch (`anchors=`).
#
# Both must give the single-process loss and gradient exactly; the second is
# a classic place for silent mistakes (a gradient half as large trains, just
# worse). This notebook shows both forms equal to the dense loss, derives
# the factor W of the data-parallel loss, and checks a real `torch.distributed`
# run against refimpl (that part needs the `torch` extra, as tutorial 06 does).
#
# Course lab: two exercises simulate a data-parallel step on one process and
# predict the gradient of the classic mistake (solutions included; `python
# tutorials/build.py --student DIR` writes the version without them).

# %%
import functools
import os
import tracemalloc

import matplotlib.pyplot as plt
import numpy as np

from refimpl import ddp, gold, gradcheck
from refimpl.losses import adacon, kernel

QUICK = os.environ.get("REFIMPL_TUTORIAL_QUICK") == "1"  # the test suite runs this notebook small
rng = np.random.default_rng(0)

# %% [markdown]
# ## Why the loss is quadratic, and the two-pass blocked form
#
# WSP's kernel loss (and SupCon, NT-Xent, y-Aware, AdaCon) has the same shape
# for every anchor $t$: logits $L_{tj}$ against the other rows $j \ne t$
# ($s_{tj} = \hat z_t^\top \hat z_j / \tau$ here) and weights $P_{tj}$ on the
# positives (0 at $j = t$),
#
# $$\ell_t = c_t\, \mathrm{LSE}_t - \sum_{j \ne t} P_{tj} L_{tj},\qquad
#   \mathrm{LSE}_t = \log \sum_{j \ne t} e^{L_{tj}},\qquad c_t = \sum_{j \ne t} P_{tj}.$$
#
# The dense form builds $L$ and $P$ as (N, N) arrays and keeps the softmax
# for the backward pass. But the gradient needs only the softmax
# $p_{tj} = e^{L_{tj} - \mathrm{LSE}_t}$,
#
# $$\frac{\partial \ell_t}{\partial L_{tj}} = c_t\, p_{tj} - P_{tj},$$
#
# and $p_{tj}$ can be rebuilt from two numbers per anchor. So the blocked form
# makes **two passes** over blocks of B anchors (the idea of memory-efficient
# attention):
#
# * forward: build the (B, N) block of logits and weights, keep $\mathrm{LSE}_t$
#   and $c_t$ of its anchors, drop the block;
# * backward: rebuild each block, get $p$ from the kept $\mathrm{LSE}_t$ (no
#   second log-sum-exp), and add the block's gradient to its anchors' rows and
#   to every other row.
#
# About twice the matrix products, a few (B, N) arrays instead of (N, N). In
# refimpl it is `block_size=B`, and it computes the same numbers:

# %%
n = 256
z = rng.standard_normal((n, 16))
labels, depth = rng.integers(0, 4, n), rng.uniform(0, 1, n)
wsp_kwargs = dict(labels=labels, depth=depth, sigma=0.1, temperature=0.1)

dense, dense_cache = kernel.forward(z, **wsp_kwargs)
blocked, blocked_cache = kernel.forward(z, **wsp_kwargs, block_size=32)
dz_dense, dz_blocked = kernel.backward(1.0, dense_cache)[0], kernel.backward(1.0, blocked_cache)[0]
print(f"kernel (WSP)  loss dense {float(dense):.15f}  blocked {float(blocked):.15f}")
print(f"              largest |dz difference| {np.abs(dz_blocked - dz_dense).max():.1e}"
      f"   (largest |dz| {np.abs(dz_dense).max():.1e})")

y = rng.integers(0, 10, n) / 10                             # ties: equal labels are positives
dense, dense_cache = adacon.forward(z, y, scale=2.0)
blocked, blocked_cache = adacon.forward(z, y, scale=2.0, block_size=32)
dz_dense, dz_blocked = adacon.backward(1.0, dense_cache)[0], adacon.backward(1.0, blocked_cache)[0]
print(f"adacon        loss dense {float(dense):.15f}  blocked {float(blocked):.15f}")
print(f"              largest |dz difference| {np.abs(dz_blocked - dz_dense).max():.1e}"
      f"   (largest |dz| {np.abs(dz_dense).max():.1e})")

# %% [markdown]
# The same to float64 rounding: the sums run in another order, nothing else
# changes. Now the memory. `tracemalloc` sees NumPy's allocations, so the peak
# of one forward + backward is measured here, in this process, for growing N
# (D = 32, float64, B = 128):

# %%
def peak_mib(n, block_size):
    """Peak memory (MiB) NumPy allocates in one forward + backward of the WSP loss on N rows."""
    g = np.random.default_rng(n)
    z = g.standard_normal((n, 32))
    kwargs = dict(labels=g.integers(0, 4, n), depth=g.uniform(0, 1, n), sigma=0.1, temperature=0.1)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    loss, cache = kernel.forward(z, **kwargs, block_size=block_size)
    kernel.backward(1.0, cache)
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    return peak / 2**20


sizes = [256, 512, 1024, 2048] + ([] if QUICK else [4096])
dense_mib = [peak_mib(n, None) for n in sizes]
blocked_mib = [peak_mib(n, 128) for n in sizes]
for size, d, b in zip(sizes, dense_mib, blocked_mib):
    print(f"N = {size:>5}:  dense {d:7.1f} MiB   blocked (B = 128) {b:6.1f} MiB   one (N, N) float64 array "
          f"{size * size * 8 / 2**20:6.1f} MiB")

fig, ax = plt.subplots(figsize=(5.5, 4))
ax.loglog(sizes, dense_mib, "o-", label="dense")
ax.loglog(sizes, blocked_mib, "s-", label="blocked, B = 128")
ax.loglog(sizes, [size * size * 8 / 2**20 for size in sizes], "k:", label="one (N, N) float64 array")
ax.set_xlabel("batch size N")
ax.set_ylabel("peak memory of forward + backward (MiB)")
ax.set_title("WSP loss, D = 32, float64 (tracemalloc)")
ax.set_xticks(sizes, [str(size) for size in sizes])
ax.minorticks_off()
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The dense form holds about two (N, N) arrays (slope 2 on this log-log
# plot); the blocked form a few (B, N) blocks and the (N, D) cache (slope 1).
# At N = 65,536 in float32 one (N, N) array is 16 GiB; the blocked form runs
# it in under 1 GiB (README, "Large batches").
#
# ## Any subset of anchors: `anchors=`
#
# The blocked loop runs over *some* anchors; run it over any index set $A$
# and you get the loss of those anchors against the whole batch,
#
# $$L_A = \frac1N \sum_{t \in A} \ell_t(z),$$
#
# with its gradient with respect to **every** row of $z$ (row $j$ appears in
# anchor $t$'s softmax, and as a positive). The "mean" divides by the whole
# batch N, so over a partition of the anchors the losses and gradients add up
# to the full ones. Three parts of unequal size, drawn at random:

# %%
parts = np.array_split(rng.permutation(n), [40, 150])
losses, grads = [], []
for anchors in parts:
    loss, cache = kernel.forward(z, **wsp_kwargs, anchors=anchors)
    losses.append(float(loss))
    grads.append(kernel.backward(1.0, cache)[0])

full, full_cache = kernel.forward(z, **wsp_kwargs)
dz_full = kernel.backward(1.0, full_cache)[0]
print("anchors per part      ", [len(a) for a in parts])
print("losses of the parts   ", [round(v, 6) for v in losses])
print(f"their sum {sum(losses):.15f}   the full loss {float(full):.15f}")
print(f"largest |sum of the parts' dz - full dz| {np.abs(sum(grads) - dz_full).max():.1e}")
print("rows the first part's gradient reaches:", int(np.sum(np.any(grads[0] != 0, axis=1))), "of", n)

# %% [markdown]
# ## One rank of a data-parallel run, and the factor W
#
# With DistributedDataParallel on W processes, rank $r$ holds the shard $S_r$
# of the batch (M/W rows of M; the batch was N above, M is `refimpl.ddp`'s
# name), embeds it, $z_{S_r} = f_\theta(x_{S_r})$, and
# all-gathers everyone's embeddings into $z$ (M, D). Its loss is the loss of
# its own anchors, $L_r = \frac1M \sum_{t \in S_r} \ell_t(z)$: refimpl's
# `anchors=S_r`, and $\sum_r L_r = L$. Say each rank calls `backward` on
# $\lambda L_r$. Then:
#
# * **The all-gather's backward.** A differentiable all-gather
#   (`ddp.all_gather_with_gradient`, a `torch.autograd.Function` of a few
#   lines: its backward all-reduces the gradient and keeps the rank's own
#   slice) sends the gradient of each gathered copy back to the rank that owns
#   the rows and sums it over ranks.
#   The gradient that reaches rank $r$'s own embeddings is
#   $$\sum_s \lambda \frac{\partial L_s}{\partial z_{S_r}} = \lambda\, \frac{\partial L}{\partial z_{S_r}},$$
#   every rank's anchors' use of $r$'s rows included.
# * **DDP's all-reduce averages** the parameter gradients over the ranks:
#   $$\frac1W \sum_r \lambda\, \frac{\partial L}{\partial z_{S_r}} \frac{\partial z_{S_r}}{\partial \theta}
#     = \frac{\lambda}{W}\, \frac{\partial L}{\partial \theta}.$$
#
# So $\lambda = W$: **each rank multiplies its loss by the world size** to get
# the single-process gradient. Without it every gradient is exactly 1/W of
# the right one (with SGD, a learning rate W times too small, and a silent
# one).
#
# **What a plain `torch.distributed.all_gather` loses.** It fills
# preallocated tensors and records no graph: the gathered rows are constants.
# Rank $r$'s gradient reaches its rows only through the local tensor it used,
# typically as its anchors. With $G_{tj} = \partial L / \partial s_{tj}$ and
# $s_{tj} = \hat z_t^\top \hat z_j / \tau$, the gradient of the normalised rows
# has two sides,
#
# $$\frac{\partial L}{\partial \hat z_k} = \frac1\tau \sum_j G_{kj}\, \hat z_j
#   \;+\; \frac1\tau \sum_t G_{tk}\, \hat z_t,$$
#
# row $k$ *as an anchor* (first sum) and *as another row* in the softmax and
# positives of every anchor $t$ (second sum). A plain all-gather keeps only
# the first: about half of the gradient, but not an exact half, so no
# learning-rate factor repairs it. Replacing the rank's own gathered copy by
# its local rows (the "local-slice" trick) brings back the second sum for
# its own anchors only; the other ranks' anchors' terms still never arrive,
# unless every rank computes the loss of all M anchors.
#
# ## Exercise 1: a data-parallel step, simulated on one process
#
# A bias-free linear layer of weight $\Theta$ (D, F) embeds float64 inputs
# $x$ (M, F): $z = x\,\Theta^\top$. Write what each of W ranks holds after one
# *right* DDP step of the WSP loss (loss times W, a differentiable
# all-gather): for rank $r$ with rows `ddp.shards(M, W)[r]`,
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


# %% [markdown]
# The check: `ddp.check` compares every rank's numbers with refimpl's
# single-process gradient, and the weight's gradient is checked entry by
# entry against central differences of the full loss $L(x\Theta^\top)$.

# %%
data = ddp.example_data(m=16, seed=0)                              # x (16, 5), weight (4, 5), labels, depth
loss_kwargs = {k: data[k] for k in ("labels", "depth", "sigma", "temperature")}
wsp_loss = functools.partial(kernel.forward, **loss_kwargs)
by_hand = ddp_step_by_hand(data["x"], data["weight"], 2, loss_kwargs)
report = ddp.check(by_hand, data["x"], data["weight"], wsp_loss, kernel.backward)
print(report)
report.raise_if_failed()
(numerical,) = gradcheck.numerical_gradient(lambda w: wsp_loss(data["x"] @ w.T)[0], [data["weight"]])
result = gold.compare("dweight", by_hand[0]["dweight"], numerical, rtol=1e-6, atol=1e-9)
print(result)
result.raise_if_failed()

# %% [markdown]
# ## A real `torch.distributed` run, checked
#
# `refimpl.ddp` runs the real thing: `ddp.run(step, W, *args)` starts W
# processes on this machine (gloo backend, a timeout so that a hung group
# raises instead of hanging), each calls `step(rank, W, *args)` and returns its
# result. `ddp.example_step` is a DDP step as a user writes it: a
# `torch.nn.Linear` in `DistributedDataParallel` embeds the rank's shard in
# float64, the WSP loss of its anchors in PyTorch, `backward`, once per way of
# gathering:
#
# | variant | gather | loss scaled by W | |
# |---|---|---|---|
# | `autograd` | `ddp.all_gather_with_gradient` (backward: all-reduce, own slice) | yes | right |
# | `replace_all` | plain, own copy replaced by the local rows; loss of **all** M anchors | yes | right (M² work per rank) |
# | `plain` | `torch.distributed.all_gather` | yes | the gathered rows carry no gradient |
# | `unscaled` | differentiable | **no** | 1/W of the gradient |
# | `replace_local` | plain, own copy replaced by the local rows; loss of the rank's anchors | yes | the other ranks' terms lost |
#
# Spawned processes import the step function by name, so it must live in a
# module (`refimpl.ddp.example_step`, or your own file): a function defined in
# a notebook cannot be spawned.

# %%
world_size = 2
results = ddp.run(ddp.example_step, world_size, data, timeout=120)   # two processes, one step each
reports = {}
for gather in ddp.RIGHT + ddp.WRONG:
    reports[gather] = ddp.check([r[gather] for r in results], data["x"], data["weight"], wsp_loss,
                                kernel.backward)
    print(f"{gather} ({'a right gather' if gather in ddp.RIGHT else 'a classic mistake'})\n{reports[gather]}\n")

# %% [markdown]
# The right variants agree with refimpl to float64 rounding on every rank.
# Each mistake is caught on every gradient; `got / expected` is the
# least-squares factor $c$ between the two. Is the mistake *only* a factor?
# Rescaled by $c$, a gradient that is a multiple of the right one agrees to
# rounding again; one that points elsewhere does not:

# %%
want = ddp.expected(data["x"], data["weight"], wsp_loss, kernel.backward, world_size)
gathers = ddp.RIGHT + ddp.WRONG


def factor_and_residual(got, right):
    """The least-squares factor c (got ~ c * right) and max |got - c right| / max |right|."""
    c = np.sum(got * right) / np.sum(right * right)
    return c, np.abs(got - c * right).max() / np.abs(right).max()


fits = {}
for gather in gathers:
    for quantity in ("dz", "dweight"):
        got = np.concatenate([r[gather][quantity] for r in results])  # both ranks
        right = np.concatenate([w[quantity] for w in want])
        fits[gather, quantity] = factor_and_residual(got, right)
        print(f"{gather:<14} {quantity:<8} factor {fits[gather, quantity][0]:.6f}   "
              f"left after rescaling {fits[gather, quantity][1]:.1e}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
x = np.arange(len(gathers))
for offset, quantity, colour in ((-0.2, "dz", "tab:blue"), (0.2, "dweight", "tab:orange")):
    factors = [fits[g, quantity][0] for g in gathers]
    residuals = [max(fits[g, quantity][1], 1e-17) for g in gathers]  # log axis: exact zeros drawn at 1e-17
    axes[0].bar(x + offset, factors, width=0.4, color=colour, label=quantity)
    axes[1].bar(x + offset, residuals, width=0.4, color=colour, label=quantity)
axes[0].axhline(1.0, color="k", lw=1, label="right: 1")
axes[0].axhline(1 / world_size, color="k", ls=":", lw=1, label="1/W")
axes[0].set_ylim(0, 1.35)
axes[0].set_ylabel("got / expected (least squares)")
axes[0].set_title("the factor each gradient is off by")
axes[0].legend(loc="upper right", ncol=2, fontsize=8)
axes[1].set_yscale("log")
axes[1].axhline(1e-8, color="k", ls=":", lw=1, label="the check's tolerance")
axes[1].set_ylabel("relative error after rescaling")
axes[1].set_title("what no factor repairs")
axes[1].legend(loc="center left", fontsize=8)
for ax in axes:
    ax.set_xticks(x, [f"{g}\n({'right' if g in ddp.RIGHT else 'mistake'})" for g in gathers], fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# `unscaled` is off by exactly 1/W and nothing else: multiply the loss by W.
# `plain` and `replace_local` are off by a factor *and* in direction: their
# fitted factor is a fit, not a fix, as the derivation said (`plain`'s
# factor is near 1/2 because, summed over the batch, the anchor side and the
# other side of the gradient are of similar size). The next exercise predicts
# `plain`'s numbers exactly.
#
# ## Exercise 2: the gradient a plain all-gather gives
#
# In `example_step`'s `plain` variant, rank $r$ uses its local rows as the
# anchors and the gathered (constant) copy as the other rows, scales its loss
# by W and steps backward. Predict, in NumPy, what reaches its embeddings:
# W times the **anchor side** of the gradient of its rows,
# $\frac1\tau \sum_j G_{kj}\, \hat z_j$ for $k \in S_r$, taken back through the
# normalisation $\hat z_k = z_k / \lVert z_k \rVert$ as in tutorial 03,
#
# $$\frac{\partial L}{\partial z_k} = \frac{\partial L / \partial \hat z_k
#   - \hat z_k\, (\hat z_k^\top \partial L / \partial \hat z_k)}{\lVert z_k \rVert}.$$
#
# $G_{tj} = \frac1M (c_t\, p_{tj} - \tilde w_{tj})$ for the "mean", with
# $c_t = \sum_j \tilde w_{tj}$ (1, or 0 without positives); the teaching
# form `kernel.forward_naive` keeps the softmax `prob` $p$, the normalised
# weights `weights` $\tilde w$ and the normalised rows `zn` in its cache.

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


# %% [markdown]
# The check: your prediction against what the two `torch.distributed`
# processes computed in their `plain` step, entry by entry.

# %%
predicted = plain_gather_dz(data["x"] @ data["weight"].T, world_size, loss_kwargs)
for rank in range(world_size):
    result = gold.compare(f"dz (rank {rank})", predicted[rank], results[rank]["plain"]["dz"], rtol=1e-9, atol=1e-12)
    print(result)
    result.raise_if_failed()

# %% [markdown]
# After DDP's average, the plain gather's weight gradient is the anchor side
# of the right one (W and 1/W cancel), the other side missing. Entry by entry
# the ratio to the right gradient is no single number (it is largest where
# the right entry is near 0):

# %%
plain_dweight = results[0]["plain"]["dweight"]
right_dweight = want[0]["dweight"]
print("plain / right, entry by entry (a right gradient would print 1):")
print(np.round(plain_dweight / right_dweight, 3))
anchor_side = np.concatenate(predicted) / world_size               # your exercise 2, without the W
print(gold.compare("plain dweight vs the anchor side", plain_dweight, anchor_side.T @ data["x"], rtol=1e-9))

# %% [markdown]
# ## Check your own data-parallel loss
#
# Write your step as `step(rank, world_size, *args)` in a module of your own,
# on float64 inputs `x` embedded by a bias-free linear layer of weight
# (D, F), returning `dict(dz=z_local.grad, dweight=layer.weight.grad,
# loss=your_rank_loss)`; then
#
# ```python
# results = ddp.run(step, 2, data)
# print(ddp.check(results, data["x"], data["weight"], functools.partial(kernel.forward, labels=...),
#                 kernel.backward))
# ```
#
# `adacon.forward` takes the same `anchors=`. From a shell, `python -m
# refimpl.ddp --world-size 3` runs this notebook's check with three
# processes (README, "Check a data-parallel loss").
