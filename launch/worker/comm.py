"""Process-group context for the timed loop: one process, torch.distributed, or Horovod.

The loop talks to workers only through this small interface: small float
all-reduces (sum / max) for metrics and stop decisions, a barrier, wrapping
the model and optimizer for synchronous data-parallel SGD, broadcasting
rank 0's state, and gathering per-rank records. Each backend measures its
own exposed communication wait (the part of gradient communication not
hidden behind the backward pass).
"""

from __future__ import annotations

import datetime
import inspect
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from ttabench import UserError
from ttabench.launch.net import iface
from ttabench.launch.net.link import LinkEmulator
from ttabench.launch.worker import comm_algorithms as algorithms
from ttabench.launch.worker.timeline import BackwardTimeline


class Comm:
    """One process, no communication."""

    backend = "none"
    dist_backend = None

    def __init__(self):
        self.rank = 0
        self.world_size = 1
        self.local_rank = 0
        self.local_world_size = 1
        self.nodes = 1
        self.comm_wait_s = 0.0  # exposed gradient-communication wait, this rank
        self.allreduce_busy_s = 0.0  # launch-to-completion time of gradient all-reduces
        self.emulator = None  # network.LinkEmulator when a network is emulated
        # When each gradient becomes ready in the backward pass (`ttabench predict` reads it).
        self.timeline = BackwardTimeline("gradients")
        # --algorithm: what a bucket and a step communicate, and the bytes handed to it
        self.algorithm = algorithms.make(algorithms.spec.DEFAULT, {}, self)

    def use_algorithm(self, name: str, params: dict) -> None:
        self.algorithm = algorithms.make(name, params, self)

    def use_submission(self, submission) -> None:
        """An open-division submission's own communication (comm_hook, sync_step) instead."""
        self.algorithm = algorithms.Submitted(self, submission)

    def consensus_distance(self) -> float | None:
        """decentralized: the workers' models' mean distance to their average at the last
        evaluation (None for the other algorithms)."""
        return self.algorithm.consensus

    def allreduce(self, values: list[float], op: str = "sum") -> list[float]:
        return list(values)

    def emulate_network(self, link) -> None:
        self.emulator = LinkEmulator(link, self.world_size) if link.emulated else None

    def allreduce_tensor(self, tensor) -> None:
        """Sum-all-reduce a tensor in place, as a training collective (emulated link applies)."""

    def now(self) -> float:
        """The clock collectives are timed with (the emulator's, which tests can fake)."""
        return self.emulator.clock() if self.emulator is not None else time.perf_counter()

    def _emulate(self, started: float, nbytes: int, op: str = "all_reduce") -> None:
        if self.emulator is not None:
            self.emulator.complete(started, nbytes, op)

    def barrier(self) -> None:
        pass

    def gather(self, obj) -> list:
        return [obj]

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        _record_gradients_ready(model, self.timeline)
        return model

    def wrap_optimizer(self, optimizer, model):
        return optimizer

    def backward_and_step(self, loss, optimizer) -> None:
        self.timeline.backward_start(time.perf_counter())
        loss.backward()
        self.timeline.backward_end(time.perf_counter())
        optimizer.step()
        self.timeline.step_end(time.perf_counter())

    def sync_buffers(self, model: torch.nn.Module) -> None:
        pass

    def after_eval(self, model: torch.nn.Module) -> None:
        """After an evaluation: back to this worker's own model (local-sgd, decentralized)."""
        self.algorithm.after_eval(model)

    def close(self) -> None:
        pass


