"""The open division: a user's own model (and optimizer) under the harness's data, clock,
evaluation, metrics and results folder.

    ttabench run --division open --model examples/small_cnn.py:small_cnn --synthetic --max-epochs 3
    ttabench run --division open --model my_package.nets:build_net --data-dir DIR --workers 2
    ttabench run --division open --benchmark resnet20 \\
        --optimizer examples/adam_resnet.py:adamw_cosine --data-dir DIR --max-epochs 30

A reference is ``MODULE:CALLABLE`` (imported with the current folder on the
path) or ``path/to/file.py:CALLABLE`` (executed as a module, its folder put
first on the path as ``python file.py`` would). ``--model REF`` names either

- a callable ``() -> torch.nn.Module`` (every hook below keeps its default), or
- a ``Submission``, which sets any of the optional hooks.

``--optimizer REF`` names an optimizer factory; it replaces the submission's.
With ``--optimizer`` alone the model is the closed one named by ``--benchmark``
(a closed model with another optimizer is an open-division run).

The hooks, and their defaults (the closed recipe, reference_impls/recipe.py):

| hook       | what it is                                          | default                           |
|------------|-----------------------------------------------------|-----------------------------------|
| model      | ``() -> nn.Module``: float N x 3 x 32 x 32 (normalised per channel) -> N x 10 logits | the closed ResNet of ``--benchmark`` |
| optimizer  | ``(model, run: RunInfo) -> Optimizer`` or ``(Optimizer, lr_at)``; ``lr_at(epoch: float) -> lr`` is set on every param group before each step; ``lr_at`` None (or a bare Optimizer) leaves the learning rates alone | SGD, momentum 0.9, weight decay 1e-4, lr 0.1 per 128 samples of global batch, 5-epoch warm-up, x0.1 at epochs 82 and 123 |
| batch_size | batch per worker (``--batch-size`` must then be left out or agree) | ``--batch-size`` (128) |
| train_step | ``(model, x, y) -> loss``, a scalar tensor; the harness then runs backward and the optimizer step (data-parallel: DDP / Horovod) | ``cross_entropy(model(x), y)`` |
| augment    | ``"pad4-crop32-hflip"`` or ``"none"``               | ``"pad4-crop32-hflip"``           |

What stays the harness's: the data and its split into per-worker shards,
normalisation, the clock, evaluation on the full test split (the model in
eval mode, rank 0's buffers), data-parallel wrapping, backward and optimizer
step, the network emulation, metrics and the results folder. The model's
initial weights are drawn after ``torch.manual_seed(seed)`` on every worker.
Under DDP every parameter must receive a gradient on every step.

Checks, in the untimed set-up before the clock starts (and, for several
workers, once in the launching process before any worker starts). Each ends
the run with one line (``ttabench: error: ...``, exit code 2); the user's own
traceback is kept on the exception (``user_traceback``, and as its cause), and
``ttabench --debug run ...`` prints it. In the messages, WHO is ``--model REF``
for the model and the submission's fields, and ``--optimizer REF`` or
``Submission.optimizer of --model REF`` for the optimizer; KIND is ``None`` or
``a TYPE`` / ``an TYPE`` (the object's type name); SHAPE is the output's
shape, e.g. ``2x5``; ERROR is ``ExceptionType: first line of its message``.

| problem                                   | message                                                                                       |
|-------------------------------------------|-----------------------------------------------------------------------------------------------|
| reference without ``:``                   | ``FLAG must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got 'REF'``                        |
| file not found                            | ``FLAG REF: file not found: ABSPATH``                                                          |
| module not found                          | ``FLAG REF: no module named 'MODULE' (run from its folder, add it to PYTHONPATH, or give path/to/file.py:CALLABLE)`` |
| syntax error in the user's code           | ``FLAG REF: syntax error in FILE, line N: MESSAGE``                                            |
| import raised                             | ``FLAG REF: importing TARGET raised ERROR``                                                    |
| attribute missing                         | ``FLAG REF: TARGET has no attribute 'NAME'; it has: CALLABLES``                               |
| attribute missing, file has no callable   | ``FLAG REF: TARGET has no attribute 'NAME'; it defines no callable``                          |
| model reference not callable              | ``--model REF: KIND is not callable (expected a function returning a torch.nn.Module, or a Submission)`` |
| optimizer reference not callable          | ``--optimizer REF: KIND is not callable (expected a function (model, run) -> optimizer)``       |
| a Submission field not callable           | ``--model REF: Submission.FIELD is KIND, not callable``                                         |
| Submission.batch_size invalid             | ``--model REF: Submission.batch_size must be a positive int or None, got VALUE``                |
| Submission.augment invalid                | ``--model REF: Submission.augment must be 'pad4-crop32-hflip' or 'none', got VALUE``            |
| --batch-size disagrees with the submission| ``--batch-size B conflicts with Submission.batch_size S of --model REF; leave --batch-size out`` |
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

(FLAG is ``--model`` or ``--optimizer``; VALUE is Python's repr.) The flag
combinations are checked by RunConfig.validate: ``--model needs --division
open``, ``--optimizer needs --division open``, and ``--division open needs
--model MODULE:CALLABLE or path/to/file.py:CALLABLE, or --optimizer with the
closed model of --benchmark``.

An exception inside the user's code during training (train step, forward,
lr_at) ends the run as ``failed``, recorded in summary.json, like any other
worker failure; the other workers are stopped by the launcher, not left hanging.

This module imports torch only inside functions: the readers import
``ttabench.divisions`` without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import numbers
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

from ttabench import UserError, error_line

AUGMENTATIONS = ("pad4-crop32-hflip", "none")
PROBE_SHAPE = (2, 3, 32, 32)
NUM_CLASSES = 10

ModelFactory = Callable[[], Any]  # () -> torch.nn.Module
LrAt = Callable[[float], float]  # fractional epoch -> learning rate
OptimizerFactory = Callable[[Any, "RunInfo"], Any]  # (model, run) -> Optimizer | (Optimizer, LrAt | None)
TrainStep = Callable[[Any, Any, Any], Any]  # (model, x, y) -> scalar loss tensor


@dataclass(frozen=True)
class Submission:
    """A user's open-division entry; every field but ``model`` is optional.

    None (and the default augmentation) means the closed recipe's choice,
    see the table in this module's docstring.
    """

    model: Optional[ModelFactory]  # None: the closed ResNet of --benchmark
    optimizer: Optional[OptimizerFactory] = None
    batch_size: Optional[int] = None  # per worker
    train_step: Optional[TrainStep] = None
    augment: str = "pad4-crop32-hflip"


@dataclass(frozen=True)
class RunInfo:
    """What an optimizer factory may need to know about the run it trains."""

    batch_size: int  # per worker
    world_size: int
    global_batch: int
    train_size: int  # images in the training split
    steps_per_epoch: int
    epochs: Optional[float]  # planned length (--max-epochs / --max-steps); None: --target or
    #                          --time-budget alone decide when the run stops


class Ref(NamedTuple):
    target: str  # a module name or a file path, as given
    attr: str  # the attribute, possibly dotted
    is_file: bool


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")


def parse_ref(ref: str, flag: str) -> Ref:
    """'pkg.mod:fn' or 'path/to/file.py:fn' -> Ref; UserError for anything else (no import)."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not _DOTTED.match(attr):
        raise UserError(f"{flag} must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got {ref!r}")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if not is_file and not _DOTTED.match(target):
        raise UserError(f"{flag} must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got {ref!r}")
    return Ref(target, attr, is_file)


