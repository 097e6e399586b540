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

lab = labs.load("adacon")

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
def ecdf(y, population=None):
    """F(y_i) (M,): the fraction of the population (default: y itself) at or below y_i (Eq. 5)."""
    population = y if population is None else population
    ### BEGIN SOLUTION
    at_or_below = population[None, :] <= y[:, None]                # (M, n)
    F = at_or_below.mean(axis=1)
    ### END SOLUTION
    return F


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
def adaptive_margin(y, population=None):
    """d (M, M) from your ecdf (Eq. 4); 0 between equal labels."""
    ### BEGIN SOLUTION
    F = ecdf(y, population)
    d = 2 * np.abs(F[:, None] - F[None, :])                        # (M, 1) - (1, M)
    ### END SOLUTION
    return d


# %%
# check: adaptive_margin — d over the same population, with the reference ecdf in place of yours
lab.check("adaptive_margin", lambda case: adaptive_margin(case["y"], case["population"]), globals())
### BEGIN HIDDEN TESTS
lab.check("adaptive_margin", lambda case: adaptive_margin(case["y"], case["population"]), globals(),
          case="hidden", quiet=True)
### END HIDDEN TESTS
