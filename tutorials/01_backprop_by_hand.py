# %% [markdown]
# # 01 · Backprop by hand: a convolution and a contrastive loss
#
# Every layer and loss in refimpl is a pair of pure functions,
# `forward(inputs) -> (out, cache)` and `backward(dout, cache) -> gradients`,
# written by hand: no autograd. This notebook derives two backward passes on
# paper, codes them, and checks them with refimpl's gradient checker, which
# compares every entry with central differences and says *which* entry is
# wrong. Two exercises (solutions included; `python tutorials/build.py
# --student DIR` writes the version without them).

# %%
import numpy as np

from refimpl import gradcheck
from refimpl.layers import conv2d
from refimpl.losses import kernel

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Convolution
#
# PyTorch's `conv2d` is a cross-correlation. With a stride of 1 and no padding,
#
# $$\mathrm{out}_{n,f,p,q} = b_f + \sum_{c,i,j} w_{f,c,i,j}\, x_{n,c,p+i,q+j}.$$
#
# Each output depends linearly on a window of `x` and on `w`, so for an upstream
# gradient `dout` (same shape as `out`) the chain rule gives sums over the
# positions where each entry was used:
#
# $$dw_{f,c,i,j} = \sum_{n,p,q} dout_{n,f,p,q}\, x_{n,c,p+i,q+j},\qquad
#   db_f = \sum_{n,p,q} dout_{n,f,p,q},\qquad
#   dx_{n,c,p+i,q+j} \mathrel{+}= \sum_f dout_{n,f,p,q}\, w_{f,c,i,j}.$$
#
# **Exercise 1.** Write the backward pass with loops over the output positions
# `(p, q)`, vectorised over `n`, `f` and `c`.

# %%
def conv_forward(x, w, b):
    """out (N, F, OH, OW) and the cache; stride 1, no padding."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    out = np.empty((n, f, h - kh + 1, wd - kw + 1))
    for p in range(out.shape[2]):
        for q in range(out.shape[3]):
            window = x[:, :, p:p + kh, q:q + kw]                       # (N, C, KH, KW)
            out[:, :, p, q] = np.einsum("ncij,fcij->nf", window, w) + b
    return out, (x, w)


def conv_backward(dout, cache):
    x, w = cache
    _, _, kh, kw = w.shape
    ### BEGIN SOLUTION
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for p in range(dout.shape[2]):
        for q in range(dout.shape[3]):
            g = dout[:, :, p, q]                                       # (N, F)
            dw += np.einsum("nf,ncij->fcij", g, x[:, :, p:p + kh, q:q + kw])
            dx[:, :, p:p + kh, q:q + kw] += np.einsum("nf,fcij->ncij", g, w)
    db = dout.sum(axis=(0, 2, 3))
    ### END SOLUTION
    return dx, dw, db


# %% [markdown]
# The check: every entry of `dx`, `dw` and `db` against central differences in
# float64 (a few hundred forward passes on these small arrays).

# %%
x, w, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
report = gradcheck.check_gradients(conv_forward, conv_backward, [x, w, b])
print(report)
assert report.ok

# %% [markdown]
# Both agree with refimpl's layer, which does the same with one matrix product
# per pass (im2col):

# %%
out, cache = conv2d.forward(x, w, b)
dout = rng.standard_normal(out.shape)
ours = conv_backward(dout, conv_forward(x, w, b)[1])
theirs = conv2d.backward(dout, cache)
print([float(np.abs(a - t).max()) for a, t in zip(ours, theirs)])

# %% [markdown]
# ### A planted mistake, found entry by entry
#
# A classic slip: flipping the kernel in `dx` (convolution instead of
# cross-correlation). The report names the input and the entries that are off:

# %%
def conv_backward_flipped(dout, cache):
    dx, dw, db = conv_backward(dout, cache)
    x, w = cache
    dx_flipped, _, _ = conv_backward(dout, (x, w[:, :, ::-1, ::-1]))
    return dx_flipped, dw, db


report = gradcheck.check_gradients(conv_forward, conv_backward_flipped, [x, w, b])
print(report)
print("worst entry of dx:", report.inputs[0].worst[0].index)

# %% [markdown]
# ## 2. A contrastive loss (SupCon, WSP with labels only)
#
# For embeddings $z_1..z_M$ (rows, not normalised here), logits
# $s_{ij} = z_i^\top z_j / \tau$ and positives $P(i)$ (the other rows with
# the label of $i$), each anchor with positives contributes
#
# $$\ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)} \log
#   \frac{e^{s_{ip}}}{\sum_{k \ne i} e^{s_{ik}}},\qquad L = \frac1M \sum_i \ell_i .$$
#
# The derivative through the log-softmax of row $i$ is
# $\partial \ell_i / \partial s_{ij} = p_{ij} - [j \in P(i)] / |P(i)|$
# (softmax $p_{ij}$ over $j \ne i$). Each $s_{ij}$ involves $z_i$ and $z_j$,
# so with $G = \partial L / \partial s$ (an $M \times M$ matrix)
#
# $$\frac{\partial L}{\partial z} = \frac{1}{\tau} (G + G^\top)\, z .$$
#
# **Exercise 2.** Write the backward pass from the forward's cache.

# %%
def supcon_forward(z, labels, tau=0.5):
    m = len(z)
    logits = z @ z.T / tau
    np.fill_diagonal(logits, -np.inf)                                  # k != i
    logits -= logits.max(axis=1, keepdims=True)                        # stabiliser: exact
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    pos = (labels[:, None] == labels[None, :]) & ~np.eye(m, dtype=bool)
    n_pos = pos.sum(axis=1)
    log_prob = np.log(np.where(pos, prob, 1.0))
    per_anchor = np.where(n_pos > 0, -(pos * log_prob).sum(axis=1) / np.maximum(n_pos, 1), 0.0)
    return per_anchor.mean(), (z, prob, pos, n_pos, tau)


def supcon_backward(dout, cache):
    z, prob, pos, n_pos, tau = cache
    m = len(z)
    ### BEGIN SOLUTION
    has_pos = (n_pos > 0)[:, None]
    g = dout / m * has_pos * (prob - pos / np.maximum(n_pos, 1)[:, None])   # dL/ds, (M, M)
    dz = (g + g.T) @ z / tau
    ### END SOLUTION
    return (dz,)


# %%
z, labels = rng.standard_normal((6, 3)), np.array([0, 0, 1, 1, 1, 2])   # label 2: no positive
report = gradcheck.check_gradients(lambda z: supcon_forward(z, labels), supcon_backward, [z])
print(report)
assert report.ok

# %% [markdown]
# The same value as refimpl's kernel loss with labels only and no
# normalisation (WSP Eq. 4 with a Dirac kernel is SupCon):

# %%
loss, _ = supcon_forward(z, labels)
ref, _ = kernel.forward(z, labels=labels, temperature=0.5, normalize=False)
print(float(loss), float(ref))
assert abs(float(loss) - float(ref)) < 1e-12
