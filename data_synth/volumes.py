"""Volumes: abdominal CT-like slices of a liver whose contour gets nodular with stage.

Stands in for the data of WSP (Sarfati et al., MICCAI 2023):
D_radio, 2,799 portal-venous CT scans with a radiological (weak) cirrhosis
stage, none / mild / moderate / severe in proportion 1880 / 385 / 415 / 119,
and D_histo, ~100 scans with a histological (strong) METAVIR score binarised
F0-F2 vs F3-F4; 2D slices carry their normalised depth, intensities are
clipped to [-100, 400] HU. Radiologists reach a balanced accuracy of 0.82
against histology, which is the kind of weak-label noise drawn here.
"""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from . import _render as R
from ._checks import check_int, check_range, check_seed, check_weights
from ._sampling import jittered_level

#: Radiological stage proportions of D_radio in WSP (none, mild, moderate, severe).
WSP_STAGE_COUNTS = (1880, 385, 415, 119)

#: Acquisition of two centres, the keywords of :func:`volumes` that describe a scanner and protocol.
#:
#: WSP pretrains on D_radio and probes D_histo^1 and D_histo^2, separate cohorts "collected from various
#: medical centers" (D_histo^2 is the public TCGA-LIHC, itself multi-centre), and names SupCon's failure
#: to generalise from one to the other (Sec. 3, Fig. 2). The paper gives D_radio's sampling (pixels
#: 0.79 +- 0.10 mm, portal-venous phase, intensities clipped to [-100, 400] HU) and nothing of D_histo's,
#: so the D_histo-like centre differs from the D_radio-like one by about one within-centre spread or
#: one common protocol difference in each acquisition property, all in the same run:
#:
#: - resolution: pixels one standard deviation of D_radio's spacing coarser, 0.89 / 0.79 = 1.13 times
#:   (``pixel_spacing``; the anatomy covers 13% fewer pixels), with the wider point spread of the
#:   coarser sampling: a pixel's box of width 1.13 instead of 1 as a Gaussian, sigma
#:   sqrt(1.13^2 - 1) / sqrt(12) = 0.15 pixel (``blur``);
#: - intensity: the liver's portal-venous enhancement shifted by one standard deviation of the
#:   patients' spread within a centre (0.03 of the window, 15 HU: contrast-agent dose and timing
#:   differ between protocols; ``enhancement_shift``);
#: - contrast: the window's contents scaled by 0.9 about its middle (``contrast``; tube voltage
#:   and reconstruction change the HU contrast between tissues by about a tenth);
#: - noise: 1.5 times the pixel noise, 0.045 of the window instead of 0.03 (22 instead of 15 HU;
#:   noise grows as 1 / sqrt(dose), and 1.5 is a protocol at less than half the dose).
#:
#: The disease cue is the same in both (the contour's nodularity, which the paper names): the centres
#: differ in how they image a liver, not in what cirrhosis looks like. Chosen from the text above
#: before any recipe was run with them, not tuned on a result.
CENTRES = {
    "radio": {"noise": 0.03, "pixel_spacing": 1.0, "blur": 0.0, "enhancement_shift": 0.0, "contrast": 1.0},
    "histo": {"noise": 0.045, "pixel_spacing": 1.13, "blur": 0.15, "enhancement_shift": 0.03, "contrast": 0.9},
}


@dataclasses.dataclass(frozen=True)
class VolumeData:
    """2D slices of 3D volumes with depth, weak and strong labels, and latent factors.

    One row per slice, patients contiguous and slices in depth order:
    ``images`` (M, 1, H, W) float32 in [0, 1]; ``patient`` (M,) int;
    ``depth`` (M,) float64, ``k / n_slices`` in [0, 1); ``weak_label`` (M,)
    int in 0..stages-1 (radiological, noisy); ``strong_label`` (M,) int, 1 if
    the true stage is >= ``strong_threshold``, 0 if below, -1 where the
    patient has none (scarce). Latent: ``stage`` (M,) the true stage and
    ``irregularity`` (M,) the contour nodularity, increasing in the stage.
    """

    images: np.ndarray
    patient: np.ndarray
    depth: np.ndarray
    weak_label: np.ndarray
    strong_label: np.ndarray
    stage: np.ndarray
    irregularity: np.ndarray


