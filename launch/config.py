"""The run configuration: one dataclass whose fields carry their help text.

``ttabench run --help``, config.json and the code read the same fields.
A run's config.json holds ``RunConfig.to_dict()`` plus the resolved values
(seed, threads, devices) so the run can be repeated from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from dataclasses import dataclass, field

from ttabench import UserError
from ttabench.divisions import metrics
from ttabench.divisions import open as open_division
from ttabench.reference_impls.recipe import BENCHMARKS, CLOSED, PRECISIONS

BACKENDS = ("auto", "none", "torchrun", "horovod")
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("none", "default", "max-autotune")
PROGRESS = ("auto", "rich", "plain", "none")


def _f(default, help, group, **kw):
    return field(default=default, metadata={"help": help, "group": group, **kw})


@dataclass
class RunConfig:
    # -- workload
    benchmark: str = _f(
        "resnet20",
        "closed-division workload: " + ", ".join(BENCHMARKS) + " (the model of an open run without --model)",
        "workload",
        choices=tuple(BENCHMARKS),
    )
    division: str = _f(
        "closed",
        "closed (the reference recipe) or open (your own model, see --model)",
        "workload",
        choices=("closed", "open"),
    )
    model: str | None = _f(
        None,
        "open division: your model, MODULE:CALLABLE or path/to/file.py:CALLABLE "
        "(a function returning a torch.nn.Module, or a ttabench Submission; "
        "see ttabench.divisions.open)",
        "workload",
    )
    optimizer: str | None = _f(
        None,
        "open division: your optimizer factory, MODULE:CALLABLE or "
        "path/to/file.py:CALLABLE, (model, run) -> optimizer or "
        "(optimizer, lr_at); alone, it trains the closed --benchmark "
        "model",
        "workload",
    )
    data_dir: str | None = _f(
        None, "CIFAR-10 `cifar-10-batches-py` folder (default: $TTABENCH_DATA_DIR)", "workload"
    )
    synthetic: bool = _f(
        False,
        "train on the built-in synthetic data set (offline demo; never a closed-division result)",
        "workload",
    )
    seed: int | None = _f(None, "random seed (default: a fresh random seed, logged)", "workload")
    batch_size: int = _f(
        CLOSED.batch_per_worker,
        f"batch per worker (closed: {CLOSED.min_batch_per_worker}..{CLOSED.max_batch_per_worker})",
        "workload",
    )
    # -- stop rules and measurement
    target: float | None = _f(None, "stop once test accuracy >= TARGET (TTA mode), a fraction", "stop rules")
    time_budget: float | None = _f(
        None,
        "stop when the training time reaches this many seconds, evaluating first (AAT mode)",
        "stop rules",
    )
    max_epochs: float | None = _f(
        None,
        "stop after this many epochs (default: the recipe's "
        f"{CLOSED.epochs} when no other stop rule is given)",
        "stop rules",
    )
    max_steps: int | None = _f(None, "stop after this many optimizer steps", "stop rules")
    eval_every: str = _f("1epoch", "evaluation cadence: e.g. 1epoch, 0.5epoch, 12800samples", "stop rules")
    thresholds: str = _f(
        "0.80:0.92:0.01", "accuracy thresholds LOW:HIGH:STEP for the TTMT curve", "stop rules"
    )
    # -- performance
    device: str = _f("auto", "cpu, cuda, or auto (cuda when available)", "performance", choices=DEVICES)
    precision: str = _f(
        "fp32",
        "fp32; bf16 (AMX/AVX-512 CPUs, GPUs) or fp16 (GPU) autocast",
        "performance",
        choices=PRECISIONS,
    )
    compile: str = _f(
        "none", "torch.compile mode, compiled before the clock starts", "performance", choices=COMPILE_MODES
    )
    channels_last: bool = _f(True, "channels_last memory format for model and data", "performance")
    threads: int | None = _f(
        None, "intra-op threads per worker (default: cores / local workers)", "performance"
    )
    eval_batch_size: int = _f(1000, "batch size for evaluation (does not change the result)", "performance")
    # -- launch
    workers: int = _f(1, "worker processes on this node", "launch")
    backend: str = _f(
        "auto",
        "none (one process), torchrun (DDP) or horovod; auto = none for 1 worker, torchrun otherwise",
        "launch",
        choices=BACKENDS,
    )
    dist_backend: str | None = _f(
        None, "torch.distributed backend (default: nccl on GPU, gloo on CPU)", "launch"
    )
    nnodes: int = _f(1, "number of nodes (torchrun, c10d rendezvous)", "launch")
    node_rank: int = _f(0, "this node's rank (multi-node)", "launch")
    rdzv_endpoint: str | None = _f(None, "HOST:PORT of the rendezvous (multi-node)", "launch")
    local_addr: str | None = _f(
        None, "address the other nodes reach this node at (multi-node; default: this host's name)", "launch"
    )
    network: str | None = _f(
        None,
        "emulated network profile (see `ttabench network list`): "
        "loopback, 100gbe, 25gbe, 10gbe, 1gbe, 100mbit, wan",
        "network",
    )
    bandwidth: str | None = _f(
        None, "emulated link bandwidth, tc units: e.g. 1gbit, 100mbit, 125mbps", "network"
    )
    latency: str | None = _f(None, "emulated per-message latency, tc units: e.g. 0.5ms, 50us", "network")
    collective_timeout: float = _f(
        120.0, "seconds before a collective that never completes fails the run (a dead peer)", "launch"
    )
    # -- output
    results_dir: str = _f(
        "results", "results root: results/<system>/<benchmark>/<division>/<run-id>/", "output"
    )
    system: str | None = _f(
        None, "system name in the results path (default: derived from the hardware)", "output"
    )
    progress: str = _f(
        "auto",
        "rich live display, plain lines, or none (auto: rich on a terminal)",
        "output",
        choices=PROGRESS,
    )
    checkpoint_every: str | None = _f(
        None,
        "save a checkpoint (model, optimizer, data position, "
        "clocks) at this cadence, e.g. 1epoch or 200steps; "
        "continue with `ttabench run --resume RUN_DIR`",
        "output",
    )
    max_restarts: int = _f(
        0,
        "torchrun: restart all workers up to this many times after a "
        "failure, continuing from the last checkpoint",
        "launch",
    )
    save_model: bool = _f(
        False, "save rank 0's final weights as model.pt in the run folder (a plain state_dict)", "output"
    )
    # Set by the launcher, never typed: the run folder it made, and whether to
    # continue it from its checkpoint (`ttabench run --resume RUN_DIR` sets both).
    run_dir: str | None = _f(None, argparse.SUPPRESS, "output")
    resume: bool = _f(False, argparse.SUPPRESS, "output")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self) -> str:
        """The whole configuration as one JSON text (how a launcher hands it to its workers)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        """The exact inverse of to_json (already validated: nothing is checked again).
        Unlike from_dict, a field this version does not know is an error, not dropped."""
        return cls(**json.loads(text))

    def validate(self) -> None:
        """Raise UserError for values that can never work (checked before anything starts)."""
        if self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise UserError(f"--node-rank must be in 0..{self.nnodes - 1}, got {self.node_rank}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise UserError("multi-node runs need --rdzv-endpoint HOST:PORT")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.eval_batch_size < 1:
            raise UserError(f"--eval-batch-size must be >= 1, got {self.eval_batch_size}")
        if self.target is not None and not 0 < self.target <= 1:
            raise UserError(f"--target is a fraction in (0, 1], got {self.target}")
        for name in ("time_budget", "max_epochs"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0, got {v}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be >= 1, got {self.threads}")
        if self.collective_timeout <= 0:
            raise UserError("--collective-timeout must be > 0")
        metrics.parse_thresholds(self.thresholds)
        from ttabench.launch.net import link as network

        network.resolve(self.network, self.bandwidth, self.latency)
        parse_cadence(self.eval_every, "--eval-every")
        if self.checkpoint_every is not None:
            parse_cadence(self.checkpoint_every, "--checkpoint-every")
        if self.max_restarts < 0:
            raise UserError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if self.synthetic and self.data_dir:
            raise UserError("give either --data-dir or --synthetic, not both")
        if not self.synthetic:
            from ttabench.reference_impls.cifar10 import check_files

            check_files(self.resolved_data_dir())
        for flag, ref in (("--model", self.model), ("--optimizer", self.optimizer)):
            if ref is not None:
                if self.division != "open":
                    raise UserError(f"{flag} needs --division open")
                open_division.parse_ref(ref, flag)
        if self.division == "open" and not self.model and not self.optimizer:
            raise UserError(
                "--division open needs --model MODULE:CALLABLE or path/to/file.py:CALLABLE, "
                "or --optimizer with the closed model of --benchmark"
            )
        if self.division == "closed":
            broken = CLOSED.check_batch(self.batch_size, self.workers * self.nnodes)
            if broken:
                raise UserError(f"closed division: {broken} (use --division open to go beyond)")

    def benchmark_name(self) -> str:
        """The <benchmark> of the results path and summary: --benchmark, or for an open run
        with --model the name of its callable (examples/small_cnn.py:small_cnn -> small_cnn)."""
        if self.division == "open":
            return open_division.submission_name(self.model, self.benchmark)
        return self.benchmark

    def resolved_data_dir(self) -> str | None:
        if self.synthetic:
            return None
        d = self.data_dir or os.environ.get("TTABENCH_DATA_DIR")
        if not d:
            raise UserError(
                "no data: pass --data-dir DIR (a cifar-10-batches-py folder; "
                "`ttabench data download` fetches it) or --synthetic for the offline demo"
            )
        return d

    def world_size(self) -> int:
        return self.workers * self.nnodes

    def backend_name(self) -> str:
        if self.backend != "auto":
            return self.backend
        return "none" if self.world_size() == 1 else "torchrun"


_CADENCE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(epochs?|e|samples?|steps?)\s*$")


def parse_cadence(spec: str, flag: str = "--eval-every") -> tuple[float, str]:
    """'1epoch' -> (1.0, 'epoch'); '12800samples' -> (12800.0, 'samples'); '50steps' -> (50.0, 'steps')."""
    m = _CADENCE.match(spec) if isinstance(spec, str) else None
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"{flag} must look like 1epoch, 0.5epoch, 12800samples or 100steps, got {spec!r}")
    word = m.group(2)
    unit = "epoch" if word.startswith("e") else "steps" if word.startswith("st") else "samples"
    if unit != "epoch" and float(m.group(1)) < 1:
        raise UserError(f"{flag} must be at least 1 {unit.rstrip('s')}, got {spec!r}")
    return float(m.group(1)), unit


def cadence_samples(spec: str, steps_per_epoch: int, global_batch: int, flag: str) -> int:
    """A cadence in samples (at least one step's worth is not enforced: the loop checks after steps)."""
    value, unit = parse_cadence(spec, flag)
    scale = {"epoch": steps_per_epoch * global_batch, "steps": global_batch, "samples": 1}[unit]
    return max(1, int(round(value * scale)))


def add_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one option per RunConfig field, in named groups."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(RunConfig):
        if f.name in skip:
            continue
        md = f.metadata
        group = groups.setdefault(md["group"], parser.add_argument_group(md["group"]))
        flag = "--" + f.name.replace("_", "-")
        kw = {"dest": f.name, "default": f.default, "help": md["help"]}
        if f.type in (bool, "bool"):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _TYPES.get(str(f.type), str)
            kw["metavar"] = f.name.upper()
            if "choices" in md:
                kw["choices"] = md["choices"]
        group.add_argument(flag, **kw)


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    """`--resume RUN_DIR`: the same for `ttabench run` and the worker module (RunConfig.resume
    is the launcher's flag for it, never typed)."""
    parser.add_argument(
        "--resume",
        dest="resume_dir",
        metavar="RUN_DIR",
        help="continue a run from its checkpoint.pt (every other setting comes from the run's config.json)",
    )


_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float, "str": str, "str | None": str}


def from_args(ns: argparse.Namespace) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in vars(ns).items() if k in names})
