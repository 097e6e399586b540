"""CapturedStep: the wrapper's checks on every backend, the TinyNet training step through it, and on CuPy the
capture itself (replays equal to the eager step; a host sync inside the step refused)."""
import contextlib

import numpy as np
import pytest

from refimpl import backend, graph, model, optim
from refimpl.bench.gpu import train_step
from refimpl.losses import kernel

OPTIMISERS = [optim.SGD(momentum=0.9, weight_decay=1e-2), optim.AdamW(weight_decay=1e-2)]
#: replayed vs eager step: float64 to rounding, float32 loosely (the reductions may run in another order)
RTOL = {"float64": 1e-10, "float32": 1e-4}


def _tiny_net():
    encoder = model.tinynet(kernel_size=3, widths=(4, 8, 8, 8, 8))
    return model.Sequential([("encoder", encoder), ("head", model.mlp_head(8, 8, 4))])


def _batches(xpd, dtype, n=3, batch=8, size=32):
    gen = np.random.default_rng(1)
    labels = xpd.put(np.arange(batch) % 2)
    return [(xpd.put(gen.standard_normal((batch, 1, size, size)), dtype=dtype), labels) for _ in range(n)]


def _close(got, want, dtype, what):
    got, want = backend.to_numpy(got), backend.to_numpy(want)
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-2, err_msg=what)


@contextlib.contextmanager
def _expected_capture_refusal():
    """On CuPy, a step with matrix products may be refused (CuPy refuses cuBLAS during capture): xfail, saying so."""
    try:
        yield
    except graph.CaptureError as error:
        if "cuBLAS" in str(error):
            pytest.xfail(f"CuPy refuses cuBLAS during stream capture: {error.__cause__}")
        raise


