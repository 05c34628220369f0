"""`ttabench sweep`: a scaling grid of workers x network, one real `ttabench run` per point.

    ttabench sweep --benchmark resnet20 --workers 1,2 --network 10gbe,1gbe,100mbit \\
        --out sweeps/resnet20 -- --data-dir DIR --max-epochs 1 --thresholds 0.15:0.25:0.05

Each point runs as its own `ttabench run` subprocess (flags after ``--`` go to
every point unchanged) into ``OUT/runs/w{workers}-{network}/``, with its
output in ``OUT/logs/``. Afterwards the table is computed from the points'
summary.json files alone and written as ``OUT/sweep.md`` (printed too),
``OUT/sweep.csv`` and ``OUT/sweep.json``. A failed point is a row marked
failed; the sweep goes on and exits 1 at the end.

Columns: img/s over the training time (evaluation excluded); time per epoch
(training time / epochs trained); communication share (the exposed gradient-
communication wait over the training time, max over ranks); the delay the
emulated link added (max over ranks); speedup (img/s over the 1-worker
point's on the same network) and efficiency (speedup / workers); TTA at
``--target`` and ATTMT over ``--thresholds`` where reached ("not reached" and
"undefined" in the table otherwise, as in every command; empty cells in sweep.csv).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass

from ttabench import UserError
from ttabench.divisions.results import RunPath, atomic_write_json, atomic_write_text, read_json
from ttabench.launch import procs
from ttabench.launch.config import BACKENDS
from ttabench.launch.flags import RunArgs, add_passed_run_flags, parse_run_args
from ttabench.launch.net.link import PROFILES
from ttabench.launch.record.tables import Column, Table, show, to_csv, to_markdown
from ttabench.reference_impls.recipe import BENCHMARKS

# Flags the sweep sets for each point itself.
CONTROLLED = (
    "--benchmark",
    "--workers",
    "--network",
    "--bandwidth",
    "--latency",
    "--backend",
    "--results-dir",
    "--run-dir",
)

COLUMNS = [  # (key, table header)
    ("workers", "workers"),
    ("network", "network"),
    ("status", "status"),
    ("img_s", "img/s"),
    ("time_per_epoch_s", "time/epoch (s)"),
    ("comm_share", "comm share"),
    ("network_delay_s", "net delay added (s)"),
    ("speedup", "speedup"),
    ("efficiency", "efficiency"),
    ("tta_target_s", "TTA@target (s)"),
    ("attmt_s", "ATTMT (s)"),
]
LEFT = ("network", "status")
CSV_COLUMNS = [
    "workers",
    "network",
    "backend",
    "status",
    "img_s",
    "time_per_epoch_s",
    "comm_share",
    "comm_wait_s",
    "network_delay_s",
    "train_time_s",
    "epochs",
    "steps",
    "speedup",
    "efficiency",
    "tta_target_s",
    "attmt_s",
    "final_accuracy",
    "run_dir",
    "error",
]
# The words for a metric without a value, as everywhere: a TTA is "not reached", an ATTMT
# (defined only when every threshold was reached) "undefined". CSV cells stay empty.
NOT_REACHED = "not reached"
UNDEFINED = "undefined"


@dataclass(frozen=True)
class Point:
    workers: int
    network: str

    @property
    def name(self) -> str:
        return f"w{self.workers}-{self.network}"


def parse_grid(workers: str, networks: str) -> list[Point]:
    try:
        ws = [int(w) for w in workers.split(",") if w.strip()]
    except ValueError:
        raise UserError(f"--workers takes comma-separated integers, got {workers!r}") from None
    if not ws or any(w < 1 for w in ws):
        raise UserError(f"--workers needs integers >= 1, got {workers!r}")
    nets = [n.strip() for n in networks.split(",") if n.strip()]
    if not nets:
        raise UserError("--network needs at least one profile")
    for n in nets:
        if n not in PROFILES:
            raise UserError(f"unknown network profile {n!r} (one of {', '.join(PROFILES)})")
    return [Point(w, n) for n in dict.fromkeys(nets) for w in dict.fromkeys(ws)]


def check_run_args(run_args: list[str], points: list[Point], benchmark: str, backend: str) -> RunArgs:
    """Reject flags the sweep owns, and check every point's flags as `ttabench run` would."""
    for pt in points:
        parsed = parse_run_args(
            run_args,
            owner="the sweep",
            unit="point",
            controlled=CONTROLLED,
            fixed=point_args(pt, benchmark, backend, "x"),
        )
    return parsed


def point_args(pt: Point, benchmark: str, backend: str, results_dir: str) -> list[str]:
    return [
        "--benchmark",
        benchmark,
        "--workers",
        str(pt.workers),
        "--network",
        pt.network,
        "--backend",
        backend,
        "--results-dir",
        results_dir,
    ]


# -- the table: pure functions of the points' records --------------------------------


