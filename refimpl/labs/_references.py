"""What each lab's checks compare with: the inputs of a visible and a hidden case, and reference values.

The references are computed here by refimpl's own losses (or a loop over
pairs where refimpl has no such function), never by the code a student writes,
and the build stores them (``refimpl lab data``) so that a check only reads
them. Each lab is a :class:`Spec`; ``Spec.exercises`` lists, per exercise, the
names of what the student's function returns (as the notebook names them),
the library functions it may not call, the functions of earlier exercises the
check replaces by a reference (so a wrong Ex1 costs Ex1's points only), and
the constant factors a wrong answer is likely to be off by.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math

import numpy as np

from ..losses._common import NormCache, l2_normalize_backward

#: relative and absolute tolerances of every lab check (float64; a student's formula may sum in another order)
RTOL, ATOL = 1e-9, 1e-12
CASES = ("visible", "hidden")


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One graded exercise: the function the student writes and what its check needs."""

    function: str
    returns: tuple
    points: int
    forbidden: tuple = ()  # "module:function" the exercise may not call
    feeds: tuple = ()  # names of earlier exercises' functions replaced by references in the check


@dataclasses.dataclass(frozen=True)
class Spec:
    """A lab: its exercises, the builder of its cases, and the references of earlier steps."""

    name: str
    title: str
    exercises: tuple
    make: object = dataclasses.field(repr=False)  # case name -> (inputs, {exercise: {name: array}}, candidates)
    feeds: object = dataclasses.field(default=lambda lab: {}, repr=False)  # Lab -> {function: reference callable}
    needs_torch: bool = False

    def exercise(self, function: str) -> Exercise:
        for e in self.exercises:
            if e.function == function:
                return e
        raise ValueError(f"lab {self.name!r} has no exercise {function!r}; it has "
                         + ", ".join(e.function for e in self.exercises))


def resolve(dotted: str):
    """``"refimpl.losses.adacon:ecdf"`` -> (module, attribute name)."""
    module, _, name = dotted.partition(":")
    return importlib.import_module(module), name


# ---------------------------------------------------------------- ConPro (tutorial 02)


def cosine_backward(dcos, cache):
    """The lab's cosine backward from refimpl's normalisation backward: d cos / d a_hat = b_hat."""
    a_hat, b_hat, a_norm, b_norm = cache
    dcos = np.asarray(dcos, dtype=np.float64)[:, None]  # (N, 1)
    never = np.zeros(a_norm.shape, dtype=bool)  # the lab's norms are not floored
    return (l2_normalize_backward(dcos * b_hat, NormCache(a_hat, a_norm, never)),
            l2_normalize_backward(dcos * a_hat, NormCache(b_hat, b_norm, never)))


def _conpro(case: str):
    from ..losses import margin, preference

    rng = np.random.default_rng(19 if case == "visible" else 20)
    n = 4 if case == "visible" else 6
    a, b = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    dcos = rng.standard_normal(n)
    a_hat, b_hat = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    cache = (a_hat, b_hat, np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True))
    da, db = cosine_backward(dcos, cache)

    pairs = 8 if case == "visible" else 10
    ma = rng.standard_normal((pairs, 4))
    flip = np.where(np.arange(pairs) % 4 == 3, -1.0, 1.0)  # every fourth pair far apart: some hinges off
    mb = ma * flip[:, None] + rng.standard_normal((pairs, 4))
    same = (np.arange(pairs) % 2 == 0).astype(np.float64)
    dout = 0.7 if case == "visible" else 1.3  # not 1: a forgotten dout shows
    loss_cache = margin.forward(ma, mb, same, margin=1.0)[1]
    mda, mdb = margin.backward(dout, loss_cache)

    u_i, u_j = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    refs = rng.standard_normal((3, 4)) + 1.0
    p = np.array([1.0, 0.0, 1.0, 0.5, 0.8])
    pref_cache = preference.forward(u_i, u_j, refs, p)[1]
    du_i, du_j, drefs = preference.backward(dout, pref_cache)

    inputs = dict(a=a, b=b, dcos=dcos, margin_a=ma, margin_b=mb, same=same, m=np.float64(1.0), dout=np.float64(dout),
                  u_i=u_i, u_j=u_j, refs=refs, p=p)
    expected = {"cosine_backward": dict(da=da, db=db), "margin_backward": dict(da=mda, db=mdb),
                "preference_backward": dict(du_i=du_i, du_j=du_j, drefs=drefs)}
    candidates = {"cosine_backward": {},
                  "margin_backward": {"dout": dout, "1/dout": 1 / dout, "N (the mean over pairs)": pairs,
                                      "1/N (the mean over pairs)": 1 / pairs},
                  "preference_backward": {"dout": dout, "1/dout": 1 / dout, "N (the mean over pairs)": 5,
                                          "1/N (the mean over pairs)": 1 / 5, "R (the references)": 3,
                                          "1/R (the references)": 1 / 3}}
    return inputs, expected, candidates


