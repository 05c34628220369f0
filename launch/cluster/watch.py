"""Watching a submitted run from the submitting machine: its evaluations as they land in
curve.csv, and its final status as the exit code of `ttabench submit --wait`."""

from __future__ import annotations

import os

from ttabench import UserError
from ttabench.divisions.results import read_curve, read_json
from ttabench.launch.record import timelimit

STATUS_CODE = {"success": 0, "interrupted": 130, "diverged": 3}  # as `ttabench run` exits


def progress_lines(run_dir: str, shown: int) -> list[str]:
    """One line per evaluation after the first `shown` ones."""
    if not os.path.isfile(os.path.join(run_dir, "curve.csv")):
        return []
    try:
        rows = read_curve(run_dir)
    except UserError:  # being replaced right now: read it at the next poll
        return []
    return [
        f"  eval {i + 1}: epoch {r['epoch']:.2f}, step {r['step']}, accuracy {r['accuracy']:.4f}, "
        f"training time {r['train_time_s']:.1f} s"
        for i, r in enumerate(rows)
        if i >= shown
    ]


def run_status(run_dir: str) -> str | None:
    """The run's final status, None while it has none (not started, or still running)."""
    path = os.path.join(run_dir, "summary.json")
    status = read_json(path).get("status") if os.path.isfile(path) else None
    return None if status == "running" else status


def exit_code(run_dir: str, out=print) -> int:
    """0 success, 130 interrupted, 124 stopped at the time limit, 3 diverged, 1 failed or no
    finished run."""
    status = run_status(run_dir)
    if status is None:
        return 1
    reason = read_json(os.path.join(run_dir, "summary.json")).get("stop_reason")
    if status == "interrupted" and reason == timelimit.REASON:
        out(f"run interrupted ({timelimit.REASON}): {run_dir}")
        return timelimit.EXIT
    out(f"run {status}: {run_dir}")
    return STATUS_CODE.get(status, 1)
