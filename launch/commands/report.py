"""`ttabench report RESULTS_DIR...`: one table of every system / benchmark / division in one
or more results trees (split by data set, workers, network and algorithm), scored by the olympic mean."""

from __future__ import annotations

import json
import os
import sys

from ttabench import UserError
from ttabench.divisions import experiments, metrics, scoring
from ttabench.launch.commands import html
from ttabench.launch.commands.inputs import DATA_MARKS, check_target_budget
from ttabench.launch.commands.rcp_cmd import annotate_report
from ttabench.launch.record.tables import Column, Table, to_csv, to_markdown
from ttabench.launch.usage import add_command

REPORT_COLUMNS = (
    "system",
    "benchmark",
    "division",
    "dataset",
    "workers",
    "network",
    "algorithm",
    "setting",
    "runs",
    "scored",
    "statuses",
    "target",
    "tta_s",
    "tta_stat",
    "tta_reached",
    "threshold_spec",
    "attmt_s",
    "attmt_stat",
    "attmt_reached",
    "budget_s",
    "aat",
    "aat_stat",
    "final_accuracy",
    "throughput_img_s",
    "notes",
)


def _cmd_report(args) -> int:
    if args.html:
        return html.cmd_report_html(args)
    if args.thresholds:
        metrics.parse_thresholds(args.thresholds)
    check_target_budget(args)
    for tree in args.results_dirs:
        if not os.path.isdir(tree):
            raise UserError(f"not a folder: {tree}")
    # A run below two of the trees given (results and results/sweeps) is one run.
    runs = list(
        {os.path.realpath(r.name): r for r in scoring.load_inputs(args.results_dirs, every_run=True)}.values()
    )
    rows = experiments.report_rows(runs, args.thresholds, args.target, args.budget)
    columns = REPORT_COLUMNS
    if args.rcps:
        annotate_report(rows, runs, args.rcps)
        columns += ("rcp", "rcp_normalization", "tta_normalized_s")
    if args.format == "json":
        # results_dir: the first tree, the key readers of the one-tree report know
        out = {"results_dir": args.results_dirs[0], "results_dirs": args.results_dirs, "rows": rows}
        print(json.dumps(out, indent=2))
    elif args.format == "csv":
        sys.stdout.write(to_csv(Table([Column(k) for k in columns], rows)))
    else:
        sys.stdout.write(to_markdown(report_table(rows)) + "\n")
    return 0


def _stat_cell(value, stat, reached, scored, fmt, none: str = "not reached") -> str:
    if value is None:
        return f"{none} (0/{scored})" if scored else "-"
    mark = "" if stat == "olympic_mean" else "*"
    return f"{fmt.format(value)}{mark} ({reached}/{scored})"


def _tta(r: dict) -> str:
    if r["target"] is None:
        return "no target"
    cell = _stat_cell(r["tta_s"], r["tta_stat"], r["tta_reached"], r["scored"], "{:.2f} s")
    return f"{100 * r['target']:g}%: {cell}"


def _attmt(r: dict) -> str:
    if r["threshold_spec"] is None:
        return "no thresholds"
    cell = _stat_cell(r["attmt_s"], r["attmt_stat"], r["attmt_reached"], r["scored"], "{:.2f} s", "undefined")
    return f"{r['threshold_spec']}: {cell}"


def _aat(r: dict) -> str:
    if r["budget_s"] is None:
        return "no budget"
    aat = None if r["aat"] is None else 100 * r["aat"]
    return f"{r['budget_s']:g} s: {_stat_cell(aat, r['aat_stat'], r['scored'], r['scored'], '{:.2f}%')}"


def _runs(r: dict) -> str:
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(r["statuses"].items()))
    return f"{r['runs']} ({statuses})"


COLUMNS = (
    Column("system", left=True),
    Column("benchmark", left=True),
    Column("division", left=True),
    Column("data", "dataset", lambda r: r["dataset"] + DATA_MARKS.get(r["dataset"], ("", ""))[0], left=True),
    Column("workers", show=lambda r: str(r["workers"])),
    Column("network", left=True),
    Column("algorithm", left=True),
    Column("setting", left=True),  # only when two rows share the columns before it
    Column("runs", show=_runs, left=True),
    Column("TTA @ target", "tta_s", _tta),
    Column("ATTMT", "attmt_s", _attmt),
    Column("AAT @ budget", "aat", _aat),
    Column("final acc.", "final_accuracy", lambda r: _percent(r["final_accuracy"])),
    Column("img/s", "throughput_img_s", lambda r: _count(r["throughput_img_s"])),
)


def _name(r: dict) -> str:
    return f"{r['system']}/{r['benchmark']}/{r['division']}" + (f" ({r['setting']})" if r["setting"] else "")


def _percent(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _count(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def report_table(rows: list[dict]) -> Table:
    """The report's table, with what its marks mean and each group's notes below it."""
    starred = any("*" in _tta(r) + _attmt(r) + _aat(r) for r in rows)
    notes = [
        "Values are the olympic mean over the scored runs (success or diverged; one min and "
        "one max dropped, as MLPerf), with (runs that reached it / scored runs)."
    ]
    if starred:
        notes.append("* plain mean: fewer than 3 runs reached it, and the olympic mean needs 3.")
    notes.append("Final accuracy and img/s are means over the scored runs.")
    marks = sorted({r["dataset"] for r in rows} & set(DATA_MARKS))
    notes += [DATA_MARKS[d][0] + " " + DATA_MARKS[d][1] for d in marks]
    notes += [f"{_name(r)}: {n}" for r in rows for n in r["notes"]]
    columns = COLUMNS if any(r["setting"] for r in rows) else [c for c in COLUMNS if c.field != "setting"]
    return Table(columns, rows, notes=notes)


def add_commands(sub) -> None:
    r = add_command(
        sub,
        "report",
        _cmd_report,
        help="one table of every system/benchmark/division in one or more results trees",
        description="One row per experiment (a results tree, a system and one run "
        "configuration apart from the seed; `setting` says what tells two rows of the same "
        "system, benchmark, division, data set, workers and network apart): runs, olympic-mean TTA at the target, ATTMT, "
        "AAT, final accuracy, img/s. Metrics are recomputed from curve.csv "
        "with each run's own thresholds, target and budget unless given.",
    )
    r.add_argument(
        "results_dirs",
        metavar="RESULTS_DIR",
        nargs="+",
        help="results trees (several: your runs beside the reference ones, one report)",
    )
    r.add_argument("--format", choices=("md", "csv", "json"), default="md", help="output format (default md)")
    r.add_argument("--thresholds", metavar="LOW:HIGH:STEP", help="ATTMT over these thresholds")
    r.add_argument("--target", type=float, help="TTA at this accuracy (fraction)")
    r.add_argument("--budget", type=float, metavar="SECONDS", help="AAT at this training time")
    r.add_argument(
        "--rcps",
        metavar="FILE",
        help="RCP check and MLPerf normalisation of closed-division TTA (ttabench rcp)",
    )
    r.add_argument(
        "--html",
        metavar="OUT_DIR",
        help="write a static site instead: the validation verdict, one section per study (a sortable "
        "table and its figure), a comparison page (two systems or algorithms side by side) and one "
        "page per run with its raw files (opens offline)",
    )
