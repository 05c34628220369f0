"""The untimed set-up of one worker: data, model, optimizer, schedule, wrapping, warm-up.

Everything here happens before ``run_start``; ``build`` returns a ``Setup``
whose ``spec`` is all the timed loop needs. An open-division run takes what
its submission sets (divisions/open.py) and the closed recipe for the rest;
the user's objects are checked here (launch/worker/open_checks.py), before the
clock starts. ``check_submission`` runs the same checks without the data set,
for the launcher's pre-check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ttabench import UserError
from ttabench.divisions import open as open_div
from ttabench.launch.config import RunConfig
from ttabench.launch.worker import open_checks, warmup
from ttabench.launch.worker.comm import Comm
from ttabench.launch.worker.loop import LoopSpec, epoch_steps
from ttabench.launch.worker.timeline import Straggler
from ttabench.reference_impls import cifar10
from ttabench.reference_impls.augment import Normalize
from ttabench.reference_impls.recipe import BENCHMARKS, CLOSED, Recipe
from ttabench.reference_impls.resnet import resnet


@dataclass
class Setup:
    """What the untimed set-up produces for the loop and the record."""

    spec: LoopSpec
    model: torch.nn.Module  # the plain module (unwrapped): what is saved and checkpointed
    data: cifar10.Cifar10  # host copy
    resolved: dict  # values decided at run time, recorded in config.json
    model_info: dict
    recipe: dict
    submission: dict | None = None  # open division: the user's code and hooks (config.json)
    # the run's thresholds (--thresholds, else the data set's) as (low, high, step)
    threshold_range: tuple[float, float, float] | None = None


@dataclass
class _Plan:
    """Batch sizes, epoch length and cadences, decided from the data and the world size."""

    batch_size: int  # per worker
    global_batch: int
    train_size: int
    steps_per_epoch: int
    max_epochs: float | None
    eval_every_samples: int
    checkpoint_every_samples: int  # 0 = never


def build(
    cfg: RunConfig,
    comm: Comm,
    seed: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    phase: Callable[[str], None] = lambda text: None,
) -> Setup:
    """Data, model, optimizer, schedule, data-parallel wrapping and warm-up: everything untimed.
    `phase` hears what it does now (for the live display)."""
    # Imported first: a submission that cannot load fails before any data is read.
    if cfg.division == "open":
        phase("loading your model's code")
    sub = open_div.load_submission(cfg.model, cfg.optimizer) if cfg.division == "open" else None
    if sub is not None:
        sub.check_communication(cfg.algorithm, comm.backend)
        if sub.submission.own_communication():
            comm.use_submission(sub.submission)
    phase("generating synthetic data" if cfg.synthetic else "loading data")
    data = cifar10.synthetic() if cfg.synthetic else cifar10.load(cfg.resolved_data_dir())
    phase("building the model")
    plan = _plan(cfg, sub, comm.world_size, len(data.train_labels))
    recipe = CLOSED
    channels_last = _channels_last(cfg, comm.backend)
    model = _make_model(cfg, sub, seed, device, channels_last, autocast_dtype)
    optimizer, lr_at = _make_optimizer(cfg, sub, model, plan, comm.world_size, recipe)
    opened = _open_record(cfg, sub, model, optimizer, lr_at, plan.batch_size, recipe) if sub else None
    wrapped = comm.wrap_model(model)
    optimizer = comm.wrap_optimizer(optimizer, model)
    spec = LoopSpec(
        train_images=data.train_images.to(device),
        train_labels=data.train_labels.to(device),
        test_images=data.test_images.to(device),
        test_labels=data.test_labels.to(device),
        model=wrapped,
        eval_model=model,
        optimizer=optimizer,
        lr_at=lr_at,
        normalize=Normalize(cifar10.MEAN, cifar10.STD, device=device, channels_last=channels_last),
        batch_size=plan.batch_size,
        seed=seed,
        eval_batch_size=cfg.eval_batch_size,
        augment=sub is None or sub.submission.augment != "none",
        train_step=sub.submission.train_step if sub else None,
        autocast_dtype=autocast_dtype,
        target=cfg.target,
        time_budget=cfg.time_budget,
        max_epochs=plan.max_epochs,
        max_steps=cfg.max_steps,
        eval_every_samples=plan.eval_every_samples,
        checkpoint_every_samples=plan.checkpoint_every_samples,
        # torch.compile's reduce-overhead and max-autotune modes capture CUDA graphs on a GPU
        cudagraphs=device.type == "cuda" and cfg.compile in ("reduce-overhead", "max-autotune"),
        straggler=_straggler(cfg, comm),
    )
    if cfg.compile != "none":
        phase(f"compiling (torch.compile {cfg.compile}, before the clock starts)")
    warmup_s = _warm_up(cfg, comm, spec, model, len(data.test_labels), device, channels_last)
    phase("waiting for every worker" if comm.world_size > 1 else "starting the clock")
    depth, version = BENCHMARKS[cfg.benchmark]
    threshold_spec, threshold_range = cfg.thresholds_for(data.describe()["name"])
    resolved = {
        "global_batch": plan.global_batch,
        "peak_lr": recipe.peak_lr(plan.global_batch),
        "max_epochs": plan.max_epochs,
        "eval_every_samples": plan.eval_every_samples,
        "steps_per_epoch": plan.steps_per_epoch,
        "channels_last": channels_last,
        "warmup_s": warmup_s,
        "thresholds": threshold_spec,
    }
    model_info = {
        "name": cfg.benchmark,
        "depth": depth,
        "version": version,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if opened is None:
        return Setup(
            spec, model, data, resolved, model_info, recipe.to_dict(), threshold_range=threshold_range
        )
    resolved.update(opened["resolved"])
    return Setup(
        spec,
        model,
        data,
        resolved,
        opened["model"] or model_info,
        opened["recipe"],
        opened["submission"],
        threshold_range,
    )


def check_submission(cfg: RunConfig, world_size: int) -> None:
    """The checks `build` runs on a submission, on the CPU without compilation or autocast,
    and without the data set: its optimizer factory sees a RunInfo that counts the synthetic
    set's images, or full CIFAR-10's (the workers call it again with the real count)."""
    sub = open_div.load_submission(cfg.model, cfg.optimizer)
    sub.check_communication(cfg.algorithm, cfg.backend_name())
    plan = _plan(cfg, sub, world_size, cifar10.SYNTHETIC_TRAIN_SIZE if cfg.synthetic else None)
    cpu = torch.device("cpu")
    model = _make_model(cfg, sub, cfg.seed or 0, cpu, _channels_last(cfg, cfg.backend_name()), None)
    _make_optimizer(cfg, sub, model, plan, world_size, CLOSED)


def _channels_last(cfg: RunConfig, backend: str) -> bool:
    # Horovod's collectives take contiguous tensors only, and channels_last
    # weights have channels_last gradients: under Horovod the model keeps
    # the default layout (recorded in config.json as resolved.channels_last).
    return cfg.channels_last and backend != "horovod"


def _straggler(cfg: RunConfig, comm: Comm) -> Straggler | None:
    """This worker's emulated slowness under --straggler RANK:FACTOR (None on the others)."""
    if cfg.straggler_at is None:
        return None
    rank, factor = cfg.straggler_at
    if rank >= comm.world_size:  # validated against --workers; a hand-started worker joins another world
        raise UserError(f"--straggler rank {rank} does not exist with {comm.world_size} worker(s)")
    return Straggler(factor) if rank == comm.rank else None


