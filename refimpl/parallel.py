"""Data-parallel forward and backward on the CPU: a network's batch split across a pool of threads.

:class:`DataParallel` wraps a :class:`refimpl.model.Sequential` with the same
``forward`` / ``backward`` / ``new_state`` as the network, so a training step
written for the network takes the pool instead. Each call splits the batch into
one contiguous shard per worker (sizes differ by at most one); worker ``r``
runs the whole network on shard ``r``; the outputs are concatenated, the
shards' parameter gradients summed (in rank order, so the result does not
depend on which thread finished first) and the input gradients concatenated.
The loss runs on the whole output between the two calls, in the caller's
thread: losses that couple the batch (contrastive, N-pair) stay exact.

Batch norm is synchronised (*sync BN*), so the result is the serial step's to
float rounding: in training mode each shard's batch-norm layer publishes its
count :math:`m_k`, mean :math:`\\mu_k` and variance :math:`\\sigma_k^2`, every
shard combines them into the whole batch's statistics (:func:`combine_moments`,
Chan, Golub & LeVeque 1979) and normalises with those; in backward the two
per-channel sums :math:`\\sum dout` and :math:`\\sum dout\\,\\hat x` are
exchanged and added before the input gradient is formed. Each shard returns
its own part of ``dgamma`` and ``dbeta``, and the pool's sum gives the whole.
The exchanges are the only points where the workers wait for each other (one
barrier per batch-norm layer in forward, one in backward).

Why this grain. Splitting single kernels (conv2's 684 per-frequency products,
the pooling) over a thread pool was measured *slower* than one thread (1.05x and
1.3x): a thread woken for a few milliseconds of work waits to be scheduled, and
the split pays that at every layer. Here each worker gets half the whole
step, tens of milliseconds of forward and backward between hand-offs; the
thread hand-offs are two per step plus the batch-norm barriers. Threads (the
default): the parameters, caches and gradients stay in one memory with
nothing copied, and the batch norm exchange is a list and a barrier. NumPy
releases the global interpreter lock inside BLAS and ufunc loops over large
arrays, where the step spends nearly all of its time; the
Python of the layers (a few microseconds per operation) runs one thread at a
time. ``processes=True`` runs every rank in a process of its own instead
(:mod:`refimpl._parallel_processes`; the caller waits): the parameters and
gradients cross through shared memory, each worker keeps its caches, and the
workers share neither an allocator nor the interpreter lock. Two threads of
one process share its address space: glibc returns large freed blocks to
the kernel, the next step faults the pages in again, and the two threads'
faults and returns contend in the kernel (``refimpl bench tinynet --workers 2
--profile`` times the shards alone, in threads and in processes, with the
threads' page faults and kernel time). NumPy arrays only.

The calling thread runs shard 0 itself and the pool's ``workers - 1`` threads
the others, so a call wakes one thread fewer. While the pool is open it limits
the BLAS libraries of the process to one thread each (OpenBLAS's thread count
is process-wide; two workers each starting BLAS threads would fight for the
cores) and restores them when it is closed; OpenMP libraries (PyTorch's
threads) are left alone.

Only layers that treat samples independently (convolution, linear, ReLU,
pooling, global average pooling) and batch norm can be split; a network with
any other layer is refused.

>>> import numpy as np
>>> from refimpl import model
>>> net = model.Sequential([("conv", model.Conv2d(1, 2, 3, padding=1, bias=False)),
...                         ("bn", model.BatchNorm2d(2)), ("relu", model.ReLU()),
...                         ("gap", model.GlobalAvgPool())])
>>> params, state = net.init(0, "float64"), net.init_state("float64")
>>> x = np.random.default_rng(0).standard_normal((5, 1, 4, 4))
>>> serial, cache = net.forward(params, x, train=True, state=state)
>>> with DataParallel(net, workers=2) as pool:
...     out, pcache = pool.forward(params, x, train=True, state=state)
...     grads, dx = pool.backward(np.ones_like(out), pcache)
...     new_state = pool.new_state(pcache)
>>> bool(np.allclose(out, serial, rtol=1e-12, atol=1e-12)), dx.shape
(True, (5, 1, 4, 4))
>>> bool(np.allclose(new_state["bn.running_var"], net.new_state(cache)["bn.running_var"], rtol=1e-12))
True
"""
from __future__ import annotations

