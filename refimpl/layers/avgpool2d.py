"""2-D average pooling over square windows, as ``torch.nn.functional.avg_pool2d``.

Windows are gathered with :func:`refimpl._ops.im2col` and gradients scattered
back with :func:`refimpl._ops.col2im`. Conventions follow PyTorch: ``stride``
defaults to ``kernel_size``, padding at most half the kernel,
``ceil_mode=False``, the zero padding is counted in the mean
(``count_include_pad=True``).
"""
from __future__ import annotations

from .. import _ops, _validate, backend
from ._pool import WindowCache, _window_args


def forward(x, *, kernel_size: int = 2, stride: int | None = None, padding: int = 0):
    """Mean over each ``kernel_size`` x ``kernel_size`` window, zero padding counted.

    Same arguments and output shape as :func:`refimpl.layers.maxpool2d.forward`
    (``count_include_pad=True`` as in PyTorch).

    .. math::
        \\mathrm{out}_{n,c,p,q} = \\frac{1}{k^2} \\sum_{0 \\le i, j < k} \\tilde x_{n,c,\\,ps+i,\\,qs+j}

    In plain text: ``out[n, c, p, q] = mean_{0 <= i, j < k} xpad[n, c, p*s + i, q*s + j]``.

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 1.0]]]])
    >>> forward(x)[0].tolist()
    [[[[2.5, 1.75]]]]
    """
    k, stride, padding = _window_args(x, kernel_size, stride, padding)
    xp = backend.namespace(x)
    cols = _ops.im2col(x, (k, k), stride=stride, padding=padding)  # (C, K, K, OH, OW, N)
    out = _ops.batch_first(xp.mean(cols, axis=(1, 2)))
    return out, WindowCache(tuple(x.shape), k, stride, padding, _validate.output_of(out))


def backward(dout, cache, *, check_finite: bool = True):
    """Gradient of :func:`forward`: ``dout / k**2`` spread over each window.

    .. math::
        dx_{n,c,h,w} = \\frac{1}{k^2} \\sum_{p,q:\\ (h, w) \\in \\mathrm{window}(p, q)} dout_{n,c,p,q}

    In plain text: ``dx[n, c, h, w] = sum of dout[n, c, p, q] / k^2`` over the windows ``(p, q)``
    that hold ``(h, w)``.

    Returns ``(dx,)``, dx (N, C, H, W).

    ``check_finite=False`` skips the NaN/inf check of ``dout``, which reads a
    value back to the host (a sync on GPUs; a step captured as a CUDA graph
    cannot have it, :mod:`refimpl.graph`).

    >>> import numpy as np
    >>> _, cache = forward(np.zeros((1, 1, 2, 4)))
    >>> backward(np.array([[[[4.0, 8.0]]]]), cache)[0].tolist()
    [[[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]]
    """
    dout = _validate.check_dout(dout, cache.output, finite=check_finite)
    xp = backend.namespace(dout)
    n, c, oh, ow = dout.shape
    k = cache.kernel_size
    dcols = xp.broadcast_to(_ops.batch_last(dout)[:, None, None, ...] / (k * k), (c, k, k, oh, ow, n))
    return (_ops.col2im(dcols, cache.x_shape, stride=cache.stride, padding=cache.padding),)
