"""The worker processes of :class:`refimpl.parallel.DataParallel` with ``processes=True``.

Every rank runs in a process of its own, which keeps its network and the
caches of its latest forward; the caller sends the work and waits. Per call, a
command goes down each worker's pipe and a reply comes back: the running
statistics, the output and the input gradient are pickled through the pipe
(small for an embedding network); the parameters, the gradients and the
shards cross through shared memory made when the pool opens: the caller
copies the parameters into one buffer (sized by the network's parameter
shapes) that every worker reads in place and each shard into its worker's
input buffer (``INPUT_BYTES``; a larger shard goes through the pipe), and
each worker writes its gradients into a buffer of its own, which the caller
sums.
Batch norm meets at :class:`SharedExchange`, the all-gather of
``refimpl.parallel._Exchange`` across processes.

Why processes: two threads of one process share its allocator and address
space, and the pages that glibc hands back to the kernel and faults in again
make the two threads contend in the kernel. ``refimpl bench tinynet
--workers 2 --profile`` times the shards of a step alone, at once in two
threads and at once in two processes (``split_floor`` in its JSON;
docs/guide/benchmarks.md has the figures).
"""
from __future__ import annotations

import multiprocessing
import pickle
import struct

import numpy as np

#: bytes for one worker's value in one all-gather (batch norm's per-channel statistics: kilobytes)
SLOT_BYTES = 1 << 20
#: bytes of each worker's input buffer (a larger shard goes through the pipe instead)
INPUT_BYTES = 16 << 20


