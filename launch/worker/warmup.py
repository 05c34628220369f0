"""Compile and warm up a model before ``run_start``, on random input, leaving no trace.

The design card allows "compilation warm-up that does not touch the training
data (bounded and recorded)" outside the clock. This module is that step:

- ``torch.compile`` (when a mode is asked for) of the model the loop trains
  (the data-parallel wrapper, so DDP's graph breaks at bucket boundaries are
  compiled too) and of the plain model it evaluates;
- forward + backward on random input of the training batch's shape, dtype
  and memory format, under the run's autocast, and the evaluation forward
  (eval mode, inference mode) on every evaluation batch shape the run will
  see, so no compilation, recompilation or first-call cost (oneDNN primitive
  creation, allocator growth, DDP's bucket rebuild) lands inside the clock;
- then everything the warm-up touched is put back exactly: parameters and
  buffers from a deep copy of the state_dict taken before (BN running
  statistics and ``num_batches_tracked`` included), gradients set to None,
  the global RNG state restored. The optimizer is never stepped, so its state
  is untouched; only the gradient hooks of the data-parallel wrapper fire.

Under DDP every rank must call it (the warm-up backward all-reduces).
Under Horovod pass ``backward=lambda loss: (loss.backward(), optimizer.synchronize())``
so the gradient all-reduces it starts are completed before the real first step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import torch

from ttabench.launch.worker.compute import autocast, default_train_step


@dataclass
class WarmedUp:
    """What ``prepare`` returns; unpacks as (model_to_train, model_to_eval, warmup_s)."""

    train_model: torch.nn.Module
    eval_model: torch.nn.Module
    warmup_s: float

    def __iter__(self):
        return iter((self.train_model, self.eval_model, self.warmup_s))


def eval_batch_sizes(n_test: int, world: int, rank: int, eval_batch_size: int) -> list[int]:
    """The distinct batch sizes rank ``rank`` evaluates (compute.evaluate's sharding:
    images rank, rank+world, ... in chunks of eval_batch_size)."""
    shard = len(range(rank, n_test, world))
    if shard == 0:
        return []
    sizes = [min(eval_batch_size, shard)]
    tail = shard % eval_batch_size
    if shard > eval_batch_size and tail:
        sizes.append(tail)
    return sizes


def _compile(module: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    if mode in (None, "none"):
        return module
    # "default" is torch.compile's own default; pass no mode for it.
    return torch.compile(module) if mode == "default" else torch.compile(module, mode=mode)


def prepare(
    model: torch.nn.Module,
    wrapped: torch.nn.Module,
    *,
    device,
    train_batch: int,
    eval_batches: Sequence[int] = (),
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    autocast_dtype: torch.dtype | None = None,
    compile_mode: str | None = "none",
    channels_last: bool = False,
    train_step: Callable | None = None,
    backward: Callable | None = None,
    train_steps: int = 2,
    seed: int = 0,
    cudagraphs: bool = False,
) -> WarmedUp:
    """Compile (optionally) and warm up; return (model_to_train, model_to_eval, seconds).

    ``model`` is the plain module (what the loop evaluates), ``wrapped`` what
    it trains (the DDP wrapper, or ``model`` itself). ``train_step(model, x, y)
    -> loss`` is the loop's step (default: cross-entropy). The inputs are
    random normal floats (what Normalize produces) and random labels, drawn from
    a private generator: neither the training data nor the global RNG is used.
    """
    device = torch.device(device)
    step = train_step or default_train_step
    do_backward = backward or (lambda loss: loss.backward())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    t0 = time.perf_counter()

    saved = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    was_training = model.training
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def batch(n: int):
        x = torch.randn((n, *input_shape), generator=gen).to(device)
        x = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
        y = torch.randint(0, num_classes, (n,), generator=gen).to(device)
        return x, y

    train_model = _compile(wrapped, compile_mode)
    eval_model = _compile(model, compile_mode)
    try:
        train_model.train()
        # CUDA graphs run a step eagerly, record the next and replay from the third on:
        # three warm-up steps leave the clock only replays.
        for _ in range(max(3 if cudagraphs else 1, train_steps)):
            x, y = batch(train_batch)
            if cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            with autocast(device, autocast_dtype):
                loss = step(train_model, x, y)
            if not math.isfinite(float(loss.detach())):
                raise RuntimeError("warm-up produced a non-finite loss on random input")
            do_backward(loss)
        eval_model.eval()
        with torch.inference_mode(), autocast(device, autocast_dtype):
            for n in eval_batches:
                x, _ = batch(n)
                eval_model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        # Put back exactly what was there: load_state_dict copies into the
        # existing tensors, so the optimizer's references stay valid.
        model.load_state_dict(saved)
        for p in model.parameters():
            p.grad = None
        model.train(was_training)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return WarmedUp(train_model, eval_model, time.perf_counter() - t0)
