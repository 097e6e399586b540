"""relu, dropout and flatten: kinks, masks, seeds, gradients, torch, backends, bad input."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import backend, gradcheck
from refimpl.layers import dropout, flatten, relu
from layer_helpers import assert_pure, distinct, host

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@given(shapes)
def test_relu_vjp_away_from_the_kink(shape):
    x = distinct(shape)
    out, _ = relu.forward(x)
    np.testing.assert_array_equal(out, np.where(x > 0, x, 0.0))
    gradcheck.check_vjp(relu.forward, relu.backward, [x]).raise_if_failed()


def test_relu_gradient_at_zero_is_zero_as_torch(torch):
    x = np.array([-1.0, 0.0, -0.0, 2.0])
    _, cache = relu.forward(x)
    (dx,) = relu.backward(np.ones(4), cache)
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0, 1.0])
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.ones(4, dtype=torch.float64))
    np.testing.assert_array_equal(dx, tx.grad.numpy())
    gradcheck.check_gradients(relu.forward, relu.backward, [distinct((2, 3))]).raise_if_failed()


def test_dropout_mask_statistics_and_scale():
    x = np.ones((200, 100))
    out, _ = dropout.forward(x, p=0.3, train=True, seed=0)
    assert set(np.unique(out)) == {0.0, 1.0 / 0.7}
    assert abs((out == 0).mean() - 0.3) < 0.02
    assert abs(out.mean() - 1.0) < 0.03  # inverted dropout keeps the expectation


def test_dropout_seed_gives_one_mask_and_gradient_is_the_mask():
    x = distinct((4, 5))
    a, cache = dropout.forward(x, p=0.5, train=True, seed=3)
    b, _ = dropout.forward(x, p=0.5, train=True, seed=3)
    c, _ = dropout.forward(x, p=0.5, train=True, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    f = lambda x: dropout.forward(x, p=0.5, train=True, seed=3)
    gradcheck.check_gradients(f, dropout.backward, [x]).raise_if_failed()
    assert_pure(dropout.forward, dropout.backward, [x], np.ones((4, 5)), p=0.5, train=True, seed=3)


@pytest.mark.parametrize("train,p", [(False, 0.5), (True, 0.0)])
def test_dropout_identity_in_eval_or_p_zero(train, p):
    x = distinct((3, 2))
    out, cache = dropout.forward(x, p=p, train=train, seed=None if not train else 0)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(dropout.backward(np.ones((3, 2)), cache)[0], np.ones((3, 2)))


@pytest.mark.parametrize("kw,error,match", [
    (dict(p=1.0), ValueError, r"p must be in \[0, 1\)"),
    (dict(p=-0.1), ValueError, "p must be a finite number >= 0"),
    (dict(seed=None), ValueError, "seed is required"),
    (dict(train="yes"), TypeError, "train must be a bool"),
])
def test_dropout_bad_input_raises(kw, error, match):
    args = dict(p=0.5, train=True, seed=0)
    args.update(kw)
    with pytest.raises(error, match=match):
        dropout.forward(np.ones(3), **args)


@given(shapes)
def test_flatten_round_trip(shape):
    x = distinct(shape)
    out, cache = flatten.forward(x)
    assert out.shape == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_array_equal(out.ravel(), x.ravel())
    gradcheck.check_vjp(flatten.forward, flatten.backward, [x]).raise_if_failed()
    np.testing.assert_array_equal(flatten.backward(out, cache)[0], x)


@pytest.mark.parametrize("layer", ["relu", "dropout", "flatten"])
def test_on_every_backend(xpd, layer):
    x = distinct((2, 3, 2))
    kw = dict(p=0.4, train=True, seed=7) if layer == "dropout" else {}
    module = {"relu": relu, "dropout": dropout, "flatten": flatten}[layer]
    out, cache = module.forward(xpd.put(x), **kw)
    dout = np.random.default_rng(1).standard_normal(tuple(out.shape))
    (dx,) = module.backward(xpd.put(dout), cache)
    assert backend.namespace(out, dx) is xpd.xp
    ref_out, ref_cache = module.forward(x, **kw)
    np.testing.assert_array_equal(host(out), ref_out)  # one seed, one mask on every backend
    np.testing.assert_array_equal(host(dx), module.backward(dout, ref_cache)[0])


def test_pure_and_deterministic():
    x = distinct((2, 3))
    assert_pure(relu.forward, relu.backward, [x], np.ones((2, 3)))
    assert_pure(flatten.forward, flatten.backward, [x], np.ones((2, 3)))


def test_bad_input_raises():
    with pytest.raises(TypeError, match="x must be an array"):
        relu.forward([1.0])
    with pytest.raises(ValueError, match="x must have a batch axis"):
        flatten.forward(np.float64(1.0))