def submission_name(model_ref: str | None, benchmark: str) -> str:
    """The <benchmark> part of an open run's results path: the callable's name
    from --model, or the closed benchmark when only --optimizer is given."""
    if not model_ref:
        return benchmark
    return parse_ref(model_ref, "--model").attr


def _kind(x) -> str:
    if x is None:
        return "None"
    name = type(x).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _fail(message: str, cause: BaseException | None = None) -> UserError:
    """A UserError carrying the user's own traceback (printed under --debug)."""
    err = UserError(message)
    err.user_traceback = (
        "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        if cause is not None
        else None
    )
    err.__cause__ = cause
    return err


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def _load_object(ref: str, flag: str) -> tuple[Any, dict]:
    """Import the reference's target and return (object, source record for config.json)."""
    r = parse_ref(ref, flag)
    where = f"{flag} {ref}"
    if r.is_file:
        path = os.path.abspath(r.target)
        try:
            with open(path, "rb") as f:
                code = f.read()
        except FileNotFoundError:
            raise _fail(f"{where}: file not found: {path}") from None
        except OSError as e:
            raise _fail(f"{where}: cannot read {path}: {e.strerror}", e) from e
        digest = hashlib.sha256(code).hexdigest()
        stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        name = f"_ttabench_submission_{stem}_{digest[:12]}"
        module = types.ModuleType(name)
        module.__file__ = path
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)  # as `python file.py` would: its neighbours import
        sys.modules[name] = module  # dataclasses and pickle look classes up there
        try:
            # The bytes that were hashed are the bytes that run.
            exec(compile(code, path, "exec"), module.__dict__)
        except SyntaxError as e:
            del sys.modules[name]
            raise _fail(f"{where}: syntax error in {e.filename}, line {e.lineno}: {e.msg}", e) from e
        except (Exception, SystemExit) as e:
            del sys.modules[name]
            raise _fail(f"{where}: importing {r.target} raised {error_line(e)}", e) from e
        source = {"ref": ref, "kind": "file", "path": path, "attribute": r.attr, "sha256": digest}
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())  # `ttabench` as a console script has no cwd on its path
        try:
            module = importlib.import_module(r.target)
        except ModuleNotFoundError as e:
            if e.name and (r.target == e.name or r.target.startswith(e.name + ".")):
                raise _fail(
                    f"{where}: no module named {r.target!r} (run from its folder, add it "
                    "to PYTHONPATH, or give path/to/file.py:CALLABLE)",
                    e,
                ) from e
            raise _fail(f"{where}: importing {r.target} raised {error_line(e)}", e) from e
        except SyntaxError as e:
            raise _fail(f"{where}: syntax error in {e.filename}, line {e.lineno}: {e.msg}", e) from e
        except (Exception, SystemExit) as e:
            raise _fail(f"{where}: importing {r.target} raised {error_line(e)}", e) from e
        path = getattr(module, "__file__", None)
        source = {
            "ref": ref,
            "kind": "module",
            "module": r.target,
            "path": os.path.abspath(path) if path else None,
            "attribute": r.attr,
            "sha256": _sha256(path) if path else None,
        }
    obj = module
    for part in r.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _fail(f"{where}: {r.target} has no attribute {r.attr!r}{_offer(module)}") from None
        except Exception as e:  # a module __getattr__ or property of the user's
            raise _fail(f"{where}: {r.target} has no attribute {r.attr!r}", e) from e
    return obj, source


