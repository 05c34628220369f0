"""Checks of one run's files against each other: every number summary.json records is
recomputed (from curve.csv, or from summary.json's own fields) and compared exactly
(relative 1e-12: the values are copied floats), and the run's description is compared
with config.json's. Each check returns one-line problems; none reads a file.
"""

from __future__ import annotations

import json
import math

from ttabench import UserError
from ttabench.divisions import metrics
from ttabench.divisions.results import number, section

REL_TOL = 1e-12


def same(a, b) -> bool:
    """Equal, with floats allowed to differ in the last bits only (relative 1e-12)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b:
            return True
        try:
            return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)
        except OverflowError:  # an integer beyond float range (a hand-edited file) equals no float
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def first_difference(name: str, recorded, expected) -> str:
    """'name[i] is X, recomputed Y' for the first element that differs."""
    if isinstance(recorded, list) and isinstance(expected, list) and len(recorded) == len(expected):
        for i, (x, y) in enumerate(zip(recorded, expected)):
            if not same(x, y):
                return first_difference(f"{name}[{i}]", x, y)
    return f"{name} is {json.dumps(recorded)}, recomputed {json.dumps(expected)}"


def check_metrics(recorded: dict, rows: list[dict], config: dict | None) -> list[str]:
    """Problems with summary.json's ``metrics`` block (recorded) against curve.csv rows."""
    out = []
    spec, target, budget = (recorded.get("threshold_spec"), recorded.get("target"), recorded.get("budget_s"))
    cfg = section(config, "config")
    for key, cfg_key in (("threshold_spec", "thresholds"), ("target", "target"), ("budget_s", "time_budget")):
        if cfg_key in cfg and not same(recorded.get(key), cfg[cfg_key]):
            out.append(
                f"metrics.{key} is {json.dumps(recorded.get(key))}, config.json's "
                f"{cfg_key} is {json.dumps(cfg[cfg_key])}"
            )
    wrong = [
        f"metrics.{key} is {short_json(value)}, not {kind}"
        for key, value, ok, kind in (
            ("threshold_spec", spec, spec is None or isinstance(spec, str), "a LOW:HIGH:STEP string"),
            ("target", target, target is None or number(target) is not None, "a number"),
            ("budget_s", budget, budget is None or number(budget) is not None, "a number"),
        )
        if not ok
    ]
    if wrong:
        return out + wrong + ["metrics cannot be recomputed"]
    try:
        expected = metrics.summary_block(rows, spec, target, budget)
    except UserError as e:
        return out + [f"metrics cannot be recomputed: {e}"]
    for key in recorded:
        if key not in expected:
            out.append(f"metrics.{key} is not a metric ttabench computes (cannot be recomputed)")
    for key, value in expected.items():
        if key not in recorded:
            out.append(f"metrics.{key} is missing (curve.csv gives {json.dumps(value)})")
        elif not same(recorded[key], value):
            out.append(first_difference(f"metrics.{key}", recorded[key], value))
    return out


def check_summary_numbers(summary: dict, rows: list[dict]) -> list[str]:
    """The summary's own derived numbers, and their agreement with the last evaluation."""
    out = []
    for key in ("samples", "train_time_s", "steps", "throughput_img_s", "eval_time_s"):
        if summary.get(key) is not None and number(summary[key]) is None:
            out.append(f"{key} is {short_json(summary[key])}, not a finite number")
    samples, train_s = number(summary.get("samples")), number(summary.get("train_time_s"))
    if "throughput_img_s" in summary and samples is not None and train_s is not None:
        try:
            expected = samples / train_s if train_s > 0 else None
        except OverflowError:
            expected = None
        if not same(summary["throughput_img_s"], expected):
            out.append(first_difference("throughput_img_s", summary["throughput_img_s"], expected))
    tb = summary.get("time_breakdown")
    if tb is not None and not isinstance(tb, dict):
        out.append(f"time_breakdown is {short_json(tb)}, not an object")
    elif tb and tb.get("per_rank"):
        per_rank, worst = tb["per_rank"], tb.get("max_over_ranks") or {}
        if not (isinstance(per_rank, list) and all(isinstance(r, dict) for r in per_rank)):
            out.append("time_breakdown.per_rank is not a list of objects")
        elif not isinstance(worst, dict):
            out.append(f"time_breakdown.max_over_ranks is {short_json(worst)}, not an object")
        else:
            for k in worst:
                vals = [number(r.get(k)) for r in per_rank]
                if any(v is None for v in vals):
                    out.append(
                        f"time_breakdown.max_over_ranks.{k} has no per-rank values "
                        "(or one that is not a number)"
                    )
                elif not same(worst[k], max(vals)):
                    out.append(first_difference(f"time_breakdown.max_over_ranks.{k}", worst[k], max(vals)))
            if "eval_time_s" in summary and not same(summary["eval_time_s"], worst.get("eval_s")):
                out.append(first_difference("eval_time_s", summary["eval_time_s"], worst.get("eval_s")))
    if rows:
        last = rows[-1]
        for key, row_key in (("train_time_s", "train_time_s"), ("samples", "samples"), ("steps", "step")):
            v = number(summary.get(key))
            if v is not None and v < last[row_key] * (1 - REL_TOL):
                out.append(f"{key} is {v}, less than curve.csv's last evaluation ({last[row_key]})")
    return out


def short_json(value, limit: int = 60) -> str:
    """A JSON value for a one-line problem: compact, cut at `limit` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def run_benchmark(config: dict) -> str | None:
    """The benchmark name a run is filed under: an open submission's own name, else --benchmark."""
    name = section(config, "submission").get("name") or section(config, "config").get("benchmark")
    return name if isinstance(name, str) else None


def check_summary_vs_config(summary: dict, config: dict) -> list[str]:
    cfg, res, data = section(config, "config"), section(config, "resolved"), section(config, "data")
    pairs = (
        ("benchmark", run_benchmark(config)),
        ("division", cfg.get("division")),
        ("seed", res.get("seed")),
        ("world_size", res.get("world_size")),
        ("global_batch", res.get("global_batch")),
        ("dataset", data.get("name")),
        ("synthetic", data.get("synthetic")),
    )
    return [
        f"{key} is {short_json(summary[key])}, config.json says {short_json(want)}"
        for key, want in pairs
        if key in summary and want is not None and not same(summary[key], want)
    ]
