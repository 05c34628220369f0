"""`ttabench metrics`: TTA / AAT / TTMT / ATTMT of one run, or of several runs with their
statistics (mean, olympic mean, variance, std, cv, bootstrap CI); runs that did not reach
a value are listed and excluded, never counted as zero."""

from __future__ import annotations

import json

from ttabench.divisions import metrics, scoring
from ttabench.launch.commands.inputs import check_target_budget, note_skipped, thresholds_flag, use_recorded
from ttabench.launch.record.tables import Column, Table, metrics_table, seconds, show
from ttabench.launch.usage import add_command, json_flag


def _cmd_metrics(args) -> int:
    if args.thresholds:
        metrics.parse_thresholds(args.thresholds)
    check_target_budget(args)
    skipped: list[dict] = []
    runs = scoring.load_inputs(args.inputs, skipped)
    note_skipped(skipped)
    used = use_recorded(runs, args)
    spec = metrics.parse_thresholds(args.thresholds) if args.thresholds else None
    if len(runs) == 1:
        m = metrics.summarize(runs[0].points, spec, target=args.target, budget_s=args.budget)
        if args.json:
            print(json.dumps(m, indent=2))
            return 0
        # The path on a line of its own: as a table title it was folded to the table's width.
        print(f"run: {runs[0].name}")
        if used:
            print(f"recorded with the run: {used}")
        show(metrics_table(dict(m, target=args.target, budget_s=args.budget)))
        return 0
    out = scoring.across_runs(runs, spec, args.target, args.budget)
    out["skipped"] = skipped
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if used:
        print(f"recorded with the runs: {used}")
    show(_runs_table(out, args))
    if any(v is not None for v in out["stats"].values()):
        show(_stats_table(out))
    for e in out["excluded"]:
        print(f"excluded from {e['metric'].upper()}: {e['name']}: {e['reason']}")
    return 0


def _runs_table(out: dict, args) -> Table:
    """One row per run: status, seed, and the metrics asked for."""
    cols = [
        Column("run", "name", left=True),
        Column("status", show=lambda r: r["status"] or "-", left=True),
        Column("seed", left=True),
    ]
    if args.target is not None:
        cols.append(Column(f"TTA @ {100 * args.target:g}%", "tta", lambda r: seconds(r["tta"])))
    if args.thresholds:
        cols.append(
            Column(f"ATTMT {args.thresholds}", "attmt", lambda r: seconds(r["attmt"], none="undefined"))
        )
    if args.budget is not None:
        cols.append(
            Column(
                f"AAT @ {args.budget:g} s",
                "aat",
                lambda r: "no evaluation" if r.get("aat") is None else f"{100 * r['aat']:.2f}%",
            )
        )
    return Table(cols, out["runs"], title=f"{len(out['runs'])} runs")


STATISTICS = (  # (row label, display of one metric's statistics)
    ("runs used", lambda v: str(v["n"])),
    ("mean", lambda v: seconds(v["mean"], "-", "{:.3f}")),
    ("olympic mean", lambda v: seconds(v["olympic_mean"], "n < 3", "{:.3f}")),
    ("variance", lambda v: seconds(v["variance"], "n < 2", "{:.4g}")),
    ("std", lambda v: seconds(v["std"], "n < 2", "{:.4g}")),
    ("cv", lambda v: seconds(v["cv"], "-", "{:.2%}")),
    (
        "95% CI of the mean",
        lambda v: "n < 2" if v["ci95"] is None else f"{v['ci95'][0]:.3f} .. {v['ci95'][1]:.3f}",
    ),
)


def _stats_table(out: dict) -> Table:
    """One row per statistic, one column per metric (TTA, ATTMT) that was asked for."""
    shown = [(k, v) for k, v in out["stats"].items() if v is not None]
    cols = [Column("statistic", left=True)]
    cols += [Column("TTA (s)" if k == "tta" else "ATTMT (s)", k) for k, _ in shown]
    rows = [{"statistic": label, **{k: fn(v) for k, v in shown}} for label, fn in STATISTICS]
    b = out["bootstrap"]
    note = (
        f"CI: percentile bootstrap, {b['resamples']} resamples, seed {b['seed']}; "
        "olympic mean drops one min and one max (needs 3 runs)"
    )
    return Table(cols, rows, title="across runs (excluded runs left out)", notes=[note])


def add_commands(sub) -> None:
    m = add_command(
        sub,
        "metrics",
        _cmd_metrics,
        help="TTA / AAT / TTMT / ATTMT of curves or run folders, with statistics across several runs",
        description="Metrics of one run; with several runs (inputs, or folders of "
        "runs) also the mean, olympic mean, variance, std, cv and 95% "
        "bootstrap CI of TTA at --target and of ATTMT. Runs that did not "
        "reach a value are listed and excluded, never counted as zero.",
    )
    m.add_argument(
        "inputs", nargs="+", metavar="RUN_OR_CURVE", help="run folder, curve.csv, or a folder of run folders"
    )
    thresholds_flag(m, "thresholds for TTMT/ATTMT")
    m.add_argument(
        "--target", type=float, help="TTA at this accuracy, a fraction (default: the runs' recorded target)"
    )
    m.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="AAT at this training time (default: the runs' recorded budget)",
    )
    json_flag(m)
