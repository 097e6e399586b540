"""The four losses written in PyTorch with autograd, straight from the papers.

These are the comparison points of ``refimpl bench losses``: independent
formulations (paper variants, mean reduction, embeddings L2-normalised inside)
whose gradients come from autograd, so that the benchmark measures what a
PyTorch user would write. The benchmark checks that each returns the same value
as refimpl before timing it. Import this module only when torch is installed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def margin(a, b, same, margin=2.0):
    """ConPro Eq. 1 with ``d = 1 - cos``: ``mean[y d + (1 - y) max(0, m - d)]``."""
    d = 1 - (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(dim=1)
    return (same * d + (1 - same) * torch.clamp(margin - d, min=0)).mean()


def preference(u_i, u_j, refs, prefer_i):
    """ConPro Eq. 3-4: Bradley-Terry NLL with reward = cosine distance to the mean reference."""
    anchor = refs.mean(dim=0, keepdim=True)  # (1, D)
    r_i = 1 - F.cosine_similarity(F.normalize(u_i, dim=1), anchor, dim=1, eps=0.0)
    r_j = 1 - F.cosine_similarity(F.normalize(u_j, dim=1), anchor, dim=1, eps=0.0)
    return -(prefer_i * F.logsigmoid(r_i - r_j) + (1 - prefer_i) * F.logsigmoid(r_j - r_i)).mean()


def _per_anchor(weights):
    """Rows scaled to sum to 1; rows of zeros (anchors without positives) stay zero."""
    total = weights.sum(dim=1, keepdim=True)
    return weights / torch.where(total > 0, total, torch.ones_like(total))


def _mean_weighted_log_prob(logits, weights):
    """``-mean_t sum_i w_ti log softmax_{j != t}(logits_t)_i`` with the anchor masked out.

    Anchors without positives contribute 0 and still count in the mean, as in
    refimpl and SupContrast.
    """
    m = logits.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=logits.device)
    log_prob = torch.log_softmax(logits.masked_fill(eye, float("-inf")), dim=1)
    return -(weights * log_prob.masked_fill(eye, 0.0)).sum(dim=1).mean()


def kernel(z, labels, depth, sigma=0.1, temperature=0.1):
    """WSP Eq. 4: Dirac(labels) x Gaussian(depth) weights normalised per anchor, denominator j != t."""
    z = F.normalize(z, dim=1)
    m = z.shape[0]
    w = (labels[:, None] == labels[None, :]).to(z.dtype)
    w = w * torch.exp(-((depth[:, None] - depth[None, :]) ** 2) / (2 * sigma**2))
    w = w.masked_fill(torch.eye(m, dtype=torch.bool, device=z.device), 0.0)
    return _mean_weighted_log_prob(z @ z.T / temperature, _per_anchor(w))


def adacon(z, y, scale=10.0):
    """AdaCon Eq. 4-6: logits ``s (cos + 2 |F_i - F_a|)`` on negatives, batch ECDF, mean over anchors."""
    z = F.normalize(z, dim=1)
    m = z.shape[0]
    cdf = (y[None, :] <= y[:, None]).to(z.dtype).mean(dim=1)  # F(y_a) = #{y_k <= y_a} / M
    same = y[:, None] == y[None, :]
    margin = torch.where(same, 0.0, 2 * (cdf[:, None] - cdf[None, :]).abs())
    pos = same & ~torch.eye(m, dtype=torch.bool, device=z.device)
    return _mean_weighted_log_prob(scale * (z @ z.T + margin), _per_anchor(pos.to(z.dtype)))
