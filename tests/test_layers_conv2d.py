"""conv2d: im2col version against the loop version, gradient checks, torch, backends, bad input."""
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from refimpl import backend, gradcheck
from refimpl.layers import _conv2d_fft, conv2d
from layer_helpers import assert_pure, host, windows


def _case(g, f=2, bias=True, seed=0):
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((g["n"], g["c"], g["h"], g["w"]))
    w = gen.standard_normal((f, g["c"], g["kh"], g["kw"]))
    b = gen.standard_normal(f) if bias else None
    return x, w, b


def _kw(g):
    return dict(stride=g["stride"], padding=g["padding"])


@given(windows(), st.integers(1, 3), st.booleans())
@example(dict(n=1, c=1, h=1, w=1, kh=1, kw=1, stride=1, padding=0), 1, True)
@example(dict(n=2, c=3, h=2, w=3, kh=3, kw=3, stride=3, padding=2), 2, False)
def test_fast_equals_naive_forward_and_backward(g, f, bias):
    x, w, b = _case(g, f, bias)
    out, cache = conv2d.forward(x, w, b, **_kw(g))
    ref, ref_cache = conv2d.forward_naive(x, w, b, **_kw(g))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    for got, want in zip(conv2d.backward(dout, cache), conv2d.backward_naive(dout, ref_cache)):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@given(windows(), st.booleans())
@example(dict(n=2, c=3, h=2, w=3, kh=3, kw=3, stride=3, padding=2), False)
def test_without_input_grad_dx_is_none_and_dw_db_unchanged(g, bias):
    x, w, b = _case(g, bias=bias)
    for fwd, bwd in ((conv2d.forward, conv2d.backward), (conv2d.forward_naive, conv2d.backward_naive)):
        out, cache = fwd(x, w, b, **_kw(g))
        out_off, cache_off = fwd(x, w, b, **_kw(g), input_grad=False)
        np.testing.assert_array_equal(out_off, out)
        dout = np.random.default_rng(1).standard_normal(out.shape)
        (_, dw, db), (dx_off, dw_off, db_off) = bwd(dout, cache), bwd(dout, cache_off)
        assert dx_off is None
        np.testing.assert_array_equal(dw_off, dw)
        assert (db_off is None) if not bias else np.array_equal(db_off, db)


def test_without_input_grad_the_window_scatter_is_skipped(monkeypatch):
    x, w, b = _case(dict(n=2, c=2, h=5, w=5, kh=3, kw=3))
    out, cache = conv2d.forward(x, w, b, padding=1, input_grad=False)

    def scatter(*args, **kwargs):
        raise AssertionError("col2im called although input_grad=False")
    monkeypatch.setattr(conv2d._ops, "col2im", scatter)
    assert conv2d.backward(np.ones(out.shape), cache)[0] is None


def test_without_input_grad_on_every_backend(xpd):
    x, w, b = _case(dict(n=2, c=3, h=6, w=5, kh=3, kw=2), f=4)
    out, cache = conv2d.forward(xpd.put(x), xpd.put(w), xpd.put(b), stride=2, padding=1, input_grad=False)
    dout = np.random.default_rng(1).standard_normal(tuple(out.shape))
    dx, dw, db = conv2d.backward(xpd.put(dout), cache)
    _, dw_ref, db_ref = conv2d.backward(dout, conv2d.forward(x, w, b, stride=2, padding=1)[1])
    assert dx is None and backend.namespace(dw, db) is xpd.xp
    np.testing.assert_allclose(host(dw), dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(db), db_ref, rtol=1e-12, atol=1e-12)


def test_full_gradient_check():
    x, w, b = _case(dict(n=2, c=2, h=4, w=5, kh=3, kw=2), f=2)
    fwd = lambda x, w, b: conv2d.forward(x, w, b, stride=2, padding=1)
    gradcheck.check_gradients(fwd, conv2d.backward, [x, w, b]).raise_if_failed()


