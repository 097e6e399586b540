"""Numerical gradient checks that point at the wrong entry.

Two checks, both with float64 central differences
:math:`\\partial f/\\partial x_k \\approx (f(x + h e_k) - f(x - h e_k)) / 2h`:

* :func:`check_gradients` (full, element-wise): perturbs every entry of every
  input and compares with the analytic gradient entry by entry. Use it to
  learn *which* entry of a backward pass is wrong; it costs two forward passes
  per input entry, so keep the inputs small.
* :func:`check_vjp` (random direction): for random directions ``v`` (inputs)
  and ``u`` (output) it compares one central difference of
  :math:`\\langle u, f(x + h v)\\rangle` with :math:`\\sum_k \\langle
  \\mathrm{vjp}(u)_k, v_k\\rangle`. Two forward passes per direction whatever
  the size, so it suits property tests over drawn shapes (as PyTorch's fast
  ``gradcheck`` and JAX's ``check_vjp`` do).

Both accept any function with the refimpl contract ``forward(*inputs) ->
(out, cache)`` and ``backward(dout, cache) -> grads`` (one gradient per input,
in order; extra trailing inputs without a gradient are allowed). For a
function of your own that returns only ``out`` use :func:`numerical_gradient`.

Inputs on any backend are accepted: they are copied to the host, perturbed
there, and moved back to their own namespace and device for each evaluation.

>>> import numpy as np
>>> def forward(x, w):                       # out = x @ w
...     return x @ w, (x, w)
>>> def backward(dout, cache):
...     x, w = cache
...     return dout @ w.T, x.T @ dout
>>> x, w = np.arange(6.0).reshape(2, 3) / 7, np.ones((3, 2)) / 3
>>> check_gradients(forward, backward, [x, w]).ok
True
>>> def bad_backward(dout, cache):           # planted bug: dw off by a factor 2
...     dx, dw = backward(dout, cache)
...     return dx, 2 * dw
>>> report = check_gradients(forward, bad_backward, [x, w], seed=0)
>>> report.ok, report.inputs[1].worst[0].index
(False, (2, 0))
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from . import backend

#: default (rtol, atol) of the comparison, keyed by dtype name.
TOLERANCES = {"float64": (1e-6, 1e-8), "float32": (2e-2, 1e-3)}


def rel_error(x, y, floor: float = 1e-8) -> float:
    """Largest element-wise relative error ``|x - y| / max(floor, |x| + |y|)``.

    The CS231n measure: about 1e-7 or below means agreement for float64 gradient
    checks; 1e-2 or above means something is wrong.

    >>> rel_error([1.0, 2.0], [1.0, 2.0 + 4e-6])
    1e-06
    """
    x = backend.to_numpy(np.asarray(x) if isinstance(x, list) else x).astype(np.float64)
    y = backend.to_numpy(np.asarray(y) if isinstance(y, list) else y).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} and {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(floor, np.abs(x) + np.abs(y))))


@dataclasses.dataclass(frozen=True)
class Entry:
    """One compared entry: where it is, the two values, and how far apart."""

    index: tuple
    analytic: float
    numeric: float

    @property
    def abs_error(self) -> float:
        return abs(self.analytic - self.numeric)


@dataclasses.dataclass(frozen=True)
class InputReport:
    """Comparison for one input: the worst entries first."""

    position: int
    shape: tuple
    max_abs_error: float
    rel_error: float
    ok: bool
    worst: list

    def __str__(self) -> str:
        status = "ok" if self.ok else "MISMATCH"
        lines = [
            f"input {self.position} shape {self.shape}: {status}  "
            f"max |analytic - numeric| = {self.max_abs_error:.3e}, rel_error = {self.rel_error:.3e}"
        ]
        for e in self.worst:
            lines.append(
                f"    at {e.index}: analytic {e.analytic:+.10e}  numeric {e.numeric:+.10e}  "
                f"|diff| {e.abs_error:.3e}"
            )
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class GradReport:
    """Result of :func:`check_gradients`; ``str(report)`` is a readable table."""

    inputs: list

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.inputs)

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.inputs)

    def raise_if_failed(self) -> None:
        """Raise AssertionError with the table of worst entries when any input fails."""
        if not self.ok:
            raise AssertionError("gradient check failed\n" + str(self))


def _host64(a) -> np.ndarray:
    return np.array(backend.to_numpy(a), dtype=np.float64)


def _back(host: np.ndarray, like):
    """Host float64 data back to the namespace, device and dtype of ``like``."""
    if not hasattr(like, "dtype"):
        return float(host)
    return backend.asarray(host, like=like, dtype=like.dtype)


def _evaluate(f, host_inputs, originals) -> np.ndarray:
    return _host64(f(*[_back(h, o) for h, o in zip(host_inputs, originals)]))


def numerical_gradient(f, inputs, dout=None, *, wrt=None, eps: float = 1e-6):
    """Central-difference gradient of ``sum(f(*inputs) * dout)`` w.r.t. each input in ``wrt``.

    Parameters
    ----------
    f : callable
        ``f(*inputs) -> array`` (any backend).
    inputs : sequence of arrays
        Points of evaluation; never modified.
    dout : array, optional
        Upstream gradient with the shape of ``f``'s output; ones by default.
    wrt : sequence of int, optional
        Positions of the inputs to differentiate; all array inputs by default.
    eps : float
        Step ``h`` of the central difference.

    Returns
    -------
    list of numpy.ndarray (float64), one per entry of ``wrt``.
    """
    host = [_host64(a) if hasattr(a, "dtype") else np.float64(a) for a in inputs]
    if wrt is None:
        wrt = [k for k, a in enumerate(inputs) if hasattr(a, "dtype")]
    base = _evaluate(f, host, inputs)
    u = np.ones_like(base) if dout is None else _host64(dout)
    if u.shape != base.shape:
        raise ValueError(f"dout has shape {u.shape}, expected the output shape {base.shape}")
    grads = []
    for k in wrt:
        g = np.zeros(np.shape(host[k]))
        for idx in itertools.product(*[range(s) for s in g.shape]):
            shifted = [h.copy() if hasattr(h, "copy") else h for h in host]
            point = np.array(host[k], dtype=np.float64)
            point[idx] += eps
            shifted[k] = point
            plus = np.sum(_evaluate(f, shifted, inputs) * u)
            point[idx] -= 2 * eps
            minus = np.sum(_evaluate(f, shifted, inputs) * u)
            g[idx] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def _draw_dout(forward, inputs, seed):
    out, _ = forward(*inputs)
    gen = backend.rng(seed)
    if not hasattr(out, "dtype"):
        return float(gen.standard_normal())
    return backend.normal(gen, tuple(out.shape), like=out)


def check_gradients(forward, backward, inputs, *, dout=None, wrt=None, eps: float = 1e-6,
                    rtol: float | None = None, atol: float | None = None, seed=0,
                    n_worst: int = 5) -> GradReport:
    """Full element-wise gradient check of a ``forward``/``backward`` pair.

    Parameters
    ----------
    forward : callable
        ``forward(*inputs) -> (out, cache)``.
    backward : callable
        ``backward(dout, cache) -> tuple of grads`` aligned with ``inputs``
        (a single array is accepted for one input).
    inputs : sequence of arrays
        Small float64 arrays (any backend); they are never modified.
    dout : array, optional
        Upstream gradient; by default a seeded standard normal of the output's
        shape (random, so that errors cannot cancel in a plain sum).
    wrt : sequence of int, optional
        Positions to check; by default every input that has a gradient.
    rtol, atol : float, optional
        Entry ``k`` passes when ``|a_k - n_k| <= atol + rtol * max(|a_k|, |n_k|)``.
        Defaults from :data:`TOLERANCES` by the dtype of the first input.

    Returns
    -------
    GradReport
        ``.ok``, and per input the largest errors with their indices.
    """
    dtype = str(inputs[0].dtype).split(".")[-1]
    rtol_d, atol_d = TOLERANCES.get(dtype, TOLERANCES["float32"])
    rtol = rtol_d if rtol is None else rtol
    atol = atol_d if atol is None else atol
    if dout is None:
        dout = _draw_dout(forward, inputs, seed)
    _, cache = forward(*inputs)
    analytic = backward(dout, cache)
    if not isinstance(analytic, (tuple, list)):
        analytic = (analytic,)
    if wrt is None:
        wrt = [k for k in range(min(len(analytic), len(inputs))) if analytic[k] is not None]
    numeric = numerical_gradient(lambda *a: forward(*a)[0], inputs, dout, wrt=wrt, eps=eps)
    reports = []
    for k, num in zip(wrt, numeric):
        ana = _host64(analytic[k])
        if ana.shape != num.shape:
            raise ValueError(f"gradient {k} has shape {ana.shape}, input has shape {num.shape}")
        diff = np.abs(ana - num)
        excess = diff - (atol + rtol * np.maximum(np.abs(ana), np.abs(num)))
        order = np.argsort(-excess, axis=None)[:n_worst]
        worst = [
            Entry(tuple(int(i) for i in np.unravel_index(j, ana.shape)),
                  float(ana.flat[j]), float(num.flat[j]))
            for j in order
        ]
        reports.append(InputReport(
            position=k, shape=ana.shape,
            max_abs_error=float(diff.max()) if diff.size else 0.0,
            rel_error=rel_error(ana, num), ok=bool(np.all(excess <= 0)), worst=worst,
        ))
    return GradReport(reports)


def check_vjp(forward, backward, inputs, *, wrt=None, n_directions: int = 2, eps: float = 1e-6,
              rtol: float = 1e-6, atol: float = 1e-9, seed=0) -> float:
    """Random-direction check of a backward pass; returns the worst relative error.

    For each of ``n_directions`` seeded draws of an output direction ``u`` and
    input directions ``v_k`` (only for the inputs in ``wrt``), compares the
    directional derivative ``(<u, f(x + h v)> - <u, f(x - h v)>) / 2h`` with
    ``sum_k <backward(u)_k, v_k>``.

    Raises
    ------
    AssertionError
        When ``|analytic - numeric| > atol + rtol * max(|analytic|, |numeric|, scale)``
        for any direction, where ``scale`` is the norm of the analytic gradients
        (so that near-zero directional derivatives are judged against the
        size of the gradient rather than against zero).
    """
    gen = backend.rng(seed)
    out, cache = forward(*inputs)
    if wrt is None:
        wrt = [k for k, a in enumerate(inputs) if hasattr(a, "dtype")]
    host = [_host64(a) if hasattr(a, "dtype") else a for a in inputs]
    worst = 0.0
    for _ in range(n_directions):
        u = gen.standard_normal(np.shape(_host64(out)))
        grads = backward(_back(u, out), cache)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        vs = {k: gen.standard_normal(np.shape(host[k])) for k in wrt}
        analytic = sum(float(np.sum(_host64(grads[k]) * vs[k])) for k in wrt)
        scale = float(np.sqrt(sum(np.sum(_host64(grads[k]) ** 2) for k in wrt)))

        def along(t):
            moved = [h + t * vs[k] if k in vs else h for k, h in enumerate(host)]
            return float(np.sum(_evaluate(lambda *a: forward(*a)[0], moved, inputs) * u))

        numeric = (along(eps) - along(-eps)) / (2 * eps)
        err = abs(analytic - numeric)
        bound = atol + rtol * max(abs(analytic), abs(numeric), scale)
        worst = max(worst, err / max(abs(analytic), abs(numeric), scale, 1e-300))
        if err > bound:
            raise AssertionError(
                f"VJP check failed: analytic {analytic:+.12e}, numeric {numeric:+.12e}, "
                f"|diff| {err:.3e} > {bound:.3e} (gradient norm {scale:.3e})"
            )
    return worst
