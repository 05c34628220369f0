"""Scoring several runs: statistics across seeds and comparisons of two systems (the
report's rows per experiment are in experiments.py). Pure functions over curves and
the JSON files of run folders; no torch.

Rules (the docs and ``--help`` say the same):

- Every metric is recomputed from curve.csv; summary.json is read only for the
  run's own parameters (threshold spec, target, budget) and its description
  (status, seed, workers, throughput).
- A run that did not reach a threshold has no TTA there. It is listed and
  excluded from the statistics with a note, never averaged as zero, as the
  budget or as infinity.
- Averaging a group of runs for ``compare`` (A or B is a folder of seeds):
  TTA(T) of the group is the arithmetic mean of the runs' TTA(T), defined only
  when EVERY run reached T (dropping the runs that did not would make the
  group look faster than it is); ATTMT(LOW..T) of the group is the mean of
  the runs' ATTMT(LOW..T), defined under the same condition. The ratio is
  B / A (above 1: B took longer).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ttabench import UserError
from ttabench.divisions import metrics, stats
from ttabench.divisions.results import (
    curve_points,
    find_run_dirs,
    is_run_dir,
    number,
    read_curve,
    read_json,
    section,
)

SCORED_STATUSES = ("success", "diverged")


@dataclass
class Run:
    """What the readers know about one run (a run folder) or one bare curve.csv."""

    name: str  # the path as the user gave it (or as found below a folder they gave)
    rows: list[dict]
    summary: dict | None = None
    config: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def points(self) -> list[tuple[float, float]]:
        return curve_points(self.rows)

    @property
    def status(self) -> str | None:
        status = None if self.summary is None else self.summary.get("status")
        return status if status is None or isinstance(status, str) else repr(status)

    @property
    def run_metrics(self) -> dict:
        return section(self.summary, "metrics")

    @property
    def seed(self):
        if self.summary and self.summary.get("seed") is not None:
            return self.summary["seed"]
        return section(self.config, "resolved").get("seed")

    def recorded(self, key: str):
        """A metric parameter from summary.json's metrics block, checked: (value, problem).

        threshold_spec must parse, target be a fraction in (0, 1], budget_s a number >= 0;
        anything else is (None, why), so a hand-edited or corrupt summary cannot crash the
        readers or silently change what is computed.
        """
        value = self.run_metrics.get(key)
        if value is None:
            return None, None
        if key == "threshold_spec":
            if isinstance(value, str):
                try:
                    metrics.parse_thresholds(value, "threshold_spec")
                    return value, None
                except UserError as e:
                    return None, f"{self.name}: recorded threshold_spec is invalid ({e})"
        elif key == "target":
            if number(value) is not None and metrics.valid_target(value):
                return value, None
        elif key == "budget_s":
            if number(value) is not None and value >= 0:
                return value, None
        return None, f"{self.name}: recorded {key} {json.dumps(value)[:40]} is invalid"


def recorded_values(runs: list[Run], key: str) -> tuple[list, list[str]]:
    """The distinct valid values of metric parameter `key` the runs record (None for a run
    that records none), and a problem line for each run recording an invalid one."""
    values, problems = {}, []
    for r in runs:
        value, problem = r.recorded(key)
        if problem:
            problems.append(problem)
        else:
            values.setdefault(json.dumps(value), value)
    return list(values.values()), problems


def load_run(path: str) -> Run:
    """A run folder (curve.csv plus summary.json and config.json when present) or a curve file."""
    if not os.path.isdir(path):
        return Run(path, read_curve(path))
    join = os.path.join
    summary = read_json(join(path, "summary.json")) if os.path.isfile(join(path, "summary.json")) else None
    config = read_json(join(path, "config.json")) if os.path.isfile(join(path, "config.json")) else None
    if os.path.isfile(join(path, "curve.csv")):
        return Run(path, read_curve(path), summary, config)
    if summary is None and config is None:
        raise UserError(f"{path}: not a run folder (no curve.csv, summary.json or config.json)")
    # A run that failed before its first evaluation: no curve, nothing reached.
    return Run(path, [], summary, config, notes=["no curve.csv (no evaluation was recorded)"])


def load_inputs(paths: list[str], skipped: list[dict] | None = None, every_run: bool = False) -> list[Run]:
    """Runs from run folders, curve files, or folders holding run folders (every run below).

    Below a folder, only finished runs whose numbers are results (status success or
    diverged) are taken; the others (failed, interrupted, still running) are left out
    and appended to `skipped` as {"name", "status"}. A run folder named explicitly is
    always taken, whatever its status; `every_run` takes every run below folders too.
    """
    runs = []
    for path in paths:
        if not os.path.exists(path):
            raise UserError(f"not found: {path}")
        if os.path.isdir(path) and not is_run_dir(path):
            found = find_run_dirs(path)
            if not found:
                raise UserError(
                    f"{path}: no run folders below it (a run folder holds curve.csv, "
                    "summary.json, config.json, mllog.txt)"
                )
            taken = 0
            for p in found:
                run = load_run(p)
                if not every_run and run.summary is not None and run.status not in SCORED_STATUSES:
                    if skipped is not None:
                        skipped.append({"name": run.name, "status": run.status})
                    continue
                runs.append(run)
                taken += 1
            if not taken:
                raise UserError(f"{path}: no finished runs below it (only failed or unfinished ones)")
        else:
            runs.append(load_run(path))
    return runs


# --- several runs: statistics ------------------------------------------------------------


def _reason_tta(run: Run, target: float) -> str:
    why = f"did not reach the target {target:g}"
    best = max((acc for _, acc in run.points), default=None)
    if best is not None:
        why += f" (best accuracy {best:.4f})"
    return _with_status(run, why)


def _reason_attmt(run: Run, ts: list[float], times: list) -> str:
    missed = [t for t, v in zip(ts, times) if v is None]
    return _with_status(
        run, f"ATTMT undefined: {len(missed)} of {len(ts)} thresholds not reached (from {missed[0]:g})"
    )


def _with_status(run: Run, why: str) -> str:
    if run.notes:
        why += "; " + "; ".join(run.notes)
    if run.status not in (None, "success"):
        why += f"; run status {run.status}"
    return why


def across_runs(
    runs: list[Run],
    spec: tuple[float, float, float] | None,
    target: float | None,
    budget_s: float | None = None,
) -> dict:
    """The multi-input ``metrics --json`` object: per-run values, statistics, exclusions."""
    out_runs, excluded = [], []
    tta_values, attmt_values = [], []
    ts = metrics.thresholds(*spec) if spec is not None else None
    for run in runs:
        m = metrics.summarize(run.points, spec, target=target, budget_s=budget_s)
        entry = {
            "name": run.name,
            "tta": m.get("target_tta_s"),
            "attmt": m.get("attmt_s"),
            "status": run.status,
            "seed": run.seed,
            **m,
        }
        out_runs.append(entry)
        if target is not None:
            if entry["tta"] is None:
                excluded.append({"name": run.name, "metric": "tta", "reason": _reason_tta(run, target)})
            else:
                tta_values.append(entry["tta"])
        if spec is not None:
            if entry["attmt"] is None:
                excluded.append(
                    {"name": run.name, "metric": "attmt", "reason": _reason_attmt(run, ts, m["tta_s"])}
                )
            else:
                attmt_values.append(entry["attmt"])
    return {
        "runs": out_runs,
        "stats": {
            "tta": None if target is None else dict(stats.describe(tta_values), target=target),
            "attmt": None
            if spec is None
            else dict(stats.describe(attmt_values), thresholds=[spec[0], spec[1], spec[2]]),
        },
        "excluded": excluded,
        "bootstrap": {
            "resamples": stats.BOOTSTRAP_RESAMPLES,
            "seed": stats.BOOTSTRAP_SEED,
            "method": "percentile",
            "level": 0.95,
        },
    }


# --- comparing two systems ---------------------------------------------------------------


def group_curves(
    curves: list[metrics.Curve], ts: list[float]
) -> tuple[list[float | None], list[float | None]]:
    """For each threshold T_i, over a group of runs: the mean TTA(T_i) and the mean of the runs'
    ATTMT(LOW..T_i), each None where any run lacks it (an empty group has none)."""
    tta = [metrics.tta_all(c, ts) for c in curves]
    if not tta:
        return [None] * len(ts), [None] * len(ts)
    return stats.column_means(tta), stats.column_means([metrics.prefix_attmt(t) for t in tta])


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a <= 0:
        return None
    return b / a


def compare_rows(
    a: list[metrics.Curve], b: list[metrics.Curve], spec: tuple[float, float, float]
) -> list[dict]:
    """One row per threshold: TTA and ATTMT(LOW..T) of A and B and their ratios B/A."""
    ts = metrics.thresholds(*spec)
    (tta_a, att_a), (tta_b, att_b) = group_curves(a, ts), group_curves(b, ts)
    return [
        {
            "threshold": t,
            "tta_a": tta_a[i],
            "tta_b": tta_b[i],
            "tta_ratio": ratio(tta_a[i], tta_b[i]),
            "attmt_a": att_a[i],
            "attmt_b": att_b[i],
            "attmt_ratio": ratio(att_a[i], att_b[i]),
        }
        for i, t in enumerate(ts)
    ]
