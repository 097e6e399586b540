"""``refimpl bench tinynet``: one TinyNet + head training step, refimpl vs PyTorch CPU.

One step = forward of TinyNet and the 256-256-64 head on a batch of images
(64 x 1 x 64 x 64 by default), the SupCon loss on the 64-d projections
(:mod:`refimpl.losses.kernel` with labels only), and the backward pass to every
parameter gradient. The PyTorch side is the same network with the same
parameters, written with ``torch.nn.functional`` and differentiated by
autograd. Neither side computes the gradient with respect to the images
(PyTorch: the input does not require grad; refimpl: ``input_grad=False``). Both run
on the same number of threads in one process, one call each per round after a
pause, for ``--rounds`` rounds (:func:`refimpl.bench._timing.undisturbed_rounds`);
the ratio reported is the median of the per-round ratios, with their range.
The two losses are compared first, so the benchmark never times different
functions.

Two encoders are timed by default: 5x5 convolutions (the paper's 1.1M
parameters, :func:`refimpl.model.tinynet`'s default) and 3x3 convolutions (the
five 3x3 layers the benchmark was specified with); ``--kernel-sizes`` picks.

``--workers N`` (N > 1) times refimpl's data-parallel step
(:class:`refimpl.parallel.DataParallel`): the batch split across N threads,
each with one BLAS thread, the loss on the whole batch in
between; PyTorch keeps its ``--threads``; with ``--processes`` the workers
are processes instead of threads. Its loss is checked against PyTorch's as
the serial step's is.

``--profile`` adds where the time goes: refimpl per layer (forward and
backward timed layer by layer, serial) and PyTorch per operator
(``torch.profiler``); with ``--workers`` also each shard's step timed alone
and the shards at once in plain threads, the floor any split over threads
can reach on the machine, and the shards at once in processes
(:func:`profile_split`).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import time

import numpy as np

from .._cli_args import positive_int
from . import _timing

DTYPES = ("float32", "float64")
#: Conv2d's algorithms (refimpl.model.CONV_ALGORITHMS, without importing the model here)
CONV_ALGORITHMS = ("auto", "im2col", "fft")
#: samples per weak-label class in the batch (every anchor has positives).
CLASS_SIZE = 8


def _network(kernel_size: int, algorithm: str = "auto"):
    from .. import model

    encoder = model.tinynet(kernel_size=kernel_size, algorithm=algorithm)
    return model.Sequential([("encoder", encoder), ("head", model.mlp_head(256, 256, 64))])


def _inputs(batch: int, size: int, dtype: str, seed: int = 0):
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((batch, 1, size, size)).astype(dtype)
    labels = np.arange(batch) % max(1, batch // CLASS_SIZE)  # (N,) classes of CLASS_SIZE members
    return x, labels


def refimpl_step(net, params, x, labels):
    """Forward and backward in refimpl; returns the loss (float) and the gradients."""
    from ..losses import kernel

    z, cache = net.forward(params, x, train=True, input_grad=False)
    loss, loss_cache = kernel.forward(z, labels=labels, temperature=0.1)
    (dz,) = kernel.backward(1.0, loss_cache)  # a Python number: any backend
    grads, _ = net.backward(dz, cache)
    return float(loss), grads


def torch_forward(params: dict, x):
    """The same network in ``torch.nn.functional``; ``params`` as torch tensors, same names."""
    import torch.nn.functional as F

    for i in range(1, 6):
        w = params[f"encoder.conv{i}.w"]
        x = F.max_pool2d(F.relu(F.conv2d(x, w, params[f"encoder.conv{i}.b"], padding=w.shape[-1] // 2)), 2)
    x = x.mean(dim=(2, 3))  # global average pooling, (N, 256)
    x = F.relu(F.linear(x, params["head.fc1.w"], params["head.fc1.b"]))
    return F.linear(x, params["head.fc2.w"], params["head.fc2.b"])


def torch_step(params: dict, x, labels, depth):
    """Forward and backward with autograd (the loss of :mod:`refimpl.bench.torch_losses`)."""
    from . import torch_losses

    for p in params.values():
        p.grad = None
    loss = torch_losses.kernel(torch_forward(params, x), labels, depth)  # depth 0: SupCon
    loss.backward()
    return float(loss.detach())


def _leaves(layer, prefix=""):
    """(full name, layer) of every non-Sequential layer, in order."""
    if hasattr(layer, "layers"):
        for name, sub in layer.layers:
            yield from _leaves(sub, f"{prefix}{name}.")
    else:
        yield prefix.rstrip("."), layer


def profile_refimpl(net, params, x, labels, repeats: int) -> list:
    """Median forward and backward seconds of each layer (and the loss) over ``repeats`` steps."""
    from ..losses import kernel
    from ..model import subtree

    leaves = list(_leaves(net))
    first = next(i for i, (_, layer) in enumerate(leaves) if layer.param_shapes())
    times = {name: ([], []) for name, _ in leaves + [("loss", None)]}
    for _ in range(repeats):
        caches, out = [], x
        for i, (name, layer) in enumerate(leaves):
            flag = {"input_grad": False} if i == first else {}  # as in refimpl_step
            start = time.perf_counter()
            out, cache = layer.forward(subtree(params, name), out, train=True, state={}, **flag)
            times[name][0].append(time.perf_counter() - start)
            caches.append(cache)
        start = time.perf_counter()
        _, loss_cache = kernel.forward(out, labels=labels, temperature=0.1)
        times["loss"][0].append(time.perf_counter() - start)
        start = time.perf_counter()
        (dout,) = kernel.backward(1.0, loss_cache)
        times["loss"][1].append(time.perf_counter() - start)
        for (name, layer), cache in zip(leaves[first:][::-1], caches[first:][::-1]):
            start = time.perf_counter()
            _, dout = layer.backward(dout, cache)
            times[name][1].append(time.perf_counter() - start)
    return [(name, float(np.median(f)), float(np.median(b))) for name, (f, b) in times.items()]


def profile_split(net, params, x, workers: int, repeats: int) -> dict:
    """The floor of any split of the step: median seconds of each shard's forward and backward alone
    (serial), of all shards at once in plain threads (no pool, no exchange), with the process's page faults
    and kernel time per threaded call (``resource.getrusage``, Unix), and of all shards at once in processes
    (each timed in its own process, started together at a barrier)."""
    import resource
    import threading

    from .. import _parallel_processes
    from ..parallel import _shards, shard_sizes

    shards = [np.ascontiguousarray(s) for s in _shards(x, shard_sizes(x.shape[0], workers))]

    def together():
        threads = [threading.Thread(target=_shard_step, args=(net, params, shard)) for shard in shards]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    alone = [_median_seconds(functools.partial(_shard_step, net, params, s), repeats) for s in shards]
    before = resource.getrusage(resource.RUSAGE_SELF)
    in_threads = _median_seconds(together, repeats)
    after = resource.getrusage(resource.RUSAGE_SELF)
    calls = repeats + 1
    context = _parallel_processes.context()
    barrier, results = context.Barrier(len(shards)), context.SimpleQueue()
    processes = [context.Process(target=_timed_in_process, args=(net, params, shard, repeats, barrier, results))
                 for shard in shards]
    for process in processes:
        process.start()
    in_processes = [results.get() for _ in processes]
    for process in processes:
        process.join()
    # page faults and kernel time per call of the threaded shards: the allocator's share of the contention
    return {"shard_alone_s": alone, "shards_in_threads_s": in_threads,
            "page_faults_per_call": (after.ru_minflt - before.ru_minflt) / calls,
            "system_s_per_call": (after.ru_stime - before.ru_stime) / calls,
            "shards_in_processes_s": max(in_processes)}


def _shard_step(net, params, shard) -> None:
    """One shard's forward and backward (the input gradient skipped), as a worker of the split step runs it."""
    out, cache = net.forward(params, shard, train=True, input_grad=False)
    net.backward(np.ones_like(out), cache)


