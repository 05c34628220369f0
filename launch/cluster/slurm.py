"""Slurm: the sbatch script of a run, its submission, and waiting for it.

The job is N ordinary `ttabench run` launchers, one per node, started by one
`srun`; they meet in a c10d rendezvous on the allocation's first node, at the
address Slurm knows that node by (its NodeAddr). Each launcher picks the
network interface on the route to it (launch/net/iface.py). The run folder is
made before submission and handed to every node with --run-dir, so rank 0
writes into it and every node's launcher can record how its workers ended.

Cancellation: `scancel` sends SIGTERM to every process of the job, then
SIGKILL after the cluster's KillWait; the workers stop at the next step
together and rank 0 records the run as `interrupted` before that. With
--time, the script asks Slurm (--signal=USR1@MARGIN) to send SIGUSR1 to the
job's processes before the limit: the workers stop the same way and record
`time_limit`, and the job exits 124 (Slurm shows it FAILED, ExitCode 124:0).
Left to the limit itself, srun would receive SIGTERM and SIGKILL its tasks at
once, before they could record anything. `--time 0` is Slurm's "no limit".

Requeue: the script says `--no-requeue`; a node failure or a preemption ends
the job (NODE_FAIL, PREEMPTED) instead of starting the run again over its own
folder, and `scontrol requeue` is refused. The log is appended to, never
replaced (--open-mode=append), in a folder made at submission
(--log-dir, default the submitting directory), not in the run folder: the
job can write it even on a node that does not see the results folder, and
the first lines there say so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from ttabench import UserError
from ttabench.divisions.results import find_job_only_dirs, find_run_dirs
from ttabench.launch.cluster import watch
from ttabench.launch.cluster.sbatch import SlurmJob, header, setup_block
from ttabench.launch.config import RunConfig
from ttabench.launch.flags import run_flags
from ttabench.launch.record.jobenv import SUBMIT_COMMAND_ENV

RDZV_PORT_BASE = 29400  # + job id mod 1000: two jobs on one node do not share a port
ENDED = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
)


def time_limit_s(spec: str) -> int:
    """Slurm's --time in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; one line when malformed."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", spec.strip())
    if not m:
        raise UserError(
            f"--time must be M, M:S, H:M:S, D-H, D-H:M or D-H:M:S (Slurm's formats), got {spec!r}"
        )
    days, a, b, c = m.groups()
    a, b, c = int(a), int(b or 0), int(c or 0)
    if days is not None:  # D-H[:M[:S]]
        return ((int(days) * 24 + a) * 60 + b) * 60 + c
    if c or m.group(4) is not None:  # H:M:S
        return (a * 60 + b) * 60 + c
    return a * 60 + b  # M or M:S


