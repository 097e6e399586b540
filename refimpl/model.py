"""Networks as explicit compositions of pure layers: TinyNet and projection heads.

A network is a :class:`Sequential` of named layers. It owns no arrays: the
parameters, the batch-norm running statistics and the caches are plain values
passed in and returned.

* ``params = net.init(seed, dtype)``: dict ``"layer.name" -> array`` (He init,
  drawn on the host from ``seed``, then placed with ``like=`` or ``xp=``/``dev=``).
* ``state = net.init_state(dtype)``: batch-norm running statistics
  (``"bn1.running_mean"``, ``"bn1.running_var"``, ...). They are *state*, not
  parameters: no gradient, and the optimiser never sees them. Empty for a
  network without batch norm.
* ``out, cache = net.forward(params, x, train=..., state=state, input_grad=True)``.
* ``grads, dx = net.backward(dout, cache, check_finite=True)``: ``grads`` keyed like ``params``
  (``check_finite=False``: no layer checks its ``dout`` for NaN, a host sync on GPUs).
  With ``input_grad=False`` (like ``requires_grad=False`` on the input in
  PyTorch, e.g. for images) ``dx`` is None: the first layer with parameters
  skips its input gradient, and the layers before it get no backward pass.
* ``new_state = net.new_state(cache)``: the running statistics after this
  forward pass (updated in training mode, unchanged in evaluation mode).
  Nothing is mutated; a training loop carries ``state`` forward explicitly.

:func:`save_npz` / :func:`load_npz` store parameters and state in one ``.npz``
with the sha256 of its arrays (no pickle), and check the file, the checksum,
names, dtypes and shapes on load.

>>> import numpy as np
>>> net = Sequential([("fc1", Linear(3, 4)), ("act", ReLU()), ("fc2", Linear(4, 2))])
>>> params = net.init(0, "float64")
>>> sorted((k, v.shape) for k, v in params.items())
[('fc1.b', (4,)), ('fc1.w', (4, 3)), ('fc2.b', (2,)), ('fc2.w', (2, 4))]
>>> out, cache = net.forward(params, np.ones((5, 3)), train=True)
>>> grads, dx = net.backward(np.ones_like(out), cache)
>>> out.shape, dx.shape, sorted(grads) == sorted(params)
((5, 2), (5, 3), True)
>>> out, cache = net.forward(params, np.ones((5, 3)), train=True, input_grad=False)
>>> net.backward(np.ones_like(out), cache)[1] is None
True
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import zipfile
from typing import NamedTuple

import numpy as np

from . import _validate, backend
from .layers import batchnorm2d, conv2d, global_avg_pool, linear, maxpool2d, relu


def _placement(like, xp, dev):
    """(namespace, device) from ``like`` or from ``xp``/``dev`` (default NumPy on the host)."""
    if like is not None:
        return backend.namespace(like), backend.device(like)
    return xp, dev


def _he_normal(gen, shape, fan_in, dtype, xp, dev):
    """He (Kaiming) normal init for ReLU networks: N(0, 2 / fan_in), host-drawn."""
    return backend.normal(gen, shape, xp=xp, dev=dev, dtype=dtype, scale=math.sqrt(2.0 / fan_in))


def _constant(value, shape, dtype, xp, dev):
    return backend.asarray(np.full(shape, value, dtype=np.float64), xp=xp, dev=dev, dtype=dtype)


class Layer:
    """The one layer contract: a pure module of :mod:`refimpl.layers` as a network layer.

    A layer module has ``forward(x, *params, *state, **options) -> (out,
    cache)`` and ``backward(dout, cache) -> (dx, *dparams)``, the gradients in
    the order of the parameters. A subclass names its ``module``, its
    parameters ``params`` in that order, the keyword ``options`` of the
    module's forward and, where they concern it, the parameter and state
    shapes, :meth:`init` and :meth:`new_state`; :meth:`forward` and
    :meth:`backward` adapt every module alike: ``forward(params, x, *, train,
    state=None, input_grad=True) -> (out, cache)`` with the module's own cache,
    and ``backward(dout, cache) -> (grads, dx)`` with ``grads`` a dict keyed
    like ``params``. A parameter the layer does not have (a convolution
    without bias) is passed as None and gets no gradient.

    ``input_grad=False`` reaches the modules that can skip their input gradient
    (``takes_input_grad``: conv2d and linear, where it pays: TinyNet's first
    5x5 convolution on 64 x 1 x 64 x 64 images spends 3.1 of its 8.7 ms of
    backward on ``dx``, 1-3% of a training step, and a probe on frozen
    features needs no ``dx`` at all); other layers compute ``dx`` and
    :class:`Sequential` drops it.
    """

    module = None
    params: tuple = ()
    takes_input_grad = False

    def options(self, train: bool, x=None) -> dict:
        """Keyword arguments of ``module.forward`` besides ``input_grad``, for input ``x``."""
        return {}

    def param_shapes(self) -> dict:
        """``{name: shape}`` of the parameters (what :meth:`init` returns)."""
        return {}

    def state_shapes(self) -> dict:
        """``{name: shape}`` of the state (what :meth:`init_state` returns)."""
        return {}

    def init(self, seed, dtype="float32", *, like=None, xp=None, dev=None) -> dict:
        """Initial parameters, drawn on the host from ``seed`` (an int or a Generator)."""
        return {}

    def init_state(self, dtype="float32", *, like=None, xp=None, dev=None) -> dict:
        """Initial state (batch-norm running statistics)."""
        return {}

    def new_state(self, cache) -> dict:
        """The state after the forward pass that made ``cache``."""
        return {}

    def forward(self, params, x, *, train, state=None, input_grad=True):
        _validate.check_bool("input_grad", input_grad)
        if self.state_shapes() and not state:
            raise ValueError(f"state must hold this layer's {' and '.join(self.state_shapes())} "
                             "(make it with init_state)")
        args = [params.get(name) for name in self.params] + [state[name] for name in self.state_shapes()]
        options = self.options(train, x)
        if self.takes_input_grad:
            options["input_grad"] = input_grad
        return self.module.forward(x, *args, **options)

    def backward(self, dout, cache, *, check_finite=True):
        flag = {} if _validate.check_bool("check_finite", check_finite) else {"check_finite": False}
        dx, *dparams = self.module.backward(dout, cache, **flag)
        shapes = self.param_shapes()
        return {name: d for name, d in zip(self.params, dparams) if name in shapes}, dx


#: the values of ``Conv2d(algorithm=...)``: conv2d's algorithms, or "auto" (see :class:`Conv2d`)
CONV_ALGORITHMS = ("auto",) + conv2d.ALGORITHMS


@dataclasses.dataclass(frozen=True)
class Conv2d(Layer):
    """2-D cross-correlation (:mod:`refimpl.layers.conv2d`), square kernel; params ``w``, ``b``.

    ``algorithm`` is passed to :func:`refimpl.layers.conv2d.forward`: "im2col",
    "fft", or "auto" (the default), which picks per call what ``refimpl bench
    tinynet --algorithms`` and the per-layer timings measured faster: "fft" on
    the CPU (NumPy and other non-CuPy namespaces) for layers with several input
    channels and kernels of at least 5x5 (TinyNet's conv2-conv5: faster than
    im2col, forward and backward, on one thread), "im2col"
    otherwise: one input channel (conv1: its transforms cost more than its GEMM
    with inner dimension 25), 3x3 kernels (im2col faster on TinyNet's conv2, FFT
    1.2-1.5x on conv3-conv5 on one thread: too close to call on two), CuPy
    (not measured). The algorithms agree to float rounding.
    """

    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 0
    bias: bool = True
    algorithm: str = "auto"

    module = conv2d
    params = ("w", "b")
    takes_input_grad = True

    def __post_init__(self):
        _validate.check_choice("algorithm", self.algorithm, CONV_ALGORITHMS)

    def algorithm_for(self, x) -> str:
        """The algorithm for input ``x``: ``algorithm`` itself, or what "auto" picks for x's backend."""
        if self.algorithm != "auto":
            return self.algorithm
        on_cpu = backend.namespace(x).__name__ != "cupy"
        return "fft" if on_cpu and self.in_channels > 1 and self.kernel_size >= 5 else "im2col"

    def options(self, train, x=None):
        return {"stride": self.stride, "padding": self.padding, "algorithm": self.algorithm_for(x)}

    def param_shapes(self):
        k = self.kernel_size
        shapes = {"w": (self.out_channels, self.in_channels, k, k)}
        if self.bias:
            shapes["b"] = (self.out_channels,)
        return shapes

    def init(self, seed, dtype="float32", *, like=None, xp=None, dev=None):
        xp, dev = _placement(like, xp, dev)
        shapes = self.param_shapes()
        fan_in = self.in_channels * self.kernel_size**2
        params = {"w": _he_normal(backend.rng(seed), shapes["w"], fan_in, dtype, xp, dev)}
        if self.bias:
            params["b"] = _constant(0.0, shapes["b"], dtype, xp, dev)
        return params


