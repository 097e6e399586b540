# %% [markdown]
# # Lab · ConPro: the backward passes of the Con and PrO steps
#
# Nguyen et al. (CVPR-W 2024) learn a severity-ordered representation with a
# margin loss on cosine distances (the Con step, Eq. 1–2) and a
# Bradley–Terry preference loss on the distance to a normality anchor (the
# PrO step, Eq. 3–4); tutorial 02 reads the paper and its errata, this lab is
# graded. Three exercises derive the backward passes by hand, each with a
# check cell right after it. The checks compare what your function returns
# with reference gradients stored with refimpl; when your work is graded,
# each check runs again on other inputs.
#
# **Rules.** Write the functions with NumPy. An exercise may not call
# refimpl's ConPro losses (`refimpl.losses.margin` and
# `refimpl.losses.preference`: `forward`, `backward` and their `_naive` forms),
# nor, in Exercise 1, refimpl's normalisation backward
# (`refimpl.losses._common.l2_normalize_backward`): the checks run with them
# unavailable, and a call to one scores nothing. Exercises 2 and 3
# call your `cosine_backward`; their checks give them a reference one
# instead, so a mistake in Exercise 1 costs Exercise 1's points only.

# %%
import numpy as np

# %% [markdown]
# ## Exercise 1: the cosine's backward pass (2 points)
#
# Both ConPro losses see the embeddings only through cosines, so start with
# the cosine of two rows, $c = \hat a^\top \hat b$ with
# $\hat a = a / \lVert a \rVert$. As
# $\partial \hat a / \partial a = (I - \hat a \hat a^\top) / \lVert a \rVert$,
#
# $$\frac{\partial c}{\partial a} = \frac{\hat b - c\, \hat a}{\lVert a \rVert},\qquad
#   \frac{\partial c}{\partial b} = \frac{\hat a - c\, \hat b}{\lVert b \rVert}.$$
#
# From the upstream gradient `dcos` (N,) and the forward's cache, return `da`
# and `db` (N, D).

# %%
# from tutorial 02_conpro: cosine_backward

# %%
# check: cosine_backward — da, db of four pairs of rows for an upstream gradient dcos
lab.check("cosine_backward", lambda case: cosine_backward(case["dcos"], cosine_forward(case["a"], case["b"])[1]),
          globals())
### BEGIN HIDDEN TESTS
lab.check("cosine_backward", lambda case: cosine_backward(case["dcos"], cosine_forward(case["a"], case["b"])[1]),
          globals(), case="hidden", quiet=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the Con step's backward pass (2 points)
#
# Eq. 1 (paper variant, $d = 1 - \cos$, mean over the N pairs),
# $\ell_k = y_k d_k + (1 - y_k) \max(0, m - d_k)$. The term of pair $k$ has
# the slope
#
# $$\frac{\partial \ell_k}{\partial d_k} = y_k - (1 - y_k)\,[m - d_k > 0]$$
#
# (0 at the kink $d_k = m$, as ReLU), so
# $\partial L / \partial c_k = -\frac1N\, \partial \ell_k / \partial d_k$
# times `dout`; your `cosine_backward` does the rest. The check uses
# $m = 1$ (with the paper's $m = 2$ the hinge of a different-class pair is
# always on) and an upstream `dout` that is not 1.

# %%
# from tutorial 02_conpro: margin_backward

# %%
# check: margin_backward — da, db of eight pairs, some hinges off, m = 1
def margin_check(case):
    cache = margin_forward(case["margin_a"], case["margin_b"], case["same"], m=case["m"])[1]
    return margin_backward(case["dout"], cache)


lab.check("margin_backward", margin_check, globals())
### BEGIN HIDDEN TESTS
lab.check("margin_backward", margin_check, globals(), case="hidden", quiet=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3: the Bradley–Terry gradient (3 points)
#
# The reward of an embedding is its cosine distance to the anchor $\pi_0$,
# the mean of R normal reference embeddings: $r(u) = 1 - \cos(u, \pi_0)$.
# With $c_{ik} = \cos(u_{ik}, \pi_0)$ and the reward gap
# $g_k = r_{ik} - r_{jk} = c_{jk} - c_{ik}$, Eq. 4 (sign fixed) gives
#
# $$\ell_k = -p_k \log \sigma(g_k) - (1 - p_k) \log \sigma(-g_k),\qquad
#   \frac{\partial \ell_k}{\partial g_k} = \sigma(g_k) - p_k .$$
#
# Then `cosine_backward` for each cosine: $c_{ik}$ receives
# $-\partial L / \partial g_k$ and $c_{jk}$ receives $+\partial L / \partial g_k$;
# the anchor, shared by every pair, collects its gradients from both cosines
# of all pairs, and each of the R references gets $1/R$ of it. Return
# `du_i`, `du_j` (N, D) and `drefs` (R, D) of the mean over the pairs times
# `dout`.

# %%
# from tutorial 02_conpro: preference_backward

# %%
# check: preference_backward — du_i, du_j, drefs of five pairs with soft preferences, three references
def preference_check(case):
    cache = preference_forward(case["u_i"], case["u_j"], case["refs"], case["p"])[1]
    return preference_backward(case["dout"], cache)


lab.check("preference_backward", preference_check, globals())
### BEGIN HIDDEN TESTS
lab.check("preference_backward", preference_check, globals(), case="hidden", quiet=True)
### END HIDDEN TESTS