def context():
    """forkserver where the platform has it, else spawn: never a fork of the caller's process.

    Forking a process whose libraries keep thread pools can deadlock: SciPy's FFT thread pool is shut down
    before every fork and restarted after, and two forks in a row (a pool's two workers) hung the test
    suite once in the second shutdown. The fork server is a clean process started once; the workers are
    forked from it and import what the pickled network needs.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class SharedExchange:
    """All-gather between the processes of one pool: each puts a (picklable) value in, all get every one's.

    Each rank pickles its value into its slot of a shared buffer; a barrier;
    every rank reads all slots; a second barrier, after which a slot may be
    written again (no state to resynchronise after a failed call).
    """

    def __init__(self, parties: int, context):
        self.parties = parties
        self._barrier = context.Barrier(parties)
        self._slots = context.RawArray("c", parties * SLOT_BYTES)

    def all_gather(self, rank: int, value) -> tuple:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) + 8 > SLOT_BYTES:
            raise ValueError(f"a value of {len(data)} bytes does not fit the exchange's {SLOT_BYTES}-byte slot")
        start = rank * SLOT_BYTES
        self._slots[start:start + 8 + len(data)] = struct.pack("<Q", len(data)) + data
        self._barrier.wait()
        values = []
        for r in range(self.parties):
            start = r * SLOT_BYTES
            (size,) = struct.unpack("<Q", self._slots[start:start + 8])
            values.append(pickle.loads(self._slots[start + 8:start + 8 + size]))
        self._barrier.wait()
        return tuple(values)

    def abort(self) -> None:
        """Release every waiting rank with ``threading.BrokenBarrierError`` (a rank failed)."""
        self._barrier.abort()

    def reset(self) -> None:
        """Ready for the next call after a failed one (no rank is waiting then)."""
        self._barrier.reset()


def buffer_for(shapes: dict, context):
    """Shared memory for arrays of ``shapes`` ({name: shape}) in any float dtype up to 8 bytes an entry."""
    return context.RawArray("c", max(1, sum(_aligned(int(np.prod(shape)) * 8) for shape in shapes.values())))


def _aligned(size: int) -> int:
    return -(-size // 64) * 64  # 64-byte aligned arrays


def views(buffer, layout) -> dict:
    """NumPy arrays in ``buffer`` laid out by ``layout`` ((name, shape, dtype string), ...), one after another."""
    arrays, offset = {}, 0
    for key, shape, dtype in layout:
        arrays[key] = np.ndarray(shape, dtype, buffer=buffer, offset=offset)
        offset += _aligned(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return arrays


def layout_of(arrays: dict) -> tuple:
    """``((name, shape, dtype string), ...)`` of a dict of NumPy arrays, in name order."""
    return tuple((k, tuple(v.shape), v.dtype.str) for k, v in sorted(arrays.items()))


def _keep_freed_memory() -> None:
    """In a worker process (glibc only): keep freed memory for reuse instead of returning it to the kernel.

    glibc unmaps large freed blocks and trims the heap's free top, so every step faults the same pages
    in again (thousands per TinyNet step: ``refimpl bench tinynet --workers 2 --profile``). The worker
    processes belong to the pool, so their allocator is set here (``mallopt``: blocks up to 32 MiB from
    the heap, no trimming below 2 GiB free); the caller's process is left as it is.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    mallopt = ctypes.CDLL(None).mallopt
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed on 64-bit
    mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def one_blas_thread() -> None:
    """In a worker process: BLAS on one thread (the workers share the cores), where threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1, user_api="blas")


def _check_token(what: str, token, step, cache) -> None:
    if token != step or cache is None:
        raise RuntimeError(f"{what} with a cache from an earlier forward: a process pool keeps the caches of its "
                           "latest forward only")


def _serve(net, rank: int, conn, exchange, params_buffer, grads_buffer, input_buffer) -> None:
    """A worker process: run ``(sequence, kind, payload)`` commands from ``conn`` until ``None``; reply
    ``(sequence, True, result)`` or ``(sequence, False, error)``."""
    one_blas_thread()
    _keep_freed_memory()
    layout, params, grads, cache, step = None, None, None, None, None
    while True:
        command = conn.recv()
        if command is None:
            break
        try:
            sequence, kind, payload = command
            if kind == "forward":
                step, new_layout, shard, options = payload
                if new_layout != layout:
                    layout = new_layout
                    params, grads = views(params_buffer, layout), views(grads_buffer, layout)
                if isinstance(shard, tuple):  # (shape, dtype): in the input buffer
                    shard = np.ndarray(shard[0], shard[1], buffer=input_buffer)
                cache = None  # the previous step's arrays go before this step's are made
                out, cache = net.forward(params, shard, **options)
                reply = out
            elif kind == "new_state":
                _check_token("new_state", payload, step, cache)
                reply = net.new_state(cache)
            else:
                token, dout, options = payload
                _check_token("backward", token, step, cache)
                gradients, dx = net.backward(dout, cache, **options)
                for key, value in gradients.items():
                    grads[key][...] = value
                reply = dx
            conn.send((sequence, True, reply))
        except BaseException as error:  # noqa: BLE001 -- sent to the caller, which raises it
            exchange.abort()  # the other ranks must not wait at a barrier for this one
            try:
                conn.send((sequence, False, error))
            except Exception:  # an error that does not pickle
                conn.send((sequence, False, RuntimeError(f"worker {rank} failed: {error!r}")))


def _reply(conn, rank: int, sequence: int):
    """Worker ``rank``'s ``(ok, value)`` for command ``sequence``; replies to earlier commands (a call
    interrupted in the caller, say by Ctrl-C, left them unread) are dropped."""
    try:
        while True:
            answered, ok, value = conn.recv()
            if answered == sequence:
                return ok, value
    except (EOFError, OSError):
        return False, RuntimeError(f"DataParallel worker process {rank} exited; close the pool and open a new one")


class ProcessWorkers:
    """The ranks of a pool as processes: :meth:`start_forward` / :meth:`start_backward` send the commands,
    :meth:`results` collects the replies (in rank order)."""

    def __init__(self, nets, exchange: SharedExchange, context, param_shapes: dict):
        self._shapes = {k: tuple(v) for k, v in param_shapes.items()}
        self._params = buffer_for(self._shapes, context)
        self._grads = [buffer_for(self._shapes, context) for _ in nets]
        # the shards through shared memory: pickled through a pipe, the caller's send to one worker waits for
        # it to read, and the next worker started a millisecond or two later (TinyNet: 0.5 MB a shard)
        self._inputs = [context.RawArray("c", INPUT_BYTES) for _ in nets]
        self._conns, self._processes = [], []
        for rank, (net, grads, inputs) in enumerate(zip(nets, self._grads, self._inputs)):
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(net, rank, child, exchange, self._params, grads, inputs),
                                      daemon=True, name=f"refimpl-parallel-{rank}")
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)
        self._layout, self._param_views, self._grad_views = None, None, None
        self._step = 0
        self._sequence = 0  # of the latest command: each reply carries its command's

    def start_forward(self, params: dict, shards, options: dict) -> int:
        """Send each worker its shard; returns the step token its caches answer to."""
        layout = layout_of(params)
        if {k: shape for k, shape, _ in layout} != self._shapes:
            raise ValueError(f"params must have the network's parameter names and shapes {self._shapes}, got "
                             f"{ {k: shape for k, shape, _ in layout} }")
        wide = sorted(k for k, _, dtype in layout if np.dtype(dtype).itemsize > 8)
        if wide:  # the shared buffers hold 8 bytes an entry
            raise TypeError(f"params of a process pool must be float32 or float64, got {wide[0]} of dtype "
                            f"{params[wide[0]].dtype}")
        if layout != self._layout:  # arrays over the shared buffers, made again only when the dtypes change
            self._layout = layout
            self._param_views = views(self._params, layout)
            self._grad_views = [views(grads, layout) for grads in self._grads]
        for key, view in self._param_views.items():
            view[...] = params[key]
        self._step += 1
        self._sequence += 1
        for conn, shard, inputs in zip(self._conns, shards, self._inputs):
            if shard.nbytes <= INPUT_BYTES:
                np.ndarray(shard.shape, shard.dtype, buffer=inputs)[...] = shard
                shard = (shard.shape, shard.dtype.str)
            conn.send((self._sequence, "forward", (self._step, layout, shard, options)))
        return self._step

    def start_backward(self, token: int, douts, options: dict) -> None:
        self._sequence += 1
        for conn, dout in zip(self._conns, douts):
            conn.send((self._sequence, "backward", (token, dout, options)))

    def new_state(self, token: int) -> list:
        """Rank 0's running statistics after the forward of ``token``, as ``[(ok, value)]``."""
        self._sequence += 1
        self._conns[0].send((self._sequence, "new_state", token))
        return [_reply(self._conns[0], 0, self._sequence)]

    def results(self) -> list:
        """Each worker's ``(ok, value)``, in rank order (a worker that died: ``(False, RuntimeError)``)."""
        return [_reply(conn, rank, self._sequence) for rank, conn in enumerate(self._conns)]

    def gradients(self) -> list:
        """Each worker's gradient arrays of the latest backward (views of shared memory: read before the next)."""
        return self._grad_views

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        for conn in self._conns:
            conn.close()
