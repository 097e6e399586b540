"""PyTorch autograd formulations of every refimpl loss and layer, written from the papers and codes.

Independent of refimpl's code (dense masks, ``log_softmax``, ``torch.nn.functional``,
autograd for every gradient), these are the worked examples of checking an
outside implementation against the gold data: :func:`implementation` turns
the formulation of a gold case's function into ``fn(inputs) -> results`` for
:func:`refimpl.gold.verify`, in float64 or float32. The loss tests also hold
refimpl against the formulations directly.

Every formulation takes ``torch`` first, then refimpl's argument names, so
that a gold case's inputs can be passed as keywords.
"""
from __future__ import annotations

import numpy as np


def _reduce(per, reduction):
    return {"mean": per.mean, "sum": per.sum, "none": lambda: per}[reduction]()


def _normalize(torch, x, on=True):
    return torch.nn.functional.normalize(x, dim=-1) if on else x


# --------------------------------------------------------------------------- ConPro


def margin(torch, a, b, same, *, margin=2.0, variant="paper", reduction="mean", normalize=True):
    """ConPro Eq. 1 with d = 1 - cos (paper), or the authors' ContrastiveLoss (official)."""
    same = same.to(a.dtype)
    if variant == "official":
        s = torch.nn.functional.cosine_similarity(a, b)
        return torch.mean((1 - same) * s ** 2 + same * torch.clamp(margin - s, min=0.0) ** 2)
    d = 1 - (_normalize(torch, a, normalize) * _normalize(torch, b, normalize)).sum(dim=1)
    return _reduce(same * d + (1 - same) * torch.relu(margin - d), reduction)


def preference(torch, u_i, u_j, refs, prefer_i, *, variant="paper", reduction="mean", normalize=True):
    """ConPro Eq. 3-4 with logsigmoid, anchor = mean of the references; or the authors' NLLLoss call."""
    F = torch.nn.functional
    prefer_i = prefer_i.to(u_i.dtype)
    if variant == "official":
        ref = refs.mean(dim=-2).expand_as(u_i)
        gap = F.cosine_similarity(u_i, ref) - F.cosine_similarity(u_j, ref)
        return torch.nn.NLLLoss()(torch.nn.Sigmoid()(gap), prefer_i[0].long())
    u_i, u_j = _normalize(torch, u_i, normalize), _normalize(torch, u_j, normalize)
    anchor = _normalize(torch, refs.mean(dim=-2), normalize)
    r_i, r_j = 1 - (u_i * anchor).sum(-1), 1 - (u_j * anchor).sum(-1)
    per = -(prefer_i * F.logsigmoid(r_i - r_j) + (1 - prefer_i) * F.logsigmoid(r_j - r_i))
    return _reduce(per, reduction)


# --------------------------------------------------------------------------- WSP, SupCon, SimCLR


def _masked_log_softmax(torch, logits):
    """log_softmax over j != t of each row t; the diagonal set to 0 afterwards."""
    eye = torch.eye(logits.shape[0], dtype=torch.bool)
    return torch.log_softmax(logits.masked_fill(eye, float("-inf")), dim=1).masked_fill(eye, 0.0)


def kernel(torch, z, *, labels=None, depth=None, sigma=0.1, temperature=0.1, variant="paper",
           reduction="mean", normalize=True):
    """WSP Eq. 4 (paper), or Guerbet-AI/wsp-contrastive's WSPContrastiveLoss (official)."""
    m = z.shape[0]
    eye = torch.eye(m, dtype=torch.bool)
    w = torch.ones(m, m, dtype=z.dtype)
    if labels is not None:
        w = w * (labels[:, None] == labels[None, :])
    if depth is not None:
        w = w * torch.exp(-(depth[:, None] - depth[None, :]) ** 2 / (2 * sigma**2))
    w = w.masked_fill(eye, 0.0)
    if variant == "official":
        n = m // 2
        z_i, z_j = _normalize(torch, z[:n]), _normalize(torch, z[n:])
        big = 1e8 * torch.eye(n, dtype=z.dtype)
        sim = torch.cat([torch.cat([z_i @ z_i.T / temperature - big, z_i @ z_j.T / temperature], dim=1),
                         torch.cat([z_j @ z_i.T / temperature, z_j @ z_j.T / temperature - big], dim=1)])
        w = w / w.sum(dim=1)  # the code's broadcast: column j over the weight sum of row j
        return -1.0 / n * (torch.log_softmax(sim, dim=1) * w).sum()
    z = _normalize(torch, z, normalize)
    total = w.sum(dim=1, keepdim=True)
    w = torch.where(total > 0, w / torch.where(total > 0, total, 1.0), 0.0)
    return _reduce(-(w * _masked_log_softmax(torch, z @ z.T / temperature)).sum(dim=1), reduction)


