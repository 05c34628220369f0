"""Training's communication operations inside one worker, counted and charged.

Every operation goes through ``Ops``, which counts the bytes this worker hands to it and
charges the emulated link that operation's own alpha-beta cost. torch's hooks call
``torch.distributed.all_reduce`` themselves: their modules' ``dist`` is pointed at an
``Ops``-backed stand-in, so each of their all-reduces is counted and charged too.

An open-division submission's own communication (divisions/open.py: Submission.comm_hook,
a DDP hook with torch's signature, and Submission.sync_step, after each optimizer step) is
``Submitted`` (launch/worker/comm_algorithms.py): while the user's code runs, the collectives of the ``torch.distributed``
module go through the same ``Ops`` (``counted_dist``); those it does not count raise.
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.distributed as dist

from ttabench.divisions import algorithms as spec


class Ops:
    """The collectives and point-to-point operations of training, counted and charged."""

    def __init__(self, comm, source: str = "reference"):
        self.comm = comm
        self.source = source  # "reference": an --algorithm; "submission": the user's own
        self._lock = threading.Lock()
        self.handed: dict[str, int] = {op: 0 for op in spec.OPS}
        self.sent = 0.0

    @property
    def world(self) -> int:
        return self.comm.world_size

    def reset(self) -> None:
        """Count from here (the clock's start: compilation warm-up is not training)."""
        with self._lock:
            self.handed = {op: 0 for op in spec.OPS}
            self.sent = 0.0

    def count(self, op: str, nbytes: int) -> None:
        with self._lock:
            self.handed[op] += nbytes
            self.sent += spec.sent_bytes(op, nbytes, self.world)

    def summary(self, steps: int) -> dict:
        return {"steps": steps, "handed": dict(self.handed), "sent": self.sent, "source": self.source}

    def all_reduce(self, tensor: torch.Tensor, async_op: bool = False, **kw):
        nbytes = tensor.numel() * tensor.element_size()
        self.count("all_reduce", nbytes)
        started = self.comm.now()
        work = dist.all_reduce(tensor, async_op=async_op, **kw)
        if not async_op:
            self.comm._emulate(started, nbytes, "all_reduce")
            return work
        return _ChargedWork(work, lambda: self.comm._emulate(started, nbytes, "all_reduce"))

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        nbytes = tensor.numel() * tensor.element_size()
        self.count("all_gather", nbytes)
        out = [torch.empty_like(tensor) for _ in range(self.world)]
        started = self.comm.now()
        dist.all_gather(out, tensor)
        self.comm._emulate(started, nbytes, "all_gather")
        return out

    def exchange(self, tensor: torch.Tensor, peers: tuple[int, ...]) -> list[torch.Tensor]:
        """Send `tensor` to each peer and receive one of the same shape from each."""
        nbytes = tensor.numel() * tensor.element_size()
        started = self.comm.now()
        got = exchange(tensor, peers)
        for _ in peers:
            self.count("send", nbytes)
            self.comm._emulate(started, nbytes, "send")
        return got


def exchange(
    tensor: torch.Tensor,
    peers: tuple[int, ...],
    recv_from: tuple[int, ...] | None = None,
    got: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Send `tensor` to each of `peers` and receive one of its shape from each of `recv_from`
    (default: the same peers; into `got` if given), all at once: what decentralized SGD's
    step does and `netlab bench` times as neighbour-exchange and ring-exchange.
    The receives are posted first: gloo lets a peer write only once it has heard of the
    receive, and that notice waits behind a payload the pair is already writing, so with the
    sends first one direction of each pair waited for the other (launch/net/gloo.py)."""
    recv_from = peers if recv_from is None else recv_from
    got = [torch.empty_like(tensor) for _ in recv_from] if got is None else got
    ops = [dist.P2POp(dist.irecv, buf, p) for buf, p in zip(got, recv_from)]
    ops += [dist.P2POp(dist.isend, tensor, p) for p in peers]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return got


class _ChargedWork:
    """An async collective's handle whose completion waits for the emulated link."""

    def __init__(self, work, charge):
        self._work, self._charge = work, charge

    def __getattr__(self, name):  # is_completed, exception, ...: the real handle's
        return getattr(self._work, name)

    def wait(self, *args):
        self._work.wait(*args)
        self._charge()
        return True

    def get_future(self):
        def done(f):
            self._charge()
            return f.value()

        return self._work.get_future().then(done)


class CountingDist:
    """torch.distributed, except that all_reduce goes through Ops (for torch's own hooks)."""

    def __init__(self, ops: Ops):
        self._ops = ops

    def __getattr__(self, name):
        return getattr(dist, name)

    def all_reduce(self, tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        return self._ops.all_reduce(tensor, op=op, group=group, async_op=async_op)


# torch.distributed's operations a submission may call, and those that would go uncounted
_COUNTED = tuple(
    n
    for n in ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_single", "send", "isend")
    if hasattr(dist, n)
)
_UNCOUNTED = (
    "broadcast", "reduce", "reduce_scatter", "reduce_scatter_tensor", "reduce_scatter_single",
    "all_reduce_coalesced", "all_gather_coalesced", "all_to_all",
    "all_to_all_single", "scatter", "gather", "batch_isend_irecv", "all_gather_object",
    "broadcast_object_list", "gather_object", "scatter_object_list",
)  # fmt: skip


def _counted(ops: Ops, name: str, real):
    """torch.distributed.NAME, with the bytes handed to it counted and the link charged."""
    op = {"all_reduce": "all_reduce", "send": "send", "isend": "send"}.get(name, "all_gather")

    def call(*args, **kw):
        at, key = (0, "tensor") if name in ("all_reduce", "send", "isend") else (1, "tensor")
        if name in ("all_gather_into_tensor", "all_gather_single"):
            key = "input_tensor"
        tensor = args[at] if len(args) > at else kw[key]
        nbytes = tensor.numel() * tensor.element_size()
        ops.count(op, nbytes)
        started = ops.comm.now()
        work = real(*args, **kw)
        charge = lambda: ops.comm._emulate(started, nbytes, op)  # noqa: E731
        if name == "isend" or kw.get("async_op"):
            return _ChargedWork(work, charge)
        charge()
        return work

    return call


def _refused(name: str):
    def call(*args, **kw):
        raise RuntimeError(
            f"torch.distributed.{name} in a submission's communication is not counted by "
            f"ttabench; use {', '.join(_COUNTED)}, recv or irecv"
        )

    return call


@contextlib.contextmanager
def counted_dist(ops: Ops):
    """While the user's communication runs: torch.distributed's operations through Ops."""
    saved = {n: getattr(dist, n) for n in _COUNTED + _UNCOUNTED if hasattr(dist, n)}
    try:
        for n in _COUNTED:
            setattr(dist, n, _counted(ops, n, saved[n]))
        for n in _UNCOUNTED:
            if n in saved:
                setattr(dist, n, _refused(n))
        yield
    finally:
        for n, f in saved.items():
            setattr(dist, n, f)
