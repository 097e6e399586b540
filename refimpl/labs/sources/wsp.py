# %% [markdown]
# # Lab · WSP: the composite kernel, its weights, and the loss's backward pass
#
# Sarfati et al. (MICCAI 2023) weigh the positives of a contrastive loss by a
# composite kernel: two slices of the same weak class are positives, more so
# when they come from similar depths (tutorial 03 reads the paper and its
# erratum; this lab is graded). Two exercises, each followed by its check
# cells. The checks compare what your functions return with reference values
# stored with refimpl; when your work is graded, each check runs again on
# other inputs.
#
# **Rules.** Write the functions with NumPy. An exercise may not call
# refimpl's kernel and SupCon losses (`refimpl.losses.kernel`: `forward`,
# `backward` and their `_naive` forms; `refimpl.losses.supcon`: `forward`,
# `backward`, `ntxent_forward`): the checks run with them unavailable, and a
# call to one scores nothing. Each check gives your function the reference
# results of the exercises before it, so a mistake in Exercise 1 costs
# Exercise 1's points only.

# %%
import numpy as np

# %% [markdown]
# ## Exercise 1: the composite kernel and its weights (1 + 1 points)
#
# `composite_kernel`: Eq. 2 for M samples as an (M, M) matrix,
#
# $$w_{tj} = \delta(y_t - y_j)\; \exp\!\Big(-\frac{(d_t - d_j)^2}{2\sigma^2}\Big),$$
#
# with the anchor excluded: $w_{tt} = 0$ (an anchor is not its own positive).
#
# `normalise_per_anchor`: the weights of Eq. 4, normalised per anchor (per
# row), $\tilde w_{tj} = w_{tj} / \sum_{k \ne t} w_{tk}$. An anchor whose label
# no other sample has has no positive: Eq. 4's sum is empty, so its row of
# $\tilde w$ is 0 (not 0/0). Each function has its own check.

# %%
# from tutorial 03_wsp: composite_kernel

# %%
# check: composite_kernel — w of six slices, three classes, one class with a single slice
lab.check("composite_kernel", lambda case: composite_kernel(case["labels"], case["depth"], case["sigma"]),
          globals())
### BEGIN HIDDEN TESTS
lab.check("composite_kernel", lambda case: composite_kernel(case["labels"], case["depth"], case["sigma"]),
          globals(), case="hidden", quiet=True)
### END HIDDEN TESTS

# %%
# check: normalise_per_anchor — w_tilde from the reference w (sample 5 has no positive)
lab.check("normalise_per_anchor", lambda case: normalise_per_anchor(case["w"]), globals())
### BEGIN HIDDEN TESTS
lab.check("normalise_per_anchor", lambda case: normalise_per_anchor(case["w"]), globals(), case="hidden", quiet=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the loss's backward pass (3 points)
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
# `wsp_backward` returns `(dz,)`, `dz` (M, D) of the loss times `dout`. The
# forward calls your Exercise 1; the check gives it reference weights instead.

# %%
# from tutorial 03_wsp: wsp_backward

# %%
# check: wsp_backward — dz of six embeddings with the reference weights, for an upstream dout
def wsp_check(case):
    cache = wsp_forward(case["z"], case["labels"], case["depth"], sigma=case["sigma"], tau=case["tau"])[1]
    return wsp_backward(case["dout"], cache)


lab.check("wsp_backward", wsp_check, globals())
### BEGIN HIDDEN TESTS
lab.check("wsp_backward", wsp_check, globals(), case="hidden", quiet=True)
### END HIDDEN TESTS
