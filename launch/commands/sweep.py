"""`ttabench sweep`: a scaling grid of workers x network, one real `ttabench run` per point.

    ttabench sweep --benchmark resnet20 --workers 1,2 --network 10gbe,1gbe,100mbit \\
        --out sweeps/resnet20 -- --data-dir DIR --max-epochs 1 --thresholds 0.15:0.25:0.05

Each point runs as its own `ttabench run` subprocess (flags after ``--`` go to
every point unchanged) into ``OUT/runs/w{workers}-{network}/``, with its
output in ``OUT/logs/``. Afterwards the table is computed from the points'
summary.json files alone and written as ``OUT/sweep.md`` (printed too),
``OUT/sweep.csv`` and ``OUT/sweep.json``. A failed point is a row marked
failed; the sweep goes on and exits 1 at the end. The table and its columns
are launch/commands/sweep_table.py's.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

from ttabench import UserError
from ttabench.divisions.results import RunPath, read_json
from ttabench.launch import procs
from ttabench.launch.commands.sweep_table import Point, add_speedups, point_row, sweep_table, write_outputs
from ttabench.launch.config import BACKENDS
from ttabench.launch.flags import RunArgs, add_passed_run_flags, parse_run_args
from ttabench.launch.net.link import PROFILES
from ttabench.launch.record.tables import show
from ttabench.launch.usage import add_command, comma_list
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


def parse_grid(workers: str, networks: str) -> list[Point]:
    try:
        ws = [int(w) for w in comma_list(workers)]
    except ValueError:
        raise UserError(f"--workers takes comma-separated integers, got {workers!r}") from None
    if not ws or any(w < 1 for w in ws):
        raise UserError(f"--workers needs integers >= 1, got {workers!r}")
    nets = comma_list(networks)
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
    s = add_command(
        sub,
        "sweep",
        _cmd_sweep,
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
