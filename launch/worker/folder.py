"""Rank 0's run folder over a run's life: opened fresh, resumed from a checkpoint or
restarted; config.json, system.json and the mllog header; the Recorder and progress
hooks; checkpoints; the final or failed summary. On other ranks every step does nothing
(but a checkpoint is still offered to every rank: the loop calls it on all of them).
"""

from __future__ import annotations

import json
import os
import sys

import torch

from ttabench import UserError, __version__, error_line
from ttabench.divisions import algorithms, metrics
from ttabench.divisions.results import RunPath, atomic_write_json
from ttabench.launch.config import RunConfig
from ttabench.launch.record import jobenv, progress
from ttabench.launch.record.hooks import Hooks
from ttabench.launch.record.mllog import C, RunLog
from ttabench.launch.record.recorder import Recorder
from ttabench.launch.record.tables import print_run_summary
from ttabench.launch.worker import checkpoint
from ttabench.launch.worker.checkpoint import Checkpoint
from ttabench.launch.worker.context import Context
from ttabench.launch.worker.loop import LoopState
from ttabench.launch.worker.loop_result import LoopResult
from ttabench.launch.worker.workload import Setup

# The files a restarted run without a checkpoint begins again.
_RESULT_FILES = ("mllog.txt", "curve.csv", "summary.json")