@given(windows(), st.booleans())
def test_vjp(g, bias):
    x, w, b = _case(g, bias=bias)
    inputs = [x, w] + ([b] if bias else [])
    fwd = lambda x, w, b=None: conv2d.forward(x, w, b, **_kw(g))
    gradcheck.check_vjp(fwd, conv2d.backward, inputs, wrt=list(range(len(inputs)))).raise_if_failed()


def test_naive_gradient_check():
    x, w, b = _case(dict(n=1, c=2, h=3, w=3, kh=2, kw=2), f=2)
    fwd = lambda x, w, b: conv2d.forward_naive(x, w, b, stride=1, padding=1)
    gradcheck.check_gradients(fwd, conv2d.backward_naive, [x, w, b]).raise_if_failed()


def test_pure_and_deterministic():
    x, w, b = _case(dict(n=2, c=2, h=5, w=5, kh=3, kw=3))
    dout = np.ones((2, 2, 3, 3))
    assert_pure(conv2d.forward, conv2d.backward, [x, w, b], dout, stride=2, padding=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_on_every_backend(xpd, dtype):
    x, w, b = _case(dict(n=2, c=3, h=6, w=5, kh=3, kw=2), f=4)
    out, cache = conv2d.forward(xpd.put(x, dtype), xpd.put(w, dtype), xpd.put(b, dtype), stride=2, padding=1)
    assert backend.namespace(out) is xpd.xp and str(out.dtype).endswith(dtype)
    dout = np.random.default_rng(1).standard_normal(tuple(out.shape))
    grads = conv2d.backward(xpd.put(dout, dtype), cache)
    ref_out, ref_cache = conv2d.forward_naive(x, w, b, stride=2, padding=1)
    tol = 1e-12 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(host(out), ref_out, rtol=tol, atol=tol)
    for got, want in zip(grads, conv2d.backward_naive(dout, ref_cache)):
        np.testing.assert_allclose(host(got), want, rtol=tol, atol=tol)


def test_naive_on_every_backend(xpd):
    x, w, b = _case(dict(n=1, c=2, h=4, w=4, kh=3, kw=3))
    out, cache = conv2d.forward_naive(xpd.put(x), xpd.put(w), xpd.put(b), padding=1)
    dx, dw, db = conv2d.backward_naive(xpd.put(np.ones(tuple(out.shape))), cache)
    np.testing.assert_allclose(host(out), conv2d.forward(x, w, b, padding=1)[0], rtol=1e-12)
    assert backend.namespace(dx, dw, db) is xpd.xp


@pytest.mark.parametrize("stride,padding,bias", [(1, 0, True), (1, 1, False), (2, 1, True), (3, 2, True)])
def test_equals_torch(torch, stride, padding, bias):
    x, w, b = _case(dict(n=3, c=2, h=7, w=6, kh=3, kw=3), f=4, bias=bias)
    out, cache = conv2d.forward(x, w, b, stride=stride, padding=padding)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    dx, dw, db = conv2d.backward(dout, cache)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    if bias:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_identity_kernel_and_shift():
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4))
    one = np.zeros((1, 1, 3, 3))
    one[0, 0, 1, 1] = 1.0
    np.testing.assert_array_equal(conv2d.forward(x, one, None, padding=1)[0], x)
    shift = np.zeros((1, 1, 3, 3))
    shift[0, 0, 1, 2] = 1.0  # out[p, q] = x[p, q + 1], zero past the border
    expected = np.concatenate([x[..., 1:], np.zeros((1, 1, 4, 1))], axis=3)
    np.testing.assert_array_equal(conv2d.forward(x, shift, None, padding=1)[0], expected)


