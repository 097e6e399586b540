"""data_synth: the generating structure holds over seeds and sizes (hypothesis).

Latent factors are checked to be ordered by the label; measurable image
statistics (computed from the pixels only) are checked to follow the label,
with everything else held fixed by reusing the seed (a generator consumes the
same random numbers whatever the class weights or the target mean).
"""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.ndimage import uniform_filter
from scipy.stats import skew, spearmanr

from data_synth import continuous_target, ordinal_severity, volumes
from data_synth.volumes import CENTRES

seeds = st.integers(0, 2**32 - 1)
sizes = st.sampled_from([32, 48, 64])
#: For tests that draw thousands of images or compare whole data sets: fewer examples.
heavy = settings(max_examples=8)


def _strictly_ordered(factor, label):
    """Every value at label k is below every value at label k + 1 (labels present)."""
    present = np.unique(label)
    lows = np.array([factor[label == k].min() for k in present])
    highs = np.array([factor[label == k].max() for k in present])
    return bool(np.all(highs[:-1] < lows[1:]))


def _bright_area(images):
    """Fraction of the central disc of the image brighter than the image median + 0.08."""
    x = images[:, 0].astype(np.float64)
    size = x.shape[-1]
    c = (np.arange(size) + 0.5) / size * 2 - 1
    central = np.hypot(c[:, None], c[None, :]) < 0.5
    return ((x > np.median(x, axis=(1, 2), keepdims=True) + 0.08) & central).mean(axis=(1, 2))


def _bone_contrast(images):
    """90th minus 50th intensity percentile: dense trabeculae make bright bone brighter."""
    q = np.quantile(images[:, 0].reshape(len(images), -1), [0.5, 0.9], axis=1)
    return q[1] - q[0]


def _contour_roughness(images):
    """Boundary pixels / sqrt(area) of the liver-intensity mask (after a 3x3 mean)."""
    x = uniform_filter(images[:, 0].astype(np.float64), size=(1, 3, 3))
    m = (x > 0.39) & (x < 0.56)
    interior = m & np.roll(m, 1, 1) & np.roll(m, -1, 1) & np.roll(m, 1, 2) & np.roll(m, -1, 2)
    return (m & ~interior).sum(axis=(1, 2)) / np.sqrt(m.sum(axis=(1, 2)) + 1)


# --- ordinal_severity ---------------------------------------------------------------------

@given(seed=seeds, size=st.sampled_from([16, 32, 64]), levels=st.integers(2, 7))
@example(seed=0, size=16, levels=2)
def test_ordinal_latent_factors_strictly_ordered_by_severity(seed, size, levels):
    d = ordinal_severity(40, levels=levels, size=size, seed=seed)
    assert set(np.unique(d.severity)) <= set(range(levels))
    assert np.all(np.abs(d.latent - d.severity) < 0.5)
    for factor in (d.latent, d.lesion_radius, d.margin_blur, d.texture):
        assert _strictly_ordered(factor, d.severity)


@heavy
@given(seed=seeds, size=sizes)
def test_ordinal_bright_area_grows_with_severity_all_else_equal(seed, size):
    levels = 6
    area = [_bright_area(ordinal_severity(30, size=size, seed=seed, class_weights=np.eye(levels)[k]).images)
            .mean() for k in range(levels)]
    assert np.all(np.diff(area) > 0), np.round(area, 3)


@heavy
@given(seed=seeds, weights=st.lists(st.integers(1, 5), min_size=2, max_size=6))
def test_ordinal_class_balance_as_configured(seed, weights):
    n = 2000
    d = ordinal_severity(n, levels=len(weights), size=16, seed=seed, class_weights=weights)
    p = np.asarray(weights) / sum(weights)
    counts = np.bincount(d.severity, minlength=len(p))
    assert np.all(np.abs(counts - n * p) < 5 * np.sqrt(n * p * (1 - p)) + 1), (counts, n * p)