def _plan(cfg: RunConfig, sub: open_div.LoadedSubmission | None, world: int, train_size: int | None) -> _Plan:
    """train_size None: the data set was not read (the launcher's pre-check); the plan then
    counts full CIFAR-10's training split and leaves the size check to the workers."""
    batch_size = cfg.batch_size if sub is None else sub.batch_size(cfg.batch_size, RunConfig.batch_size)
    global_batch = batch_size * world
    if train_size is None:
        train_size = max(cifar10.FULL_TRAIN_SIZE, global_batch)
    steps_per_epoch = epoch_steps(train_size, global_batch)
    max_epochs = cfg.max_epochs
    if max_epochs is None and cfg.max_steps is None and cfg.target is None and cfg.time_budget is None:
        max_epochs = CLOSED.epochs
    checkpoint_every = 0
    if cfg.checkpoint_cadence is not None:
        checkpoint_every = cfg.checkpoint_cadence.samples(steps_per_epoch, global_batch)
    return _Plan(
        batch_size=batch_size,
        global_batch=global_batch,
        train_size=train_size,
        steps_per_epoch=steps_per_epoch,
        max_epochs=max_epochs,
        eval_every_samples=cfg.eval_cadence.samples(steps_per_epoch, global_batch),
        checkpoint_every_samples=checkpoint_every,
    )


