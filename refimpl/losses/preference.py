"""Bradley-Terry preference loss of ConPro's 'PrO' step (Nguyen et al., CVPR-W 2024, Eq. 3-4).

The reward of an embedding is its cosine distance to a normality anchor, the
mean of ``R`` reference embeddings of the normal class (Table 2: R = 1, 10, 20);
the more severe sample of a pair is the preferred one (larger distance).

* ``variant="paper"`` (default): Eq. 3-4 with the errata fixed (below); soft
  labels ``prefer_i`` in [0, 1]; every reduction.
* ``variant="official"``: the authors' ``PreferenceComparisonLoss``
  (``Hong7Cong/ConPrO``, ``losses/losses.py``, ``train_conpre.py``):
  ``NLLLoss()(sigmoid(cos(u_i, anchor) - cos(u_j, anchor)), label)`` with
  ``label = severity_i > severity_j`` (so ``prefer_i`` must be 0 or 1).
* Erratum (ConPro code, ``losses/losses.py``): quirks of ``PreferenceComparisonLoss``,
  reproduced number for number by ``variant="official"``: the reward is the cosine *similarity*, not the
  distance; ``NLLLoss`` receives a probability, not a log-probability; and its
  input is 1-D (N,), which torch reads as the N class scores of *one* sample,
  so the loss is ``-sigmoid(...)[label_0]``: one element, pair 0 or pair 1
  chosen by the first label, negative, in [-1, 0], the other pairs get no
  gradient. The torch releases that accepted the (N,) target with a 1-D input
  read only ``target[0]``; current torch (2.13) raises on it and computes the
  same value when the target is ``label[0]``, the reading reproduced here. The
  loaders' tie label 2 (it would read pair 2) is not accepted. The anchor is the
  *unnormalised* mean of the raw reference embeddings (``main.ipynb``, n = 20;
  ``train_conpre.py`` uses one reference image per pair, ``refs`` (N, 1, D));
  gradients flow into the references. ``reduction`` must be "mean" (the code's
  own) and ``normalize`` True.

Anchor (both variants): the plain mean of the ``R`` raw reference embeddings,
as ConPro Sec. 4 says ("We randomly chose n vectors in the normal class to get
the mean of these vectors") and the authors' code computes; the reward is the
cosine distance (paper) or similarity (official) between an embedding and that
mean, as Eq. 3-4 read, so a longer reference weighs more in the anchor. To let
each reference count equally whatever its norm, pass L2-normalised references
(:func:`refimpl.losses._common.l2_normalize`, and chain its backward into
``drefs``). With ``normalize=False`` nothing is normalised: the cosine becomes
a dot product with the mean of the references.

Read :func:`forward_naive` first (the paper variant, Eq. 3-4 as printed);
:func:`forward` adds the official variant and log-sigmoids that never overflow.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._validate import (check_array, check_choice, check_same_dtype, check_same_length, check_unit_interval,
                         namespace)
from ._common import (REDUCTIONS, VARIANTS, check_official, check_paper_only, maybe_normalize,
                      maybe_normalize_backward, reduce, reduce_backward)


class NaiveCache(NamedTuple):
    """What :func:`backward_naive` needs from :func:`forward_naive`."""

    ui_hat: object  # (N, D)
    uj_hat: object  # (N, D)
    anchor_hat: object  # (D,) or (N, D) normalised mean of the references
    refs_shape: tuple
    ui_norm: object  # l2_normalize caches, None without normalisation
    uj_norm: object
    anchor_norm: object
    gap: object  # (N,) g = r_i - r_j
    p: object  # (N,) prefer_i as floats
    reduction: tuple


def forward_naive(u_i, u_j, refs, prefer_i, *, variant: str = "paper", reduction: str = "mean",
                  normalize: bool = True):
    """Teaching form of :func:`forward`: ConPro Eq. 3-4 as printed (errata fixed), paper variant only.

    .. math:: \\pi_0 = \\tfrac1R \\sum_r v_r, \\quad r^*(u) = 1 - \\cos(u, \\pi_0), \\quad
              \\ell_k = -p_k \\log \\sigma(r^*_{ik} - r^*_{jk}) - (1 - p_k) \\log \\sigma(r^*_{jk} - r^*_{ik})

    In plain text: ``pi_0 = mean_r v_r``, ``r*(u) = 1 - cos(u, pi_0)``,
    ``l_k = -p_k log sigmoid(r*_ik - r*_jk) - (1 - p_k) log sigmoid(r*_jk - r*_ik)``.

    Same arguments and values as :func:`forward` with ``variant="paper"``
    (``"official"`` is refused). The logs of sigmoids are taken as written,
    which is exact while the reward gap ``|g|`` is moderate (normalised rows:
    ``|g| <= 2``); :func:`forward` stays exact for any gap.

    >>> import numpy as np
    >>> refs = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> loss, cache = forward_naive(np.array([[1.0, -1.0]]), np.array([[1.0, 1.0]]), refs, np.array([1.0]))
    >>> round(float(loss), 4)
    0.3133
    """
    xp = namespace(u_i=u_i, u_j=u_j, refs=refs, prefer_i=prefer_i)
    _check_inputs(u_i, u_j, refs, prefer_i, variant, reduction, normalize)
    check_paper_only(variant)
    ui_hat, ui_norm = maybe_normalize(u_i, normalize)
    uj_hat, uj_norm = maybe_normalize(u_j, normalize)
    anchor_hat, anchor_norm = maybe_normalize(xp.mean(refs, axis=-2), normalize)  # pi_0, (D,) or (N, D)
    reward_i = 1.0 - xp.sum(ui_hat * anchor_hat, axis=-1)  # (N,) r*(u_i), Eq. 2 as a distance
    reward_j = 1.0 - xp.sum(uj_hat * anchor_hat, axis=-1)
    gap = reward_i - reward_j
    p = xp.astype(prefer_i, u_i.dtype)
    per_pair = -(p * xp.log(sigmoid(gap)) + (1 - p) * xp.log(sigmoid(-gap)))  # Eq. 3-4
    loss, reduce_cache = reduce(per_pair, reduction)
    return loss, NaiveCache(ui_hat, uj_hat, anchor_hat, tuple(refs.shape), ui_norm, uj_norm, anchor_norm,
                            gap, p, reduce_cache)


def backward_naive(dout, cache: NaiveCache):
    """Gradients ``(du_i, du_j, drefs)`` of :func:`forward_naive`, one factor at a time.

    ``dl/dg = sigma(g) - p``; ``g = r_i - r_j`` with ``r = 1 - u_hat . a_hat``;
    the anchor's gradient is summed over pairs when the references are shared
    and each reference gets ``1/R`` of the mean's.
    """
    xp = backend.namespace(cache.ui_hat)
    dper = reduce_backward(dout, cache.reduction)  # (N,) dL/dl_k, dout checked
    dgap = xp.expand_dims(dper * (sigmoid(cache.gap) - cache.p), axis=-1)  # (N, 1) dL/dg_k
    dui_hat = -dgap * cache.anchor_hat  # dr_i/du_i_hat = -anchor_hat
    duj_hat = dgap * cache.anchor_hat  # g has -r_j
    danchor_hat = dgap * (cache.uj_hat - cache.ui_hat)  # (N, D)
    if cache.anchor_hat.ndim == 1:  # one anchor shared by every pair
        danchor_hat = xp.sum(danchor_hat, axis=0)
    dmean = maybe_normalize_backward(danchor_hat, cache.anchor_norm)
    n_refs = cache.refs_shape[-2]
    drefs = xp.broadcast_to(xp.expand_dims(dmean, axis=-2) / n_refs, cache.refs_shape)
    return (maybe_normalize_backward(dui_hat, cache.ui_norm), maybe_normalize_backward(duj_hat, cache.uj_norm),
            xp.asarray(drefs, copy=True))


class Cache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    ui_hat: object  # (N, D)
    uj_hat: object  # (N, D)
    anchor: object  # (D,) or (N, D), normalised unless normalize=False
    refs_shape: tuple
    ui_norm: object  # l2_normalize caches, None without normalisation
    uj_norm: object
    anchor_norm: object
    dper_dgap: object  # (N,) dl_k / dg_k
    reduction: tuple


def forward(u_i, u_j, refs, prefer_i, *, variant: str = "paper", reduction: str = "mean",
            normalize: bool = True):
    """ConPro Bradley-Terry preference loss over pairs (Eq. 3-4), with its cache.

    .. math::

        \\pi_0 = \\frac{1}{R} \\sum_{r=1}^{R} v_r, \\qquad
        r^*(u) = d_{\\cos}(u, \\pi_0) = 1 - \\frac{u^\\top \\pi_0}{\\lVert u\\rVert\\,\\lVert \\pi_0\\rVert}

        \\ell_k = -\\big[p_k \\log \\sigma(r^*_{ik} - r^*_{jk})
                  + (1 - p_k) \\log \\sigma(r^*_{jk} - r^*_{ik})\\big]
                = p_k\\, [-g_k]_+ + (1 - p_k)\\, [g_k]_+ + \\log(1 + e^{-|g_k|}),
        \\qquad g_k = r^*_{ik} - r^*_{jk}

    In plain text: ``pi_0 = mean_r v_r``, ``r*(u) = 1 - cos(u, pi_0)``, ``g_k = r*_ik - r*_jk``,
    ``l_k = -[p_k log sigmoid(g_k) + (1 - p_k) log sigmoid(-g_k)] = p_k max(-g_k, 0) + (1 - p_k) max(g_k, 0) + log(1 + exp(-|g_k|))``,

    with ``p = prefer_i`` and the loss ``reduce(l)``. Official variant (see the
    module docstring): ``loss = -sigmoid(s_i - s_j)[label_0]`` with ``s`` the
    cosine similarity to the unnormalised mean of the references.

    Erratum (ConPro Eq. 3): Eq. 3's second line has the exponent's sign
    reversed; we use ``sigma(r_i - r_j) = 1 / (1 + exp(r_j - r_i))``.

    Erratum (ConPro Eq. 4): Eq. 4 lacks the minus sign of a negative
    log-likelihood.

    Erratum (ConPro Eq. 2): ``d_cos`` is the cosine distance ``1 - cos``
    (Eq. 2 prints the similarity), so the reward grows with severity.

    Pairs of equal severity carry no
    preference: pass ``p = 0.5`` (the loss then pulls the two rewards level) or
    leave them out of the batch.

    Stabilisers: the log-sigmoids are written with ``e^{-|g|}`` only,
    ``-log sigma(g) = softplus(-g) = max(-g, 0) + log1p(e^{-|g|})``, so no ``exp``
    overflows, and the loss is a sum of non-negative terms, so it keeps full
    relative precision even where it is tiny (``softplus(g) - p g`` would cancel
    for a well-ordered pair); ``sigma(g)`` comes from ``e^{-|g|}`` too. This
    matters with ``normalize=False``, where reward gaps are unbounded. The L2
    normalisation floors norms at 1e-12 (torch's ``cosine_similarity``: 1e-8).

    Parameters
    ----------
    u_i, u_j : array (N, D)
        Raw embeddings of the two members of each pair.
    refs : array (R, D) or (N, R, D)
        Reference embeddings of the normal class, shared by all pairs or one
        set per pair, averaged into the anchor.
    prefer_i : array (N,)
        Probability that ``u_i`` is the more severe (preferred) sample; 0 or 1
        for the official variant.
    variant : {"paper", "official"}
    reduction : {"mean", "sum", "none"}
    normalize : bool

    Returns
    -------
    loss : 0-d array, or (N,) for ``reduction="none"``
    cache : for :func:`backward`

    Examples
    --------
    >>> import numpy as np
    >>> refs = np.array([[1.0, 0.0], [0.0, 1.0]])      # anchor along (1, 1)
    >>> u_i, u_j = np.array([[1.0, -1.0]]), np.array([[1.0, 1.0]])
    >>> loss, cache = forward(u_i, u_j, refs, np.array([1.0]))
    >>> round(float(loss), 4)                          # -log sigma(1 - 0)
    0.3133
    >>> du_i, du_j, drefs = backward(1.0, cache)       # u_i pushed off the anchor
    >>> du_i.round(4).tolist(), drefs.round(4).tolist()  # each reference: half the anchor's
    ([[0.1345, 0.1345]], [[0.1345, -0.1345], [0.1345, -0.1345]])
    >>> longer = np.array([[3.0, 0.0], [0.0, 1.0]])     # plain mean: anchor along (3, 1)
    >>> round(float(forward(u_i, u_j, longer, np.array([1.0]))[0]), 4)  # -log sigma(0.4472)
    0.4943
    >>> official, _ = forward(u_i, u_j, refs, np.array([0.0]), variant="official")
    >>> round(float(official), 4)                      # -sigmoid(s_i - s_j)[0] = -sigma(0 - 1)
    -0.2689
    """
    xp = namespace(u_i=u_i, u_j=u_j, refs=refs, prefer_i=prefer_i)
    _check_inputs(u_i, u_j, refs, prefer_i, variant, reduction, normalize)
    paper = variant == "paper"
    ui_hat, ui_cache = maybe_normalize(u_i, normalize)
    uj_hat, uj_cache = maybe_normalize(u_j, normalize)
    anchor, anchor_cache = maybe_normalize(xp.mean(refs, axis=-2), normalize)  # (D,) or (N, D)
    sim_i = xp.sum(ui_hat * anchor, axis=-1)  # (N,)
    sim_j = xp.sum(uj_hat * anchor, axis=-1)  # (N,)
    gap = sim_j - sim_i  # = r_i - r_j with r = 1 - sim
    p = xp.astype(prefer_i, u_i.dtype)
    if paper:
        per_pair = bradley_terry_nll(gap, p)
        dper_dgap = sigmoid(gap) - p
        loss, reduce_cache = reduce(per_pair, reduction)
    else:
        prob = sigmoid(-gap)  # sigmoid(s_i - s_j)
        read = _nll_read_weights(p, prob)
        loss, reduce_cache = reduce(-read * prob, "sum")  # = -prob[label_0]
        dper_dgap = read * prob * (1 - prob)
    cache = Cache(ui_hat, uj_hat, anchor, tuple(refs.shape), ui_cache, uj_cache, anchor_cache, dper_dgap,
                  reduce_cache)
    return loss, cache


def backward(dout, cache: Cache):
    """Gradients ``(du_i, du_j, drefs)`` of :func:`forward`, shapes as the inputs.

    With ``g = r_i - r_j = s_j - s_i`` and ``dg_k = dout_k * dl_k/dg_k``:
    ``du_i_hat = -dg a`` and ``du_j_hat = dg a`` with ``a`` the normalised
    anchor, ``da = dg (u_j_hat - u_i_hat)`` (summed over pairs for shared
    references), then back through the anchor's normalisation and the mean
    (each reference gets ``1/R`` of it). ``dout``:
    a 0-d array or a Python number for "mean"/"sum", an (N,) array for "none".
    Ignore ``drefs`` to hold the anchor fixed.
    """
    xp = backend.namespace(cache.ui_hat)
    dgap = reduce_backward(dout, cache.reduction) * cache.dper_dgap  # (N,)
    dgap = xp.expand_dims(dgap, axis=-1)  # (N, 1)
    du_i = maybe_normalize_backward(-dgap * cache.anchor, cache.ui_norm)
    du_j = maybe_normalize_backward(dgap * cache.anchor, cache.uj_norm)
    danchor = dgap * (cache.uj_hat - cache.ui_hat)  # (N, D)
    if cache.anchor.ndim == 1:  # one anchor shared by every pair
        danchor = xp.sum(danchor, axis=0)  # (D,)
    dmean = maybe_normalize_backward(danchor, cache.anchor_norm)  # (D,) or (N, D)
    refs_shape = cache.refs_shape
    # (1, D) or (N, 1, D) spread over the R references: (R, D) or (N, R, D), a new array
    drefs = xp.broadcast_to(xp.expand_dims(dmean, axis=-2) / refs_shape[-2], refs_shape)
    return du_i, du_j, xp.asarray(drefs, copy=True)


def bradley_terry_nll(g, p):
    """``-[p log sigma(g) + (1 - p) log sigma(-g)]`` element-wise, stable and exact.

    As ``p max(-g, 0) + (1 - p) max(g, 0) + log1p(e^{-|g|})``: no overflow, no
    cancellation. Its derivative in ``g`` is ``sigma(g) - p``.
    """
    xp = backend.namespace(g)
    zero = xp.zeros_like(g)
    return p * xp.maximum(-g, zero) + (1 - p) * xp.maximum(g, zero) + xp.log1p(xp.exp(-xp.abs(g)))


def sigmoid(x):
    """Logistic ``1 / (1 + e^{-x})`` from ``e^{-|x|}`` on both branches: never overflows."""
    xp = backend.namespace(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _nll_read_weights(label, prob):
    """One-hot (N,) at index ``label_0`` in {0, 1}: the one element torch's NLLLoss reads.

    Built from the labels themselves, so it stays on their device without a sync.
    """
    xp = backend.namespace(label)
    first = label[:1]  # (1,)
    weights = xp.concat([1 - first, first, xp.zeros_like(prob)])  # (N + 2,)
    return weights[:prob.shape[0]]


def _check_inputs(u_i, u_j, refs, prefer_i, variant, reduction, normalize) -> None:
    check_choice("variant", variant, VARIANTS)
    check_choice("reduction", reduction, REDUCTIONS)
    check_array("u_i", u_i, ndim=2)
    n, d = u_i.shape
    check_array("u_j", u_j, shape=(n, d))
    check_same_dtype("u_j", u_j, "u_i", u_i)
    check_array("refs", refs)
    check_same_dtype("refs", refs, "u_i", u_i)
    if refs.ndim not in (2, 3):
        raise ValueError(f"refs must have 2 dimensions (R, D) or 3 (N, R, D), got shape {tuple(refs.shape)}")
    want = (None, d) if refs.ndim == 2 else (n, None, d)
    check_array("refs", refs, shape=want, finite=False)
    binary = variant == "official"
    check_unit_interval("prefer_i", prefer_i, binary=binary)
    check_same_length("prefer_i", prefer_i, "u_i", n)
    if binary:
        check_official(reduction, normalize)
        if n < 2 and bool(prefer_i[0]):  # values are 0 or 1 here
            raise ValueError("prefer_i[0] = 1 needs N >= 2 with variant='official' (torch's NLLLoss "
                             "reads element prefer_i[0] of the batch)")
