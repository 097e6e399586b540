"""Students' answers to the course labs, for the tests: one wrong answer per exercise, and the shortcuts.

``WRONG[lab][exercise]`` is an edit of the solution cell (``old`` -> ``new``)
that makes a typical mistake; ``SHORTCUTS[lab][exercise]`` replaces the
solution cell by code that calls the library's function instead of writing
it, for every exercise where refimpl has one (the WSP lab's functions take
arrays refimpl's losses do not take, so it has none).
"""
from __future__ import annotations

WRONG = {
    "conpro": {
        "cosine_backward": ("db = dcos * (a_hat", "db = -dcos * (a_hat"),  # a sign
        "margin_backward": ("dcos = -dout * dper_dd", "dcos = -dper_dd"),  # dout forgotten
        "preference_backward": ("np.tile(danchor / n_refs,", "np.tile(danchor,"),  # pi_0 is a mean
    },
    "wsp": {
        "composite_kernel": ("np.fill_diagonal(w, 0.0)", "pass"),  # the anchor as its own positive
        "normalise_per_anchor": ("w.sum(axis=1, keepdims=True)", "w.sum(axis=0, keepdims=True)"),  # the columns
        "wsp_backward": ("dzn = (g + g.T) @ zn", "dzn = g @ zn"),  # only the anchor side
    },
    "adacon": {
        "ecdf": ("population[None, :] <= y[:, None]", "population[None, :] < y[:, None]"),  # ties
        "adaptive_margin": ("d = 2 * np.abs(", "d = np.abs("),  # Eq. 4's factor 2
    },
    "data_parallel": {
        "ddp_step_by_hand": ("[world_size * dz[s] for s in shards]", "[dz[s] for s in shards]"),  # loss not x W
        "plain_gather_dz": ("dz = world_size * (", "dz = ("),  # loss not x W
    },
}

SHORTCUTS = {
    "conpro": {
        "cosine_backward": '''\
from refimpl.losses._common import NormCache, l2_normalize_backward


def cosine_backward(dcos, cache):
    a_hat, b_hat, a_norm, b_norm = cache
    never = np.zeros(a_norm.shape, dtype=bool)
    dcos = dcos[:, None]
    return (l2_normalize_backward(dcos * b_hat, NormCache(a_hat, a_norm, never)),
            l2_normalize_backward(dcos * a_hat, NormCache(b_hat, b_norm, never)))
''',
        "margin_backward": '''\
from refimpl.losses import margin


def margin_backward(dout, cache):
    (a_hat, b_hat, a_norm, b_norm), d, same, m = cache
    _, loss_cache = margin.forward(a_hat * a_norm, b_hat * b_norm, same, margin=m)
    return margin.backward(dout, loss_cache)
''',
        "preference_backward": '''\
from refimpl.losses import preference


def preference_backward(dout, cache):
    (ui_hat, anchor_hat, ui_norm, anchor_norm), (uj_hat, _, uj_norm, _), gap, p, n_refs = cache
    refs = np.tile(anchor_hat[0] * anchor_norm[0], (n_refs, 1))   # R copies of the anchor: the same mean
    _, loss_cache = preference.forward(ui_hat * ui_norm, uj_hat * uj_norm, refs, p)
    return preference.backward(dout, loss_cache)
''',
    },
    "adacon": {
        "ecdf": '''\
def ecdf(y, population=None):
    from refimpl.losses import adacon
    return adacon.ecdf(y, population)
''',
        "adaptive_margin": '''\
def adaptive_margin(y, population=None):
    from refimpl.losses import adacon
    return adacon.margin(y, population)
''',
    },
    "data_parallel": {
        "ddp_step_by_hand": '''\
import functools


def ddp_step_by_hand(x, weight, world_size, loss_kwargs):
    return ddp.expected(x, weight, functools.partial(kernel.forward, **loss_kwargs), kernel.backward, world_size)
''',
        "plain_gather_dz": '''\
def plain_gather_dz(z, world_size, loss_kwargs):
    data = dict(x=z, weight=np.eye(z.shape[1]), **loss_kwargs)   # the embeddings as inputs of an identity layer
    return [r["plain"]["dz"] for r in ddp.run(ddp.example_step, world_size, data, ("plain",), timeout=120)]
''',
    },
}


def solution_code(cell_source: str) -> str:
    """A solution cell as a student would hand it in: the nbgrader markers gone."""
    return "".join(line for line in cell_source.splitlines(keepends=True) if "### " not in line)


def answered_cell(cell_source: str, lab: str, kinds: dict):
    """The code a student hands in for one solution cell of ``lab`` (the source's, solutions in).

    ``kinds`` maps the exercises the cell defines to "solution", "wrong" (the
    edit of :data:`WRONG`), "shortcut" (the solution followed by the
    shortcut's definition, which replaces it) or None (untouched: returns None).
    """
    if all(kind is None for kind in kinds.values()):
        return None
    code = cell_source
    for exercise, kind in kinds.items():
        if kind == "wrong":
            old, new = WRONG[lab][exercise]
            if old not in code:
                raise AssertionError(f"the wrong answer of {lab}/{exercise} edits {old!r}, not in its cell")
            code = code.replace(old, new)
    code = solution_code(code)
    return code + "".join(f"\n\n{SHORTCUTS[lab][e]}" for e, kind in kinds.items() if kind == "shortcut")
