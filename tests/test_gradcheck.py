"""The gradient checker must pass correct backward passes and catch planted bugs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import gradcheck


def _tanh_affine(x, w):
    # out = tanh(x @ w), a small smooth function with two inputs
    return np.tanh(x @ w), (x, w)


def _tanh_affine_backward(dout, cache):
    x, w = cache
    dpre = dout * (1 - np.tanh(x @ w) ** 2)
    return dpre @ w.T, x.T @ dpre


def _inputs(seed, n=3, d=4, k=2):
    g = np.random.default_rng(seed)
    return [g.standard_normal((n, d)), g.standard_normal((d, k)) / 2]


def test_correct_backward_passes_full_and_vjp():
    report = gradcheck.check_gradients(_tanh_affine, _tanh_affine_backward, _inputs(0))
    assert report.ok, str(report)
    assert gradcheck.check_vjp(_tanh_affine, _tanh_affine_backward, _inputs(0)) < 1e-7


def test_planted_single_entry_bug_is_located():
    def buggy(dout, cache):
        dx, dw = _tanh_affine_backward(dout, cache)
        dw = dw.copy()
        dw[1, 0] += 0.01  # one wrong entry
        return dx, dw

    report = gradcheck.check_gradients(_tanh_affine, buggy, _inputs(1))
    assert not report.ok
    assert report.inputs[0].ok
    assert report.inputs[1].worst[0].index == (1, 0)
    assert "(1, 0)" in str(report)
    with pytest.raises(AssertionError, match="gradient check failed"):
        report.raise_if_failed()
    with pytest.raises(AssertionError, match="VJP check failed"):
        gradcheck.check_vjp(_tanh_affine, buggy, _inputs(1), n_directions=3)


def test_planted_transpose_bug_is_caught():
    def transposed(dout, cache):
        x, w = cache
        dpre = dout * (1 - np.tanh(x @ w) ** 2)
        return dpre @ w.T, (dpre.T @ x).T[:, ::-1]  # wrong column order

    assert not gradcheck.check_gradients(_tanh_affine, transposed, _inputs(2)).ok


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4), d=st.integers(1, 4))
def test_vjp_agrees_with_full_check(seed, n, d):
    inputs = _inputs(seed, n, d)
    num = gradcheck.numerical_gradient(lambda x, w: _tanh_affine(x, w)[0], inputs)
    dx, dw = _tanh_affine_backward(np.ones((n, 2)), _tanh_affine(*inputs)[1])
    assert gradcheck.rel_error(num[0], dx) < 1e-6
    assert gradcheck.rel_error(num[1], dw) < 1e-6


def test_inputs_are_not_modified():
    inputs = _inputs(3)
    before = [a.copy() for a in inputs]
    gradcheck.check_gradients(_tanh_affine, _tanh_affine_backward, inputs)
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)


def test_rel_error():
    assert gradcheck.rel_error([0.0], [0.0]) == 0.0
    assert gradcheck.rel_error([1.0], [-1.0]) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        gradcheck.rel_error([1.0], [1.0, 2.0])


def test_works_on_every_backend(xpd):
    from refimpl import backend

    def forward(x):
        xp = backend.namespace(x)
        return xp.exp(x) * 2, x

    def backward(dout, x):
        xp = backend.namespace(x)
        return (dout * 2 * xp.exp(x),)

    x = xpd.put(np.linspace(-1, 1, 5))
    assert gradcheck.check_gradients(forward, backward, [x]).ok
    gradcheck.check_vjp(forward, backward, [x])