_CONPRO_FORBIDDEN = tuple(f"refimpl.losses.{m}:{f}" for m in ("margin", "preference")
                          for f in ("forward", "backward", "forward_naive", "backward_naive"))

CONPRO = Spec(
    "conpro", "ConPro: the backward passes of the Con and PrO steps",
    (Exercise("cosine_backward", ("da", "db"), 2,
              ("refimpl.losses._common:l2_normalize_backward",) + _CONPRO_FORBIDDEN),
     Exercise("margin_backward", ("da", "db"), 2, _CONPRO_FORBIDDEN, ("cosine_backward",)),
     Exercise("preference_backward", ("du_i", "du_j", "drefs"), 3, _CONPRO_FORBIDDEN, ("cosine_backward",))),
    _conpro, lambda lab: {"cosine_backward": cosine_backward})


# ---------------------------------------------------------------- WSP (tutorial 03)


def composite_kernel_by_pairs(labels, depth, sigma):
    """Eq. 2 entry by entry, a loop over pairs (refimpl has only the normalised weights)."""
    m = len(labels)
    w = np.zeros((m, m))
    for t in range(m):
        for j in range(m):
            if t != j and labels[t] == labels[j]:
                w[t, j] = math.exp(-(depth[t] - depth[j]) ** 2 / (2 * sigma**2))
    return w


def _stored_weights(lab, w):
    """The reference w_tilde of the case whose kernel is ``w`` (what the check feeds the forward)."""
    for case in CASES:
        if np.array_equal(w, lab.case(case)["w"]):
            return lab.expected("normalise_per_anchor", case)["w_tilde"].copy()
    raise AssertionError("the check's reference normalise_per_anchor knows only the kernels of its cases")


def _wsp(case: str):
    from ..losses import kernel

    rng = np.random.default_rng(31 if case == "visible" else 32)
    labels = np.array([0, 0, 0, 1, 1, 2]) if case == "visible" else np.array([1, 0, 1, 1, 3, 0, 2])
    depth = rng.uniform(0, 1, len(labels))
    sigma = 0.1 if case == "visible" else 0.3
    z = rng.standard_normal((len(labels), 3))
    dout, tau = (0.7, 0.1) if case == "visible" else (1.3, 0.2)
    w_tilde = kernel.forward_naive(z, labels=labels, depth=depth, sigma=sigma)[1].weights
    loss_cache = kernel.forward(z, labels=labels, depth=depth, sigma=sigma, temperature=tau)[1]
    (dz,) = kernel.backward(dout, loss_cache)
    inputs = dict(labels=labels, depth=depth, sigma=np.float64(sigma), z=z, tau=np.float64(tau),
                  dout=np.float64(dout), w=composite_kernel_by_pairs(labels, depth, sigma), w_tilde=w_tilde)
    m = len(labels)
    expected = {"composite_kernel": dict(w=inputs["w"]), "normalise_per_anchor": dict(w_tilde=w_tilde),
                "wsp_backward": dict(dz=dz)}
    candidates = {"composite_kernel": {}, "normalise_per_anchor": {},
                  "wsp_backward": {"dout": dout, "1/dout": 1 / dout, "tau": tau, "1/tau": 1 / tau,
                                   "M (the mean over anchors)": m, "1/M (the mean over anchors)": 1 / m,
                                   "2 (one side of the symmetric similarity)": 2.0, "1/2": 0.5}}
    return inputs, expected, candidates


_KERNEL_FORBIDDEN = tuple(f"refimpl.losses.{m}:{f}" for m, fs in (
    ("kernel", ("forward", "backward", "forward_naive", "backward_naive")),
    ("supcon", ("forward", "backward", "ntxent_forward"))) for f in fs)