class RunFolder:
    def __init__(self, cfg: RunConfig, ctx: Context):
        self.cfg, self.ctx = cfg, ctx
        self.active = ctx.rank0
        self.run_dir = cfg.run_dir
        self.log = RunLog(None)
        self.recorder: Recorder | None = None
        self.model: torch.nn.Module | None = None  # what checkpoints save (set by start)
        self.optimizer: torch.optim.Optimizer | None = None
        self.display = None  # rank 0's live progress, shown from open() on

    def phase(self, text: str) -> None:
        """What the worker does now, on rank 0's display (loading data, compiling, ...)."""
        if self.display is not None:
            self.display.phase(text)

    def open(self, resumed: Checkpoint | None, restarted: bool) -> None:
        """The folder and its mllog.txt: new, cut back to a checkpoint, or begun again."""
        if not self.active:
            return
        cfg = self.cfg
        if self.run_dir is None:
            self.run_dir = cfg.new_run_dir(self.ctx.system_name)
        rules = progress.StopLimits(cfg.max_epochs, cfg.max_steps, cfg.time_budget, cfg.target)
        title = cfg.benchmark_name() + (f" {cfg.division}" if resumed is None else " (resumed)")
        title += " [synthetic data]" if cfg.synthetic else ""
        self.display = progress.make(cfg.progress, title, _threshold_list(cfg.threshold_range), rules)
        if self.display is not None:
            self.display.set_run_dir(self.run_dir)
        log_path = os.path.join(self.run_dir, "mllog.txt")
        lines = 0
        if resumed is not None:  # drop what the stopped run logged after its checkpoint
            checkpoint.truncate_log(log_path, resumed.mllog_lines)
            lines = resumed.mllog_lines
        elif restarted:  # no checkpoint yet: the restarted run begins again
            for name in _RESULT_FILES:
                if os.path.exists(os.path.join(self.run_dir, name)):
                    os.unlink(os.path.join(self.run_dir, name))
        self.log = RunLog(log_path, lines)
        if resumed is None:
            _log_header(self.log, cfg, self.ctx.system_name)

    def start(self, setup: Setup, init_s: float, resumed: Checkpoint | None, command) -> list[Hooks]:
        """Everything written before run_start; returns rank 0's loop hooks."""
        self.model, self.optimizer = setup.model, setup.spec.optimizer
        if not self.active:
            return []
        cfg = self.cfg
        # Without --thresholds, the data set's (known now that it is loaded) are the run's.
        thresholds = (setup.resolved["thresholds"], setup.threshold_range)
        if self.display is not None:
            self.display.set_thresholds(_threshold_list(setup.threshold_range))
        if resumed is None:
            self._write_config(setup, command)
            _log_hyperparameters(self.log, setup)
            _log_algorithm(self.log, cfg)
            base = self._base_summary(setup, init_s)
            if setup.data.synthetic and not cfg.synthetic and self.display is not None:  # a written set
                self.display.set_title(f"{cfg.benchmark_name()} {cfg.division} [synthetic data]")
        else:
            past = resumed.summary.get("resumes", [])
            base = dict(
                resumed.summary,
                resumes=past + [{"step": resumed.loop.step, "train_time_s": resumed.loop.train_s}],
            )
        curve = None if resumed is None else resumed.loop.curve
        self.recorder = Recorder(self.run_dir, self.log, base, cfg, thresholds, curve=curve)
        hooks = [self.recorder, self.display]
        if resumed is None:
            self.log.end(C.INIT_STOP)
        return hooks

    def _base_summary(self, setup: Setup, init_s: float) -> dict:
        """summary.json's fields fixed at the start (a checkpoint keeps them for a resumed run)."""
        c = self.ctx.comm
        return {
            "benchmark": self.cfg.benchmark_name(),
            "division": self.cfg.division,
            "dataset": setup.data.describe()["name"],
            "synthetic": setup.data.synthetic,
            "seed": self.ctx.seed,
            "world_size": c.world_size,
            "nodes": c.nodes,
            "backend": c.backend,
            "global_batch": setup.resolved["global_batch"],
            "init_s": init_s,
            "algorithm": self.cfg.algorithm,
            "algorithm_params": algorithms.resolved_params(self.cfg.algorithm, self.cfg.algorithm_params()),
        }

    def _write_config(self, setup: Setup, command) -> None:
        atomic_write_json(
            os.path.join(self.run_dir, "config.json"),
            {
                "ttabench_version": __version__,
                "command": user_command(command),
                # the configuration, with the thresholds the run used (the data set's without --thresholds)
                "config": dict(self.cfg.to_dict(), thresholds=setup.resolved["thresholds"]),
                "resolved": dict(setup.resolved, **self.ctx.resolved(self.cfg)),
                "model": setup.model_info,
                **({"submission": setup.submission} if setup.submission is not None else {}),
                "recipe": setup.recipe,
                "data": setup.data.describe(),
                "software": self.ctx.system["software"],
                **({"scheduler": scheduler} if (scheduler := jobenv.from_env()) else {}),
            },
        )
        system_dir = RunPath.parse(os.path.abspath(self.run_dir)).system_dir
        atomic_write_json(os.path.join(system_dir, "system.json"), self.ctx.system)

    def save_checkpoint(self, state: LoopState) -> None:
        """The loop's checkpoint call (on every rank; rank 0 writes)."""
        if self.active:
            checkpoint.save(
                self.run_dir,
                model=self.model,
                optimizer=self.optimizer,
                loop_state=state,
                mllog_lines=self.log.lines,
                summary=self.recorder.base,
            )

    def finish(self, result: LoopResult, breakdowns: list[dict], signal_name: str | None) -> None:
        """The final summary.json (and model.pt), printed from memory."""
        if not self.active:
            return
        if self.cfg.save_model:
            checkpoint.write_torch(
                os.path.join(self.run_dir, "model.pt"), checkpoint.cpu_state_dict(self.model)
            )
        # numbers only: per_rank also holds each rank's backward-pass profile (`ttabench predict`)
        worst = {k: max(b[k] for b in breakdowns) for k, v in breakdowns[0].items() if _is_time(k, v)}
        summary = self.recorder.write_summary(
            {
                "status": result.status,
                "stop_reason": result.stop_reason,
                "signal": signal_name,
                "diverged_step": result.diverged_step,
                "steps": result.steps,
                "samples": result.samples,
                "epochs": result.epochs,
                "train_time_s": result.train_time_s,
                "total_time_s": result.total_time_s,
                "eval_time_s": worst["eval_s"],
                "throughput_img_s": (
                    result.samples / result.train_time_s if result.train_time_s > 0 else None
                ),
                "time_breakdown": {"max_over_ranks": worst, "per_rank": breakdowns},
                **self._comm_bytes(breakdowns),
            }
        )
        print_run_summary(self.run_dir, summary=summary)

    def _comm_bytes(self, breakdowns: list[dict]) -> dict:
        """Bytes sent per worker per step as counted (mean over workers), beside the algorithm's
        formula evaluated for this run's model, workers and steps."""
        counted = [b["comm_bytes"] for b in breakdowns]
        steps = counted[0]["steps"]
        shapes = [tuple(p.shape) for p in self.model.parameters() if p.requires_grad]
        cfg = self.cfg
        per_step = sum(c["sent"] for c in counted) / len(counted) / steps if steps else None
        if counted[0].get("source") == "submission":  # the user's own pattern: no formula
            return {
                "comm_bytes_per_step": per_step,
                "comm_bytes_formula": None,
                "comm_bytes_model": {
                    "pattern": "the submission's own (config.json submission.hooks)",
                    "formula": None,
                    "model_bytes": algorithms.model_bytes(shapes),
                    "steps": steps,
                },
            }
        formula = algorithms.bytes_per_step(
            cfg.algorithm, cfg.algorithm_params(), shapes, steps, len(breakdowns)
        )
        out = {
            "comm_bytes_per_step": per_step,
            "comm_bytes_formula": formula if steps else None,
            "comm_bytes_model": {
                "pattern": algorithms.PATTERNS[cfg.algorithm],
                "formula": algorithms.FORMULAS[cfg.algorithm],
                "model_bytes": algorithms.model_bytes(shapes),
                "steps": steps,
                # what `ttabench predict --algorithm powersgd|topk` sizes their messages by
                "param_shapes": [list(s) for s in shapes],
            },
        }
        consensus = [
            {"step": r["step"], "value": r["consensus_distance"]}
            for r in self.recorder.curve
            if "consensus_distance" in r
        ]
        if consensus:
            out["consensus_distance"] = consensus
        return out

    def fail(self, e: BaseException, signal_name: str | None) -> None:
        """Mark the run failed or interrupted, with the error, as far as the disk allows."""
        if not self.active or self.run_dir is None:
            return
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        info = {
            "status": status,
            "error": error_line(e),
            "failed_rank": self.ctx.comm.rank,
            "signal": signal_name,
        }
        try:
            if self.recorder is not None:
                self.recorder.write_summary(info)
            else:  # failed during set-up: no curve and no config.json, but the folder says what and why
                self._write_setup_failure(info)
        except UserError as again:  # e.g. the disk is full: the first error is the one to raise
            print(f"ttabench: note: the run could not be marked {status}: {again}", file=sys.stderr)
        try:
            self.log.end(C.RUN_STOP, status="aborted", ttabench_status=status)
        except UserError:
            pass  # the log's own write failure was reported by the first error

    def _write_setup_failure(self, info: dict) -> None:
        """summary.json of a run that failed before its first step: what it was (so that the
        readers file it with its benchmark and division) and why it ended; and system.json
        when the system folder has none yet. No seed: nothing was drawn from it."""
        cfg = self.cfg
        described = {
            "benchmark": cfg.benchmark_name(),
            "division": cfg.division,
            "world_size": self.ctx.comm.world_size,
            "stop_reason": "failed before the first step",
        }
        atomic_write_json(os.path.join(self.run_dir, "summary.json"), dict(described, **info))
        system_json = os.path.join(RunPath.parse(os.path.abspath(self.run_dir)).system_dir, "system.json")
        if not os.path.exists(system_json):
            atomic_write_json(system_json, self.ctx.system)

    def close(self) -> None:
        if self.display is not None:
            self.display.close()
        self.log.close()