@dataclasses.dataclass(frozen=True)
class Linear(Layer):
    """Affine map ``x @ w.T + b`` (:mod:`refimpl.layers.linear`); params ``w`` (out, in), ``b``."""

    in_features: int
    out_features: int

    module = linear
    params = ("w", "b")
    takes_input_grad = True

    def param_shapes(self):
        return {"w": (self.out_features, self.in_features), "b": (self.out_features,)}

    def init(self, seed, dtype="float32", *, like=None, xp=None, dev=None):
        xp, dev = _placement(like, xp, dev)
        w = _he_normal(backend.rng(seed), self.param_shapes()["w"], self.in_features, dtype, xp, dev)
        return {"w": w, "b": _constant(0.0, (self.out_features,), dtype, xp, dev)}


@dataclasses.dataclass(frozen=True)
class BatchNorm2d(Layer):
    """Batch norm over (N, H, W) per channel (:mod:`refimpl.layers.batchnorm2d`); params ``gamma``,
    ``beta``; state ``running_mean``, ``running_var``.

    Training mode normalises with the batch statistics and the new running
    statistics are read from the cache (:meth:`new_state`); evaluation mode
    normalises with the running statistics passed in ``state`` and returns them
    unchanged.
    """

    channels: int
    momentum: float = 0.1
    eps: float = 1e-5

    module = batchnorm2d
    params = ("gamma", "beta")

    def options(self, train, x=None):
        return {"train": train, "momentum": self.momentum, "eps": self.eps}

    def param_shapes(self):
        return {"gamma": (self.channels,), "beta": (self.channels,)}

    def state_shapes(self):
        return {"running_mean": (self.channels,), "running_var": (self.channels,)}

    def init(self, seed, dtype="float32", *, like=None, xp=None, dev=None):
        xp, dev = _placement(like, xp, dev)
        return {"gamma": _constant(1.0, (self.channels,), dtype, xp, dev),
                "beta": _constant(0.0, (self.channels,), dtype, xp, dev)}

    def init_state(self, dtype="float32", *, like=None, xp=None, dev=None):
        xp, dev = _placement(like, xp, dev)
        return {"running_mean": _constant(0.0, (self.channels,), dtype, xp, dev),
                "running_var": _constant(1.0, (self.channels,), dtype, xp, dev)}

    def new_state(self, cache):
        return dict(zip(self.state_shapes(), batchnorm2d.new_running_stats(cache)))