def volumes(n_patients, *, slices=(20, 60), size=64, stages=4, seed=0, stage_weights=None,
            label_noise=0.2, strong_fraction=0.05, strong_threshold=None, noise=0.03,
            global_signs=1.0, size_variation=0.1, pixel_spacing=1.0, blur=0.0, enhancement_shift=0.0,
            contrast=1.0) -> VolumeData:
    r"""Liver CT-like volumes sliced into 2D images, with depth and weak/strong labels.

    Patient :math:`p` has a true stage :math:`s_p` and a latent
    :math:`t_p = s_p + U(-0.35, 0.35)`, scaled to
    :math:`u_p = (t_p + 0.35) / (S - 0.3)` in [0, 1]; its liver boundary at depth
    :math:`d` and angle :math:`\theta` is

    .. math::

        r(\theta, d) = \rho(d)\,\Big(1 + \sum_k b_k \cos(k\theta + \beta_k)
            + \iota_p \sum_{m} \cos(m\theta + \varphi_m + 6 m d)\Big), \qquad
        \iota_p = 0.006 + 0.03\,u_p,

    where :math:`\rho(d)` is a depth profile (small at the dome and at the
    tip, largest in between), :math:`b_k` (k = 2, 3) the patient's anatomy,
    and the nodularity :math:`\iota_p` (the ``irregularity``) multiplies
    harmonics m = 9..15 whose phases drift with depth. The liver shrinks and
    its texture grows more heterogeneous with stage too (the *global* signs):
    its size is :math:`s_p (1 - 0.15\,g\,v_p)` and the amplitude of its
    texture :math:`0.02 + 0.06\,g\,v_p`, with :math:`v_p = s_p / (S - 1)`,
    :math:`g` = ``global_signs`` and a patient's build :math:`s_p \sim
    U(1 - a, 1 + a)`, :math:`a` = ``size_variation``. With a small
    :math:`g` and a large :math:`a`, the stage hides among the patients'
    anatomies and the contour is the cue that remains (the cue WSP's
    authors name: cirrhosis diagnosis "is notably based on the contours
    irregularity"). Around it: body
    outline with subcutaneous fat, spine, aorta, kidneys in the lower slices.

    Acquisition (the centre that imaged the cohort, ``CENTRES``): the
    anatomy is sampled with pixels ``pixel_spacing`` times the reference
    size, the liver enhanced ``enhancement_shift`` above its patient's draw,
    the canvas scaled by ``contrast`` about 0.5, blurred by a Gaussian of
    ``blur`` pixels, then ``noise`` added. These take no random draws, so
    one seed gives the same patients (stages, labels, anatomy, slice counts)
    under any acquisition: ``volumes(..., **CENTRES["histo"])`` is the
    cohort of ``volumes(..., **CENTRES["radio"])`` imaged by another centre.

    Labels: ``weak_label`` is the true stage moved to a neighbouring stage
    with probability ``label_noise`` (radiologists confuse adjacent stages);
    ``strong_label`` (histology) is known for a random ``strong_fraction`` of
    patients (at least one) and says whether the true stage is >=
    ``strong_threshold``.

    Realistic: depth-dependent cross-sections, surface nodularity as the
    cirrhosis cue (WSP stresses contour irregularity), imbalanced stages,
    adjacent-stage label noise, scarce strong labels, variable slice counts.
    Not realistic: one organ with a star-shaped contour, no other cirrhosis
    signs (caudate hypertrophy, splenomegaly, ascites), strong labels chosen
    at random rather than by who was biopsied, isotropic 2D slices.

    Parameters
    ----------
    n_patients : int
        Number of volumes.
    slices : (int, int)
        Inclusive range of the number of slices per volume.
    size : int
        Slice height and width in pixels (>= 16).
    stages : int
        Number of disease stages (4 in WSP).
    seed : int >= 0 or numpy.random.Generator
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    stage_weights : sequence of float, optional
        Relative frequency of each true stage; default: the D_radio
        proportions when ``stages == 4``, balanced otherwise.
    label_noise : float in [0, 1]
        Probability that a patient's weak label is a neighbouring stage.
    strong_fraction : float in [0, 1]
        Fraction of patients with a strong label (at least one patient).
    strong_threshold : int, optional
        Stages >= this are strong-positive (default ``stages // 2``: F3-F4).
    noise : float >= 0
        Standard deviation of the pixel noise.
    global_signs : float >= 0
        Strength of the stage's effect on liver size and texture (1: as
        drawn by default; 0: only the contour changes with stage).
    size_variation : float in [0, 0.5]
        Half-width of the patients' relative liver size range.
    pixel_spacing : float > 0
        Pixel size relative to the reference acquisition (> 1: coarser, the
        anatomy covers fewer pixels).
    blur : float >= 0
        Standard deviation, in pixels, of the Gaussian point spread.
    enhancement_shift : float
        Added to the liver's mean intensity (portal-venous enhancement).
    contrast : float > 0
        Gain of the canvas about the window's middle, 0.5.

    Returns
    -------
    VolumeData

    Examples
    --------
    >>> v = volumes(3, slices=(4, 6), size=32, seed=0)
    >>> v.images.shape, v.patient.tolist()
    ((15, 1, 32, 32), [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2])
    >>> v.depth[v.patient == 0].tolist()
    [0.0, 0.2, 0.4, 0.6, 0.8]
    >>> w = volumes(3, slices=(4, 6), size=32, seed=0, **CENTRES["histo"])
    >>> bool(np.all(w.stage == v.stage)), bool(np.all(w.images == v.images))
    (True, False)
    """
    n_patients = check_int("n_patients", n_patients, minimum=1)
    if not isinstance(slices, (tuple, list)) or len(slices) != 2:
        raise TypeError(f"slices must be a pair (low, high) of slice counts, got {slices!r}")
    lo, hi = (check_int("slices", s, minimum=1) for s in slices)
    if lo > hi:
        raise ValueError(f"slices must be (low, high) with low <= high, got {tuple(slices)}")
    size = check_int("size", size, minimum=16)
    stages = check_int("stages", stages, minimum=2)
    if stage_weights is None:
        stage_weights = WSP_STAGE_COUNTS if stages == 4 else np.ones(stages)
    weights = check_weights("stage_weights", stage_weights, stages)
    label_noise = check_range("label_noise", label_noise)
    strong_fraction = check_range("strong_fraction", strong_fraction)
    threshold = stages // 2 if strong_threshold is None else strong_threshold
    threshold = check_int("strong_threshold", threshold, minimum=1)
    if threshold >= stages:
        raise ValueError(f"strong_threshold must be < stages ({stages}), got {threshold}")
    noise = check_range("noise", noise, high=np.inf)
    global_signs = check_range("global_signs", global_signs, high=np.inf)
    size_variation = check_range("size_variation", size_variation, high=0.5)
    pixel_spacing, contrast = (check_range(name, value, high=np.inf)
                               for name, value in (("pixel_spacing", pixel_spacing), ("contrast", contrast)))
    if pixel_spacing == 0 or contrast == 0:
        raise ValueError(f"pixel_spacing and contrast must be > 0, got {pixel_spacing} and {contrast}")
    blur = check_range("blur", blur, high=np.inf)
    if (isinstance(enhancement_shift, bool) or not isinstance(enhancement_shift, numbers.Real)
            or not abs(enhancement_shift) <= 1):
        raise ValueError(f"enhancement_shift must be a number in [-1, 1], got {enhancement_shift!r}")
    acquisition = (pixel_spacing, blur, float(enhancement_shift), contrast)

    rng = np.random.default_rng(check_seed(seed))
    stage = rng.choice(stages, size=n_patients, p=weights)
    weak = _noisy_neighbour(rng, stage, stages, label_noise)
    strong = np.full(n_patients, -1)
    known = rng.permutation(n_patients)[:max(1, round(strong_fraction * n_patients))]
    strong[known] = stage[known] >= threshold
    irregularity = 0.006 + 0.03 * jittered_level(rng, stage, stages, 0.35)[1]

    counts = rng.integers(lo, hi + 1, size=n_patients)
    patient = np.repeat(np.arange(n_patients), counts)
    first = np.cumsum(counts) - counts
    depth = (np.arange(len(patient)) - first[patient]) / counts[patient]
    images = _draw(rng, patient, depth, global_signs * stage[patient] / (stages - 1), irregularity[patient],
                   size, noise, size_variation, acquisition)
    return VolumeData(images=images, patient=patient, depth=depth, weak_label=weak[patient],
                      strong_label=strong[patient], stage=stage[patient], irregularity=irregularity[patient])


