"""Commands that read results folders: metrics (and, as they land, compare, report,
plot, validate). They need no torch, no GPU and no process group."""

from __future__ import annotations

import json

from ttabench import UserError


def _cmd_metrics(args) -> int:
    from ttabench.divisions import metrics
    from ttabench.divisions.submission import curve_points, read_curve

    spec = metrics.parse_thresholds(args.thresholds) if args.thresholds else None
    if args.target is not None and not 0 < args.target <= 1:
        raise UserError(f"--target is a fraction in (0, 1], got {args.target}")
    if args.budget is not None and args.budget < 0:
        raise UserError(f"--budget must be >= 0 seconds, got {args.budget}")
    results = []
    for path in args.inputs:
        points = curve_points(read_curve(path))
        results.append((path, metrics.summarize(points, spec, target=args.target,
                                                 budget_s=args.budget)))
    if args.json:
        out = results[0][1] if len(results) == 1 else {"runs": [
            dict(name=p, **m) for p, m in results]}
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console

    from ttabench.launch.render import metrics_table

    console = Console()
    for path, m in results:
        m = dict(m, target=args.target, budget_s=args.budget)
        console.print(metrics_table(m, title=path))
    return 0


def add_commands(sub) -> None:
    m = sub.add_parser("metrics", help="TTA / AAT / TTMT / ATTMT of curves or run folders")
    m.add_argument("inputs", nargs="+", metavar="RUN_OR_CURVE", help="run folder or curve.csv")
    m.add_argument("--thresholds", metavar="LOW:HIGH:STEP", help="thresholds for TTMT/ATTMT")
    m.add_argument("--target", type=float, help="TTA at this accuracy (fraction)")
    m.add_argument("--budget", type=float, metavar="SECONDS", help="AAT at this training time")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=_cmd_metrics)