def test_linear_in_x_and_w():
    x, w, _ = _case(dict(n=2, c=2, h=4, w=4, kh=3, kw=3))
    y = np.random.default_rng(5).standard_normal(x.shape)
    lhs = conv2d.forward(2 * x - y, w, None, padding=1)[0]
    rhs = 2 * conv2d.forward(x, w, None, padding=1)[0] - conv2d.forward(y, w, None, padding=1)[0]
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("change,error,match", [
    (dict(w=np.zeros((2, 3, 3, 3))), ValueError, "w has 3 input channels"),
    (dict(stride=0), ValueError, "stride must be an integer >= 1"),
    (dict(stride=1.5), TypeError, "stride must be an integer"),
    (dict(padding=-1), ValueError, "padding must be an integer >= 0"),
    (dict(w=np.zeros((2, 2, 7, 3))), ValueError, "kernel size 7 is larger than the padded input size 6"),
    (dict(x=np.zeros((2, 4, 4))), ValueError, "x must have 4 dimensions"),
    (dict(b=np.zeros(3)), ValueError, r"b must have shape \(2,\)"),
    (dict(w=np.zeros((2, 2, 3, 3), dtype=np.float32)), TypeError, "w has dtype float32"),
    (dict(x=[[[[1.0]]]]), TypeError, "x must be an array"),
    (dict(input_grad=0), TypeError, "input_grad must be a bool, got int"),
    (dict(input_grad=np.bool_(False)), TypeError, "input_grad must be a bool, got bool"),
])
def test_bad_input_raises(change, error, match):
    args = dict(x=np.zeros((1, 2, 4, 4)), w=np.zeros((2, 2, 3, 3)), b=np.zeros(2), stride=1, padding=1,
                input_grad=True)
    args.update(change)
    for fn in (conv2d.forward, conv2d.forward_naive):
        with pytest.raises(error, match=match):
            fn(args["x"], args["w"], args["b"], stride=args["stride"], padding=args["padding"],
               input_grad=args["input_grad"])


# ------------------------------------------------------------------ the FFT algorithm


def _close(got, want, rtol=1e-11):
    """Equal to float64 rounding of sums whose terms reach ``max |want|`` (FFTs round on that scale)."""
    scale = max(1.0, float(np.max(np.abs(want)))) if np.size(want) else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@st.composite
def fft_geometries(draw):
    """Windows up to 5x5 and up to three outputs per axis, with the kernel as large as the input at times."""
    g = draw(windows(max_kernel=5))
    if draw(st.booleans()):  # one window covers the whole padded input
        g = dict(g, h=max(1, g["kh"] - 2 * g["padding"]), w=max(1, g["kw"] - 2 * g["padding"]))
        g["kh"], g["kw"] = g["h"] + 2 * g["padding"], g["w"] + 2 * g["padding"]
    return g


@given(fft_geometries(), st.integers(1, 3), st.booleans(), st.booleans())
@example(dict(n=1, c=1, h=1, w=1, kh=1, kw=1, stride=1, padding=0), 1, True, True)        # 1x1 on 1x1
@example(dict(n=2, c=3, h=3, w=4, kh=1, kw=1, stride=1, padding=2), 2, True, True)        # padding > kernel
@example(dict(n=2, c=2, h=5, w=5, kh=5, kw=5, stride=1, padding=0), 3, False, True)       # kernel = input
@example(dict(n=1, c=2, h=4, w=4, kh=5, kw=5, stride=1, padding=2), 2, True, False)       # TinyNet's conv5
@example(dict(n=2, c=3, h=2, w=3, kh=3, kw=3, stride=3, padding=2), 2, False, True)       # windows in the padding
@example(dict(n=1, c=1, h=7, w=5, kh=2, kw=3, stride=2, padding=1), 1, True, True)        # odd sizes, stride 2
def test_the_three_algorithms_agree_forward_and_backward(g, f, bias, input_grad):
    x, w, b = _case(g, f, bias)
    kw = dict(_kw(g), input_grad=input_grad)
    ref, ref_cache = conv2d.forward_naive(x, w, b, **kw)
    dout = np.random.default_rng(1).standard_normal(ref.shape)
    want = conv2d.backward_naive(dout, ref_cache)
    for algorithm in conv2d.ALGORITHMS:
        out, cache = conv2d.forward(x, w, b, **kw, algorithm=algorithm)
        assert out.shape == ref.shape
        _close(out, ref)
        for got, expected in zip(conv2d.backward(dout, cache), want):
            if expected is None:
                assert got is None
            else:
                assert got.shape == expected.shape
                _close(got, expected)


