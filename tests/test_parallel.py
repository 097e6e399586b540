"""refimpl.parallel: the data-parallel step equals the serial one (float64), sync batch norm, the pool's life."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl import backend, model, parallel

threadpoolctl = pytest.importorskip("threadpoolctl")


def _net(batchnorm: bool, algorithm: str = "im2col", kernel_size: int = 3):
    """conv [bn] pool relu conv [bn] relu | gap linear: every layer kind DataParallel splits, nested."""
    pad = kernel_size // 2
    encoder = [("conv1", model.Conv2d(2, 3, kernel_size, padding=pad, bias=not batchnorm, algorithm=algorithm)),
               ("bn1", model.BatchNorm2d(3)), ("pool1", model.MaxPool2d(2)), ("relu1", model.ReLU()),
               ("conv2", model.Conv2d(3, 4, kernel_size, padding=pad, bias=not batchnorm, algorithm=algorithm)),
               ("bn2", model.BatchNorm2d(4)), ("relu2", model.ReLU())]
    encoder = [(name, layer) for name, layer in encoder if batchnorm or not name.startswith("bn")]
    head = [("gap", model.GlobalAvgPool()), ("fc", model.Linear(4, 3))]
    return model.Sequential([("encoder", model.Sequential(encoder)), ("head", model.Sequential(head))])


def _inputs(net, n, size, seed, dtype="float64"):
    gen = np.random.default_rng(seed)
    params = {k: v + 0.3 * gen.standard_normal(v.shape).astype(dtype)  # beta and gamma away from 0 and 1
              for k, v in net.init(seed, dtype).items()}
    state = {k: v + np.abs(gen.standard_normal(v.shape)).astype(dtype) for k, v in net.init_state(dtype).items()}
    x = (3.0 * gen.standard_normal((n, 2, size, size)) + 1.5).astype(dtype)  # mean far from 0: Chan's term
    return params, state, x


def _step(net, params, x, state, dout_seed, *, train, input_grad):
    out, cache = net.forward(params, x, train=train, state=state, input_grad=input_grad)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(out.dtype)
    grads, dx = net.backward(dout, cache)
    return out, grads, dx, net.new_state(cache)


def _assert_same(serial, split, rtol):
    """Equal to float rounding: every entry within rtol of the array's largest magnitude."""
    for want, got in zip(serial, split):
        if isinstance(want, dict):
            assert sorted(want) == sorted(got)
            _assert_same(list(want.values()), [got[k] for k in want], rtol)
        elif want is None:
            assert got is None
        else:
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=0, atol=rtol * max(1.0, float(np.max(np.abs(want)))))


@settings(max_examples=30)
@given(workers=st.integers(1, 4), extra=st.integers(0, 5), size=st.sampled_from([2, 4, 6]),
       batchnorm=st.booleans(), train=st.booleans(), input_grad=st.booleans(), seed=st.integers(0, 2**16),
       processes=st.booleans())
def test_the_split_step_equals_the_serial_step_in_float64(workers, extra, size, batchnorm, train, input_grad, seed,
                                                          processes):
    net = _net(batchnorm)
    n = max(workers, 2) + extra  # uneven splits included (7 over 3: 3, 2, 2)
    params, state, x = _inputs(net, n, size, seed)
    serial = _step(net, params, x, state, seed, train=train, input_grad=input_grad)
    with parallel.DataParallel(net, workers, processes=processes) as pool:
        split = _step(pool, params, x, state, seed, train=train, input_grad=input_grad)
    _assert_same(serial, split, rtol=1e-12)


@pytest.mark.parametrize("processes", [False, True])
@pytest.mark.parametrize("algorithm", ["im2col", "fft"])
@pytest.mark.parametrize("workers", [2, 3])
def test_tinynet_with_batch_norm_and_5x5_kernels_equals_the_serial_step(algorithm, workers, processes):
    net = model.Sequential([("encoder", model.tinynet(widths=(4, 4, 8, 8, 16), batchnorm=True, algorithm=algorithm)),
                            ("head", model.mlp_head(16, 8, 4))])
    params, state, _ = _inputs(net, 1, 1, seed=3)
    x = np.random.default_rng(4).standard_normal((7, 1, 32, 32))
    serial = _step(net, params, x, state, 5, train=True, input_grad=False)
    with parallel.DataParallel(net, workers, processes=processes) as pool:
        split = _step(pool, params, x, state, 5, train=True, input_grad=False)
    _assert_same(serial, split, rtol=1e-12)


