"""`ttabench validate PATH`: check a results folder (the checks: divisions/validate.py)."""

from __future__ import annotations

import json

from ttabench.divisions.validate import validate


def _cmd_validate(args) -> int:
    result = validate(args.path, compliance=not args.no_compliance)
    if args.json:
        out = {
            "path": args.path,
            "ok": result.ok,
            "runs": result.runs,
            "statuses": result.statuses,
            "failures": [str(p) for p in result.failures],
            "warnings": [str(p) for p in result.warnings],
        }
        print(json.dumps(out, indent=2))
    else:
        for p in result.problems:
            print(p)
        print(result.summary_line())
    return 0 if result.ok else 1


def add_commands(sub) -> None:
    v = sub.add_parser(
        "validate",
        help="check a results folder: layout, recomputed numbers, "
        "mllog compliance, closed-division rules, unique seeds",
        description="Exit 0 with one OK line when every run under the folder passes; "
        "otherwise one `PATH: problem` line each and exit 1. Warnings "
        "(e.g. the CIFAR-10 subset, failed runs) do not fail.",
    )
    v.add_argument("path", metavar="RESULTS_DIR_OR_RUN")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.add_argument(
        "--no-compliance", action="store_true", help="skip the MLPerf compliance checker (mlperf-logging)"
    )
    v.set_defaults(func=_cmd_validate)
