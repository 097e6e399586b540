"""A training step captured once as a CUDA graph and replayed per batch (``CapturedStep``).

A CUDA graph is a recording of GPU work (kernel launches, copies, library
calls) with their arguments, memory addresses included, taken by *stream
capture*: while a stream captures, the work queued on it is recorded
instead of run. The graph is then launched as one unit, as often as needed.
A training step written with an array library launches hundreds of small
kernels (TinyNet, its head, SupCon and an SGD update: several per layer and
per parameter), each costing several microseconds of Python and driver time
on the host; replaying the graph issues all of them with one launch, so the
GPU no longer waits for the host between kernels.

Why a training step fits: in refimpl a step is a pure function of arrays
with fixed shapes (parameters, optimiser state, batch, labels, learning
rate in, new parameters, new state and loss out), so the same kernels on
the same addresses do the same work for every batch. :class:`CapturedStep`
keeps one buffer per input (the *static inputs*), copies each new batch
into them on the device (``buffer[...] = x``: no host transfer), replays
the graph and returns its output buffers (the *static outputs*).

Restrictions of a captured step (CuPy raises during the capture when one is
broken, so a capture that succeeds also proves the step never synchronises
with the host):

* no host synchronisation: no ``float(loss)``, no ``.item()``, no Python
  ``if`` on a device value, no ``bool(xp.any(...))``; in refimpl that means
  ``kernel.forward(..., check_finite=False)`` (its finite check reads one
  value back), ``net.backward(..., check_finite=False)`` (every layer
  checks its ``dout`` the same way) and the loss's ``dout`` given as the
  Python number 1.0;
* no host-to-device copy inside the step: the learning rate comes in as a 0-d
  array (so a schedule does not force a new capture) and the optimiser's step
  count as a 0-d integer array (:func:`refimpl.optim.device_state`);
* no new memory outside the graph's pool: every array made during the
  capture comes from a private CuPy memory pool that this object keeps (the
  graph writes to those addresses at every replay), so they are never handed
  to other work;
* libraries set up before the capture: the step first runs eagerly
  (``warmup`` times), which compiles the kernels, creates the cuBLAS handle and
  the cuFFT plans (cached by CuPy, their work areas then in the private pool);
* CuPy refuses some libraries during capture, cuBLAS among them up to at
  least CuPy 14.2 (``NotImplementedError: calling cuBLAS API during stream
  capture is currently unsupported``, cupy/cupy#6290), and every matrix
  product of TinyNet and of the losses is a cuBLAS call, so such a step
  raises :class:`CaptureError` naming the library. Steps made of
  element-wise work and reductions, an optimiser update for one, are
  expected to capture (GPU tests check it).

Host synchronisations and host copies that remain in refimpl, none of them
on the path of :func:`refimpl.bench.gpu.train_step` (TinyNet, head, SupCon,
SGD or AdamW): batch norm's checks of the running variance (that it is not
negative, and that the new one does not overflow), dropout's mask (drawn on
the host and copied), the FFT convolution's DFT matrices (made on the host at
every call; ``auto`` picks im2col on CuPy), ``Sequential.forward(...,
check_finite=True)``, the official loss variants' check of the two views and
the blocked losses' checks of ``anchors``. A step that uses them does not
capture.

On NumPy, array_api_strict or any namespace other than CuPy the same object
simply calls the step (``captured`` is False): one code path for users, with
the same argument checks everywhere (structure, shapes, dtypes, namespace
and device of every input, arrays as outputs), so a step that runs here is
checked here.

Outputs on CUDA are the graph's own buffers: the next call overwrites them.
Pass them back in (they are copied into the inputs before the replay), or
copy what must be kept.

>>> import numpy as np
>>> def step(w, x, lr):
...     grad = 2 * (w - x)                       # d/dw of |w - x|^2
...     return w - lr * grad, np.sum((w - x) ** 2)
>>> captured = CapturedStep(step, np.zeros(2), np.ones(2), np.asarray(0.25))
>>> captured.captured                            # NumPy: the step runs as it is
False
>>> w, loss = captured(np.zeros(2), np.ones(2), 0.25)   # a number for a 0-d input
>>> w.tolist(), float(loss)
([0.5, 0.5], 2.0)
>>> captured(np.zeros(3), np.ones(2), 0.25)
Traceback (most recent call last):
...
ValueError: args[0] must have shape (2,), the shape of the step's example, got (3,) (a CUDA graph replays fixed shapes: make one CapturedStep per shape)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate, backend
from ._validate import _is_array, check_integer

_NUMBERS = (int, float, np.integer, np.floating)


class CaptureError(RuntimeError):
    """The step could not be captured as a CUDA graph (it synchronised with the host, copied host data,
    or called a library CuPy refuses during stream capture); the cause is chained."""


class _Slot(NamedTuple):
    """One array input of the step: where it is in the arguments and what it must be (like its example)."""

    path: str
    like: _validate.Output


def _leaves(tree, path: str):
    """``(path, leaf)`` of a nest of dicts, lists and tuples, in order."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{path}[{key!r}]")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, tree


