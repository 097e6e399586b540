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
    vjp = gradcheck.check_vjp(_tanh_affine, _tanh_affine_backward, _inputs(0))
    assert vjp.ok and vjp.resolved and vjp.worst_rel_error < 1e-7, str(vjp)


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
        gradcheck.check_vjp(_tanh_affine, buggy, _inputs(1), n_directions=3).raise_if_failed()


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
    gradcheck.check_vjp(forward, backward, [x]).raise_if_failed()


# ---------------------------------------------------------------- verdicts: zero, 5% wrong, small, float32, kinks


def _zero(dout, cache):
    return tuple(np.zeros_like(g) for g in _tanh_affine_backward(dout, cache))


def _five_percent(dout, cache):
    return tuple(1.05 * g for g in _tanh_affine_backward(dout, cache))


@pytest.mark.parametrize("size", [1.0, 1e-3, 1e-6])
@pytest.mark.parametrize("planted", [_zero, _five_percent])
def test_planted_zero_and_five_percent_backwards_fail_at_every_scale(size, planted):
    """Down to gradients of 1e-7 (a little above the float64 noise floor atol = 1e-8)."""
    def forward(x, w):
        out, cache = _tanh_affine(x, w)
        return size * out, cache

    def correct(dout, cache):
        return _tanh_affine_backward(size * dout, cache)

    def wrong(dout, cache):
        return planted(size * dout, cache)

    inputs = _inputs(4)
    assert gradcheck.check_gradients(forward, correct, inputs).ok
    assert gradcheck.check_vjp(forward, correct, inputs).ok
    report = gradcheck.check_gradients(forward, wrong, inputs)
    assert not report.ok and not report.inputs[0].ok and not report.inputs[1].ok, str(report)
    vjp = gradcheck.check_vjp(forward, wrong, inputs)
    assert not vjp.ok and all(not d.ok for d in vjp.directions), str(vjp)
    with pytest.raises(AssertionError, match="VJP check failed"):
        vjp.raise_if_failed()


def test_a_zero_gradient_is_passed_and_said_to_be_unresolved():
    def forward(x):
        return 1e-12 * np.sum(x), None  # a true gradient of 1e-12: below any float64 difference's noise

    def backward(dout, cache):
        return (np.zeros(3),)

    report = gradcheck.check_gradients(forward, backward, [np.ones(3)])
    assert report.ok and not report.inputs[0].resolved
    assert "cannot tell it from zero" in str(report)
    assert not gradcheck.check_vjp(forward, backward, [np.ones(3)]).resolved


@pytest.mark.parametrize("check", [gradcheck.check_gradients, gradcheck.check_vjp])
def test_float32_is_refused_with_the_reason_and_the_way_to_check_it(check):
    inputs = [a.astype(np.float32) for a in _inputs(0)]
    with pytest.raises(TypeError, match=r"inputs\[0\] has dtype float32: gradient checks need float64") as info:
        check(_tanh_affine, _tanh_affine_backward, inputs)
    assert "float64 inputs here" in str(info.value) and "rounding error" in str(info.value)


def _relu(x):
    return np.maximum(x, 0.0), x > 0


def _relu_backward(dout, positive):
    return (dout * positive,)


def test_kink_adjacent_entries_are_reported_as_such_not_as_mismatches():
    x = np.array([1.0, 3e-9, -2.0])  # the middle entry lies within the smallest step (1e-8) of the kink
    report = gradcheck.check_gradients(_relu, _relu_backward, [x], dout=np.ones(3))
    assert report.ok, str(report)
    assert [e.index for e in report.inputs[0].kinks] == [(1,)]
    assert (1,) not in [e.index for e in report.inputs[0].worst]
    assert "next to a kink" in str(report)
    vjp = gradcheck.check_vjp(_relu, _relu_backward, [np.array([1e-9])])  # every direction crosses it
    assert vjp.ok and vjp.directions[0].kink, str(vjp)


