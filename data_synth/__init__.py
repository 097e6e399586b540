"""Synthetic images whose severity structure is known exactly.

Three deterministic generators (``numpy.random.default_rng(seed)``), each
vectorised over images and returning float32 NCHW images in [0, 1] together
with their labels and the latent factors that generated them, so that tests
can assert orderings:

- :func:`ordinal_severity`: fundus-like optic-disc swelling graded 0..L-1
  (ConPro's Papilledema / VinDr-Mammo stand-in);
- :func:`continuous_target`: hip-X-ray-like trabecular texture with a skewed
  BMD-like target (AdaCon's BMD stand-in);
- :func:`volumes`: CT-like liver volumes sliced with normalised depth, a noisy
  weak stage label and a scarce binary strong label (WSP's stand-in);

and :func:`gallery`, a PNG figure of all three (``refimpl data gallery``).

>>> ordinal_severity(4, size=32).images.shape
(4, 1, 32, 32)
"""
from .continuous import ContinuousData, continuous_target
from .gallery import gallery
from .ordinal import OrdinalData, ordinal_severity
from .volumes import VolumeData, volumes

__all__ = ["ContinuousData", "OrdinalData", "VolumeData", "continuous_target", "gallery",
           "ordinal_severity", "volumes"]