class ReLU(Layer):
    """Element-wise ``max(x, 0)`` (:mod:`refimpl.layers.relu`)."""

    module = relu


@dataclasses.dataclass(frozen=True)
class MaxPool2d(Layer):
    """Max pooling over ``kernel_size`` windows (stride defaults to the kernel size)."""

    kernel_size: int = 2

    module = maxpool2d

    def options(self, train, x=None):
        return {"kernel_size": self.kernel_size}


class GlobalAvgPool(Layer):
    """Mean over the spatial axes: (N, C, H, W) -> (N, C) (:mod:`refimpl.layers.global_avg_pool`)."""

    module = global_avg_pool


class NonFiniteOutput(ValueError):
    """A layer's output holds NaN or inf although its input was finite (``check_finite=True``)."""

    def __init__(self, layer: str):
        super().__init__(f"layer {layer!r} produced NaN or inf from a finite input (check_finite=True)")
        self.layer = layer


class SequentialCache(NamedTuple):
    """The caches of a :class:`Sequential` forward pass, layer by layer, and its ``input_grad``."""

    layers: tuple
    input_grad: bool


def _check_names(kind: str, given: dict, expected: dict) -> None:
    if set(given) != set(expected):
        missing = sorted(set(expected) - set(given))
        extra = sorted(set(given) - set(expected))
        raise ValueError(f"{kind} do not match the network: missing {missing}, unexpected {extra}")


def subtree(d: dict, name: str) -> dict:
    """Entries of ``d`` under ``name.``, with the prefix removed (one layer's parameters).

    >>> subtree({"conv1.w": 1, "conv1.b": 2, "conv2.w": 3}, "conv1")
    {'w': 1, 'b': 2}
    """
    prefix = name + "."
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}


