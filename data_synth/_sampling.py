"""Label and subject sampling shared by the generators.

>>> assign_subjects(np.random.default_rng(0), 5, 3).tolist()
[0, 1, 1, 2, 2]
>>> t, u = jittered_level(np.random.default_rng(0), np.array([0, 1, 2]), 3, 0.25)
>>> t.round(2).tolist(), u.round(2).tolist()
([0.07, 0.88, 1.77], [0.13, 0.45, 0.81])
"""
from __future__ import annotations

import numpy as np


def assign_subjects(rng: np.random.Generator, n: int, subjects: int) -> np.ndarray:
    """Subject id of each of ``n`` images, sorted; each subject gets at least one image.

    The other ``n - subjects`` images go to subjects drawn uniformly, so the
    number of images per subject varies, as in clinical collections.
    """
    if subjects > n:
        raise ValueError(f"subjects must be <= n (each subject has an image), got {subjects} > {n}")
    extra = rng.integers(0, subjects, size=n - subjects)
    return np.sort(np.concatenate([np.arange(subjects), extra]))


def jittered_level(rng: np.random.Generator, level, levels: int, jitter: float):
    """Continuous latent ``t = level + U(-jitter, jitter)`` and its unit form ``u`` in [0, 1].

    With ``jitter < 0.5`` the latent ranges of neighbouring levels never
    overlap, so every factor drawn as an increasing function of the latent is
    strictly ordered across levels while still varying within a level.
    ``u = (t + jitter) / (levels - 1 + 2 jitter)`` maps the whole range of
    ``t`` onto [0, 1], so factors of the form ``a + b u`` (a, b > 0) stay positive.
    """
    level = np.asarray(level, dtype=np.float64)
    t = level + rng.uniform(-jitter, jitter, size=level.shape)
    return t, (t + jitter) / (levels - 1 + 2 * jitter)
