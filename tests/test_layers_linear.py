"""linear: loop oracle, gradients, torch, backends, bad input."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import backend, gradcheck
from refimpl.layers import linear
from layer_helpers import assert_pure, host


def _case(n, d_in, d_out, seed=0):
    gen = np.random.default_rng(seed)
    return gen.standard_normal((n, d_in)), gen.standard_normal((d_out, d_in)), gen.standard_normal(d_out)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.booleans())
def test_equals_loop_and_vjp(n, d_in, d_out, bias):
    x, w, b = _case(n, d_in, d_out)
    b = b if bias else None
    out, _ = linear.forward(x, w, b)
    for i in range(n):
        for o in range(d_out):
            want = sum(x[i, k] * w[o, k] for k in range(d_in)) + (b[o] if bias else 0.0)
            assert abs(out[i, o] - want) < 1e-12
    inputs = [x, w] + ([b] if bias else [])
    gradcheck.check_vjp(lambda x, w, b=None: linear.forward(x, w, b), linear.backward, inputs).raise_if_failed()


def test_full_gradient_check_and_no_bias():
    x, w, b = _case(3, 4, 2)
    gradcheck.check_gradients(linear.forward, linear.backward, [x, w, b]).raise_if_failed()
    _, cache = linear.forward(x, w, None)
    assert linear.backward(np.ones((3, 2)), cache)[2] is None


def test_equals_torch(torch):
    x, w, b = _case(5, 4, 3)
    out, cache = linear.forward(x, w, b)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = torch.nn.functional.linear(tx, tw, tb)
    tout.backward(torch.tensor(dout))
    for got, want in zip((out,) + linear.backward(dout, cache), (tout.detach(), tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)


def test_pure_and_deterministic():
    assert_pure(linear.forward, linear.backward, list(_case(3, 4, 2)), np.ones((3, 2)))


def test_on_every_backend(xpd):
    x, w, b = _case(3, 4, 2)
    out, cache = linear.forward(xpd.put(x), xpd.put(w), xpd.put(b))
    dout = np.random.default_rng(1).standard_normal((3, 2))
    grads = linear.backward(xpd.put(dout), cache)
    assert backend.namespace(out, *grads) is xpd.xp
    ref_out, ref_cache = linear.forward(x, w, b)
    np.testing.assert_allclose(host(out), ref_out, rtol=1e-13)
    for got, want in zip(grads, linear.backward(dout, ref_cache)):
        np.testing.assert_allclose(host(got), want, rtol=1e-13)


@pytest.mark.parametrize("bias", [True, False])
def test_without_input_grad_dx_is_none_and_dw_db_unchanged(bias):
    x, w, b = _case(3, 4, 2)
    b = b if bias else None
    dout = np.random.default_rng(1).standard_normal((3, 2))
    _, dw, db = linear.backward(dout, linear.forward(x, w, b)[1])
    dx_off, dw_off, db_off = linear.backward(dout, linear.forward(x, w, b, input_grad=False)[1])
    assert dx_off is None
    np.testing.assert_array_equal(dw_off, dw)
    assert db_off is None if not bias else np.array_equal(db_off, db)
    with pytest.raises(TypeError, match="input_grad must be a bool, got str"):
        linear.forward(x, w, b, input_grad="no")


@pytest.mark.parametrize("change,error,match", [
    (dict(w=np.zeros((2, 5))), ValueError, "w has 5 input features"),
    (dict(x=np.zeros(4)), ValueError, "x must have 2 dimensions"),
    (dict(b=np.zeros(3)), ValueError, r"b must have shape \(2,\)"),
    (dict(w=np.zeros((2, 4), dtype=np.float32)), TypeError, "w has dtype float32"),
])
def test_bad_input_raises(change, error, match):
    args = dict(x=np.zeros((3, 4)), w=np.zeros((2, 4)), b=np.zeros(2))
    args.update(change)
    with pytest.raises(error, match=match):
        linear.forward(args["x"], args["w"], args["b"])