def _noisy_neighbour(rng, label, classes, rate):
    """With probability ``rate`` move each label one step up or down (inwards at the ends)."""
    step = np.where(rng.random(label.shape) < 0.5, -1, 1)
    step = np.where(label == 0, 1, np.where(label == classes - 1, -1, step))
    return np.where(rng.random(label.shape) < rate, label + step, label)


def _draw(rng, patient, depth, severity, irregularity, size, noise, size_variation, acquisition):
    spacing, blur, shift, gain = acquisition
    m, n_patients = len(patient), patient.max() + 1
    yy, xx = R.grid(size)
    if spacing != 1.0:  # coarser pixels: each covers more of the body
        yy, xx = yy * R.F32(spacing), xx * R.F32(spacing)
    d = R.col(depth)
    # Liver: on the image left (patient's right), largest mid-volume, shrinking with stage.
    scale = rng.uniform(1 - size_variation, 1 + size_variation, n_patients)[patient] * (1 - 0.15 * severity)
    rho = R.col(scale) * (0.1 + 0.42 * np.sin(np.pi * (0.1 + 0.85 * d)) ** 0.6)
    cy, cx = -0.05 + 0.1 * d, -0.32 + 0.12 * d
    dy, dx = (yy - cy) / 0.8, xx - cx                              # (M, H, W), flattened vertically
    r = R.radius(dy, dx)
    # Boundary radius as a function of the angle, tabulated per slice (M, A), read per pixel.
    theta = R.bin_angles()[None, :]                                # (1, A)
    amp = rng.normal(0, 0.06, (n_patients, 2)).astype(R.F32)[patient]
    beta = rng.uniform(0, 2 * np.pi, (n_patients, 2)).astype(R.F32)[patient]
    shape = 1 + sum(amp[:, k, None] * np.cos((k + 2) * theta + beta[:, k, None]) for k in range(2))
    # Nodularity: harmonics 9..15 whose phases drift by 6 m d with depth, so nodules move
    # along the contour from slice to slice.
    phases = (rng.uniform(0, 2 * np.pi, (n_patients, 7))[patient]
              + 6 * np.arange(9, 16) * depth[:, None]).astype(R.F32)
    nodules = sum(np.cos(mk * theta + phases[:, k, None]) for k, mk in enumerate(range(9, 16)))
    table = rho[:, :, 0] * (shape + R.F32(irregularity)[:, None] * nodules)  # (M, A)
    boundary = R.read_angular(table, R.angle_bins(dy, dx))
    liver = R.soft_step(boundary - r, R.F32(0.012))
    hetero = R.col(0.02 + 0.06 * severity) * R.smooth_noise(rng, m, size, 0.08)

    body = R.soft_step(1 - R.radius(yy / 0.7, xx / 0.92), R.F32(0.01))
    muscle = R.soft_step(1 - R.radius(yy / 0.62, xx / 0.84), R.F32(0.01))
    spine = R.soft_step(0.11 - R.radius(yy - 0.45, xx), R.F32(0.01))
    aorta = R.soft_step(0.06 - R.radius(yy - 0.25, xx - 0.1), R.F32(0.01))
    lower = R.soft_step(d - 0.55, R.F32(0.05))                     # kidneys appear below mid-volume
    kidneys = lower * (R.soft_step(0.12 - R.radius((yy - 0.28) / 1.4, xx + 0.42), R.F32(0.01))
                       + R.soft_step(0.12 - R.radius((yy - 0.28) / 1.4, xx - 0.42), R.F32(0.01)))
    enhancement = R.col(rng.normal(0.47, 0.03, n_patients)[patient] + shift)
    # HU window [-100, 400] -> [0, 1]: fat ~0.05, muscle ~0.3, liver ~0.44, vessels ~0.6, bone ~0.9.
    background = 0.05 * body + 0.25 * muscle + 0.3 * aorta + 0.6 * spine + 0.25 * kidneys
    canvas = (1 - liver) * background + liver * (enhancement + hetero)
    if gain != 1.0:
        canvas = R.F32(0.5) + R.F32(gain) * (canvas - R.F32(0.5))
    if blur > 0:
        from scipy.ndimage import gaussian_filter

        canvas = gaussian_filter(canvas, sigma=(0, blur, blur), mode="nearest")
    canvas += noise * rng.standard_normal((m, size, size), dtype=R.F32)
    return R.to_images(canvas)
