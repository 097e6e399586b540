"""The complex helpers of the FFT convolution: real views, the sums a -/+ i b, the stack [z; -i z], the 1-D FFTs.

Each against its definition written with NumPy's complex arithmetic, on every backend.
"""
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from refimpl import _ops, backend

COMPLEX = {"float32": np.complex64, "float64": np.complex128}


def _complex(shape, dtype="float64", seed=0):
    gen = np.random.default_rng(seed)
    return (gen.standard_normal(shape) + 1j * gen.standard_normal(shape)).astype(COMPLEX[dtype])


def _put(xpd, z):
    return xpd.put(z, getattr(xpd.xp, z.dtype.name))


shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5))


@given(shapes)
@example((1, 1, 1))
def test_a_real_matrix_times_the_real_view_is_the_real_view_of_the_complex_product(shape):
    """The property the FFT convolution rests on: A v(z) = v(A z) for real A."""
    z = _complex(shape)
    a = np.random.default_rng(1).standard_normal((shape[0], 3, shape[1]))
    np.testing.assert_allclose(a @ _ops.real_view(z), _ops.real_view(a @ z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_real_view_interleaves_the_parts_and_complex_view_inverts_it(xpd, dtype):
    z = _complex((2, 3, 4), dtype)
    v = _ops.real_view(_put(xpd, z))
    assert backend.namespace(v) is xpd.xp and str(v.dtype).endswith(dtype) and tuple(v.shape) == (2, 3, 8)
    host = backend.to_numpy(v)
    np.testing.assert_array_equal(host[..., 0::2], z.real)
    np.testing.assert_array_equal(host[..., 1::2], z.imag)
    back = _ops.complex_view(v)
    assert str(back.dtype).endswith(COMPLEX[dtype].__name__)
    np.testing.assert_array_equal(backend.to_numpy(back), z)


def test_views_of_arrays_strided_in_the_last_axis_are_copies_of_the_right_values():
    z = _complex((3, 8))[:, ::2]                  # not contiguous in the last axis: no view exists
    np.testing.assert_array_equal(_ops.complex_view(_ops.real_view(z)), z)
    v = np.arange(24.0).reshape(3, 8)[:, ::2].copy()[:, :4]
    np.testing.assert_array_equal(_ops.complex_view(v), v[:, 0::2] + 1j * v[:, 1::2])
    transposed = np.arange(12.0).reshape(4, 3).T   # last axis strided
    np.testing.assert_array_equal(_ops.complex_view(transposed), transposed[:, 0::2] + 1j * transposed[:, 1::2])


def test_real_view_of_numpy_shares_memory_where_it_can():
    z = _complex((2, 3))
    assert np.shares_memory(_ops.real_view(z), z)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sums_with_i_and_the_stack_equal_their_definitions(xpd, dtype):
    a, b = _complex((2, 3, 4), dtype, seed=0), _complex((2, 3, 4), dtype, seed=1)
    cases = [(_ops.add_multiple(_put(xpd, a), _put(xpd, b), -1j), a - 1j * b),
             (_ops.add_multiple(_put(xpd, a), _put(xpd, b), 1j), a + 1j * b),
             (_ops.stack_minus_i(_put(xpd, a)), np.concatenate([a, -1j * a], axis=-2))]
    for got, want in cases:
        assert backend.namespace(got) is xpd.xp and str(got.dtype).endswith(COMPLEX[dtype].__name__)
        np.testing.assert_array_equal(backend.to_numpy(got), want.astype(COMPLEX[dtype]))


def test_sums_do_not_touch_their_inputs():
    a, b = _complex((3, 4), seed=0), _complex((3, 4), seed=1)
    a0, b0 = a.copy(), b.copy()
    _ops.add_multiple(a, b, -1j), _ops.add_multiple(a, b, 1j), _ops.stack_minus_i(a)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rfft_and_irfft_equal_numpy_on_every_backend(xpd, dtype):
    x = np.random.default_rng(0).standard_normal((3, 5, 2)).astype(dtype)
    spectrum = _ops.rfft(xpd.put(x, getattr(xpd.xp, dtype)), 8, 1)       # zero-extended from 5 to 8
    assert backend.namespace(spectrum) is xpd.xp and str(spectrum.dtype).endswith(COMPLEX[dtype].__name__)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(backend.to_numpy(spectrum), np.fft.rfft(x, n=8, axis=1), rtol=rtol, atol=rtol)
    back = _ops.irfft_(spectrum, 8, 1)
    np.testing.assert_allclose(backend.to_numpy(back)[:, :5], x, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(backend.to_numpy(back)[:, 5:], 0.0, atol=rtol)
