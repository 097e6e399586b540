"""``refimpl bench gpu``: refimpl on CuPy vs PyTorch CUDA, on one GPU.

The same two workloads as the CPU benchmarks, on the device: one TinyNet +
head + SupCon training step (:mod:`refimpl.bench.tinynet`), and forward +
backward of each loss (:mod:`refimpl.bench.losses`). Before timing, each
workload is run once on NumPy (losses up to N = 4096; TinyNet with the default
convolution algorithm), on CuPy and on torch CUDA and the losses are compared
(float64: 1e-10 relative, float32: 1e-4), so the benchmark never times
different functions and also checks that the CuPy path computes what the
NumPy path does.

The TinyNet step is timed with each of refimpl's convolution algorithms
(``--algorithms``, default ``auto im2col fft``): on CuPy "auto" picks im2col,
a choice nobody has measured; the rows of the three let a GPU run decide
whether it should pick "fft" for some layers there (the default stays as it is
until then).

A third workload is the whole training step with its SGD update (momentum
0.9): refimpl called eagerly, refimpl replayed from a CUDA graph
(:class:`refimpl.graph.CapturedStep`: its hundreds of kernels issued by one
launch; a replayed call includes copying the arguments into the graph's
inputs, as a training loop's would), and PyTorch eager with
``torch.optim.SGD``. The replayed step's loss and new parameters are first
checked against the eager step's. When
CuPy refuses the capture (it refuses cuBLAS calls during stream capture, and
every matrix product is one), the row says why and times the other two.

Timing: device work is asynchronous, so every timed call ends with a device
synchronisation (the refimpl step also reads the loss back as a float, as a
training loop printing its loss would). The two sides alternate call by call
after a warm-up, and the median per call is reported; the ratio is refimpl /
torch (lower is better).
"""
from __future__ import annotations

import json
import statistics
import time

import numpy as np

from .._cli_args import positive_int
from .. import backend, fingerprint
from . import _timing

#: largest loss batch whose NumPy value is computed as a check of the CuPy one
HOST_CHECK_MAX_N = 4096


def _sync_cupy():
    backend.cupy().cuda.Device().synchronize()


def alternating_gpu_medians(calls: dict, syncs: dict, *, repeats: int, warmup: int = 3) -> dict:
    """Median seconds per call of each candidate, alternating call by call, synchronised."""
    for name, call in calls.items():
        for _ in range(warmup):
            call()
        syncs[name]()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            syncs[name]()
            start = time.perf_counter()
            call()
            syncs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def train_step(net, opt, *, temperature: float = 0.1):
    """One pure training step of ``net`` + SupCon + the optimiser ``opt``, in the form a CUDA graph captures.

    ``step(params, state, x, labels, lr) -> (new_params, new_state, loss)``,
    with ``lr`` a 0-d array and ``state["step"]`` a 0-d integer array
    (:func:`refimpl.optim.device_state`) so that nothing is read back to the
    host: the loss and the layers skip their finite checks, and the loss's ``dout`` is the number 1.0
    (:class:`refimpl.graph.CapturedStep` lists the restrictions).

    >>> import numpy as np
    >>> from refimpl import model, optim
    >>> net = model.Sequential([("fc", model.Linear(3, 2))])
    >>> params, opt = net.init(0, "float64"), optim.SGD(momentum=0.9)
    >>> step = train_step(net, opt)
    >>> state = optim.device_state(opt.init_state(params), like=params["fc.w"])
    >>> params, state, loss = step(params, state, np.eye(4, 3), np.array([0, 0, 1, 1]), np.asarray(0.1))
    >>> round(float(loss), 4), int(state["step"])
    (9.2223, 1)
    """
    from ..losses import kernel

    def step(params, state, x, labels, lr):
        z, cache = net.forward(params, x, train=True, input_grad=False)
        loss, loss_cache = kernel.forward(z, labels=labels, temperature=temperature, check_finite=False)
        (dz,) = kernel.backward(1.0, loss_cache)  # a number: written on the device, no host copy
        grads, _ = net.backward(dz, cache, check_finite=False)  # no layer reads its dout back
        new_params, new_state = opt.step(params, grads, state, lr=lr)
        return new_params, new_state, loss

    return step


