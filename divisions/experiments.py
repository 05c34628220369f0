"""The report of a results tree: its runs grouped into experiments (validate's key: one
results tree, one system, one run configuration apart from the seed), each described
(system, benchmark, division, data set, workers, network, and what sets it apart from a
twin) and scored. Pure functions over the JSON files of run folders; no torch.

Rule (the docs and ``--help`` say the same):

- ``report`` scores a configuration by the olympic mean over its runs (drop
  one min and one max, as MLPerf) when at least 3 runs have the value, and by
  the plain mean, marked as such, when only 1 or 2 do. Runs with status
  success or diverged are scored; failed, interrupted and unfinished runs are
  counted but not scored.
"""

from __future__ import annotations

import json
import os

from ttabench.divisions import algorithms, metrics, stats
from ttabench.divisions.results import (
    RunPath,
    experiment_key,
    experiment_parts,
    number,
    section,
    single_worker,
)
from ttabench.divisions.scoring import SCORED_STATUSES, Run, recorded_values

NOT_APPLIED = "not applied (1 worker)"


def network_label(config: dict | None) -> str:
    """The run's network: ``not applied (1 worker)`` for a run of one worker (no collective
    crosses a link, whatever was asked), else the emulated link when there was one, else a
    really shaped one (netlab, a Slurm node's tbf: ``tbf 100mbit``), else config.network,
    else loopback (the default: nothing emulated)."""
    if single_worker(config):
        return NOT_APPLIED
    net = section(section(config, "resolved"), "network")
    if net.get("mechanism") not in (None, "none"):
        return _text(net.get("profile")) or _text(net.get("mechanism")) or "?"
    shaping = section(section(config, "resolved"), "network_shaping")
    if _text(shaping.get("rate")):
        delay = _text(shaping.get("delay"))
        return f"tbf {shaping['rate']}" + (f" +{delay}" if delay else "")
    return _text(section(config, "config").get("network")) or "loopback"


def _text(value) -> str | None:
    """A label from a JSON value: strings as they are, numbers as text, anything else None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _system(run: Run) -> str:
    return _text(section(run.config, "resolved").get("system")) or _where(run).system


def _where(run: Run) -> RunPath:
    """The folder names a run is filed under (results/<system>/<benchmark>/<division>/<run-id>)."""
    return RunPath.parse(os.path.abspath(run.name))


def describe_run(run: Run) -> dict:
    """The configuration a run belongs to in the report (what makes two runs comparable)."""
    s, c = run.summary or {}, run.config or {}
    cfg = section(c, "config")
    workers = [
        w
        for w in (s.get("world_size"), section(c, "resolved").get("world_size"))
        if isinstance(w, int) and not isinstance(w, bool) and w > 0
    ]
    return {
        "system": _system(run),
        "benchmark": _text(s.get("benchmark")) or _text(cfg.get("benchmark")) or _where(run).benchmark,
        "division": _text(s.get("division")) or _text(cfg.get("division")) or _where(run).division,
        "dataset": _text(s.get("dataset")) or _text(section(c, "data").get("name")) or "?",
        "workers": workers[0] if workers else None,
        "network": network_label(c),
        "algorithm": algorithms.run_label(s, c),
    }


def central(values: list[float]) -> tuple[float | None, str | None]:
    """The olympic mean for 3 or more values, else the mean (marked), else None."""
    if len(values) >= stats.OLYMPIC_MIN_RUNS:
        return stats.olympic_mean(values), "olympic_mean"
    if values:
        return stats.mean(values), "mean"
    return None, None


def _shared(runs: list[Run], key: str, override) -> tuple[object, list[str]]:
    """The value of a metric parameter for a group: the override, or the one all runs share
    (runs recording an invalid value are noted and do not count)."""
    if override is not None:
        return override, []
    recorded, problems = recorded_values(runs, key)
    notes = [problem + "; ignored" for problem in problems]
    values = {repr(v): v for v in recorded}
    if len(values) > 1:
        return None, notes + [f"runs differ in {key} ({', '.join(sorted(values))}); pass it explicitly"]
    return (next(iter(values.values())) if values else None), notes


def report_rows(
    runs: list[Run], thresholds: str | None = None, target: float | None = None, budget_s: float | None = None
) -> list[dict]:
    """The report's rows (report_groups without the runs)."""
    return [row for row, _ in report_groups(runs, thresholds, target, budget_s)]