@pytest.mark.parametrize("processes", [False, True])
def test_float32_split_step_agrees_to_float32_rounding(processes):
    net = _net(batchnorm=True)
    params, state, x = _inputs(net, 9, 4, seed=1, dtype="float32")
    serial = _step(net, params, x, state, 2, train=True, input_grad=True)
    with parallel.DataParallel(net, 2, processes=processes) as pool:
        split = _step(pool, params, x, state, 2, train=True, input_grad=True)
    _assert_same(serial, split, rtol=2e-5)


@pytest.mark.parametrize("processes", [False, True])
def test_one_pool_takes_float64_then_float32_then_float64(processes):
    """A process pool lays its shared buffers out by the parameters' dtypes: a change of dtype lays them out
    again, and each step equals the serial one in its own precision."""
    net = _net(batchnorm=True)
    with parallel.DataParallel(net, 2, processes=processes) as pool:
        for dtype, rtol in (("float64", 1e-12), ("float32", 2e-5), ("float64", 1e-12)):
            params, state, x = _inputs(net, 6, 4, seed=7, dtype=dtype)
            serial = _step(net, params, x, state, 3, train=True, input_grad=True)
            _assert_same(serial, _step(pool, params, x, state, 3, train=True, input_grad=True), rtol=rtol)


@pytest.mark.parametrize("processes", [False, True])
def test_repeated_calls_give_the_same_bits_and_leave_the_inputs_alone(processes):
    net = _net(batchnorm=True)
    params, state, x = _inputs(net, 8, 4, seed=2)
    copies = ({k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in state.items()}, x.copy())
    with parallel.DataParallel(net, 2, processes=processes) as pool:
        first, second = (_step(pool, params, x, state, 0, train=True, input_grad=True) for _ in range(2))
    for a, b in zip(first, second):
        for u, v in (zip(a.values(), b.values()) if isinstance(a, dict) else [(a, b)]):
            assert np.array_equal(u, v)  # gradients summed in rank order, whichever thread finished first
    for kept, now in zip(copies, (params, state, x)):
        for u, v in (zip(kept.values(), now.values()) if isinstance(kept, dict) else [(kept, now)]):
            assert np.array_equal(u, v)


@pytest.mark.parametrize("name", ["strict-cpu", "strict-device1"])
def test_runs_on_array_api_strict_without_host_conversions(name):
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("CPU_DEVICE" if name == "strict-cpu" else "device1")  # device1 raises on hidden transfers
    net = _net(batchnorm=True)
    params, state, x = _inputs(net, 5, 4, seed=6)
    serial = _step(net, params, x, state, 7, train=True, input_grad=True)
    put = lambda a: backend.asarray(a, xp=strict, dev=dev)  # noqa: E731
    with parallel.DataParallel(net, 2) as pool:
        out, cache = pool.forward({k: put(v) for k, v in params.items()}, put(x), train=True,
                                  state={k: put(v) for k, v in state.items()})
        dout = put(np.random.default_rng(7).standard_normal(tuple(out.shape)))
        grads, dx = pool.backward(dout, cache)
        new_state = pool.new_state(cache)
    split = [backend.to_numpy(out), {k: backend.to_numpy(v) for k, v in grads.items()}, backend.to_numpy(dx),
             {k: backend.to_numpy(v) for k, v in new_state.items()}]
    _assert_same(serial, split, rtol=1e-12)


@settings(max_examples=40)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4), offset=st.floats(-1e3, 1e3),
       scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_combined_moments_are_the_union_s_mean_and_variance(sizes, offset, scale, seed):
    gen = np.random.default_rng(seed)
    shards = [offset + scale * gen.standard_normal((n, 2)) for n in sizes]
    stats = []
    for a in shards:
        mean = a.mean(axis=0)
        s = np.abs(a - mean).max(axis=0)
        stats.append((a.shape[0], mean, s, np.mean(((a - mean) / np.where(s > 0, s, 1)) ** 2, axis=0)))
    mean, s, v, m = parallel.combine_moments(*zip(*stats))
    union = np.concatenate(shards)
    assert m == union.shape[0]
    np.testing.assert_allclose(mean, union.mean(axis=0), rtol=1e-12, atol=1e-12 * (abs(offset) + scale))
    np.testing.assert_allclose(s * s * v, union.var(axis=0), rtol=1e-9, atol=1e-300)
    assert np.all(s >= np.abs(union - mean).max(axis=0) * (1 - 1e-12)) and np.all((0 <= v) & (v <= 1 + 1e-12))