def test_fft_gradient_check():
    x, w, b = _case(dict(n=2, c=2, h=5, w=4, kh=3, kw=2), f=3)
    for stride, padding in ((1, 1), (2, 2)):
        fwd = lambda x, w, b: conv2d.forward(x, w, b, stride=stride, padding=padding, algorithm="fft")
        gradcheck.check_gradients(fwd, conv2d.backward, [x, w, b]).raise_if_failed()


@given(fft_geometries(), st.booleans())
# every window in the padding: the exact output is 0, the FFT's is rounding noise of 1e-15
@example(dict(n=2, c=3, h=2, w=1, kh=4, kw=2, stride=3, padding=2), False)
def test_fft_vjp(g, bias):
    x, w, b = _case(g, bias=bias)
    inputs = [x, w] + ([b] if bias else [])
    fwd = lambda x, w, b=None: conv2d.forward(x, w, b, **_kw(g), algorithm="fft")
    gradcheck.check_vjp(fwd, conv2d.backward, inputs, wrt=list(range(len(inputs)))).raise_if_failed()


def test_fft_pure_and_deterministic():
    x, w, b = _case(dict(n=2, c=2, h=5, w=5, kh=3, kw=3))
    assert_pure(conv2d.forward, conv2d.backward, [x, w, b], np.ones((2, 2, 3, 3)), stride=2, padding=1,
                algorithm="fft")


@pytest.mark.parametrize("algorithm", conv2d.ALGORITHMS)
def test_filter_gradient_is_c_contiguous(algorithm):
    """dw comes out in (F, C, KH, KW) memory order: an optimiser step or a DataParallel worker's copy into its
    gradient buffer reads it in order."""
    x, w, b = _case(dict(n=2, c=3, h=6, w=6, kh=5, kw=5), f=4)
    out, cache = conv2d.forward(x, w, b, padding=2, algorithm=algorithm)
    _, dw, _ = conv2d.backward(np.ones_like(out), cache)
    assert dw.shape == w.shape and dw.flags.c_contiguous


def test_transform_length_makes_the_circular_correlation_exact_and_no_longer():
    """L >= H + P is enough (the wrapped reads land on added zeros); one less aliases a real pixel."""
    assert _conv2d_fft.transform_lengths((64, 16, 32, 32), (5, 5), 1, 2) == (34, 34)
    assert _conv2d_fft.transform_lengths((64, 128, 4, 4), (5, 5), 1, 2) == (6, 6)     # not the padded 8
    assert _conv2d_fft.transform_lengths((1, 1, 1, 1), (1, 1), 1, 2) == (5, 5)        # the 5 stride-1 outputs
    assert _conv2d_fft.transform_lengths((1, 1, 7, 9), (3, 3), 2, 1) == (8, 10)       # any length, odd included
    x, w, _ = _case(dict(n=1, c=1, h=4, w=4, kh=5, kw=5), f=1)
    want = conv2d.forward_naive(x, w, None, padding=2)[0][0, 0]

    def correlate(length):  # the forward product at a given FFT length
        spectrum = np.conj(_conv2d_fft.filter_spectrum(w, (length, length), 2)) @ _conv2d_fft.input_spectrum(
            x, (length, length))
        return np.fft.irfftn(spectrum, s=(length, length), axes=(0, 1))[:4, :4, 0, 0]
    np.testing.assert_allclose(correlate(6), want, atol=1e-12)
    assert not np.allclose(correlate(5), want)


