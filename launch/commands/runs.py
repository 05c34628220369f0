"""`ttabench runs [DIR]`: the runs below a results folder, newest first.

    ttabench runs                      # ./ttabench-results, where `ttabench run` writes by default
    ttabench runs results --json       # the repository's committed reference runs, as JSON
    ttabench runs R --watch            # again as it changes, until every run and job below R has finished

One line per run folder: its id, when it started, system, benchmark, division,
status, Slurm job id, workers, network, final accuracy, and TTA / ATTMT at the
run's own recorded target and thresholds (recomputed from curve.csv, as `report`
does); and, when some run trained with another algorithm than allreduce, its
algorithm (with its parameters) after the network. A submitted job's folder that
holds no run yet is listed too, with its status from Slurm: pending, starting,
cancelled before training, failed before training (`submitted` where squeue is
not there to ask); a run whose job ended while its summary still says running is
`ended while running (STATE)`.
A pure reader: no torch. A run whose files cannot be read is listed with the
reason instead of ending the listing.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time

from ttabench import UserError
from ttabench.divisions import experiments, metrics, scoring
from ttabench.divisions.results import ACTIVE_STATES, find_job_only_dirs, find_run_dirs, number
from ttabench.launch.cluster import slurm
from ttabench.launch.config import DEFAULT_RESULTS_DIR
from ttabench.launch.record.tables import Column, Table, seconds, show
from ttabench.launch.usage import add_command

_RUN_ID_TIME = re.compile(r"^(\d{8}-\d{6})")


def started_at(run_dir: str) -> float:
    """When the run started (seconds since the epoch): mllog's first event, else the time in
    the run id (YYYYMMDD-HHMMSS-xxxxxx, local time of the machine), else the folder's mtime."""
    try:
        with open(os.path.join(run_dir, "mllog.txt"), encoding="utf-8") as f:
            first = f.readline()
        t = number(json.loads(first.split(":::MLLOG", 1)[1]).get("time_ms"))
        if t is not None:
            return t / 1000.0
    except (OSError, ValueError, IndexError, AttributeError, UnicodeDecodeError):
        pass
    m = _RUN_ID_TIME.match(os.path.basename(os.path.normpath(run_dir)))
    if m:
        try:
            return time.mktime(time.strptime(m.group(1), "%Y%m%d-%H%M%S"))
        except ValueError:
            pass
    return os.path.getmtime(run_dir)


def run_entry(run_dir: str) -> dict:
    """One run as the listing shows it (every value JSON-serialisable)."""
    entry = {
        "id": os.path.basename(os.path.normpath(run_dir)),
        "path": run_dir,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started_at(run_dir))),
    }
    try:
        run = scoring.load_run(run_dir)
    except UserError as e:
        return dict(entry, status="unreadable", error=str(e))
    d = experiments.describe_run(run)
    spec, _ = run.recorded("threshold_spec")
    target, _ = run.recorded("target")
    m = metrics.summarize(run.points, metrics.parse_thresholds(spec) if spec else None, target=target)
    entry.update(d)
    entry.update(
        {
            "status": run.status or "unknown",
            "seed": run.seed,
            "final_accuracy": run.points[-1][1] if run.points else None,
            "target": target,
            "tta_s": m.get("target_tta_s"),
            "threshold_spec": spec,
            "attmt_s": m.get("attmt_s"),
        }
    )
    return entry


def list_runs(root: str) -> list[dict]:
    """Every run below `root` (or `root` itself when it is a run folder), newest first."""
    if root == DEFAULT_RESULTS_DIR and not os.path.exists(root):
        return []  # nothing run here yet: an empty list, not an error
    if not os.path.isdir(root):
        raise UserError(f"not a folder: {root}")
    runs, waiting = find_run_dirs(root), find_job_only_dirs(root)
    states = slurm.folder_states(runs + waiting)
    entries = [dict(run_entry(p), job_id=slurm.folder_job_id(p)) for p in runs]
    entries += [job_entry(p, states.get(p)) for p in waiting]
    for e in entries:
        if e["path"] in states:
            e["job_state"] = state = states[e["path"]]
            if e["status"] == "running" and state not in ACTIVE_STATES:
                # The job ended and nothing recorded a final status (node lost, launcher killed).
                e["status"] = "ended while running" + ("" if state == "ENDED" else f" ({state})")
    return sorted(entries, key=lambda e: (e["started"], e["path"]), reverse=True)