def point_row(pt: Point, summary: dict | None, error: str | None = None, run_dir: str | None = None) -> dict:
    """One table row from a point's summary.json (None when the run left none)."""
    row = {k: None for k in CSV_COLUMNS}
    row.update(workers=pt.workers, network=pt.network, run_dir=run_dir, error=error)
    if summary is None:
        row["status"] = "failed"
        return row
    status = summary.get("status", "failed")
    row.update(
        status=status if not (error and status == "success") else "failed",
        backend=summary.get("backend"),
        steps=summary.get("steps"),
        epochs=summary.get("epochs"),
        train_time_s=summary.get("train_time_s"),
        img_s=summary.get("throughput_img_s"),
    )
    if status != "success" and not row["error"]:
        row["error"] = summary.get("error")
    t = row["train_time_s"]
    if t and row["epochs"]:
        row["time_per_epoch_s"] = t / row["epochs"]
    worst = (summary.get("time_breakdown") or {}).get("max_over_ranks") or {}
    row["comm_wait_s"] = worst.get("comm_wait_s")
    row["network_delay_s"] = worst.get("network_delay_s")
    if t and row["comm_wait_s"] is not None:
        row["comm_share"] = row["comm_wait_s"] / t
    m = summary.get("metrics") or {}
    row["target"] = m.get("target")  # which of the two metrics was asked for (not a CSV column)
    row["thresholds"] = "thresholds" in m
    if m.get("target") is not None:
        row["tta_target_s"] = m.get("target_tta_s")
    if "thresholds" in m:
        row["attmt_s"] = m.get("attmt_s")
    row["final_accuracy"] = m.get("final_accuracy")
    return row


def add_speedups(rows: list[dict]) -> list[dict]:
    """Speedup: img/s over that of the successful 1-worker row of the same network;
    efficiency = speedup / workers."""
    base = {
        r["network"]: r["img_s"]
        for r in rows
        if r["workers"] == 1 and r["status"] == "success" and r["img_s"]
    }
    for r in rows:
        b = base.get(r["network"])
        if r["status"] == "success" and r["img_s"] and b:
            r["speedup"] = r["img_s"] / b
            r["efficiency"] = r["speedup"] / r["workers"]
    return rows


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if key == "img_s":
        return f"{v:,.1f}"
    if key == "comm_share":
        return f"{100 * v:.1f}%"
    if key in ("speedup", "efficiency"):
        return f"{v:.2f}"
    if key.endswith("_s"):
        return f"{v:.2f}"
    return str(v)


def _cell(key: str, row: dict) -> str:
    if row.get(key) is None and row.get("status") == "success":
        if key == "tta_target_s" and row.get("target") is not None:
            return NOT_REACHED
        if key == "attmt_s" and row.get("thresholds"):
            return UNDEFINED
    return _fmt(key, row.get(key))


def sweep_table(rows: list[dict]) -> Table:
    return Table([Column(h, k, lambda r, k=k: _cell(k, r), left=k in LEFT) for k, h in COLUMNS], rows)


def markdown_table(rows: list[dict]) -> str:
    return to_markdown(sweep_table(rows))


def notes(rows: list[dict], summaries: list[dict | None]) -> list[str]:
    out = [
        "img/s: training images per second over the training time (evaluation excluded); "
        "time/epoch = training time / epochs trained.",
        "comm share: exposed gradient-communication wait / training time, max over ranks; "
        "net delay added: time the emulated link added to collectives (max over ranks).",
        "speedup: img/s / img/s of the 1-worker point on the same network; efficiency = speedup / workers.",
        "With 1 worker no link is crossed, so the network setting changes nothing: "
        "1-worker rows of different networks differ by measurement noise only.",
    ]
    s = next((s for s in summaries if s), None)
    if s:
        m = s.get("metrics") or {}
        if m.get("target") is not None:
            out.append(f"TTA@target: training time to {100 * m['target']:g}% test accuracy.")
        else:
            out.append("TTA@target: '-' (no --target given).")
        if "thresholds" in m:
            out.append(
                f"ATTMT: mean time to the thresholds {m.get('threshold_spec')} "
                "(defined only when every threshold was reached)."
            )
        if s.get("synthetic"):
            out.append("Data: the built-in synthetic data set (a demo, never a closed-division result).")
        elif s.get("dataset") == "cifar10-subset":
            out.append("Data: a CIFAR-10 subset (real images, not the full benchmark).")
    failed = [r for r in rows if r["status"] != "success"]
    for r in failed:
        out.append(
            f"w{r['workers']}-{r['network']}: {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
        )
    return out


def write_outputs(out_dir: str, rows: list[dict], summaries: list[dict | None], command: list[str]) -> str:
    table = markdown_table(rows)
    md = ["# Scaling sweep", "", "Command:", "", "    " + shlex.join(command), "", table, ""]
    md += [f"- {n}" for n in notes(rows, summaries)]
    atomic_write_text(os.path.join(out_dir, "sweep.md"), "\n".join(md) + "\n")
    csv_table = Table([Column(k) for k in CSV_COLUMNS], rows)
    atomic_write_text(os.path.join(out_dir, "sweep.csv"), to_csv(csv_table))
    atomic_write_json(os.path.join(out_dir, "sweep.json"), {"command": command, "rows": rows})
    return table


# -- running the grid ------------------------------------------------------------------


