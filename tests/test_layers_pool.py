"""Max, average and global average pooling: loop oracles, gradients, ties, torch, backends."""
import itertools

import numpy as np
import pytest
from hypothesis import example, given

from refimpl import _ops, backend, gradcheck
from refimpl.layers import avgpool2d, global_avg_pool, maxpool2d
from layer_helpers import assert_pure, distinct, host, windows

POOLS = {"max": (maxpool2d.forward, maxpool2d.backward),
         "avg": (avgpool2d.forward, avgpool2d.backward)}


def pool_loop(x, kind, k, stride, padding):
    """Forward and the input-gradient of sum(out * dout), one window at a time."""
    n, c, h, w = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xpad = np.full((n, c, h + 2 * padding, w + 2 * padding), fill)
    xpad[:, :, padding:padding + h, padding:padding + w] = x
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    out = np.empty((n, c, oh, ow))
    for a, b, p, q in itertools.product(range(n), range(c), range(oh), range(ow)):
        window = xpad[a, b, p * stride:p * stride + k, q * stride:q * stride + k]
        out[a, b, p, q] = window.max() if kind == "max" else window.mean()
    return out


def pool_loop_backward(x, dout, kind, k, stride, padding):
    n, c, h, w = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xpad = np.full((n, c, h + 2 * padding, w + 2 * padding), fill)
    xpad[:, :, padding:padding + h, padding:padding + w] = x
    dxpad = np.zeros_like(xpad)
    for a, b, p, q in itertools.product(range(n), range(c), range(dout.shape[2]), range(dout.shape[3])):
        rows, cols = slice(p * stride, p * stride + k), slice(q * stride, q * stride + k)
        if kind == "max":
            i, j = divmod(int(np.argmax(xpad[a, b, rows, cols])), k)  # first maximum, row-major
            dxpad[a, b, p * stride + i, q * stride + j] += dout[a, b, p, q]
        else:
            dxpad[a, b, rows, cols] += dout[a, b, p, q] / k ** 2
    return dxpad[:, :, padding:padding + h, padding:padding + w]


def _kw(g):
    return dict(kernel_size=g["kh"], stride=g["stride"], padding=g["padding"])


@pytest.mark.parametrize("kind", ["max", "avg"])
@given(g=windows(square=True, pool=True))
@example(g=dict(n=1, c=1, h=1, w=1, kh=1, kw=1, stride=1, padding=0))
@example(g=dict(n=1, c=1, h=1, w=2, kh=3, kw=3, stride=2, padding=1))
@example(g=dict(n=2, c=3, h=4, w=6, kh=2, kw=2, stride=2, padding=0))   # windows tile the image: views
@example(g=dict(n=1, c=2, h=6, w=3, kh=3, kw=3, stride=3, padding=0))
def test_equals_loop_and_vjp(kind, g):
    fwd, bwd = POOLS[kind]
    x = distinct((g["n"], g["c"], g["h"], g["w"]))
    out, cache = fwd(x, **_kw(g))
    np.testing.assert_allclose(out, pool_loop(x, kind, g["kh"], g["stride"], g["padding"]), rtol=1e-13, atol=1e-13)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    (dx,) = bwd(dout, cache)
    want = pool_loop_backward(x, dout, kind, g["kh"], g["stride"], g["padding"])
    np.testing.assert_allclose(dx, want, rtol=1e-13, atol=1e-13)
    gradcheck.check_vjp(lambda x: fwd(x, **_kw(g)), bwd, [x]).raise_if_failed()


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_full_gradient_check(kind):
    fwd, bwd = POOLS[kind]
    x = distinct((2, 2, 5, 5))
    f = lambda x: fwd(x, kernel_size=3, stride=2, padding=1)
    gradcheck.check_gradients(f, bwd, [x]).raise_if_failed()