def job_entry(job_dir: str, state: str | None) -> dict:
    """A submitted job's folder that holds no run yet: its status from Slurm's state
    (pending, starting, cancelled / failed before training), `submitted` where Slurm is not
    there to ask."""
    if state in ACTIVE_STATES:
        status = "pending" if state == "PENDING" else "starting"
    elif state is None:
        status = "submitted"
    else:
        ended = {"CANCELLED": "cancelled", "ENDED": "ended"}.get(state, "failed")  # ENDED: Slurm forgot it
        status = f"{ended} before training"
    return {
        "id": os.path.basename(os.path.normpath(job_dir)),
        "path": job_dir,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started_at(job_dir))),
        "status": status,
        "job_id": slurm.folder_job_id(job_dir),
    }


def _tta(e: dict) -> str:
    if e.get("target") is None:
        return "-" if e["status"] == "unreadable" or "tta_s" not in e else "no target"
    return f"{100 * e['target']:g}%: " + seconds(e["tta_s"])


def _final(e: dict) -> str:
    if e["status"] == "unreadable":
        return "-"
    v = e.get("final_accuracy")
    return "not evaluated" if v is None else f"{100 * v:.2f}%"


COLUMNS = (
    Column("run", "id", left=True),
    Column("started (UTC)", "started", left=True),
    Column("system", left=True),
    Column("benchmark", left=True),
    Column("division", left=True),
    Column("status", left=True),
    Column("job", "job_id", lambda e: e.get("job_id") or "-", left=True),
    Column("workers"),
    Column("network", left=True),
    Column("final acc.", "final_accuracy", lambda e: _final(e)),
    Column("TTA @ target", "tta_s", _tta),
    Column(
        "ATTMT",
        "attmt_s",
        lambda e: "-" if e.get("threshold_spec") is None else seconds(e["attmt_s"], "undefined"),
    ),
)


ALGORITHM = Column("algorithm", left=True)  # shown after "network" when a run is not allreduce


def columns_for(entries: list[dict]) -> tuple[Column, ...]:
    """The table's columns: with the algorithm's when some run trained with another than allreduce."""
    if all(e.get("algorithm") in (None, "allreduce") for e in entries):
        return COLUMNS
    at = [c.header for c in COLUMNS].index("network") + 1
    return COLUMNS[:at] + (ALGORITHM,) + COLUMNS[at:]


UNFINISHED = ("pending", "starting", "submitted", "running")
# A summary caught while it is written reads as unreadable: looked at again, not taken for an end.
# One unreadable this many looks in a row, with nothing else left to wait for, ends the watch (1).
UNREADABLE_LOOKS = 5


def _table(entries: list[dict], results_dir: str, title: str = "") -> Table:
    notes = [f"{e['id']}: {e['error']}" for e in entries if e["status"] == "unreadable"]
    title = title or f"{len(entries)} runs in {results_dir}, newest first"
    return Table(columns_for(entries), entries, title=title, notes=notes)