def tinynet_row(dtype: str, *, batch: int, size: int, kernel_size: int, repeats: int,
                algorithm: str = "auto") -> dict:
    """One TinyNet step on NumPy (checked only, for ``algorithm="auto"``), CuPy and torch CUDA.

    The workload is named as before for "auto" (so that ``--ranges`` still
    groups it with earlier runs), with the algorithm appended otherwise.
    """
    import torch

    from . import tinynet

    cp = backend.cupy()
    net = tinynet._network(kernel_size, algorithm)
    params = net.init(0, dtype)
    x, labels = tinynet._inputs(batch, size, dtype)
    g_params = {k: cp.asarray(v) for k, v in params.items()}
    g_x, g_labels = cp.asarray(x), cp.asarray(labels)
    t_params = {k: torch.from_numpy(np.array(v)).cuda().requires_grad_() for k, v in params.items()}
    t_x, t_labels = torch.from_numpy(x).cuda(), torch.from_numpy(labels).cuda()
    t_depth = torch.zeros(batch, dtype=t_x.dtype, device="cuda")
    ours, _ = tinynet.refimpl_step(net, g_params, g_x, g_labels)
    # the NumPy step once per configuration: on the host the algorithms agree to rounding (tests hold them)
    host = tinynet.refimpl_step(net, params, x, labels)[0] if algorithm == "auto" else ours
    theirs = tinynet.torch_step(t_params, t_x, t_labels, t_depth)
    if not (_timing.same_loss(ours, host, dtype) and _timing.same_loss(ours, theirs, dtype)):
        raise RuntimeError(f"TinyNet {dtype} ({algorithm}): cupy {ours!r}, numpy {host!r}, torch {theirs!r}")
    med = alternating_gpu_medians(
        {"refimpl": lambda: tinynet.refimpl_step(net, g_params, g_x, g_labels),
         "torch": lambda: tinynet.torch_step(t_params, t_x, t_labels, t_depth)},
        {"refimpl": _sync_cupy, "torch": torch.cuda.synchronize}, repeats=repeats)
    suffix = "" if algorithm == "auto" else f" ({algorithm})"
    return {"workload": f"tinynet {kernel_size}x{kernel_size} batch {batch}x1x{size}x{size}{suffix}",
            "dtype": dtype, "loss": ours, "refimpl_s": med["refimpl"], "torch_s": med["torch"],
            "ratio": med["refimpl"] / med["torch"]}


#: learning rate and momentum of the timed training step with its update
TRAIN_LR, TRAIN_MOMENTUM = 0.01, 0.9


def captured_row(dtype: str, *, batch: int, size: int, kernel_size: int, repeats: int) -> dict:
    """The training step with its SGD update: refimpl eager, refimpl replayed from a CUDA graph, torch eager.

    The row's ``refimpl_s`` / ``ratio`` are the eager step's; ``captured_s`` /
    ``captured_ratio`` the replayed one's, or ``captured_error`` says why CuPy
    refused the capture. Every call starts from the same parameters (the
    functions are pure; torch's parameters move, which does not change its time).
    """
    import torch

    from .. import graph, optim
    from . import tinynet, torch_losses

    cp = backend.cupy()
    net, opt = tinynet._network(kernel_size), optim.SGD(momentum=TRAIN_MOMENTUM)
    step = train_step(net, opt)
    host_params = net.init(0, dtype)
    x, labels = tinynet._inputs(batch, size, dtype)
    params = {k: cp.asarray(v) for k, v in host_params.items()}
    state = optim.device_state(opt.init_state(params), like=params["head.fc1.w"])
    args = (params, state, cp.asarray(x), cp.asarray(labels), cp.asarray(TRAIN_LR, dtype=dtype))
    want_params, _, want_loss = step(*args)
    ours = float(want_loss)
    t_params = {k: torch.from_numpy(np.array(v)).cuda().requires_grad_() for k, v in host_params.items()}
    t_opt = torch.optim.SGD(list(t_params.values()), lr=TRAIN_LR, momentum=TRAIN_MOMENTUM)
    t_x, t_labels = torch.from_numpy(x).cuda(), torch.from_numpy(labels).cuda()
    t_depth = torch.zeros(batch, dtype=t_x.dtype, device="cuda")

    def torch_train():
        t_opt.zero_grad(set_to_none=True)
        loss = torch_losses.kernel(tinynet.torch_forward(t_params, t_x), t_labels, t_depth)
        loss.backward()
        t_opt.step()
        return loss

    theirs = float(torch_train().detach())
    if not _timing.same_loss(ours, theirs, dtype):
        raise RuntimeError(f"TinyNet train step {dtype}: refimpl {ours!r}, torch {theirs!r}")
    row = {"workload": f"tinynet {kernel_size}x{kernel_size} train step (SGD) batch {batch}x1x{size}x{size}",
           "dtype": dtype, "loss": ours}
    calls = {"refimpl": lambda: step(*args), "torch": torch_train}
    try:
        captured = graph.CapturedStep(step, *args)
    except graph.CaptureError as error:
        row["captured_error"] = str(error.__cause__ or error)
    else:
        got_params, _, got_loss = captured(*args)
        tol = 1e-4 if dtype == "float32" else 1e-10
        same = _timing.same_loss(float(got_loss), ours, dtype) and all(
            bool(cp.allclose(got_params[k], want_params[k], rtol=tol, atol=tol * 1e-2)) for k in want_params)
        if not same:
            raise RuntimeError(f"TinyNet train step {dtype}: the replayed step differs from the eager one "
                               f"(loss {float(got_loss)!r} vs {ours!r})")
        calls["captured"] = lambda: captured(*args)
    med = alternating_gpu_medians(
        calls, {name: torch.cuda.synchronize if name == "torch" else _sync_cupy for name in calls}, repeats=repeats)
    row.update(refimpl_s=med["refimpl"], torch_s=med["torch"], ratio=med["refimpl"] / med["torch"])
    if "captured" in med:
        row.update(captured_s=med["captured"], captured_ratio=med["captured"] / med["torch"])
    return row