@pytest.mark.parametrize("h,w,lengths", [(5, 4, (8, 6)), (4, 4, (6, 6)), (1, 3, (5, 9)), (3, 3, (5, 6))])
def test_spectra_equal_numpys_ffts_of_the_zero_extended_and_placed_arrays(h, w, lengths):
    """The transforms by matrix (zero rows and columns never transformed, cropped ones never computed, planes
    at strided positions) and the filter's spectrum from its taps equal NumPy's FFTs of the zero-extended
    planes and the placed filter."""
    gen = np.random.default_rng(0)
    planes = gen.standard_normal((h, w, 3, 2))                                   # (H, W, K, N)
    want = np.fft.rfftn(planes, s=lengths, axes=(0, 1))
    parts = _conv2d_fft._spectrum(planes, lengths)                               # (LH, 2, LW2, K, N)
    np.testing.assert_allclose(parts, np.stack([want.real, want.imag], axis=1), atol=1e-12)
    rows, columns = range(1, lengths[0], 2), range(0, 2)
    image = _conv2d_fft._image(np, parts, lengths, rows, columns)                # (N, K, rows, columns)
    full = np.fft.irfftn(want, s=lengths, axes=(0, 1))
    np.testing.assert_allclose(image, full[1::2, :2].transpose(3, 2, 0, 1), atol=1e-12)
    if 2 * h - 1 <= lengths[0] and 2 * w - 1 <= lengths[1]:                    # every other row and column
        spread = np.zeros(lengths + (3, 2))
        spread[0:2 * h:2, 0:2 * w:2] = planes
        strided = _conv2d_fft._spectrum(planes, lengths, (range(0, 2 * h - 1, 2), range(0, 2 * w - 1, 2)))
        want_spread = np.fft.rfftn(spread, axes=(0, 1))
        np.testing.assert_allclose(strided, np.stack([want_spread.real, want_spread.imag], axis=1), atol=1e-12)
    filters, padding = gen.standard_normal((4, 3, 3, 2)), 1
    placed = np.zeros((4, 3) + lengths)
    for i in range(3):
        for j in range(2):
            placed[:, :, (i - padding) % lengths[0], (j - padding) % lengths[1]] = filters[:, :, i, j]
    want_w = np.fft.rfftn(placed, axes=(2, 3)).transpose(2, 3, 0, 1)           # (LH, LW2, F, C)
    np.testing.assert_allclose(_conv2d_fft.filter_spectrum(filters, lengths, padding), want_w, atol=1e-12)
    parts = _conv2d_fft.filter_spectrum_parts(filters, lengths, padding)
    np.testing.assert_allclose(parts, np.concatenate([want_w.real, want_w.imag], axis=2), atol=1e-12)


