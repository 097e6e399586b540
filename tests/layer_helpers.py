"""Shared pieces of the layer and _ops tests: window geometries and purity checks."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from refimpl import backend


@st.composite
def windows(draw, *, square=False, pool=False, max_kernel=3, max_stride=3):
    """A valid sliding-window geometry by construction.

    Returns dict(n, c, h, w, kh, kw, stride, padding). The input size is
    built from a drawn output size, so the kernel never exceeds the padded
    input; ``pool`` keeps ``padding <= kernel // 2`` as PyTorch requires.
    """
    kh = draw(st.integers(1, max_kernel))
    kw = kh if square else draw(st.integers(1, max_kernel))
    stride = draw(st.integers(1, max_stride))
    padding = draw(st.integers(0, min(kh, kw) // 2 if pool else 2))
    sizes = []
    for k in (kh, kw):
        out = draw(st.integers(1, 3))
        extra = draw(st.integers(0, stride - 1))
        sizes.append(max(1, (out - 1) * stride + k - 2 * padding + extra))
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), h=sizes[0], w=sizes[1],
                kh=kh, kw=kw, stride=stride, padding=padding)


def distinct(shape, seed=0, scale=1.0):
    """A random permutation of well-separated values (no ties, nothing near 0)."""
    gen = np.random.default_rng(seed)
    size = int(np.prod(shape))
    values = (np.arange(size) - size / 2 + 0.25) * 2 / size * scale  # spacing 2/size, none at 0
    return gen.permutation(values).reshape(shape) + 0.0


def host(a):
    return None if a is None else np.array(backend.to_numpy(a))


def assert_pure(forward, backward, inputs, dout, **kwargs):
    """forward/backward leave their inputs unchanged; backward twice gives identical results."""
    before = [host(a) for a in inputs]
    _, cache = forward(*inputs, **kwargs)
    dout_before = host(dout)
    first = [host(g) for g in backward(dout, cache)]
    second = [host(g) for g in backward(dout, cache)]
    for a, b in zip(inputs, before):
        if b is not None:
            np.testing.assert_array_equal(host(a), b)
    np.testing.assert_array_equal(host(dout), dout_before)
    for g1, g2 in zip(first, second):
        if g1 is None:
            assert g2 is None
        else:
            np.testing.assert_array_equal(g1, g2)
