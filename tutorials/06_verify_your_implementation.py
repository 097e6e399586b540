# %% [markdown]
# # 06 · Verify your implementation against refimpl's gold data
#
# You wrote WSP's kernel-weighted contrastive loss in PyTorch (or JAX, or C++).
# Is it right? Comparing with the paper by eye is not a check. refimpl ships
# **gold data**: for every loss, layer and TinyNet, float64 inputs, an upstream
# gradient `dout`, and the outputs and gradients refimpl computes (each checked
# against naive loops, central differences and an independent PyTorch version).
# This notebook checks a PyTorch WSP loss against it, plants a classic bug,
# and reads the report that finds it.

# %%
import numpy as np
import torch

from refimpl import gold

torch.set_default_dtype(torch.float64)
print(gold.cases("kernel*"))

# %% [markdown]
# A case is a set of named arrays plus the keyword arguments of the call. The
# loss's gradient is stored for `sum(out * dout)`, so one backward call with
# `dout` gives every gradient, whatever the reduction.

# %%
case = gold.load("kernel-wsp-mean")
print(case.description)
print(case.kwargs)
for name, role in case.roles.items():
    print(f"{name:>6}  {role:<7} {case.arrays[name].shape}")

# %% [markdown]
# ## A PyTorch implementation of WSP (Sarfati et al., MICCAI 2023, Eq. 4)
#
# $$\ell_t = -\sum_{j \ne t} \frac{w_{tj}}{\sum_{k \ne t} w_{tk}}
#   \log \frac{e^{s_{tj}/\tau}}{\sum_{k \ne t} e^{s_{tk}/\tau}},\qquad
#   w_{tj} = \delta(y_t, y_j)\, e^{-(d_t - d_j)^2 / 2\sigma^2}$$
#
# with cosine similarities $s$. An implementation is a function from the case's
# inputs (a dict of NumPy arrays and keyword arguments) to its outputs and
# gradients.

# %%
def wsp_torch(z, labels, depth, sigma, temperature, anchor_in_denominator=False):
    z = torch.nn.functional.normalize(z, dim=1)
    m = z.shape[0]
    eye = torch.eye(m, dtype=torch.bool)
    w = (labels[:, None] == labels[None, :]).double() * torch.exp(-(depth[:, None] - depth[None, :]) ** 2
                                                                    / (2 * sigma**2))
    w = w.masked_fill(eye, 0.0)
    total = w.sum(dim=1, keepdim=True)
    w = w / torch.where(total > 0, total, torch.ones_like(total))  # anchors without positives: 0
    logits = z @ z.T / temperature
    if not anchor_in_denominator:
        logits = logits.masked_fill(eye, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1).masked_fill(eye, 0.0)
    return -(w * log_prob).sum(dim=1).mean()


def as_gold_function(loss_fn):
    """Wrap a torch loss as gold's fn(inputs) -> {"out", "dz"}."""
    def fn(inputs):
        z = torch.tensor(inputs["z"], requires_grad=True)
        loss = loss_fn(z, torch.tensor(inputs["labels"]), torch.tensor(inputs["depth"]),
                       inputs["sigma"], inputs["temperature"])
        (loss * torch.tensor(inputs["dout"])).backward()
        return {"out": loss.detach().numpy(), "dz": z.grad.numpy()}
    return fn


report = gold.verify("kernel-wsp-mean,kernel-wsp-tau0.02", as_gold_function(wsp_torch))
print(report)

# %% [markdown]
# Both cases pass in float64 (to rtol 1e-9). The small temperature case
# (τ = 0.02) is the one that catches an implementation without the row-max
# shift: its logits reach 50.
#
# ## A planted bug: the anchor left in its own denominator
#
# Forgetting to mask $k = t$ in the softmax denominator is the most common
# mistake in contrastive losses. The loss still decreases, training still
# "works". The gold check does not let it pass, and says where:

# %%
buggy = as_gold_function(lambda *a: wsp_torch(*a, anchor_in_denominator=True))
report = gold.verify("kernel-wsp-mean", buggy)
print(report)
assert not report.ok

# %% [markdown]
# Every entry of `dz` is wrong here (the self-similarity term touches every
# row), and the report lists the worst ones with their indices, so you can
# compare one row by hand.
#
# ## Systematic errors: the report names a likely cause
#
# Some bugs leave a signature. Forgetting to multiply the gradient by the
# upstream gradient `dout` makes every entry of `dz` off by the same factor,
# `1/dout`; the report says so in a `likely cause:` line (a wrong reduction,
# an average over the anchors with positives only, a flipped sign, a
# transpose, float32 saved as float64, a temperature applied twice are named
# the same way). `kernel-clean` is the case to pass first: default
# arguments, and every anchor has a positive.

# %%
def without_dout(inputs):
    results = as_gold_function(wsp_torch)(inputs)
    return {"out": results["out"], "dz": results["dz"] / inputs["dout"]}


report = gold.verify("kernel-clean", without_dout)
print(report.cases[0].diagnosis)
assert not report.ok

# %% [markdown]
# ## float32 and other frameworks
#
# Results in float32 are compared with the float32 tolerances stored in the
# manifest (rtol 1e-3 here), so a float32 training implementation can be
# checked as it is:

# %%
def wsp_torch_float32(inputs):
    results = as_gold_function(wsp_torch)(inputs)
    return {k: v.astype(np.float32) for k, v in results.items()}


print(gold.verify("kernel-wsp-mean", wsp_torch_float32))

# %% [markdown]
# Outside Python, the command line does the same through files:
#
# ```bash
# refimpl gold export --case kernel-wsp --out gold-in     # inputs + cases.json (kwargs, keys expected back)
# # ... compute, and save results/<case>.npz with keys "out", "dz" ...
# refimpl gold verify results/                           # PASS/FAIL per case, worst entries, exit status
# ```
#
# ## Exercise: the ConPro margin loss
#
# ConPro's Con step (Nguyen et al., CVPR-W 2024, Eq. 1–2, `variant="paper"`):
# with the cosine distance $d = 1 - \cos(a, b)$ of each pair and `same` in {0, 1},
#
# $$\ell = \frac1N \sum_i \Big[ y_i\, d_i + (1 - y_i)\, \max(0,\ m - d_i) \Big].$$
#
# Write it in PyTorch; the check cell below compares it with gold.

# %%
def margin_torch(a, b, same, margin):
    ### BEGIN SOLUTION
    d = 1 - torch.nn.functional.cosine_similarity(a, b, dim=1, eps=0.0)
    return (same * d + (1 - same) * torch.clamp(margin - d, min=0)).mean()
    ### END SOLUTION


def margin_gold(inputs):
    a = torch.tensor(inputs["a"], requires_grad=True)
    b = torch.tensor(inputs["b"], requires_grad=True)
    loss = margin_torch(a, b, torch.tensor(inputs["same"]).double(), inputs["margin"])
    (loss * torch.tensor(inputs["dout"])).backward()
    return {"out": loss.detach().numpy(), "da": a.grad.numpy(), "db": b.grad.numpy()}


# %%
report = gold.verify("margin-paper-mean", margin_gold)  # check: must print PASS
print(report)
report.raise_if_failed()
