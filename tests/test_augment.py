"""Tests of refimpl.augment: ranges, identities, determinism, backends, naive oracles."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import backend
from refimpl.augment import (PRESETS, AugmentPreset, augment_view, bias_field, color_jitter, gaussian_blur,
                             gaussian_noise, get_preset, multi_crop, random_flip, random_resized_crop,
                             random_rotation, two_views)
from refimpl.augment import _sampling


def images(n=3, c=2, h=9, w=7, seed=0):
    x = np.random.default_rng(seed).uniform(0.0, 1.0, (n, c, h, w))
    x[0, 0, 0, 0], x[-1, -1, -1, -1] = 0.0, 1.0  # the range ends
    return x


# Each transform at strength 0, and at a strength that changes the images.
IDENTITY = {
    "crop": lambda x, r: random_resized_crop(x, r, size=x.shape[2:], scale=(1.0, 1.0), ratio=(1.0, 1.0)),
    "hflip": lambda x, r: random_flip(x, r, p=0.0),
    "vflip": lambda x, r: random_flip(x, r, p=0.0, axis="vertical"),
    "rotation": lambda x, r: random_rotation(x, r, degrees=0.0),
    "jitter": lambda x, r: color_jitter(x, r, brightness=0.0, contrast=0.0),
    "blur": lambda x, r: gaussian_blur(x, r, sigma=(0.0, 0.0)),
    "noise": lambda x, r: gaussian_noise(x, r, std=0.0),
    "bias": lambda x, r: bias_field(x, r, scale=0.0),
}
ACTIVE = {
    "crop": lambda x, r: random_resized_crop(x, r, size=(5, 6), scale=(0.05, 0.6)),
    "hflip": lambda x, r: random_flip(x, r, p=0.5),
    "vflip": lambda x, r: random_flip(x, r, p=0.5, axis="vertical"),
    "rotation": lambda x, r: random_rotation(x, r, degrees=15.0),
    "jitter": lambda x, r: color_jitter(x, r, brightness=0.8, contrast=0.8),
    "blur": lambda x, r: gaussian_blur(x, r, sigma=(0.1, 2.0)),
    "noise": lambda x, r: gaussian_noise(x, r, std=0.5),
    "bias": lambda x, r: bias_field(x, r, scale=0.5),
    "strong": lambda x, r: augment_view(x, "strong", r, size=(6, 6)),
    "weak": lambda x, r: augment_view(x, "weak", r, size=(6, 6), local=True),
    "weak+med": lambda x, r: augment_view(x, "weak+med", r, size=(6, 6)),
}


def square(n=3, c=2, side=8, seed=0):
    return images(n, c, side, side, seed)


# ------------------------------------------------------------------ naive oracles

def bilinear_naive(img, y, x):
    """Bilinear read of one (H, W) plane at (y, x), border replicated."""
    h, w = img.shape
    y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
    y0, x0 = math.floor(y), math.floor(x)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    fy, fx = y - y0, x - x0
    return ((1 - fy) * (1 - fx) * img[y0, x0] + (1 - fy) * fx * img[y0, x1]
            + fy * (1 - fx) * img[y1, x0] + fy * fx * img[y1, x1])


def crop_naive(x, boxes, size):
    n, c, _, _ = x.shape
    out = np.empty((n, c) + size)
    for b in range(n):
        top, left, bh, bw = boxes[b]
        for i in range(size[0]):
            for j in range(size[1]):
                y = top + (i + 0.5) * bh / size[0] - 0.5
                xx = left + (j + 0.5) * bw / size[1] - 0.5
                for ch in range(c):
                    out[b, ch, i, j] = bilinear_naive(x[b, ch], y, xx)
    return out


def rotate_naive(x, theta):
    n, c, h, w = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    out = np.empty_like(x)
    for b in range(n):
        cos, sin = math.cos(theta[b]), math.sin(theta[b])
        for i in range(h):
            for j in range(w):
                y = cy + cos * (i - cy) - sin * (j - cx)
                xx = cx + sin * (i - cy) + cos * (j - cx)
                for ch in range(c):
                    out[b, ch, i, j] = bilinear_naive(x[b, ch], y, xx)
    return out


def blur_naive(x, sigma):
    radius = math.ceil(3 * sigma)
    g = [math.exp(-d * d / (2 * sigma * sigma)) for d in range(-radius, radius + 1)]
    g = [v / sum(g) for v in g]
    n, c, h, w = x.shape
    rows = np.zeros_like(x)
    for i in range(h):
        for k, d in enumerate(range(-radius, radius + 1)):
            rows[:, :, i, :] += g[k] * x[:, :, min(max(i + d, 0), h - 1), :]
    out = np.zeros_like(x)
    for j in range(w):
        for k, d in enumerate(range(-radius, radius + 1)):
            out[:, :, :, j] += g[k] * rows[:, :, :, min(max(j + d, 0), w - 1)]
    return out


def legendre(k, t):
    return [1.0, t, (3 * t * t - 1) / 2, (5 * t ** 3 - 3 * t) / 2][k]


# ------------------------------------------------------------------ crops

@given(
    lo=st.floats(0.01, 1.0), width=st.floats(0.0, 1.0), log_ratio=st.floats(-1.5, 1.5),
    ratio_width=st.floats(0.0, 1.5), h=st.integers(2, 12), w=st.integers(2, 12), seed=st.integers(0, 2**16),
)
@example(lo=1.0, width=0.0, log_ratio=1.5, ratio_width=1.5, h=2, w=12, seed=0)  # ratio never fits: fallback
def test_crop_boxes_have_scale_in_range_and_lie_inside(lo, width, log_ratio, ratio_width, h, w, seed):
    hi = lo + (1.0 - lo) * width
    ratio = (math.exp(log_ratio), math.exp(log_ratio + ratio_width))
    x = images(4, 1, h, w)
    _, boxes = random_resized_crop(x, seed, size=3, scale=(lo, hi), ratio=ratio, return_boxes=True)
    top, left, bh, bw = boxes.T
    area = bh * bw / (h * w)
    assert np.all(area >= lo * (1 - 1e-12)) and np.all(area <= hi * (1 + 1e-12))
    assert np.all(top >= 0) and np.all(left >= 0)
    assert np.all(top + bh <= h * (1 + 1e-12)) and np.all(left + bw <= w * (1 + 1e-12))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_crop_scales_are_respected(name):
    pre, x = PRESETS[name], images(64, 1, 16, 16)
    for scale in (pre.global_scale, pre.local_scale):
        _, boxes = random_resized_crop(x, 1, size=6, scale=scale, ratio=pre.ratio, return_boxes=True)
        area = boxes[:, 2] * boxes[:, 3] / 256
        assert area.min() >= scale[0] * (1 - 1e-12) and area.max() <= scale[1] * (1 + 1e-12)
        assert area.max() - area.min() > 0.5 * (scale[1] - scale[0])  # the range is explored


def test_crop_equals_naive_bilinear_loop():
    x = images(3, 2, 9, 7)
    out, boxes = random_resized_crop(x, 5, size=(4, 6), scale=(0.1, 0.9), return_boxes=True)
    np.testing.assert_allclose(out, crop_naive(x, boxes, (4, 6)), rtol=0, atol=1e-13)


def test_crop_upsampling_a_constant_box_is_constant():
    x = np.full((2, 1, 5, 5), 0.3)
    out = random_resized_crop(x, 0, size=11, scale=(0.05, 0.1))
    np.testing.assert_allclose(out, 0.3, atol=1e-15)


# ------------------------------------------------------------------ rotation, blur, intensities

def test_rotation_equals_naive_loop():
    x, theta = images(3, 2, 7, 6), np.array([0.2, -0.15, 0.05])
    np.testing.assert_allclose(_sampling.rotate_bilinear(x, theta), rotate_naive(x, theta), atol=1e-13)


def test_rotation_by_a_quarter_turn_is_rot90_clockwise():
    x = square(2, 1, 5)
    out = _sampling.rotate_bilinear(x, np.full(2, math.pi / 2))
    np.testing.assert_allclose(out, np.rot90(x, k=-1, axes=(2, 3)), atol=1e-12)


def test_rotation_angles_are_uniform_draws_within_degrees():
    x = images(4, 1, 9, 9)
    theta = np.radians(np.random.default_rng(6).uniform(-5.0, 5.0, 4))  # the transform's only draw
    np.testing.assert_allclose(random_rotation(x, 6, degrees=5.0), rotate_naive(x, theta), atol=1e-13)


@pytest.mark.parametrize("sigma", [0.4, 1.0, 1.7])
def test_blur_equals_naive_separable_loop(sigma):
    x = images(2, 2, 9, 7)
    np.testing.assert_allclose(gaussian_blur(x, 0, sigma=(sigma, sigma)), blur_naive(x, sigma), atol=1e-13)


def test_blur_preserves_constant_images_and_smooths():
    x = np.full((1, 1, 6, 6), 0.7)
    np.testing.assert_allclose(gaussian_blur(x, 0, sigma=(1.5, 1.5)), 0.7, atol=1e-15)
    y = images(1, 1, 12, 12)
    assert gaussian_blur(y, 0, sigma=(1.5, 1.5)).std() < 0.6 * y.std()


def test_intensity_transforms_equal_their_equations():
    x, n = images(4, 2, 5, 6), 4
    gen = np.random.default_rng(3)  # draw order: beta, gamma, applied
    beta, gamma = gen.uniform(0.6, 1.4, n), gen.uniform(0.6, 1.4, n)
    on = gen.uniform(0, 1, n) < 0.8
    beta, gamma = np.where(on, beta, 1.0), np.where(on, gamma, 1.0)
    want = np.empty_like(x)
    for b in range(n):
        y = np.clip(beta[b] * x[b], 0, 1)
        want[b] = np.clip(gamma[b] * y + (1 - gamma[b]) * y.mean(), 0, 1)
    np.testing.assert_allclose(color_jitter(x, 3, brightness=0.4, contrast=0.4, p=0.8), want, atol=1e-15)

    gen = np.random.default_rng(4)  # level, applied, z
    level = gen.uniform(0, 0.2, n) * (gen.uniform(0, 1, n) < 1.0)
    z = gen.standard_normal(x.shape)
    want = np.clip(x + level[:, None, None, None] * z, 0, 1)
    np.testing.assert_allclose(gaussian_noise(x, 4, std=0.2), want, atol=1e-15)

    gen = np.random.default_rng(5)  # coefficients (i, j) with i + j <= 3, applied
    terms = [(i, j) for i in range(4) for j in range(4 - i)]
    coef = gen.uniform(-0.3, 0.3, (n, len(terms)))
    want = np.empty_like(x)
    for b in range(n):
        for r in range(5):
            for s in range(6):
                v, u = (2 * r + 1) / 5 - 1, (2 * s + 1) / 6 - 1
                log = sum(c * legendre(i, v) * legendre(j, u) for c, (i, j) in zip(coef[b], terms))
                want[b, :, r, s] = np.clip(x[b, :, r, s] * math.exp(log), 0, 1)
    np.testing.assert_allclose(bias_field(x, 5, scale=0.3), want, rtol=1e-13)


def test_bias_field_is_smooth_and_multiplicative():
    x = np.full((3, 1, 16, 16), 0.5)
    out = bias_field(x, 0, scale=0.1)
    log_field = np.log(out / x)  # a cubic in each coordinate: fourth differences vanish
    assert np.abs(np.diff(log_field, n=4, axis=3)).max() < 1e-12
    assert np.abs(np.diff(log_field, n=4, axis=2)).max() < 1e-12
    assert np.abs(log_field).max() < 1.0 and out.std() > 0.005


# ------------------------------------------------------------------ properties of every transform

@pytest.mark.parametrize("name", sorted(IDENTITY))
def test_zero_strength_is_exactly_the_identity(xpd, name):
    x = xpd.put(square())
    out = IDENTITY[name](x, 0)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.array_equal(backend.to_numpy(out), square())


@pytest.mark.parametrize("name", ["hflip", "vflip", "jitter", "blur", "noise", "bias"])
def test_probability_zero_is_the_identity(name):
    x, calls = images(), {
        "hflip": lambda x: random_flip(x, 0, p=0.0), "vflip": lambda x: random_flip(x, 0, p=0.0, axis="vertical"),
        "jitter": lambda x: color_jitter(x, 0, p=0.0), "blur": lambda x: gaussian_blur(x, 0, p=0.0),
        "noise": lambda x: gaussian_noise(x, 0, p=0.0), "bias": lambda x: bias_field(x, 0, p=0.0),
    }
    assert np.array_equal(calls[name](x), x)


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_backends_agree_with_numpy(xpd, name):
    want = ACTIVE[name](images(), 11)
    got = backend.to_numpy(ACTIVE[name](xpd.put(images()), 11))
    if xpd.name == "cupy":  # other kernels: rounding may differ
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    else:  # the same host draws and the same arithmetic
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_determinism_range_and_no_mutation(name):
    x = images()
    before = x.copy()
    a, b, c = ACTIVE[name](x, 7), ACTIVE[name](x, 7), ACTIVE[name](x, 8)
    assert np.array_equal(x, before)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.isfinite(a)) and a.min() >= 0.0 and a.max() <= 1.0


@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(ACTIVE)), fill=st.sampled_from([None, 0.0, 1.0]))
def test_outputs_stay_finite_and_in_range(seed, name, fill):
    x = images(2, 1, 8, 8, seed=seed % 1000)
    if fill is not None:
        x[:] = fill
    out = ACTIVE[name](x, seed)
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0


def test_float32_stays_float32_and_close_to_float64():
    x = images()
    out32 = ACTIVE["weak+med"](x.astype(np.float32), 2)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ACTIVE["weak+med"](x, 2), atol=1e-5)


@pytest.mark.parametrize("axis", ["horizontal", "vertical"])
def test_flips_are_involutions(xpd, axis):
    x = xpd.put(images())
    once = random_flip(x, 0, p=1.0, axis=axis)
    assert not np.array_equal(backend.to_numpy(once), images())
    assert np.array_equal(backend.to_numpy(random_flip(once, 0, p=1.0, axis=axis)), images())
    # a random mask drawn twice from the same seed undoes itself too
    assert np.array_equal(backend.to_numpy(random_flip(random_flip(x, 4, axis=axis), 4, axis=axis)), images())


def test_a_generator_advances_between_calls():
    gen = np.random.default_rng(0)
    x = images()
    assert not np.array_equal(random_rotation(x, gen, degrees=10), random_rotation(x, gen, degrees=10))


# ------------------------------------------------------------------ presets and views

def test_presets_follow_table_2():
    strong, weak, med = PRESETS["strong"], PRESETS["weak"], PRESETS["weak+med"]
    assert (strong.local_scale, strong.global_scale) == ((0.05, 0.4), (0.4, 1.0))
    assert (weak.local_scale, weak.global_scale) == ((0.2, 0.5), (0.5, 1.0))
    assert (med.local_scale, med.global_scale) == ((0.2, 0.5), (0.5, 1.0))
    assert (strong.brightness, strong.contrast, strong.jitter_p) == (0.4, 0.4, 0.8)  # DINO
    assert weak.brightness < strong.brightness and weak.contrast < strong.contrast
    for pre in (strong, weak):
        assert pre.blur_p == pre.noise_p == pre.bias_p == 0.0
    assert med.blur_p > 0 and med.noise_p * med.noise_std > 0 and med.bias_p * med.bias_scale > 0
    assert dataclasses.replace(med, name="weak", blur_p=0.0, noise_p=0.0, noise_std=0.0, bias_p=0.0,
                               bias_scale=0.0) == weak  # weak+med = weak + medical transforms


def test_presets_are_frozen_and_print_their_parameters():
    text = repr(PRESETS["weak+med"])
    for field in ("global_scale=(0.5, 1.0)", "local_scale=(0.2, 0.5)", "noise_std=0.1", "bias_scale=0.1"):
        assert field in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["strong"].brightness = 0.0
    assert get_preset(PRESETS["weak"]) is PRESETS["weak"]


def test_views_shapes_and_pairing(xpd):
    x = xpd.put(images(4, 1, 14, 14))
    a, b = two_views(x, "strong", 0)
    assert a.shape == b.shape == (4, 1, 14, 14)
    assert not np.array_equal(backend.to_numpy(a), backend.to_numpy(b))
    g, loc = multi_crop(x, "weak", 0, n_local=3)
    assert [v.shape for v in g] == [(4, 1, 14, 14)] * 2
    assert [v.shape for v in loc] == [(4, 1, 6, 6)] * 3
    g, loc = multi_crop(x, "weak", 0, n_local=0, global_size=10, local_size=(4, 5))
    assert g[0].shape == (4, 1, 10, 10) and loc == []


def test_weak_views_are_closer_than_strong_views():
    x = images(32, 1, 16, 16)
    gaps = {}
    for name in ("strong", "weak"):
        a, b = two_views(x, name, 0)
        gaps[name] = np.abs(a - b).mean()
    assert gaps["weak"] < gaps["strong"]


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("call, match", [
    (lambda: random_flip(np.zeros((2, 3, 3)), 0), "x must have 4 dimensions"),
    (lambda: random_flip(np.full((1, 1, 2, 2), 1.5), 0), r"x must hold images with values in \[0, 1\]"),
    (lambda: random_flip(np.zeros((1, 1, 2, 2), dtype=np.int64), 0), "x must have a real floating dtype"),
    (lambda: random_flip(np.zeros((1, 1, 2, 2)), 0, p=1.5), "p must be a probability"),
    (lambda: random_flip(np.zeros((1, 1, 2, 2)), 0, axis="diagonal"), "axis must be one of"),
    (lambda: random_resized_crop(np.zeros((1, 1, 4, 4)), 0, size=2, scale=(0.5, 1.2)), "scale must satisfy"),
    (lambda: random_resized_crop(np.zeros((1, 1, 4, 4)), 0, size=2, scale=(0.0, 0.5)), "scale must satisfy"),
    (lambda: random_resized_crop(np.zeros((1, 1, 4, 4)), 0, size=0), "size must be a positive int"),
    (lambda: random_resized_crop(np.zeros((1, 1, 4, 4)), 0, size=2, ratio=(2.0, 1.0)), "ratio must satisfy"),
    (lambda: random_rotation(np.zeros((1, 1, 4, 4)), 0, degrees=-1), "degrees must be a finite number >= 0"),
    (lambda: gaussian_blur(np.zeros((1, 1, 4, 4)), 0, sigma=1.0), "sigma must be a pair"),
    (lambda: bias_field(np.zeros((1, 1, 4, 4)), 0, degree=-1), "degree must be an int >= 0"),
    (lambda: two_views(np.zeros((1, 1, 4, 4)), "medium", 0), "preset must be an AugmentPreset or one of"),
    (lambda: multi_crop(np.zeros((1, 1, 4, 4)), "weak", 0, n_local=-1), "n_local must be an int >= 0"),
    (lambda: AugmentPreset("bad", global_scale=(0.5, 2.0)), "global_scale must satisfy"),
    (lambda: AugmentPreset("bad", jitter_p=2.0), "jitter_p must be a probability"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