@pytest.mark.parametrize("opt", OPTIMISERS, ids=["sgd", "adamw"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tinynet_supcon_step_replayed_equals_the_eager_step(xpd, opt, dtype):
    """Three batches through the CapturedStep equal three direct calls of the step (on CuPy: graph replays)."""
    net = _tiny_net()
    step = train_step(net, opt)
    params = net.init(0, dtype, xp=xpd.xp, dev=xpd.device)
    state = optim.device_state(opt.init_state(params), like=params["head.fc1.w"])
    lr = xpd.put(np.asarray(0.05), dtype=dtype)
    batches = _batches(xpd, dtype)
    with _expected_capture_refusal():
        captured = graph.CapturedStep(step, params, state, *batches[0], lr)
    assert captured.captured == (xpd.name == "cupy")
    eager_params, eager_state = params, state
    for x, labels in batches:
        eager_params, eager_state, eager_loss = step(eager_params, eager_state, x, labels, lr)
        params, state, loss = captured(params, state, x, labels, lr)
        _close(loss, eager_loss, dtype, "loss")
        for name in eager_params:
            _close(params[name], eager_params[name], dtype, name)
    assert int(backend.to_numpy(state["step"])) == 3


@pytest.mark.parametrize("opt", OPTIMISERS, ids=["sgd", "adamw"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optimiser_update_replayed_equals_the_eager_update(xpd, opt, dtype):
    """An update without matrix products captures on CuPy; with a learning-rate schedule fed as numbers."""
    gen = np.random.default_rng(2)
    params = {"w": xpd.put(gen.standard_normal((3, 4)), dtype=dtype), "b": xpd.put(gen.standard_normal(4), dtype=dtype)}
    grads = [{k: xpd.put(gen.standard_normal(tuple(v.shape)), dtype=dtype) for k, v in params.items()} for _ in range(3)]
    lr = xpd.put(np.asarray(0.1), dtype=dtype)

    def update(params, state, grads, lr):
        return opt.step(params, grads, state, lr=lr)

    state = optim.device_state(opt.init_state(params), like=params["w"])
    captured = graph.CapturedStep(update, params, state, grads[0], lr)
    assert captured.captured == (xpd.name == "cupy")
    host = {k: backend.to_numpy(v) for k, v in params.items()}
    host_state = opt.init_state(host)
    for t, g in enumerate(grads):
        rate = optim.cosine_lr(t, base_lr=0.1, total_steps=4)
        params, state = captured(params, state, g, rate)
        host, host_state = opt.step(host, {k: backend.to_numpy(v) for k, v in g.items()}, host_state, lr=rate)
        for name in host:
            _close(params[name], host[name], dtype, name)


def test_inputs_are_not_mutated_and_outputs_are_arrays(xpd):
    opt = optim.SGD(momentum=0.9)
    net = _tiny_net()
    params = net.init(0, "float64", xp=xpd.xp, dev=xpd.device)
    state = optim.device_state(opt.init_state(params), like=params["head.fc1.w"])
    (x, labels), = _batches(xpd, "float64", n=1)
    lr = xpd.put(np.asarray(0.05))
    before = [backend.to_numpy(a).copy() for a in (x, labels, lr, *params.values())]
    with _expected_capture_refusal():
        captured = graph.CapturedStep(train_step(net, opt), params, state, x, labels, lr)
    captured(params, state, x, labels, lr)
    after = [backend.to_numpy(a) for a in (x, labels, lr, *params.values())]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


def _device1():
    strict = pytest.importorskip("array_api_strict")
    return strict, strict.Device("device1")


@contextlib.contextmanager
def _no_host_reads(strict, monkeypatch):
    """Every way an array_api_strict array gives its values to the host raises inside the block."""
    cls = type(strict.asarray(0.0))

    def refuse(self, *args, **kwargs):
        raise AssertionError("a host read of a device value inside the step")

    with monkeypatch.context() as patch:
        for method in ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__array__", "__dlpack__",
                       "to_device"):
            patch.setattr(cls, method, refuse)
        yield


@pytest.mark.parametrize("opt", OPTIMISERS, ids=["sgd", "adamw"])
def test_the_tinynet_step_reads_nothing_back_to_the_host(monkeypatch, opt):
    """The step as captured (check_finite=False, lr and the step count on the device, dout a number) runs on
    array_api_strict's device1 with every host read refused: no hidden sync; with the loss's finite check on,
    the same guard trips, so it would see one."""
    strict, dev = _device1()
    net = _tiny_net()
    params = net.init(0, "float32", xp=strict, dev=dev)
    state = optim.device_state(opt.init_state(params), like=params["head.fc1.w"])
    x = backend.asarray(np.random.default_rng(0).standard_normal((8, 1, 32, 32)), xp=strict, dev=dev, dtype="float32")
    labels = backend.asarray(np.arange(8) % 2, xp=strict, dev=dev)
    lr = backend.asarray(0.05, xp=strict, dev=dev, dtype="float32")
    step = train_step(net, opt)
    captured = graph.CapturedStep(step, params, state, x, labels, lr)
    with _no_host_reads(strict, monkeypatch):
        params, state, loss = captured(params, state, x, labels, 0.05)
        params, state, loss = captured(params, state, x, labels, lr)
        z, _ = net.forward(params, x, train=True, input_grad=False)
        with pytest.raises(AssertionError, match="host read"):
            kernel.forward(z, labels=labels, temperature=0.1)  # check_finite=True: one value read back
    assert np.isfinite(backend.to_numpy(loss))


def _simple(w, x, lr):
    return {"w": w - lr * (w - x)}, backend.namespace(w).sum((w - x) ** 2)


def test_eager_fallback_equals_calling_the_step(xpd):
    w, x, lr = xpd.put(np.array([1.0, 2.0])), xpd.put(np.array([0.0, 4.0])), xpd.put(np.asarray(0.5))
    captured = graph.CapturedStep(_simple, w, x, lr)
    want = _simple(w, x, lr)
    got = captured(w, x, 0.5)  # a number for the 0-d input
    np.testing.assert_array_equal(backend.to_numpy(got[0]["w"]), backend.to_numpy(want[0]["w"]))
    assert float(backend.to_numpy(got[1])) == float(backend.to_numpy(want[1])) == 5.0


def test_bad_arguments_are_refused_naming_them():
    w, x, lr = np.array([1.0, 2.0]), np.array([0.0, 4.0]), np.asarray(0.5)
    captured = graph.CapturedStep(lambda p, x, lr: _simple(p["w"], x, lr), {"w": w}, x, lr)
    with pytest.raises(ValueError, match=r"args\[0\]\['w'\] must have shape \(2,\), the shape of the step's example, got \(3,\) "
                                         r"\(a CUDA graph replays fixed shapes"):
        captured({"w": np.zeros(3)}, x, lr)
    with pytest.raises(TypeError, match=r"args\[1\] has dtype float32, expected the dtype of the step's example \(float64\): "
                                        "nothing is cast"):
        captured({"w": w}, x.astype(np.float32), lr)
    with pytest.raises(ValueError, match=r"args\[0\] must have the keys of the example: missing \['w'\], "
                                         r"unexpected \['v'\]"):
        captured({"v": w}, x, lr)
    with pytest.raises(TypeError, match=r"args\[0\] must be a dict like the example, got list"):
        captured([w], x, lr)
    with pytest.raises(TypeError, match=r"args\[1\] must be an array like the example"):
        captured({"w": w}, [0.0, 4.0], lr)
    with pytest.raises(TypeError, match="takes 3 arguments like its example, got 2"):
        captured({"w": w}, x)
    with pytest.raises(TypeError, match=r"args\[1\] is a float, the step was made for int64"):
        graph.CapturedStep(lambda w, n: (w,), w, np.asarray(1))(w, 1.5)
    with pytest.raises(TypeError, match=r"args\[1\]\['step'\] is int 0: .*optim.device_state"):
        graph.CapturedStep(lambda p, s: (p,), {"w": w}, {"step": 0})
    with pytest.raises(TypeError, match=r"output\[1\] is float 3.0: a captured step returns arrays only"):
        graph.CapturedStep(lambda w: (w, float(w.sum())), w)
    with pytest.raises(TypeError, match="step must be callable"):
        graph.CapturedStep("step", w)
    with pytest.raises(ValueError, match="warmup must be an integer >= 1"):
        graph.CapturedStep(_simple, w, x, lr, warmup=0)


def test_arrays_of_another_namespace_or_device_are_refused():
    strict, dev = _device1()
    w = np.array([1.0, 2.0])
    on_device = backend.asarray(w, xp=strict, dev=dev)
    with pytest.raises(TypeError, match="one namespace"):
        graph.CapturedStep(lambda a, b: (a,), w, on_device)
    with pytest.raises(ValueError, match="one device"):
        graph.CapturedStep(lambda a, b: (a,), on_device, backend.asarray(w, xp=strict, dev=strict.Device("CPU_DEVICE")))
    captured = graph.CapturedStep(lambda a: (a,), on_device)
    with pytest.raises(TypeError, match=r"args\[0\] must be an array of the step's example's namespace "
                                        r"\(array_api_strict\), got numpy.ndarray"):
        captured(w)
    with pytest.raises(ValueError, match=r"args\[0\] is on device .*, the step's example on"):
        captured(backend.asarray(w, xp=strict, dev=strict.Device("CPU_DEVICE")))


#: the conftest's backend fixture on CuPy only (skipped without a GPU, failed under REFIMPL_REQUIRE_GPU=1)
ON_CUPY = pytest.mark.parametrize("xpd", [pytest.param("cupy", marks=pytest.mark.gpu)], indirect=True)


@ON_CUPY
def test_a_host_sync_inside_the_step_is_refused_during_the_capture(xpd):
    """CuPy raises when a capturing stream would wait for the host, so a capture that succeeds proves the step
    has no host synchronisation."""
    cp = xpd.xp

    def synchronising(w):
        return (w * 2.0 if float(w.sum()) > 0 else w,)  # a Python branch on a device value

    with pytest.raises(graph.CaptureError, match="could not be captured"):
        graph.CapturedStep(synchronising, cp.ones(3))

    def checking(z, labels):  # the loss with its finite check on
        return (kernel.forward(z, labels=labels)[0],)

    with pytest.raises(graph.CaptureError):
        graph.CapturedStep(checking, cp.ones((4, 2)), cp.arange(4) % 2)


@ON_CUPY
def test_outputs_are_the_graphs_buffers_overwritten_by_the_next_call(xpd):
    cp = xpd.xp
    captured = graph.CapturedStep(lambda w, lr: (w - lr,), cp.zeros(2), cp.asarray(1.0))
    assert captured.captured
    (first,) = captured(cp.zeros(2), 1.0)
    (second,) = captured(first, 2.0)  # an output passed back in is copied into the inputs first
    assert second is first
    cp.testing.assert_array_equal(second, cp.full(2, -3.0))


# ---- the CuPy path against stand-ins (no GPU): what CapturedStep asks of CuPy, and in which order ----

class _DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """Stands for a CuPy array: NumPy data under CuPy's module name, so backend.namespace finds the stand-in."""

    device = "stand-in GPU"

    def __init__(self, data):
        self.data = np.asarray(data)

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [x.data if isinstance(x, _DeviceArray) else x for x in inputs]
        return _DeviceArray(getattr(ufunc, method)(*plain, **kwargs))

    def __array__(self, dtype=None, copy=None):
        return self.data

    def __setitem__(self, index, value):
        self.data[index] = value.data if isinstance(value, _DeviceArray) else value

    def fill(self, value):
        self.data.fill(value)

    def sum(self):
        return _DeviceArray(self.data.sum())


_DeviceArray.__module__ = "cupy._stand_in"


class _StandInCuPy:
    """The parts of CuPy that CapturedStep uses; records the calls. A capture runs the step eagerly (what a graph
    would record) and ``launch`` replays it by running the step again on the static inputs, writing the outputs
    in place, as a replayed graph does."""

    __name__ = "cupy"

    def __init__(self):
        self.log, self.capturing, self.allocator = [], False, None
        stand_in = self

        class Stream:
            def __init__(self, non_blocking=False):
                assert non_blocking, "capture needs a non-blocking stream"

            def __enter__(self):
                stand_in.log.append("enter stream")
                return self

            def __exit__(self, *exc):
                stand_in.log.append("exit stream")

            def record(self):
                return "event"

            def wait_event(self, event):
                stand_in.log.append("wait")

            def synchronize(self):
                if stand_in.capturing:
                    raise RuntimeError("cudaErrorStreamCaptureUnsupported")
                stand_in.log.append("synchronize")

            def begin_capture(self):
                stand_in.capturing = True
                stand_in.log.append("begin")

            def end_capture(self):
                stand_in.capturing = False
                stand_in.log.append("end")
                if stand_in.invalidated:
                    raise RuntimeError("cudaErrorStreamCaptureInvalidated")
                return Graph()

        class Graph:
            def upload(self, stream):
                stand_in.log.append("upload")

            def launch(self):
                stand_in.log.append("launch")
                stand_in.replay()

        class MemoryPool:
            def malloc(self, size):
                raise AssertionError("not called by the stand-in")

        @contextlib.contextmanager
        def using_allocator(allocator):
            stand_in.allocator = allocator
            yield
            stand_in.allocator = None

        self.invalidated = False
        self.cuda = type("cuda", (), {"Stream": Stream, "MemoryPool": MemoryPool,
                                      "using_allocator": staticmethod(using_allocator),
                                      "get_current_stream": staticmethod(lambda: Stream(non_blocking=True))})

    def array(self, a, copy):
        assert self.allocator is not None, "static inputs come from the private pool"
        return _DeviceArray(np.array(a.data, copy=copy))

    def __getattr__(self, name):  # the array functions: NumPy's
        return getattr(np, name)


@pytest.fixture
def stand_in(monkeypatch):
    import sys

    fake = _StandInCuPy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def _on_device(a):
    return _DeviceArray(np.asarray(a, dtype=np.float64))


def test_the_cupy_path_warms_up_captures_and_replays_on_the_static_buffers(stand_in):
    calls = []

    def step(w, g, lr):
        calls.append("capture" if stand_in.capturing else "eager")
        return {"w": w - lr * g}, (w * w).sum()

    w, g, lr = _on_device([1.0, 2.0]), _on_device([0.5, 0.5]), _on_device(0.1)
    captured = graph.CapturedStep(step, w, g, lr, warmup=2)
    assert captured.captured and calls == ["eager", "eager", "capture"]
    assert stand_in.log == ["enter stream", "wait", "synchronize", "begin", "end", "upload", "exit stream"]
    assert stand_in.allocator is None  # the private pool only for the warm-up and the capture

    def replay():  # what the graph does: the captured kernels on the static buffers, outputs in place
        new = step(*graph._rebuild(captured._template, iter(captured._inputs)))
        for out, value in zip(captured._output_leaves, [leaf for _, leaf in graph._leaves(new, "")]):
            out[...] = value
    stand_in.replay = replay

    before = [a.data.copy() for a in (w, g, lr)]
    out, loss = captured(w, g, 0.5)  # a number for the 0-d input: written into its buffer
    np.testing.assert_allclose(out["w"], [0.75, 1.75])
    assert float(loss.data) == 5.0 and stand_in.log[-1] == "launch"
    again, loss_again = captured(out["w"], g, lr)  # an output passed back in: copied into the inputs first
    assert again["w"] is out["w"] and loss_again is loss  # the graph's buffers, overwritten
    np.testing.assert_allclose(again["w"], [0.7, 1.7])
    for a, b in zip((w, g, lr), before):
        np.testing.assert_array_equal(a.data, b)
    with pytest.raises(ValueError, match=r"args\[0\] must have shape \(2,\), the shape of the step's example, got \(3,\)"):
        captured(_on_device([1.0, 2.0, 3.0]), g, lr)


@pytest.mark.parametrize("error, says", [
    (NotImplementedError("calling cuBLAS API during stream capture is currently unsupported"), "cupy/cupy#6290"),
    (RuntimeError("cannot synchronize while the stream is capturing"), "read a value back"),
])
def test_the_cupy_path_reports_a_refused_capture_and_ends_it(stand_in, error, says):
    def step(w):
        if stand_in.capturing:
            raise error
        return (w + 1.0,)

    with pytest.raises(graph.CaptureError, match=says) as raised:
        graph.CapturedStep(step, _on_device([1.0]))
    assert raised.value.__cause__ is error
    assert not stand_in.capturing and stand_in.log[-2:] == ["end", "exit stream"]  # the capture was ended


def test_the_cupy_path_reports_an_invalidated_capture(stand_in):
    stand_in.invalidated = True
    with pytest.raises(graph.CaptureError, match="cudaErrorStreamCaptureInvalidated"):
        graph.CapturedStep(lambda w: (w + 1.0,), _on_device([1.0]))