def _make_model(cfg, sub, seed: int, device, channels_last: bool, autocast_dtype) -> torch.nn.Module:
    user_model = sub is not None and sub.submission.model is not None
    torch.manual_seed(seed)  # the same initial weights on every worker
    if user_model:
        model = open_checks.make_model(sub)
    else:
        model = resnet(*BENCHMARKS[cfg.benchmark])
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if user_model:
        open_checks.check_forward(sub, model, device, channels_last, autocast_dtype)
    return model


def _make_optimizer(
    cfg, sub, model: torch.nn.Module, plan: _Plan, world: int, recipe: Recipe
) -> tuple[torch.optim.Optimizer, Callable[[float], float] | None]:
    """The closed recipe's SGD and schedule, or the submission's optimizer (and schedule)."""
    if sub is None or sub.optimizer is None:
        return recipe.sgd(model.parameters()), lambda epoch: recipe.lr_at(epoch, plan.global_batch)
    planned = [e for e in (plan.max_epochs, cfg.max_steps and cfg.max_steps / plan.steps_per_epoch) if e]
    return open_checks.make_optimizer(
        sub,
        model,
        open_div.RunInfo(
            batch_size=plan.batch_size,
            world_size=world,
            global_batch=plan.global_batch,
            train_size=plan.train_size,
            steps_per_epoch=plan.steps_per_epoch,
            epochs=min(planned, default=None),
        ),
    )


def _warm_up(cfg, comm: Comm, spec: LoopSpec, model, test_size: int, device, channels_last) -> float | None:
    """Compilation and its first calls, on random input, before the clock starts; the model,
    gradients and RNG are put back exactly. Sets the spec's models; returns the seconds it took."""
    if cfg.compile == "none":
        return None
    hvd_backward = None
    if comm.backend == "horovod":
        optimizer = spec.optimizer
        hvd_backward = lambda loss: (loss.backward(), optimizer.synchronize())  # noqa: E731
    spec.model, spec.eval_model, warmup_s = warmup.prepare(
        model,
        spec.model,
        device=device,
        train_batch=spec.batch_size,
        eval_batches=warmup.eval_batch_sizes(test_size, comm.world_size, comm.rank, cfg.eval_batch_size),
        autocast_dtype=spec.autocast_dtype,
        compile_mode=cfg.compile,
        channels_last=channels_last,
        train_step=spec.train_step,
        backward=hvd_backward,
        seed=spec.seed,
        cudagraphs=spec.cudagraphs,
    )
    return warmup_s


def _open_record(cfg, sub, model, optimizer, lr_at, batch_size: int, recipe: Recipe) -> dict:
    """What config.json says about an open run: the user's code, the model, and the recipe
    it really trained with (the closed recipe's numbers for every hook it left alone)."""
    s = sub.submission
    loss = "submission train_step" if s.train_step is not None else recipe.loss
    if sub.optimizer is None:
        rec = dict(recipe.to_dict(), batch_per_worker=batch_size, augmentation=s.augment, loss=loss)
        resolved = {"batch_size": batch_size}
    else:
        rec = dict(
            open_checks.describe_optimizer(optimizer),
            lr_schedule="submission lr_at" if lr_at is not None else "none (the optimizer's own)",
            batch_per_worker=batch_size,
            augmentation=s.augment,
            loss=loss,
        )
        initial = lr_at(0.0) if lr_at is not None else optimizer.param_groups[0]["lr"]
        resolved = {"batch_size": batch_size, "peak_lr": None, "initial_lr": float(initial)}
    info = None
    if s.model is not None:
        info = {
            "name": cfg.benchmark_name(),
            "class": type(model).__qualname__,  # its file: config.json's "submission"
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
    return {
        "recipe": rec,
        "resolved": resolved,
        "model": info,
        "submission": sub.record(name=cfg.benchmark_name()),
    }