def signal_margin_s(limit_s: int) -> int:
    """How long before the time limit the workers are told to stop: 60 s, less for a short job
    (a fifth of it, at least 10 s). Slurm may send it up to a minute early."""
    return max(10, min(60, limit_s // 5))


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise UserError(
            f"`{tool}` is not on PATH: run this on a Slurm login node (or scripts/slurm_local.sh up)"
        )
    return path


def node_command(cfg: RunConfig, python: str) -> list[str]:
    """`ttabench run` for every node, less --node-rank and --rdzv-endpoint (set in the script)."""
    base = dataclasses.replace(cfg, node_rank=0, rdzv_endpoint=None, local_addr=None)
    return [python, "-m", "ttabench", "run"] + run_flags(base)


RUN_DIR_VAR = "@RUN_DIR@"  # stands for "$run_dir" in a node's command line


def script(
    cfg: RunConfig, job: SlurmJob, python: str, submit_command: list[str], dry_run: bool = False
) -> str:
    """The sbatch script of a run (cfg.run_dir set, cfg.nnodes == job.nodes). `dry_run`: the
    run folder does not exist yet; the job makes it, named after its job id, beside where
    cfg.run_dir would be."""
    run_dir = cfg.run_dir
    limit_s = time_limit_s(job.time) if job.time else None  # 0: no limit, no signal
    sb = header(job, f"ttabench-{cfg.benchmark_name()}", signal_margin_s(limit_s) if limit_s else None)
    # Absolute: a saved job.sbatch writes where it did, from wherever it is submitted.
    node_cfg = dataclasses.replace(cfg, run_dir=RUN_DIR_VAR, results_dir=os.path.abspath(cfg.results_dir))
    node_cmd = " ".join(shlex.quote(a) for a in node_command(node_cfg, python))
    node_cmd = node_cmd.replace(RUN_DIR_VAR, '"$run_dir"')
    q = shlex.quote
    if dry_run:
        where = [
            "# The run folder, named after this job, made here (the script was printed, not submitted).",
            f'run_dir={q(os.path.abspath(os.path.dirname(run_dir)))}/"slurm-$SLURM_JOB_ID"',
            'mkdir -p "$run_dir"',
        ]
    else:
        where = [f"run_dir={q(os.path.abspath(run_dir))}"]
    where += [
        'echo "ttabench: job $SLURM_JOB_ID on $(hostname): results in $run_dir"',
        'test -d "$run_dir" || { echo "ttabench: error: $run_dir is not visible on $(hostname): '
        'the results folder must be on a file system every node shares" >&2; exit 2; }',
    ]
    if cfg.backend == "horovod" and job.nodes > 1:
        start = [
            "# Horovod: one launcher, here on the first node; it starts every node's workers",
            "# with srun around Horovod's rendezvous server (no ssh between nodes).",
            f'exec {node_cmd} --node-rank 0 --rdzv-endpoint "$rdzv"',
        ]
    else:
        start = [
            "# One launcher per node; a node that does not see the run folder stops at once.",
            'srun --ntasks-per-node=1 --cpus-per-task="$SLURM_CPUS_ON_NODE" --kill-on-bad-exit=0 \\',
            '  bash -c \'test -d "$0" || { echo "ttabench: error: $0 is not visible on $(hostname): '
            'the results folder must be on a file system every node shares" >&2; exit 2; }; '
            'exec "${@:2}" --node-rank "$SLURM_NODEID" --rdzv-endpoint "$1"\' \\',
            f'  "$run_dir" "$rdzv" {node_cmd}',
        ]
    return "\n".join(
        [
            "#!/bin/bash",
            f"# ttabench submit: {cfg.benchmark_name()} {cfg.division}, {job.nodes} node(s) x "
            f"{cfg.workers} worker(s)",
            *[f"#SBATCH {a}" for a in sb],
            *setup_block(job),
            *where,
            f"export {SUBMIT_COMMAND_ENV}={q(json.dumps(submit_command))}",
            "# The rendezvous: the allocation's first node, at the address Slurm reaches it by.",
            'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "addr=$(scontrol show node \"$head\" | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p')",
            f'rdzv="${{addr:-$head}}:$(({RDZV_PORT_BASE} + SLURM_JOB_ID % 1000))"',
            *start,
            "",
        ]
    )


def _sbatch(args: list[str], text: str) -> subprocess.CompletedProcess:
    return subprocess.run([require("sbatch"), *args], input=text, capture_output=True, text=True)


def _rejection(r: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
    # sbatch says why in its last line ("Batch job submission failed: Invalid partition name specified").
    return lines[-1].removeprefix("sbatch: error: ") if lines else f"sbatch exited with code {r.returncode}"


def submit(text: str) -> str:
    """Submit the script (on stdin); the job id, or one line saying why Slurm refused it."""
    r = _sbatch(["--parsable"], text)
    if r.returncode != 0:
        raise UserError(f"Slurm rejected the job: {_rejection(r)}")
    return r.stdout.strip().split(";")[0]


def test_only(text: str) -> str:
    """`sbatch --test-only`: Slurm's own check of the script, nothing submitted."""
    r = _sbatch(["--test-only"], text)
    if r.returncode != 0:
        raise UserError(f"Slurm rejected the job: {_rejection(r)}")
    return (r.stderr or r.stdout).strip()


def job_state(job_id: str) -> dict | None:
    """scontrol's view of the job ({JobState, NodeList, ExitCode, ...}), None once it is forgotten."""
    r = subprocess.run([require("scontrol"), "show", "job", "-o", job_id], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        return None
    fields = {}
    for token in r.stdout.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def job_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job (PENDING, RUNNING, CANCELLED, ...; ENDED once Slurm has
    forgotten it); {} where squeue is not there to ask."""
    squeue = shutil.which("squeue")
    if squeue is None or not job_ids:
        return {}
    r = subprocess.run(
        [squeue, "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T"], capture_output=True, text=True
    )
    if r.returncode != 0 and "Invalid job id" not in r.stderr:
        return {}  # no controller to ask
    states = {job_id: "ENDED" for job_id in job_ids}
    for line in r.stdout.splitlines():
        job_id, _, state = line.strip().partition(" ")
        if job_id in states:
            states[job_id] = state.strip()
    return states


def folder_job_id(folder: str) -> str | None:
    """The Slurm job id recorded in a folder `ttabench submit` made (submit.json), if any."""
    path = os.path.join(folder, "submit.json")
    try:
        with open(path, encoding="utf-8") as f:
            job = json.load(f)
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply
        return None
    job_id = job.get("job_id") if isinstance(job, dict) and job.get("scheduler") == "slurm" else None
    return str(job_id) if job_id is not None else None


def _unfinished(folder: str) -> bool:
    """No final status recorded (yet): only then can the job behind the folder be running.
    (A finished run's job id may name another job today, on another cluster.)"""
    try:
        with open(os.path.join(folder, "summary.json"), encoding="utf-8") as f:
            status = json.load(f).get("status")
    except (OSError, ValueError, AttributeError, RecursionError):
        return True
    return status in (None, "running")


def folder_states(folders: list[str]) -> dict[str, str]:
    """Slurm's state of the job behind each folder that has one and no final status yet
    (see job_states)."""
    ids = {folder: folder_job_id(folder) for folder in folders if _unfinished(folder)}
    states = job_states(sorted({i for i in ids.values() if i}))
    return {folder: states[i] for folder, i in ids.items() if i in states}


def submitted_jobs(path: str) -> dict[str, str]:
    """Slurm's state of the jobs behind the run folders and submitted jobs' folders below
    `path` ({} for a path that is no folder, or without Slurm)."""
    if not os.path.isdir(path):
        return {}
    return folder_states(find_run_dirs(path) + find_job_only_dirs(path))


def partition_nodes() -> dict[str, int]:
    """Every partition's node count ({} when sinfo cannot say); the default one is also ''."""
    r = subprocess.run([require("sinfo"), "-h", "-o", "%P %D"], capture_output=True, text=True)
    counts: dict[str, int] = {}
    if r.returncode != 0:
        return counts
    for line in r.stdout.splitlines():
        name, _, nodes = line.strip().partition(" ")
        if not nodes.strip().isdigit():
            continue
        default = name.endswith("*")
        name = name.rstrip("*")
        counts[name] = counts.get(name, 0) + int(nodes)  # sinfo gives a line per node state
        if default:
            counts[""] = counts[name]
    return counts


def check_fits(job: SlurmJob) -> None:
    """One line, before anything is made, for a request the cluster can never satisfy:
    an unknown partition, or more nodes than the partition has."""
    counts = partition_nodes()
    if not counts:
        return  # sinfo could not say: Slurm judges at submission
    named = sorted(k for k in counts if k)
    if job.partition and job.partition not in counts:
        raise UserError(
            f"--partition {job.partition}: no such partition (this cluster has: {', '.join(named)})"
        )
    have = counts.get(job.partition or "")
    if have is not None and job.nodes > have:
        where = f"partition {job.partition}" if job.partition else "the default partition"
        raise UserError(
            f"--nodes {job.nodes}: {where} has {have} node{'s' * (have != 1)}; the job would never start"
        )


def wait(job_id: str, run_dir: str, poll_s: float = 1.0, out=print, log: str | None = None) -> int:
    """Block until the job ends, printing its state changes and each evaluation;
    returns the run's exit code (0 success, 130 interrupted, 124 time limit, 3 diverged,
    1 otherwise)."""
    last, shown = None, 0
    while True:
        fields = job_state(job_id)
        f = fields or {}
        state, where, reason = (
            f.get("JobState", "ENDED"),
            f.get("NodeList", "(null)"),
            f.get("Reason", "None"),
        )
        if state != "PENDING" and where != "(null)":
            state_line = f"job {job_id}: {state} on {where}"
        else:
            state_line = f"job {job_id}: {state}" + (f" ({reason})" if reason != "None" else "")
        if state_line != last:
            out(state_line)
            last = state_line
        for line in watch.progress_lines(run_dir, shown):
            out(line)
            shown += 1
        if fields is None or state in ENDED:
            break
        time.sleep(poll_s)
    if watch.run_status(run_dir) is None:
        f = fields or {}
        print(
            f"ttabench: job {job_id} ended {f.get('JobState', 'gone')} (exit {f.get('ExitCode', '?')}) "
            f"without a finished run; see {log or run_dir}",
            file=sys.stderr,
        )
    return watch.exit_code(run_dir, out)
