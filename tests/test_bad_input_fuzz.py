"""Bad input, thrown at every public forward: a ValueError or TypeError that names the argument.

Each entry gives a valid call (named arguments); every argument is spoiled in
every way that applies to it (a list instead of an array, an extra axis, an empty
axis, NaN, float16, the other float precision, a string, a bool or a negative
number for a scalar; complex or object labels; a negative running variance) and the call must fail with a message naming that
argument: never pass silently, never fail inside NumPy.
"""
import math

import numpy as np
import pytest

from refimpl.layers import (avgpool2d, batchnorm2d, conv2d, dropout, flatten, global_avg_pool, linear,
                            maxpool2d, relu)
from refimpl.losses import (adacon, cross_entropy, dino, kernel, margin, npair, preference, regression, supcon,
                            triplet)

G = np.random.default_rng(0)
E = G.standard_normal((6, 3))
Y = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.3])
L = np.array([0, 0, 1, 1, 2, 2])
X4 = G.standard_normal((2, 2, 4, 4))

#: name -> (function, valid keyword arguments, {argument: kind}) with kinds
#: "emb" (float array that must be finite), "x" (layer input: NaN passes through, as in PyTorch),
#: "any" (a layer input of any shape: relu, dropout, flatten; flatten also any dtype),
#: "label" (any real dtype), "var" (a layer's variance: "x" and >= 0), "pos" (number > 0), "nonneg" (number >= 0), "choice" (one of some strings)
CALLS = {
    "margin": (margin.forward, dict(a=E, b=E[::-1].copy(), same=np.array([1, 0, 1, 0, 1, 0]), margin=1.0),
               {"a": "emb", "b": "emb", "same": "label", "margin": "pos"}),
    "preference": (preference.forward, dict(u_i=E, u_j=E[::-1].copy(), refs=E[:2], prefer_i=Y),
                   {"u_i": "emb", "u_j": "emb", "refs": "emb", "prefer_i": "label"}),
    "kernel": (kernel.forward, dict(z=E, labels=L, depth=Y, sigma=0.1, temperature=0.5),
               {"z": "emb", "labels": "label", "depth": "label", "sigma": "pos", "temperature": "pos"}),
    "supcon": (supcon.forward, dict(z=E, labels=L, temperature=0.5), {"z": "emb", "labels": "label",
                                                                      "temperature": "pos"}),
    "adacon": (adacon.forward, dict(z=E, y=Y, scale=2.0, population=Y, bucket=0.05),
               {"z": "emb", "y": "label", "scale": "pos", "population": "label", "bucket": "pos"}),
    "npair": (npair.forward, dict(anchor=E, positive=E[::-1].copy(), labels=L, l2_reg=0.1, temperature=0.5),
              {"anchor": "emb", "positive": "emb", "labels": "label", "l2_reg": "nonneg", "temperature": "pos"}),
    "triplet": (triplet.forward, dict(anchor=E, positive=E, negative=E[::-1].copy(), y_anchor=Y, y_positive=Y,
                                      y_negative=Y[::-1].copy()),
                {"anchor": "emb", "positive": "emb", "negative": "emb", "y_anchor": "label",
                 "y_positive": "label", "y_negative": "label"}),
    "regression": (regression.forward, dict(pred=Y, target=Y[::-1].copy(), kind="huber", delta=0.5),
                   {"pred": "emb", "target": "emb", "delta": "pos"}),
    "cross_entropy": (cross_entropy.forward, dict(logits=E, targets=L, weight=np.ones(3), label_smoothing=0.1),
                      {"logits": "emb", "targets": "label", "weight": "emb", "label_smoothing": "nonneg"}),
    "dino": (dino.forward, dict(student=np.concatenate([E, E]), teacher=E, center=np.zeros(3), student_temp=0.1,
                                teacher_temp=0.04),
             {"student": "emb", "teacher": "emb", "center": "emb", "student_temp": "pos", "teacher_temp": "pos"}),
    "conv2d": (conv2d.forward, dict(x=X4, w=G.standard_normal((3, 2, 3, 3)), b=np.zeros(3), stride=1, padding=1),
               {"x": "x", "w": "x", "b": "x", "stride": "pos", "padding": "nonneg"}),
    "linear": (linear.forward, dict(x=E, w=G.standard_normal((4, 3)), b=np.zeros(4)), {"x": "x", "w": "x", "b": "x"}),
    "relu": (relu.forward, dict(x=E), {"x": "any"}),
    "flatten": (flatten.forward, dict(x=X4), {"x": "any"}),
    "global_avg_pool": (global_avg_pool.forward, dict(x=X4), {"x": "x"}),
    "maxpool2d": (maxpool2d.forward, dict(x=X4, kernel_size=2), {"x": "x", "kernel_size": "pos"}),
    "avgpool2d": (avgpool2d.forward, dict(x=X4, kernel_size=2), {"x": "x", "kernel_size": "pos"}),
    "dropout": (dropout.forward, dict(x=E, p=0.5, train=True, seed=0), {"x": "any", "p": "nonneg"}),
    "batchnorm2d": (batchnorm2d.forward, dict(x=X4, gamma=np.ones(2), beta=np.zeros(2), running_mean=np.zeros(2),
                                              running_var=np.ones(2), train=True, momentum=0.1, eps=1e-5),
                    {"x": "x", "gamma": "x", "beta": "x", "running_mean": "x", "running_var": "var",
                     "momentum": "nonneg", "eps": "pos"}),
    "kernel_blocked": (kernel.forward, dict(z=E, labels=L, depth=Y, block_size=4, anchors=np.array([0, 2, 5])),
                       {"z": "emb", "labels": "label", "depth": "label", "block_size": "pos", "anchors": "label"}),
    "supcon_blocked": (supcon.forward, dict(z=E, labels=L, block_size=4, anchors=np.array([1, 3])),
                       {"z": "emb", "labels": "label", "block_size": "pos", "anchors": "label"}),
    "adacon_blocked": (adacon.forward, dict(z=E, y=Y, scale=2.0, block_size=4, anchors=np.array([5, 0])),
                       {"z": "emb", "y": "label", "block_size": "pos", "anchors": "label"}),
}
#: the FFT convolution is checked as the im2col one, before any transform
CALLS["conv2d_fft"] = (conv2d.forward, dict(CALLS["conv2d"][1], algorithm="fft"),
                       dict(CALLS["conv2d"][2], algorithm="choice"))