def test_combined_moments_do_not_overflow_float32():
    big = np.float32(3e30)  # its square overflows float32
    one = np.ones(1, np.float32)
    mean, s, v, m = parallel.combine_moments([1, 1], [-big * one, big * one], [0 * one, 0 * one], [0 * one, 0 * one])
    assert np.isfinite(s).all() and np.isfinite(v).all() and m == 2
    np.testing.assert_allclose(mean, 0, atol=1e25)
    np.testing.assert_allclose(s.astype(np.float64) ** 2 * v, float(big) ** 2, rtol=1e-5)


def test_constant_channels_combine_to_zero_variance():
    c = np.full(1, 2.0)
    mean, s, v, m = parallel.combine_moments([2, 3], [c, c], [0 * c, 0 * c], [0 * c, 0 * c])
    assert mean.tolist() == [2.0] and s.tolist() == [0.0] and v.tolist() == [0.0] and m == 5


def test_shard_sizes_cover_the_batch_evenly():
    for n in range(1, 20):
        for workers in range(1, n + 1):
            sizes = parallel.shard_sizes(n, workers)
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and len(sizes) == workers


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("processes", [False, True])
def test_a_failing_worker_releases_the_others_and_the_pool_stays_usable(processes):
    net = _net(batchnorm=True)
    params, state, x = _inputs(net, 6, 4, seed=8)
    ones = dict(params, **{"encoder.conv1.w": np.ones_like(params["encoder.conv1.w"])})
    bad = x.copy()
    bad[-1] = 1e308  # finite, but conv1's output overflows in the last shard only: that worker raises
    with parallel.DataParallel(net, 3, processes=processes) as pool:  # while the others wait for it at bn1
        with pytest.raises(model.NonFiniteOutput, match="encoder.conv1"):
            pool.forward(ones, bad, train=True, state=state, check_finite=True)
        with pytest.raises(ValueError, match="state"):
            pool.forward(params, x, train=True, state={})
        out, _ = pool.forward(params, x, train=True, state=state)
    want, _ = net.forward(params, x, train=True, state=state)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("processes", [False, True])
def test_backward_checks_dout_for_nan_as_the_network_does_unless_told_not_to(processes):
    net = _net(batchnorm=False)
    params, state, x = _inputs(net, 4, 4, seed=9)
    with parallel.DataParallel(net, 2, processes=processes) as pool:
        out, cache = pool.forward(params, x, train=True, state=state)
        dout = np.ones_like(out)
        dout[-1, 0] = np.nan  # in the last shard only
        with pytest.raises(ValueError, match="dout must be finite"):
            pool.backward(dout, cache)
        with pytest.raises(TypeError, match="check_finite must be a bool"):
            pool.backward(dout, cache, check_finite="no")
        out, cache = pool.forward(params, x, train=True, state=state)  # a fresh cache after the failed call
        grads, _ = pool.backward(dout, cache, check_finite=False)
    serial_out, serial_cache = net.forward(params, x, train=True, state=state)
    want, _ = net.backward(dout, serial_cache, check_finite=False)
    for name in want:  # the NaN reaches the same entries, and the finite ones agree
        np.testing.assert_array_equal(np.isnan(grads[name]), np.isnan(want[name]))
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-12, atol=1e-12)
    assert any(np.isnan(g).any() for g in grads.values())


def test_bad_arguments_are_named():
    net = _net(batchnorm=False)
    params, state, x = _inputs(net, 4, 4, seed=9)
    with pytest.raises(TypeError, match="net must be a refimpl.model.Sequential"):
        parallel.DataParallel(model.ReLU(), 2)
    with pytest.raises(ValueError, match="workers"):
        parallel.DataParallel(net, 0)

    class PerBatch(model.Layer):
        pass
    with pytest.raises(TypeError, match="cannot split a batch across PerBatch"):
        parallel.DataParallel(model.Sequential([("odd", PerBatch())]), 2)
    with parallel.DataParallel(_net(batchnorm=True), 2) as pool:  # as batchnorm2d.forward, in training too
        bn_params, bn_state, _ = _inputs(pool.net, 4, 4, seed=9)
        with pytest.raises(ValueError, match="running_var must be >= 0"):
            pool.forward(bn_params, x, train=True, state=dict(bn_state, **{"encoder.bn1.running_var": -bn_state[
                "encoder.bn1.running_var"]}))
    with parallel.DataParallel(net, 3) as pool:
        with pytest.raises(ValueError, match="at least workers = 3 samples"):
            pool.forward(params, x[:2], train=True)
        out, cache = pool.forward(params, x, train=True)
        with pytest.raises(ValueError, match="dout must hold the forward output's 4 samples"):
            pool.backward(out[:3], cache)
    with pytest.raises(RuntimeError, match="closed"):
        pool.forward(params, x, train=True)