def _threshold_list(threshold_range: tuple[float, float, float] | None) -> list[float]:
    return [] if threshold_range is None else metrics.thresholds(*threshold_range)


def user_command(command: list[str] | None) -> list[str]:
    """The command the user typed (the launcher passes it to its workers), program by name only:
    a results folder must not carry paths of the machine it was made on."""
    if command is None and os.environ.get("TTABENCH_COMMAND"):
        command = json.loads(os.environ["TTABENCH_COMMAND"])
    command = list(command or sys.argv)
    if command:
        name = os.path.basename(command[0])
        command[0] = "ttabench" if name in ("__main__.py", "cli.py") else name
    return command


def _log_header(log: RunLog, cfg: RunConfig, system_name: str) -> None:
    log.event(C.SUBMISSION_BENCHMARK, cfg.benchmark_name())
    log.event(C.SUBMISSION_DIVISION, cfg.division)
    log.event(C.SUBMISSION_ORG, "ttabench")
    log.event(C.SUBMISSION_PLATFORM, system_name)
    log.event(C.SUBMISSION_STATUS, "onprem")
    log.event(C.CACHE_CLEAR, True)
    log.start(C.INIT_START)


def _log_hyperparameters(log: RunLog, setup: Setup) -> None:
    r, d = setup.recipe, setup.data
    log.event(C.SEED, setup.spec.seed)
    log.event(C.GLOBAL_BATCH_SIZE, setup.resolved["global_batch"])
    log.event(C.TRAIN_SAMPLES, len(d.train_labels))
    log.event(C.EVAL_SAMPLES, len(d.test_labels))
    if "warmup_epochs" in r:  # the closed recipe's SGD (closed runs, open runs that keep it)
        log.event(C.OPT_NAME, "sgd")
        log.event(C.OPT_BASE_LR, setup.resolved["peak_lr"])
        log.event(C.OPT_LR_WARMUP_EPOCHS, r["warmup_epochs"])
        log.event(C.OPT_LR_DECAY_BOUNDARY_EPOCHS, r["decay_epochs"])
        log.event(C.OPT_LR_DECAY_FACTOR, r["decay_factor"])
        log.event("opt_momentum", r["momentum"])
        log.event("opt_weight_decay", r["weight_decay"])
    else:  # an open submission's own optimizer (config.json's recipe has its param groups)
        log.event(C.OPT_NAME, r["optimizer"].lower())
        log.event(C.OPT_BASE_LR, setup.resolved["initial_lr"])
    log.event("dataset", d.describe()["name"])


def _log_algorithm(log: RunLog, cfg: RunConfig) -> None:
    log.event("ttabench_algorithm", cfg.algorithm)
    for name, value in algorithms.resolved_params(cfg.algorithm, cfg.algorithm_params()).items():
        log.event(f"ttabench_{name}", value)


def _is_time(key: str, value) -> bool:
    return key != "rank" and isinstance(value, (int, float))
