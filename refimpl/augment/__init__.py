"""Augmentations for contrastive pre-training on (N, C, H, W) images in [0, 1].

One code path for every backend: per-image parameters are drawn on the host
from a seeded :class:`numpy.random.Generator` (pass it, or a seed, as ``rng``)
and moved to the device, so a seed gives the same images on NumPy, CuPy and
any Array-API namespace. Transforms are vectorised over the batch (per-image
interpolation matrices and gathers), return new arrays, keep values finite
and in [0, 1] (intensity changes are clipped by definition), and return their
input exactly at strength 0.

Presets ``strong``, ``weak``, ``weak+med``: the augmentation-scale paper (Cheng et al., arXiv
2501.02451), Table 2; see :mod:`refimpl.augment.presets` for every number.

>>> import numpy as np
>>> a, b = two_views(np.full((3, 1, 16, 16), 0.5), "weak", 0)
>>> a.shape
(3, 1, 16, 16)
"""
from .presets import PRESETS, AugmentPreset, augment_view, get_preset, multi_crop, two_views
from .transforms import (bias_field, color_jitter, gaussian_blur, gaussian_noise, random_flip,
                         random_resized_crop, random_rotation)

__all__ = [
    "PRESETS", "AugmentPreset", "augment_view", "get_preset", "multi_crop", "two_views",
    "bias_field", "color_jitter", "gaussian_blur", "gaussian_noise", "random_flip",
    "random_resized_crop", "random_rotation",
]