def _blas_threads():
    return {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


def test_blas_runs_on_one_thread_while_the_pool_is_open_and_is_restored_after():
    before = _blas_threads()
    pool = parallel.DataParallel(_net(batchnorm=False), 2)
    try:
        assert set(_blas_threads().values()) == {1}
    finally:
        pool.close()
        pool.close()  # idempotent
    assert _blas_threads() == before


def test_a_process_pool_takes_numpy_arrays_and_its_latest_cache_only():
    net = _net(batchnorm=False)
    params, state, x = _inputs(net, 4, 4, seed=10)
    with parallel.DataParallel(net, 2, processes=True) as pool:
        with pytest.raises(TypeError, match="processes must be a bool"):
            parallel.DataParallel(net, 2, processes="yes")
        strict = pytest.importorskip("array_api_strict")
        with pytest.raises(TypeError, match="pool of processes takes NumPy arrays"):
            pool.forward(params, strict.asarray(x), train=True)
        with pytest.raises(ValueError, match="network's parameter names and shapes"):
            pool.forward(dict(params, extra=np.zeros(2)), x, train=True)
        wide = dict(params, **{"head.fc.b": params["head.fc.b"].astype(np.complex128)})
        with pytest.raises(TypeError, match="float32 or float64, got head.fc.b of dtype complex128"):
            pool.forward(wide, x, train=True)
        out, first = pool.forward(params, x, train=True)
        pool.forward(params, x, train=True)
        with pytest.raises(RuntimeError, match="cache from an earlier forward"):
            pool.backward(np.ones_like(out), first)
        with pytest.raises(RuntimeError, match="cache from an earlier forward"):
            pool.new_state(first)
        # replies never read, as after a call interrupted by Ctrl-C: dropped, not taken for the next call's
        pool._remote.start_forward(params, parallel._shards(2 * x, (2, 2)), dict(train=True))
        out, cache = pool.forward(params, x, train=True)
        grads, _ = pool.backward(np.ones_like(out), cache)  # usable after the refusal
    serial_out, serial_cache = net.forward(params, x, train=True)
    _assert_same([serial_out, net.backward(np.ones_like(out), serial_cache)[0]], [out, grads], rtol=1e-12)


def _faults_per_round(results) -> None:
    """In a worker process that keeps freed memory: page faults per round of three 16 MB arrays made and freed."""
    import resource

    from refimpl import _parallel_processes

    _parallel_processes._keep_freed_memory()

    def round_():
        arrays = [np.ones(2_000_000) for _ in range(3)]
        del arrays
    round_(), round_()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        round_()
    results.put((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")
def test_worker_processes_keep_freed_memory_for_reuse():
    """glibc trims the freed top of the heap and faults it in again on the next round (hundreds of faults a
    round here); a worker's allocator keeps it. Measured in a worker process: the caller's stays as it is."""
    from refimpl import _parallel_processes

    context = _parallel_processes.context()
    results = context.SimpleQueue()
    process = context.Process(target=_faults_per_round, args=(results,))
    process.start()
    kept = results.get()
    process.join()
    assert kept < 50


def test_a_process_pool_stops_its_processes_when_closed():
    pool = parallel.DataParallel(_net(batchnorm=False), 3, processes=True)
    processes = list(pool._remote._processes)
    assert len(processes) == 3 and all(p.is_alive() for p in processes)
    pool.close()
    assert not any(p.is_alive() for p in processes)


def test_shards_larger_than_the_input_buffer_go_through_the_pipe():
    from refimpl import _parallel_processes

    features = _parallel_processes.INPUT_BYTES // 8 // 2 + 1          # two float64 rows: one entry too many
    net = model.Sequential([("fc", model.Linear(features, 3))])
    params = net.init(15, "float64")
    x = np.random.default_rng(16).standard_normal((4, features))
    serial = _step(net, params, x, {}, 17, train=True, input_grad=True)
    with parallel.DataParallel(net, 2, processes=True) as pool:
        split = _step(pool, params, x, {}, 17, train=True, input_grad=True)
    _assert_same(serial, split, rtol=1e-12)