def test_a_wrong_value_next_to_a_kink_is_still_a_mismatch():
    def wrong(dout, positive):
        return (dout * (positive + 2.0),)  # slope 2 or 3: outside both one-sided slopes (0 and 1)

    report = gradcheck.check_gradients(_relu, wrong, [np.array([3e-7])], dout=np.ones(1))
    assert not report.ok and not report.inputs[0].kinks


def _smooth_then_kink(a=37.0, curvature=800.0, jump=-1.5, at=2e-7):
    """``a t + curvature t^2 / 2 + jump relu(t - at)`` (summed over entries): the TinyNet draw's
    direction in one variable, a kink ``at`` away on the right, strong curvature on the left."""
    def forward(x):
        return a * x + curvature * x**2 / 2 + jump * np.maximum(x - at, 0.0), x

    def backward(dout, x):
        return (dout * (a + curvature * x + jump * (x > at)),)
    return forward, backward


def test_a_kink_within_the_step_is_stepped_over_and_the_derivative_checked_there():
    """At h = 1e-6 the one-sided slopes are 37 - 4e-4 and 36.4, both below the derivative 37 by more
    than the bound (the draw that the slopes alone once called a mismatch); at h = 1e-7 the kink
    2e-7 away is out of reach and the central difference is the derivative."""
    forward, backward = _smooth_then_kink()
    x = np.zeros(1)
    vjp = gradcheck.check_vjp(forward, backward, [x], n_directions=4)
    assert vjp.ok and vjp.worst_rel_error < 1e-8, str(vjp)
    stepped = [d for d in vjp.directions if d.step < gradcheck.EPS]
    assert stepped and not any(d.kink for d in vjp.directions), str(vjp)
    assert "step 1e-07" in str(vjp)
    report = gradcheck.check_gradients(forward, backward, [x], dout=np.ones(1))
    assert report.ok and not report.inputs[0].kinks, str(report)

    def off_by_a_percent(dout, cache):
        return tuple(1.01 * g for g in backward(dout, cache))
    assert not gradcheck.check_vjp(forward, off_by_a_percent, [x], n_directions=4).ok
    assert not gradcheck.check_gradients(forward, off_by_a_percent, [x], dout=np.ones(1)).ok


def _noisy_zero(x):
    """Exactly 0 in real arithmetic; in float64 rounding noise of about 1e-13 per entry (as an FFT
    convolution whose windows lie in the padding returns noise the size of its inputs' products)."""
    return (x + 1e3) - 1e3 - x, None


def test_rounding_noise_of_f_widens_the_bound_but_not_past_a_real_error():
    x = np.random.default_rng(0).standard_normal(6)
    correct = lambda dout, cache: (np.zeros(6),)  # noqa: E731
    vjp = gradcheck.check_vjp(_noisy_zero, correct, [x], n_directions=4)
    assert vjp.ok, str(vjp)
    looked = [d for d in vjp.directions if d.noise is not None]
    assert looked and all(1e-15 < d.noise < 1e-12 for d in looked), str(vjp)
    assert all(d.bound < 1e-5 for d in vjp.directions)  # noise / h: 1e-7, not more
    assert gradcheck.check_gradients(_noisy_zero, correct, [x]).ok
    wrong = lambda dout, cache: (np.full(6, 1e-4),)  # noqa: E731
    assert not gradcheck.check_vjp(_noisy_zero, wrong, [x], n_directions=4).ok
    assert not gradcheck.check_gradients(_noisy_zero, wrong, [x]).ok


def test_the_noise_estimate_ignores_a_kink_among_its_points():
    slope = lambda t: 2.0 * t + 5.0 * max(t, 0.0)  # noqa: E731  exact, no rounding: noise 0
    assert gradcheck._noise(slope, 1.0) == 0.0
    # the kink between two of the nine points (1e-3 apart) puts 5e-4 into two second differences
    assert gradcheck._noise(lambda t: slope(t - 5e-4), 1.0) < 1e-15