class Sequential(Layer):
    """Named layers applied in order; itself a layer, so networks nest.

    Parameter and state names are ``"<layer name>.<name>"`` (nested:
    ``"encoder.conv1.w"``). The cache of a forward pass is a
    :class:`SequentialCache`.
    """

    def __init__(self, layers):
        names = [name for name, _ in layers]
        if len(set(names)) != len(names) or any(not n or "." in n for n in names):
            raise ValueError(f"layers must have distinct non-empty names without '.', got {names}")
        self.layers = tuple(layers)

    def _collect(self, method: str, *args, **kwargs) -> dict:
        return {f"{name}.{k}": v for name, layer in self.layers
                for k, v in getattr(layer, method)(*args, **kwargs).items()}

    def param_shapes(self) -> dict:
        return self._collect("param_shapes")

    def state_shapes(self) -> dict:
        return self._collect("state_shapes")

    def init(self, seed, dtype="float32", *, like=None, xp=None, dev=None) -> dict:
        """Parameters drawn from one host generator, layer by layer in order."""
        return self._collect("init", backend.rng(seed), dtype, like=like, xp=xp, dev=dev)

    def init_state(self, dtype="float32", *, like=None, xp=None, dev=None) -> dict:
        """Initial running statistics (mean 0, variance 1), as PyTorch."""
        return self._collect("init_state", dtype, like=like, xp=xp, dev=dev)

    def _stop(self, input_grad: bool) -> int:
        """Index of the last layer that backward visits: 0, or without ``input_grad``
        the first layer with parameters (which then skips its own dx; none: past the end)."""
        if input_grad:
            return 0
        return next((i for i, (_, layer) in enumerate(self.layers) if layer.param_shapes()), len(self.layers))

    def forward(self, params, x, *, train: bool, state=None, input_grad: bool = True, check_finite: bool = False):
        """Apply the layers in order. Layers pass NaN and inf through, as PyTorch's do;
        ``check_finite=True`` checks the input and every layer's output and raises
        :class:`NonFiniteOutput` naming the first layer whose output is not finite."""
        _check_names("params", params, self.param_shapes())
        state = {} if state is None else state
        _check_names("state", state, self.state_shapes())
        stop = self._stop(_validate.check_bool("input_grad", input_grad))
        if _validate.check_bool("check_finite", check_finite):
            _validate.check_array("x", x, floating=False)
        caches = []
        for i, (name, layer) in enumerate(self.layers):
            flag = {} if input_grad or i != stop else {"input_grad": False}
            if check_finite and isinstance(layer, Sequential):
                flag["check_finite"] = True
            try:
                x, cache = layer.forward(subtree(params, name), x, train=train, state=subtree(state, name), **flag)
            except NonFiniteOutput as inner:
                raise NonFiniteOutput(f"{name}.{inner.layer}") from None
            if check_finite and not _validate.all_finite(x):
                raise NonFiniteOutput(name)
            caches.append(cache)
        return x, SequentialCache(tuple(caches), input_grad)

    def backward(self, dout, cache, *, check_finite=True):
        """Backward through the layers in reverse order: ``(grads, dx)``. Each layer checks its ``dout``
        for NaN and inf, one value read back each (a host sync on GPUs); ``check_finite=False`` skips
        those checks, as a step captured as a CUDA graph must (:mod:`refimpl.graph`)."""
        input_grad = cache.input_grad
        stop = self._stop(input_grad)
        flag = {} if _validate.check_bool("check_finite", check_finite) else {"check_finite": False}
        grads = {}
        for (name, layer), layer_cache in zip(self.layers[stop:][::-1], cache.layers[stop:][::-1]):
            layer_grads, dout = layer.backward(dout, layer_cache, **flag)
            grads.update({f"{name}.{k}": v for k, v in layer_grads.items()})
        return {k: grads[k] for k in self.param_shapes()}, (dout if input_grad else None)

    def new_state(self, cache) -> dict:
        return {f"{name}.{k}": v for (name, layer), c in zip(self.layers, cache.layers)
                for k, v in layer.new_state(c).items()}