@given(seed=seeds, n=st.integers(5, 60), subjects=st.integers(1, 5))
def test_ordinal_subject_structure(seed, n, subjects):
    d = ordinal_severity(n, size=16, subjects=subjects, seed=seed, subject_correlation=1.0)
    assert np.array_equal(np.unique(d.subject), np.arange(subjects))   # each subject has images
    for s in range(subjects):                                            # rho = 1: one grade each
        assert len(np.unique(d.severity[d.subject == s])) == 1
    default = ordinal_severity(n, size=16, seed=seed)
    assert default.subject.max() + 1 == max(1, n // 3)


# --- continuous_target -------------------------------------------------------------------

@given(seed=seeds, size=st.sampled_from([16, 32, 64]), resolution=st.sampled_from([0.0, 0.001, 0.05]))
@example(seed=0, size=16, resolution=0.05)
def test_continuous_density_monotone_in_target(seed, size, resolution):
    d = continuous_target(60, size=size, seed=seed, resolution=resolution)
    i, j = np.triu_indices(len(d.target), 1)
    higher = d.target[i] < d.target[j]
    assert np.all(d.density[i][higher] < d.density[j][higher])
    assert np.all((d.density > 0) & (d.density < 1))
    for s in np.unique(d.subject):                                       # films share the reading
        assert len(np.unique(d.target[d.subject == s])) == 1
    if resolution > 0:
        np.testing.assert_allclose(d.target / resolution, np.round(d.target / resolution), atol=1e-6)


@heavy
@given(seed=seeds, size=sizes)
def test_continuous_image_statistic_follows_target(seed, size):
    base = continuous_target(100, size=size, seed=seed)
    assert spearmanr(_bone_contrast(base.images), base.target)[0] > 0.45
    denser = continuous_target(100, size=size, seed=seed, mean=0.80)     # same films, +0.1 g/cm^2
    assert np.all(denser.density > base.density)
    assert np.mean(_bone_contrast(denser.images) > _bone_contrast(base.images)) > 0.8


@heavy
@given(seed=seeds, skewness=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_continuous_target_distribution_as_configured(seed, skewness):
    d = continuous_target(3000, size=16, seed=seed, subjects=3000, skewness=skewness, resolution=0)
    assert abs(d.target.mean() - 0.70) < 0.015 and abs(d.target.std() - 0.13) < 0.015
    assert abs(skew(d.target) - skewness) < 0.35 + 0.3 * skewness
    coarse = continuous_target(300, size=16, seed=seed, subjects=300, resolution=0.05)
    assert len(np.unique(coarse.target)) < 40                            # coarse rounding: ties


# --- volumes --------------------------------------------------------------------------------

@given(seed=seeds, n_patients=st.integers(1, 6), lo=st.integers(1, 12), extra=st.integers(0, 10))
@example(seed=0, n_patients=1, lo=1, extra=0)
def test_volume_depth_in_unit_interval_and_increasing(seed, n_patients, lo, extra):
    v = volumes(n_patients, slices=(lo, lo + extra), size=16, seed=seed)
    assert np.array_equal(np.unique(v.patient), np.arange(n_patients))
    assert np.all((v.depth >= 0) & (v.depth < 1))
    for p in range(n_patients):
        rows = v.patient == p
        k = rows.sum()
        assert lo <= k <= lo + extra
        np.testing.assert_allclose(v.depth[rows], np.arange(k) / k)     # k / n_slices, as WSP
        for label in (v.weak_label, v.strong_label, v.stage, v.irregularity):
            assert len(np.unique(label[rows])) == 1                     # per-patient labels


@given(seed=seeds, stages=st.integers(2, 6))
def test_volume_irregularity_strictly_ordered_by_stage(seed, stages):
    v = volumes(30, slices=(1, 1), size=16, stages=stages, seed=seed, stage_weights=np.ones(stages))
    assert _strictly_ordered(v.irregularity, v.stage)


@heavy
@given(seed=seeds, size=sizes)
def test_volume_contour_roughness_grows_with_stage_all_else_equal(seed, size):
    rough = [_contour_roughness(volumes(3, slices=(10, 20), size=size, seed=seed,
                                       stage_weights=np.eye(4)[k]).images) for k in range(4)]
    assert np.all(np.diff([r.mean() for r in rough]) > 0)
    assert np.mean(rough[3] > rough[0]) > 0.6


@heavy
@given(seed=seeds, noise=st.sampled_from([0.0, 0.1, 0.2, 0.5]), stages=st.integers(2, 5))
@example(seed=0, noise=1.0, stages=2)
def test_volume_weak_label_noise_rate_as_configured(seed, noise, stages):
    p = 3000
    v = volumes(p, slices=(1, 1), size=16, stages=stages, seed=seed, label_noise=noise,
                stage_weights=np.ones(stages))
    wrong = v.weak_label != v.stage
    assert abs(wrong.mean() - noise) < 5 * np.sqrt(noise * (1 - noise) / p) + 1e-9
    assert np.all(np.abs(v.weak_label - v.stage)[wrong] == 1)           # adjacent stages only
    assert v.weak_label.min() >= 0 and v.weak_label.max() < stages


@heavy
@given(seed=seeds, fraction=st.sampled_from([0.0, 0.05, 0.3, 1.0]))
def test_volume_stage_balance_and_scarce_strong_labels(seed, fraction):
    p = 2000
    v = volumes(p, slices=(1, 1), size=16, seed=seed, strong_fraction=fraction)
    w = np.array([1880, 385, 415, 119]) / 2799                          # WSP D_radio default
    counts = np.bincount(v.stage, minlength=4)
    assert np.all(np.abs(counts - p * w) < 5 * np.sqrt(p * w * (1 - w)) + 1)
    known = v.strong_label >= 0
    assert known.sum() == max(1, round(fraction * p))
    np.testing.assert_array_equal(v.strong_label[known], v.stage[known] >= 2)
    assert set(np.unique(v.strong_label)) <= {-1, 0, 1}


# --- reader grading (ordinal) and global signs (volumes) -------------------------------------

@heavy
@given(seed=seeds, low=st.sampled_from([0.1, 0.2]), high=st.sampled_from([0.3, 0.6]))
@example(seed=0, low=0.1, high=0.3)
def test_ordinal_grading_noise_only_changes_the_recorded_grade(seed, low, high):
    exact, a, b = (ordinal_severity(300, size=16, seed=seed, grading_noise=g) for g in (0.0, low, high))
    np.testing.assert_array_equal(exact.grade, exact.severity)
    for d in (a, b):                                                     # same images and latents
        np.testing.assert_array_equal(d.images, exact.images)
        np.testing.assert_array_equal(d.severity, exact.severity)
    wrong_a, wrong_b = a.grade != a.severity, b.grade != b.severity
    assert np.all(wrong_b[wrong_a])                                      # a larger error misgrades a superset
    assert np.all(np.abs(a.grade - a.severity) <= 1)                     # small errors: neighbours only


@pytest.mark.parametrize("seed", [0, 1])
def test_ordinal_misgrading_concentrates_near_level_boundaries(seed):
    d = ordinal_severity(4000, size=16, seed=seed, grading_noise=0.3)
    offset = np.abs(d.latent - d.severity)
    wrong = d.grade != d.severity
    assert wrong[offset > 0.25].mean() > 2 * wrong[offset < 0.1].mean()


@heavy
@given(seed=seeds)
def test_volume_global_signs_zero_leaves_only_the_contour(seed):
    def stage_gap(global_signs):
        low, high = (volumes(2, slices=(6, 6), size=32, seed=seed, stage_weights=np.eye(4)[k], label_noise=0,
                             global_signs=global_signs).images for k in (0, 3))
        return np.abs(high - low).mean()
    assert stage_gap(0.0) < 0.5 * stage_gap(1.0)
    default, explicit = (volumes(2, slices=(3, 3), size=16, seed=seed, **kw).images
                         for kw in ({}, {"global_signs": 1.0, "size_variation": 0.1}))
    np.testing.assert_array_equal(default, explicit)


@heavy
@given(seed=seeds)
def test_volume_centres_image_the_same_patients(seed):
    """One seed: the same patients, labels and slices at either centre; the reference centre is the
    default bit for bit; the other centre's images differ as its acquisition says."""
    kw = dict(slices=(4, 6), size=32, seed=seed)
    default, radio, histo = volumes(6, **kw), volumes(6, **kw, **CENTRES["radio"]), volumes(6, **kw, **CENTRES["histo"])
    np.testing.assert_array_equal(default.images, radio.images)
    for field in ("patient", "depth", "weak_label", "strong_label", "stage", "irregularity"):
        np.testing.assert_array_equal(getattr(radio, field), getattr(histo, field))
    assert not np.array_equal(radio.images, histo.images)


@heavy
@given(seed=seeds)
def test_volume_acquisition_properties_act_as_named(seed):
    def img(**kw):
        return volumes(3, slices=(6, 6), size=32, seed=seed, noise=0.0, **kw).images[:, 0].astype(np.float64)

    ref = img()
    liver = np.abs(ref - 0.47) < 0.08                                   # liver-like pixels of the reference
    assert (img(enhancement_shift=0.05) - ref)[liver].mean() > 0.03      # the liver brighter
    assert img(contrast=0.8).std() < ref.std()                          # tissues closer together
    rough = lambda x: np.abs(np.diff(x, axis=-1)).mean()                 # noqa: E731
    assert rough(img(blur=1.0)) < rough(ref)                            # edges softened
    assert (img(pixel_spacing=1.3) < 0.01).mean() > (ref < 0.01).mean()  # the body smaller: more air around
    noisy = volumes(3, slices=(6, 6), size=32, seed=seed, noise=0.05).images[:, 0]
    assert rough(noisy) > rough(ref)
