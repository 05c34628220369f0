"""The timed loop: train steps, evaluation at a fixed cadence, stop rules, one clock.

Measurement rules (see the design card):
- The clock starts after a barrier at ``run_start`` and reads
  ``time.perf_counter()``. Evaluation pauses the training clock in plain
  sight (``clock.pause()`` / ``clock.resume()``) and is timed on its own; the
  total including it is kept too.
- Anything that decides a metric or a stop uses the MAX over workers of the
  local clocks, agreed through one small all-reduce per step, so a slow
  worker is never hidden and every worker stops at the same step.
- Evaluation covers the whole test split, sharded over workers, with correct
  counts and sample counts all-reduced: the result equals one process
  evaluating everything.
- A non-finite loss on any worker ends the run as diverged at that step.

Side work (progress display, results, mllog) hooks in through ``Hooks``;
it does not live in the loop.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from ttabench.reference_impls.augment import CropFlip, Normalize, crop_flip


@dataclass
class LoopSpec:
    """Everything the loop needs, prepared (untimed) by the worker."""

    train_images: torch.Tensor  # uint8 N x 3 x 32 x 32, on the device
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    model: torch.nn.Module  # wrapped for data parallelism
    eval_model: torch.nn.Module  # the plain module (rank 0's buffers are synced in)
    optimizer: torch.optim.Optimizer
    lr_at: Callable[[float], float] | None  # (fractional epoch) -> lr; None: left to the optimizer
    normalize: Normalize
    batch_size: int  # per worker
    seed: int
    eval_batch_size: int = 1000
    augment: bool = True
    autocast_dtype: torch.dtype | None = None
    train_step: Callable | None = None  # (model, x, y) -> loss; default: cross-entropy
    # stop rules
    target: float | None = None
    time_budget: float | None = None
    max_epochs: float | None = None
    max_steps: int | None = None
    eval_every_samples: int = 0  # 0 = every epoch
    # checkpoint/resume: `checkpoint(state)` is called on every worker at the
    # cadence (rank 0 writes); `resume` is such a state, to continue from.
    checkpoint_every_samples: int = 0  # 0 = never
    checkpoint: Callable[[dict], None] | None = None
    resume: dict | None = None


@dataclass
class LoopResult:
    status: str  # success | diverged | interrupted | failed
    stop_reason: str
    curve: list = field(default_factory=list)
    steps: int = 0
    samples: int = 0
    epochs: float = 0.0
    train_time_s: float = 0.0
    total_time_s: float = 0.0
    diverged_step: int | None = None
    breakdown: dict = field(default_factory=dict)  # this rank's time breakdown


class Hooks:
    """Side work called by the loop; every method is optional."""

    def run_start(self, info: dict) -> None: ...
    def epoch_start(self, epoch: int) -> None: ...
    def step(self, info: dict) -> None: ...
    def eval_start(self, epoch: float) -> None: ...
    def evaluated(self, row: dict) -> None: ...
    def epoch_stop(self, epoch: int) -> None: ...
    def run_stop(self, result: LoopResult) -> None: ...


class HookList(Hooks):
    def __init__(self, hooks):
        self.hooks = [h for h in hooks if h is not None]
        self.overhead_s = 0.0  # time spent in side work while the clock ran

    def __getattribute__(self, name):
        if name in ("run_start", "epoch_start", "step", "eval_start", "evaluated", "epoch_stop", "run_stop"):
            hooks = object.__getattribute__(self, "hooks")

            def call(*args):
                t0 = time.perf_counter()
                for h in hooks:
                    getattr(h, name)(*args)
                self.overhead_s += time.perf_counter() - t0

            return call
        return object.__getattribute__(self, name)


class Clock:
    """Training time (evaluation excluded) and total time since run_start."""

    def __init__(self, sync: Callable[[], None], train_s: float = 0.0, total_s: float = 0.0):
        self._sync = sync  # device synchronize: a GPU clock read must see finished work
        self.start = None
        self.train_s = train_s  # a resumed run continues its clocks, it does not restart them
        self._total_before = total_s
        self._segment = None

    def begin(self):
        self._sync()
        self.start = self._segment = time.perf_counter()

    def pause(self):
        self._sync()
        now = time.perf_counter()
        self.train_s += now - self._segment
        self._segment = None
        return now

    def resume(self):
        self._segment = time.perf_counter()

    def train_elapsed(self) -> float:
        self._sync()
        return self.train_s + (time.perf_counter() - self._segment if self._segment else 0.0)

    def total_elapsed(self) -> float:
        return self._total_before + time.perf_counter() - self.start


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed generator seed per (run seed, epoch) (no collisions such as seed+epoch has)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_plan(n: int, global_batch: int, seed: int, epoch: int, rank: int, world: int):
    """This worker's batches for one epoch, and the epoch's augmentation draws.

    Every worker draws the same permutation; global batch k is positions
    k*B..(k+1)*B of it, and worker r takes every world-th element of that
    batch starting at r (DistributedSampler's interleaving). The union over
    workers of step k is exactly global batch k; the tail that does not fill
    a whole global batch is dropped.
    """
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    perm = torch.randperm(n, generator=g)
    aug = CropFlip.draw(n, g)
    steps = n // global_batch
    batches = perm[: steps * global_batch].view(steps, global_batch)[:, rank::world]
    return batches, aug


def default_train_step(model, x, y):
    return F.cross_entropy(model(x), y)


def evaluate(
    model, images, labels, normalize: Normalize, comm, batch_size: int, autocast_dtype=None
) -> tuple[float, float, int]:
    """Accuracy and mean loss over the whole test split, sharded over workers.

    Worker r evaluates images r, r+world, ...; the correct counts, sample
    counts and loss sums are all-reduced, so every worker returns the same
    numbers, equal to one process evaluating all images.
    """
    was_training = model.training
    model.eval()
    idx = torch.arange(comm.rank, len(labels), comm.world_size, device=labels.device)
    correct = torch.zeros((), dtype=torch.int64, device=labels.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=labels.device)
    with torch.inference_mode(), autocast(images.device, autocast_dtype):
        for chunk in idx.split(batch_size):
            y = labels[chunk]
            out = model(normalize(images[chunk])).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
    total_correct, total_count, total_loss = comm.allreduce(
        [float(correct), float(len(idx)), float(loss_sum)], op="sum"
    )
    model.train(was_training)
    count = int(round(total_count))
    return int(round(total_correct)) / count, total_loss / count, count


def autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _step_limit_reason(spec: LoopSpec, step: int) -> str:
    return "max_steps" if spec.max_steps is not None and step >= spec.max_steps else "max_epochs"


def run(spec: LoopSpec, comm, hooks: Hooks, stop_requested: Callable[[], bool] = lambda: False) -> LoopResult:
    device = spec.train_images.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    world, rank = comm.world_size, comm.rank
    n = len(spec.train_labels)
    global_batch = spec.batch_size * world
    steps_per_epoch = n // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"global batch {global_batch} is larger than the training set ({n})")
    max_steps = math.inf
    if spec.max_epochs is not None:
        max_steps = math.floor(spec.max_epochs * steps_per_epoch + 1e-9)
    if spec.max_steps is not None:
        max_steps = min(max_steps, spec.max_steps)
    eval_every = spec.eval_every_samples or steps_per_epoch * global_batch
    train_step = spec.train_step or default_train_step
    model = spec.model
    model.train()
    t = {"data_s": 0.0, "compute_s": 0.0, "control_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}
    comm_wait_start = comm.comm_wait_s
    curve: list[dict] = []
    step = samples = epoch = k0 = 0
    next_eval = eval_every
    ckpt_every = spec.checkpoint_every_samples
    next_ckpt = ckpt_every
    agreed_train = last_step_s = 0.0
    recent_steps = collections.deque(maxlen=8)
    status, reason, diverged_step = "success", None, None
    r = spec.resume
    if r is not None:
        if r["global_batch"] != global_batch or r["steps_per_epoch"] != steps_per_epoch:
            raise ValueError("the checkpoint was made with another global batch or data set")
        if r.get("seed", spec.seed) != spec.seed:  # it decides the data order and augmentation
            raise ValueError(f"the checkpoint was made with seed {r['seed']}, not {spec.seed}")
        step, samples, epoch, k0 = r["step"], r["samples"], r["epoch"], r["epoch_step"]
        next_eval, next_ckpt = r["next_eval"], r["next_checkpoint"]
        curve = [dict(row) for row in r["curve"]]
        agreed_train = r["train_s"]
        recent_steps.extend(r["recent_steps"])
        last_step_s = max(recent_steps, default=0.0)

    def do_eval(epoch_f: float) -> bool:
        """Evaluate with the training clock stopped; True if the target is reached."""
        clock.pause()
        t_eval = time.perf_counter()
        hooks.eval_start(epoch_f)
        comm.sync_buffers(spec.eval_model)
        acc, loss, count = evaluate(
            spec.eval_model,
            spec.test_images,
            spec.test_labels,
            spec.normalize,
            comm,
            spec.eval_batch_size,
            spec.autocast_dtype,
        )
        t["eval_s"] += time.perf_counter() - t_eval
        train_max, total_max = comm.allreduce([clock.train_s, clock.total_elapsed()], op="max")
        row = {
            "epoch": round(epoch_f, 6),
            "step": step,
            "samples": samples,
            "train_time_s": train_max,
            "total_time_s": total_max,
            "accuracy": acc,
            "loss": loss,
        }
        curve.append(row)
        hooks.evaluated(row)
        clock.resume()
        return spec.target is not None and acc >= spec.target

    def do_checkpoint() -> None:
        """Save the state to continue from, with the training clock stopped."""
        clock.pause()
        t0 = time.perf_counter()
        spec.checkpoint(
            {
                "step": step,
                "samples": samples,
                "epoch": epoch,
                "epoch_step": k + 1,
                "next_eval": next_eval,
                "next_checkpoint": next_ckpt,
                "curve": [dict(x) for x in curve],
                "train_s": agreed_train,
                "total_s": comm.allreduce([clock.total_elapsed()], op="max")[0],
                "recent_steps": list(recent_steps),
                "global_batch": global_batch,
                "steps_per_epoch": steps_per_epoch,
                "seed": spec.seed,
            }
        )
        # Rank 0 writes while the others wait here, clocks stopped: saving never
        # counts as training time on any worker.
        comm.barrier()
        t["checkpoint_s"] += time.perf_counter() - t0
        clock.resume()

    if r is None:
        clock = Clock(sync)
    else:
        clock = Clock(sync, train_s=r["train_s"], total_s=r["total_s"])
    comm.barrier()  # every worker is ready: the clock starts now, together
    clock.begin()
    hooks.run_start(
        {
            "steps_per_epoch": steps_per_epoch,
            "global_batch": global_batch,
            "max_steps": None if max_steps == math.inf else max_steps,
            "resumed_at_step": None if r is None else step,
            "epoch": epoch,
            "epoch_open": 0 < k0,
        }
    )
    try:
        if spec.time_budget is not None and r is None:
            # AAT mode: an evaluation of the starting point, so that AAT(B) is
            # defined even for a budget shorter than one step.
            do_eval(0.0)
        while reason is None:
            if step >= max_steps:
                reason = _step_limit_reason(spec, step)
                if k0 > 0:  # resumed at the very end, inside an epoch
                    hooks.epoch_stop(epoch)
                break
            if k0 == 0:  # a resumed run re-enters its epoch without starting it again
                hooks.epoch_start(epoch)
            t0 = time.perf_counter()
            batches, aug = epoch_plan(n, global_batch, spec.seed, epoch, rank, world)
            batches = batches.to(device)
            aug = aug.to(device) if spec.augment else None
            t["data_s"] += time.perf_counter() - t0
            for k in range(k0, steps_per_epoch):
                # Stop rules that act before a step.
                if step >= max_steps:
                    reason = _step_limit_reason(spec, step)
                    break
                if spec.time_budget is not None and agreed_train + last_step_s > spec.time_budget:
                    reason = "time_budget"  # the next step would cross it: evaluate now, within budget
                    break
                t0 = time.perf_counter()
                idx = batches[k]
                x = spec.train_images[idx]
                if aug is not None:
                    x = crop_flip(x, aug[idx])
                x = spec.normalize(x)
                y = spec.train_labels[idx]
                t1 = time.perf_counter()
                if spec.lr_at is not None:
                    for group in spec.optimizer.param_groups:
                        group["lr"] = spec.lr_at(step / steps_per_epoch)
                spec.optimizer.zero_grad()  # set_to_none by default (torch >= 2.0)
                with autocast(device, spec.autocast_dtype):
                    loss = train_step(model, x, y)
                comm.backward_and_step(loss, spec.optimizer)
                t2 = time.perf_counter()
                step += 1
                samples += global_batch
                # One small collective per step: the slowest worker's clock,
                # and whether anyone saw a non-finite loss or was asked to stop.
                loss_f = float(loss.detach())
                bad = 0.0 if math.isfinite(loss_f) else 1.0
                stop = 1.0 if stop_requested() else 0.0
                train_max, bad, stop = comm.allreduce([clock.train_elapsed(), bad, stop], op="max")
                recent_steps.append(train_max - agreed_train)
                # The budget rule predicts the next step with the slowest of the
                # last few: a sudden slow step must not carry the run past it.
                last_step_s, agreed_train = max(recent_steps), train_max
                t3 = time.perf_counter()
                t["data_s"] += t1 - t0
                t["compute_s"] += t2 - t1
                t["control_s"] += t3 - t2
                hooks.step(
                    {
                        "epoch": epoch,
                        "step": step,
                        "samples": samples,
                        "loss": loss_f,
                        "train_time_s": train_max,
                        "step_s": last_step_s,
                        "global_batch": global_batch,
                    }
                )
                if bad:
                    status, reason, diverged_step = "diverged", "diverged", step
                    break
                if stop:
                    status, reason = "interrupted", "interrupted"
                    break
                if samples >= next_eval:
                    next_eval += eval_every
                    if do_eval(step / steps_per_epoch):
                        reason = "target"
                        break
                if ckpt_every and samples >= next_ckpt:
                    next_ckpt += ckpt_every
                    do_checkpoint()
            else:
                hooks.epoch_stop(epoch)
                epoch += 1
                k0 = 0
                continue
            hooks.epoch_stop(epoch)
        if reason in ("max_epochs", "max_steps", "time_budget") and (not curve or curve[-1]["step"] != step):
            if do_eval(step / steps_per_epoch):
                reason = "target"
    except KeyboardInterrupt:
        status, reason = "interrupted", "interrupted"
    clock.pause()
    total_s = clock.total_elapsed()
    comm_wait = comm.comm_wait_s - comm_wait_start
    t["compute_s"] -= comm_wait  # backward_and_step's time includes the exposed wait
    breakdown = {
        "rank": rank,
        "train_s": clock.train_s,
        "total_s": total_s,
        "compute_s": t["compute_s"],
        "comm_wait_s": comm_wait,
        "allreduce_busy_s": comm.allreduce_busy_s,
        "network_delay_s": comm.emulator.added_s if comm.emulator else 0.0,
        "data_s": t["data_s"],
        "control_s": t["control_s"],
        "hooks_s": getattr(hooks, "overhead_s", 0.0),
        "eval_s": t["eval_s"],
        "checkpoint_s": t["checkpoint_s"],
    }
    result = LoopResult(
        status=status,
        stop_reason=reason,
        curve=curve,
        steps=step,
        samples=samples,
        epochs=step / steps_per_epoch,
        train_time_s=curve[-1]["train_time_s"] if curve else clock.train_s,
        total_time_s=total_s,
        diverged_step=diverged_step,
        breakdown=breakdown,
    )
    hooks.run_stop(result)
    return result
