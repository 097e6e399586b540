"""Ordinal severity: disc-centred fundus photographs of optic-disc swelling.

Stands in for the data of ConPro (Nguyen et al., CVPR-W 2024): the
Papilledema set (331 fundus images of 105 subjects, normal plus a five-level
severity rating, i.e. six classes, split 70/15/15 *by subject*) and, with five
levels, VinDr-Mammo BI-RADS 1-5 (four views per examination). Both are
imbalanced, which ``class_weights`` reproduces.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _render as R
from ._checks import check_int, check_range, check_seed, check_weights
from ._sampling import assign_subjects, jittered_level

#: Default images per subject, as in the Papilledema set (331 / 105).
IMAGES_PER_SUBJECT = 3


@dataclasses.dataclass(frozen=True)
class OrdinalData:
    """Images with an ordinal severity and the latent factors that made them.

    ``images`` (N, 1, H, W) float32 in [0, 1]; ``severity`` (N,) int in
    0..levels-1, the true level; ``grade`` (N,) int, the level a reader
    records (equal to ``severity`` without ``grading_noise``); ``subject``
    (N,) int, sorted. Latent, per image, each an
    increasing function of ``latent`` (= severity + within-level jitter, so
    strictly ordered across levels): ``lesion_radius`` (disc radius, in units
    of half the image width), ``margin_blur`` (width of the disc margin),
    ``texture`` (amplitude of the radial striations).
    """

    images: np.ndarray
    severity: np.ndarray
    grade: np.ndarray
    subject: np.ndarray
    latent: np.ndarray
    lesion_radius: np.ndarray
    margin_blur: np.ndarray
    texture: np.ndarray


def ordinal_severity(n, *, levels=6, size=64, subjects=None, seed=0, class_weights=None,
                     subject_correlation=0.7, jitter=0.35, noise=0.03, grading_noise=0.0) -> OrdinalData:
    r"""Fundus-like images whose optic disc swells with severity ``0..levels-1``.

    Each image shows a disc-centred fundus photograph: a circular field of
    view, a background with subject-specific pigmentation, two vessel arcades
    leaving the disc, and the optic disc. With the latent severity
    :math:`t = s + U(-j, j)` scaled to :math:`u = (t + j) / (L - 1 + 2j)` in
    [0, 1], the disc has

    .. math::

        R = 0.12 + 0.2\,u, \qquad w = 0.01 + 0.08\,u, \qquad
        a_\text{tex} = 0.01 + 0.06\,u,

    radius :math:`R`, margin blur :math:`w`, radial striations of amplitude
    :math:`a_\text{tex}`; its physiological cup fills in and the vessels on it
    are obscured as :math:`u` grows, and it gets dimmer as it spreads, so that
    the mean intensity of an image says little about its severity.

    Nuisance that is not severity: disc position (per subject, plus a little
    per image), pigmentation and vessel shape (per subject), contrast (gain),
    illumination (a linear gradient and a smooth bias field), pixel noise.

    Grading: a reader sees the latent severity with an error and records
    the nearest level, ``grade = clip(round(t + N(0, g^2)), 0, L - 1)`` with
    ``g = grading_noise``. Images near a level boundary are misgraded more
    often than central ones, and only into a neighbouring level for small
    ``g``: the inter-reader disagreement of ordinal scales such as Frisén's,
    which is why severity is learned as an order and not as unrelated
    classes. ``g = 0`` gives ``grade == severity``.

    Realistic: the Frisén-like signs (disc size, blurred margin, loss of the
    cup, obscured vessels), several images per subject with correlated
    grades, class imbalance, a subject-level appearance that a subject-wise
    split must not leak. Not realistic: one grey channel, no haemorrhages or
    exudates, one reader (no
    per-reader bias), a disc always near the centre.

    Parameters
    ----------
    n : int
        Number of images.
    levels : int
        Number of severity levels (6 for Papilledema, 5 for BI-RADS 1-5).
    size : int
        Image height and width in pixels (>= 16).
    subjects : int, optional
        Number of subjects (default ``max(1, n // 3)``); each has >= 1 image.
    seed : int >= 0 or numpy.random.Generator
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    class_weights : sequence of float, optional
        Relative frequency of each level (default: balanced). Papilledema-like
        imbalance: ``(4, 2, 2, 1.5, 1, 0.5)``.
    subject_correlation : float in [0, 1]
        Probability that an image takes its subject's grade rather than an
        independent draw; both follow ``class_weights``, so the marginal class
        balance is exactly as configured (and ties within subjects frequent).
    jitter : float in [0, 0.5)
        Half-width of the within-level spread of the latent severity.
    noise : float >= 0
        Standard deviation of the pixel noise.
    grading_noise : float >= 0
        Standard deviation of the reader's error, in levels.

    Returns
    -------
    OrdinalData

    Examples
    --------
    >>> d = ordinal_severity(6, levels=3, size=32, seed=0)
    >>> d.images.shape, d.images.dtype.name
    ((6, 1, 32, 32), 'float32')
    >>> d.severity.tolist(), d.subject.tolist()
    ([0, 1, 2, 2, 1, 2], [0, 0, 1, 1, 1, 1])
    >>> bool(np.all(np.diff(d.lesion_radius[np.argsort(d.latent)]) > 0))
    True
    >>> ordinal_severity(6, levels=3, size=32, seed=0, grading_noise=0.5).grade.tolist()
    [0, 1, 2, 1, 0, 2]
    """
    n = check_int("n", n, minimum=1)
    levels = check_int("levels", levels, minimum=2)
    size = check_int("size", size, minimum=16)
    subjects = check_int("subjects", max(1, n // IMAGES_PER_SUBJECT) if subjects is None else subjects,
                         minimum=1)
    weights = check_weights("class_weights", np.ones(levels) if class_weights is None else class_weights,
                            levels)
    rho = check_range("subject_correlation", subject_correlation)
    jitter = check_range("jitter", jitter, high=0.499)
    noise = check_range("noise", noise, high=np.inf)
    grading_noise = check_range("grading_noise", grading_noise, high=np.inf)

    rng = np.random.default_rng(check_seed(seed))
    subject = assign_subjects(rng, n, subjects)
    own = rng.choice(levels, size=n, p=weights)
    shared = rng.choice(levels, size=subjects, p=weights)[subject]
    severity = np.where(rng.random(n) < rho, shared, own)
    latent, u = jittered_level(rng, severity, levels, jitter)
    factors = dict(lesion_radius=0.12 + 0.2 * u, margin_blur=0.01 + 0.08 * u, texture=0.01 + 0.06 * u)
    images = _draw(rng, subject, subjects, size, u, noise, **factors)
    # drawn last, so that the images of a seed do not depend on grading_noise
    reading = latent + grading_noise * rng.standard_normal(n)
    grade = np.clip(np.rint(reading), 0, levels - 1).astype(severity.dtype)
    return OrdinalData(images=images, severity=severity, grade=grade, subject=subject, latent=latent,
                       **factors)


def _draw(rng, subject, subjects, size, u, noise, *, lesion_radius, margin_blur, texture):
    n = len(subject)
    yy, xx = R.grid(size)
    # Per subject: disc position, pigmentation, arcade curvatures; per image: small shifts.
    cy = R.col(rng.uniform(-0.12, 0.12, subjects)[subject] + rng.normal(0, 0.02, n))
    cx = R.col(rng.uniform(-0.12, 0.12, subjects)[subject] + rng.normal(0, 0.02, n))
    pigment = R.col(rng.uniform(0.3, 0.45, subjects)[subject])
    curv = rng.uniform(0.8, 1.6, (subjects, 2))[subject] * np.array([1.0, -0.6])
    dy, dx = yy - cy, xx - cx                                      # (N, H, W)
    r = R.radius(dy, dx)
    u3, rad, blur = R.col(u), R.col(lesion_radius), R.col(margin_blur)

    # Disc: dimmer as it spreads; the cup (bright centre) fills in with severity.
    disc = (0.4 - 0.16 * u3) * R.soft_step(rad - r, blur)
    cup = 0.18 * (1 - u3) * R.soft_step(0.4 * rad - r, R.F32(0.01))
    # Radial striations cos(12 theta + phase), tabulated over the angle per image, read per pixel.
    phase = rng.uniform(0, 2 * np.pi, n).astype(R.F32)
    striae = R.col(texture) * R.read_angular(np.cos(12 * R.bin_angles() + phase[:, None]), R.angle_bins(dy, dx))
    striae *= np.exp(-0.5 * ((r - rad) / (blur + 0.04)) ** 2)
    # Vessels: two parabolic arcades dx = c dy^2 (temporal, nasal), Gaussian profile of width
    # 0.035 exp(-r) (thinner away from the disc), hidden where the disc is swollen.
    inv_width2 = np.exp(2 * r) / R.F32(0.035 ** 2)
    vessels = np.zeros_like(r)
    for k in range(2):
        c = R.col(curv[:, k])
        dist2 = (dx - c * dy * dy) ** 2 / (1 + (2 * c * dy) ** 2)  # squared distance to the curve
        vessels += 0.16 * np.exp(-0.5 * dist2 * inv_width2)
    vessels *= 1 - u3 * R.soft_step(rad + blur - r, blur)

    fundus = pigment + 0.03 * R.smooth_noise(rng, n, size, 0.2) + disc + cup + striae - vessels
    fov = R.soft_step(0.95 - R.radius(yy, xx), R.F32(0.02))
    angle = rng.uniform(0, 2 * np.pi, n)
    slope = rng.uniform(0.0, 0.2, n)
    gradient = R.col(slope * np.cos(angle)) * xx + R.col(slope * np.sin(angle)) * yy
    bias = 0.06 * R.smooth_noise(rng, n, size, 0.6)
    gain = R.col(rng.uniform(0.75, 1.25, n))
    canvas = fov * (gain * fundus + gradient + bias) + noise * rng.standard_normal((n, size, size), dtype=R.F32)
    return R.to_images(canvas)
