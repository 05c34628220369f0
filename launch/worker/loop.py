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
it does not live in the loop. What a step and an evaluation compute (the data
order, the loss, autocast, the sharded evaluation) is in compute.py, and when
to evaluate, checkpoint and stop in stoprules.py; this module runs them on
one clock and keeps the curve; what it returns (``LoopResult``, the time
breakdown) is assembled in loop_result.py.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ttabench import UserError
from ttabench.launch.record.hooks import Hooks
from ttabench.launch.worker.clock import Clock
from ttabench.launch.worker.compute import autocast, default_train_step, epoch_plan, evaluate
from ttabench.launch.worker.loop_result import LoopResult, Times, time_breakdown
from ttabench.launch.worker.stoprules import StopRules
from ttabench.launch.worker.timeline import Straggler
from ttabench.reference_impls.augment import Normalize, crop_flip


def epoch_steps(train_size: int, global_batch: int) -> int:
    """Steps per epoch (a partial last batch is dropped); the one check that the global batch fits."""
    if global_batch > train_size:
        raise UserError(f"global batch {global_batch} is larger than the training set ({train_size} images)")
    return train_size // global_batch


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
    cudagraphs: bool = False  # the model is compiled with CUDA graphs: each step is marked as new
    # stop rules
    target: float | None = None
    time_budget: float | None = None
    max_epochs: float | None = None
    max_steps: int | None = None
    eval_every_samples: int = 0  # 0 = every epoch
    # checkpoint/resume: `checkpoint(state)` is called on every worker at the
    # cadence (rank 0 writes); `resume` is such a state, to continue from.
    checkpoint_every_samples: int = 0  # 0 = never
    checkpoint: Callable[[LoopState], None] | None = None
    resume: LoopState | None = None
    straggler: Straggler | None = None  # --straggler: this worker is the emulated slow one


@dataclass
class LoopState:
    """Where the loop stands: exactly what a checkpoint saves and a resumed run starts from
    (with the model, optimizer and RNG state, which checkpoint.py saves beside it)."""

    global_batch: int
    steps_per_epoch: int
    seed: int  # decides the data order and augmentation
    next_eval: int  # samples at which the next evaluation is due
    next_checkpoint: int  # samples at which the next checkpoint is due (cadence 0: never)
    step: int = 0
    samples: int = 0
    epoch: int = 0
    epoch_step: int = 0  # steps done in the current epoch
    train_s: float = 0.0  # training time, agreed (MAX over workers) after the last step
    total_s: float = 0.0  # total time before this process's clock started (a resumed run's past)
    curve: list[dict] = field(default_factory=list)
    recent_steps: list[float] = field(default_factory=list)  # the last RECENT_STEPS step times

    RECENT_STEPS = 8

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LoopState:
        return cls(**d)

    def last_step_s(self) -> float:
        # The budget rule predicts the next step with the slowest of the last few:
        # a sudden slow step must not carry the run past it.
        return max(self.recent_steps, default=0.0)


def run(spec: LoopSpec, comm, hooks: Hooks, stop_requested: Callable[[], int] = lambda: 0) -> LoopResult:
    """The timed run: start the clock together, train epochs until a stop rule, evaluate last."""
    loop = _Loop(spec, comm, hooks, stop_requested)
    loop.start()
    try:
        if spec.time_budget is not None and spec.resume is None:
            # AAT mode: an evaluation of the starting point, so that AAT(B) is
            # defined even for a budget shorter than one step.
            loop.evaluate()
        while loop.reason is None:
            loop.train_epoch()
        loop.final_evaluation()
    except KeyboardInterrupt:
        loop.status, loop.reason = "interrupted", "interrupted"
    return loop.finish()


