"""Window extraction (im2col) and its adjoint (col2im): every path against a loop oracle."""
import itertools

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from refimpl import _ops, backend
from layer_helpers import windows

PATHS = {
    "numpy": lambda x, k, s, p, fill: _ops._im2col_numpy(x, k, s, p, fill),
    "inplace": lambda x, k, s, p, fill: _ops._im2col_inplace(np, x, k, s, p, fill),
    "standard": lambda x, k, s, p, fill: _ops._im2col_standard(np, x, k, s, p, fill),
}


def im2col_loop(x, kernel, stride, padding, fill):
    """The definition, one element at a time."""
    n, c, h, w = x.shape
    kh, kw = kernel
    xpad = np.full((n, c, h + 2 * padding, w + 2 * padding), fill)
    xpad[:, :, padding:padding + h, padding:padding + w] = x
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    cols = np.empty((c, kh, kw, oh, ow, n))
    for i, j, p, q in itertools.product(range(kh), range(kw), range(oh), range(ow)):
        cols[:, i, j, p, q, :] = xpad[:, :, p * stride + i, q * stride + j].T
    return cols


def _case(g, seed=0):
    x = np.random.default_rng(seed).standard_normal((g["n"], g["c"], g["h"], g["w"]))
    return x, (g["kh"], g["kw"]), g["stride"], g["padding"]


@given(windows(), st.sampled_from([0.0, -np.inf]))
@example(dict(n=1, c=1, h=1, w=1, kh=1, kw=1, stride=1, padding=0), 0.0)
@example(dict(n=1, c=2, h=1, w=3, kh=3, kw=3, stride=2, padding=1), -np.inf)
def test_im2col_paths_equal_the_loop(g, fill):
    x, kernel, stride, padding = _case(g)
    expected = im2col_loop(x, kernel, stride, padding, fill)
    for name, path in PATHS.items():
        np.testing.assert_array_equal(path(x, kernel, stride, padding, fill), expected, err_msg=name)


@given(windows())
@example(dict(n=2, c=2, h=4, w=6, kh=2, kw=2, stride=2, padding=0))  # windows tile the image
@example(dict(n=1, c=1, h=3, w=3, kh=3, kw=3, stride=3, padding=0))
def test_col2im_paths_agree_and_are_the_adjoint_of_im2col(g):
    x, kernel, stride, padding = _case(g)
    y = np.random.default_rng(1).standard_normal(_ops.im2col(x, kernel, stride=stride, padding=padding).shape)
    fast = _ops._col2im_inplace(np, y, x.shape, stride, padding)
    standard = _ops._col2im_standard(np, y, x.shape, stride, padding)
    np.testing.assert_allclose(fast, standard, rtol=1e-13, atol=1e-13)
    dispatched = _ops.col2im(y, x.shape, stride=stride, padding=padding)  # tiling shortcut included
    np.testing.assert_allclose(dispatched, standard, rtol=1e-13, atol=1e-13)
    assert fast.shape == x.shape
    lhs = np.sum(_ops.im2col(x, kernel, stride=stride, padding=padding) * y)
    rhs = np.sum(x * _ops.col2im(y, x.shape, stride=stride, padding=padding))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_col2im_counts_window_coverage_with_stride_and_padding():
    # 3x3 windows, stride 2, padding 1 on a 4x4 image: pixel (r, c) is read by
    # the windows whose rows and columns cover it, 1 or 2 along each axis.
    ones = np.ones((1, 3, 3, 2, 2, 1))
    cover = _ops.col2im(ones, (1, 1, 4, 4), stride=2, padding=1)[0, 0]
    per_axis = np.array([1, 2, 1, 1])
    np.testing.assert_array_equal(cover, np.outer(per_axis, per_axis))


def test_im2col_returns_a_new_array():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    cols = _ops.im2col(x, (1, 1))
    cols[...] = -1
    np.testing.assert_array_equal(x.ravel(), [0.0, 1.0, 2.0, 3.0])