def _offer(module) -> str:
    """'; it has: a, b' -- the callables and Submissions defined in the user's module."""
    names = sorted(
        name
        for name, v in vars(module).items()
        if not name.startswith("_")
        and (isinstance(v, Submission) or (callable(v) and getattr(v, "__module__", None) == module.__name__))
    )
    return f"; it has: {', '.join(names)}" if names else "; it defines no callable"


@dataclass
class LoadedSubmission:
    """A submission found by load_submission, with the checks that need torch."""

    submission: Submission
    optimizer: Optional[OptimizerFactory]  # --optimizer's, else the submission's
    model_ref: Optional[str]
    optimizer_ref: Optional[str]
    source: dict  # config.json's "submission"

    # -- who is named in messages
    def _model_who(self) -> str:
        return f"--model {self.model_ref}"

    def _optimizer_who(self) -> str:
        if self.optimizer_ref:
            return f"--optimizer {self.optimizer_ref}"
        return f"Submission.optimizer of --model {self.model_ref}"

    def batch_size(self, flag_value: int, flag_default: int) -> int:
        """The batch per worker: the submission's, unless --batch-size is given (and then they agree)."""
        s = self.submission.batch_size
        if s is None:
            return flag_value
        if flag_value != flag_default and flag_value != s:
            raise UserError(
                f"--batch-size {flag_value} conflicts with Submission.batch_size {s} of "
                f"{self._model_who()}; leave --batch-size out"
            )
        return s

    def make_model(self):
        """Call the user's model factory; the result is a module with trainable parameters."""
        import torch

        who = self._model_who()
        try:
            model = self.submission.model()
        except Exception as e:
            raise _fail(f"{who}: calling it raised {error_line(e)}", e) from e
        if not isinstance(model, torch.nn.Module):
            raise _fail(f"{who}: returned {_kind(model)}, not a torch.nn.Module")
        params = list(model.parameters())
        if not params:
            raise _fail(f"{who}: the model has no parameters")
        if not any(p.requires_grad for p in params):
            raise _fail(f"{who}: the model has no trainable parameters (every one has requires_grad=False)")
        return model

    def check_forward(self, model, device, channels_last: bool, autocast_dtype) -> None:
        """One forward pass on a random probe batch, as the loop will call it (device, memory
        format, autocast), in eval mode without gradients: the model's state is left as it was."""
        import torch

        who = self._model_who()
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
            raise _fail(
                f"{who}: the forward pass on a probe batch of {probe} raised {error_line(e)}", e
            ) from e
        finally:
            model.train(was_training)
        if not isinstance(out, torch.Tensor):
            raise _fail(
                f"{who}: the forward pass returned {_kind(out)}, expected a tensor of "
                f"{PROBE_SHAPE[0]}x{NUM_CLASSES} logits"
            )
        if tuple(out.shape) != (PROBE_SHAPE[0], NUM_CLASSES):
            shape = "x".join(map(str, out.shape)) or "()"
            raise _fail(
                f"{who}: output of shape {shape} on a probe batch of {probe}, expected "
                f"{PROBE_SHAPE[0]}x{NUM_CLASSES} (N x {NUM_CLASSES} logits)"
            )
        if not bool(torch.isfinite(out.float()).all()):
            raise _fail(f"{who}: non-finite output (nan or inf) on a probe batch of {probe}")

    def make_optimizer(self, model, run: RunInfo):
        """(optimizer, lr_at or None) from the user's factory, covering exactly the model's
        trainable parameters."""
        import torch

        who = self._optimizer_who()
        try:
            made = self.optimizer(model, run)
        except Exception as e:
            raise _fail(f"{who}: calling it raised {error_line(e)}", e) from e
        optimizer, lr_at = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise _fail(
                f"{who}: returned {_kind(made)}, expected a torch.optim.Optimizer or (optimizer, lr_at)"
            )
        if lr_at is not None:
            if not callable(lr_at):
                raise _fail(f"{who}: lr_at is {_kind(lr_at)}, expected a function epoch -> lr, or None")
            try:
                lr0 = lr_at(0.0)
            except Exception as e:
                raise _fail(f"{who}: lr_at(0.0) raised {error_line(e)}", e) from e
            if (
                not isinstance(lr0, numbers.Real)
                or isinstance(lr0, bool)
                or not math.isfinite(lr0)
                or lr0 < 0
            ):
                raise _fail(f"{who}: lr_at(0.0) returned {lr0!r}, expected a finite number >= 0")
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n, p in trainable if id(p) not in held]
        if missing:
            raise _fail(
                f"{who}: the optimizer misses {len(missing)} of the model's "
                f"{len(trainable)} trainable parameters (first: {missing[0]})"
            )
        foreign = held - {id(p) for p in model.parameters()}
        if foreign:
            raise _fail(
                f"{who}: the optimizer holds {len(foreign)} tensors that are not the model's parameters"
            )
        return optimizer, lr_at

    def record(self, **used) -> dict:
        """config.json's "submission": where the code came from, and which hooks it set."""
        s = self.submission
        hooks = {
            "model": "submission" if s.model is not None else "closed",
            "optimizer": (
                "--optimizer"
                if self.optimizer_ref
                else "submission"
                if self.optimizer is not None
                else "closed recipe"
            ),
            "batch_size": "submission" if s.batch_size is not None else "--batch-size",
            "train_step": "submission" if s.train_step is not None else "cross_entropy",
            "augment": s.augment,
        }
        return dict(self.source, hooks=hooks, **used)


