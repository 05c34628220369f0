"""Checks of mllog.txt: its events read back, the same evaluations as curve.csv, the same
run description as summary.json, and the MLPerf compliance checker (mlperf-logging) run
in-process with ttabench's rules (``compliance/ttabench_1.0.0``).
"""

from __future__ import annotations

import json
import os

from ttabench.divisions.checks import same, short_json
from ttabench.divisions.results import section

RULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compliance", "ttabench_1.0.0")
RULES = os.path.join(RULES_DIR, "common.yaml")


def read_mllog(path: str) -> tuple[list[dict], list[str]]:
    """The events of mllog.txt and a problem for each line that is not an :::MLLOG JSON event."""
    events, problems = [], []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"cannot read: {e}"]
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not line.startswith(":::MLLOG "):
            problems.append(f"line {lineno} is not an :::MLLOG event")
            continue
        try:
            ev = json.loads(line[len(":::MLLOG ") :])
        except json.JSONDecodeError as e:
            problems.append(f"line {lineno}: bad JSON ({e.msg})")
            continue
        except (ValueError, RecursionError) as e:  # an integer too long, nesting too deep
            problems.append(f"line {lineno}: bad JSON ({type(e).__name__})")
            continue
        if not isinstance(ev, dict) or "key" not in ev:
            problems.append(f"line {lineno}: not an mllog event object")
            continue
        events.append(ev)
    return events, problems


def check_mllog_vs_curve(events: list[dict], rows: list[dict]) -> list[str]:
    """curve.csv and the eval_accuracy events must be the same evaluations, in order."""
    evals = [e for e in events if e.get("key") == "eval_accuracy"]
    out = []
    if len(evals) != len(rows):
        out.append(f"{len(evals)} eval_accuracy events, but curve.csv has {len(rows)} evaluations")
    for i, (ev, row) in enumerate(zip(evals, rows), start=1):
        md = section(ev, "metadata")
        if not same(ev.get("value"), row["accuracy"]):
            out.append(
                f"evaluation {i}: eval_accuracy {ev.get('value')!r}, curve.csv accuracy {row['accuracy']!r}"
            )
        for key in ("train_time_s", "samples"):
            if key in md and not same(md[key], row[key]):
                out.append(f"evaluation {i}: eval_accuracy {key} {md[key]!r}, curve.csv {row[key]!r}")
    return out


def check_mllog_vs_summary(events: list[dict], summary: dict) -> list[str]:
    values: dict[str, list] = {}
    for e in events:
        if isinstance(e.get("key"), str):
            values.setdefault(e["key"], []).append(e.get("value"))
    out = []
    for log_key, sum_key in (
        ("seed", "seed"),
        ("submission_benchmark", "benchmark"),
        ("submission_division", "division"),
        ("dataset", "dataset"),
        ("global_batch_size", "global_batch"),
    ):
        if sum_key not in summary or log_key not in values:
            continue  # a missing key is the compliance checker's finding
        if not all(same(v, summary[sum_key]) for v in values[log_key]):
            out.append(
                f"{log_key} logged as {short_json(values[log_key][0])}, summary.json "
                f"says {short_json(summary[sum_key])}"
            )
    return out


def compliance_problems(mllog_path: str, rules: str = RULES) -> tuple[list[str], list[str]]:
    """Run the MLPerf compliance checker in-process: (failures, warnings), one line each."""
    # Imported here: only the compliance check needs the checker; the other readers start without it.
    from mlperf_logging.compliance_checker import mlp_compliance, mlp_parser

    ruleset = mlp_compliance.get_parser().get_default("ruleset")
    checker = mlp_compliance.make_checker("training", ruleset, quiet=False, werror=False)
    # The checker keeps its queue of rule files in a module global; start it empty.
    mlp_compliance.enqueued_configs.clear()
    try:
        loglines, errors = mlp_parser.parse_file(mllog_path, ruleset=ruleset)
        failures = [f"unparsable log line: {line[:80]} ({err})" for line, err in errors]
        checker.check_loglines(loglines, os.path.abspath(rules))
    except Exception as e:  # the checker executes the rules' code; any crash is a finding
        return [f"compliance checker failed: {type(e).__name__}: {e}"], []
    finally:
        mlp_compliance.enqueued_configs.clear()
    failures += [_one_line(m) for m in [*checker.overwritable.values(), *checker.not_overwritable]]
    return failures, [_one_line(m) for m in checker.warnings.values()]


def _one_line(message: str) -> str:
    lines = [" ".join(ln.split()) for ln in message.strip().splitlines() if ln.strip()]
    if not lines:
        return "compliance check failed"
    if lines[0].startswith("failed test:"):  # an END check of the rules
        return f"at the end of the log, {lines[0]}"
    test = next((ln for ln in lines[1:] if ln.startswith("failed test:")), None)
    if test:
        return f"{lines[0].rstrip(':')}: {test}"
    if lines[0].startswith("Failed executing") and len(lines) > 1:
        return f"{lines[0].rstrip(':')}: {lines[1]}"
    return lines[0]