def report_groups(
    runs: list[Run], thresholds: str | None = None, target: float | None = None, budget_s: float | None = None
) -> list[tuple[dict, list[Run]]]:
    """One row (and its runs) per experiment (validate's: one results tree, one system, one run configuration
    apart from the seed), described by system / benchmark / division / data set / workers /
    network / algorithm; where two rows share that description, ``setting`` says what tells them apart."""
    groups: dict[str, list[Run]] = {}
    parts: dict[str, list] = {}
    for run in runs:
        key = experiment_key(run.name, run.summary, run.config)
        groups.setdefault(key, []).append(run)
        parts.setdefault(key, experiment_parts(run.name, run.summary, run.config))
    described = {key: describe_run(group[0]) for key, group in groups.items()}
    rows = []
    for key, group in groups.items():
        twins = [k for k in groups if described[k] == described[key]]
        row = dict(
            described[key],
            setting=_setting(parts[key], [parts[k] for k in twins if k != key]),
            **_score_group(group, thresholds, target, budget_s),
        )
        rows.append((row, group))
    return sorted(rows, key=lambda rg: tuple(str(rg[0][k]) for k in (*DESCRIPTION, "setting")))


DESCRIPTION = ("system", "benchmark", "division", "dataset", "workers", "network", "algorithm")


def _setting(mine: list, others: list[list]) -> str:
    """What sets an experiment apart from others of the same description: the run settings whose
    values differ (``batch_size=256``), else the results tree (``tree=results/rcp-runs/bs256``)."""
    if not others:
        return ""
    root, _, what = mine
    keys = sorted({k for o in others for k in {*what, *o[2]} if what.get(k) != o[2].get(k)})
    out = [f"{k}={_short(what.get(k))}" for k in keys]
    if any(o[2] == what and o[0] != root for o in others):
        out.append(f"tree={os.path.relpath(root)}")
    return ", ".join(out)


def _short(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _score_group(
    group: list[Run], thresholds: str | None, target: float | None, budget_s: float | None
) -> dict:
    """A configuration's run counts, and its metrics over the scored runs."""
    statuses: dict[str, int] = {}
    for r in group:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    scored = [r for r in group if r.status in SCORED_STATUSES]
    spec_str, notes = _shared(scored, "threshold_spec", thresholds)
    tgt, more = _shared(scored, "target", target)
    notes += more
    budget, more = _shared(scored, "budget_s", budget_s)
    notes += more
    spec = metrics.parse_thresholds(spec_str) if spec_str else None

    tta_vals, attmt_vals, aat_vals, img_s, final = [], [], [], [], []
    for r in scored:
        m = metrics.summarize(r.points, spec, target=tgt, budget_s=budget)
        if m.get("target_tta_s") is not None:
            tta_vals.append(m["target_tta_s"])
        if m.get("attmt_s") is not None:
            attmt_vals.append(m["attmt_s"])
        if m.get("aat") is not None:
            aat_vals.append(m["aat"])
        if number((r.summary or {}).get("throughput_img_s")) is not None:
            img_s.append(r.summary["throughput_img_s"])
        if r.points:
            final.append(r.points[-1][1])
    tta, tta_stat = central(tta_vals)
    attmt, attmt_stat = central(attmt_vals)
    aat, aat_stat = central(aat_vals)
    return {
        "runs": len(group),
        "scored": len(scored),
        "statuses": statuses,
        "target": tgt,
        "tta_s": tta,
        "tta_stat": tta_stat,
        "tta_reached": len(tta_vals),
        "threshold_spec": spec_str,
        "attmt_s": attmt,
        "attmt_stat": attmt_stat,
        "attmt_reached": len(attmt_vals),
        "budget_s": budget,
        "aat": aat,
        "aat_stat": aat_stat,
        "final_accuracy": stats.mean(final),
        "throughput_img_s": stats.mean(img_s),
        "notes": notes,
    }
