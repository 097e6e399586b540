"""The helpers of the FFT convolution's parts: complex arrays from their parts, sums written into place.

Each against its definition written with NumPy, on every backend.
"""
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from refimpl import _ops, backend

COMPLEX = {"float32": np.complex64, "float64": np.complex128}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_complex_from_parts_on_every_backend(xpd, dtype):
    gen = np.random.default_rng(0)
    re, im = gen.standard_normal((2, 3)).astype(dtype), gen.standard_normal((2, 3)).astype(dtype)
    got = _ops.complex_from_parts(xpd.put(re, getattr(xpd.xp, dtype)), xpd.put(im, getattr(xpd.xp, dtype)))
    assert backend.namespace(got) is xpd.xp and str(got.dtype).endswith(COMPLEX[dtype].__name__)
    np.testing.assert_array_equal(backend.to_numpy(got), (re + 1j * im).astype(COMPLEX[dtype]))


@pytest.mark.parametrize("subtract", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_set_sum_writes_only_its_place_on_every_backend(xpd, dtype, subtract):
    """``out[key] = a -/+ b`` for a basic-indexing key: the rest of ``out`` and the operands untouched."""
    gen = np.random.default_rng(1)
    out = gen.standard_normal((3, 2, 4)).astype(dtype)
    a, b = gen.standard_normal((3, 4)).astype(dtype), gen.standard_normal((3, 4)).astype(dtype)
    put = [xpd.put(v, getattr(xpd.xp, dtype)) for v in (out, a, b)]
    got = backend.to_numpy(_ops.set_sum(put[0], (slice(None), 1, ...), put[1], put[2], subtract=subtract))
    want = out.copy()
    want[:, 1] = a - b if subtract else a + b
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(backend.to_numpy(put[1]), a)
    np.testing.assert_array_equal(backend.to_numpy(put[2]), b)


@given(st.integers(1, 4), st.integers(1, 4), st.booleans())
@example(1, 1, True)
def test_set_sum_into_a_strided_view_of_a_larger_array(rows, columns, subtract):
    """The FFT convolution's use: a block of a (2F, N) product into one part of a (LH, 2, ...) array."""
    gen = np.random.default_rng(rows * 10 + columns)
    products = gen.standard_normal((2, 2 * rows, columns))
    out = np.full((2, 2, rows, columns), np.nan)
    _ops.set_sum(out, (slice(None), 0, ...), products[:, :rows], products[:, rows:], subtract=subtract)
    want = products[:, :rows] - products[:, rows:] if subtract else products[:, :rows] + products[:, rows:]
    np.testing.assert_array_equal(out[:, 0], want)
    assert np.isnan(out[:, 1]).all()
