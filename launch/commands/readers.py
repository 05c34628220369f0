"""The commands that read results folders, in the order `ttabench --help` lists them.
They need no torch, no GPU and no process group.

    ttabench metrics RUN_OR_CURVE... [--thresholds LOW:HIGH:STEP] [--target T] [--budget S] [--json]
    ttabench compare A B [--thresholds LOW:HIGH:STEP] [--json]
    ttabench report RESULTS_DIR... [--format md|csv|json] [--thresholds ...] [--target T] [--budget S] [--rcps FILE]
    ttabench plot INPUT... -o FILE.png [--thresholds ...] [--label NAME]... [--title TEXT]
    ttabench validate RESULTS_DIR_OR_RUN [--json] [--no-compliance] [--rcps FILE]

One module per command (launch/commands/metrics_cmd.py, compare.py, report.py,
plot.py, validate_cmd.py; `_cmd` tells them from divisions/metrics.py and
divisions/validate.py); what they share is in inputs.py, their tables are drawn
by launch/record/tables.py.
"""

from __future__ import annotations

from ttabench.launch.commands import compare, metrics_cmd, plot, report, validate_cmd

COMMANDS = (metrics_cmd, compare, report, plot, validate_cmd)


def add_commands(sub) -> None:
    for command in COMMANDS:
        command.add_commands(sub)
