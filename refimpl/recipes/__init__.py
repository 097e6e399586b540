"""Training recipes: each paper's pipeline end to end, its claims computed from the metrics.

One module per paper, each with ``default_config(fast=False) -> dict`` (every
hyperparameter) and ``run(*, seed=0, fast=False, backend="numpy",
dtype="float32", out_dir=None, data=None, progress=True, **overrides) ->
dict`` returning the ``metrics.json`` dictionary ``{"recipe", "seed",
"methods": {name: {metric: value}}, "claims": [{"claim", "holds",
"evidence", "effect"}]}``. With ``out_dir`` a run also writes
``metrics.json``, ``config.json``, PNG figures and the trained parameters
(``.npz``). ``data=`` runs a recipe on the user's own arrays (each module's
docstring says what it takes). Each module also has ``claims_from(methods,
cfg) -> list``, the claims computed from the metrics alone (the tests hold
``metrics.json`` to it), and ``CLAIM_NOTES``, why a claim may not hold
(used by ``refimpl run claims``).

- ``conpro``: ConPro (Nguyen et al., CVPR-W 2024), Con then PrO step, on ordinal severity;
- ``wsp``: WSP (Sarfati et al., MICCAI 2023), kernel contrastive pretraining on volumes;
- ``adacon``: AdaCon (Dai et al., IEEE TMI), adaptive-margin contrastive regression;
- ``augscale``: augmentation scale for self-supervised pretraining (Cheng et al.).

The command line is ``refimpl run <recipe|all>`` (:mod:`refimpl.recipes.cli`).
"""
from __future__ import annotations

import importlib

RECIPES = ("conpro", "wsp", "adacon", "augscale")


def module(name: str):
    """The module of recipe ``name``."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {list(RECIPES)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def run(name: str, **kwargs) -> dict:
    """Run recipe ``name`` (keywords as its ``run``); returns its metrics dictionary."""
    return module(name).run(**kwargs)
