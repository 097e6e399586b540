"""The individual transforms, each vectorised over the batch.

Every transform takes images ``x`` (N, C, H, W), real floating, in [0, 1],
and ``rng`` (a :class:`numpy.random.Generator` or a seed for
:func:`refimpl.backend.rng`), draws its per-image parameters on the host,
and returns new images; inputs are never modified. With its strength set to
zero (or ``p = 0``) each transform returns its input exactly.

Range: the intensity transforms are *defined* as the change followed by
clipping to [0, 1] (as torchvision's ``ColorJitter`` clamps). The geometric
ones form convex combinations of input pixels, so they only clip away the
rounding of their weights (at most a few ulp).
"""
from __future__ import annotations

import math

from .. import backend
from .._validate import check_choice, check_nonnegative
from . import _sampling as s

#: attempts at drawing a crop box that fits before the fallback (as torchvision).
CROP_ATTEMPTS = 10


def _crop_boxes(gen, x, scale, ratio):
    """(N, 4) float64 boxes ``(top, left, height, width)`` in pixels."""
    xp = backend.namespace(x)
    n, _, height, width = x.shape
    area = s.uniform(gen, (n, CROP_ATTEMPTS), *scale, x) * float(height * width)
    aspect = xp.exp(s.uniform(gen, (n, CROP_ATTEMPTS), math.log(ratio[0]), math.log(ratio[1]), x))
    w, h = xp.sqrt(area * aspect), xp.sqrt(area / aspect)  # (N, attempts)
    fits = xp.astype((w <= width) & (h <= height), xp.float64)
    first = xp.astype(xp.argmax(fits, axis=1), xp.float64)  # first fitting attempt, else 0
    pick = s.grid(x, CROP_ATTEMPTS)[None, :] == first[:, None]
    area, w, h = (xp.sum(xp.where(pick, v, 0.0), axis=1) for v in (area, w, h))
    # No attempt fits: keep the drawn area, squeeze the aspect ratio until the box fits.
    wide = w > width
    w, h = xp.where(wide, float(width), w), xp.where(wide, area / width, h)
    tall = h > height
    w, h = xp.where(tall, area / height, w), xp.where(tall, float(height), h)
    top = s.uniform(gen, (n,), 0.0, 1.0, x) * (height - h)
    left = s.uniform(gen, (n,), 0.0, 1.0, x) * (width - w)
    return xp.stack([top, left, h, w], axis=1)


def random_resized_crop(x, rng, *, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), return_boxes=False):
    r"""Crop a random box from every image and resize it bilinearly to ``size``.

    Per image b: area fraction ``a_b ~ U(scale)``, log aspect ratio
    ``log r_b ~ U(log ratio)``, and the box

    .. math::
        w_b = \sqrt{a_b H W r_b}, \quad h_b = \sqrt{a_b H W / r_b}, \quad
        \mathrm{out}_b[i, j] = x_b\big(t_b + (i + \tfrac12) h_b / H' - \tfrac12,\;
        l_b + (j + \tfrac12) w_b / W' - \tfrac12\big)

    read bilinearly at pixel-index coordinates, border replicated, no
    antialiasing (``_sampling.crop_matrix`` on each axis). The box is the
    first of 10 draws that fits; if none fits, the area is kept and the aspect
    ratio squeezed to fit (so ``h w / (H W)`` always lies in ``scale``; the
    ratio may then leave ``ratio``). The corner ``(t, l)`` is uniform over the
    positions that keep the box inside; boxes are continuous (sub-pixel).

    Parameters
    ----------
    x : array (N, C, H, W) in [0, 1]
    rng : numpy Generator or seed
    size : int or (int, int), output (H', W')
    scale : (low, high), area fraction, ``0 < low <= high <= 1``
    ratio : (low, high), width / height, ``0 < low <= high``
    return_boxes : also return the boxes (N, 4) float64 ``(top, left, h, w)``

    Returns
    -------
    array (N, C, H', W') [, boxes (N, 4)]

    >>> import numpy as np
    >>> x = np.linspace(0.0, 1.0, 16).reshape(1, 1, 4, 4)
    >>> out, boxes = random_resized_crop(x, 0, size=2, scale=(0.25, 0.5), return_boxes=True)
    >>> out.shape, round(float(boxes[0, 2] * boxes[0, 3] / 16), 4)
    ((1, 1, 2, 2), 0.4092)
    >>> bool(np.all(random_resized_crop(x, 0, size=4, scale=(1, 1), ratio=(1, 1)) == x))
    True
    """
    s.check_images(x)
    out_h, out_w = s.check_size(size)
    scale = s.check_range("scale", scale, high=1.0, positive=True)
    ratio = s.check_range("ratio", ratio, positive=True)
    boxes = _crop_boxes(backend.rng(rng), x, scale, ratio)
    rows = s.crop_matrix(boxes[:, 0], boxes[:, 2], x.shape[2], out_h)
    cols = s.crop_matrix(boxes[:, 1], boxes[:, 3], x.shape[3], out_w)
    out = s.clip01(s.apply_separable(x, rows, cols))
    return (out, boxes) if return_boxes else out


