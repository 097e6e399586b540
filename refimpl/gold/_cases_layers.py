"""Gold cases of the layers (strides, paddings, modes) and of TinyNet + projection head end to end."""
from __future__ import annotations

import math

import numpy as np

from ..layers import batchnorm2d, dropout
from ..model import Sequential, mlp_head, tinynet
from ._spec import Spec, call, run_forward_backward

LY = "refimpl.layers."
NET = "refimpl.model.Sequential."


def _normal(g, *shape, scale=1.0):
    return g.standard_normal(shape) * scale


def _conv(n, c, h, w, f, kh, kw, bias=True):
    def draw(g):
        out = {"x": _normal(g, n, c, h, w), "w": _normal(g, f, c, kh, kw, scale=1 / math.sqrt(c * kh * kw))}
        if bias:
            out["b"] = _normal(g, f, scale=0.1)
        return out
    return draw


def _conv_specs():
    f = LY + "conv2d.forward"
    geometry = [  # name, x (N, C, H, W), filters, kernel (KH, KW), stride, padding, bias
        ("k3s1p0", (2, 3, 5, 6), 4, (3, 3), 1, 0, True),
        ("k3s1p1", (2, 3, 5, 6), 4, (3, 3), 1, 1, True),
        ("k3s2p1", (2, 2, 7, 6), 3, (3, 3), 2, 1, True),
        ("k3s2p0", (1, 2, 8, 7), 3, (3, 3), 2, 0, True),  # the last row and column are read by no window
        ("k5s2p2", (2, 2, 9, 8), 3, (5, 5), 2, 2, True),
        ("k2x3s3p2", (2, 2, 6, 7), 2, (2, 3), 3, 2, True),  # windows that lie mostly in the padding
        ("k1s1p0-nobias", (2, 4, 3, 3), 5, (1, 1), 1, 0, False),
    ]
    return [Spec(f"conv2d-{name}", f, _conv(*x, filters, *k, bias=bias),
                 dict(stride=s, padding=p, **({} if bias else {"b": None})),
                 params=("w", "b"),
                 description=f"cross-correlation, x {x}, w ({filters}, {x[1]}, {k[0]}, {k[1]}), "
                             f"stride {s}, padding {p}" + ("" if bias else ", no bias"))
            for name, x, filters, k, s, p, bias in geometry]


def _with_zeros(g, shape):
    """Normal draws with about a quarter set to exactly 0 (the ReLU kink)."""
    x = _normal(g, *shape)
    return np.where(g.uniform(size=shape) < 0.25, 0.0, x)


def _ties(g):
    """Small integers: many windows hold their maximum twice."""
    return g.integers(0, 3, (1, 2, 4, 6)).astype(np.float64)


def _pool_specs():
    specs = []
    for kind, geometry in (("maxpool2d", [(2, None, 0, (2, 3, 6, 6)), (3, 2, 1, (2, 2, 7, 7))]),
                           ("avgpool2d", [(2, None, 0, (2, 3, 6, 6)), (3, 2, 1, (2, 2, 7, 7)),
                                          (3, 1, 1, (1, 2, 4, 5))])):
        for k, s, p, shape in geometry:
            name = f"{kind}-k{k}s{s or k}p{p}"
            specs.append(Spec(name, LY + f"{kind}.forward", lambda g, shape=shape: {"x": _normal(g, *shape)},
                              dict(kernel_size=k, stride=s, padding=p),
                              description=f"x {shape}" + (", zero padding counted in the mean"
                                                          if kind == "avgpool2d" and p else "")))
    specs.append(Spec("maxpool2d-ties", LY + "maxpool2d.forward", lambda g: {"x": _ties(g)},
                      dict(kernel_size=2), description="tied maxima: the gradient goes to the first "
                      "maximum of each window in row-major order (PyTorch CPU)"))
    return specs


def _batchnorm(g, shape=(4, 3, 3, 2)):
    c = shape[1]
    return {"x": _normal(g, *shape, scale=2.0) + 1.0, "gamma": 1.0 + _normal(g, c, scale=0.2),
            "beta": _normal(g, c, scale=0.2), "running_mean": _normal(g, c, scale=0.5),
            "running_var": g.uniform(0.5, 2.0, c)}


def _run_batchnorm(spec, arrays, kwargs, dout_for):
    """forward/backward, plus the running statistics PyTorch's update gives in training mode."""
    rows = run_forward_backward(spec, arrays, kwargs, dout_for)
    if kwargs["train"]:  # the update reads the forward cache, which the generic run does not return
        mean, var = batchnorm2d.new_running_stats(call(batchnorm2d.forward, arrays, kwargs)[1])
        rows += [("new_running_mean", "output", mean), ("new_running_var", "output", var)]
    return rows


def _run_dropout(spec, arrays, kwargs, dout_for):
    """The mask refimpl draws from ``seed`` is stored as the input ``keep``: out = x * keep / (1 - p)."""
    out, cache = dropout.forward(arrays["x"], **kwargs)
    dout = dout_for(out)
    (dx,) = dropout.backward(dout, cache)
    return [("x", "input", arrays["x"]), ("keep", "input", cache.mask != 0), ("dout", "dout", dout),
            ("out", "output", out), ("dx", "grad", dx)]


