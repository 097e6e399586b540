"""Argument checks shared by the window poolings (:mod:`.maxpool2d`, :mod:`.avgpool2d`).

Conventions follow ``torch.nn.functional``: ``stride`` defaults to
``kernel_size``, padding at most half the kernel, ``ceil_mode=False``.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _ops, _validate


class WindowCache(NamedTuple):
    """The pooling geometry; max pooling adds the position of each maximum."""

    x_shape: tuple
    kernel_size: int
    stride: int
    padding: int
    output: _validate.Output
    argmax: object = None    # (C, OH, OW, N) int8 (int32 past 128 offsets) offset of the maximum in its window


def _window_args(x, kernel_size, stride, padding):
    """Validate the window pooling arguments; returns (kernel_size, stride, padding) as ints."""
    _validate.check_array("x", x, ndim=4, finite=False)
    kernel_size = _validate.check_integer("kernel_size", kernel_size, minimum=1)
    stride = kernel_size if stride is None else _validate.check_integer("stride", stride, minimum=1)
    padding = _validate.check_integer("padding", padding, minimum=0)
    if padding > kernel_size // 2:
        raise ValueError(f"padding must be at most kernel_size // 2 = {kernel_size // 2}, got {padding}")
    for axis in (2, 3):
        _ops.window_output_size(x.shape[axis], kernel_size, stride, padding)
    return kernel_size, stride, padding