def tinynet(in_channels: int = 1, *, widths=(16, 32, 64, 128, 256), kernel_size: int = 5,
            batchnorm: bool = False, pool_last: bool = True, algorithm: str = "auto") -> Sequential:
    """TinyNet, the small encoder of WSP (Sarfati et al., MICCAI 2023, Sec. 3.2, Fig. 3).

    Five stages ``conv{i} -> [bn{i}] -> pool{i} -> relu{i}`` (max pool 2x2,
    stride 2; the fifth pool only when ``pool_last``), then global average
    pooling to a ``widths[-1]``-dimensional representation. Max pooling and
    ReLU commute, :math:`\\max_i \\max(a_i, 0) = \\max(\\max_i a_i, 0)`, and the
    gradient reaches the same first maximum of each window either way (a
    window whose maximum is <= 0 passes none), so the usual ``relu -> pool``
    order is the same function, outputs and gradients bit for bit; pooling
    first runs the ReLU on a quarter of the values. Shapes: ``x``
    (N, in_channels, H, W) -> (N, widths[-1]); ``H`` and ``W`` must be
    divisible by 32 (16 without ``pool_last``).

    What the paper fixes and what we chose. The paper says: five convolutional
    layers, a 256-d representation, 1.1M parameters, "inspired by" Yin et al.
    (Eur. Radiol. 2021); the figure with the details is not in the text. The
    authors' code (``Guerbet-AI/wsp-contrastive``, ``models/tinynet.py``) uses
    5x5 kernels, widths 16-32-64-128, max pool 2x2 after each of the first
    four convolutions, another max pool, then adaptive average pooling, and no
    batch norm. With widths 16-32-64-128-256 and 5x5 kernels the encoder has
    1,088,896 parameters, which is the paper's 1.1M (3x3 kernels would give
    392,320), so those are the defaults. Our choices: ``padding =
    kernel_size // 2`` ("same"), because the authors' unpadded 5x5 stack
    cannot take 64x64 inputs; batch norm (off by default, as in the authors'
    code) goes between each convolution and its ReLU, and then the
    convolution drops its bias (batch norm's ``beta`` replaces it).
    ``algorithm`` is every convolution's :class:`Conv2d` algorithm ("auto":
    with 5x5 kernels on the CPU, im2col for conv1, with its single input
    channel, and FFT for the others; im2col for 3x3 kernels).

    >>> net = tinynet()
    >>> sum(math.prod(s) for s in net.param_shapes().values())
    1088896
    """
    layers = []
    for i, (c_in, c_out) in enumerate(zip((in_channels,) + tuple(widths[:-1]), widths), start=1):
        layers.append((f"conv{i}", Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2,
                                          bias=not batchnorm, algorithm=algorithm)))
        if batchnorm:
            layers.append((f"bn{i}", BatchNorm2d(c_out)))
        if i < len(widths) or pool_last:
            layers.append((f"pool{i}", MaxPool2d(2)))
        layers.append((f"relu{i}", ReLU()))
    layers.append(("gap", GlobalAvgPool()))
    return Sequential(layers)


def mlp_head(in_dim: int = 256, hidden: int = 256, out_dim: int = 64) -> Sequential:
    """Projection head Linear-ReLU-Linear (WSP: 256 -> 256 -> 64 latent space).

    Shapes: (N, in_dim) -> (N, out_dim); parameters ``fc1.w``, ``fc1.b``,
    ``fc2.w``, ``fc2.b``.

    >>> sorted(mlp_head().param_shapes().items())
    [('fc1.b', (256,)), ('fc1.w', (256, 256)), ('fc2.b', (64,)), ('fc2.w', (64, 256))]
    """
    return Sequential([("fc1", Linear(in_dim, hidden)), ("relu", ReLU()), ("fc2", Linear(hidden, out_dim))])


#: the entry of a parameter file that holds :func:`_checksum` of its arrays
CHECKSUM_KEY = "sha256"
PARAM_DTYPES = ("float32", "float64")


def save_npz(path, params: dict, state: dict | None = None) -> None:
    """Write parameters (``params/<name>``), state (``state/<name>``) and their sha256 to an ``.npz``.

    Every array must be finite float32 or float64; the sha256 covers the
    names, dtypes, shapes and bytes of all of them, and :func:`load_npz`
    checks it.
    """
    arrays = {f"params/{k}": backend.to_numpy(v) for k, v in params.items()}
    arrays.update({f"state/{k}": backend.to_numpy(v) for k, v in (state or {}).items()})
    for key, value in arrays.items():
        _check_stored(key, value)
    np.savez(path, **arrays, **{CHECKSUM_KEY: np.array(_checksum(arrays))})