def _median_seconds(fn, repeats: int, before=None) -> float:
    """``fn()`` once untimed, then the median seconds of ``repeats`` timed calls (each after ``before()``)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _timed_in_process(net, params, shard, repeats: int, barrier, results) -> None:
    """In a worker process: :func:`_median_seconds` of the shard's step, each call started at ``barrier``
    with the other shards'; puts the result."""
    from .._parallel_processes import one_blas_thread

    one_blas_thread()
    results.put(_median_seconds(functools.partial(_shard_step, net, params, shard), repeats, before=barrier.wait))


def _print_profile(rows) -> None:
    total = sum(f + b for _, f, b in rows)
    print(f"  {'layer':<20}{'forward ms':>11}{'backward ms':>12}{'share':>7}")
    for name, f, b in sorted(rows, key=lambda r: -(r[1] + r[2])):
        print(f"  {name:<20}{f * 1e3:>11.2f}{b * 1e3:>12.2f}{(f + b) / total:>7.1%}")


def run(dtype: str, *, batch: int, size: int, kernel_size: int, rounds: int, pause: float,
        profile: bool, algorithm: str = "auto", workers: int = 1, processes: bool = False) -> dict:
    """Check that both sides give the same loss, then time them; one result row.

    ``workers > 1``: refimpl's step runs on a :class:`refimpl.parallel.DataParallel` pool of that many threads
    (``processes``: that many worker processes).
    """
    with contextlib.ExitStack() as stack:
        net = _network(kernel_size, algorithm)
        step_net = net
        if workers > 1:
            from ..parallel import DataParallel

            step_net = stack.enter_context(DataParallel(net, workers, processes=processes))
        return _run(net, step_net, dtype, batch=batch, size=size, kernel_size=kernel_size, rounds=rounds,
                    pause=pause, profile=profile, algorithm=algorithm, workers=workers, processes=processes)