#: the teaching forms validate exactly as the fast forms do
CALLS.update({f"{name}_naive": (module.forward_naive,) + CALLS[name][1:]
              for name, module in (("margin", margin), ("preference", preference), ("kernel", kernel),
                                   ("adacon", adacon))})

ARRAY_SPOILERS = {
    "list": lambda a: a.tolist(),
    "extra axis": lambda a: a[..., None],
    "empty": lambda a: a[:0],
    "string": lambda a: "array",
}
FLOAT_SPOILERS = {  # arrays of floats only
    "float16": lambda a: a.astype(np.float16),
    "other precision": lambda a: a.astype(np.float32),
}
FINITE_SPOILERS = {"nan": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a)}
LABEL_SPOILERS = {  # labels are compared and ordered: a complex or object label has no order
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
}
VARIANCE_SPOILERS = {"negative": lambda a: -1.0 - a}  # in training too, where it is only updated
SCALAR_SPOILERS = {
    "string": lambda v: str(v),
    "bool": lambda v: True,
    "nan": lambda v: math.nan,
    "negative": lambda v: -1,
    "list": lambda v: [v],
}


CHOICE_SPOILERS = {
    "unknown": lambda v: "unknown",
    "other case": lambda v: v.upper(),
    "none": lambda v: None,
    "list": lambda v: [v],
}


def _spoilers(kind, n_floats=2):
    if kind in ("pos", "nonneg"):
        return SCALAR_SPOILERS
    if kind == "choice":
        return CHOICE_SPOILERS
    spoilers = {k: v for k, v in ARRAY_SPOILERS.items() if kind != "any" or k != "extra axis"}
    if kind in ("emb", "x", "var"):
        spoilers.update(FLOAT_SPOILERS if n_floats > 1 else {"float16": FLOAT_SPOILERS["float16"]})
    if kind == "emb":
        spoilers.update(FINITE_SPOILERS)
    if kind == "label":
        spoilers.update(LABEL_SPOILERS)
    if kind == "var":
        spoilers.update(VARIANCE_SPOILERS)
    return spoilers


#: spoilings that give a valid call: (N, 1) predictions are (N, K) regression with K = 1
VALID = {("regression", "pred", "extra axis")}


def _n_floats(args):
    """Float array arguments of a call: float32 is wrong only beside another float64 array."""
    return sum(kind in ("emb", "x", "var") for kind in args.values())


CASES = sorted((name, arg, spoil) for name, (_, _, args) in CALLS.items()
               for arg, kind in args.items() for spoil in _spoilers(kind, _n_floats(args))
               if (name, arg, spoil) not in VALID)


def test_every_valid_call_works():
    for fn, kwargs, _ in CALLS.values():
        fn(**kwargs)


@pytest.mark.parametrize("name, arg, spoil", CASES)
def test_bad_input_is_refused_naming_the_argument(name, arg, spoil):
    fn, kwargs, args = CALLS[name]
    kwargs = dict(kwargs)
    kwargs[arg] = _spoilers(args[arg], _n_floats(args))[spoil](kwargs[arg])
    with pytest.raises((ValueError, TypeError)) as info:
        fn(**kwargs)
    message = str(info.value)
    assert arg in message, f"{name}({arg}={spoil}): the message does not name {arg}: {message}"
    assert info.value.__traceback__ is not None
    assert not type(info.value).__module__.startswith("numpy"), message


def test_there_are_enough_cases():
    assert len(CASES) > 250