def test_on_every_backend(xpd):
    x, kernel, stride, padding = _case(dict(n=2, c=3, h=5, w=4, kh=3, kw=2, stride=2, padding=1))
    cols = _ops.im2col(xpd.put(x), kernel, stride=stride, padding=padding, fill=-np.inf)
    assert backend.namespace(cols) is xpd.xp
    np.testing.assert_array_equal(backend.to_numpy(cols), im2col_loop(x, kernel, stride, padding, -np.inf))
    y = np.random.default_rng(1).standard_normal(cols.shape)
    dx = _ops.col2im(xpd.put(y), x.shape, stride=stride, padding=padding)
    np.testing.assert_allclose(backend.to_numpy(dx), _ops.col2im(y, x.shape, stride=stride, padding=padding),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept(dtype):
    x = np.ones((1, 1, 3, 3), dtype=dtype)
    cols = _ops.im2col(x, (2, 2), padding=1)
    assert cols.dtype == x.dtype and _ops.col2im(cols, x.shape, padding=1).dtype == x.dtype


def test_kernel_larger_than_padded_input_raises():
    with pytest.raises(ValueError, match="kernel size 4 is larger than the padded input size 3"):
        _ops.im2col(np.zeros((1, 1, 1, 5)), (4, 1), padding=1)


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=20), st.floats(1e-3, 10.0))
@example([0.25, 0.15, -0.25, 0.0, -0.0, 0.35], 0.05)  # the quotients CuPy's floor(x / d) gets wrong
@example([1.0, 0.7, 0.1], 0.1)
def test_floor_divide_by_fmod_is_pythons_floor_division(values, divisor):
    """The CuPy path (fmod-based, run here on NumPy) equals Python's and NumPy's ``//`` bit for bit."""
    x = np.array(values)
    want = np.array([v // divisor for v in values])
    np.testing.assert_array_equal(_ops._floor_divide_by_fmod(np, x, divisor), want)
    np.testing.assert_array_equal(_ops.floor_divide(x, divisor), want)


def test_floor_divide_on_every_backend(xpd):
    x = np.array([0.25, 0.15, -0.25, 0.6, 1.0])
    got = _ops.floor_divide(xpd.put(x), 0.05)
    assert backend.namespace(got) is xpd.xp
    np.testing.assert_array_equal(backend.to_numpy(got), x // 0.05)


@given(windows())
@example(dict(n=1, c=1, h=4, w=6, kh=2, kw=2, stride=2, padding=0))   # tiles
@example(dict(n=1, c=1, h=5, w=6, kh=2, kw=2, stride=2, padding=0))   # the last row in no window
@example(dict(n=1, c=1, h=2, w=2, kh=2, kw=2, stride=2, padding=1))   # side = stride, but into the padding
def test_windows_tile_only_when_every_pixel_is_in_exactly_one_window(g):
    """Counted by the definition on the padded grid: window (i, j) covers rows i s .. i s + KH - 1."""
    h, w, kh, kw, s, p = g["h"], g["w"], g["kh"], g["kw"], g["stride"], g["padding"]
    oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    covered = np.zeros((h + 2 * p, w + 2 * p), dtype=int)
    for i, j in itertools.product(range(oh), range(ow)):
        covered[i * s:i * s + kh, j * s:j * s + kw] += 1
    inside = np.zeros_like(covered)
    inside[p:p + h, p:p + w] = 1
    once = bool(np.all(covered == inside))   # each pixel in one window, no window reaching into the padding
    tiles = _ops.windows_tile((g["n"], g["c"], h, w), (kh, kw), s, p)
    assert once or not tiles                       # it never claims a tiling that is not one
    if kh == kw == s:                              # and finds every tiling by windows of side = stride
        assert tiles == once


def test_maximum_in_place_is_maximum_on_every_backend(xpd):
    a, b = np.array([1.0, 5.0, np.nan, -2.0, 3.0]), np.array([3.0, 2.0, 0.0, -1.0, np.nan])
    got = _ops.maximum_(xpd.put(a), xpd.put(b))
    assert backend.namespace(got) is xpd.xp
    np.testing.assert_array_equal(backend.to_numpy(got), np.maximum(a, b))  # NaN wherever either is
    counts = np.array([0, 3, 1], dtype=np.int8)
    got = _ops.maximum_(xpd.put(counts), xpd.put(np.array([2, 2, 2], dtype=np.int8)))
    assert got.dtype == xpd.xp.int8 and backend.to_numpy(got).tolist() == [2, 3, 2]


def test_maximum_in_place_overwrites_its_first_argument_on_numpy():
    a = np.array([1.0, 5.0])
    assert _ops.maximum_(a, np.array([3.0, 2.0])) is a and a.tolist() == [3.0, 5.0]


@pytest.mark.parametrize("key", [(slice(None), 1, ...), (slice(None), slice(None), 2)])
def test_set_product_writes_the_masked_values_on_every_backend(xpd, key):
    out = np.full((2, 3, 3), 7.0)
    a = np.array([[1.5, -2.0, np.nan], [-0.5, 4.0, np.inf]])
    mask = np.array([[True, False, False], [False, True, True]])
    want = out.copy()
    want[key] = a * mask                     # -2.0 * False is -0.0, NaN * False is NaN
    got = _ops.set_product(xpd.put(out), key, xpd.put(a), xpd.put(mask))
    assert backend.namespace(got) is xpd.xp
    host = backend.to_numpy(got)
    np.testing.assert_array_equal(host, want)
    np.testing.assert_array_equal(np.signbit(host), np.signbit(want))


@pytest.mark.parametrize("axes", [(0, 1, 2), (2, 0, 1), (1, 0, 2)])
def test_contiguous_keeps_the_values_on_every_backend(xpd, axes):
    a = np.arange(24.0).reshape(2, 3, 4).transpose(axes)
    got = _ops.contiguous(xpd.put(a))
    assert backend.namespace(got) is xpd.xp and tuple(got.shape) == a.shape
    np.testing.assert_array_equal(backend.to_numpy(got), a)
    if xpd.xp is np:  # a layout only NumPy and CuPy expose: C order, and no copy when it already is
        assert got.flags.c_contiguous and (_ops.contiguous(got) is got)