def _rebuild(tree, values):
    """``tree`` with its leaves replaced, in order, by the iterator ``values`` (containers copied)."""
    if isinstance(tree, dict):
        return {key: _rebuild(value, values) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        items = [_rebuild(value, values) for value in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    return next(values)


def _match(example, given, path: str):
    """The leaves of ``given`` in the order of ``example``'s, after checking that the containers agree."""
    if isinstance(example, dict):
        if not isinstance(given, dict):
            raise TypeError(f"{path} must be a dict like the example, got {type(given).__name__}")
        if set(given) != set(example):
            missing, extra = sorted(set(example) - set(given), key=str), sorted(set(given) - set(example), key=str)
            raise ValueError(f"{path} must have the keys of the example: missing {missing}, unexpected {extra}")
        return [leaf for key in example for leaf in _match(example[key], given[key], f"{path}[{key!r}]")]
    if isinstance(example, (list, tuple)):
        if not isinstance(given, (list, tuple)):
            raise TypeError(f"{path} must be a {type(example).__name__} like the example, got {type(given).__name__}")
        if len(given) != len(example):
            raise ValueError(f"{path} must have {len(example)} entries like the example, got {len(given)}")
        return [leaf for i, (e, g) in enumerate(zip(example, given)) for leaf in _match(e, g, f"{path}[{i}]")]
    return [given]


def _check_leaf(slot: _Slot, value):
    """``value`` fits ``slot``: an array of its shape, dtype, namespace and device, or a number for a 0-d slot."""
    like = slot.like
    if isinstance(value, _NUMBERS) and not isinstance(value, bool) and like.shape == ():
        if isinstance(value, (float, np.floating)) and not like.xp.isdtype(like.dtype, "real floating"):
            raise TypeError(f"{slot.path} is a float, the step was made for {like.dtype}")
        return value
    if not _is_array(value) or not hasattr(value, "shape"):
        raise TypeError(f"{slot.path} must be an array like the example ({like.dtype}, shape {like.shape}), "
                        f"got {type(value).__name__}")
    return _validate.check_like(slot.path, value, like, "the step's example",
                                fixed_shapes="a CUDA graph replays fixed shapes: make one CapturedStep per shape")


def _check_outputs(outputs):
    """Every leaf of the step's result must be an array (a Python number would be frozen into a graph)."""
    for path, leaf in _leaves(outputs, "output"):
        if not _is_array(leaf) or not hasattr(leaf, "shape"):
            raise TypeError(f"{path} is {type(leaf).__name__} {leaf!r}: a captured step returns arrays only "
                            "(return the loss array itself, not float(loss), which reads it back to the host)")
    return outputs


class CapturedStep:
    """``step(*args)`` captured once as a CUDA graph (on CuPy) and replayed per call; eager elsewhere.

    Parameters
    ----------
    step : callable
        A pure function of arrays: ``step(*args)`` returns a nest (dicts,
        lists, tuples) of arrays, e.g. ``(new_params, new_state, loss)``. It
        must not mutate its arguments, synchronise with the host or copy host
        data to the device (see the module docstring).
    *example_args
        Nests of arrays, all of one namespace and device, with the shapes and
        dtypes of every later call; Python numbers are refused (make them 0-d
        arrays: the learning rate, the step count via
        :func:`refimpl.optim.device_state`). On CuPy they are copied into the
        static inputs; no reference to them is kept.
    warmup : int >= 1
        Eager runs of the step on CuPy before the capture. Elsewhere the step
        runs once here, to check that it returns arrays.

    Attributes
    ----------
    captured : bool
        True when calls replay a CUDA graph, False when they call ``step``.

    Raises
    ------
    CaptureError
        On CuPy, when the step cannot be captured (the cause is chained).
    TypeError, ValueError
        For an example that is not a nest of arrays of one namespace, or a
        step that returns something else than arrays; naming the argument.

    Calling: ``captured(*args)`` with arguments of the example's structure,
    shapes, dtypes, namespace and device (a Python number may stand for a 0-d
    input); anything else raises TypeError or ValueError naming the argument,
    e.g. ``args[0]['encoder.conv1.w']``. On CuPy the arguments are copied on the
    device into the static inputs, the graph is launched on the current stream
    and the static outputs are returned (overwritten by the next call); no
    step of a call waits for the device.
    """

    def __init__(self, step, *example_args, warmup: int = 1):
        if not callable(step):
            raise TypeError(f"step must be callable, got {type(step).__name__}")
        check_integer("warmup", warmup, minimum=1)
        leaves = list(_leaves(example_args, "args"))
        # the structure of the arguments, without keeping the caller's arrays
        self._step, self._template = step, _rebuild(example_args, iter([None] * len(leaves)))
        for path, leaf in leaves:
            if not _is_array(leaf) or not hasattr(leaf, "shape"):
                hint = (" (make it a 0-d array: backend.asarray(value, like=...); a step count: "
                        "optim.device_state)" if isinstance(leaf, _NUMBERS) else "")
                raise TypeError(f"{path} is {type(leaf).__name__} {leaf!r}: the example of a captured step holds "
                                f"arrays only{hint}")
        try:
            xp = backend.namespace(*[leaf for _, leaf in leaves])
        except TypeError as e:
            raise TypeError(f"the example arguments must all be arrays of one namespace: {e}") from None
        self._slots = [_Slot(path, _validate.output_of(leaf)) for path, leaf in leaves]
        first = self._slots[0]
        for slot in self._slots[1:]:  # compared, not hashed: a device object need not be hashable
            if slot.like.device != first.like.device:
                raise ValueError(f"the example arguments must all be on one device: {slot.path} is on "
                                 f"{slot.like.device}, {first.path} on {first.like.device}")
        self.captured = xp.__name__ == "cupy"
        if self.captured:
            self._capture(xp, [leaf for _, leaf in leaves], warmup)
        else:
            _check_outputs(step(*example_args))  # the eager step, once: it must return arrays

    def _values(self, args):
        """The checked leaves of ``args``, in the order of the slots."""
        if len(args) != len(self._template):
            raise TypeError(f"the step takes {len(self._template)} arguments like its example, got {len(args)}")
        given = _match(self._template, args, "args")
        return [_check_leaf(slot, value) for slot, value in zip(self._slots, given)]

    def __call__(self, *args):
        values = self._values(args)
        if not self.captured:
            arrays = [backend.full((), value, xp=slot.like.xp, dev=slot.like.device, dtype=slot.like.dtype)
                      if isinstance(value, _NUMBERS) else value for slot, value in zip(self._slots, values)]
            return _check_outputs(self._step(*_rebuild(self._template, iter(arrays))))
        for buffer, value in zip(self._inputs, values):
            if isinstance(value, _NUMBERS):
                buffer.fill(value.item() if isinstance(value, np.generic) else value)  # a fill kernel
            elif value is not buffer:
                buffer[...] = value  # a copy kernel on the current stream
        self._graph.launch()  # on the current stream, after the copies
        return _rebuild(self._outputs, iter(self._output_leaves))

    def _capture(self, cp, example_leaves, warmup):
        """Warm up and capture on a private stream, every array from a private memory pool kept by ``self``."""
        self._pool = cp.cuda.MemoryPool()
        self._stream = cp.cuda.Stream(non_blocking=True)  # the legacy default stream cannot capture
        caller = cp.cuda.get_current_stream()
        with cp.cuda.using_allocator(self._pool.malloc), self._stream:
            self._stream.wait_event(caller.record())  # the examples are ready
            self._inputs = [cp.array(leaf, copy=True) for leaf in example_leaves]
            args = _rebuild(self._template, iter(self._inputs))
            for _ in range(warmup):  # kernels compiled, cuBLAS handle and cuFFT plans made, pool filled
                _check_outputs(self._step(*args))
            self._stream.synchronize()  # outside the capture; errors of the eager step surface here
            self._stream.begin_capture()  # CuPy's default mode (relaxed) lets the pool grow during the capture
            try:
                outputs = self._step(*args)
            except Exception as error:
                _end_quietly(self._stream)
                raise CaptureError(_capture_message(error)) from error
            try:
                self._graph = self._stream.end_capture()
                # instantiated (newer CuPy does it at the first launch) and placed on the device now, so that
                # a graph CUDA cannot run fails here
                self._graph.upload(self._stream)
            except Exception as error:  # an illegal call invalidated the capture, or the graph cannot run
                raise CaptureError(_capture_message(error)) from error
        self._outputs = _check_outputs(outputs)
        self._output_leaves = [leaf for _, leaf in _leaves(outputs, "output")]


def _end_quietly(stream) -> None:
    """End a capture that failed; the partial graph, or the error saying it was invalidated, is dropped."""
    try:
        stream.end_capture()
    except Exception:  # noqa: BLE001  (cudaErrorStreamCaptureInvalidated: the first error is the one to report)
        pass


def _capture_message(error) -> str:
    message = (f"the step could not be captured as a CUDA graph ({type(error).__name__}: {error}). "
               "Inside a captured step nothing may wait for the device or read a value back (float(), .item(), "
               "bool() of an array, a finite check: pass check_finite=False to the loss), copy host data to "
               "the device, or call a library that CuPy refuses during stream capture")
    if "cuBLAS" in str(error):
        message += ("; CuPy refuses cuBLAS, so every matrix product (cupy/cupy#6290): such a step cannot be "
                    "captured with this CuPy")
    return message