import dataclasses
import functools
import operator
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from . import _parallel_processes, _validate, backend, model
from .layers import batchnorm2d

#: layers that compute each sample from that sample alone, so a shard's result is the batch's
PER_SAMPLE_LAYERS = (model.Conv2d, model.Linear, model.ReLU, model.MaxPool2d, model.GlobalAvgPool)


def combine_moments(counts, means, scales, scaled_vars):
    """The mean and biased variance of a batch from those of its shards (Chan et al.'s parallel formula).

    Shard ``k`` holds ``counts[k]`` values per channel with mean ``means[k]``
    and biased variance ``scales[k]**2 * scaled_vars[k]`` (the overflow-safe
    pair of :func:`refimpl.layers.batchnorm2d.forward`, ``s`` the largest
    absolute deviation). Returns ``(mean, s, v, m)`` for the whole batch in the
    same form, ``m`` the total count:

    .. math::
        m = \\sum_k m_k,\\quad \\mu = \\sum_k \\frac{m_k}{m}\\mu_k,\\quad
        \\sigma^2 = \\sum_k \\frac{m_k}{m}\\big(\\sigma_k^2 + (\\mu_k - \\mu)^2\\big)

    (Chan, Golub & LeVeque, 1979: the sum of squared deviations of a union is
    the shards' sums plus the between-shard term; no sum of squares of the raw
    values, so no cancellation). Stabiliser: every term is divided by
    :math:`S^2`, :math:`S = \\max_k (s_k + |\\mu_k - \\mu|) \\ge \\max|x - \\mu|`,
    so nothing is squared above 1 and ``v`` stays in [0, 1]; ``s`` is this
    ``S``, not the largest deviation itself, and ``s**2 v`` the same variance.

    >>> import numpy as np
    >>> a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])   # shard means 1.5 and 4
    >>> mean, s, v, m = combine_moments([2, 3], [np.array([1.5]), np.array([4.0])],
    ...                                 [np.array([0.5]), np.array([1.0])], [np.array([1.0]), np.array([2 / 3])])
    >>> mean.tolist(), (s * s * v).round(12).tolist(), m, np.var(np.r_[a, b])
    ([3.0], [2.0], 5, np.float64(2.0))
    """
    xp = backend.namespace(*means)
    m = sum(counts)
    mean = _total([(n / m) * mu for n, mu in zip(counts, means)])
    deviations = [xp.abs(mu - mean) for mu in means]
    s = scales[0] + deviations[0]
    for scale, deviation in zip(scales[1:], deviations[1:]):
        s = xp.maximum(s, scale + deviation)
    safe = xp.where(s > 0, s, xp.ones_like(s))  # s = 0: every value equal, v = 0
    v = _total([(n / m) * ((scale / safe) ** 2 * var + (deviation / safe) ** 2)
                for n, scale, var, deviation in zip(counts, scales, scaled_vars, deviations)])
    return mean, s, v, m


def _total(arrays):
    """``arrays[0] + arrays[1] + ...`` in that order (the same bits whichever worker finished first)."""
    return functools.reduce(operator.add, arrays)


class _Exchange:
    """All-gather between the workers of one pool: each puts a value in, all get every worker's.

    Two slot lists used in turn, so one barrier per exchange suffices: a worker
    can write the list again only after the next barrier, which every worker
    reaches only after reading this one.
    """

    def __init__(self, parties: int):
        self.parties = parties
        self._barrier = threading.Barrier(parties)
        self._slots = ([None] * parties, [None] * parties)
        self._turns = [0] * parties

    def all_gather(self, rank: int, value) -> tuple:
        slots = self._slots[self._turns[rank] % 2]
        self._turns[rank] += 1
        slots[rank] = value
        self._barrier.wait()
        return tuple(slots)

    def abort(self) -> None:
        """Release every waiting worker with ``threading.BrokenBarrierError`` (a worker failed)."""
        self._barrier.abort()

    def reset(self) -> None:
        """Ready for the next call after a failed one (no worker is waiting then)."""
        self._barrier.reset()
        self._turns = [0] * self.parties
        self._slots = ([None] * self.parties, [None] * self.parties)


