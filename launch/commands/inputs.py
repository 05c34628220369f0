"""What the commands that read results share: checks of --target and --budget, the note on
runs left out below a folder, and the threshold spec a set of runs was recorded with.

An input is a run folder, a curve.csv, or a folder holding run folders (every
run below it: the seeds of one configuration, a benchmark, a whole tree). The
rules for statistics and averaging are in divisions/stats.py and
divisions/scoring.py; the checks of `validate` in divisions/validate.py.
"""

from __future__ import annotations

import sys

from ttabench import UserError
from ttabench.divisions import metrics
from ttabench.divisions.scoring import Run


def check_target_budget(args) -> None:
    target = getattr(args, "target", None)
    budget = getattr(args, "budget", None)
    if target is not None and not 0 < target <= 1:
        raise UserError(f"--target is a fraction in (0, 1], got {target}")
    if budget is not None and budget < 0:
        raise UserError(f"--budget must be >= 0 seconds, got {budget}")


def note_skipped(skipped: list[dict]) -> None:
    """Runs left out below a folder, on stderr (stdout stays machine-readable)."""
    for s in skipped:
        print(
            f"ttabench: note: left out {s['name']} (status {s['status']}: not a finished run)",
            file=sys.stderr,
        )


def recorded_specs(runs: list[Run]) -> tuple[set[str], list[str]]:
    """The valid threshold specs the runs record, and a problem for each invalid one."""
    specs, problems = set(), []
    for r in runs:
        spec, problem = r.recorded("threshold_spec")
        if problem:
            problems.append(problem)
        elif spec is not None:
            specs.add(spec)
    return specs, problems


def spec_from_runs(runs: list[Run], given: str | None, what: str):
    """(parsed spec, spec string): `given`, else the one spec every run records."""
    if given:
        return metrics.parse_thresholds(given), given
    specs, problems = recorded_specs(runs)
    if problems:
        raise UserError(f"{problems[0]}; {what} needs --thresholds LOW:HIGH:STEP")
    if len(specs) == 1:
        spec = specs.pop()
        return metrics.parse_thresholds(spec), spec
    why = "the runs use different threshold specs" if specs else "no run records a threshold spec"
    raise UserError(f"{what} needs --thresholds LOW:HIGH:STEP ({why})")
