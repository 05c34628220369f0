"""Commands that read results folders. They need no torch, no GPU and no process group.

    ttabench metrics RUN_OR_CURVE... [--thresholds LOW:HIGH:STEP] [--target T] [--budget S] [--json]
    ttabench compare A B [--thresholds LOW:HIGH:STEP] [--json]
    ttabench report RESULTS_DIR [--format md|csv|json] [--thresholds ...] [--target T] [--budget S]
    ttabench plot INPUT... -o FILE.png [--thresholds ...] [--label NAME]... [--title TEXT]
    ttabench validate RESULTS_DIR_OR_RUN [--json] [--no-compliance]

An input is a run folder, a curve.csv, or a folder holding run folders (every
run below it: the seeds of one configuration, a benchmark, a whole tree).
The rules for statistics and averaging are in divisions/stats.py and
divisions/scoring.py; the checks of `validate` in divisions/validate.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys

from ttabench import UserError

AVERAGING = (
    "TTA(T) of a group of runs is the mean of the runs' TTA(T), defined only when every "
    "run reached T; ATTMT(LOW..T) of a group is the mean of the runs' ATTMT(LOW..T), "
    "under the same condition; ratio = B / A"
)


def _check_target_budget(args) -> None:
    target = getattr(args, "target", None)
    budget = getattr(args, "budget", None)
    if target is not None and not 0 < target <= 1:
        raise UserError(f"--target is a fraction in (0, 1], got {target}")
    if budget is not None and budget < 0:
        raise UserError(f"--budget must be >= 0 seconds, got {budget}")


def _s(v, fmt="{:.2f} s", none="not reached") -> str:
    return none if v is None else fmt.format(v)


def _m(text) -> str:
    """Text from files or paths, shown by rich literally: '[/x]' in a folder name is not markup."""
    from rich.markup import escape

    return escape(str(text))


# --- metrics ------------------------------------------------------------------------------


def _cmd_metrics(args) -> int:
    from ttabench.divisions import metrics, scoring

    spec = metrics.parse_thresholds(args.thresholds) if args.thresholds else None
    _check_target_budget(args)
    skipped: list[dict] = []
    runs = scoring.load_inputs(args.inputs, skipped)
    _note_skipped(skipped)
    if len(runs) == 1:
        m = metrics.summarize(runs[0].points, spec, target=args.target, budget_s=args.budget)
        if args.json:
            print(json.dumps(m, indent=2))
            return 0
        from rich.console import Console
        from ttabench.launch.commands.tables import metrics_table

        Console().print(
            metrics_table(dict(m, target=args.target, budget_s=args.budget), title=_m(runs[0].name))
        )
        return 0
    out = scoring.across_runs(runs, spec, args.target, args.budget)
    out["skipped"] = skipped
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    _print_across_runs(out, args)
    return 0


def _note_skipped(skipped: list[dict]) -> None:
    """Runs left out below a folder, on stderr (stdout stays machine-readable)."""
    for s in skipped:
        print(
            f"ttabench: note: left out {s['name']} (status {s['status']}: not a finished run)",
            file=sys.stderr,
        )


def _print_across_runs(out: dict, args) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"{len(out['runs'])} runs")
    t.add_column("run", overflow="fold")
    t.add_column("status")
    t.add_column("seed")
    if args.target is not None:
        t.add_column(f"TTA @ {100 * args.target:g}%", justify="right")
    if args.thresholds:
        t.add_column(f"ATTMT {args.thresholds}", justify="right")
    if args.budget is not None:
        t.add_column(f"AAT @ {args.budget:g} s", justify="right")
    for r in out["runs"]:
        cells = [_m(r["name"]), _m(r["status"] or "-"), _m(r["seed"] if r["seed"] is not None else "-")]
        if args.target is not None:
            cells.append(_s(r["tta"]))
        if args.thresholds:
            cells.append(_s(r["attmt"], none="undefined"))
        if args.budget is not None:
            cells.append("no evaluation" if r.get("aat") is None else f"{100 * r['aat']:.2f}%")
        t.add_row(*cells)
    console.print(t)
    shown = [(k, v) for k, v in out["stats"].items() if v is not None]
    if shown:
        st = Table(title="across runs (excluded runs left out)")
        st.add_column("statistic")
        for k, _ in shown:
            st.add_column("TTA (s)" if k == "tta" else "ATTMT (s)", justify="right")

        def row(label, fn):
            st.add_row(label, *[fn(v) for _, v in shown])

        row("runs used", lambda v: str(v["n"]))
        row("mean", lambda v: _s(v["mean"], "{:.3f}", "-"))
        row("olympic mean", lambda v: _s(v["olympic_mean"], "{:.3f}", "n < 3"))
        row("variance", lambda v: _s(v["variance"], "{:.4g}", "n < 2"))
        row("std", lambda v: _s(v["std"], "{:.4g}", "n < 2"))
        row("cv", lambda v: _s(v["cv"], "{:.2%}", "-"))
        row(
            "95% CI of the mean",
            lambda v: "n < 2" if v["ci95"] is None else f"{v['ci95'][0]:.3f} .. {v['ci95'][1]:.3f}",
        )
        console.print(st)
        b = out["bootstrap"]
        console.print(
            f"CI: percentile bootstrap, {b['resamples']} resamples, seed {b['seed']}; "
            "olympic mean drops one min and one max (needs 3 runs)"
        )
    for e in out["excluded"]:
        console.print(f"excluded from {e['metric'].upper()}: {_m(e['name'])}: {_m(e['reason'])}")


# --- compare ------------------------------------------------------------------------------


def _spec_from_runs(runs, given: str | None, what: str):
    from ttabench.divisions import metrics

    if given:
        return metrics.parse_thresholds(given), given
    specs, problems = _recorded_specs(runs)
    if problems:
        raise UserError(f"{problems[0]}; {what} needs --thresholds LOW:HIGH:STEP")
    if len(specs) == 1:
        spec = specs.pop()
        return metrics.parse_thresholds(spec), spec
    why = "the runs use different threshold specs" if specs else "no run records a threshold spec"
    raise UserError(f"{what} needs --thresholds LOW:HIGH:STEP ({why})")


def _recorded_specs(runs) -> tuple[set[str], list[str]]:
    """The valid threshold specs the runs record, and a problem for each invalid one."""
    specs, problems = set(), []
    for r in runs:
        spec, problem = r.recorded("threshold_spec")
        if problem:
            problems.append(problem)
        elif spec is not None:
            specs.add(spec)
    return specs, problems


def _cmd_compare(args) -> int:
    from ttabench.divisions import scoring

    skipped_a: list[dict] = []
    skipped_b: list[dict] = []
    a, b = scoring.load_inputs([args.a], skipped_a), scoring.load_inputs([args.b], skipped_b)
    _note_skipped(skipped_a + skipped_b)
    spec, spec_str = _spec_from_runs(a + b, args.thresholds, "compare")
    rows = scoring.compare_rows([r.points for r in a], [r.points for r in b], spec)
    out = {
        "a": {"name": args.a, "runs": [r.name for r in a], "skipped": skipped_a},
        "b": {"name": args.b, "runs": [r.name for r in b], "skipped": skipped_b},
        "thresholds": spec_str,
        "averaging": AVERAGING,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    def label(name, runs):
        return f"{name} ({len(runs)} runs)" if len(runs) > 1 else name

    console = Console()
    console.print(f"A = {_m(label(args.a, a))}\nB = {_m(label(args.b, b))}")
    t = Table(title=f"TTA and ATTMT({100 * spec[0]:g}%..T), B / A")
    for col in ("T", "TTA A", "TTA B", "B/A", "ATTMT A", "ATTMT B", "B/A"):
        t.add_column(col, justify="right")
    ratio = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        t.add_row(
            f"{100 * r['threshold']:g}%",
            _s(r["tta_a"]),
            _s(r["tta_b"]),
            ratio(r["tta_ratio"]),
            _s(r["attmt_a"], none="undefined"),
            _s(r["attmt_b"], none="undefined"),
            ratio(r["attmt_ratio"]),
        )
    console.print(t)
    if len(a) > 1 or len(b) > 1:
        console.print(f"averaging: {AVERAGING}")
    return 0


# --- report -------------------------------------------------------------------------------

REPORT_COLUMNS = (
    "system",
    "benchmark",
    "division",
    "dataset",
    "workers",
    "network",
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
    from ttabench.divisions import metrics, scoring

    if args.thresholds:
        metrics.parse_thresholds(args.thresholds)
    _check_target_budget(args)
    if not os.path.isdir(args.results_dir):
        raise UserError(f"not a folder: {args.results_dir}")
    runs = scoring.load_inputs([args.results_dir], every_run=True)
    rows = scoring.report_rows(runs, args.thresholds, args.target, args.budget)
    if args.format == "json":
        print(json.dumps({"results_dir": args.results_dir, "rows": rows}, indent=2))
    elif args.format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(REPORT_COLUMNS)
        for r in rows:
            w.writerow([_csv_cell(r[k]) for k in REPORT_COLUMNS])
        sys.stdout.write(buf.getvalue())
    else:
        sys.stdout.write(report_markdown(rows))
    return 0


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dict):
        return ";".join(f"{k}:{n}" for k, n in sorted(v.items()))
    if isinstance(v, list):
        return "; ".join(map(str, v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


DATA_MARKS = {
    "cifar10-subset": ("†", "the CIFAR-10 subset: not the full benchmark, not comparable with full runs."),
    "synthetic": ("‡", "synthetic data: a demo, never a benchmark result."),
}


def _stat_cell(value, stat, reached, scored, fmt) -> str:
    if value is None:
        return f"not reached (0/{scored})" if scored else "-"
    mark = "" if stat == "olympic_mean" else "*"
    return f"{fmt.format(value)}{mark} ({reached}/{scored})"


def report_markdown(rows: list[dict]) -> str:
    """The report as a Markdown table with footnotes."""
    head = [
        "system",
        "benchmark",
        "division",
        "data",
        "workers",
        "network",
        "runs",
        "TTA @ target",
        "ATTMT",
        "AAT @ budget",
        "final acc.",
        "img/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    starred = False
    notes = []
    marks: set = set()
    for r in rows:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(r["statuses"].items()))
        tta = _stat_cell(r["tta_s"], r["tta_stat"], r["tta_reached"], r["scored"], "{:.2f} s")
        attmt = _stat_cell(r["attmt_s"], r["attmt_stat"], r["attmt_reached"], r["scored"], "{:.2f} s")
        aat = _stat_cell(
            None if r["aat"] is None else 100 * r["aat"], r["aat_stat"], r["scored"], r["scored"], "{:.2f}%"
        )
        if r["target"] is None:
            tta = "no target"
        else:
            tta = f"{100 * r['target']:g}%: {tta}"
        attmt = "no thresholds" if r["threshold_spec"] is None else f"{r['threshold_spec']}: {attmt}"
        aat = "no budget" if r["budget_s"] is None else f"{r['budget_s']:g} s: {aat}"
        starred |= "*" in tta + attmt + aat
        data = r["dataset"] + DATA_MARKS.get(r["dataset"], ("", ""))[0]
        marks.add(r["dataset"])
        cells = [
            r["system"],
            r["benchmark"],
            r["division"],
            data,
            str(r["workers"]),
            r["network"],
            f"{r['runs']} ({statuses})",
            tta,
            attmt,
            aat,
            "-" if r["final_accuracy"] is None else f"{100 * r['final_accuracy']:.2f}%",
            "-" if r["throughput_img_s"] is None else f"{r['throughput_img_s']:,.0f}",
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        notes += [f"{r['system']}/{r['benchmark']}/{r['division']}: {n}" for n in r["notes"]]
    lines.append("")
    lines.append(
        "Values are the olympic mean over the scored runs (success or diverged; one min and "
        "one max dropped, as MLPerf), with (runs that reached it / scored runs)."
    )
    if starred:
        lines.append("* plain mean: fewer than 3 runs reached it, and the olympic mean needs 3.")
    lines.append("Final accuracy and img/s are means over the scored runs.")
    lines += [DATA_MARKS[d][0] + " " + DATA_MARKS[d][1] for d in sorted(marks) if d in DATA_MARKS]
    lines += notes
    return "\n".join(lines) + "\n"


# --- plot ---------------------------------------------------------------------------------


def _default_label(path: str, runs) -> str:
    from ttabench.divisions.scoring import describe_run

    if len(runs) > 1:
        return os.path.normpath(path)
    run = runs[0]
    if run.summary:
        d = describe_run(run)
        seed = f" seed {run.seed}" if run.seed is not None else ""
        workers = f" x{d['workers']}" if d.get("workers") not in (None, 1) else ""
        return f"{d['system']}{workers} {d['benchmark']}{seed}"
    return os.path.normpath(path)


def _cmd_plot(args) -> int:
    from ttabench.divisions import metrics, scoring

    if args.label and len(args.label) != len(args.inputs):
        raise UserError(f"--label given {len(args.label)} times for {len(args.inputs)} inputs")
    if not args.output.lower().endswith(".png"):
        raise UserError(f"-o must name a .png file, got {args.output}")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UserError(f"output folder does not exist: {out_dir}")
    groups, skipped = [], []
    for i, path in enumerate(args.inputs):
        runs = scoring.load_inputs([path], skipped)
        groups.append((args.label[i] if args.label else _default_label(path, runs), runs))
    _note_skipped(skipped)
    labels = [g[0] for g in groups]
    if len(set(labels)) != len(labels):  # same system and seed twice: tell them apart
        groups = [(f"{label} [{i + 1}]", runs) for i, (label, runs) in enumerate(groups)]
    all_runs = [r for _, runs in groups for r in runs]
    ts = None
    if args.thresholds:
        ts = metrics.thresholds(*metrics.parse_thresholds(args.thresholds))
    else:
        specs, _ = _recorded_specs(all_runs)  # an invalid one only costs the TTMT panel
        if len(specs) == 1:
            ts = metrics.thresholds(*metrics.parse_thresholds(specs.pop()))
    title = args.title or _plot_title(all_runs)
    from ttabench.launch.commands import plot

    fig = plot.figure(groups, ts, title=title)
    plot.save(fig, args.output)
    print(f"wrote {args.output}" + ("" if ts else " (no thresholds: pass --thresholds for the TTMT panel)"))
    return 0


def _plot_title(runs) -> str | None:
    def values(key):
        return sorted({v for v in ((r.summary or {}).get(key) for r in runs) if isinstance(v, str)})

    benches, data = values("benchmark"), values("dataset")
    if not benches:
        return None
    title = ", ".join(benches)
    if data:
        title += " on " + ", ".join(data)
    if "synthetic" in data:
        title += " [synthetic data: not a benchmark result]"
    elif "cifar10-subset" in data:
        title += " [CIFAR-10 subset, not the full benchmark]"
    return title


# --- validate -----------------------------------------------------------------------------


def _cmd_validate(args) -> int:
    from ttabench.divisions import validate

    result = validate.validate(args.path, compliance=not args.no_compliance)
    if args.json:
        print(
            json.dumps(
                {
                    "path": args.path,
                    "ok": result.ok,
                    "runs": result.runs,
                    "statuses": result.statuses,
                    "failures": [str(p) for p in result.failures],
                    "warnings": [str(p) for p in result.warnings],
                },
                indent=2,
            )
        )
    else:
        for p in result.problems:
            print(p)
        print(result.summary_line())
    return 0 if result.ok else 1


def add_commands(sub) -> None:
    m = sub.add_parser(
        "metrics",
        help="TTA / AAT / TTMT / ATTMT of curves or run folders, with statistics across several runs",
        description="Metrics of one run; with several runs (inputs, or folders of "
        "runs) also the mean, olympic mean, variance, std, cv and 95% "
        "bootstrap CI of TTA at --target and of ATTMT. Runs that did not "
        "reach a value are listed and excluded, never counted as zero.",
    )
    m.add_argument(
        "inputs", nargs="+", metavar="RUN_OR_CURVE", help="run folder, curve.csv, or a folder of run folders"
    )
    m.add_argument("--thresholds", metavar="LOW:HIGH:STEP", help="thresholds for TTMT/ATTMT")
    m.add_argument("--target", type=float, help="TTA at this accuracy (fraction)")
    m.add_argument("--budget", type=float, metavar="SECONDS", help="AAT at this training time")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=_cmd_metrics)

    c = sub.add_parser(
        "compare",
        help="TTA and ATTMT of two systems, threshold by threshold",
        description="Per threshold T: TTA(T) and ATTMT(LOW..T) of A and B and their "
        "ratios B/A. A and B are runs, curves or folders of runs; "
        f"{AVERAGING}.",
    )
    c.add_argument("a", metavar="A", help="run folder, curve.csv, or folder of runs")
    c.add_argument("b", metavar="B", help="run folder, curve.csv, or folder of runs")
    c.add_argument(
        "--thresholds",
        metavar="LOW:HIGH:STEP",
        help="thresholds (default: the spec the runs were recorded with)",
    )
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=_cmd_compare)

    r = sub.add_parser(
        "report",
        help="one table of every system/benchmark/division in a results tree",
        description="One row per system, benchmark and division (split by data set, "
        "workers and network): runs, olympic-mean TTA at the target, ATTMT, "
        "AAT, final accuracy, img/s. Metrics are recomputed from curve.csv "
        "with each run's own thresholds, target and budget unless given.",
    )
    r.add_argument("results_dir", metavar="RESULTS_DIR")
    r.add_argument("--format", choices=("md", "csv", "json"), default="md", help="output format (default md)")
    r.add_argument("--thresholds", metavar="LOW:HIGH:STEP", help="ATTMT over these thresholds")
    r.add_argument("--target", type=float, help="TTA at this accuracy (fraction)")
    r.add_argument("--budget", type=float, metavar="SECONDS", help="AAT at this training time")
    r.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "plot",
        help="accuracy-vs-time and TTMT curves of runs, as a PNG",
        description="Left: test accuracy against training time with the threshold "
        "lines. Right: the TTMT curve (TTA of each threshold), the mean "
        "of each folder of runs drawn bold. One colour per input.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="run folder, curve.csv, or folder of runs")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png")
    p.add_argument(
        "--thresholds",
        metavar="LOW:HIGH:STEP",
        help="threshold lines and TTMT (default: the spec the runs were recorded with)",
    )
    p.add_argument("--label", action="append", metavar="NAME", help="legend name, once per input")
    p.add_argument("--title", help="figure title")
    p.set_defaults(func=_cmd_plot)

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
