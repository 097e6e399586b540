"""The DINO student/teacher pieces the augmentation-scale recipe trains (private).

DINO (Caron et al., ICCV 2021) and its official ``DINOHead``
(facebookresearch/dino, ``vision_transformer.py``): an MLP (with batch norm
for convolutional backbones, ``use_bn_in_head``), an L2-normalised
bottleneck, and a weight-normalised last layer without bias whose norm is
fixed to 1 (``norm_last_layer=True``), so that the logits are cosines
between the bottleneck and K prototype directions. That fixed norm is what
keeps the logits' range from shrinking under weight decay, which (with
the centring) lets the output collapse to the uniform distribution.

>>> import numpy as np
>>> head = dino_head(8, hidden=16, bottleneck=4, prototypes=5)
>>> params, state = head.init(0, "float64"), head.init_state("float64")
>>> out, cache = head.forward(params, np.ones((3, 8)), train=True, state=state)
>>> out.shape, bool(np.all(np.abs(out) <= 1.0))
((3, 5), True)
"""
from __future__ import annotations

import dataclasses
import math

from .. import backend
from ..losses._common import l2_normalize, l2_normalize_backward
from ..model import BatchNorm2d, Layer, Linear, ReLU, Sequential


@dataclasses.dataclass(frozen=True)
class BatchNorm1d(Layer):
    """Batch norm over the rows of (N, C) features: :class:`BatchNorm2d` on (N, C, 1, 1)."""

    channels: int

    def _inner(self):
        return BatchNorm2d(self.channels)

    def param_shapes(self):
        return self._inner().param_shapes()

    def state_shapes(self):
        return self._inner().state_shapes()

    def init(self, seed, dtype="float32", *, like=None, xp=None, dev=None):
        return self._inner().init(seed, dtype, like=like, xp=xp, dev=dev)

    def init_state(self, dtype="float32", *, like=None, xp=None, dev=None):
        return self._inner().init_state(dtype, like=like, xp=xp, dev=dev)

    def new_state(self, cache):
        return self._inner().new_state(cache)

    def forward(self, params, x, *, train, state=None, input_grad=True):
        xp = backend.namespace(x)
        out, cache = self._inner().forward(params, xp.reshape(x, (*x.shape, 1, 1)), train=train, state=state)
        return xp.reshape(out, x.shape), cache  # (N, C, 1, 1) -> (N, C)

    def backward(self, dout, cache):
        xp = backend.namespace(dout)
        grads, dx = self._inner().backward(xp.reshape(dout, (*dout.shape, 1, 1)), cache)
        return grads, xp.reshape(dx, dout.shape)


class L2Normalize(Layer):
    """Rows scaled to unit length (:func:`refimpl.losses._common.l2_normalize`)."""

    def forward(self, params, x, *, train, state=None):
        return l2_normalize(x)

    def backward(self, dout, cache):
        return {}, l2_normalize_backward(dout, cache)


@dataclasses.dataclass(frozen=True)
class Prototypes(Layer):
    """Weight-normalised linear layer without bias, norm fixed to 1: ``x @ (w / |w|)^T``.

    .. math:: o_{nk} = x_n^\\top w_k / \\lVert w_k \\rVert

    Params ``w`` (K, D), initialised N(0, 1 / D) (the direction is what counts).
    """

    in_features: int
    prototypes: int

    def param_shapes(self):
        return {"w": (self.prototypes, self.in_features)}

    def init(self, seed, dtype="float32", *, like=None, xp=None, dev=None):
        return {"w": backend.normal(backend.rng(seed), (self.prototypes, self.in_features), like=like, xp=xp,
                                    dev=dev, dtype=dtype, scale=1.0 / math.sqrt(self.in_features))}

    def forward(self, params, x, *, train, state=None, input_grad=True):
        xp = backend.namespace(x)
        wn, norm_cache = l2_normalize(params["w"])  # (K, D) unit rows
        return x @ xp.permute_dims(wn, (1, 0)), (x, wn, norm_cache)  # (N, D) @ (D, K)

    def backward(self, dout, cache):
        x, wn, norm_cache = cache
        xp = backend.namespace(dout)
        dwn = xp.permute_dims(dout, (1, 0)) @ x  # (K, N) @ (N, D)
        return {"w": l2_normalize_backward(dwn, norm_cache)}, dout @ wn  # (N, K) @ (K, D)


def dino_head(in_dim: int, *, hidden: int, bottleneck: int, prototypes: int) -> Sequential:
    """DINO's head for a convolutional backbone: Linear-BN-ReLU-Linear, L2 norm, prototypes.

    Shapes: (N, in_dim) -> (N, prototypes) logits, each a cosine in [-1, 1].
    (The official head has 3 layers, hidden 2048, bottleneck 256 and 65536
    prototypes.)
    """
    return Sequential([("fc1", Linear(in_dim, hidden)), ("bn1", BatchNorm1d(hidden)), ("relu1", ReLU()),
                       ("fc2", Linear(hidden, bottleneck)), ("norm", L2Normalize()),
                       ("last", Prototypes(bottleneck, prototypes))])


def teacher_momentum(step: int, total_steps: int, base: float) -> float:
    """DINO's EMA momentum schedule: cosine from ``base`` at step 0 to 1 at ``total_steps``.

    .. math:: m_k = 1 - (1 - m_0) \\tfrac12 \\bigl(1 + \\cos(\\pi k / K)\\bigr)

    >>> [round(teacher_momentum(k, 4, 0.9), 4) for k in (0, 2, 4)]
    [0.9, 0.95, 1.0]
    """
    return 1.0 - (1.0 - base) * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def ema(teacher: dict, student: dict, momentum: float) -> dict:
    """``momentum * teacher + (1 - momentum) * student``, entry by entry (new dict)."""
    return {k: momentum * teacher[k] + (1.0 - momentum) * student[k] for k in teacher}
