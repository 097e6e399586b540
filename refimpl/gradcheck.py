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
  \\mathrm{vjp}(u)_k, v_k\\rangle`. Three forward passes per direction (one for
  the kink test) whatever the size, so it suits property tests over drawn shapes (as PyTorch's fast
  ``gradcheck`` and JAX's ``check_vjp`` do).

Both accept any function with the refimpl contract ``forward(*inputs) ->
(out, cache)`` and ``backward(dout, cache) -> grads`` (one gradient per input,
in order; extra trailing inputs without a gradient are allowed), and both
return a report (``.ok``, ``str(report)``, ``.raise_if_failed()``). For a
function of your own that returns only ``out`` use :func:`numerical_gradient`.

Verdicts:

* float64 only. A float32 input is refused: a central difference in float32
  carries a rounding error of about ``1e-7 |f| / h``, as large as the
  mismatches the check must find for any step ``h`` that keeps the
  truncation error small, so its verdicts would be noise. Check float32 code
  by running the same forward/backward on float64 inputs here (one code path
  serves both), then compare its float32 outputs and gradients with the
  float64 ones at float32 tolerances (relative 1e-4 or so).
* Relative verdicts: an entry passes within ``rtol`` of the larger of the two
  values, plus an absolute floor ``atol`` (1e-8 element-wise, 1e-9 for the
  VJP) for the rounding noise of float64 differences. So an all-zero (or 5%
  wrong) backward fails wherever the true gradient exceeds that floor; where
  the numeric gradient lies below it everywhere, no check can tell it from
  zero, and the report says so (``resolved`` is False) instead of vouching
  for it.
* Error model of a central difference with step ``h``: truncation, ``h^2
  |f'''| / 6``, inside the tolerances for ``h = 1e-6``; and rounding: each
  computed value of ``f`` carries a noise of some deviation ``sigma`` (the
  float64 rounding of every operation that made it, which scales with the
  intermediate values, not with ``|f|``: an FFT convolution whose exact
  output is 0 returns noise the size of its inputs' products), so the
  difference carries about ``sigma / h``. A comparison that fails the
  tolerance is looked at again before it is reported: ``sigma`` is measured
  from the second differences of ``f`` at nine points ``1e-3 h`` apart
  (their median, which one kink among them cannot inflate) and
  ``3 sigma / h`` (:data:`NOISE_SIGMAS`) is added to the bound.
* Kinks: where the one-sided slopes ``(f(x) - f(x - h)) / h`` and ``(f(x + h)
  - f(x)) / h`` differ by more than 10 tolerances and 1e-3 of the larger
  slope (a smooth function's differ by ``h |f''|``), a kink lies within
  ``h``. The difference is then taken again with steps ``h / 10`` and
  ``h / 100`` (:data:`REFINE`, while the rounding allowance stays below the
  tolerance): a kink farther than the smaller step is stepped over, and the
  analytic value is compared with the derivative at ``x`` itself. Only a kink
  closer than the smallest step is judged by the slopes: a mismatch whose
  analytic value lies between the one-sided slopes there (a valid
  subgradient) is reported as kink-adjacent, not as a mismatch. (Judging by
  the slopes at ``h`` alone missed kinks: a one-sided slope is off the
  derivative by ``h |f''| / 2``, 4e-4 on a TinyNet direction whose bound was
  4e-5, where a ReLU input of 4e-6 crossed 0 at ``t = 2e-7``.)

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

#: default (rtol, atol) of :func:`check_gradients`
TOLERANCES = {"float64": (1e-6, 1e-8)}
#: default (rtol, atol) of :func:`check_vjp`
VJP_TOLERANCES = (1e-6, 1e-9)
#: default step of the central difference
EPS = 1e-6
#: rounding allowance of a central difference with step h: NOISE_SIGMAS * sigma / h, sigma the measured
#: noise deviation of f (the two noisy values' difference, halved, has deviation 0.71 sigma / h)
NOISE_SIGMAS = 3.0
#: smaller steps (fractions of the step) tried when the one-sided slopes show a kink within the step
REFINE = (1e-1, 1e-2)
#: spacing of the nine points whose second differences measure the noise (a fraction of the step)
NOISE_SPACING = 1e-3


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
    """One compared entry: where it is, the two values, the one-sided slopes, how far apart."""

    index: tuple
    analytic: float
    numeric: float
    left: float = float("nan")  # (f(x) - f(x - h)) / h
    right: float = float("nan")  # (f(x + h) - f(x)) / h

    @property
    def abs_error(self) -> float:
        return abs(self.analytic - self.numeric)


@dataclasses.dataclass(frozen=True)
class InputReport:
    """Comparison for one input: the worst entries first, and the kink-adjacent ones apart."""

    position: int
    shape: tuple
    max_abs_error: float
    rel_error: float
    ok: bool
    worst: list
    kinks: list = dataclasses.field(default_factory=list)
    resolved: bool = True  # False: every numeric entry lies below the tolerance

    def __str__(self) -> str:
        status = "ok" if self.ok else "MISMATCH"
        lines = [
            f"input {self.position} shape {self.shape}: {status}  "
            f"max |analytic - numeric| = {self.max_abs_error:.3e}, rel_error = {self.rel_error:.3e}"
        ]
        if not self.resolved:
            lines.append("    the numeric gradient lies below the tolerance everywhere: this check cannot "
                         "tell it from zero (scale the function up)")
        for e in self.worst:
            lines.append(
                f"    at {e.index}: analytic {e.analytic:+.10e}  numeric {e.numeric:+.10e}  "
                f"|diff| {e.abs_error:.3e}"
            )
        for e in self.kinks:
            lines.append(f"    at {e.index}: next to a kink (one-sided slopes {e.left:+.6e} and {e.right:+.6e}), "
                         f"analytic {e.analytic:+.6e} between them: not a mismatch")
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


@dataclasses.dataclass(frozen=True)
class Direction:
    """One random direction of :func:`check_vjp`: the two directional derivatives and the bound."""

    analytic: float
    numeric: float
    bound: float
    left: float  # one-sided slopes along the direction
    right: float
    kink: bool  # a mismatch next to a kink, with the analytic value between the slopes
    step: float = EPS  # the step of ``numeric``: smaller than the first where a kink was stepped over
    noise: float | None = None  # measured rounding noise of <u, f>; None: the first comparison passed

    @property
    def abs_error(self) -> float:
        return abs(self.analytic - self.numeric)

    @property
    def ok(self) -> bool:
        return self.abs_error <= self.bound or self.kink


@dataclasses.dataclass(frozen=True)
class VJPReport:
    """Result of :func:`check_vjp`: one :class:`Direction` per draw, and the gradient's norm."""

    directions: list
    gradient_norm: float

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.directions)

    @property
    def resolved(self) -> bool:
        """False when every numeric directional derivative lies below the tolerance."""
        return any(abs(d.numeric) > d.bound for d in self.directions)

    @property
    def worst_rel_error(self) -> float:
        """Largest ``|analytic - numeric| / max(|analytic|, |numeric|, gradient norm)``."""
        return max((d.abs_error / max(abs(d.analytic), abs(d.numeric), self.gradient_norm, 1e-300)
                    for d in self.directions), default=0.0)

    def __str__(self) -> str:
        lines = [f"VJP check: {'ok' if self.ok else 'MISMATCH'} (gradient norm {self.gradient_norm:.3e})"]
        for k, d in enumerate(self.directions):
            note = "  next to a kink: not a mismatch" if d.kink else ""
            if d.noise is not None:
                note += f"  (looked at again: rounding noise {d.noise:.1e} in the bound, step {d.step:.0e})"
            lines.append(f"    direction {k}: analytic {d.analytic:+.12e}, numeric {d.numeric:+.12e}, "
                         f"|diff| {d.abs_error:.3e} vs bound {d.bound:.3e}{note}")
        if not self.resolved:
            lines.append("    every numeric derivative lies below the tolerance: this check cannot tell the "
                         "gradient from zero (scale the function up)")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise AssertionError with the directions when any fails."""
        if not self.ok:
            raise AssertionError("VJP check failed\n" + str(self))


def _host64(a) -> np.ndarray:
    return np.array(backend.to_numpy(a), dtype=np.float64)


def _back(host: np.ndarray, like):
    """Host float64 data back to the namespace, device and dtype of ``like``."""
    if not hasattr(like, "dtype"):
        return float(host)
    return backend.asarray(host, like=like, dtype=like.dtype)


def _evaluate(f, host_inputs, originals) -> np.ndarray:
    return _host64(f(*[_back(h, o) for h, o in zip(host_inputs, originals)]))


def _require_float64(inputs, wrt) -> None:
    for k in wrt:
        dtype = str(getattr(inputs[k], "dtype", "float64")).rsplit(".", 1)[-1]
        if dtype != "float64":
            raise TypeError(
                f"inputs[{k}] has dtype {dtype}: gradient checks need float64. A central difference in "
                f"float32 carries a rounding error of about 1e-7 |f| / h, as large as the mismatches the "
                f"check must find, so its verdicts would be noise. To check float32 code, run the same "
                f"forward/backward on float64 inputs here, then compare its float32 outputs and gradients "
                f"with the float64 ones at float32 tolerances (relative 1e-4 or so).")


def _differences(f, inputs, dout, wrt, eps):
    """Per input in ``wrt``: the central differences and the one-sided slopes; and ``line``.

    ``line(k, index)`` is ``t -> <u, f(x + t e)>`` along entry ``index`` of
    input ``k``, for a second look at a comparison that fails.
    """
    host = [_host64(a) if hasattr(a, "dtype") else np.float64(a) for a in inputs]
    base = _evaluate(f, host, inputs)
    u = np.ones_like(base) if dout is None else _host64(dout)
    if u.shape != base.shape:
        raise ValueError(f"dout has shape {u.shape}, expected the output shape {base.shape}")
    f0 = float(np.sum(base * u))

    def line(k, index):
        def g(t):
            point = np.array(host[k], dtype=np.float64)
            point[index] += t
            moved = [point if i == k else h for i, h in enumerate(host)]
            return float(np.sum(_evaluate(f, moved, inputs) * u))
        return g

    results = []
    for k in wrt:
        central, left, right = (np.zeros(np.shape(host[k])) for _ in range(3))
        for idx in itertools.product(*[range(s) for s in central.shape]):
            g = line(k, idx)
            plus, minus = g(eps), g(-eps)
            central[idx] = (plus - minus) / (2 * eps)
            left[idx], right[idx] = (f0 - minus) / eps, (plus - f0) / eps
        results.append((central, left, right))
    return results, line


def numerical_gradient(f, inputs, dout=None, *, wrt=None, eps: float = EPS):
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
    if wrt is None:
        wrt = [k for k, a in enumerate(inputs) if hasattr(a, "dtype")]
    return [central for central, _, _ in _differences(f, inputs, dout, wrt, eps)[0]]


def _draw_dout(forward, inputs, seed):
    out, _ = forward(*inputs)
    gen = backend.rng(seed)
    if not hasattr(out, "dtype"):
        return float(gen.standard_normal())
    return backend.normal(gen, tuple(out.shape), like=out)


def _kink_within(left, right, tol) -> bool:
    """The one-sided slopes differ by a jump, not by curvature: a kink lies within the step.

    The slopes of a smooth function differ by about ``h |f''|`` (1e-6 times the
    curvature); at a kink by the jump of the slope itself. A kink is declared
    where they differ by more than 10 tolerances and 1e-3 of the larger slope.
    """
    return abs(right - left) > max(10 * tol, 1e-3 * max(abs(left), abs(right)))


def _at_kink(analytic, left, right, tol) -> bool:
    """A kink within the step, and ``analytic`` between the one-sided slopes."""
    return _kink_within(left, right, tol) and min(left, right) - tol <= analytic <= max(left, right) + tol


def _noise(g, eps: float) -> float:
    """Deviation of the rounding noise of ``g`` near 0, from second differences.

    Nine points :data:`NOISE_SPACING` ``* eps`` apart: a smooth ``g`` adds
    ``spacing^2 |g''|`` to a second difference (nothing); noise of deviation
    ``sigma`` gives differences of deviation ``sqrt(6) sigma``, whose absolute
    values have the median ``0.6745 sqrt(6) sigma`` (normal noise). The median
    of the seven ignores a kink among the points, which spoils two of them.
    """
    spacing = NOISE_SPACING * eps
    values = np.array([g(j * spacing) for j in range(-4, 5)])
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    return float(np.median(np.abs(second))) / (0.6745 * np.sqrt(6))


def _settle(g, analytic: float, eps: float, tolerance) -> tuple:
    """A comparison that failed at step ``eps``, looked at again (module docstring, error model).

    ``g(t)`` is the function along the line (``t = 0`` the point),
    ``tolerance(numeric)`` the bound before rounding. Adds the measured
    rounding noise to the bound, then steps over a kink within ``eps`` with
    the steps of :data:`REFINE`. Returns ``(numeric, bound, left, right, kink,
    step, noise)`` at the last step taken.
    """
    noise = _noise(g, eps)
    f0 = g(0.0)

    def at(step):
        plus, minus = g(step), g(-step)
        numeric = (plus - minus) / (2 * step)
        return numeric, tolerance(numeric) + NOISE_SIGMAS * noise / step, (f0 - minus) / step, (plus - f0) / step

    step = eps
    numeric, bound, left, right = at(step)
    for fraction in REFINE:
        if abs(analytic - numeric) <= bound or not _kink_within(left, right, bound):
            break  # settled, or no kink to step over: a mismatch
        if NOISE_SIGMAS * noise / (eps * fraction) > tolerance(numeric):
            break  # rounding would swamp the smaller step
        step = eps * fraction
        numeric, bound, left, right = at(step)
    kink = abs(analytic - numeric) > bound and _at_kink(analytic, left, right, bound)
    return numeric, bound, left, right, kink, step, noise


def check_gradients(forward, backward, inputs, *, dout=None, wrt=None, eps: float = EPS,
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
        Small float64 arrays (any backend); they are never modified. float32
        is refused (see the module docstring for why and what to do instead).
    dout : array, optional
        Upstream gradient; by default a seeded standard normal of the output's
        shape (random, so that errors cannot cancel in a plain sum).
    wrt : sequence of int, optional
        Positions to check; by default every input that has a gradient.
    rtol, atol : float, optional
        Entry ``k`` passes when ``|a_k - n_k| <= atol + rtol * max(|a_k|, |n_k|)``;
        an entry that fails is looked at again as a VJP direction is (rounding
        noise, smaller steps), and one next to a kink closer than the smallest
        step with its analytic value between the slopes is reported apart. Defaults from
        :data:`TOLERANCES`: rtol 1e-6, atol 1e-8.

    Returns
    -------
    GradReport
        ``.ok``, and per input the largest errors with their indices.
    """
    rtol_d, atol_d = TOLERANCES["float64"]
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
    _require_float64(inputs, wrt)
    differences, line = _differences(lambda *a: forward(*a)[0], inputs, dout, wrt, eps)
    return GradReport([_compare(k, _host64(analytic[k]), *diff, rtol, atol, n_worst,
                                lambda j, k=k, shape=diff[0].shape: line(k, np.unravel_index(j, shape)), eps)
                       for k, diff in zip(wrt, differences)])


def _compare(k, ana, num, left, right, rtol, atol, n_worst, line, eps) -> InputReport:
    """``line(j)``: the function along flat entry ``j``, for a second look at a failing entry."""
    if ana.shape != num.shape:
        raise ValueError(f"gradient {k} has shape {ana.shape}, input has shape {num.shape}")
    num, left, right = num.copy(), left.copy(), right.copy()
    tol = atol + rtol * np.maximum(np.abs(ana), np.abs(num))
    kinks = []
    for j in np.flatnonzero(np.abs(ana - num) > tol):
        a = float(ana.flat[j])
        numeric, bound, l, r, kink, _, _ = _settle(line(j), a, eps, lambda n, a=a: atol + rtol * max(abs(a), abs(n)))
        num.flat[j], tol.flat[j], left.flat[j], right.flat[j] = numeric, bound, l, r
        kinks += [j] if kink else []
    diff = np.abs(ana - num)
    excess = diff - tol

    def entry(j):
        return Entry(tuple(int(i) for i in np.unravel_index(j, ana.shape)), float(ana.flat[j]),
                     float(num.flat[j]), float(left.flat[j]), float(right.flat[j]))

    excess.flat[kinks] = -np.inf  # judged apart, listed apart
    order = [j for j in np.argsort(-excess, axis=None) if j not in kinks][:n_worst]
    return InputReport(
        position=k, shape=ana.shape, max_abs_error=float(diff.max()) if diff.size else 0.0,
        rel_error=rel_error(ana, num), ok=bool(np.all(excess <= 0)), worst=[entry(j) for j in order],
        kinks=[entry(j) for j in kinks], resolved=bool(np.any(np.abs(num) > atol)),
    )


def check_vjp(forward, backward, inputs, *, wrt=None, n_directions: int = 2, eps: float = EPS,
              rtol: float | None = None, atol: float | None = None, seed=0) -> VJPReport:
    """Random-direction check of a backward pass; returns a :class:`VJPReport`.

    For each of ``n_directions`` seeded draws of an output direction ``u`` and
    input directions ``v_k`` (only for the inputs in ``wrt``), compares the
    directional derivative ``(<u, f(x + h v)> - <u, f(x - h v)>) / 2h`` with
    ``sum_k <backward(u)_k, v_k>``. A direction passes when
    ``|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|, scale)``,
    ``scale`` the norm of the analytic gradients (near-zero directional
    derivatives are judged against the size of the gradient). A direction
    that fails is looked at again (module docstring, error model): the
    measured rounding noise joins the bound, a kink within the step is
    stepped over with smaller steps, and a kink closer than those passes
    when the analytic value lies between the one-sided slopes.
    Defaults from :data:`VJP_TOLERANCES`: rtol 1e-6, atol 1e-9.
    Inputs must be float64 (see the module docstring).
    """
    gen = backend.rng(seed)
    out, cache = forward(*inputs)
    if wrt is None:
        wrt = [k for k, a in enumerate(inputs) if hasattr(a, "dtype")]
    _require_float64(inputs, wrt)
    rtol = VJP_TOLERANCES[0] if rtol is None else rtol
    atol = VJP_TOLERANCES[1] if atol is None else atol
    host = [_host64(a) if hasattr(a, "dtype") else a for a in inputs]
    directions, norm = [], 0.0
    for _ in range(n_directions):
        u = gen.standard_normal(np.shape(_host64(out)))
        grads = backward(_back(u, out), cache)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        vs = {k: gen.standard_normal(np.shape(host[k])) for k in wrt}
        analytic = sum(float(np.sum(_host64(grads[k]) * vs[k])) for k in wrt)
        scale = float(np.sqrt(sum(np.sum(_host64(grads[k]) ** 2) for k in wrt)))
        norm = max(norm, scale)

        def along(t):
            moved = [h + t * vs[k] if k in vs else h for k, h in enumerate(host)]
            return float(np.sum(_evaluate(lambda *a: forward(*a)[0], moved, inputs) * u))

        def tolerance(numeric, analytic=analytic, scale=scale):
            return atol + rtol * max(abs(analytic), abs(numeric), scale)

        f0, plus, minus = along(0.0), along(eps), along(-eps)
        numeric = (plus - minus) / (2 * eps)
        if abs(analytic - numeric) <= tolerance(numeric):
            left, right = (f0 - minus) / eps, (plus - f0) / eps
            directions.append(Direction(analytic, numeric, tolerance(numeric), left, right, False, eps))
        else:
            numeric, bound, left, right, kink, step, noise = _settle(along, analytic, eps, tolerance)
            directions.append(Direction(analytic, numeric, bound, left, right, kink, step, noise))
    return VJPReport(directions, norm)