@given(st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=20), st.integers(1, 400))
@example([0, 1, 2, 3, 4, -1, 10**6], 4)
@example([3, 6, 9], 6)
def test_roots_of_unity_are_exact_at_quarter_turns_and_equal_exp_elsewhere(turns, length):
    roots = _conv2d_fft.roots_of_unity(np.array(turns), length)
    fraction = np.mod(turns, length) / length
    np.testing.assert_allclose(roots, np.exp(2j * np.pi * fraction), rtol=0, atol=1e-15)
    for m, root in zip(np.mod(turns, length), roots):
        if (4 * m) % length == 0:                          # 1, i, -1 or -i, with no crumb in the other part
            assert root == {0: 1, 1: 1j, 2: -1, 3: -1j}[4 * m // length]


@pytest.mark.parametrize("lengths", [(6, 6), (34, 36), (7, 9), (10, 5)])
def test_spectra_of_self_conjugate_frequencies_are_exactly_real(lengths):
    """Where k = -k along both axes (k = 0 or L/2), the DFT of real planes is real: the transforms give exact
    zeros there, not rounding crumbs (a crumb times a small gradient was a subnormal float, slow on CPUs)."""
    gen = np.random.default_rng(1)
    planes = gen.standard_normal((5, 4, 3, 2)).astype(np.float32)
    filters = gen.standard_normal((2, 3, 5, 5)).astype(np.float32)
    lh, lw = lengths
    self_conjugate = [(kh, kw) for kh in {0, lh // 2} if (2 * kh) % lh == 0 for kw in {0, lw // 2}
                      if (2 * kw) % lw == 0]
    spectrum = _conv2d_fft._spectrum(planes, lengths)                    # (LH, 2, LW2, K, N): Re, Im
    parts = _conv2d_fft.filter_spectrum_parts(filters, lengths, 2)       # (LH, LW2, 2F, C): [Re; Im]
    for kh, kw in self_conjugate:
        assert np.all(spectrum[kh, 1, kw] == 0), (kh, kw)
        assert np.all(parts[kh, kw, 2:] == 0), (kh, kw)
    assert np.any(spectrum[1, 1, 1] != 0) and np.any(parts[1, 1, 2:] != 0)   # elsewhere they are complex


@pytest.mark.parametrize("algorithm", conv2d.ALGORITHMS)
@pytest.mark.parametrize("stride,padding,bias", [(1, 2, True), (2, 1, False), (3, 0, True)])
def test_both_algorithms_equal_torch(torch, algorithm, stride, padding, bias):
    x, w, b = _case(dict(n=3, c=2, h=9, w=8, kh=5, kw=3), f=4, bias=bias)
    out, cache = conv2d.forward(x, w, b, stride=stride, padding=padding, algorithm=algorithm)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
    tout.backward(torch.tensor(dout))
    dx, dw, db = conv2d.backward(dout, cache)
    for got, want in ((out, tout.detach()), (dx, tx.grad), (dw, tw.grad)) + (((db, tb.grad),) if bias else ()):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algorithm", conv2d.ALGORITHMS)
def test_float32_within_float32_rounding_of_float64(algorithm):
    """TinyNet-like sizes: relative error of a float32 pass a few float32 epsilons of the output scale."""
    x, w, b = _case(dict(n=4, c=8, h=16, w=16, kh=5, kw=5), f=6)
    out64, cache64 = conv2d.forward(x, w, b, padding=2, algorithm=algorithm)
    out32, cache32 = conv2d.forward(*(a.astype(np.float32) for a in (x, w, b)), padding=2, algorithm=algorithm)
    dout = np.random.default_rng(1).standard_normal(out64.shape)
    assert out32.dtype == np.float32
    _close(out32, out64, rtol=2e-6)
    for got, want in zip(conv2d.backward(dout.astype(np.float32), cache32), conv2d.backward(dout, cache64)):
        assert got.dtype == np.float32
        _close(got, want, rtol=2e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stride", [1, 2])
def test_fft_on_every_backend(xpd, dtype, stride):
    x, w, b = _case(dict(n=2, c=3, h=6, w=5, kh=3, kw=2), f=4)
    put = lambda a: xpd.put(a, dtype)
    for input_grad in (True, False):
        out, cache = conv2d.forward(put(x), put(w), put(b), stride=stride, padding=1, input_grad=input_grad,
                                    algorithm="fft")
        assert backend.namespace(out) is xpd.xp and str(out.dtype).endswith(dtype)
        dout = np.random.default_rng(1).standard_normal(tuple(out.shape))
        grads = conv2d.backward(put(dout), cache)
        ref_out, ref_cache = conv2d.forward_naive(x, w, b, stride=stride, padding=1, input_grad=input_grad)
        rtol = 1e-11 if dtype == "float64" else 2e-5
        _close(host(out), ref_out, rtol)
        for got, want in zip(grads, conv2d.backward_naive(dout, ref_cache)):
            assert (got is None) == (want is None)
            if want is not None:
                assert backend.namespace(got) is xpd.xp and str(got.dtype).endswith(dtype)
                _close(host(got), want, rtol)


@pytest.mark.parametrize("algorithm", ["FFT", "winograd", "", None, ["fft"]])
def test_unknown_algorithm_is_a_value_error_naming_it(algorithm):
    x, w, b = _case(dict(n=1, c=2, h=4, w=4, kh=3, kw=3))
    with pytest.raises(ValueError, match=r"algorithm must be one of \['fft', 'im2col'\]"):
        conv2d.forward(x, w, b, algorithm=algorithm)
