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
| comm_hook  | ``(state, bucket) -> Future[Tensor]``: a DDP communication hook with torch's signature (``DistributedDataParallel.register_comm_hook``); ``state`` is ``comm_state`` | the ``--algorithm``'s (``allreduce``: the mean all-reduce of each gradient bucket) |
| comm_state | any object, the hook's ``state``                    | None                              |
| sync_step  | ``(model, step) -> None``: after every optimizer step (``step`` counts from 0), e.g. averaging parameters | nothing                           |

A submission's own communication (comm_hook, sync_step) replaces ``--algorithm``
(which must then be left at ``allreduce``), runs under torchrun only (DDP), and
only with two or more workers (one worker communicates nothing). Timing and
counting are the reference algorithms' (launch/worker/comm_counting.py): the
hook's communication is timed from the bucket's hand-over to its future's
completion, the sync step wholly as exposed wait; while either runs, the
collectives it calls through the ``torch.distributed`` module (``dist.all_reduce``,
``dist.all_gather``, ``all_gather_into_tensor``, ``all_gather_single``,
``dist.send``/``isend``) are counted and charged by the emulated link like the
references'; ``recv``/``irecv`` pass through (receiving sends nothing), and any
other collective raises (it would go uncounted).
summary.json records the counted ``comm_bytes_per_step``; its
``comm_bytes_formula`` is None (no formula is known for the user's pattern).
With several workers whose models differ (a sync_step), evaluation uses the
workers' average model, as for the reference local-sgd and decentralized.

What stays the harness's: the data and its split into per-worker shards,
normalisation, the clock, evaluation on the full test split (the model in
eval mode, rank 0's buffers), data-parallel wrapping, backward and optimizer
step, the network emulation, metrics and the results folder. The model's
initial weights are drawn after ``torch.manual_seed(seed)`` on every worker.
Under DDP every parameter must receive a gradient on every step.

Checks, in the untimed set-up before the clock starts (and, for several
workers, once in the launching process before any worker starts; that one
reads no data, so its RunInfo counts the synthetic set's training images or
full CIFAR-10's, and the workers call the optimizer factory again with the
real count). Each ends
the run with one line (``ttabench: error: ...``, exit code 2); the user's own
traceback is kept on the exception (``user_traceback``, and as its cause), and
``ttabench --debug run ...`` prints it. In the messages, WHO is ``--model REF``
for the model and the submission's fields, and ``--optimizer REF`` or
``Submission.optimizer of --model REF`` for the optimizer; KIND is ``None`` or
``a TYPE`` / ``an TYPE`` (the object's type name); SHAPE is the output's
shape, e.g. ``2x5``; ERROR is ``ExceptionType: first line of its message``;
VALUE is Python's repr. Each module keeps the table of the messages it raises:
open_load.py (finding and importing the code a reference names), this module
(what the reference is, and the Submission's fields), launch/worker/open_checks.py (the
model, its probe forward pass and the optimizer, with torch):

| problem                                   | message                                                                                       |
|-------------------------------------------|-----------------------------------------------------------------------------------------------|
| model reference not callable              | ``--model REF: KIND is not callable (expected a function returning a torch.nn.Module, or a Submission)`` |
| optimizer reference not callable          | ``--optimizer REF: KIND is not callable (expected a function (model, run) -> optimizer)``       |
| a Submission field not callable           | ``--model REF: Submission.FIELD is KIND, not callable``                                         |
| Submission.batch_size invalid             | ``--model REF: Submission.batch_size must be a positive int or None, got VALUE``                |
| Submission.augment invalid                | ``--model REF: Submission.augment must be 'pad4-crop32-hflip' or 'none', got VALUE``            |
| --batch-size disagrees with the submission| ``--batch-size B conflicts with Submission.batch_size S of --model REF; leave --batch-size out`` |
| comm_hook's signature is not torch's      | ``--model REF: Submission.comm_hook must take (state, bucket) as a DDP communication hook does, not (PARAMS)`` |
| sync_step's signature is wrong            | ``--model REF: Submission.sync_step must take (model, step), not (PARAMS)``                      |
| own communication beside --algorithm      | ``--algorithm NAME conflicts with Submission.FIELD of --model REF (the submission's own communication); leave --algorithm out`` |
| own communication under Horovod           | ``--model REF: Submission.FIELD runs under torchrun (a DDP communication hook or step); not under --backend horovod`` |

The flag combinations are checked by RunConfig.validate: ``--model needs --division
open``, ``--optimizer needs --division open``, and ``--division open needs
--model MODULE:CALLABLE or path/to/file.py:CALLABLE, or --optimizer with the
closed model of --benchmark``.

An exception inside the user's code during training (train step, forward,
lr_at) ends the run as ``failed``, recorded in summary.json, like any other
worker failure; the other workers are stopped by the launcher, not left hanging.

This module does not import torch: the readers import ``ttabench.divisions``
without it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ttabench import UserError
from ttabench.divisions.open_load import kind, load_object, parse_ref, user_error

AUGMENTATIONS = ("pad4-crop32-hflip", "none")

ModelFactory = Callable[[], Any]  # () -> torch.nn.Module
LrAt = Callable[[float], float]  # fractional epoch -> learning rate
OptimizerFactory = Callable[[Any, "RunInfo"], Any]  # (model, run) -> Optimizer | (Optimizer, LrAt | None)
TrainStep = Callable[[Any, Any, Any], Any]  # (model, x, y) -> scalar loss tensor
CommHook = Callable[[Any, Any], Any]  # (state, GradBucket) -> torch.futures.Future[Tensor]
SyncStep = Callable[[Any, int], None]  # (model, step) -> None, after each optimizer step
COMMUNICATION = ("comm_hook", "sync_step")


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
    comm_hook: Optional[CommHook] = None
    comm_state: Any = None
    sync_step: Optional[SyncStep] = None

    def own_communication(self) -> list[str]:
        """The fields that set the submission's own communication."""
        return [f for f in COMMUNICATION if getattr(self, f) is not None]


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


def submission_name(model_ref: str | None, benchmark: str) -> str:
    """The <benchmark> part of an open run's results path: the callable's name
    from --model, or the closed benchmark when only --optimizer is given."""
    if not model_ref:
        return benchmark
    return parse_ref(model_ref, "--model").attr


@dataclass
class LoadedSubmission:
    """A submission found by load_submission; launch/worker/open_checks.py holds the checks that need torch."""

    submission: Submission
    optimizer: Optional[OptimizerFactory]  # --optimizer's, else the submission's
    model_ref: Optional[str]
    optimizer_ref: Optional[str]
    source: dict  # config.json's "submission"

    def model_who(self) -> str:
        """Who a message about the model names."""
        return f"--model {self.model_ref}"

    def optimizer_who(self) -> str:
        """Who a message about the optimizer names."""
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
                f"{self.model_who()}; leave --batch-size out"
            )
        return s

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
            "comm_hook": "submission" if s.comm_hook is not None else "--algorithm",
            "sync_step": "submission" if s.sync_step is not None else None,
        }
        return dict(self.source, hooks=hooks, **used)

    def check_communication(self, algorithm: str, backend: str) -> None:
        """A submission's own communication replaces --algorithm and needs DDP (torchrun)."""
        own = self.submission.own_communication()
        if not own:
            return
        if algorithm != "allreduce":
            raise UserError(
                f"--algorithm {algorithm} conflicts with Submission.{own[0]} of {self.model_who()} "
                "(the submission's own communication); leave --algorithm out"
            )
        if backend == "horovod":
            raise UserError(
                f"{self.model_who()}: Submission.{own[0]} runs under torchrun (a DDP communication "
                "hook or step); not under --backend horovod"
            )


def load_submission(model_ref: str | None, optimizer_ref: str | None) -> LoadedSubmission:
    """Import and check what --model and --optimizer name (no torch needed until the checks
    of launch/worker/open_checks.py). Raises UserError with one line from the docstring tables."""
    source: dict = {"model": None, "optimizer": None}
    if model_ref:
        obj, source["model"] = load_object(model_ref, "--model", offered=(Submission,))
        sub = _as_submission(obj, f"--model {model_ref}")
    else:
        sub = Submission(model=None)
    optimizer = sub.optimizer
    if optimizer_ref:
        optimizer, source["optimizer"] = load_object(optimizer_ref, "--optimizer", offered=(Submission,))
        if not callable(optimizer):
            raise user_error(
                f"--optimizer {optimizer_ref}: {kind(optimizer)} is not callable "
                "(expected a function (model, run) -> optimizer)"
            )
    return LoadedSubmission(sub, optimizer, model_ref, optimizer_ref, source)


def _signature(f) -> inspect.Signature | None:
    try:
        return inspect.signature(f)
    except (TypeError, ValueError):  # a builtin without one: called as given
        return None


def _takes_two(f) -> bool:
    """Whether f can be called with two positional arguments."""
    sig = _signature(f)
    if sig is None:
        return True
    try:
        sig.bind(None, None)
    except TypeError:
        return False
    return True


def _params(f) -> str:
    sig = _signature(f)
    return ", ".join(sig.parameters) if sig is not None else "?"


def _as_submission(obj, who: str) -> Submission:
    """What --model names, as a Submission whose fields are checked (without calling them)."""
    if isinstance(obj, Submission):
        sub = obj
        if sub.model is not None and not callable(sub.model):
            raise user_error(f"{who}: Submission.model is {kind(sub.model)}, not callable")
    elif callable(obj):
        sub = Submission(model=obj)
    else:
        raise user_error(
            f"{who}: {kind(obj)} is not callable (expected a function returning a "
            "torch.nn.Module, or a Submission)"
        )
    for name in ("optimizer", "train_step", "comm_hook", "sync_step"):
        v = getattr(sub, name)
        if v is not None and not callable(v):
            raise user_error(f"{who}: Submission.{name} is {kind(v)}, not callable")
    if sub.comm_hook is not None and not _takes_two(sub.comm_hook):
        raise user_error(
            f"{who}: Submission.comm_hook must take (state, bucket) as a DDP communication hook "
            f"does, not ({_params(sub.comm_hook)})"
        )
    if sub.sync_step is not None and not _takes_two(sub.sync_step):
        raise user_error(
            f"{who}: Submission.sync_step must take (model, step), not ({_params(sub.sync_step)})"
        )
    b = sub.batch_size
    if b is not None and (not isinstance(b, int) or isinstance(b, bool) or b < 1):
        raise user_error(f"{who}: Submission.batch_size must be a positive int or None, got {b!r}")
    if sub.augment not in AUGMENTATIONS:
        raise user_error(
            f"{who}: Submission.augment must be 'pad4-crop32-hflip' or 'none', got {sub.augment!r}"
        )
    return sub
