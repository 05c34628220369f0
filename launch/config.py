"""The run configuration: one frozen dataclass whose fields carry their help text.

``ttabench run --help`` (generated in flags.py), config.json and the code read the
same fields. ``validate()`` checks every value once, in the process the user
started, and parses the ones spelled as text (thresholds, cadences, the network
link, the straggler) into the typed values below (``threshold_range``,
``eval_cadence``, ``checkpoint_cadence``, ``network_link``, ``straggler_at``): code
downstream reads those and never parses a configuration string again. A launcher
hands the value to its workers whole (``to_json``/``from_json``); nothing changes it
during a run (``dataclasses.replace`` makes a new one).

A run's config.json holds ``RunConfig.to_dict()`` (with the thresholds the run used:
the data set's when ``--thresholds`` was not given) plus the resolved values (seed,
threads, devices) so the run can be repeated from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from ttabench import UserError
from ttabench.divisions import algorithms, metrics
from ttabench.divisions.open import submission_name
from ttabench.divisions.open_load import parse_ref
from ttabench.divisions.results import RunPath
from ttabench.launch.cadence import Cadence, parse_cadence
from ttabench.launch.net import link
from ttabench.reference_impls.cifar10_layout import check_files
from ttabench.reference_impls.recipe import BENCHMARKS, CLOSED, PRECISIONS, THRESHOLDS

BACKENDS = ("auto", "none", "torchrun", "horovod")
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
PROGRESS = ("auto", "rich", "plain", "none")
# A user's own runs land here (git-ignored in the repository), never beside the reference runs
# committed under results/ with the same system name; `ttabench runs` lists it by default.
DEFAULT_RESULTS_DIR = "ttabench-results"


def _f(default, help, group, **kw):
    return field(default=default, metadata={"help": help, "group": group, **kw})


@dataclass(frozen=True)
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
    model: Optional[str] = _f(
        None,
        "open division: your model, MODULE:CALLABLE or path/to/file.py:CALLABLE "
        "(a function returning a torch.nn.Module, or a ttabench Submission; "
        "see ttabench.divisions.open)",
        "workload",
    )
    optimizer: Optional[str] = _f(
        None,
        "open division: your optimizer factory, MODULE:CALLABLE or "
        "path/to/file.py:CALLABLE, (model, run) -> optimizer or "
        "(optimizer, lr_at); alone, it trains the closed --benchmark "
        "model",
        "workload",
    )
    data_dir: Optional[str] = _f(
        None, "CIFAR-10 `cifar-10-batches-py` folder (default: $TTABENCH_DATA_DIR)", "workload"
    )
    synthetic: bool = _f(
        False,
        "train on the built-in synthetic data set (offline demo; never a closed-division result)",
        "workload",
    )
    seed: Optional[int] = _f(None, "random seed (default: a fresh random seed, logged)", "workload")
    batch_size: int = _f(
        CLOSED.batch_per_worker,
        f"batch per worker (closed: {CLOSED.min_batch_per_worker}..{CLOSED.max_batch_per_worker})",
        "workload",
    )
    # -- stop rules and measurement
    target: Optional[float] = _f(
        None, "stop once test accuracy >= TARGET (TTA mode), a fraction", "stop rules"
    )
    time_budget: Optional[float] = _f(
        None,
        "stop when the training time reaches this many seconds, evaluating first (AAT mode)",
        "stop rules",
    )
    max_epochs: Optional[float] = _f(
        None,
        "stop after this many epochs (default: the recipe's "
        f"{CLOSED.epochs} when no other stop rule is given)",
        "stop rules",
    )
    max_steps: Optional[int] = _f(None, "stop after this many optimizer steps", "stop rules")
    eval_every: str = _f("1epoch", "evaluation cadence: e.g. 1epoch, 0.5epoch, 12800samples", "stop rules")
    thresholds: Optional[str] = _f(
        None,
        "accuracy thresholds LOW:HIGH:STEP for the TTMT curve (default: from the data set: "
        + "; ".join(f"{k} {v}" for k, v in THRESHOLDS.items())
        + ")",
        "stop rules",
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
    threads: Optional[int] = _f(
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
    dist_backend: Optional[str] = _f(
        None, "torch.distributed backend (default: nccl on GPU, gloo on CPU)", "launch"
    )
    nnodes: int = _f(1, "number of nodes (torchrun, c10d rendezvous)", "launch")
    node_rank: int = _f(0, "this node's rank (multi-node)", "launch")
    rdzv_endpoint: Optional[str] = _f(None, "HOST:PORT of the rendezvous (multi-node)", "launch")
    local_addr: Optional[str] = _f(
        None, "address the other nodes reach this node at (multi-node; default: this host's name)", "launch"
    )
    # -- algorithm (divisions/algorithms.py: patterns, ranges, bytes per step; parameters left
    # out are None here and take their algorithm's default, recorded in config.json's resolved)
    algorithm: str = _f(
        algorithms.DEFAULT,
        "distributed algorithm: " + ", ".join(algorithms.ALGORITHMS) + " (see the README's table)",
        "algorithm",
        choices=algorithms.ALGORITHMS,
    )
    powersgd_rank: Optional[int] = _f(None, algorithms.PARAM_BY_NAME["powersgd_rank"].doc(), "algorithm")
    powersgd_start_step: Optional[int] = _f(
        None, algorithms.PARAM_BY_NAME["powersgd_start_step"].doc(), "algorithm"
    )
    local_steps: Optional[int] = _f(None, algorithms.PARAM_BY_NAME["local_steps"].doc(), "algorithm")
    local_sgd_warmup_steps: Optional[int] = _f(
        None, algorithms.PARAM_BY_NAME["local_sgd_warmup_steps"].doc(), "algorithm"
    )
    topk_ratio: Optional[float] = _f(None, algorithms.PARAM_BY_NAME["topk_ratio"].doc(), "algorithm")
    network: Optional[str] = _f(
        None,
        "emulated network profile, bandwidth and per-message latency: "
        + link.profiles_text()
        + ", or a profile file written by `ttabench bench allreduce --fit`",
        "network",
    )
    bandwidth: Optional[str] = _f(
        None, "emulated link bandwidth, tc units: e.g. 1gbit, 100mbit, 125mbps", "network"
    )
    latency: Optional[str] = _f(None, "emulated per-message latency, tc units: e.g. 0.5ms, 50us", "network")
    straggler: Optional[str] = _f(
        None,
        "emulate one slow worker, RANK:FACTOR: after each step's compute, that rank sleeps "
        "(FACTOR-1) x the step's measured compute time (e.g. 1:2 = rank 1 computes at half speed)",
        "network",
    )
    collective_timeout: float = _f(
        120.0, "seconds before a collective that never completes fails the run (a dead peer)", "launch"
    )
    # -- output
    results_dir: str = _f(
        DEFAULT_RESULTS_DIR,
        "results root: RESULTS_DIR/<system>/<benchmark>/<division>/<run-id>/ (default: "
        f"./{DEFAULT_RESULTS_DIR}, kept apart from the reference runs committed under the "
        "repository's results/; pass --results-dir results only to add a reference run)",
        "output",
    )
    system: Optional[str] = _f(
        None, "system name in the results path (default: derived from the hardware)", "output"
    )
    progress: str = _f(
        "auto",
        "rich live display, plain lines, or none (auto: rich on a terminal)",
        "output",
        choices=PROGRESS,
    )
    checkpoint_every: Optional[str] = _f(
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
    run_dir: Optional[str] = _f(None, argparse.SUPPRESS, "output")
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
        metrics.check_target(self.target)
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
        # Parsed here, once: each raises a UserError for a value that does not parse.
        for parsed in (
            "threshold_range",
            "network_link",
            "straggler_at",
            "eval_cadence",
            "checkpoint_cadence",
        ):
            getattr(self, parsed)
        if self.max_restarts < 0:
            raise UserError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if self.synthetic and self.data_dir:
            raise UserError("give either --data-dir or --synthetic, not both")
        if not self.synthetic:
            check_files(self.resolved_data_dir())
        for flag, ref in (("--model", self.model), ("--optimizer", self.optimizer)):
            if ref is not None:
                if self.division != "open":
                    raise UserError(f"{flag} needs --division open")
                parse_ref(ref, flag)
        if self.division == "open" and not self.model and not self.optimizer:
            raise UserError(
                "--division open needs --model MODULE:CALLABLE or path/to/file.py:CALLABLE, "
                "or --optimizer with the closed model of --benchmark"
            )
        algorithms.check(self.algorithm, self.algorithm_params(), self.world_size(), self.backend_name())
        algorithms.check_combination(
            self.algorithm, compile=self.compile, checkpoints=bool(self.checkpoint_every or self.max_restarts)
        )
        if self.division == "closed":
            broken = CLOSED.check_batch(self.batch_size, self.workers * self.nnodes)
            if broken:
                raise UserError(f"closed division: {broken} (use --division open to go beyond)")

    def algorithm_params(self) -> dict:
        """The algorithm parameters given (None: left out)."""
        return {p.name: getattr(self, p.name) for p in algorithms.PARAMS}

    # -- the values spelled as text, parsed (once per RunConfig; validate() parses them all)
    @functools.cached_property
    def threshold_range(self) -> tuple[float, float, float] | None:
        """--thresholds as (low, high, step); None: the data set's (``thresholds_for``)."""
        return None if self.thresholds is None else metrics.parse_thresholds(self.thresholds)

    @functools.cached_property
    def network_link(self) -> link.Link:
        """The emulated network link of --network, --bandwidth and --latency."""
        return link.resolve(self.network, self.bandwidth, self.latency)

    @functools.cached_property
    def straggler_at(self) -> tuple[int, float] | None:
        """--straggler as (rank, factor); None without one."""
        return None if self.straggler is None else parse_straggler(self.straggler, self.world_size())

    @functools.cached_property
    def eval_cadence(self) -> Cadence:
        return parse_cadence(self.eval_every, "--eval-every")

    @functools.cached_property
    def checkpoint_cadence(self) -> Cadence | None:
        return (
            None
            if self.checkpoint_every is None
            else parse_cadence(self.checkpoint_every, "--checkpoint-every")
        )

    def thresholds_for(self, dataset: str) -> tuple[str, tuple[float, float, float]]:
        """The run's thresholds as spelled and parsed: --thresholds, else the data set's default."""
        if self.thresholds is not None:
            return self.thresholds, self.threshold_range
        return THRESHOLDS[dataset], metrics.parse_thresholds(THRESHOLDS[dataset])

    def new_run_dir(self, system_name: str) -> str:
        """Create this run's fresh folder, RESULTS_DIR/<system>/<benchmark>/<division>/<run-id>/
        (RunPath.new: never an existing one), and return its path. The one place a launcher,
        a worker, ``ttabench submit`` and TorchX make a run folder."""
        return RunPath.new(self.results_dir, system_name, self.benchmark_name(), self.division).path

    def benchmark_name(self) -> str:
        """The <benchmark> of the results path and summary: --benchmark, or for an open run
        with --model the name of its callable (examples/small_cnn.py:small_cnn -> small_cnn)."""
        if self.division == "open":
            return submission_name(self.model, self.benchmark)
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


def parse_straggler(spec: str, world: int | None = None) -> tuple[int, float]:
    """'1:2.5' -> (1, 2.5): rank 1 computes 2.5 times slower (FACTOR >= 1)."""
    m = re.fullmatch(r"\s*(\d+)\s*:\s*([0-9]*\.?[0-9]+)\s*", spec) if isinstance(spec, str) else None
    if not m or float(m.group(2)) < 1:
        raise UserError(f"--straggler must be RANK:FACTOR with FACTOR >= 1 (e.g. 1:2), got {spec!r}")
    rank, factor = int(m.group(1)), float(m.group(2))
    if world is not None and rank >= world:
        raise UserError(f"--straggler rank {rank} does not exist with {world} worker(s)")
    return rank, factor
