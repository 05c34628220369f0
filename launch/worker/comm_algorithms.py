"""The reference distributed algorithms inside one worker (their specification, parameters
and byte formulas: divisions/algorithms.py).

Each algorithm is a DDP communication hook (what happens to a gradient bucket) and, for the
two that exchange parameters, a step after the optimizer's:

    allreduce       comm.py's timed all-reduce hook (mean of the fp32 bucket)
    fp16            torch's fp16_compress_hook
    powersgd        torch's powerSGD_hook (not the batched variant: it fails on gloo/CPU),
                    error feedback and warm start on, start_powerSGD_iter = --powersgd-start-step;
                    one bucket at a time (see PowerSGD.hook)
    local-sgd       plain all-reduce for the warm-up steps, then no gradient communication;
                    after every H-th step an all-reduce mean of the parameters (one flat
                    buffer, as torch's model_averaging.utils.average_parameters). Momentum
                    buffers stay local: only the parameters are averaged (as torch's
                    PostLocalSGDOptimizer). torch's post_localSGD_hook is not used: on a CPU
                    it needs an explicit subgroup (new_subgroups() without CUDA raises)
    decentralized   no gradient communication; after each local step the parameters go to
                    both ring neighbours by point-to-point send/recv and are averaged with
                    theirs, weight 1/3 each (D-PSGD, Lian et al. 2017)
    topk            top-k of each gradient tensor (error feedback: what was not sent is added
                    to the next step's gradient); all_gather of values (fp32) and indices (int32)

Every operation goes through ``Ops`` (launch/worker/comm_counting.py), which counts the
bytes this worker hands to it and charges the emulated link; so does an open-division
submission's own communication (``Submitted``).

local-sgd and decentralized leave different models on the workers: evaluation (clock
stopped) uses the average of the workers' models, and decentralized records the consensus
distance (mean over workers of ||x_i - mean||_2) with each evaluation; training then
continues from each worker's own model.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

from ttabench.divisions import algorithms as spec
from ttabench.launch.worker.comm_counting import CountingDist, Ops, counted_dist


def parameters_to_vector(params: list[torch.Tensor]) -> torch.Tensor:
    """The parameters as one flat fp32 buffer, in their logical order (a copy: channels_last
    weights are not contiguous in that order)."""
    return torch.cat([p.detach().reshape(-1) for p in params])


def vector_to_parameters(flat: torch.Tensor, params: list[torch.Tensor]) -> None:
    """Copy a flat buffer into the parameters in place (torch's own vector_to_parameters
    replaces .data, which would change their memory format under DDP's gradient buckets)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.detach().copy_(flat[offset : offset + n].view(p.shape))
        offset += n


def _completed(tensor: torch.Tensor) -> torch.futures.Future:
    fut = torch.futures.Future()
    fut.set_result(tensor)
    return fut


class Algorithm:
    """allreduce: comm.py's timed hook; nothing after the step."""

    name = "allreduce"
    local_models = False  # the workers' models differ between synchronisations

    def __init__(self, comm, params: dict):
        self.comm = comm
        self.params = spec.resolved_params(self.name, params)
        self.ops = Ops(comm)
        self.step = 0  # steps done (after_step calls)
        self.consensus = None  # the last consensus distance (decentralized)
        self._saved = None

    def hook(self, bucket) -> torch.futures.Future | None:
        """The bucket's communication, a future of the reduced bucket; None: comm.py's all-reduce."""
        return None

    def after_step(self, model: torch.nn.Module) -> None:
        self.step += 1

    # -- evaluation of the workers' average model (clock stopped), then back to their own
    def before_eval(self, model: torch.nn.Module) -> None:
        if not self.local_models or self.comm.world_size == 1:
            return
        params = [p for p in model.parameters()]
        mine = parameters_to_vector(params)
        mean = mine.clone()
        dist.all_reduce(mean)  # evaluation traffic: not counted, not charged
        mean /= self.comm.world_size
        if self.name == "decentralized":
            d = torch.tensor([float(torch.linalg.vector_norm(mine - mean))], dtype=torch.float64)
            dist.all_reduce(d)
            self.consensus = float(d) / self.comm.world_size
        self._saved = mine
        with torch.no_grad():
            vector_to_parameters(mean, params)

    def after_eval(self, model: torch.nn.Module) -> None:
        if self._saved is not None:
            with torch.no_grad():
                vector_to_parameters(self._saved, list(model.parameters()))
            self._saved = None


class Fp16(Algorithm):
    name = "fp16"

    def hook(self, bucket):
        return default_hooks.fp16_compress_hook(None, bucket)


class PowerSGD(Algorithm):
    name = "powersgd"

    def __init__(self, comm, params):
        super().__init__(comm, params)
        self.state = powerSGD_hook.PowerSGDState(
            process_group=None,
            matrix_approximation_rank=self.params["powersgd_rank"],
            start_powerSGD_iter=self.params["powersgd_start_step"],
            min_compression_rate=spec.POWERSGD_MIN_COMPRESSION_RATE,
            use_error_feedback=True,
            warm_start=True,
        )

    def hook(self, bucket):
        # One bucket's three all-reduces finish before the next bucket's start: torch's hook
        # issues the later two from completion callbacks, which on gloo race with the next
        # bucket's first all-reduce, and ranks that order them differently abort ("Received
        # data size doesn't match expected size"). The price is no overlap between buckets.
        fut = powerSGD_hook.powerSGD_hook(self.state, bucket)
        fut.wait()
        return _completed(fut.value())


class LocalSGD(Algorithm):
    name = "local-sgd"
    local_models = True

    def hook(self, bucket):
        if self.step < self.params["local_sgd_warmup_steps"]:
            return None  # the plain all-reduce
        return _completed(bucket.buffer())  # the local gradient

    def after_step(self, model):
        warm, h = self.params["local_sgd_warmup_steps"], self.params["local_steps"]
        if self.step >= warm and (self.step - warm + 1) % h == 0:
            params = list(model.parameters())
            flat = parameters_to_vector(params)
            self.ops.all_reduce(flat)
            flat /= self.comm.world_size
            with torch.no_grad():
                vector_to_parameters(flat, params)
        super().after_step(model)


class Decentralized(Algorithm):
    name = "decentralized"
    local_models = True

    def hook(self, bucket):
        return _completed(bucket.buffer())

    def after_step(self, model):
        rank, n = self.comm.rank, self.comm.world_size
        params = list(model.parameters())
        mine = parameters_to_vector(params)
        left, right = self.ops.exchange(mine, ((rank - 1) % n, (rank + 1) % n))
        with torch.no_grad():
            vector_to_parameters((mine + left + right) / 3, params)
        super().after_step(model)


class TopK(Algorithm):
    name = "topk"

    def __init__(self, comm, params):
        super().__init__(comm, params)
        self.memory: dict[torch.Tensor, torch.Tensor] = {}  # parameter -> error not yet sent

    def hook(self, bucket):
        buf = bucket.buffer()
        values, indices = [], []
        for p, g in zip(bucket.parameters(), bucket.gradients()):
            flat = g.reshape(-1)
            corrected = flat + self.memory[p] if p in self.memory else flat.clone()
            k = spec.topk_count(flat.numel(), self.params["topk_ratio"])
            idx = corrected.abs().topk(k, sorted=False).indices
            values.append(corrected[idx])
            offset = (g.data_ptr() - buf.data_ptr()) // buf.element_size()  # g is a view of buf
            indices.append((idx + offset).to(torch.int32))
            corrected[idx] = 0.0
            self.memory[p] = corrected
        all_values = torch.cat(self.ops.all_gather(torch.cat(values)))
        all_indices = torch.cat(self.ops.all_gather(torch.cat(indices)))
        buf.zero_()
        buf.index_add_(0, all_indices.long(), all_values)
        buf.div_(self.comm.world_size)
        return _completed(buf)


class Submitted(Algorithm):
    """A submission's own communication, counted and charged through Ops like the references'."""

    name = "allreduce"  # --algorithm stays at its default (divisions/open.py)

    def __init__(self, comm, submission):
        super().__init__(comm, {})
        self.ops.source = "submission"
        self.submission = submission
        self.local_models = submission.sync_step is not None  # evaluate the workers' average

    def hook(self, bucket):
        s = self.submission
        if s.comm_hook is None:
            return None
        with counted_dist(self.ops):
            return s.comm_hook(s.comm_state, bucket)

    def after_step(self, model):
        if self.submission.sync_step is not None:
            with counted_dist(self.ops):
                self.submission.sync_step(model, self.step)
        super().after_step(model)


_CLASSES = {c.name: c for c in (Algorithm, Fp16, PowerSGD, LocalSGD, Decentralized, TopK)}


def make(name: str, params: dict, comm) -> Algorithm:
    """The worker side of --algorithm NAME; torch's hook modules then count through its Ops."""
    algorithm = _CLASSES[name](comm, params)
    if name in ("fp16", "powersgd"):
        counting = CountingDist(algorithm.ops)
        default_hooks.dist = counting  # powerSGD_hook's first steps call default_hooks' all-reduce
        powerSGD_hook.dist = counting
    return algorithm