def random_flip(x, rng, *, p=0.5, axis="horizontal"):
    """Mirror each image with probability ``p`` (horizontal: along W, vertical: along H).

    Shapes: ``x`` (N, C, H, W) -> (N, C, H, W).

    >>> import numpy as np
    >>> x = np.array([[[[0.0, 0.5, 1.0]]]])
    >>> random_flip(x, 0, p=1.0).tolist()
    [[[[1.0, 0.5, 0.0]]]]
    """
    xp = s.check_images(x)
    check_choice("axis", axis, ("horizontal", "vertical"))
    p = s.check_probability("p", p)
    flip = s.applied(backend.rng(rng), x.shape[0], p, x)[:, None, None, None]
    return xp.where(flip, xp.flip(x, axis=3 if axis == "horizontal" else 2), x)


def random_rotation(x, rng, *, degrees):
    """Rotate each image about its centre by ``theta_b ~ U(-degrees, degrees)``.

    Bilinear, border replicated (:func:`~refimpl.augment._sampling.rotate_bilinear`): meant for small
    angles, where the replicated border stays thin. A positive angle turns the
    content clockwise as displayed (row 0 at the top): +90 degrees equals
    ``numpy.rot90(x, -1, axes=(2, 3))``. Shapes: (N, C, H, W) -> (N, C, H, W).

    >>> import numpy as np
    >>> x = np.linspace(0.0, 1.0, 9).reshape(1, 1, 3, 3)
    >>> random_rotation(x, 0, degrees=10.0)[0, 0].round(3).tolist()
    [[0.018, 0.119, 0.244], [0.393, 0.5, 0.607], [0.756, 0.881, 0.982]]
    """
    s.check_images(x)
    degrees = check_nonnegative("degrees", degrees)
    theta = s.uniform(backend.rng(rng), (x.shape[0],), -degrees, degrees, x) * (math.pi / 180.0)
    return s.clip01(s.rotate_bilinear(x, theta))


def color_jitter(x, rng, *, brightness=0.4, contrast=0.4, p=1.0):
    """Random brightness then contrast, both applied together with probability ``p``.

    .. math::
        y = \\mathrm{clip}(\\beta_b x), \\quad
        \\mathrm{out} = \\mathrm{clip}(\\gamma_b y + (1 - \\gamma_b) \\bar y_b)

    with ``beta_b ~ U(max(0, 1 - brightness), 1 + brightness)``, ``gamma_b``
    likewise from ``contrast``, ``bar y_b`` the mean of image b over C, H, W
    (torchvision uses the grey-level mean; the two agree for one channel), and
    clip to [0, 1] as the definition. The order brightness, contrast is fixed
    (torchvision permutes it at random). Saturation and hue are left out: the
    seed paper's jitter is brightness and contrast on grey-level images.
    Shapes: ``x`` (N, C, H, W) -> (N, C, H, W).

    >>> import numpy as np
    >>> x = np.array([[[[0.2, 0.4, 0.6]]]])
    >>> color_jitter(x, 0, brightness=0.4, contrast=0.4).round(4).tolist()
    [[[[0.2628, 0.4438, 0.6249]]]]
    """
    xp = s.check_images(x)
    brightness = check_nonnegative("brightness", brightness)
    contrast = check_nonnegative("contrast", contrast)
    p = s.check_probability("p", p)
    gen, n = backend.rng(rng), x.shape[0]
    beta = s.uniform(gen, (n,), max(0.0, 1.0 - brightness), 1.0 + brightness, x)
    gamma = s.uniform(gen, (n,), max(0.0, 1.0 - contrast), 1.0 + contrast, x)
    on = s.applied(gen, n, p, x)
    beta = s.per_image(xp.where(on, beta, 1.0), x)
    gamma = s.per_image(xp.where(on, gamma, 1.0), x)
    y = s.clip01(beta * x)
    mean = xp.mean(y, axis=(1, 2, 3), keepdims=True)
    return s.clip01(gamma * y + (1.0 - gamma) * mean)