def _run_dirs(root: str) -> set[str]:
    """The run folders below `root` that hold a summary.json."""
    if not os.path.isdir(root):
        return set()
    return {d for d in RunPath.find(root) if os.path.isfile(os.path.join(d, "summary.json"))}


def run_point(
    pt: Point, out_dir: str, benchmark: str, backend: str, run: RunArgs, timeout: float | None = None
) -> tuple[dict | None, str | None, str | None]:
    """Run one point; returns (summary, error, run folder relative to out_dir)."""
    root = os.path.join(out_dir, "runs", pt.name)
    before = _run_dirs(root)
    log_path = os.path.join(out_dir, "logs", pt.name + ".log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    cmd = [sys.executable, "-m", "ttabench", "run", *point_args(pt, benchmark, backend, root), *run.argv]
    if "progress" not in run.given:
        cmd += ["--progress", "plain"]
    error = None
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(["ttabench", *cmd[3:]]) + "\n")  # no interpreter path
        log.flush()
        _, result = procs.run(cmd, stdout=log, timeout=timeout)
    if result.interrupted:
        raise KeyboardInterrupt  # the point was stopped with the sweep: stop the sweep
    if result.timed_out:
        error = f"timed out after {timeout:g} s"
    elif result.code != 0:
        error = f"exit code {result.code}: {_last_error(log_path)}"
    new = sorted(_run_dirs(root) - before, key=os.path.getmtime)
    if not new:
        return None, error or "no results folder written", None
    summary = read_json(os.path.join(new[-1], "summary.json"))
    return summary, error, os.path.relpath(new[-1], out_dir)


def _last_error(log_path: str) -> str:
    with open(log_path, encoding="utf-8", errors="replace") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    errs = [ln for ln in lines if "error" in ln.lower()]
    return (errs or lines or ["(no output)"])[-1][:200]


def sweep(
    points: list[Point],
    out_dir: str,
    benchmark: str,
    backend: str,
    run: RunArgs,
    command: list[str],
    timeout: float | None = None,
    echo=print,
) -> tuple[list[dict], str]:
    rows, summaries = [], []
    try:
        for k, pt in enumerate(points, 1):
            echo(
                f"[{k}/{len(points)}] {pt.name}: running (log: "
                f"{os.path.join(out_dir, 'logs', pt.name + '.log')})"
            )
            t0 = time.perf_counter()
            summary, error, run_dir = run_point(pt, out_dir, benchmark, backend, run, timeout)
            row = point_row(pt, summary, error, run_dir)
            rows.append(row)
            summaries.append(summary)
            echo(
                f"[{k}/{len(points)}] {pt.name}: {row['status']}"
                + (f", {row['img_s']:,.1f} img/s" if row["img_s"] else "")
                + (f" ({row['error']})" if row["status"] != "success" and row["error"] else "")
                + f" [{time.perf_counter() - t0:.0f} s]"
            )
    finally:
        add_speedups(rows)
        table = write_outputs(out_dir, rows, summaries, command)
    return rows, table


def _cmd_sweep(args) -> int:
    points = parse_grid(args.workers, args.network)
    run = check_run_args(args.run_args, points, args.benchmark, args.backend)
    os.makedirs(args.out, exist_ok=True)
    command = (
        ["ttabench"] + sys.argv[sys.argv.index("sweep") :] if "sweep" in sys.argv else ["ttabench", "sweep"]
    )
    rows, _ = sweep(points, args.out, args.benchmark, args.backend, run, command, timeout=args.point_timeout)
    show(sweep_table(rows))
    print(f"written: {os.path.join(args.out, 'sweep.md')}, {os.path.join(args.out, 'sweep.csv')}")
    failed = [r for r in rows if r["status"] != "success"]
    if failed:
        print(
            f"ttabench: sweep: {len(failed)} of {len(rows)} points failed: "
            + ", ".join(f"w{r['workers']}-{r['network']}" for r in failed),
            file=sys.stderr,
        )
        return 1
    return 0


def add_commands(sub) -> None:
    s = sub.add_parser(
        "sweep",
        help="scaling grid: workers x network, one run per point, then a markdown/CSV table",
        description="Run `ttabench run` for every workers x network point and "
        "tabulate img/s, time per epoch, communication share, speedup, "
        "efficiency, TTA and ATTMT. Flags after -- go to every run.",
    )
    s.add_argument("--benchmark", default="resnet20", choices=tuple(BENCHMARKS))
    s.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    s.add_argument(
        "--network",
        default="loopback,1gbe,100mbit",
        help="comma-separated emulated network profiles (default loopback,1gbe,100mbit)",
    )
    s.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="backend of every point (auto: none for 1 worker, torchrun otherwise)",
    )
    s.add_argument("--out", required=True, help="sweep folder: runs/, logs/, sweep.md, sweep.csv")
    s.add_argument(
        "--point-timeout", type=float, metavar="SECONDS", help="fail a point that runs longer than this"
    )
    add_passed_run_flags(s, "flags of `ttabench run` given to every point")
    s.set_defaults(func=_cmd_sweep)
