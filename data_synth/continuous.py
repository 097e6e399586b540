"""Continuous target: hip radiograph crops whose trabecular density follows a BMD value.

Stands in for the BMD data of AdaCon (Dai et al., IEEE TMI): 475
anteroposterior hip X-rays of 317 patients (1.31 films per patient), square
crops around the femoral head and neck, labelled with the DXA bone mineral
density (mean 0.697, sd 0.129 g/cm^2).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import expit

from . import _render as R
from ._checks import check_int, check_range, check_seed
from ._sampling import assign_subjects

#: The BMD (g/cm^2) drawn as half-dense trabecular bone, and the BMD change that moves
#: the density by one logistic scale: fixed, so images encode the absolute target.
BMD_CENTRE, BMD_SCALE = 0.70, 0.13

#: Films per patient in the AdaCon BMD set (475 / 317 is 1.5; Table C1 says 1.31).
FILMS_PER_SUBJECT = 1.31
#: bounds of ``resolution`` (besides 0): coarser than max(sd, COARSEST) erases the targets' spread,
#: finer than FINEST is below float64's precision for such targets (a subnormal one overflows)
COARSEST_RESOLUTION, FINEST_RESOLUTION = 1e-3, 1e-12


@dataclasses.dataclass(frozen=True)
class ContinuousData:
    """Images with a continuous target and the latent factor that made them.

    ``images`` (N, 1, H, W) float32 in [0, 1]; ``target`` (N,) float64, the
    BMD-like label (rounded to ``resolution``); ``subject`` (N,) int, sorted;
    ``density`` (N,) the trabecular bone fraction in (0, 1) drawn in the
    image, an increasing function of the unrounded target.
    """

    images: np.ndarray
    target: np.ndarray
    subject: np.ndarray
    density: np.ndarray


def continuous_target(n, *, size=64, seed=0, subjects=None, mean=0.70, sd=0.13, skewness=1.0,
                      resolution=0.001, noise=0.03) -> ContinuousData:
    r"""Hip-X-ray-like crops whose trabecular texture density encodes a skewed target.

    The target of subject :math:`s` is a standardised gamma variable (right
    skew ``skewness``, :math:`k = 4 / \text{skewness}^2`):

    .. math::

        y_s = \mu + \sigma\,(G_s - k) / \sqrt{k}, \qquad G_s \sim \Gamma(k, 1),
        \qquad \rho = \operatorname{expit}\big((y - 0.70) / 0.13\big),

    and every film of the subject shows a femoral head and neck filled with
    trabecular bone of area fraction :math:`\rho` (wavy stripes along the
    neck axis, thresholded) inside a cortical rim whose brightness also grows with
    :math:`y`. Nuisance: femur position and size, left/right flip, exposure
    (gain and offset), soft-tissue background, pixel noise, and the texture
    itself (a new pattern in each film).

    Realistic: the label distribution (mean, sd, skew of DXA BMD), several
    films per patient sharing one label (ties), the cue a radiologist uses
    (trabecular rarefaction, thinner cortex) mixed with exposure. Not
    realistic: the label is an exact function of the drawn density (DXA
    measures a different projection with its own error), one grey channel,
    no fractures, implants or pelvis.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Image height and width in pixels (>= 16).
    seed : int >= 0 or numpy.random.Generator
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    subjects : int, optional
        Number of subjects (default ``round(n / 1.31)``); each has >= 1 film
        and all films of a subject share its target.
    mean, sd : float >= 0
        Mean and standard deviation of the target (BMD in g/cm^2). The image
        encodes the absolute value: density 1/2 at 0.70, logistic scale 0.13.
    skewness : float in [0, 4]
        Skewness of the target distribution (0 gives a normal distribution).
    resolution : float, 0 or in [1e-12, max(sd, 0.001)]
        The target is rounded to a multiple of this (DXA reports 3 decimals;
        0 keeps full precision). Coarser rounding makes more ties; rounding
        coarser than ``sd`` would erase the targets' spread (far beyond it,
        every target rounds to 0), and finer than 1e-12 is below float64's
        precision (a subnormal one overflows to inf), so both are refused.
    noise : float >= 0
        Standard deviation of the pixel noise.

    Returns
    -------
    ContinuousData

    Examples
    --------
    >>> d = continuous_target(5, size=32, seed=0)
    >>> d.images.shape, d.target.round(3).tolist()
    ((5, 1, 32, 32), [0.662, 0.692, 0.726, 0.817, 0.817])
    >>> bool(np.all(np.diff(d.density[np.argsort(d.target)]) >= 0))
    True
    """
    n = check_int("n", n, minimum=1)
    size = check_int("size", size, minimum=16)
    subjects = check_int("subjects", max(1, round(n / FILMS_PER_SUBJECT)) if subjects is None else subjects,
                         minimum=1)
    mean = check_range("mean", mean, high=np.inf)
    sd = check_range("sd", sd, high=np.inf)
    skewness = check_range("skewness", skewness, high=4.0)
    resolution = check_range("resolution", resolution, high=np.inf)
    coarsest = max(sd, COARSEST_RESOLUTION)
    if resolution > coarsest or 0 < resolution < FINEST_RESOLUTION:
        raise ValueError(f"resolution must be 0 (no rounding) or in [{FINEST_RESOLUTION:g}, {coarsest:g}] "
                         f"(at most sd or {COARSEST_RESOLUTION:g}: coarser rounding erases the targets' "
                         f"spread), got {resolution!r}")
    noise = check_range("noise", noise, high=np.inf)

    rng = np.random.default_rng(check_seed(seed))
    subject = assign_subjects(rng, n, subjects)
    if skewness > 0:
        k = 4.0 / skewness ** 2
        z = (rng.gamma(k, size=subjects) - k) / np.sqrt(k)
    else:
        z = rng.standard_normal(subjects)
    with np.errstate(over="ignore", invalid="ignore"):  # a target overflow is refused below, by name
        bmd = (mean + sd * z)[subject]
        target = np.round(bmd / resolution) * resolution if resolution > 0 else bmd
        density = expit((bmd - BMD_CENTRE) / BMD_SCALE)  # saturates at 1 for huge targets
    if not np.all(np.isfinite(target)):
        raise ValueError(f"mean, sd and resolution must keep the target finite, got mean {mean!r}, "
                         f"sd {sd!r}, resolution {resolution!r}")
    images = _draw(rng, subject, subjects, size, density, noise)
    return ContinuousData(images=images, target=target, subject=subject, density=density)


def _draw(rng, subject, subjects, size, density, noise):
    n = len(subject)
    yy, xx = R.grid(size)
    # Femur geometry per subject (head centre and radius, neck direction), shifted per film.
    hy = R.col(rng.uniform(-0.35, -0.15, subjects)[subject] + rng.normal(0, 0.04, n))
    hx = R.col(rng.uniform(-0.3, -0.1, subjects)[subject] + rng.normal(0, 0.04, n))
    radius = R.col(rng.uniform(0.42, 0.52, subjects)[subject])
    angle = rng.uniform(0.55, 0.95, subjects)[subject]            # neck axis, towards lower right
    ay, ax = R.col(np.sin(angle)), R.col(np.cos(angle))
    dy, dx = yy - hy, xx - hx                                      # (N, H, W)
    along, across = dy * ay + dx * ax, dx * ay - dy * ax
    # Signed distance (> 0 inside) to the union of the head (disc) and the neck (half-band).
    head = radius - R.radius(dy, dx)
    neck = np.minimum(0.7 * radius - np.abs(across), along)
    inside = np.maximum(head, neck)
    bone = R.soft_step(inside, R.F32(0.015))
    cortex = np.exp(-0.5 * (inside / 0.03) ** 2) * bone

    # Trabeculae: stripes along the neck axis, wavy by a smooth phase field, thresholded so
    # that a fraction `density` of each period is bone: cos(phi) > cos(pi * density).
    phase = 2 * np.pi * 7.0 * across + 2.5 * R.smooth_noise(rng, n, size, 0.25)
    trabeculae = R.soft_step(np.cos(phase) - R.col(np.cos(np.pi * density)), R.F32(0.15))
    d3 = R.col(density)
    canvas = (0.18 + 0.04 * R.smooth_noise(rng, n, size, 0.5)
              + bone * (0.12 + 0.35 * trabeculae) + cortex * (0.1 + 0.3 * d3))
    canvas = R.col(rng.uniform(0.8, 1.2, n)) * canvas + R.col(rng.uniform(-0.05, 0.05, n))
    canvas += noise * rng.standard_normal((n, size, size), dtype=R.F32)
    flip = rng.random(n) < 0.5
    canvas[flip] = canvas[flip, :, ::-1]
    return R.to_images(canvas)