@dataclasses.dataclass(frozen=True)
class _SyncBatchNorm2d(model.BatchNorm2d):
    """:class:`refimpl.model.BatchNorm2d` of worker ``rank``: training mode uses the whole batch's statistics."""

    exchange: _Exchange = dataclasses.field(default=None, compare=False, repr=False)
    rank: int = 0

    def forward(self, params, x, *, train, state=None, input_grad=True):
        if not train:  # running statistics: nothing couples the shards
            return super().forward(params, x, train=train, state=state, input_grad=input_grad)
        gamma, beta = params["gamma"], params["beta"]
        running_mean, running_var = state["running_mean"], state["running_var"]
        momentum, eps = batchnorm2d.check_arguments(x, gamma, beta, running_mean, running_var, train=True,
                                                    momentum=self.momentum, eps=self.eps)
        xp = backend.namespace(x, gamma, beta, running_mean, running_var)
        count = x.shape[0] * x.shape[2] * x.shape[3]
        mean = xp.mean(x, axis=batchnorm2d._AXES)
        s, v = batchnorm2d._scaled_variance(x - batchnorm2d._channel(xp, mean))  # this shard's
        shards = self.exchange.all_gather(self.rank, (count, mean, s, v))
        mean, s, v, m = combine_moments(*zip(*shards))
        if m < 2:
            raise ValueError(f"the batch must hold more than 1 value per channel in training mode, got {m}")
        centred = x - batchnorm2d._channel(xp, mean)
        inv_std = 1.0 / batchnorm2d._std(s, v, eps)
        x_hat, out = batchnorm2d.normalise(centred, inv_std, gamma, beta)
        return out, batchnorm2d.Cache(x_hat, gamma, inv_std, True, mean, s, v, m, running_mean, running_var,
                                      momentum, _validate.output_of(out))

    def backward(self, dout, cache, *, check_finite=True):
        if not cache.train:
            return super().backward(dout, cache, check_finite=check_finite)
        dout = _validate.check_dout(dout, cache.output, finite=_validate.check_bool("check_finite", check_finite))
        xp = backend.namespace(dout, cache.x_hat)
        dbeta = xp.sum(dout, axis=batchnorm2d._AXES)  # this shard's parts of the two channel sums
        dgamma = xp.sum(dout * cache.x_hat, axis=batchnorm2d._AXES)
        sums = self.exchange.all_gather(self.rank, (dgamma, dbeta))
        dx = batchnorm2d.training_input_gradient(dout, cache, _total([g for g, _ in sums]),
                                                 _total([b for _, b in sums]))
        return {"gamma": dgamma, "beta": dbeta}, dx


def _worker_network(layer, exchange: _Exchange, rank: int):
    """``layer`` for worker ``rank``: batch norm synchronised through ``exchange``, other layers as they are."""
    if isinstance(layer, model.Sequential):
        return model.Sequential([(name, _worker_network(sub, exchange, rank)) for name, sub in layer.layers])
    if isinstance(layer, model.BatchNorm2d):
        return _SyncBatchNorm2d(layer.channels, layer.momentum, layer.eps, exchange=exchange, rank=rank)
    if isinstance(layer, PER_SAMPLE_LAYERS):
        return layer
    raise TypeError(f"DataParallel cannot split a batch across {type(layer).__name__}: only "
                    f"{', '.join(t.__name__ for t in PER_SAMPLE_LAYERS)}, BatchNorm2d and Sequential")


class ParallelCache(NamedTuple):
    """The cache of a :meth:`DataParallel.forward` call: one network cache per shard."""

    shards: tuple     # SequentialCache of each worker, in rank order (processes: the step token of each
                      # rank, whose caches stay in its process)
    sizes: tuple      # samples per shard
    input_grad: bool


