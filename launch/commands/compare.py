"""`ttabench compare A B`: TTA and ATTMT of two systems (runs, curves or folders of runs),
threshold by threshold, and their ratios B / A."""

from __future__ import annotations

import json

from ttabench import UserError
from ttabench.divisions import algorithms, scoring
from ttabench.launch.commands.inputs import note_skipped, spec_from_runs, thresholds_flag
from ttabench.launch.record.tables import Column, Table, seconds, show
from ttabench.launch.usage import add_command, json_flag

AVERAGING = (
    "TTA(T) of a group of runs is the mean of the runs' TTA(T), defined only when every "
    "run reached T; ATTMT(LOW..T) of a group is the mean of the runs' ATTMT(LOW..T), "
    "under the same condition; ratio = B / A"
)


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.3f}"


COLUMNS = (
    Column("T", "threshold", lambda r: f"{100 * r['threshold']:g}%"),
    Column("TTA A", "tta_a", lambda r: seconds(r["tta_a"])),
    Column("TTA B", "tta_b", lambda r: seconds(r["tta_b"])),
    Column("B/A", "tta_ratio", lambda r: _ratio(r["tta_ratio"])),
    Column("ATTMT A", "attmt_a", lambda r: seconds(r["attmt_a"], none="undefined")),
    Column("ATTMT B", "attmt_b", lambda r: seconds(r["attmt_b"], none="undefined")),
    Column("B/A", "attmt_ratio", lambda r: _ratio(r["attmt_ratio"])),
)


def _algorithm(name: str, runs: list) -> str:
    """The one algorithm (with its parameters) of a side's runs: a side mixing several is refused."""
    found = sorted(
        {
            algorithms.run_label(r.summary, r.config) if r.summary or r.config else "not recorded (a curve)"
            for r in runs
        }
    )
    if len(found) > 1:
        raise UserError(
            f"{name} holds runs of several algorithms ({'; '.join(found)}): compare one algorithm per side"
        )
    return found[0] if found else algorithms.DEFAULT


def _cmd_compare(args) -> int:
    skipped_a: list[dict] = []
    skipped_b: list[dict] = []
    a, b = scoring.load_inputs([args.a], skipped_a), scoring.load_inputs([args.b], skipped_b)
    note_skipped(skipped_a + skipped_b)
    alg_a, alg_b = _algorithm(args.a, a), _algorithm(args.b, b)
    spec, spec_str = spec_from_runs(a + b, args.thresholds, "compare")
    rows = scoring.compare_rows([r.points for r in a], [r.points for r in b], spec)
    if args.json:
        out = {
            "a": {"name": args.a, "algorithm": alg_a, "runs": [r.name for r in a], "skipped": skipped_a},
            "b": {"name": args.b, "algorithm": alg_b, "runs": [r.name for r in b], "skipped": skipped_b},
            "thresholds": spec_str,
            "averaging": AVERAGING,
            "rows": rows,
        }
        print(json.dumps(out, indent=2))
        return 0

    def label(name, runs, algorithm):
        return (f"{name} ({len(runs)} runs)" if len(runs) > 1 else name) + f", algorithm {algorithm}"

    print(f"A = {label(args.a, a, alg_a)}\nB = {label(args.b, b, alg_b)}")
    notes = [f"averaging: {AVERAGING}"] if len(a) > 1 or len(b) > 1 else []
    show(Table(COLUMNS, rows, title=f"TTA and ATTMT({100 * spec[0]:g}%..T), B / A", notes=notes))
    return 0


def add_commands(sub) -> None:
    c = add_command(
        sub,
        "compare",
        _cmd_compare,
        help="TTA and ATTMT of two systems, threshold by threshold",
        description="Per threshold T: TTA(T) and ATTMT(LOW..T) of A and B and their "
        "ratios B/A. A and B are runs, curves or folders of runs; "
        f"{AVERAGING}.",
    )
    c.add_argument("a", metavar="A", help="run folder, curve.csv, or folder of runs")
    c.add_argument("b", metavar="B", help="run folder, curve.csv, or folder of runs")
    thresholds_flag(c, "thresholds")
    json_flag(c)
