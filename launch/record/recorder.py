"""Rank 0's record of a run: mllog events, curve.csv after every evaluation, summary.json.

The curve is rewritten (atomically) after each evaluation, so a run that
dies keeps every evaluation it finished; summary.json is written first with
status ``running`` and rewritten at the end, always after the curve it is
computed from.
"""

from __future__ import annotations

import os

from ttabench.divisions import metrics
from ttabench.divisions.results import atomic_write_json, atomic_write_text, format_curve
from ttabench.launch.record.hooks import Hooks
from ttabench.launch.record.mllog import C, RunLog


class Recorder(Hooks):
    def __init__(self, run_dir: str, mllog: RunLog, base_summary: dict, cfg, thresholds, curve=None):
        """`cfg`: the run's RunConfig (target, time budget); `thresholds`: the run's thresholds,
        (spec, (low, high, step)) or (None, None)."""
        self.run_dir = run_dir
        self.log = mllog
        self.base = base_summary
        self.cfg = cfg
        self.threshold_spec, self.threshold_range = thresholds
        self.curve: list[dict] = [dict(row) for row in curve or []]
        self._epoch_open = None
        if curve is not None:  # resumed: the curve as of the checkpoint
            atomic_write_text(self.path("curve.csv"), format_curve(self.curve))
        self.write_summary({"status": "running"})

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def write_summary(self, extra: dict) -> dict:
        """Write summary.json (the base, `extra`, and metrics from the curve); returns it."""
        summary = dict(self.base)
        summary.update(extra)
        summary["metrics"] = metrics.summary_block(
            self.curve,
            self.threshold_spec,
            self.cfg.target,
            self.cfg.time_budget,
            parsed=self.threshold_range,
        )
        atomic_write_json(self.path("summary.json"), summary)
        return summary

    # -- loop hooks
    def run_start(self, info):
        if info.get("resumed_at_step") is not None:
            # A resumed run continues the same run_start..run_stop interval.
            self.log.event("ttabench_resume", info["resumed_at_step"])
            if info.get("epoch_open"):  # the checkpoint was taken inside this epoch
                self._epoch_open = info["epoch"]
        else:
            self.log.start(C.RUN_START)

    def epoch_start(self, epoch):
        self._epoch_open = epoch
        self.log.start(C.EPOCH_START, epoch_num=epoch)

    def eval_start(self, epoch):
        self.log.start(C.EVAL_START, epoch_num=epoch)

    def evaluated(self, row):
        # curve.csv first, and self.curve only once it is on disk: if the write fails (a
        # full disk), the failed run's summary is computed from the curve the folder holds.
        curve = self.curve + [row]
        atomic_write_text(self.path("curve.csv"), format_curve(curve))
        self.curve = curve
        self.log.event(
            C.EVAL_ACCURACY,
            row["accuracy"],
            epoch_num=row["epoch"],
            train_time_s=row["train_time_s"],
            samples=row["samples"],
        )
        if "consensus_distance" in row:  # decentralized: how far apart the workers' models are
            self.log.event("ttabench_consensus_distance", row["consensus_distance"], step=row["step"])
        self.log.end(C.EVAL_STOP, epoch_num=row["epoch"])

    def epoch_stop(self, epoch):
        if self._epoch_open is not None:
            self.log.end(C.EPOCH_STOP, epoch_num=epoch)
            self._epoch_open = None

    def run_stop(self, result):  # the loop's LoopResult
        reached = result.stop_reason == "target" or (self.cfg.target is None and result.status == "success")
        self.log.end(
            C.RUN_STOP,
            status="success" if reached else "aborted",
            ttabench_status=result.status,
            stop_reason=result.stop_reason,
        )