def supcon(torch, z, *, labels=None, temperature=0.1, base_temperature=None, reduction="mean",
           normalize=True):
    """HobbitLong/SupContrast's SupConLoss: mean log-probability over the positives, times tau / base tau."""
    m = z.shape[0]
    if labels is None:
        labels = torch.arange(m) % (m // 2)
    z = _normalize(torch, z, normalize)
    positives = (labels[:, None] == labels[None, :]) & ~torch.eye(m, dtype=torch.bool)
    count = positives.sum(dim=1)
    log_prob = _masked_log_softmax(torch, z @ z.T / temperature)
    mean_log_prob = (positives * log_prob).sum(dim=1) / count.clamp(min=1)
    factor = 1.0 if base_temperature is None else temperature / base_temperature
    return _reduce(-factor * torch.where(count > 0, mean_log_prob, 0.0), reduction)


def ntxent(torch, z, *, temperature=0.1, reduction="mean", normalize=True):
    """SimCLR's NT-Xent: cross-entropy of each row against its other view, self-similarity excluded."""
    m = z.shape[0]
    z = _normalize(torch, z, normalize)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(m, dtype=torch.bool), float("-inf"))
    target = (torch.arange(m) + m // 2) % m
    return torch.nn.functional.cross_entropy(logits, target, reduction=reduction)


# --------------------------------------------------------------------------- AdaCon and baselines


def _ecdf_counts(torch, y, population, bucket, kind):
    """n F(key): #{pop <= key} (paper, Eq. 5) or the mid-rank (official), keys bucketed or raw."""
    keys = y if bucket is None else torch.floor_divide(y, bucket)
    pop = population if population is not None else y
    pop_keys = torch.sort(pop if bucket is None else torch.floor_divide(pop, bucket)).values
    right = torch.searchsorted(pop_keys, keys, right=True).to(y.dtype)
    left = torch.searchsorted(pop_keys, keys).to(y.dtype)
    return keys, (right if kind == "paper" else (left + right) / 2), len(pop)


def ecdf(torch, y, population=None, *, bucket=None, kind="paper"):
    _, counts, n = _ecdf_counts(torch, y, population, bucket, kind)
    return counts / n


def adacon_margin(torch, y, population=None, *, bucket=None, kind="paper"):
    _, counts, n = _ecdf_counts(torch, y, population, bucket, kind)
    return (counts[:, None] - counts[None, :]).abs() * (2 / n)


def adacon(torch, z, y, *, scale, population=None, bucket=None, variant="paper", reduction="mean",
           normalize=True):
    """AdaCon Eq. 4-6: dense masks and log_softmax; official: buckets 0.05 and the mid-rank ECDF."""
    if variant == "official" and bucket is None:
        bucket = 0.05
    y = y.to(z.dtype)
    population = None if population is None else population.to(z.dtype)
    keys, counts, n = _ecdf_counts(torch, y, population, bucket, variant)
    zn = _normalize(torch, z, normalize)
    same = keys[:, None] == keys[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    d = torch.clamp((counts[:, None] - counts[None, :]).abs() * (2 / n), 0, 2)
    log_prob = _masked_log_softmax(torch, scale * (zn @ zn.T + d * ~same))  # margin where labels differ
    pos = same & ~eye
    n_pos = pos.sum(1)
    per = -torch.where(pos, log_prob, 0.0).sum(1) / n_pos.clamp(min=1)
    return _reduce(torch.where(n_pos > 0, per, 0.0), reduction)


def npair(torch, anchor, positive, labels=None, *, l2_reg=0.0, temperature=1.0, normalize=True,
          reduction="mean"):
    """Sohn's N-pair-mc loss as a cross-entropy with targets spread over shared labels."""
    n = anchor.shape[0]
    labels = torch.arange(n) if labels is None else labels
    same = (labels[:, None] == labels[None, :]).to(anchor.dtype)
    za, zp = _normalize(torch, anchor, normalize), _normalize(torch, positive, normalize)
    per = torch.nn.functional.cross_entropy(za @ zp.T / temperature, same / same.sum(1, keepdim=True),
                                            reduction="none")
    return _reduce(per + l2_reg * ((anchor**2).sum(1) + (positive**2).sum(1)), reduction)


def triplet(torch, anchor, positive, negative, y_anchor, y_positive, y_negative, *, population=None,
            normalize=True, reduction="mean"):
    """Adaptive triplet (AdaCon App. B): hinge of squared distances plus 2 (d_an - d_ap), Eq. 5 ECDF."""
    pop = (y_anchor if population is None else population).to(anchor.dtype)
    phi = lambda y: (pop[None, :] <= y.to(anchor.dtype)[:, None]).to(anchor.dtype).mean(dim=1)  # noqa: E731
    margin = 2 * (2 * (phi(y_anchor) - phi(y_negative)).abs() - 2 * (phi(y_anchor) - phi(y_positive)).abs())
    za, zp, zn = (_normalize(torch, x, normalize) for x in (anchor, positive, negative))
    h = ((za - zp) ** 2).sum(1) - ((za - zn) ** 2).sum(1) + margin
    return _reduce(torch.relu(h), reduction)


def regression(torch, pred, target, *, kind="mse", delta=1.0, reduction="mean"):
    F = torch.nn.functional
    if kind == "huber":
        return F.huber_loss(pred, target, reduction=reduction, delta=delta)
    return (F.mse_loss if kind == "mse" else F.l1_loss)(pred, target, reduction=reduction)


def cross_entropy(torch, logits, targets, weight=None, *, label_smoothing=0.0, reduction="mean"):
    return torch.nn.functional.cross_entropy(logits, targets, weight=weight, reduction=reduction,
                                             label_smoothing=label_smoothing)


def dino(torch, student, teacher, center, *, student_temp=0.1, teacher_temp=0.04, n_global=2):
    """The official DINOLoss, as described: mean cross-entropy over (teacher global, other student) crops."""
    F = torch.nn.functional
    b = teacher.shape[0] // n_global
    crops = (student / student_temp).chunk(student.shape[0] // b)
    teacher_probs = F.softmax((teacher - center.reshape(1, -1)) / teacher_temp, dim=-1).detach()
    terms = [torch.sum(-q * F.log_softmax(crop, dim=-1), dim=-1).mean()
             for g, q in enumerate(teacher_probs.chunk(n_global)) for v, crop in enumerate(crops) if v != g]
    return sum(terms) / len(terms)


# --------------------------------------------------------------------------- layers and TinyNet


def conv2d(torch, x, w, b=None, *, stride=1, padding=0):
    return torch.nn.functional.conv2d(x, w, b, stride=stride, padding=padding)


def linear(torch, x, w, b=None):
    return torch.nn.functional.linear(x, w, b)


def maxpool2d(torch, x, *, kernel_size=2, stride=None, padding=0):
    return torch.nn.functional.max_pool2d(x, kernel_size, stride=stride, padding=padding)


def avgpool2d(torch, x, *, kernel_size=2, stride=None, padding=0):
    return torch.nn.functional.avg_pool2d(x, kernel_size, stride=stride, padding=padding,
                                          count_include_pad=True)


def batchnorm2d(torch, x, gamma, beta, running_mean, running_var, *, train, momentum=0.1, eps=1e-5):
    """torch's batch_norm; in training mode it updates (copies of) the running statistics in place."""
    mean, var = running_mean.clone(), running_var.clone()
    out = torch.nn.functional.batch_norm(x, mean, var, gamma, beta, training=train, momentum=momentum,
                                         eps=eps)
    return out, ({"new_running_mean": mean, "new_running_var": var} if train else {})


def dropout(torch, x, keep, *, p, train=True, seed=None):
    """Inverted dropout with the given mask (refimpl draws it from the seed on the host)."""
    return x * keep.to(x.dtype) / (1 - p)


def tinynet_head(torch, x, *, in_channels, widths, kernel_size, batchnorm, pool_last, head, train, **params):
    """TinyNet stages conv ('same') -> [batchnorm] -> relu -> maxpool 2, global average pool, MLP head."""
    F = torch.nn.functional
    new_state = {}
    for i in range(1, len(widths) + 1):
        layer = f"encoder.conv{i}."
        x = F.conv2d(x, params[layer + "w"], params.get(layer + "b"), padding=kernel_size // 2)
        if batchnorm:
            bn = f"encoder.bn{i}."
            x, stats = batchnorm2d(torch, x, params[bn + "gamma"], params[bn + "beta"],
                                   params[bn + "running_mean"], params[bn + "running_var"], train=train)
            new_state.update({f"new_{bn}{k[4:]}": v for k, v in stats.items()})
        x = F.relu(x)
        if i < len(widths) or pool_last:
            x = F.max_pool2d(x, 2)
    x = x.mean(dim=(2, 3))
    x = F.linear(F.relu(F.linear(x, params["head.fc1.w"], params["head.fc1.b"])),
                 params["head.fc2.w"], params["head.fc2.b"])
    return x, new_state


#: refimpl function of a gold case -> (formulation, the arrays that get a gradient; None: every
#: real array but the running statistics)
FORMULATIONS = {
    "refimpl.losses.margin.forward": (margin, ("a", "b")),
    "refimpl.losses.preference.forward": (preference, ("u_i", "u_j", "refs")),
    "refimpl.losses.kernel.forward": (kernel, ("z",)),
    "refimpl.losses.supcon.forward": (supcon, ("z",)),
    "refimpl.losses.supcon.ntxent_forward": (ntxent, ("z",)),
    "refimpl.losses.adacon.forward": (adacon, ("z",)),
    "refimpl.losses.adacon.ecdf": (ecdf, ()),
    "refimpl.losses.adacon.margin": (adacon_margin, ()),
    "refimpl.losses.npair.forward": (npair, ("anchor", "positive")),
    "refimpl.losses.triplet.forward": (triplet, ("anchor", "positive", "negative")),
    "refimpl.losses.regression.forward": (regression, ("pred",)),
    "refimpl.losses.cross_entropy.forward": (cross_entropy, ("logits",)),
    "refimpl.losses.dino.forward": (dino, ("student",)),
    "refimpl.layers.conv2d.forward": (conv2d, ("x", "w", "b")),
    "refimpl.layers.linear.forward": (linear, ("x", "w", "b")),
    "refimpl.layers.relu.forward": (lambda torch, x: torch.relu(x), ("x",)),
    "refimpl.layers.maxpool2d.forward": (maxpool2d, ("x",)),
    "refimpl.layers.avgpool2d.forward": (avgpool2d, ("x",)),
    "refimpl.layers.global_avg_pool.forward": (lambda torch, x: x.mean(dim=(2, 3)), ("x",)),
    "refimpl.layers.batchnorm2d.forward": (batchnorm2d, ("x", "gamma", "beta")),
    "refimpl.layers.dropout.forward": (dropout, ("x",)),
    "refimpl.layers.flatten.forward": (lambda torch, x: x.reshape(x.shape[0], -1), ("x",)),
    "refimpl.model.Sequential.forward": (tinynet_head, None),
}


def implementation(torch, function: str, dtype: str = "float64", formulation=None):
    """``fn(inputs) -> results`` for :func:`refimpl.gold.verify`: torch autograd in ``dtype``.

    Real arrays become ``dtype`` tensors (those named in FORMULATIONS, or every
    real array but the running statistics, require a gradient), the others keep
    theirs; ``out`` is differentiated with the case's ``dout``. ``formulation``
    replaces the function's own (to plant a bug).
    """
    own, differentiable = FORMULATIONS[function]
    formulation = formulation or own

    def fn(inputs: dict) -> dict:
        tensors, kwargs = {}, {}
        for k, v in inputs.items():
            if not isinstance(v, np.ndarray):
                kwargs[k] = v
                continue
            real = v.dtype == np.float64
            t = torch.from_numpy(v.astype(dtype) if real else v)
            wanted = k in differentiable if differentiable is not None else real and "running" not in k
            tensors[k] = t.requires_grad_() if wanted and k != "dout" else t
        dout = tensors.pop("dout", None)
        result = formulation(torch, **tensors, **kwargs)
        out, extra = result if isinstance(result, tuple) else (result, {})
        results = {"out": out, **extra}
        if dout is not None:
            out.backward(dout)
            results.update({f"d{k}": t.grad for k, t in tensors.items() if t.requires_grad})
        return {k: v.detach().numpy() for k, v in results.items()}

    return fn
