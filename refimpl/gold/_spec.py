"""What a gold case is: arrays drawn from a seed, and refimpl's forward and backward on them.

A :class:`Spec` names the forward function (``"refimpl.losses.margin.forward"``),
its keyword arguments, and a ``draw(rng)`` that returns the arrays it is
called with (inputs, parameters, state), in any order. :func:`run` calls
forward, draws ``dout`` with the output's shape, calls backward, and returns
every array of the case with its role, ready to be stored.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import zlib
from typing import Callable

import numpy as np

#: roles of the arrays of a case; the first four are what an implementation is given.
GIVEN_ROLES = ("input", "param", "state", "dout")
ROLES = GIVEN_ROLES + ("output", "grad")
#: keyword arguments of refimpl's functions that are not part of a case: ``input_grad``,
#: ``block_size`` and conv2d's ``algorithm`` change how the numbers are computed, not what they
#: are (the gold uses the dense losses and im2col); gold cases are whole batches
#: (``anchors=None``), whose per-process parts the loss tests check against them; ``check_finite``
#: only turns an input check off (a step captured as a CUDA graph cannot read a value back).
_IGNORED = ("input_grad", "block_size", "anchors", "algorithm", "check_finite")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One gold case before it is computed.

    ``params`` and ``state`` name the drawn arrays with those roles (the rest
    are inputs). ``run`` replaces :func:`run_forward_backward` for functions
    outside the plain forward/backward contract.
    """

    name: str
    forward: str
    draw: Callable
    kwargs: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    params: tuple = ()
    state: tuple = ()
    backward: str | None = None
    run: Callable | None = None
    #: False: ``kwargs`` is already complete (a composite case whose forward is not one function)
    fill_defaults: bool = True

    @property
    def backward_path(self) -> str:
        return self.backward or self.forward.rsplit(".", 1)[0] + ".backward"

    def role(self, name: str) -> str:
        return "param" if name in self.params else "state" if name in self.state else "input"


def resolve(path: str):
    """``"package.module.attribute"`` -> the attribute."""
    module, attribute = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), attribute)


def positional_names(function) -> list:
    """Names of the parameters passed by position (the arrays, in order)."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind in kinds]


def full_kwargs(function, arrays: dict, given: dict) -> dict:
    """Every argument of ``function`` that is not a drawn array: the given value or the default.

    Optional array arguments that the case leaves out appear as None, so a
    reader never has to guess a default.
    """
    out = {}
    for p in inspect.signature(function).parameters.values():
        if p.name in arrays or p.name in _IGNORED:
            continue
        if p.name in given:
            out[p.name] = given[p.name]
        elif p.default is not inspect.Parameter.empty:
            out[p.name] = p.default
        else:
            raise ValueError(f"{function.__qualname__} needs {p.name!r}; give it in the case's kwargs")
    unknown = set(given) - set(out)
    if unknown:
        raise ValueError(f"{function.__qualname__} takes no argument {sorted(unknown)}")
    return out


def call(function, arrays: dict, kwargs: dict):
    """``function(*positional arrays, **keyword arrays, **kwargs)`` as refimpl's signature wants."""
    positional = positional_names(function)
    args = [arrays.get(n, kwargs.get(n)) for n in positional]
    keywords = {k: v for k, v in {**kwargs, **arrays}.items() if k not in positional}
    return function(*args, **keywords)


def draw_dout(rng: np.random.Generator, out) -> np.ndarray:
    """Upstream gradient with the output's shape: standard normal, or in [0.5, 1.5) for a scalar.

    A scalar loss gets a factor of order 1 that is not 1, so that an
    implementation which ignores ``dout`` fails.
    """
    shape = np.shape(out)
    return np.asarray(rng.uniform(0.5, 1.5) if shape == () else rng.standard_normal(shape))


def run_forward_backward(spec: Spec, arrays: dict, kwargs: dict, dout_for) -> list:
    """``[(name, role, array)]``: the drawn arrays, dout, out and the gradient of every input that has one.

    ``dout_for(out)`` gives the upstream gradient (drawn when the case is made,
    the stored one when it is replayed).
    """
    forward, backward = resolve(spec.forward), resolve(spec.backward_path)
    out, cache = call(forward, arrays, kwargs)
    dout = dout_for(out)
    grads = backward(dout, cache)
    names = positional_names(forward)
    rows = [(k, spec.role(k), v) for k, v in arrays.items()]
    rows += [("dout", "dout", dout), ("out", "output", out)]
    rows += [(f"d{n}", "grad", g) for n, g in zip(names, grads) if g is not None]
    return rows


def run_forward(spec: Spec, arrays: dict, kwargs: dict, dout_for) -> list:
    """A function without gradient (e.g. the ECDF): the drawn arrays and ``out``."""
    out = call(resolve(spec.forward), arrays, kwargs)
    return [(k, spec.role(k), v) for k, v in arrays.items()] + [("out", "output", out)]


def compute(spec: Spec, seed: int) -> tuple:
    """``(kwargs, rows)`` of ``spec``: its full keyword arguments and its arrays as float64 NumPy.

    The generator is seeded by ``(seed, crc32(name))``: each case draws the
    same numbers whatever other cases exist.
    """
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    arrays = spec.draw(rng)
    kwargs = (full_kwargs(resolve(spec.forward), arrays, spec.kwargs) if spec.fill_defaults
              else dict(spec.kwargs))
    rows = (spec.run or run_forward_backward)(spec, arrays, kwargs, lambda out: draw_dout(rng, out))
    return kwargs, [(name, role, _host(a)) for name, role, a in rows]


def replay(spec: Spec, inputs: dict) -> dict:
    """refimpl's outputs and gradients on a case's given arrays and keyword arguments (any dtype).

    ``inputs`` as :attr:`refimpl.gold.Case.inputs`; arrays the case derives
    itself (the dropout mask) are recomputed, not read.
    """
    kwargs = {k: v for k, v in inputs.items() if not isinstance(v, np.ndarray)}
    arrays = {k: v for k, v in inputs.items() if isinstance(v, np.ndarray) and k != "dout"}
    rows = (spec.run or run_forward_backward)(spec, arrays, kwargs, lambda out: inputs["dout"])
    return {name: a for name, role, a in rows if role in ("output", "grad")}


def _host(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.dtype != np.float64:
        raise TypeError(f"gold arrays are float64, got {a.dtype}")
    return np.array(a)  # a fresh, owned array (never a view into a cache)