def watch(results_dir: str, interval_s: float, max_wait_s: float, out=print) -> int:
    """The listing again whenever it changes, until no listed run or job is unfinished or
    unreadable (0), or `max_wait_s` has passed or only unreadable runs stayed so (1)."""
    deadline = time.monotonic() + max_wait_s
    shown = None
    unreadable_looks = 0
    while True:
        entries = list_runs(results_dir)
        waiting = [e for e in entries if e["status"] in UNFINISHED + ("unreadable",)]
        unreadable = [e for e in waiting if e["status"] == "unreadable"]
        unreadable_looks = unreadable_looks + 1 if unreadable and len(unreadable) == len(waiting) else 0
        view = [(e["path"], e["status"], e.get("final_accuracy"), e.get("job_state")) for e in entries]
        if view != shown:
            at = time.strftime("%H:%M:%S")
            show(_table(entries, results_dir, f"{len(entries)} runs in {results_dir}, newest first, at {at}"))
            counts = {s: sum(e["status"] == s for e in waiting) for s in UNFINISHED + ("unreadable",)}
            if waiting:
                out(
                    f"waiting for {len(waiting)}: "
                    + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                    + f" (every {interval_s:g} s, at most {max_wait_s:g} s; Ctrl-C stops watching)",
                )
            shown = view
        if not waiting:
            out(f"every listed run has finished ({len(entries)})")
            return 0
        if unreadable_looks >= UNREADABLE_LOOKS:
            out(f"stopped watching: {len(unreadable)} unreadable at {UNREADABLE_LOOKS} looks in a row")
            return 1
        left = deadline - time.monotonic()
        if left <= 0:
            out(f"stopped watching after {max_wait_s:g} s: {len(waiting)} still unfinished")
            return 1
        time.sleep(min(interval_s, left))


def _cmd_runs(args) -> int:
    if args.watch:
        if args.json:
            raise UserError("--watch shows the table as it changes; --json prints the listing once")
        for flag, value in (("--interval", args.interval), ("--max-wait", args.max_wait)):
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"{flag} must be a finite number of seconds > 0, got {value:g}")
        if not os.path.isdir(args.results_dir):
            raise UserError(f"not a folder: {args.results_dir}")
        try:
            return watch(
                args.results_dir, args.interval, args.max_wait, out=lambda line: print(line, flush=True)
            )
        except KeyboardInterrupt:
            print("ttabench: stopped watching (the runs and their jobs go on)", file=sys.stderr)
            return 130
    entries = list_runs(args.results_dir)
    if args.json:
        print(json.dumps({"results_dir": args.results_dir, "runs": entries}, indent=2))
        return 0
    if not entries and args.results_dir == DEFAULT_RESULTS_DIR:
        print(
            f"no runs in {DEFAULT_RESULTS_DIR} yet (`ttabench run` writes there; "
            "`ttabench runs results` lists the reference runs of a repository checkout)"
        )
        return 0
    if not entries:
        print(f"no run folders below {args.results_dir}")
        return 0
    show(_table(entries, args.results_dir))
    return 0


def add_commands(sub) -> None:
    r = add_command(
        sub,
        "runs",
        _cmd_runs,
        help="list the runs of a results folder, newest first",
        description="One line per run below RESULTS_DIR, newest first: id, start time, system, "
        "benchmark, division, status, workers, network (and the algorithm when a run is not "
        "allreduce), final accuracy, and TTA / ATTMT at the run's own recorded target and "
        "thresholds (recomputed from curve.csv).",
    )
    r.add_argument(
        "results_dir",
        nargs="?",
        default=DEFAULT_RESULTS_DIR,
        metavar="RESULTS_DIR",
        help=f"a results folder or one run folder (default: {DEFAULT_RESULTS_DIR}, where `ttabench run` writes)",
    )
    r.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    r.add_argument(
        "--watch",
        action="store_true",
        help="show the listing again whenever it changes, until no listed run or job is pending, "
        "starting, running or unreadable (exit 0), or --max-wait has passed or only unreadable runs "
        "stayed so (exit 1); Ctrl-C stops watching",
    )
    r.add_argument(
        "--interval",
        type=float,
        default=10.0,
        metavar="S",
        help="--watch: look every S seconds (default 10; finite, > 0)",
    )
    r.add_argument(
        "--max-wait",
        type=float,
        default=86400.0,
        metavar="S",
        help="--watch: stop watching after S seconds (default 86400, a day; finite, > 0); a local run "
        "killed without recording its end stays running until then",
    )