def load_npz(path, net: Layer, *, dtype=None, like=None, xp=None, dev=None):
    """Read ``(params, state)`` saved by :func:`save_npz` for ``net``, checking the file first.

    No pickle is ever loaded. Arrays are placed with ``like=`` or ``xp``/``dev``
    and cast to ``dtype`` (``"float32"`` or ``"float64"``) when given, else
    the stored dtype is kept.

    Raises
    ------
    ValueError
        If the file is not a readable ``.npz`` (damaged, truncated, another
        format), its sha256 does not match its arrays, an array is not finite
        float32/float64, or a name is missing or unexpected, or a shape
        differs from the network's.
    TypeError
        If ``dtype`` is not a float type.

    >>> import io
    >>> net = mlp_head(2, 3, 1)
    >>> buffer = io.BytesIO()
    >>> save_npz(buffer, net.init(0, "float64"))
    >>> _ = buffer.seek(0)
    >>> params, state = load_npz(buffer, net, dtype="float32")
    >>> params["fc2.w"].dtype, state
    (dtype('float32'), {})
    >>> _ = buffer.seek(0)
    >>> load_npz(buffer, mlp_head(2, 4, 1))
    Traceback (most recent call last):
    ...
    ValueError: stored params 'fc1.w' has shape (3, 2), the network expects (4, 2)
    """
    if dtype is not None and _dtype_name(dtype) not in PARAM_DTYPES:
        raise TypeError(f"dtype must be one of {PARAM_DTYPES} or None, got {dtype!r}")
    xp, dev = _placement(like, xp, dev)
    stored = _read_npz(path)
    for key, value in stored.items():
        if key != CHECKSUM_KEY:
            _check_stored(key, value, source=path)
    loaded = {kind: {k[len(kind) + 1:]: v for k, v in stored.items() if k.startswith(kind + "/")}
              for kind in ("params", "state")}
    result = []
    for kind, expected in (("params", net.param_shapes()), ("state", net.state_shapes())):
        _check_names(f"stored {kind}", loaded[kind], expected)
        for name, shape in expected.items():
            if loaded[kind][name].shape != tuple(shape):
                raise ValueError(f"stored {kind} {name!r} has shape {loaded[kind][name].shape}, "
                                 f"the network expects {tuple(shape)}")
        result.append({k: backend.asarray(v, xp=xp, dev=dev, dtype=dtype) for k, v in loaded[kind].items()})
    return tuple(result)


def _read_npz(path) -> dict:
    """Every array of a parameter file, its checksum verified; one clear ValueError for any damage."""
    where = str(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "the parameter file")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array (.npy), not the .npz that save_npz writes")
        with npz:
            stored = {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "pickle" in str(e):  # NumPy's advice to allow pickles is never what a damaged file needs
            e = "its header is not an array header"
        raise ValueError(f"{where} is not a parameter file written by save_npz: {e}") from None
    except (OSError, EOFError, NotImplementedError, KeyError, RuntimeError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where} is not a readable parameter file (damaged, truncated or another "
                         f"format): {type(e).__name__}: {e}") from None
    if stored.get(CHECKSUM_KEY, np.array(0)).dtype.kind != "U":
        raise ValueError(f"{where} has no sha256 entry: not a parameter file written by save_npz")
    arrays = {k: v for k, v in stored.items() if k != CHECKSUM_KEY}
    if str(stored[CHECKSUM_KEY]) != _checksum(arrays):
        raise ValueError(f"{where}: the sha256 of its arrays does not match the one stored with them "
                         "(the file was changed or damaged)")
    return stored


def _dtype_name(dtype) -> str:
    """``"float32"`` for "float32", np.float32, np.dtype("float32") and other namespaces' float32."""
    if isinstance(dtype, str):
        return dtype
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


def _checksum(arrays: dict) -> str:
    """sha256 over the sorted names, dtypes, shapes and C-order bytes of ``arrays``."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _check_stored(key: str, value, *, source=None) -> None:
    """A stored array must be finite float32 / float64 under ``params/`` or ``state/``."""
    where = f"{source}: " if source is not None else ""
    if not key.startswith(("params/", "state/")):
        raise ValueError(f"{where}unexpected entry {key!r} (entries are params/<name> and state/<name>)")
    if str(value.dtype) not in PARAM_DTYPES:
        raise ValueError(f"{where}{key} must be float32 or float64, got {value.dtype}")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{where}{key} must be finite (no NaN or inf)")