def _layer_specs():
    bn = LY + "batchnorm2d.forward"
    stats = ("running_mean", "running_var")
    return [
        Spec("linear", LY + "linear.forward",
             lambda g: {"x": _normal(g, 5, 4), "w": _normal(g, 3, 4, scale=0.5),
                        "b": _normal(g, 3, scale=0.1)},
             params=("w", "b"), description="x @ w.T + b, w (out, in) as torch.nn.Linear"),
        Spec("linear-nobias", LY + "linear.forward",
             lambda g: {"x": _normal(g, 3, 4), "w": _normal(g, 4, 4, scale=0.5)}, dict(b=None), params=("w",),
             description="square weight, so that w and w.T give the same shapes"),
        Spec("relu", LY + "relu.forward", lambda g: {"x": _with_zeros(g, (3, 5))},
             description="exact zeros in x: the gradient there is 0"),
        Spec("global_avg_pool", LY + "global_avg_pool.forward", lambda g: {"x": _normal(g, 2, 3, 4, 5)}),
        Spec("batchnorm2d-train", bn, _batchnorm, dict(train=True), params=("gamma", "beta"), state=stats,
             run=_run_batchnorm, description="batch statistics (biased variance); new running "
             "statistics with the unbiased variance, as torch"),
        Spec("batchnorm2d-train-m0.3-eps1e-3", bn, lambda g: _batchnorm(g, (2, 2, 4, 3)),
             dict(train=True, momentum=0.3, eps=1e-3), params=("gamma", "beta"), state=stats,
             run=_run_batchnorm),
        Spec("batchnorm2d-eval", bn, _batchnorm, dict(train=False), params=("gamma", "beta"), state=stats,
             description="running statistics, treated as constants"),
        Spec("dropout", LY + "dropout.forward", lambda g: {"x": _normal(g, 4, 5)},
             dict(p=0.3, train=True, seed=7),
             run=_run_dropout, description="inverted dropout; keep is the mask refimpl draws from seed 7"),
        Spec("flatten", LY + "flatten.forward", lambda g: {"x": _normal(g, 2, 3, 2, 2)}),
    ]


def _network(kwargs):
    encoder = {k: v for k, v in kwargs.items() if k not in ("head", "train")}
    # im2col, as the conv2d cases: the gold stays the numbers it was first made with
    encoder.update(widths=tuple(encoder["widths"]), algorithm="im2col")
    return Sequential([("encoder", tinynet(**encoder)),
                       ("head", mlp_head(**kwargs["head"]))])


def _draw_network(kwargs, x_shape):
    def draw(g):
        net = _network(kwargs)
        arrays = {"x": _normal(g, *x_shape)}
        for name, shape in net.param_shapes().items():
            if len(shape) > 1:  # weights: He scale
                arrays[name] = _normal(g, *shape, scale=math.sqrt(2.0 / math.prod(shape[1:])))
            elif name.endswith(".gamma"):
                arrays[name] = 1.0 + _normal(g, *shape, scale=0.2)
            else:  # biases and beta: small, not zero, so that their gradients matter
                arrays[name] = _normal(g, *shape, scale=0.1)
        for name, shape in net.state_shapes().items():
            arrays[name] = (g.uniform(0.5, 2.0, shape) if name.endswith("var")
                            else _normal(g, *shape, scale=0.3))
        return arrays
    return draw


def _run_network(spec, arrays, kwargs, dout_for):
    net = _network(kwargs)
    params = {k: arrays[k] for k in net.param_shapes()}
    state = {k: arrays[k] for k in net.state_shapes()}
    out, cache = net.forward(params, arrays["x"], train=kwargs["train"], state=state)
    dout = dout_for(out)
    grads, dx = net.backward(dout, cache)
    rows = [(k, "param" if k in params else "state" if k in state else "input", v) for k, v in arrays.items()]
    rows += [("dout", "dout", dout), ("out", "output", out), ("dx", "grad", dx)]
    rows += [(f"d{k}", "grad", g) for k, g in grads.items()]
    if kwargs["train"]:
        rows += [(f"new_{k}", "output", v) for k, v in net.new_state(cache).items()]
    return rows


def _network_specs():
    plain = dict(in_channels=1, widths=[2, 3, 4, 4, 5], kernel_size=5, batchnorm=False, pool_last=True,
                 head=dict(in_dim=5, hidden=6, out_dim=3), train=True)
    bn = dict(plain, widths=[2, 3, 3, 4, 4], kernel_size=3, batchnorm=True,
              head=dict(in_dim=4, hidden=5, out_dim=3))
    about = ("encoder = refimpl.model.tinynet(in_channels, widths, kernel_size, batchnorm, pool_last) "
             "(conv 'same' padding{bn} -> relu -> maxpool 2 per stage, global average pool), head = "
             "mlp_head(**head) (linear -> relu -> linear); out = head(encoder(x)); parameters named "
             "encoder.<layer>.<name>, head.<layer>.<name>{state}")
    common = dict(backward=NET + "backward", run=_run_network, fill_defaults=False)
    return [
        Spec("tinynet-head", NET + "forward", _draw_network(plain, (2, 1, 32, 32)), plain,
             description=about.format(bn="", state=""), **common),
        Spec("tinynet-bn-head", NET + "forward", _draw_network(bn, (3, 1, 32, 32)), bn,
             description=about.format(bn=" -> batchnorm (training mode)",
                                      state="; outputs new_<state name> are the running statistics after "
                                            "the pass"), **common),
    ]


def specs() -> list:
    return _conv_specs() + _pool_specs() + _layer_specs() + _network_specs()

