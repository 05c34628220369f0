"""`ttabench validate PATH`: check a results folder (the checks: divisions/validate.py)."""

from __future__ import annotations

import json

from ttabench.divisions import rcp
from ttabench.divisions.validate import Problem, validate
from ttabench.launch.cluster.slurm import submitted_jobs
from ttabench.launch.commands.rcp_cmd import check_results
from ttabench.launch.usage import add_command, json_flag


def _cmd_validate(args) -> int:
    if args.rcps:
        rcp.load(args.rcps)  # a bad RCP file is one line before the long checks, not after
    result = validate(args.path, compliance=not args.no_compliance, jobs=submitted_jobs(args.path))
    rcps = _rcp_problems(args, result)
    if args.json:
        out = {
            "path": args.path,
            "ok": result.ok,
            "runs": result.runs,
            "statuses": result.statuses,
            "failures": [str(p) for p in result.failures],
            "warnings": [str(p) for p in result.warnings],
        }
        if args.rcps:
            out["rcp"] = rcps
        print(json.dumps(out, indent=2))
    else:
        for p in result.problems:
            print(p)
        print(result.summary_line())
    return 0 if result.ok else 1


def _rcp_problems(args, result) -> list[dict]:
    """--rcps: every closed-division set of runs against the RCPs (a failed check fails validate;
    a check that cannot be made, e.g. of fewer than 3 runs, and a cadence that differs from the
    RCPs' are warnings)."""
    if not args.rcps:
        return []
    out = check_results(args.path, args.rcps)
    for res in out:
        checkable = res.get("checkable", True)
        verdict = "RCP check passed" if res["pass"] else "RCP check failed" if checkable else "RCP check"
        note = f" ({res['note']})" if res.get("note") else ""
        warning = res["pass"] or not checkable
        result.problems.append(Problem(res["path"], f"{verdict}: {res['reason']}{note}", warning=warning))
        result.problems += [
            Problem(res["path"], f"RCP check: {w}", warning=True) for w in res.get("warnings", [])
        ]
    return out


def add_commands(sub) -> None:
    v = add_command(
        sub,
        "validate",
        _cmd_validate,
        help="check a results folder: layout, recomputed numbers, "
        "mllog compliance, closed-division rules, unique seeds",
        description="Exit 0 with one OK line when every run under the folder passes; "
        "otherwise one `PATH: problem` line each and exit 1. Warnings "
        "(e.g. the CIFAR-10 subset, failed runs) do not fail.",
    )
    v.add_argument("path", metavar="RESULTS_DIR_OR_RUN")
    json_flag(v)
    v.add_argument(
        "--no-compliance", action="store_true", help="skip the MLPerf compliance checker (mlperf-logging)"
    )
    v.add_argument(
        "--rcps",
        metavar="FILE",
        help="also check every closed-division set of runs against these RCPs (ttabench rcp)",
    )
