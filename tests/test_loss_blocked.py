"""The blocked (``block_size=``) and per-process (``anchors=``) forms of the kernel and AdaCon losses.

The oracle is each loss's dense form, itself held against per-anchor loops,
the teaching form and torch autograd in test_loss_kernel.py and
test_loss_adacon.py. Here: blocked == dense to 1e-10 relative in float64 for
every variant and reduction; the losses and gradients of any partition of the
anchors add up to the full ones; gradient checks of the blocked and
per-process forms themselves; float32 against float64; memory that stays
O(block x M); every backend; bad arguments refused by name.
"""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import backend, gradcheck
from refimpl.losses import adacon, kernel, supcon

from loss_helpers import embeddings, upstream

MODULES = {"kernel": kernel, "adacon": adacon}


@st.composite
def cases(draw, losses=("kernel", "adacon"), max_rows=9):
    """A valid call: loss, variant, reduction, embeddings and the loss's other arguments."""
    name = draw(st.sampled_from(losses))
    variant = draw(st.sampled_from(["paper", "official"]))
    reduction = draw(st.sampled_from(["mean", "sum", "none"])) if variant == "paper" else "mean"
    n = draw(st.integers(2 if variant == "paper" else 1, max_rows if variant == "paper" else max_rows // 2))
    views = 2 if variant == "official" else 1

    def per_row(elements, dtype):  # one value per sample, repeated on the second view
        return np.tile(draw(hnp.arrays(dtype, n, elements=elements)), views)

    kwargs = dict(variant=variant, reduction=reduction)
    if name == "kernel":
        n_classes = draw(st.integers(1, n))
        kwargs.update(labels=draw(st.none() | st.just(per_row(st.integers(0, n_classes - 1), np.int64))),
                      depth=draw(st.none() | st.just(per_row(st.floats(0.0, 1.0), np.float64))),
                      sigma=draw(st.floats(0.1, 2.0)), temperature=draw(st.floats(0.05, 1.0)))
    else:
        levels = draw(st.integers(1, n))
        kwargs.update(y=per_row(st.integers(0, levels - 1).map(lambda k: k / 10), np.float64),
                      scale=draw(st.floats(0.5, 20.0)))
        if draw(st.booleans()):
            kwargs["population"] = draw(hnp.arrays(np.float64, st.integers(1, 12),
                                                   elements=st.integers(0, 10).map(lambda k: k / 10)))
    z = draw(embeddings(n * views, st.integers(1, 4)))
    return name, z, kwargs


def call(name, z, kwargs, **extra):
    module = MODULES[name]
    kwargs = dict(kwargs)
    if name == "adacon":
        return module.forward(z, kwargs.pop("y"), **kwargs, **extra)
    return module.forward(z, **kwargs, **extra)


def loss_and_gradient(name, z, kwargs, dout=None, **extra):
    loss, cache = call(name, z, kwargs, **extra)
    dout = upstream(loss) if dout is None else dout
    return loss, MODULES[name].backward(dout, cache)[0]


@st.composite
def partitions(draw, m):
    """A partition of range(m) into non-empty parts, each an index array in a drawn order."""
    part_of = draw(hnp.arrays(np.int64, m, elements=st.integers(0, m - 1)))
    order = draw(st.permutations(range(m)))
    return [np.array([i for i in order if part_of[i] == p]) for p in np.unique(part_of)]


def assert_close(got, want, rtol=1e-10, floor=1e-12):
    """Relative to the largest entry of ``want``, so that entries near 0 do not demand 1e-10 of themselves,
    with an absolute ``floor`` for values that are 0 up to rounding (e.g. two rows, both positives)."""
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=max(rtol * np.abs(want).max(initial=0.0), floor))


# ---------------------------------------------------------------- blocked == dense


@settings(max_examples=30)
@given(case=cases(), block_size=st.integers(1, 10))
def test_blocked_equals_dense(case, block_size):
    name, z, kwargs = case
    loss, dz = loss_and_gradient(name, z, kwargs)
    blocked, dz_blocked = loss_and_gradient(name, z, kwargs, block_size=block_size)
    assert np.shape(blocked) == np.shape(loss)
    assert_close(blocked, loss)
    assert_close(dz_blocked, dz)


# ---------------------------------------------------------------- anchors: partitions add up


@settings(max_examples=30)
@given(case=cases(), data=st.data(), block_size=st.none() | st.integers(1, 4))
def test_partition_of_the_anchors_adds_up_to_the_full_loss_and_gradient(case, data, block_size):
    name, z, kwargs = case
    parts = data.draw(partitions(z.shape[0]))
    loss, cache = call(name, z, kwargs)
    dout = upstream(loss)
    (dz,) = MODULES[name].backward(dout, cache)
    total, dz_total = 0.0, np.zeros_like(z)
    for anchors in parts:
        part_dout = dout[anchors] if kwargs["reduction"] == "none" else dout
        part, part_dz = loss_and_gradient(name, z, kwargs, part_dout, block_size=block_size, anchors=anchors)
        if kwargs["reduction"] == "none":
            assert_close(part, loss[anchors])  # the anchors' own terms, in their order
        else:
            total += float(part)
        assert part_dz.shape == z.shape  # the gradient reaches every row, not only the anchors
        dz_total += part_dz
    if kwargs["reduction"] != "none":
        assert_close(total, loss)
    assert_close(dz_total, dz)


def test_one_anchor_of_the_mean_is_its_term_over_the_whole_batch():
    z = np.random.default_rng(0).standard_normal((6, 3))
    labels = np.array([0, 0, 1, 1, 0, 1])
    per_anchor, _ = kernel.forward(z, labels=labels, reduction="none")
    one, _ = kernel.forward(z, labels=labels, anchors=np.array([4]))  # "mean": divided by M = 6, not by 1
    np.testing.assert_allclose(one, per_anchor[4] / 6, rtol=1e-14)
    summed, _ = kernel.forward(z, labels=labels, anchors=np.array([4]), reduction="sum")
    np.testing.assert_allclose(summed, per_anchor[4], rtol=1e-14)


# ---------------------------------------------------------------- gradient checks


@settings(max_examples=20)
@given(case=cases(), data=st.data())
def test_vjp_of_the_blocked_per_process_form(case, data):
    name, z, kwargs = case
    m = z.shape[0]
    anchors = np.array(data.draw(st.lists(st.integers(0, m - 1), min_size=1, max_size=m, unique=True)))
    block_size = data.draw(st.integers(1, 3))
    report = gradcheck.check_vjp(lambda x: call(name, x, kwargs, block_size=block_size, anchors=anchors),
                                 MODULES[name].backward, [z])
    report.raise_if_failed()


@pytest.mark.parametrize("name, kwargs", [
    ("kernel", dict(labels=np.array([0, 1, 0, 0, 1, 0]), depth=np.array([0.1, 0.5, 0.2, 0.1, 0.5, 0.2]),
                    sigma=0.3, temperature=0.2, reduction="sum")),
    ("kernel", dict(labels=np.array([0, 1, 0, 0, 1, 0]), depth=np.array([0.1, 0.5, 0.2, 0.1, 0.5, 0.2]),
                    sigma=0.3, temperature=0.2, variant="official")),
    ("adacon", dict(y=np.array([0.1, 0.5, 0.1, 0.1, 0.5, 0.1]), scale=3.0, reduction="none")),
    ("adacon", dict(y=np.array([0.1, 0.5, 0.2, 0.1, 0.5, 0.2]), scale=3.0, variant="official")),
])
def test_full_gradient_check_of_one_process(name, kwargs):
    z = np.random.default_rng(1).standard_normal((6, 3))
    report = gradcheck.check_gradients(
        lambda x: call(name, x, kwargs, block_size=2, anchors=np.array([4, 1, 2])), MODULES[name].backward, [z])
    assert report.ok, str(report)


# ---------------------------------------------------------------- float32, memory, backends


@pytest.mark.parametrize("name, kwargs", [
    ("kernel", dict(labels=np.arange(64) % 5, depth=np.linspace(0, 1, 64), sigma=0.1, temperature=0.05)),
    ("adacon", dict(y=np.round(np.linspace(0, 1, 64), 1), scale=150.0)),
])
def test_float32_blocked_agrees_with_float64_dense(name, kwargs):
    z = np.random.default_rng(2).standard_normal((64, 16)).astype(np.float32)
    loss64, dz64 = loss_and_gradient(name, z.astype(np.float64), kwargs, 1.0)
    loss32, dz32 = loss_and_gradient(name, z, kwargs, np.float32(1.0), block_size=7)
    assert loss32.dtype == dz32.dtype == np.float32
    np.testing.assert_allclose(float(loss32), float(loss64), rtol=1e-4)
    np.testing.assert_allclose(dz32, dz64, rtol=1e-4, atol=1e-4 * np.abs(dz64).max())


@pytest.mark.parametrize("name, kwargs", [
    ("kernel", dict(labels=np.arange(1024) % 7, depth=np.linspace(0, 1, 1024), sigma=0.1)),
    ("adacon", dict(y=np.round(np.linspace(0, 1, 1024), 2), scale=10.0)),
])
def test_blocked_memory_is_block_by_m_not_m_by_m(name, kwargs):
    """NumPy reports its allocations to tracemalloc: the dense form's peak holds (M, M) arrays,
    the blocked form's stays a few (block, M) arrays."""
    z = np.random.default_rng(3).standard_normal((1024, 8))
    square = 1024 * 1024 * 8  # bytes of one (M, M) float64 array

    def peak(**extra):
        tracemalloc.start()
        loss_and_gradient(name, z, kwargs, 1.0, **extra)
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_bytes

    assert peak() >= square
    assert peak(block_size=32) < square / 4


@pytest.mark.parametrize("name", ["kernel", "adacon"])
def test_runs_on_every_backend(xpd, name):
    kwargs = (dict(labels=np.array([0, 1, 0, 0, 1, 0]), depth=np.linspace(0, 1, 6), sigma=0.3)
              if name == "kernel" else dict(y=np.array([0.1, 0.5, 0.1, 0.1, 0.5, 0.2]), scale=3.0))
    z, anchors, dout = np.random.default_rng(4).standard_normal((6, 3)), np.array([5, 0, 2]), np.arange(3.0)
    want, want_dz = loss_and_gradient(name, z, dict(kwargs, reduction="none"), dout, block_size=2,
                                      anchors=anchors)
    put = {k: xpd.put(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    got, got_dz = loss_and_gradient(name, xpd.put(z), dict(put, reduction="none"), xpd.put(dout), block_size=2,
                                    anchors=xpd.put(anchors))
    np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(got_dz), want_dz, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", ["kernel", "adacon"])
def test_backward_twice_identical_and_inputs_not_mutated(name):
    kwargs = (dict(labels=np.array([0, 1, 0, 0, 1, 0]), depth=np.linspace(0, 1, 6))
              if name == "kernel" else dict(y=np.array([0.1, 0.5, 0.1, 0.1, 0.5, 0.2]), scale=3.0))
    z, anchors = np.random.default_rng(5).standard_normal((6, 3)), np.array([3, 1])
    z_before, anchors_before = z.copy(), anchors.copy()
    _, cache = call(name, z, kwargs, block_size=1, anchors=anchors)
    first, second = (MODULES[name].backward(1.5, cache)[0] for _ in range(2))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(z, z_before)
    np.testing.assert_array_equal(anchors, anchors_before)


def test_supcon_and_ntxent_pass_block_size_and_anchors_on():
    z = np.random.default_rng(6).standard_normal((8, 3))
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    for forward, kwargs in ((supcon.forward, dict(labels=labels, base_temperature=0.07)),
                            (supcon.ntxent_forward, {})):
        dense, cache = forward(z, **kwargs)
        (dz,) = supcon.backward(1.0, cache)
        halves = [forward(z, **kwargs, block_size=3, anchors=a) for a in (np.arange(4), np.arange(4, 8))]
        np.testing.assert_allclose(sum(float(loss) for loss, _ in halves), dense, rtol=1e-12)
        np.testing.assert_allclose(sum(supcon.backward(1.0, c)[0] for _, c in halves), dz, rtol=1e-10,
                                   atol=1e-14)


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("name", ["kernel", "adacon"])
@pytest.mark.parametrize("extra, error, match", [
    (dict(block_size=0), ValueError, "block_size must be an integer >= 1"),
    (dict(block_size=True), TypeError, "block_size must be an integer, got bool"),
    (dict(block_size=2.0), TypeError, "block_size must be an integer, got float"),
    (dict(anchors=np.array([0.0, 1.0])), TypeError, "anchors must be an integer index array"),
    (dict(anchors=np.array([True, False])), TypeError, "anchors must be an integer index array"),
    (dict(anchors=np.array([0, 6])), ValueError, r"anchors must be row indices of z in \[0, 6\)"),
    (dict(anchors=np.array([-1])), ValueError, "anchors must be row indices"),
    (dict(anchors=np.array([2, 0, 2])), ValueError, "anchors must be distinct"),
    (dict(anchors=np.zeros((2, 1), dtype=int)), ValueError, "anchors must have 1 dimensions"),
    (dict(anchors=[0, 1]), TypeError, "anchors must be an array"),
])
def test_bad_block_size_and_anchors_are_refused_by_name(name, extra, error, match):
    kwargs = dict(labels=np.array([0, 1, 0, 0, 1, 0])) if name == "kernel" else \
        dict(y=np.array([0.1, 0.5, 0.1, 0.1, 0.5, 0.2]), scale=3.0)
    with pytest.raises(error, match=match):
        call(name, np.eye(6, 3), kwargs, **extra)
