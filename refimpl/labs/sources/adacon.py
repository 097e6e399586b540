# %% [markdown]
# # Lab · AdaCon: the labels' ECDF and the adaptive margin
#
# Dai et al. (IEEE TMI) add to a regression a contrastive term whose margin
# between two samples grows with how far apart their labels are *in rank*
# (tutorial 04 reads the paper; this lab is graded). Two exercises, each with
# a check cell right after it. The checks compare what your function returns
# with reference values stored with refimpl; when your work is graded, each
# check runs again on other inputs.
#
# **Rules.** Write the functions with NumPy. An exercise may not call
# refimpl's AdaCon functions (`refimpl.losses.adacon`: `ecdf`, `margin`,
# `forward`, `backward` and their `_naive` forms): the checks run with them
# unavailable, and a call to one scores nothing. Each check gives your
# function the reference results of the exercises before it, so a mistake in
# Exercise 1 costs Exercise 1's points only.

# %%
import numpy as np

# %% [markdown]
# ## Exercise 1: the ECDF (2 points)
#
# Eq. 5, the ECDF of labels `y` (M,) over a population of $n$ labels
# $y'_1..y'_n$ (by default the batch itself):
#
# $$F(y_i) = \frac1n \sum_{k=1}^{n} \mathbb 1[y'_k \le y_i].$$
#
# Mind the ties: with $\le$, equal labels share the *largest* rank of their
# group, e.g. `[0.3, 0.1, 0.3, 0.7]` → `[0.75, 0.25, 0.75, 1.0]` (a rank from
# `argsort` would give them different values).

# %%
# from tutorial 04_adacon: ecdf

# %%
# check: ecdf — F of labels with ties over a population that lacks some of them
lab.check("ecdf", lambda case: ecdf(case["y"], case["population"]), globals())
### BEGIN HIDDEN TESTS
lab.check("ecdf", lambda case: ecdf(case["y"], case["population"]), globals(), case="hidden", quiet=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the margin (2 points)
#
# Eq. 4, the margin of every pair of the batch, (M, M), from your `ecdf`:
#
# $$d_{ia} = 2\,|F(y_i) - F(y_a)|.$$

# %%
# from tutorial 04_adacon: adaptive_margin

# %%
# check: adaptive_margin — d over the same population, with the reference ecdf in place of yours
lab.check("adaptive_margin", lambda case: adaptive_margin(case["y"], case["population"]), globals())
### BEGIN HIDDEN TESTS
lab.check("adaptive_margin", lambda case: adaptive_margin(case["y"], case["population"]), globals(),
          case="hidden", quiet=True)
### END HIDDEN TESTS