def loss_row(name: str, n: int, dtype: str, *, dim: int, repeats: int) -> dict:
    """Forward + backward of one loss on NumPy (checked only), CuPy and torch CUDA."""
    import torch

    from .losses import Case

    case = Case(name, n, dim, dtype)
    x = case.host_inputs()
    g = {k: backend.cupy().asarray(v) for k, v in x.items()}
    t = {k: torch.from_numpy(v).cuda() for k, v in x.items()}
    ours, theirs = case.refimpl_step(g), case.torch_step(t)
    host = case.refimpl_step(x) if n <= HOST_CHECK_MAX_N else ours  # NumPy takes seconds beyond
    if not (_timing.same_loss(ours, host, dtype) and _timing.same_loss(ours, theirs, dtype)):
        raise RuntimeError(f"{name} N={n} {dtype}: cupy {ours!r}, numpy {host!r}, torch {theirs!r}")
    med = alternating_gpu_medians(
        {"refimpl": lambda: case.refimpl_step(g), "torch": lambda: case.torch_step(t)},
        {"refimpl": _sync_cupy, "torch": torch.cuda.synchronize}, repeats=repeats)
    return {"workload": f"{name} N={n} D={dim}", "dtype": dtype, "loss": ours,
            "refimpl_s": med["refimpl"], "torch_s": med["torch"], "ratio": med["refimpl"] / med["torch"]}


def describe() -> dict:
    """GPU name, driver/runtime and library versions."""
    import torch

    cp = backend.cupy()
    props = cp.cuda.runtime.getDeviceProperties(0)
    return {"gpu": props["name"].decode(), "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cp.cuda.runtime.driverGetVersion(), "cupy": cp.__version__,
            "numpy": np.__version__, "torch": torch.__version__, "torch_cuda": torch.version.cuda}


def ranges(results: list) -> list:
    """Per workload and dtype, the (min, max) of refimpl ms, torch ms and the ratio over runs.

    ``results`` are the dicts that ``--json`` writes, one per run.

    >>> run = lambda r: {"rows": [{"workload": "w", "dtype": "float32", "refimpl_s": r, "torch_s": 0.002,
    ...                            "ratio": r / 0.002}]}
    >>> ranges([run(0.003), run(0.004)])
    [('w', 'float32', (3.0, 4.0), (2.0, 2.0), (1.5, 2.0))]
    """
    rows = {}
    for result in results:
        for row in result["rows"]:
            rows.setdefault((row["workload"], row["dtype"]), []).append(row)
    span = lambda values: (round(min(values), 6), round(max(values), 6))  # noqa: E731
    return [(workload, dtype, span([r["refimpl_s"] * 1e3 for r in rs]), span([r["torch_s"] * 1e3 for r in rs]),
             span([r["ratio"] for r in rs])) for (workload, dtype), rs in rows.items()]


