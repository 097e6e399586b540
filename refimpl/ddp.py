"""Check a data-parallel (DDP, all-gather) contrastive loss against refimpl's single-process gradient.

In a DistributedDataParallel run with W processes, rank ``r`` embeds its shard
``S_r`` of the batch (M rows), all-gathers the embeddings, and computes the
loss of its own anchors against the gathered batch. refimpl's ``anchors=``
(:func:`refimpl.losses.kernel.forward`, :func:`refimpl.losses.adacon.forward`)
is exactly that per-rank loss, in float64 on one process:

.. math::

    L_r = \\frac{1}{M} \\sum_{t \\in S_r} \\ell_t(z), \\qquad \\sum_r L_r = L

In plain text: ``L_r = (1/M) sum_{t in S_r} l_t(z)`` and ``sum_r L_r = L``,

and, with the loss multiplied by a factor :math:`\\lambda` before ``backward``:

* the all-gather's backward sums the gradients of every rank's copy, so the
  gradient that reaches rank ``r``'s own embeddings is
  :math:`\\sum_s \\lambda\\, \\partial L_s / \\partial z_{S_r} = \\lambda\\,
  \\partial L / \\partial z_{S_r}`;
* DDP then *averages* the parameter gradients over the W ranks:
  :math:`\\frac{1}{W} \\sum_r \\lambda\\, \\frac{\\partial L}{\\partial
  z_{S_r}} \\frac{\\partial z_{S_r}}{\\partial \\theta} = \\frac{\\lambda}{W}
  \\frac{\\partial L}{\\partial \\theta}`.

So ``lambda = W`` (loss times the world size) gives the single-process
gradient; forgetting it gives gradients W times too small. The classic
mistakes, each in :func:`example_step` and caught by :func:`check`:

* ``"plain"``: ``torch.distributed.all_gather`` carries no gradient, so the
  other ranks' rows are constants: each rank keeps only the anchor side of its
  similarities and loses the gradient of its rows as the others' negatives and
  positives.
* ``"unscaled"``: the right gather, the loss not multiplied by W.
* ``"replace_local"``: the gathered copy of the rank's own rows replaced by
  the rows with their gradient (the "local-slice replacement" trick) while
  computing the loss of the local anchors only: the other ranks' anchors'
  gradients with respect to this rank's rows never arrive. The trick is right
  only when every rank computes the loss of all M anchors (``"replace_all"``,
  M^2 work on every rank; also times W).

The right ones: ``"autograd"`` (:func:`all_gather_with_gradient`, whose
backward sums over ranks) and ``"replace_all"``.

Check your own: write a function ``step(rank, world_size, *args)`` (importable
from a module, as spawned processes import it) that runs one training step of
your DDP loss on its shard (:func:`shards`) of float64 inputs ``x`` (M, F)
mapped by a bias-free linear layer of weight (D, F), and returns ``dict(dz=...,
dweight=..., loss=...)`` (see :func:`check`); then::

    results = ddp.run(step, 2, my_args)                    # 2 processes, gloo, this machine
    report = ddp.check(results, x, weight, functools.partial(kernel.forward, labels=labels),
                       kernel.backward)
    print(report)                                          # per rank: got vs expected, and the factor

torch is imported inside the functions (the ``torch`` extra).
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import gc
import os
import pickle
import tempfile
import time

import numpy as np

#: the gathering variants of :func:`example_step`: right, then the classic mistakes
RIGHT = ("autograd", "replace_all")
WRONG = ("plain", "unscaled", "replace_local")


def shards(m: int, world_size: int) -> list:
    """Row indices of each rank: ``world_size`` contiguous, equal shards (all-gather needs equal sizes).

    >>> [s.tolist() for s in shards(6, 3)]
    [[0, 1], [2, 3], [4, 5]]
    """
    if m % world_size:
        raise ValueError(f"the batch ({m} rows) must split into {world_size} equal shards for all_gather")
    size = m // world_size
    return [np.arange(r * size, (r + 1) * size) for r in range(world_size)]


# ------------------------------------------------------------------------- running W processes


def run(step, world_size: int, *args, timeout: float = 60.0, startup_timeout: float = 300.0) -> list:
    """``step(rank, world_size, *args)`` in ``world_size`` spawned processes of one gloo group; the results.

    The group runs on this machine, one thread per process, and meets through
    a file in a temporary folder (no TCP port to pick, so none to lose to
    another program between picking and binding it). The run is stopped
    ``timeout`` seconds after every rank has joined the group, so a hung
    collective raises ``TimeoutError`` instead of hanging; and
    ``startup_timeout`` seconds after the start if the ranks never all join
    (each spawned interpreter imports torch first: seconds, a minute or more
    on a loaded machine, which must not count against the step). Results
    travel back pickled, through the same folder. ``step`` must be
    importable (a module-level function).
    """
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out:
        context = mp.start_processes(_worker, args=(world_size, step, args, out, startup_timeout + timeout),
                                     nprocs=world_size, join=False, start_method="spawn")
        start, deadline = time.monotonic(), None
        while not context.join(timeout=0.5):
            now = time.monotonic()
            if deadline is None and all(os.path.exists(_joined(out, r)) for r in range(world_size)):
                deadline = now + timeout
            if deadline is not None and now > deadline:
                late = f"did not finish within {timeout} s of joining the group"
            elif deadline is None and now - start > startup_timeout:
                late = f"did not all join the group within {startup_timeout} s"
            else:
                continue
            for process in context.processes:
                process.terminate()
            for process in context.processes:
                process.join()  # gone before their folder is removed
            raise TimeoutError(f"the {world_size} processes {late}")
        results = []
        for rank in range(world_size):
            with open(os.path.join(out, f"rank{rank}.pkl"), "rb") as f:
                results.append(pickle.load(f))
    return results


def _joined(out, rank) -> str:
    return os.path.join(out, f"rank{rank}.joined")


def _worker(rank, world_size, step, args, out, timeout):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out, 'group')}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=timeout))
    open(_joined(out, rank), "w").close()
    try:
        result = step(rank, world_size, *args)
        with open(os.path.join(out, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(result, f)
        # Tear down in order: the step's DDP reducer (freed by the collector, it sits in reference
        # cycles) before the group, and no rank closes its connections while another still reads
        # from them (gloo aborts the process then).
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------- the check


@dataclasses.dataclass(frozen=True)
class Entry:
    """One quantity of one rank: the largest error relative to the largest expected entry, and the factor
    ``c`` that best maps expected to got (``got ~ c * expected``: 1 when right, 1/W for a missing W)."""

    rank: int
    quantity: str
    error: float
    factor: float
    ok: bool


@dataclasses.dataclass(frozen=True)
class Report:
    entries: list
    rtol: float

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries)

    def __str__(self) -> str:
        lines = [f"data-parallel check: {'PASS' if self.ok else 'FAIL'} (relative tolerance {self.rtol:g})",
                 f"{'rank':>4}  {'quantity':<8}  {'rel. error':>10}  {'got / expected':>14}  verdict"]
        lines += [f"{e.rank:>4}  {e.quantity:<8}  {e.error:>10.2e}  {e.factor:>14.6g}  {'ok' if e.ok else 'WRONG'}"
                  for e in self.entries]
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise AssertionError(str(self))


def expected(x, weight, forward, backward, world_size: int) -> list:
    """What each rank of a right DDP run holds, from refimpl in float64 on one process.

    For ``z = x @ weight.T`` and the shards of :func:`shards`: per rank, ``loss``
    = the loss of its anchors (``forward(z, anchors=shard)``, "mean" over all M
    rows), ``dz`` = W times the full gradient on its rows (the loss scaled by
    W, the all-gather's backward summed over ranks), ``dweight`` = the
    single-process gradient ``dL/dweight`` (after DDP's average).
    """
    x, weight = np.asarray(x, dtype=np.float64), np.asarray(weight, dtype=np.float64)
    z = x @ weight.T  # (M, F) @ (F, D)
    parts = shards(z.shape[0], world_size)
    losses, dz = [], np.zeros_like(z)
    for anchors in parts:
        loss, cache = forward(z, anchors=anchors)
        losses.append(float(loss))
        dz += backward(1.0, cache)[0]  # each rank's loss reaches every row
    dweight = dz.T @ x  # (D, M) @ (M, F)
    return [dict(loss=losses[r], dz=world_size * dz[s], dweight=dweight) for r, s in enumerate(parts)]


def check(results: list, x, weight, forward, backward, *, rtol: float = 1e-8) -> Report:
    """Compare each rank's ``results[r]`` with :func:`expected`.

    ``results[r]``: a dict with ``dz`` (the gradient that reached rank r's own
    embeddings, ``z_local.grad``), ``dweight`` (the weight's gradient after
    DDP's average) and optionally ``loss`` (the loss of its own anchors, before
    any scaling; leave it out when every rank computes all anchors).
    ``forward(z, anchors=...)``/``backward`` are refimpl's loss with its other
    arguments bound (``functools.partial``).
    """
    want = expected(x, weight, forward, backward, len(results))
    entries = []
    for rank, (got, ref) in enumerate(zip(results, want)):
        for quantity in ("loss", "dz", "dweight"):
            if got.get(quantity) is None:
                continue
            g, w = np.asarray(got[quantity], dtype=np.float64), np.asarray(ref[quantity], dtype=np.float64)
            scale = max(np.abs(w).max(initial=0.0), np.finfo(np.float64).tiny)
            error = float(np.abs(g - w).max(initial=0.0) / scale) if g.shape == w.shape else float("inf")
            factor = float(np.sum(g * w) / np.sum(w * w)) if g.shape == w.shape and np.any(w) else float("nan")
            entries.append(Entry(rank, quantity, error, factor, error <= rtol))
    return Report(entries, rtol)


# ------------------------------------------------------------------------- a worked example


def all_gather_with_gradient(z):
    """Every rank's ``z`` (n, ...) concatenated in rank order, (W n, ...), with a gradient path.

    ``torch.distributed.all_gather`` returns constants, and torch 2.13
    deprecates ``torch.distributed.nn.functional.all_gather`` for a private
    module's version; the autograd function is a few lines:

    * forward: an all-gather;
    * backward: rank ``s`` holds ``g_s``, the gradient of its own loss
      :math:`L_s` with respect to the whole gathered (W n, ...) tensor. Rank
      ``r``'s rows reach every rank's loss through its copy there, so their
      gradient is :math:`\\sum_s \\partial L_s / \\partial z_{S_r}`: the
      sum of every rank's ``g_s`` (an all-reduce with SUM), of which rank
      ``r`` keeps its own slice. Keeping only its own ``g_r``'s slice drops the
      other ranks' anchors' gradients (``"replace_local"``'s mistake);
      averaging instead of summing divides by W a second time, on top of DDP's
      average.

    Needs an initialised process group with equal ``z`` shapes on every rank.
    """
    return _all_gather_function().apply(z)


@functools.cache
def _all_gather_function():
    import torch
    import torch.distributed as dist

    class AllGather(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, z.contiguous())
            return torch.cat(parts)

        @staticmethod
        def backward(ctx, grad):
            total = grad.contiguous().clone()  # all_reduce works in place; autograd's grad is not ours
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            n = total.shape[0] // dist.get_world_size()
            return total[dist.get_rank() * n:(dist.get_rank() + 1) * n]

    return AllGather


def example_data(m: int = 12, features: int = 5, dim: int = 4, seed: int = 0) -> dict:
    """Inputs of :func:`example_step`: ``x`` (M, F), ``weight`` (D, F), labels, depth, sigma, temperature."""
    g = np.random.default_rng(seed)
    return dict(x=g.standard_normal((m, features)), weight=g.standard_normal((dim, features)),
                labels=g.integers(0, 3, m), depth=g.uniform(0, 1, m), sigma=0.5, temperature=0.5)


def torch_wsp_loss(torch, z_anchors, z_all, anchors, labels, depth, sigma, temperature):
    """WSP Eq. 4 (paper variant) of the rows ``anchors`` against all of ``z_all``, summed over the
    anchors and divided by the whole batch M: refimpl's ``kernel.forward(..., anchors=anchors)``."""
    f = torch.nn.functional
    m = z_all.shape[0]
    sim = f.normalize(z_anchors, dim=1) @ f.normalize(z_all, dim=1).T / temperature  # (A, M)
    own = anchors[:, None] == torch.arange(m)[None, :]  # (A, M) the anchor's own column
    w = (labels[anchors][:, None] == labels[None, :]).to(sim.dtype)
    w = (w * torch.exp(-(depth[anchors][:, None] - depth[None, :]) ** 2 / (2 * sigma**2))).masked_fill(own, 0.0)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)  # 0 without positives
    log_prob = torch.log_softmax(sim.masked_fill(own, float("-inf")), dim=1).masked_fill(own, 0.0)
    return -(w * log_prob).sum() / m


def example_step(rank, world_size, data, gathers=RIGHT + WRONG):
    """One DDP step of the WSP loss per gathering variant (module docstring), as a user writes it.

    A bias-free ``torch.nn.Linear`` in ``DistributedDataParallel`` embeds this
    rank's shard of ``data["x"]`` in float64; returns ``{gather: dict(loss,
    dz, dweight)}`` for :func:`check`.
    """
    import torch
    import torch.distributed as dist

    x, weight = (torch.from_numpy(data[k]) for k in ("x", "weight"))
    labels, depth = torch.from_numpy(data["labels"]), torch.from_numpy(data["depth"])
    loss_kwargs = dict(labels=labels, depth=depth, sigma=data["sigma"], temperature=data["temperature"])
    m = x.shape[0]
    mine = torch.from_numpy(shards(m, world_size)[rank])
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(weight)
    model = torch.nn.parallel.DistributedDataParallel(linear)  # averages the gradients over ranks
    results = {}
    for gather in gathers:
        linear.weight.grad = None
        z_local = model(x[mine])  # (M / W, D)
        z_local.retain_grad()
        scale, anchors, z_anchors = world_size, mine, z_local
        if gather in ("autograd", "unscaled"):
            z_all = all_gather_with_gradient(z_local)  # backward: sum over ranks
            z_anchors = z_all[mine]
            scale = 1 if gather == "unscaled" else world_size
        else:
            parts = [torch.empty_like(z_local) for _ in range(world_size)]
            dist.all_gather(parts, z_local.detach())  # no gradient path
            if gather != "plain":
                parts[rank] = z_local  # local-slice replacement: the own rows carry the gradient
            z_all = torch.cat(parts)
            if gather == "replace_all":
                anchors, z_anchors = torch.arange(m), z_all
        loss = torch_wsp_loss(torch, z_anchors, z_all, anchors, **loss_kwargs)
        (scale * loss).backward()
        results[gather] = dict(loss=None if gather == "replace_all" else float(loss.detach()),
                               dz=z_local.grad.numpy().copy(), dweight=linear.weight.grad.numpy().copy())
    return results


def main(argv=None) -> int:
    """``python -m refimpl.ddp``: run :func:`example_step` on W processes and print each variant's check."""
    import argparse
    import functools

    from refimpl import ddp  # the importable module (this file may run as __main__)
    from refimpl.losses import kernel

    parser = argparse.ArgumentParser(prog="python -m refimpl.ddp", description=main.__doc__)
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--rows", type=int, default=12, help="batch size M (a multiple of the world size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = example_data(m=args.rows, seed=args.seed)
    results = run(ddp.example_step, args.world_size, data)
    loss = functools.partial(kernel.forward, labels=data["labels"], depth=data["depth"], sigma=data["sigma"],
                             temperature=data["temperature"])
    failed = []
    for gather in RIGHT + WRONG:
        report = check([r[gather] for r in results], data["x"], data["weight"], loss, kernel.backward)
        print(f"\n{gather} ({'a right gather' if gather in RIGHT else 'a classic mistake'})\n{report}")
        failed += [gather] if report.ok != (gather in RIGHT) else []
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
