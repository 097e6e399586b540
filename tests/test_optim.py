"""Optimisers: hand-computed steps, torch.optim equality, purity, schedule."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import backend, optim


def _params():
    return {"w": np.array([1.0, -2.0]), "b": np.array([[0.5]])}


def _grads(t):
    # a different gradient at each step, so that the momenta matter
    return {"w": np.array([0.5, -1.0]) * (t + 1), "b": np.array([[2.0]]) / (t + 1)}


def _run(opt, n_steps, lrs=None, params=None):
    params = _params() if params is None else params
    state = opt.init_state(params)
    for t in range(n_steps):
        params, state = opt.step(params, _grads(t), state, lr=0.1 if lrs is None else lrs[t])
    return params, state


def test_sgd_momentum_weight_decay_by_hand():
    # w0 = 1: g1 = 0.5 + 0.1*1 = 0.6, b1 = 0.6, w1 = 1 - 0.1*0.6 = 0.94
    #         g2 = 1.0 + 0.1*0.94 = 1.094, b2 = 0.9*0.6 + 1.094 = 1.634, w2 = 0.94 - 0.1634 = 0.7766
    #         g3 = 1.5 + 0.07766 = 1.57766, b3 = 0.9*1.634 + 1.57766 = 3.04826, w3 = 0.471774
    opt = optim.SGD(momentum=0.9, weight_decay=0.1)
    for n, want in [(1, 0.94), (2, 0.7766), (3, 0.471774)]:
        params, state = _run(opt, n)
        assert params["w"][0] == pytest.approx(want, abs=1e-12)
        assert state["step"] == n


def test_sgd_nesterov_by_hand():
    # b: g1 = 2, buf1 = 2, d1 = 2 + 0.5*2 = 3, b1 = 0.5 - 0.3 = 0.2
    #    g2 = 1, buf2 = 0.5*2 + 1 = 2, d2 = 1 + 0.5*2 = 2, b2 = 0.2 - 0.2 = 0.0
    opt = optim.SGD(momentum=0.5, nesterov=True)
    assert _run(opt, 1)[0]["b"][0, 0] == pytest.approx(0.2, abs=1e-12)
    assert _run(opt, 2)[0]["b"][0, 0] == pytest.approx(0.0, abs=1e-12)


def test_adamw_by_hand():
    # b0 = 0.5, lr 0.1, wd 0.5, betas (0.5, 0.75), eps 0:
    # t=1: b = 0.5*(1-0.05) = 0.475; g = 2, m = 1, v = 1; m_hat = 2, v_hat = 4 -> b1 = 0.475 - 0.1 = 0.375
    # t=2: b = 0.375*0.95 = 0.35625; g = 1, m = 1, v = 1; m_hat = 1/0.75, v_hat = 1/0.4375
    #      step = 0.1 * (4/3) / sqrt(16/7) = 0.0881917104 -> b2 = 0.2680582896
    opt = optim.AdamW(betas=(0.5, 0.75), eps=1e-300, weight_decay=0.5)
    assert _run(opt, 1)[0]["b"][0, 0] == pytest.approx(0.375, abs=1e-12)
    assert _run(opt, 2)[0]["b"][0, 0] == pytest.approx(0.35625 - 0.1 * (4 / 3) / math.sqrt(16 / 7), abs=1e-12)
    assert _run(opt, 2)[0]["b"][0, 0] == pytest.approx(0.2680582896, abs=1e-9)


@pytest.mark.parametrize("opt", [
    optim.SGD(momentum=0.9, weight_decay=1e-2),
    optim.SGD(momentum=0.8, weight_decay=0.1, nesterov=True),
    optim.AdamW(weight_decay=1e-2),
    optim.AdamW(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3),
])
def test_inputs_not_mutated_and_replay_is_identical(opt):
    params = _params()
    keep = {k: v.copy() for k, v in params.items()}
    state = opt.init_state(params)
    p1, s1 = opt.step(params, _grads(0), state, lr=0.1)
    p2, s2 = opt.step(params, _grads(0), state, lr=0.1)
    for k in params:
        np.testing.assert_array_equal(params[k], keep[k])
        np.testing.assert_array_equal(p1[k], p2[k])
        assert not np.array_equal(p1[k], params[k])
    assert state["step"] == 0 and s1["step"] == 1


def _torch_run(torch, make, n_steps, lrs):
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in _params().items()}
    opt = make(list(tensors.values()))
    for t in range(n_steps):
        for group in opt.param_groups:
            group["lr"] = lrs[t]
        for k, p in tensors.items():
            p.grad = torch.tensor(_grads(t)[k], dtype=torch.float64)
        opt.step()
    return {k: p.detach().numpy() for k, p in tensors.items()}


@pytest.mark.torch
@pytest.mark.parametrize("ours, theirs", [
    (optim.SGD(momentum=0.9, weight_decay=1e-2),
     lambda torch, p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2)),
    (optim.SGD(momentum=0.7, weight_decay=0.2, nesterov=True),
     lambda torch, p: torch.optim.SGD(p, lr=0.1, momentum=0.7, weight_decay=0.2, nesterov=True)),
    (optim.SGD(),
     lambda torch, p: torch.optim.SGD(p, lr=0.1)),
    (optim.AdamW(),
     lambda torch, p: torch.optim.AdamW(p, lr=0.1)),
    (optim.AdamW(betas=(0.8, 0.95), eps=1e-4, weight_decay=0.3),
     lambda torch, p: torch.optim.AdamW(p, lr=0.1, betas=(0.8, 0.95), eps=1e-4, weight_decay=0.3)),
])
def test_equals_torch_optim_over_several_steps(torch, ours, theirs):
    lrs = [optim.cosine_lr(t, base_lr=0.1, total_steps=8, warmup_steps=2) for t in range(7)]
    lrs[0] = 0.05  # keep the first step non-trivial
    want = _torch_run(torch, lambda p: theirs(torch, p), 7, lrs)
    got, _ = _run(ours, 7, lrs)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("opt", [optim.AdamW(), optim.SGD(momentum=0.9, weight_decay=0.1, nesterov=True)])
def test_runs_on_every_backend(xpd, opt):
    host, _ = _run(opt, 3)
    params = {k: xpd.put(v) for k, v in _params().items()}
    state = opt.init_state(params)
    for t in range(3):
        params, state = opt.step(params, {k: xpd.put(v) for k, v in _grads(t).items()}, state, lr=0.1)
    for k in host:
        assert backend.device(params[k]) == backend.device(xpd.put(host[k]))
        np.testing.assert_allclose(backend.to_numpy(params[k]), host[k], rtol=0, atol=1e-15)


def test_bad_arguments_are_named():
    opt = optim.SGD(momentum=0.9)
    params = _params()
    with pytest.raises(ValueError, match="grads must have the keys of params"):
        opt.step(params, {"w": params["w"]}, opt.init_state(params), lr=0.1)
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape"):
        opt.step(params, {"w": np.zeros(3), "b": params["b"]}, opt.init_state(params), lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.step(params, _grads(0), opt.init_state(params), lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.AdamW(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.cosine_lr(0, base_lr=1.0, total_steps=3, warmup_steps=3)


@given(total=st.integers(1, 50), warm_frac=st.floats(0, 0.9), base=st.floats(1e-5, 1.0),
       min_frac=st.floats(0, 1))
def test_cosine_schedule_shape(total, warm_frac, base, min_frac):
    warmup = int(warm_frac * total)
    min_lr = min_frac * base
    lrs = [optim.cosine_lr(s, base_lr=base, total_steps=total, warmup_steps=warmup, min_lr=min_lr)
           for s in range(total + 3)]
    assert lrs[warmup] == pytest.approx(base)
    assert all(a <= b + 1e-15 for a, b in zip(lrs[:warmup], lrs[1:warmup + 1]))  # warm-up rises
    assert all(a >= b - 1e-15 for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # decay falls
    assert lrs[total:] == [pytest.approx(min_lr)] * 3


@pytest.mark.torch
def test_cosine_equals_torch_cosine_annealing(torch):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01)
    for s in range(11):
        assert optim.cosine_lr(s, base_lr=0.3, total_steps=10, min_lr=0.01) == pytest.approx(
            sched.get_last_lr()[0], abs=1e-12)
        opt.step()
        sched.step()


@pytest.mark.parametrize("opt", [optim.SGD(momentum=0.9, weight_decay=0.1, nesterov=True), optim.AdamW(),
                                 optim.AdamW(betas=(0.8, 0.95), weight_decay=0.3)])
def test_lr_and_step_count_as_device_arrays_equal_the_numbers(xpd, opt):
    """What a captured CUDA graph step passes: lr a 0-d array, the step count a 0-d integer array."""
    lrs = [optim.cosine_lr(t, base_lr=0.1, total_steps=5) for t in range(4)]
    host, host_state = _run(opt, 4, lrs)
    params = {k: xpd.put(v) for k, v in _params().items()}
    state = optim.device_state(opt.init_state(params), like=params["w"])
    for t in range(4):
        grads = {k: xpd.put(v) for k, v in _grads(t).items()}
        params, state = opt.step(params, grads, state, lr=xpd.put(np.asarray(lrs[t])))
    assert int(backend.to_numpy(state["step"])) == host_state["step"] == 4
    for k in host:
        np.testing.assert_allclose(backend.to_numpy(params[k]), host[k], rtol=1e-14, atol=1e-15)


def test_an_lr_array_must_be_0d_of_the_parameters_dtype():
    opt = optim.SGD(momentum=0.9)
    params = _params()
    state = opt.init_state(params)
    with pytest.raises(ValueError, match=r"lr must be a number or a 0-d array, got an array of shape \(1,\)"):
        opt.step(params, _grads(0), state, lr=np.array([0.1]))
    with pytest.raises(TypeError, match=r"lr has dtype float32, expected the parameters' dtype \(float64\)"):
        opt.step(params, _grads(0), state, lr=np.asarray(0.1, dtype=np.float32))
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="put lr where they are"):
        opt.step(params, _grads(0), state, lr=strict.asarray(0.1, dtype=strict.float64))
    with pytest.raises(TypeError, match=r"state\['step'\] must be an int or a 0-d integer array"):
        optim.AdamW().step(params, _grads(0), {**optim.AdamW().init_state(params), "step": np.zeros(2, dtype=int)},
                           lr=0.1)
    with pytest.raises(TypeError, match="lr must be a real number"):
        opt.step(params, _grads(0), state, lr="0.1")
    assert opt.step(params, _grads(0), state, lr=np.float64(0.1))[1]["step"] == 1  # NumPy scalars are numbers