WSP = Spec(
    "wsp", "WSP: the composite kernel, its weights, and the loss's backward pass",
    (Exercise("composite_kernel", ("w",), 1, _KERNEL_FORBIDDEN),
     Exercise("normalise_per_anchor", ("w_tilde",), 1, _KERNEL_FORBIDDEN),
     Exercise("wsp_backward", ("dz",), 3, _KERNEL_FORBIDDEN, ("composite_kernel", "normalise_per_anchor"))),
    _wsp, lambda lab: {"composite_kernel": composite_kernel_by_pairs,
                       "normalise_per_anchor": functools.partial(_stored_weights, lab)})


# ---------------------------------------------------------------- AdaCon (tutorial 04)


def _adacon(case: str):
    from ..losses import adacon

    if case == "visible":
        y = np.array([0.3, 0.1, 0.3, 0.7, 0.9, 0.1, 0.3, 0.5])
        population = np.array([0.2, 0.35, 0.3, 0.8, 0.45, 0.1])
    else:
        rng = np.random.default_rng(41)
        y = np.round(rng.uniform(0, 1, 9), 1)  # ties
        population = np.round(rng.uniform(0, 1, 15), 1)
    inputs = dict(y=y, population=population)
    expected = {"ecdf": dict(F=adacon.ecdf(y, population)), "adaptive_margin": dict(d=adacon.margin(y, population))}
    n = len(population)
    candidates = {"ecdf": {"n (the population size)": n, "1/n": 1 / n},
                  "adaptive_margin": {"2 (Eq. 4's factor)": 2.0, "1/2": 0.5}}
    return inputs, expected, candidates


_ADACON_FORBIDDEN = tuple(f"refimpl.losses.adacon:{f}" for f in
                          ("ecdf", "margin", "forward", "backward", "forward_naive", "backward_naive"))

ADACON = Spec(
    "adacon", "AdaCon: the labels' ECDF and the adaptive margin",
    (Exercise("ecdf", ("F",), 2, _ADACON_FORBIDDEN),
     Exercise("adaptive_margin", ("d",), 2, _ADACON_FORBIDDEN, ("ecdf",))),
    _adacon, lambda lab: {"ecdf": importlib.import_module("refimpl.losses.adacon").ecdf})


# ---------------------------------------------------------------- data parallel (tutorial 07)


def _data_parallel(case: str):
    from .. import ddp
    from ..losses import kernel

    data = ddp.example_data(m=16, seed=0) if case == "visible" else ddp.example_data(m=12, seed=1)
    world_size = 2 if case == "visible" else 3
    loss_kwargs = {k: data[k] for k in ("labels", "depth", "sigma", "temperature")}
    want = ddp.expected(data["x"], data["weight"], functools.partial(kernel.forward, **loss_kwargs),
                        kernel.backward, world_size)
    step = {f"{key} (rank {r})": np.asarray(value) for r, d in enumerate(want) for key, value in d.items()}
    # what torch.distributed leaves with a plain all_gather: the two or three processes, run once here
    plain = ddp.run(ddp.example_step, world_size, data, ("plain",), timeout=120)
    plain_dz = {f"dz (rank {r})": result["plain"]["dz"] for r, result in enumerate(plain)}
    inputs = dict(x=data["x"], weight=data["weight"], world_size=np.int64(world_size), **loss_kwargs)
    expected = {"ddp_step_by_hand": step, "plain_gather_dz": plain_dz}
    w = world_size
    candidates = {"ddp_step_by_hand": {"W (the world size)": w, "1/W": 1 / w},
                  "plain_gather_dz": {"W (the world size)": w, "1/W": 1 / w}}
    return inputs, expected, candidates


_DDP_FORBIDDEN = tuple(f"refimpl.ddp:{f}" for f in ("expected", "check", "run", "example_step", "torch_wsp_loss"))

DATA_PARALLEL = Spec(
    "data_parallel", "Data parallel: one simulated DDP step, and the gradient a plain all-gather gives",
    (Exercise("ddp_step_by_hand", ("loss", "dz", "dweight"), 3, _DDP_FORBIDDEN),
     Exercise("plain_gather_dz", ("dz",), 3, _DDP_FORBIDDEN)),
    _data_parallel, needs_torch=True)

#: every lab, by name, in course order
SPECS = {s.name: s for s in (CONPRO, WSP, ADACON, DATA_PARALLEL)}