class _Loop:
    """One timed run's moving parts; ``run`` above reads as the sequence of its steps."""

    def __init__(self, spec: LoopSpec, comm, hooks: Hooks, stop_requested: Callable[[], int]):
        self.spec, self.comm, self.hooks, self.stop_requested = spec, comm, hooks, stop_requested
        self.device = spec.train_images.device
        global_batch = spec.batch_size * comm.world_size
        steps_per_epoch = epoch_steps(len(spec.train_labels), global_batch)
        self.rules = StopRules.of(spec, steps_per_epoch, global_batch)
        self.state = spec.resume or LoopState(
            global_batch=global_batch,
            steps_per_epoch=steps_per_epoch,
            seed=spec.seed,
            next_eval=self.rules.eval_every,
            next_checkpoint=self.rules.checkpoint_every,
        )
        if self.state.global_batch != global_batch or self.state.steps_per_epoch != steps_per_epoch:
            raise ValueError("the checkpoint was made with another global batch or data set")
        if self.state.seed != spec.seed:  # it decides the data order and augmentation
            raise ValueError(f"the checkpoint was made with seed {self.state.seed}, not {spec.seed}")
        self.train_step_fn = spec.train_step or default_train_step
        sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)
        self.clock = Clock(sync, train_s=self.state.train_s, total_s=self.state.total_s)
        self.times = Times()
        self.comm_wait_start = comm.comm_wait_s
        self.status, self.reason, self.diverged_step = "success", None, None
        # This rank's training clock as it entered the last agreement (a step's or an
        # evaluation's all-reduce): the run's numbers are taken at that one instant.
        self.train_local = self.state.train_s
        self.train_local_at_eval = None  # this rank's clock at the last evaluation
        self.stop_cause = "interrupted"  # or time_limit: why an interrupted run stopped

    def start(self) -> None:
        s = self.state
        self.spec.model.train()
        self.comm.barrier()  # every worker is ready: the clock starts now, together
        self.clock.begin()
        self.comm.algorithm.ops.reset()  # training's bytes only (not a compilation warm-up's)
        self.first_step = s.step
        self.hooks.run_start(
            {
                "steps_per_epoch": s.steps_per_epoch,
                "global_batch": s.global_batch,
                "max_steps": self.rules.planned_steps(),
                "resumed_at_step": None if self.spec.resume is None else s.step,
                "epoch": s.epoch,
                "epoch_open": 0 < s.epoch_step,
            }
        )

    def train_epoch(self) -> None:
        """The rest of the current epoch (all of it unless resumed inside it), or a stop."""
        s = self.state
        self.reason = self.rules.limit_reason(s)
        if self.reason is not None:
            if s.epoch_step > 0:  # resumed at the very end, inside an epoch
                self.hooks.epoch_stop(s.epoch)
            return
        if s.epoch_step == 0:  # a resumed run re-enters its epoch without starting it again
            self.hooks.epoch_start(s.epoch)
        t0 = time.perf_counter()
        batches, aug = epoch_plan(
            len(self.spec.train_labels), s.global_batch, s.seed, s.epoch, self.comm.rank, self.comm.world_size
        )
        batches = batches.to(self.device)
        aug = aug.to(self.device) if self.spec.augment else None
        self.times.data_s += time.perf_counter() - t0
        while s.epoch_step < s.steps_per_epoch:
            self.reason = self.rules.before_step(s)
            if self.reason is None:
                self.train_step(batches[s.epoch_step], aug)
                self.reason = self.after_step()
            if self.reason is not None:
                break
        self.hooks.epoch_stop(s.epoch)
        if self.reason is None:
            s.epoch, s.epoch_step = s.epoch + 1, 0

    def train_step(self, idx: torch.Tensor, aug: torch.Tensor | None) -> None:
        """One synchronous SGD step, then one small collective that agrees on its outcome."""
        spec, s, t = self.spec, self.state, self.times
        t0 = time.perf_counter()
        x = spec.train_images[idx]
        if aug is not None:
            x = crop_flip(x, aug[idx])
        x = spec.normalize(x)
        y = spec.train_labels[idx]
        t1 = time.perf_counter()
        if spec.lr_at is not None:
            for group in spec.optimizer.param_groups:
                group["lr"] = spec.lr_at(s.step / s.steps_per_epoch)
        spec.optimizer.zero_grad()  # set_to_none by default (torch >= 2.0)
        if spec.cudagraphs:
            # A new iteration: the graphs may reuse the previous step's output memory.
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(self.device, spec.autocast_dtype):
            loss = self.train_step_fn(spec.model, x, y)
        wait0 = self.comm.comm_wait_s
        self.comm.backward_and_step(loss, spec.optimizer)
        if spec.straggler is not None:  # outside every collective; its time is kept apart
            spec.straggler.after_compute(time.perf_counter() - t1 - (self.comm.comm_wait_s - wait0))
        t2 = time.perf_counter()
        # One small collective per step: the slowest worker's clock,
        # and whether anyone saw a non-finite loss or was asked to stop.
        loss_f = float(loss.detach())
        bad = 0.0 if math.isfinite(loss_f) else 1.0
        stop = float(self.stop_requested())  # 0, 1 interrupted, 2 time limit near
        local = self.clock.train_elapsed()
        train_max, bad, stop = self.comm.allreduce([local, bad, stop], op="max")
        self.train_local = local
        # The step counts once its time is agreed: an interrupt inside the agreement
        # leaves steps, samples and training time all at the previous step.
        s.step, s.samples, s.epoch_step = s.step + 1, s.samples + s.global_batch, s.epoch_step + 1
        s.recent_steps = (s.recent_steps + [train_max - s.train_s])[-LoopState.RECENT_STEPS :]
        s.train_s = train_max
        t3 = time.perf_counter()
        t.data_s += t1 - t0
        t.compute_s += t2 - t1
        t.control_s += t3 - t2
        self.hooks.step(
            {
                "epoch": s.epoch,
                "step": s.step,
                "samples": s.samples,
                "loss": loss_f,
                "train_time_s": train_max,
                "step_s": s.last_step_s(),
                "global_batch": s.global_batch,
            }
        )
        if bad:
            self.status, self.diverged_step = "diverged", s.step
        elif stop:
            self.status, self.stop_cause = "interrupted", "time_limit" if stop >= 2 else "interrupted"

    def after_step(self) -> str | None:
        """Divergence, a stop request, an evaluation at its cadence, a checkpoint at its cadence."""
        s = self.state
        if self.status != "success":
            return self.stop_cause if self.status == "interrupted" else self.status  # diverged
        if self.rules.eval_due(s) and self.evaluate():
            return "target"
        if self.rules.checkpoint_due(s):
            self.checkpoint()
        return None

    def evaluate(self) -> bool:
        """Evaluate with the training clock stopped; True if the target is reached."""
        spec, s = self.spec, self.state
        self.clock.pause()
        t_eval = time.perf_counter()
        self.hooks.eval_start(s.step / s.steps_per_epoch)
        self.comm.sync_buffers(spec.eval_model)
        acc, loss, _ = evaluate(
            spec.eval_model,
            spec.test_images,
            spec.test_labels,
            spec.normalize,
            self.comm,
            spec.eval_batch_size,
            spec.autocast_dtype,
        )
        self.comm.after_eval(spec.eval_model)
        self.times.eval_s += time.perf_counter() - t_eval
        local = self.clock.train_s
        train_max, total_max = self.comm.allreduce([local, self.clock.total_elapsed()], op="max")
        self.train_local_at_eval = local
        row = {
            "epoch": round(s.step / s.steps_per_epoch, 6),
            "step": s.step,
            "samples": s.samples,
            "train_time_s": train_max,
            "total_time_s": total_max,
            "accuracy": acc,
            "loss": loss,
        }
        consensus = self.comm.consensus_distance()
        if consensus is not None:  # decentralized (summary.json and mllog; not a curve.csv column)
            row["consensus_distance"] = consensus
        s.curve.append(row)
        self.hooks.evaluated(row)
        self.clock.resume()
        return self.rules.target_reached(acc)

    def checkpoint(self) -> None:
        """Hand a copy of the state to spec.checkpoint, with the training clock stopped."""
        self.clock.pause()
        t0 = time.perf_counter()
        s = self.state
        total_s = self.comm.allreduce([self.clock.total_elapsed()], op="max")[0]
        self.spec.checkpoint(
            dataclasses.replace(
                s, total_s=total_s, curve=[dict(r) for r in s.curve], recent_steps=list(s.recent_steps)
            )
        )
        # Rank 0 writes while the others wait here, clocks stopped: saving never
        # counts as training time on any worker.
        self.comm.barrier()
        self.times.checkpoint_s += time.perf_counter() - t0
        self.clock.resume()

    def final_evaluation(self) -> None:
        """A run stopped by a step, epoch or time limit ends with an evaluation of where it stopped."""
        if self.rules.final_evaluation_due(self.reason, self.state) and self.evaluate():
            self.reason = "target"

    def stop_instant(self) -> tuple[float, float]:
        """(the run's training time, this rank's) at the stop: the last evaluation when it was
        made after the last step, else the last step's agreement. Steps, samples and epochs
        count the steps done by then, so throughput = samples / training time holds for
        every outcome, an interrupted run's included (no evaluation after its last step)."""
        s = self.state
        if s.curve and s.curve[-1]["step"] == s.step:
            agreed = s.curve[-1]["train_time_s"]
            # None: resumed from a checkpoint taken right after that evaluation
            return agreed, agreed if self.train_local_at_eval is None else self.train_local_at_eval
        return s.train_s, self.train_local

    def finish(self) -> LoopResult:
        s, t, comm = self.state, self.times, self.comm
        self.clock.pause()
        total_s = self.clock.total_elapsed()
        train_s, train_local = self.stop_instant()
        breakdown = time_breakdown(
            comm,
            t,
            train_local=train_local,
            total_s=total_s,
            comm_wait_s=comm.comm_wait_s - self.comm_wait_start,
            straggler_s=self.spec.straggler.added_s if self.spec.straggler is not None else 0.0,
            hooks_s=getattr(self.hooks, "overhead_s", 0.0),
            steps=s.step - self.first_step,
        )
        result = LoopResult(
            status=self.status,
            stop_reason=self.reason,
            curve=s.curve,
            steps=s.step,
            samples=s.samples,
            epochs=s.step / s.steps_per_epoch,
            train_time_s=train_s,
            total_time_s=total_s,
            diverged_step=self.diverged_step,
            breakdown=breakdown,
        )
        self.hooks.run_stop(result)
        return result
