"""Shared pieces of the loss tests: array strategies and the teaching-form check."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

#: bounded, finite elements without subnormals: failures shrink to small readable numbers
ELEMENTS = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


def matrices(rows, cols):
    """float64 (rows, cols) arrays of :data:`ELEMENTS` whose rows have norms of at least 1/4.

    ``rows``/``cols``: ints or strategies. Away from the zero-norm kink of the
    L2 normalisation by construction (the first column is pushed off 0), where
    the floored norm would scale rounding errors by 1e12.
    """
    arrays = hnp.arrays(np.float64, st.tuples(_ints(rows), _ints(cols)), elements=ELEMENTS)
    return arrays.map(_off_zero)


def _off_zero(x):
    x = x.copy()
    x[:, 0] += np.where(x[:, 0] < 0, -0.25, 0.25)
    return x


def _ints(n):
    return st.just(n) if isinstance(n, int) else n


def upstream(loss):
    """A deterministic upstream gradient with distinct entries for ``loss``'s shape (0-d: 1.5)."""
    shape = np.shape(loss)
    return 1.5 if shape == () else 1.0 + 0.25 * np.arange(np.prod(shape)).reshape(shape)


def assert_naive_matches_fast(module, args, kwargs, *, rtol=1e-10, atol=1e-10):
    """``forward_naive``/``backward_naive`` equal ``forward``/``backward``: value and every gradient."""
    fast, fast_cache = module.forward(*args, **kwargs)
    naive, naive_cache = module.forward_naive(*args, **kwargs)
    np.testing.assert_allclose(naive, fast, rtol=rtol, atol=atol)
    dout = upstream(fast)
    for got, want in zip(module.backward_naive(dout, naive_cache), module.backward(dout, fast_cache)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def embeddings(rows, cols):
    """float64 (rows, cols) embeddings whose row norms lie in [0.5, 2], drawn as arrays.

    Directions from :func:`matrices` (off the zero-norm kink by construction)
    and norms from their own array, so that failures shrink in both. Not all
    in one direction: there a contrastive loss is flat by symmetry and a
    central difference sees only its rounding noise (about 1e-9 at
    temperature 0.05), which no gradient check can tell from zero.
    """
    @st.composite
    def draw_embeddings(draw):
        directions = draw(matrices(rows, cols).filter(_two_directions))
        norms = draw(hnp.arrays(np.float64, (directions.shape[0], 1), elements=st.floats(0.5, 2.0)))
        return directions / np.linalg.norm(directions, axis=1, keepdims=True) * norms

    return draw_embeddings()


def _two_directions(x):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return bool(np.any(np.abs(unit - unit[0]) > 1e-3))
