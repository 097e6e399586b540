"""batchnorm2d: loop oracle, gradients in both modes, running statistics, torch, backends."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import backend, gradcheck
from refimpl.layers import batchnorm2d
from layer_helpers import assert_pure, host


def _case(shape, seed=0):
    gen = np.random.default_rng(seed)
    c = shape[1]
    x = gen.standard_normal(shape) * 2 + 1
    gamma, beta = gen.uniform(0.5, 1.5, c), gen.standard_normal(c)
    running_mean, running_var = gen.standard_normal(c), gen.uniform(0.5, 2.0, c)
    return x, gamma, beta, running_mean, running_var


def batchnorm_loop(x, gamma, beta, running_mean, running_var, train, momentum, eps):
    """Per channel, straight from Ioffe & Szegedy's Algorithm 1 and PyTorch's running update."""
    out = np.empty_like(x)
    new_mean, new_var = running_mean.copy(), running_var.copy()
    for c in range(x.shape[1]):
        values = x[:, c].ravel()
        if train:
            mu, var = values.mean(), values.var()
            new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu
            new_var[c] = (1 - momentum) * running_var[c] + momentum * values.var(ddof=1)
        else:
            mu, var = running_mean[c], running_var[c]
        out[:, c] = gamma[c] * (x[:, c] - mu) / np.sqrt(var + eps) + beta[c]
    return out, new_mean, new_var


@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(2, 3),
       train=st.booleans(), momentum=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
       eps=st.sampled_from([1e-5, 1e-3, 0.5]))
def test_equals_loop_and_vjp(n, c, h, w, train, momentum, eps):
    inputs = _case((n, c, h, w))
    kw = dict(train=train, momentum=momentum, eps=eps)
    out, cache = batchnorm2d.forward(*inputs, **kw)
    want, want_mean, want_var = batchnorm_loop(*inputs, train, momentum, eps)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    mean, var = batchnorm2d.new_running_stats(cache)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(var, want_var, rtol=1e-12, atol=1e-14)
    gradcheck.check_vjp(lambda *a: batchnorm2d.forward(*a, **kw), batchnorm2d.backward, list(inputs),
                        wrt=[0, 1, 2]).raise_if_failed()


@pytest.mark.parametrize("train", [True, False])
def test_full_gradient_check(train):
    inputs = _case((2, 2, 2, 3))
    f = lambda *a: batchnorm2d.forward(*a, train=train)
    gradcheck.check_gradients(f, batchnorm2d.backward, list(inputs), wrt=[0, 1, 2]).raise_if_failed()


def test_train_output_is_normalised_per_channel():
    x, gamma, beta, rm, rv = _case((4, 3, 5, 5))
    out, _ = batchnorm2d.forward(x, np.ones(3), np.zeros(3), rm, rv, train=True, eps=1e-12)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, rtol=1e-9)
    # the batch gradient is orthogonal to the constant and to x_hat per channel
    dx, _, _ = batchnorm2d.backward(np.random.default_rng(1).standard_normal(x.shape),
                                    batchnorm2d.forward(x, gamma, beta, rm, rv, train=True)[1])
    np.testing.assert_allclose(dx.sum(axis=(0, 2, 3)), 0.0, atol=1e-10)


def test_eval_returns_the_running_stats_unchanged():
    inputs = _case((2, 2, 3, 3))
    _, cache = batchnorm2d.forward(*inputs, train=False)
    mean, var = batchnorm2d.new_running_stats(cache)
    assert mean is inputs[3] and var is inputs[4]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_equals_torch(torch, train, momentum):
    x, gamma, beta, rm, rv = _case((3, 2, 4, 5))
    out, cache = batchnorm2d.forward(x, gamma, beta, rm, rv, train=train, momentum=momentum, eps=1e-4)
    dout = np.random.default_rng(1).standard_normal(x.shape)
    dx, dgamma, dbeta = batchnorm2d.backward(dout, cache)
    new_mean, new_var = batchnorm2d.new_running_stats(cache)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    trm, trv = torch.tensor(rm), torch.tensor(rv)  # torch updates these in place
    tout = torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=train, momentum=momentum, eps=1e-4)
    tout.backward(torch.tensor(dout))
    for got, want in [(out, tout.detach()), (dx, tx.grad), (dgamma, tg.grad), (dbeta, tb.grad),
                      (new_mean, trm), (new_var, trv)]:
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("train", [True, False])
def test_pure_and_deterministic(train):
    inputs = _case((2, 2, 3, 3))
    assert_pure(batchnorm2d.forward, batchnorm2d.backward, list(inputs), np.ones((2, 2, 3, 3)), train=train)
    before = [a.copy() for a in inputs]
    batchnorm2d.new_running_stats(batchnorm2d.forward(*inputs, train=train)[1])
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("train", [True, False])
def test_on_every_backend(xpd, train):
    inputs = _case((2, 3, 3, 2))
    out, cache = batchnorm2d.forward(*[xpd.put(a) for a in inputs], train=train)
    dout = np.random.default_rng(1).standard_normal(inputs[0].shape)
    grads = batchnorm2d.backward(xpd.put(dout), cache)
    stats = batchnorm2d.new_running_stats(cache)
    assert backend.namespace(out, *grads, *stats) is xpd.xp
    ref_out, ref_cache = batchnorm2d.forward(*inputs, train=train)
    np.testing.assert_allclose(host(out), ref_out, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads + stats, batchnorm2d.backward(dout, ref_cache) + batchnorm2d.new_running_stats(ref_cache)):
        np.testing.assert_allclose(host(got), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("change,error,match", [
    (dict(gamma=np.ones(3)), ValueError, r"gamma must have shape \(2,\)"),
    (dict(running_var=np.ones((2, 1))), ValueError, r"running_var must have shape \(2,\)"),
    (dict(beta=np.ones(2, dtype=np.float32)), TypeError, "beta has dtype float32"),
    (dict(x=np.ones((1, 2, 1, 1))), ValueError, "more than 1 value per channel"),
    (dict(momentum=1.5), ValueError, r"momentum must be in \[0, 1\]"),
    (dict(eps=0.0), ValueError, "eps must be a finite number > 0"),
    (dict(train=1), TypeError, "train must be a bool"),
    (dict(x=np.ones((2, 2, 3))), ValueError, "x must have 4 dimensions"),
])
def test_bad_input_raises(change, error, match):
    args = dict(x=np.ones((2, 2, 3, 3)), gamma=np.ones(2), beta=np.zeros(2), running_mean=np.zeros(2),
                running_var=np.ones(2), train=True, momentum=0.1, eps=1e-5)
    args.update(change)
    with pytest.raises(error, match=match):
        batchnorm2d.forward(args.pop("x"), args.pop("gamma"), args.pop("beta"), args.pop("running_mean"),
                            args.pop("running_var"), **args)
