"""The open-division checks that need torch: the user's model is built and run on a
probe batch, the optimizer is built and held against the model's parameters.

The worker's untimed set-up (launch/worker/workload.py) runs them before the
clock starts; with several workers the launcher runs them once before any
worker starts. This is the one module of divisions/ that imports torch: the
readers import ``ttabench.divisions`` and never this module.

What the user can get wrong here, and the one line each ends in (WHO, KIND,
SHAPE, ERROR and VALUE are explained in open.py):

| problem                                   | message                                                                                       |
|-------------------------------------------|-----------------------------------------------------------------------------------------------|
| model factory raised                      | ``--model REF: calling it raised ERROR``                                                       |
| not a torch.nn.Module                     | ``--model REF: returned KIND, not a torch.nn.Module``                                          |
| no parameters                             | ``--model REF: the model has no parameters``                                                   |
| no trainable parameters                   | ``--model REF: the model has no trainable parameters (every one has requires_grad=False)``     |
| forward pass raised                       | ``--model REF: the forward pass on a probe batch of 2x3x32x32 raised ERROR``                   |
| output not a tensor                       | ``--model REF: the forward pass returned KIND, expected a tensor of 2x10 logits``              |
| wrong output shape                        | ``--model REF: output of shape SHAPE on a probe batch of 2x3x32x32, expected 2x10 (N x 10 logits)`` |
| non-finite output                         | ``--model REF: non-finite output (nan or inf) on a probe batch of 2x3x32x32``                  |
| optimizer factory raised                  | ``WHO: calling it raised ERROR``                                                               |
| not an optimizer                          | ``WHO: returned KIND, expected a torch.optim.Optimizer or (optimizer, lr_at)``                 |
| lr_at not callable                        | ``WHO: lr_at is KIND, expected a function epoch -> lr, or None``                               |
| lr_at raised                              | ``WHO: lr_at(0.0) raised ERROR``                                                               |
| lr_at not a number                        | ``WHO: lr_at(0.0) returned VALUE, expected a finite number >= 0``                              |
| optimizer misses model parameters         | ``WHO: the optimizer misses K of the model's N trainable parameters (first: NAME)``            |
| optimizer holds foreign tensors           | ``WHO: the optimizer holds K tensors that are not the model's parameters``                     |
"""

from __future__ import annotations

import contextlib
import math
import numbers

import torch

from ttabench import error_line
from ttabench.divisions.open import LoadedSubmission, LrAt, RunInfo
from ttabench.divisions.open_load import kind, user_error

PROBE_SHAPE = (2, 3, 32, 32)
NUM_CLASSES = 10


def make_model(sub: LoadedSubmission) -> torch.nn.Module:
    """Call the user's model factory; the result is a module with trainable parameters."""
    who = sub.model_who()
    try:
        model = sub.submission.model()
    except Exception as e:
        raise user_error(f"{who}: calling it raised {error_line(e)}", e) from e
    if not isinstance(model, torch.nn.Module):
        raise user_error(f"{who}: returned {kind(model)}, not a torch.nn.Module")
    params = list(model.parameters())
    if not params:
        raise user_error(f"{who}: the model has no parameters")
    if not any(p.requires_grad for p in params):
        raise user_error(f"{who}: the model has no trainable parameters (every one has requires_grad=False)")
    return model


def check_forward(
    sub: LoadedSubmission, model, device: torch.device, channels_last: bool, autocast_dtype
) -> None:
    """One forward pass on a random probe batch, as the loop will call it (device, memory
    format, autocast), in eval mode without gradients: the model's state is left as it was."""
    who = sub.model_who()
    g = torch.Generator().manual_seed(0)  # the global RNG (dropout, init) is not touched
    x = torch.randn(PROBE_SHAPE, generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    probe = "x".join(map(str, PROBE_SHAPE))
    was_training = model.training
    model.eval()
    try:
        with (
            torch.no_grad(),
            (
                torch.autocast(device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            ),
        ):
            out = model(x)
    except Exception as e:
        raise user_error(
            f"{who}: the forward pass on a probe batch of {probe} raised {error_line(e)}", e
        ) from e
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise user_error(
            f"{who}: the forward pass returned {kind(out)}, expected a tensor of "
            f"{PROBE_SHAPE[0]}x{NUM_CLASSES} logits"
        )
    if tuple(out.shape) != (PROBE_SHAPE[0], NUM_CLASSES):
        shape = "x".join(map(str, out.shape)) or "()"
        raise user_error(
            f"{who}: output of shape {shape} on a probe batch of {probe}, expected "
            f"{PROBE_SHAPE[0]}x{NUM_CLASSES} (N x {NUM_CLASSES} logits)"
        )
    if not bool(torch.isfinite(out.float()).all()):
        raise user_error(f"{who}: non-finite output (nan or inf) on a probe batch of {probe}")


def make_optimizer(
    sub: LoadedSubmission, model: torch.nn.Module, run: RunInfo
) -> tuple[torch.optim.Optimizer, LrAt | None]:
    """(optimizer, lr_at or None) from the user's factory, covering exactly the model's
    trainable parameters."""
    who = sub.optimizer_who()
    try:
        made = sub.optimizer(model, run)
    except Exception as e:
        raise user_error(f"{who}: calling it raised {error_line(e)}", e) from e
    optimizer, lr_at = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise user_error(
            f"{who}: returned {kind(made)}, expected a torch.optim.Optimizer or (optimizer, lr_at)"
        )
    if lr_at is not None:
        _check_lr_at(who, lr_at)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if id(p) not in held]
    if missing:
        raise user_error(
            f"{who}: the optimizer misses {len(missing)} of the model's "
            f"{len(trainable)} trainable parameters (first: {missing[0]})"
        )
    foreign = held - {id(p) for p in model.parameters()}
    if foreign:
        raise user_error(
            f"{who}: the optimizer holds {len(foreign)} tensors that are not the model's parameters"
        )
    return optimizer, lr_at


def _check_lr_at(who: str, lr_at) -> None:
    if not callable(lr_at):
        raise user_error(f"{who}: lr_at is {kind(lr_at)}, expected a function epoch -> lr, or None")
    try:
        lr0 = lr_at(0.0)
    except Exception as e:
        raise user_error(f"{who}: lr_at(0.0) raised {error_line(e)}", e) from e
    if not isinstance(lr0, numbers.Real) or isinstance(lr0, bool) or not math.isfinite(lr0) or lr0 < 0:
        raise user_error(f"{who}: lr_at(0.0) returned {lr0!r}, expected a finite number >= 0")


def describe_optimizer(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's class and hyperparameters per param group, as plain JSON values."""

    def plain(v):
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else repr(v)
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, numbers.Real):
            return plain(float(v))
        return repr(v)

    groups = [
        dict({k: plain(v) for k, v in g.items() if k != "params"}, params=sum(p.numel() for p in g["params"]))
        for g in optimizer.param_groups
    ]
    cls = type(optimizer)
    return {
        "optimizer": cls.__name__,
        "optimizer_class": f"{cls.__module__}.{cls.__qualname__}",
        "param_groups": groups,
    }