def gaussian_blur(x, rng, *, sigma=(0.1, 2.0), p=1.0):
    """Separable Gaussian blur with ``sigma_b ~ U(sigma)`` pixels, applied with probability p.

    .. math:: g_b(d) \\propto \\exp(-d^2 / (2 \\sigma_b^2)),
              \\quad |d| \\le \\lceil 3\\, \\sigma_{\\max} \\rceil

    Border replicated; ``sigma_b = 0`` is the identity (``_sampling.blur_matrix``).
    Shapes: ``x`` (N, C, H, W) -> (N, C, H, W).

    >>> import numpy as np
    >>> x = np.zeros((1, 1, 1, 5)); x[..., 2] = 1.0
    >>> gaussian_blur(x, 0, sigma=(1.0, 1.0))[0, 0, 0].round(4).tolist()
    [0.054, 0.242, 0.3991, 0.242, 0.054]
    """
    s.check_images(x)
    sigma = s.check_range("sigma", sigma)
    p = s.check_probability("p", p)
    xp, gen, n = backend.namespace(x), backend.rng(rng), x.shape[0]
    std = s.uniform(gen, (n,), *sigma, x)
    std = xp.where(s.applied(gen, n, p, x), std, 0.0)
    radius = math.ceil(3.0 * sigma[1])
    rows = s.blur_matrix(std, x.shape[2], radius)
    cols = s.blur_matrix(std, x.shape[3], radius)
    return s.clip01(s.apply_separable(x, rows, cols))


def gaussian_noise(x, rng, *, std=0.1, p=1.0):
    """Additive Gaussian noise: ``clip(x + s_b z)``, ``s_b ~ U(0, std)``, ``z ~ N(0, 1)`` per pixel.

    The per-image noise level is drawn (as MONAI's ``RandGaussianNoise`` does
    by default) rather than fixed at ``std``. Shapes: (N, C, H, W) -> (N, C, H, W).

    >>> import numpy as np
    >>> gaussian_noise(np.full((1, 1, 1, 3), 0.5), 0, std=0.1).round(4).tolist()
    [[[[0.5408, 0.5067, 0.4659]]]]
    """
    s.check_images(x)
    std = check_nonnegative("std", std)
    p = s.check_probability("p", p)
    xp, gen, n = backend.namespace(x), backend.rng(rng), x.shape[0]
    level = s.uniform(gen, (n,), 0.0, std, x)
    level = s.per_image(xp.where(s.applied(gen, n, p, x), level, 0.0), x)
    return s.clip01(x + level * backend.normal(gen, x.shape, like=x))


def bias_field(x, rng, *, scale=0.1, degree=3, p=1.0):
    """Smooth multiplicative intensity field: a random low-order Legendre polynomial, exponentiated.

    .. math::
        \\mathrm{out} = \\mathrm{clip}\\Big(x \\exp\\big(\\textstyle\\sum_{i + j \\le d}
        c_{b,ij} P_i(v) P_j(u)\\big)\\Big), \\quad c_{b,ij} \\sim U(-\\mathrm{scale}, \\mathrm{scale})

    with ``u, v`` the pixel centres mapped to (-1, 1) and ``d = degree``. The
    log-polynomial form follows MONAI's ``RandBiasField``; the symmetric
    coefficient range is this implementation's choice. The field is shared by
    the channels of an image. Shapes: ``x`` (N, C, H, W) -> (N, C, H, W).

    >>> import numpy as np
    >>> bias_field(np.full((1, 1, 2, 2), 0.5), 0, scale=0.1).round(4).tolist()
    [[[[0.522, 0.52], [0.4929, 0.5333]]]]
    """
    s.check_images(x)
    scale = check_nonnegative("scale", scale)
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 0:
        raise ValueError(f"degree must be an int >= 0, got {degree!r}")
    p = s.check_probability("p", p)
    xp, gen = backend.namespace(x), backend.rng(rng)
    n, _, height, width = x.shape
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    coef = s.uniform(gen, (n, len(terms)), -scale, scale, x)
    coef = xp.where(s.applied(gen, n, p, x)[:, None], coef, 0.0)  # (N, T)
    py = s.legendre_rows(s.pixel_centres(x, height), degree)  # each (H,)
    px = s.legendre_rows(s.pixel_centres(x, width), degree)  # each (W,)
    basis = xp.stack([xp.reshape(py[i][:, None] * px[j][None, :], (-1,)) for i, j in terms])  # (T, H*W)
    log_field = xp.reshape(xp.matmul(coef, basis), (n, 1, height, width))  # (N, 1, H, W)
    return s.clip01(x * xp.astype(xp.exp(log_field), x.dtype))