def test_max_ties_go_to_the_first_maximum_in_row_major_order(torch):
    x = np.array([[[[1.0, 3.0, 2.0, 2.0],
                    [3.0, 3.0, 2.0, 2.0]]]])
    _, cache = maxpool2d.forward(x)
    (dx,) = maxpool2d.backward(np.array([[[[10.0, 20.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 10.0, 20.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, 2).backward(torch.tensor([[[[10.0, 20.0]]]], dtype=torch.float64))
    np.testing.assert_array_equal(dx, tx.grad.numpy())


def test_max_overlapping_windows_accumulate():
    x = np.array([[[[0.0, 9.0, 0.0]]]])  # both 1x2 windows (stride 1) pick the middle
    _, cache = maxpool2d.forward(np.broadcast_to(x, (1, 1, 2, 3)).copy(), kernel_size=2, stride=1)
    (dx,) = maxpool2d.backward(np.array([[[[1.0, 2.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]]])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("k,stride,padding,size", [(2, None, 0, 7), (2, None, 0, 8), (3, 2, 1, 7), (3, 1, 1, 7),
                                                   (2, 1, 1, 7)])
def test_equals_torch(torch, kind, k, stride, padding, size):
    fwd, bwd = POOLS[kind]
    x = distinct((2, 3, size, 6))
    out, cache = fwd(x, kernel_size=k, stride=stride, padding=padding)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    (dx,) = bwd(dout, cache)
    tx = torch.tensor(x, requires_grad=True)
    torch_pool = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    tout = torch_pool(tx, k, stride=stride, padding=padding)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_global_avg_pool(torch):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    out, cache = global_avg_pool.forward(x)
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)), rtol=1e-13)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    (dx,) = global_avg_pool.backward(dout, cache)
    tx = torch.tensor(x, requires_grad=True)
    tx.mean(dim=(2, 3)).backward(torch.tensor(dout))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    dx[...] = 0  # a real array, not a read-only broadcast view
    gradcheck.check_gradients(global_avg_pool.forward, global_avg_pool.backward,
                              [x[:1, :2, :2, :3]]).raise_if_failed()


#: overlapping windows with padding (im2col), and windows that tile the image (max pooling's views of x)
GEOMETRIES = {"overlapping": dict(kernel_size=3, stride=2, padding=1), "tiling": dict(kernel_size=2)}


@pytest.mark.parametrize("kind", ["max", "avg", "global"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_pure_and_deterministic(kind, geometry):
    x = distinct((2, 2, 4, 4))
    if kind == "global":
        assert_pure(global_avg_pool.forward, global_avg_pool.backward, [x], np.ones((2, 2)))
    else:
        fwd, bwd = POOLS[kind]
        out, _ = fwd(x, **GEOMETRIES[geometry])
        assert_pure(fwd, bwd, [x], np.ones(out.shape), **GEOMETRIES[geometry])
        assert not np.shares_memory(out, x)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_max_forward_neither_mutates_nor_aliases_its_input(xpd, geometry):
    """The running maximum is updated in place, so it must start as a new array: the windows are
    views of x where they tile it (x laid out batch-last, as the layers return it)."""
    x = _ops.batch_last_layout(distinct((2, 3, 6, 4)))
    xd = xpd.put(x)  # NumPy: x itself
    want = pool_loop(x, "max", **_loop_args(GEOMETRIES[geometry]))
    out, cache = maxpool2d.forward(xd, **GEOMETRIES[geometry])
    np.testing.assert_array_equal(host(out), want)
    out[...] = 0.0  # the outputs written over: x must not change
    cache.argmax[...] = 0
    np.testing.assert_array_equal(host(maxpool2d.forward(xd, **GEOMETRIES[geometry])[0]), want)


def _loop_args(kw):
    return dict(k=kw["kernel_size"], stride=kw.get("stride") or kw["kernel_size"], padding=kw.get("padding", 0))


@pytest.mark.parametrize("kind", ["max", "avg", "global"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_on_every_backend(xpd, kind, geometry):
    x = distinct((2, 3, 6, 4))
    if kind == "global":
        fwd, bwd, kw = global_avg_pool.forward, global_avg_pool.backward, {}
    else:
        (fwd, bwd), kw = POOLS[kind], GEOMETRIES[geometry]
    out, cache = fwd(xpd.put(x), **kw)
    dout = np.random.default_rng(1).standard_normal(tuple(out.shape))
    (dx,) = bwd(xpd.put(dout), cache)
    assert backend.namespace(out, dx) is xpd.xp
    ref_out, ref_cache = fwd(x, **kw)
    np.testing.assert_allclose(host(out), ref_out, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(host(dx), bwd(dout, ref_cache)[0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kw,error,match", [
    (dict(kernel_size=0), ValueError, "kernel_size must be an integer >= 1"),
    (dict(kernel_size=2.0), TypeError, "kernel_size must be an integer"),
    (dict(stride=0), ValueError, "stride must be an integer >= 1"),
    (dict(kernel_size=3, padding=2), ValueError, "padding must be at most kernel_size // 2 = 1"),
    (dict(kernel_size=5), ValueError, "kernel size 5 is larger than the padded input size 4"),
])
def test_bad_input_raises(kind, kw, error, match):
    with pytest.raises(error, match=match):
        POOLS[kind][0](np.zeros((1, 1, 4, 4)), **kw)


def test_bad_shape_raises():
    for fwd in (maxpool2d.forward, avgpool2d.forward, global_avg_pool.forward):
        with pytest.raises(ValueError, match="x must have 4 dimensions"):
            fwd(np.zeros((4, 4)))


@pytest.mark.parametrize("k", [11, 12])
def test_maxpool_finds_the_last_offset_of_large_windows(k):
    """Offsets past 127 (12x12 windows) must not wrap around in the stored argmax."""
    x = np.zeros((1, 1, k, k))
    x[0, 0, -1, -1] = 1.0
    out, cache = maxpool2d.forward(x, kernel_size=k)
    (dx,) = maxpool2d.backward(np.full(out.shape, 3.0), cache)
    assert out.item() == 1.0 and dx[0, 0, -1, -1] == 3.0 and dx.sum() == 3.0