def print_ranges(paths) -> None:
    """The table of :func:`ranges` over the JSON files ``paths`` (markdown, as in the README)."""
    results = [json.load(open(p)) for p in paths]
    devices = sorted({r["device"]["gpu"] for r in results})
    print(f"{len(results)} runs on {', '.join(devices)}\n")
    print("| workload | dtype | refimpl ms | torch ms | refimpl / torch |\n|---|---|---|---|---|")
    for workload, dtype, ours, theirs, ratio in ranges(results):
        print(f"| {workload} | {dtype} | {ours[0]:.1f}-{ours[1]:.1f} | {theirs[0]:.1f}-{theirs[1]:.1f} "
              f"| {ratio[0]:.2f}-{ratio[1]:.2f} |")


def add_arguments(parser) -> None:
    """Options of ``refimpl bench gpu``."""
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "float64"), default=["float32", "float64"],
                        help="precisions to time")
    parser.add_argument("--batches", nargs="+", type=positive_int, default=[64, 256], help="TinyNet batch sizes")
    parser.add_argument("--size", type=positive_int, default=64, help="image height and width (multiple of 32)")
    parser.add_argument("--kernel-sizes", nargs="+", type=positive_int, default=[5, 3],
                        help="TinyNet kernel sizes to time (5: the paper's network)")
    parser.add_argument("--algorithms", nargs="+", choices=("auto", "im2col", "fft"), default=["auto", "im2col", "fft"],
                        help="refimpl's convolution algorithms to time in the TinyNet step (on CuPy auto picks "
                             "im2col, unmeasured)")
    parser.add_argument("--no-captured", dest="captured", action="store_false",
                        help="skip the training step with its update (eager, CUDA graph replay, torch)")
    parser.add_argument("--losses", nargs="+", default=["margin", "preference", "kernel", "adacon"],
                        help="losses to time against PyTorch CUDA")
    parser.add_argument("--sizes", nargs="+", type=positive_int, default=[1024, 4096, 16384], help="loss batch sizes N")
    parser.add_argument("--dim", type=positive_int, default=128, help="embedding dimension D")
    parser.add_argument("--repeats", type=positive_int, default=21, help="timed calls per side")
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, 3 repeats")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--ranges", nargs="+", metavar="JSON",
                        help="print the ranges over earlier runs' --json files instead of running (no GPU needed)")


def main(args) -> int:
    """Run the benchmark; 0 on success, 2 without CuPy or torch CUDA."""
    if args.ranges:
        print_ranges(args.ranges)
        return 0
    try:
        import torch
    except ImportError:
        print("refimpl bench gpu needs torch with CUDA")
        return 2
    if not (backend.cupy_available() and torch.cuda.is_available()):
        print("refimpl bench gpu needs CuPy and torch, both with a CUDA device")
        return 2
    if args.quick:
        args.batches, args.size, args.sizes, args.repeats = [8], 32, [256], 3
    info, host = describe(), fingerprint.fingerprint()  # the host's BLAS computes the NumPy checks
    print(" ".join(f"{k} {v};" for k, v in info.items()))
    print(f"host: {fingerprint.describe(host)}")
    print(f"{'workload':<40}{'dtype':>8}  {'refimpl ms':>10}  {'torch ms':>9}  {'ratio':>6}")
    rows = []

    def show(row):
        rows.append(row)
        if "captured_s" in row:
            captured = f"  replayed {row['captured_s'] * 1e3:.2f} ms, {row['captured_ratio']:.2f}x"
        elif "captured_error" in row:
            captured = f"  not captured: {row['captured_error']}"
        else:
            captured = ""
        print(f"{row['workload']:<40}{row['dtype']:>8}  {row['refimpl_s'] * 1e3:>10.2f}  "
              f"{row['torch_s'] * 1e3:>9.2f}  {row['ratio']:>5.2f}x{captured}", flush=True)

    for dtype in args.dtypes:
        for kernel_size in args.kernel_sizes:
            for batch in args.batches:
                for algorithm in args.algorithms:
                    show(tinynet_row(dtype, batch=batch, size=args.size, kernel_size=kernel_size,
                                     repeats=args.repeats, algorithm=algorithm))
                if args.captured:
                    show(captured_row(dtype, batch=batch, size=args.size, kernel_size=kernel_size,
                                      repeats=args.repeats))
        for name in args.losses:
            for n in args.sizes:
                show(loss_row(name, n, dtype, dim=args.dim, repeats=args.repeats))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": info, "fingerprint": host, "rows": rows}, f, indent=2)
    return 0