def _record_gradients_ready(model: torch.nn.Module, timeline: BackwardTimeline) -> None:
    """Record when each parameter's gradient is ready (where no DDP bucket hook tells)."""

    def ready(p: torch.Tensor) -> None:  # a post-accumulate-grad hook must return None
        timeline.ready(time.perf_counter(), p.numel() * p.element_size())

    for p in model.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(ready)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class TorchComm(Comm):
    """torch.distributed (gloo / nccl), model wrapped in DistributedDataParallel."""

    backend = "torchrun"

    def __init__(self, dist_backend: str, device: torch.device, timeout_s: float):
        super().__init__()
        self.dist_backend = dist_backend
        self.device = device
        if not dist.is_initialized():
            if dist_backend == "gloo":
                iface.for_worker()  # started by hand or by TorchX on several nodes
            # A dead peer must fail the run, not hang it: every collective
            # gives up after timeout_s.
            dist.init_process_group(dist_backend, timeout=datetime.timedelta(seconds=timeout_s))
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.local_rank = _env_int("LOCAL_RANK", 0)
        self.local_world_size = _env_int("LOCAL_WORLD_SIZE", 1)
        self.nodes = max(1, self.world_size // max(1, self.local_world_size))
        # Small control collectives go through this device (gloo: CPU tensors).
        self._ctrl_device = device if dist_backend == "nccl" else torch.device("cpu")
        self._last_launch = 0.0
        self._last_done = 0.0
        self.timeline = BackwardTimeline("buckets")

    def allreduce(self, values, op="sum"):
        t = torch.tensor(values, dtype=torch.float64, device=self._ctrl_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return t.tolist()

    def barrier(self):
        # A tiny all-reduce instead of dist.barrier(): it honours the group's
        # timeout on every backend.
        self.allreduce([0.0])

    def allreduce_tensor(self, tensor):
        started = time.perf_counter()
        dist.all_reduce(tensor)
        self._emulate(started, tensor.numel() * tensor.element_size())

    def gather(self, obj):
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def wrap_model(self, model):
        ids = [self.device.index] if self.device.type == "cuda" else None
        # No buffer broadcast on every forward: BN running statistics only
        # matter for evaluation, and sync_buffers() copies rank 0's before it
        # (the same behaviour as under Horovod).
        params = inspect.signature(DDP).parameters
        no_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in params
            else {"broadcast_buffers": False}
        )
        ddp = DDP(model, device_ids=ids, **no_sync)
        ddp.register_comm_hook(self, _timed_allreduce_hook)
        self._model = model
        return ddp

    def backward_and_step(self, loss, optimizer):
        self._last_launch = self._last_done = 0.0
        self.timeline.backward_start(self.now())
        loss.backward()  # DDP waits for every bucket before returning
        self.timeline.backward_end(self.now())
        if self._last_done > self._last_launch > 0:
            # Communication still running after the last bucket was handed
            # over (i.e. after backward compute ended) is exposed wait.
            self.comm_wait_s += self._last_done - self._last_launch
        optimizer.step()
        # local-sgd's averaging, decentralized's exchange: all of it is exposed wait
        t0 = self.now()
        self.algorithm.after_step(self._model)
        self.comm_wait_s += self.now() - t0
        self.timeline.step_end(self.now())

    def sync_buffers(self, model):
        # local-sgd, decentralized: evaluate the workers' average model
        self.algorithm.before_eval(model)
        # Evaluate rank 0's model: BN running statistics differ per worker
        # after its last local forward pass.
        for b in model.buffers():
            dist.broadcast(b, src=0)

    def close(self):
        if dist.is_initialized():
            dist.destroy_process_group()


def _timed_allreduce_hook(state: TorchComm, bucket):
    """DDP comm hook: mean all-reduce of a bucket (or the --algorithm's own communication),
    recording launch and completion times."""
    tensor = bucket.buffer()
    launched = state.now()
    state._last_launch = launched
    event = state.timeline.ready(launched, tensor.numel() * tensor.element_size())
    own = state.algorithm.hook(bucket)
    if own is not None:  # counted and charged operation by operation (comm_counting.Ops)

        def finished(f):
            state.timeline.allreduce_done(event, state.now() - launched)
            now = state.now()
            state._last_done = max(state._last_done, now)
            state.allreduce_busy_s += now - launched
            return f.value()

        return own.then(finished)
    state.algorithm.ops.count("all_reduce", tensor.numel() * tensor.element_size())
    tensor.div_(state.world_size)
    fut = dist.all_reduce(tensor, async_op=True).get_future()

    def done(f):
        # Runs when the real all-reduce finishes; an emulated link then holds
        # the bucket back until its modelled completion time.
        state.timeline.allreduce_done(event, state.now() - launched)
        state._emulate(launched, tensor.numel() * tensor.element_size())
        now = state.now()
        state._last_done = max(state._last_done, now)
        state.allreduce_busy_s += now - launched
        return f.value()[0]

    return fut.then(done)


class HorovodComm(Comm):
    """Horovod: hvd.DistributedOptimizer, broadcasts of initial state, hvd.allreduce."""

    backend = "horovod"

    def __init__(self, device: torch.device):
        super().__init__()
        import horovod.torch as hvd  # optional: installed only where Horovod runs

        self.hvd = hvd
        hvd.init()
        self.dist_backend = "horovod-gloo" if hvd.gloo_built() and not hvd.mpi_enabled() else "horovod-mpi"
        self.rank = hvd.rank()
        self.world_size = hvd.size()
        self.local_rank = hvd.local_rank()
        self.local_world_size = hvd.local_size()
        self.nodes = max(1, hvd.cross_size())
        self.device = device

    def allreduce(self, values, op="sum"):
        hvd = self.hvd
        t = torch.tensor(values, dtype=torch.float64)
        return hvd.allreduce(
            t, op=hvd.Sum if op == "sum" else hvd.Max, name=f"ctrl.{op}.{len(values)}"
        ).tolist()

    def barrier(self):
        self.hvd.barrier()

    def allreduce_tensor(self, tensor):
        started = time.perf_counter()
        self.hvd.allreduce_(tensor, op=self.hvd.Sum, name=f"bench.{tensor.numel()}")
        self._emulate(started, tensor.numel() * tensor.element_size())

    def gather(self, obj):
        return self.hvd.allgather_object(obj)

    def wrap_optimizer(self, optimizer, model):
        hvd = self.hvd
        self._grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        self._first_grad = None
        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(self._grad_ready)
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        # hvd.broadcast_optimizer_state() first fills an empty state by taking
        # one optimizer step on zero gradients, which with weight decay moves
        # the weights and seeds the momentum buffers: it must not run on a
        # fresh optimizer (whose state is empty on every rank anyway), only on
        # one carrying state, e.g. after a resume.
        if optimizer.state_dict()["state"]:
            hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        # --algorithm fp16: Horovod's own fp16 compression of every gradient it all-reduces
        fp16 = self.algorithm.name == "fp16"
        if fp16:
            self._grad_bytes //= 2
        return hvd.DistributedOptimizer(
            optimizer,
            named_parameters=model.named_parameters(),
            op=hvd.Average,
            compression=hvd.Compression.fp16 if fp16 else hvd.Compression.none,
        )

    def _grad_ready(self, p) -> None:
        if self._first_grad is None:  # (the timeline records every gradient: Comm.wrap_model)
            self._first_grad = time.perf_counter()

    def backward_and_step(self, loss, optimizer):
        self._first_grad = None
        self.timeline.backward_start(time.perf_counter())
        loss.backward()  # gradient all-reduces start from hooks as gradients appear
        t0 = time.perf_counter()
        optimizer.synchronize()  # what is left of communication after backward: exposed wait
        # Horovod fuses a step's gradients into one all-reduce (tensor fusion):
        # the emulated link models one collective of all gradient bytes,
        # starting when the first gradient was ready.
        self._emulate(self._first_grad or t0, self._grad_bytes)
        self.algorithm.ops.count("all_reduce", self._grad_bytes)
        self.comm_wait_s += time.perf_counter() - t0
        self.timeline.backward_end(time.perf_counter())  # as under DDP: communication done
        with optimizer.skip_synchronize():
            optimizer.step()
        self.timeline.step_end(time.perf_counter())

    def sync_buffers(self, model):
        for name, b in model.named_buffers():
            b.copy_(self.hvd.broadcast(b, root_rank=0, name=f"buffer.{name}"))

    def close(self):
        self.hvd.shutdown()


def default_dist_backend(device: torch.device, local_world_size: int, gpus: int) -> str:
    """nccl when every local worker has a GPU of its own, else gloo (CPU, or workers sharing a GPU:
    NCCL >= 2.5 refuses two ranks of one communicator on one device, "Duplicate GPU detected";
    gloo all-reduces CUDA tensors through host memory)."""
    return "nccl" if device.type == "cuda" and local_world_size <= gpus else "gloo"


def check_nccl(local_workers: int, gpus: int) -> None:
    """NCCL needs a GPU of its own for every worker of a node."""
    if local_workers > gpus:
        raise UserError(
            f"--dist-backend nccl needs one GPU per worker ({local_workers} workers on this node, "
            f"{gpus} GPUs): leave --dist-backend unset (gloo) or start fewer workers"
        )


def init(backend: str, dist_backend: str | None, device: torch.device, timeout_s: float) -> Comm:
    if backend == "none":
        return Comm()
    if backend == "torchrun":
        local = _env_int("LOCAL_WORLD_SIZE", 1)
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        if dist_backend == "nccl":
            check_nccl(local, gpus)
        return TorchComm(dist_backend or default_dist_backend(device, local, gpus), device, timeout_s)
    if backend == "horovod":
        return HorovodComm(device)
    raise ValueError(f"unknown backend {backend}")