def describe_optimizer(optimizer) -> dict:
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


def load_submission(model_ref: str | None, optimizer_ref: str | None) -> LoadedSubmission:
    """Import and check what --model and --optimizer name (no torch needed until the checks
    of LoadedSubmission). Raises UserError with one line from the module docstring's table."""
    source: dict = {"model": None, "optimizer": None}
    if model_ref:
        obj, source["model"] = _load_object(model_ref, "--model")
        who = f"--model {model_ref}"
        if isinstance(obj, Submission):
            sub = obj
            if sub.model is not None and not callable(sub.model):
                raise _fail(f"{who}: Submission.model is {_kind(sub.model)}, not callable")
        elif callable(obj):
            sub = Submission(model=obj)
        else:
            raise _fail(
                f"{who}: {_kind(obj)} is not callable (expected a function returning a "
                "torch.nn.Module, or a Submission)"
            )
        for name in ("optimizer", "train_step"):
            v = getattr(sub, name)
            if v is not None and not callable(v):
                raise _fail(f"{who}: Submission.{name} is {_kind(v)}, not callable")
        b = sub.batch_size
        if b is not None and (not isinstance(b, int) or isinstance(b, bool) or b < 1):
            raise _fail(f"{who}: Submission.batch_size must be a positive int or None, got {b!r}")
        if sub.augment not in AUGMENTATIONS:
            raise _fail(
                f"{who}: Submission.augment must be 'pad4-crop32-hflip' or 'none', got {sub.augment!r}"
            )
    else:
        sub = Submission(model=None)
    optimizer = sub.optimizer
    if optimizer_ref:
        optimizer, source["optimizer"] = _load_object(optimizer_ref, "--optimizer")
        if not callable(optimizer):
            raise _fail(
                f"--optimizer {optimizer_ref}: {_kind(optimizer)} is not callable "
                "(expected a function (model, run) -> optimizer)"
            )
    return LoadedSubmission(sub, optimizer, model_ref, optimizer_ref, source)