def shard_sizes(n: int, workers: int) -> tuple:
    """Samples per worker: ``n`` split into ``workers`` contiguous shards, the first ones one larger.

    >>> shard_sizes(64, 2), shard_sizes(7, 3)
    ((32, 32), (3, 2, 2))
    """
    return tuple(n // workers + (1 if r < n % workers else 0) for r in range(workers))


def _shards(a, sizes):
    """Views of ``a``'s contiguous row blocks of the given sizes."""
    starts = [sum(sizes[:r]) for r in range(len(sizes))]
    return [a[start:start + size, ...] for start, size in zip(starts, sizes)]


class DataParallel:
    """``net``'s forward and backward with the batch split across ``workers`` threads (see the module).

    Create it once (``with DataParallel(net, workers=2) as pool:``) and call
    :meth:`forward`, :meth:`backward` and :meth:`new_state` as the network's;
    the results equal the network's to float rounding. It holds no arrays
    between calls: only its threads and the exchange its batch-norm layers
    meet at. With ``processes=True`` the workers are processes (NumPy arrays
    only), which keep the caches of the latest :meth:`forward`: a
    :meth:`backward` or :meth:`new_state` takes that forward's cache only.
    The processes start from a fork server (spawn where there is none), so a
    script that opens such a pool must guard its top level with
    ``if __name__ == "__main__":``, as Python's multiprocessing requires.
    :meth:`close` (or leaving the ``with`` block) stops the threads or
    processes and restores the BLAS thread counts. Needs threadpoolctl (the
    ``blas`` extra). Calls from several threads at once are not supported.
    """

    def __init__(self, net, workers: int = 2, *, processes: bool = False):
        if not isinstance(net, model.Sequential):
            raise TypeError(f"net must be a refimpl.model.Sequential, got {type(net).__name__}")
        self.workers = _validate.check_integer("workers", workers, minimum=1)
        self.processes = _validate.check_bool("processes", processes)
        self.net = net
        if processes:
            context = _parallel_processes.context()
            self._exchange = _parallel_processes.SharedExchange(self.workers, context)
        else:
            self._exchange = _Exchange(self.workers)
        self._nets = tuple(_worker_network(net, self._exchange, r) for r in range(self.workers))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            raise ImportError("DataParallel needs threadpoolctl to run BLAS on one thread per worker: "
                              "pip install 'refimpl[blas]'") from None
        self._blas = threadpool_limits(limits=1, user_api="blas")
        if processes:
            self._remote = _parallel_processes.ProcessWorkers(self._nets, self._exchange, context,
                                                              net.param_shapes())
        else:
            # workers = 1 runs everything in the caller's thread (a pool of one thread, never used, for one code path)
            self._pool = ThreadPoolExecutor(max(1, self.workers - 1), thread_name_prefix="refimpl-parallel")
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Stop the threads or processes and restore the BLAS thread counts (idempotent)."""
        if not self._closed:
            self._closed = True
            if self.processes:
                self._remote.close()
            else:
                self._pool.shutdown()
            self._blas.restore_original_limits()

    def param_shapes(self) -> dict:
        return self.net.param_shapes()

    def state_shapes(self) -> dict:
        return self.net.state_shapes()

    def _run(self, tasks):
        """Run ``tasks[r]()`` on worker thread ``r`` (0: this thread); their results, or the first worker's error."""
        futures = [self._pool.submit(self._guarded, task) for task in tasks[1:]]
        return self._settle([_outcome(self._guarded, tasks[0])] + [_outcome(f.result) for f in futures])

    def _check_open(self, *arrays) -> None:
        if self._closed:
            raise RuntimeError("this DataParallel pool is closed")
        if self.processes and any(not isinstance(a, np.ndarray) for a in arrays):
            raise TypeError("a DataParallel pool of processes takes NumPy arrays (its workers share host memory), "
                            f"got {', '.join(sorted({type(a).__module__ + '.' + type(a).__name__ for a in arrays}))}")

    def _settle(self, outcomes):
        """The workers' results from their ``(ok, value)`` outcomes, in rank order, or the first worker's error
        (a worker released from a barrier by another's failure raises BrokenBarrierError: the other's comes first)."""
        errors = [e for ok, e in outcomes if not ok]
        if errors:
            self._exchange.reset()
            raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
        return [value for _, value in outcomes]

    def _guarded(self, task):
        try:
            return task()
        except BaseException:
            self._exchange.abort()  # the others must not wait at a barrier for this worker
            raise

    def forward(self, params, x, *, train: bool, state=None, input_grad: bool = True, check_finite: bool = False):
        """The network's forward on ``x`` (N, ...), N >= ``workers``; returns ``(out, ParallelCache)``."""
        _validate.check_array("x", x, ndim=None, floating=False, finite=False)
        if x.ndim < 1 or x.shape[0] < self.workers:
            raise ValueError(f"x must hold at least workers = {self.workers} samples along axis 0, "
                             f"got shape {tuple(x.shape)}")
        self._check_open(x, *params.values(), *(state or {}).values())
        xp = backend.namespace(x)
        sizes = shard_sizes(x.shape[0], self.workers)
        options = dict(train=train, state=state, input_grad=input_grad, check_finite=check_finite)
        shards = _shards(x, sizes)
        if self.processes:  # the outputs come back, the caches stay in the worker processes
            token = self._remote.start_forward(params, shards, options)
            outs = self._settle(self._remote.results())
            return _joined(xp, outs), ParallelCache((token,) * self.workers, sizes, input_grad)
        results = self._run([lambda net=net, shard=shard: net.forward(params, shard, **options)
                             for net, shard in zip(self._nets, shards)])
        return _joined(xp, [o for o, _ in results]), ParallelCache(tuple(c for _, c in results), sizes, input_grad)

    def backward(self, dout, cache: ParallelCache, *, check_finite: bool = True):
        """The network's backward: ``(grads, dx)``, grads summed over the shards, ``dx`` None without input_grad;
        ``check_finite`` as the network's (every layer of every shard checks its ``dout`` unless False)."""
        _validate.check_array("dout", dout, ndim=None, finite=False)
        if dout.ndim < 1 or dout.shape[0] != sum(cache.sizes):
            raise ValueError(f"dout must hold the forward output's {sum(cache.sizes)} samples along axis 0, "
                             f"got shape {tuple(dout.shape)}")
        self._check_open(dout)
        flag = {"check_finite": _validate.check_bool("check_finite", check_finite)}
        xp = backend.namespace(dout)
        douts = _shards(dout, cache.sizes)
        if self.processes:  # the gradients arrive in shared memory, dx through the pipes
            self._remote.start_backward(cache.shards[0], douts, flag)
            dxs = self._settle(self._remote.results())
            shard_grads = self._remote.gradients()
        else:
            results = self._run([lambda net=net, d=d, c=c: net.backward(d, c, **flag)
                                 for net, d, c in zip(self._nets, douts, cache.shards)])
            shard_grads, dxs = [g for g, _ in results], [dx for _, dx in results]
        grads = {name: _total([g[name] for g in shard_grads]) for name in shard_grads[0]}
        return grads, (_joined(xp, dxs) if cache.input_grad else None)

    def new_state(self, cache: ParallelCache) -> dict:
        """The running statistics after the forward pass (every shard computed the same ones)."""
        if self.processes:
            return self._settle(self._remote.new_state(cache.shards[0]))[0]
        return self._nets[0].new_state(cache.shards[0])


def _joined(xp, shards):
    """The shards' arrays concatenated along axis 0 (one shard: itself, no copy)."""
    return shards[0] if len(shards) == 1 else xp.concat(shards, axis=0)


def _outcome(fn, *args):
    """``(True, fn(*args))``, or ``(False, the exception)``."""
    try:
        return True, fn(*args)
    except BaseException as e:  # noqa: BLE001 -- re-raised by the caller once every worker is done
        return False, e
