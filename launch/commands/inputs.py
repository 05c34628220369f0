"""What the commands that read results share: checks of --target and --budget, the note on
runs left out below a folder, and the threshold spec, target and budget a set of runs was
recorded with.

An input is a run folder, a curve.csv, or a folder holding run folders (every
run below it: the seeds of one configuration, a benchmark, a whole tree). The
rules for statistics and averaging are in divisions/stats.py and
divisions/scoring.py; the checks of `validate` in divisions/validate.py.
"""

from __future__ import annotations

import json
import sys

from ttabench import UserError
from ttabench.divisions import metrics
from ttabench.divisions.scoring import Run, recorded_values

# How a report marks runs that are not the full benchmark (the table and the web pages).
DATA_MARKS = {
    "cifar10-subset": ("†", "the CIFAR-10 subset: not the full benchmark, not comparable with full runs."),
    "synthetic": ("‡", "synthetic data: a demo, never a benchmark result."),
}


def check_target_budget(args) -> None:
    target = getattr(args, "target", None)
    budget = getattr(args, "budget", None)
    metrics.check_target(target)
    if budget is not None and budget < 0:
        raise UserError(f"--budget must be >= 0 seconds, got {budget}")


def note_skipped(skipped: list[dict]) -> None:
    """Runs left out below a folder, on stderr (stdout stays machine-readable)."""
    for s in skipped:
        print(
            f"ttabench: note: left out {s['name']} (status {s['status']}: not a finished run)",
            file=sys.stderr,
        )


def thresholds_flag(parser, what: str) -> None:
    """--thresholds LOW:HIGH:STEP of a command that otherwise takes the spec its runs were
    recorded with (below: recorded_specs, spec_from_runs, use_recorded); `what` says its use."""
    parser.add_argument(
        "--thresholds",
        metavar="LOW:HIGH:STEP",
        help=f"{what} (default: the spec the runs were recorded with)",
    )


def recorded_specs(runs: list[Run]) -> tuple[set[str], list[str]]:
    """The valid threshold specs the runs record, and a problem for each invalid one."""
    specs, problems = recorded_values(runs, "threshold_spec")
    return {s for s in specs if s is not None}, problems


def spec_from_runs(runs: list[Run], given: str | None, what: str):
    """(parsed spec, spec string): `given`, else the one spec every run records."""
    if given:
        return metrics.parse_thresholds(given), given
    specs, problems = recorded_specs(runs)
    if problems:
        raise UserError(f"{problems[0]}; {what} needs --thresholds LOW:HIGH:STEP")
    if len(specs) == 1:
        spec = specs.pop()
        return metrics.parse_thresholds(spec, "recorded threshold_spec"), spec
    why = "the runs use different threshold specs" if specs else "no run records a threshold spec"
    raise UserError(f"{what} needs --thresholds LOW:HIGH:STEP ({why})")


_RECORDED = (("threshold_spec", "thresholds", "--thresholds"), ("target", "target", "--target"))
_RECORDED += (("budget_s", "budget", "--budget"),)


def use_recorded(runs: list[Run], args) -> str:
    """Fill each of --thresholds/--target/--budget not given with the value the runs recorded
    (as report, plot and compare do); returns what was taken, e.g. 'thresholds 0.8:0.9:0.01'.

    Runs recording different values are an error naming the flag to pass; an invalid recorded
    value is noted on stderr and ignored; nothing given and nothing recorded is an error.
    """
    taken, differ = [], []
    for key, attr, flag in _RECORDED:
        if getattr(args, attr) is not None:
            continue
        recorded, problems = recorded_values(runs, key)
        for problem in problems:
            print(f"ttabench: note: {problem}; ignored", file=sys.stderr)
        values = {json.dumps(v): v for v in recorded if v is not None}
        if len(values) > 1:
            differ.append(f"{flag} (recorded: {', '.join(sorted(values))})")
        elif values:
            value = next(iter(values.values()))
            setattr(args, attr, value)
            taken.append(f"{attr} {value:g}" if attr != "thresholds" else f"thresholds {value}")
    if differ:
        raise UserError("the runs record different metric parameters; pass " + " and ".join(differ))
    if args.thresholds is None and args.target is None and args.budget is None:
        raise UserError(
            "nothing to compute: no run records thresholds, a target or a budget; pass "
            "--thresholds LOW:HIGH:STEP, --target T or --budget SECONDS"
        )
    return ", ".join(taken)