def _run(net, step_net, dtype, *, batch, size, kernel_size, rounds, pause, profile, algorithm, workers, processes):
    import torch

    params = net.init(0, dtype)
    x, labels = _inputs(batch, size, dtype)
    t_params = {k: torch.from_numpy(np.array(v)).requires_grad_() for k, v in params.items()}
    t_x, t_labels = torch.from_numpy(x), torch.from_numpy(labels)
    t_depth = torch.zeros(batch, dtype=t_x.dtype)
    ours, _ = refimpl_step(step_net, params, x, labels)
    theirs = torch_step(t_params, t_x, t_labels, t_depth)
    if not _timing.same_loss(ours, theirs, dtype):
        raise RuntimeError(f"{dtype}: refimpl loss {ours!r} != torch loss {theirs!r}")
    timing = _timing.undisturbed_rounds(
        {"refimpl": lambda: refimpl_step(step_net, params, x, labels),
         "torch": lambda: torch_step(t_params, t_x, t_labels, t_depth)},
        rounds=rounds, pause=pause)
    row = {"dtype": dtype, "batch": batch, "size": size, "kernel_size": kernel_size, "algorithm": algorithm,
           "workers": workers, "processes": processes and workers > 1, "loss": ours,
           "refimpl_s": timing.median("refimpl"), "torch_s": timing.median("torch"),
           "ratio": timing.ratio, "ratio_min": min(timing.ratios), "ratio_max": max(timing.ratios),
           "seconds": timing.seconds}
    if profile:
        row["refimpl_layers"] = profile_refimpl(net, params, x, labels, repeats=3)
        if workers > 1:
            row["split_floor"] = profile_split(net, params, x, workers, repeats=5)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            torch_step(t_params, t_x, t_labels, t_depth)
        row["torch_ops"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return row


def add_arguments(parser) -> None:
    """Options of ``refimpl bench tinynet``."""
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES), help="precisions to time")
    parser.add_argument("--batch", type=positive_int, default=64, help="images per training step")
    parser.add_argument("--size", type=positive_int, default=64, help="image height and width (multiple of 32)")
    parser.add_argument("--kernel-sizes", nargs="+", type=positive_int, default=[5, 3],
                        help="TinyNet kernel sizes to time: 5 gives the paper's 1.1M parameters "
                             "(the model's default), 3 a lighter stack of five 3x3 layers")
    parser.add_argument("--algorithms", nargs="+", choices=CONV_ALGORITHMS, default=["auto"],
                        help="refimpl's convolution algorithms to time (Conv2d(algorithm=...)): auto picks im2col "
                             "for conv1 and FFT for the others on the CPU")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="threads of every BLAS and of PyTorch (the command restarts with them set)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="refimpl's step split across this many threads (refimpl.parallel.DataParallel, "
                             "one BLAS thread each); 1: the serial step on --threads")
    parser.add_argument("--processes", action="store_true",
                        help="with --workers: the workers are processes (DataParallel(processes=True); no shared "
                             "allocator or interpreter lock) instead of threads")
    parser.add_argument("--rounds", type=positive_int, default=11, help="timed rounds, one call of each side per round")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds of rest before every timed call")
    parser.add_argument("--profile", action="store_true", help="time refimpl layer by layer, torch per op")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 4, 32 x 32 images, one round without pauses")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def main(args) -> int:
    """Run the benchmark; 0 on success, 2 without torch."""
    try:
        import torch
    except ImportError:
        print("refimpl bench tinynet needs torch: pip install 'refimpl[torch]'")
        return 2
    if _timing.needs_relaunch(args.threads):
        return _timing.relaunch(args.argv, args.threads)
    if args.quick:
        args.batch, args.size, args.rounds, args.pause = 4, 32, 1, 0.0
    with _timing.limited_threads(args.threads) as how:  # restored when the benchmark returns
        machine = _timing.machine()
        kind = "processes" if args.processes else "threads"
        refimpl_how = (f"refimpl's step on {args.workers} {kind} (DataParallel, one BLAS thread each)"
                       if args.workers > 1 else "refimpl's step serial")
        print(f"threads: {how}; {refimpl_how}; torch {torch.__version__} on "
              f"{torch.get_num_threads()} threads")
        print(_timing.describe(machine))
        print(f"{args.rounds} rounds, {args.pause} s pause before every call; ratio = median of per-round "
              "ratios refimpl / torch [range]")
        print(f"one training step: TinyNet + head + SupCon, batch {args.batch} x 1 x {args.size} x {args.size}")
        rows = []
        for kernel_size, algorithm, dtype in itertools.product(args.kernel_sizes, args.algorithms, args.dtypes):
            row = run(dtype, batch=args.batch, size=args.size, kernel_size=kernel_size, rounds=args.rounds,
                      pause=args.pause, profile=args.profile, algorithm=algorithm, workers=args.workers,
                      processes=args.processes)
            rows.append(row)
            print(f"{kernel_size}x{kernel_size} convolutions ({algorithm}), {dtype}: "
                  f"refimpl {row['refimpl_s'] * 1e3:.1f} ms, "
                  f"torch {row['torch_s'] * 1e3:.1f} ms, ratio {row['ratio']:.2f} "
                  f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}]", flush=True)
            if args.profile:
                print(f"refimpl by layer ({kernel_size}x{kernel_size}, {algorithm}, {dtype}):")
                _print_profile(row["refimpl_layers"])
                if "split_floor" in row:
                    floor = row["split_floor"]
                    print("  shards alone (one thread each, serially): "
                          + ", ".join(f"{t * 1e3:.1f} ms" for t in floor["shard_alone_s"])
                          + f"; all shards at once in plain threads: {floor['shards_in_threads_s'] * 1e3:.1f} ms "
                          "(the floor of any split over threads), with "
                          f"{floor['page_faults_per_call']:.0f} page faults and "
                          f"{floor['system_s_per_call'] * 1e3:.1f} ms of kernel time per call; "
                          f"at once in processes: {floor['shards_in_processes_s'] * 1e3:.1f} ms "
                          "(the slowest shard's median)")
                print(f"torch by operator ({kernel_size}x{kernel_size}, {dtype}):\n{row['torch_ops']}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"threads": how, "workers": args.workers, "processes": args.processes, "machine": machine,
                           "load_after": _timing.machine()["load_1min"],
                           "rounds": args.rounds, "pause_s": args.pause, "rows": rows}, f, indent=2)
    return 0
