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
--time, the script asks Slurm (--signal=TERM@MARGIN) to send SIGTERM to the
workers before the limit: at the limit itself srun receives SIGTERM as well
and SIGKILLs its tasks at once, before they can record anything.
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
from ttabench.launch.cluster import watch
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


@dataclasses.dataclass
class SlurmJob:
    """What sbatch is asked for; the run's own options live in RunConfig."""

    nodes: int = 1
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    gpus_per_node: int | None = None
    sbatch_args: list[str] = dataclasses.field(default_factory=list)


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


def script(cfg: RunConfig, job: SlurmJob, python: str, submit_command: list[str]) -> str:
    """The sbatch script of a run (cfg.run_dir set, cfg.nnodes == job.nodes)."""
    run_dir = cfg.run_dir
    sb = [
        f"--job-name=ttabench-{cfg.benchmark_name()}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
        "--exclusive",  # a benchmark does not share its nodes
        f"--output={os.path.join(run_dir, 'slurm-%j.out')}",
    ]
    for flag, value in (("partition", job.partition), ("time", job.time), ("account", job.account)):
        if value:
            sb.append(f"--{flag}={value}")
    if job.time:
        # SIGTERM to the workers before the limit, so they stop and record: at the limit itself
        # srun gets SIGTERM too and answers it by SIGKILLing its tasks ("forcing job termination").
        sb.append(f"--signal=TERM@{signal_margin_s(time_limit_s(job.time))}")
    if job.gpus_per_node:
        sb.append(f"--gpus-per-node={job.gpus_per_node}")
    sb += job.sbatch_args
    node_cmd = " ".join(shlex.quote(a) for a in node_command(cfg, python))
    q = shlex.quote
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
            f'  {q(run_dir)} "$rdzv" {node_cmd}',
        ]
    return "\n".join(
        [
            "#!/bin/bash",
            f"# ttabench submit: {cfg.benchmark_name()} {cfg.division}, {job.nodes} node(s) x "
            f"{cfg.workers} worker(s); results in {run_dir}",
            *[f"#SBATCH {a}" for a in sb],
            "set -euo pipefail",
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


def wait(job_id: str, run_dir: str, poll_s: float = 1.0, out=print) -> int:
    """Block until the job ends, printing its state changes and each evaluation;
    returns the run's exit code (0 success, 130 interrupted, 3 diverged, 1 otherwise)."""
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
            f"without a finished run; see {os.path.join(run_dir, f'slurm-{job_id}.out')}",
            file=sys.stderr,
        )
    return watch.exit_code(run_dir, out)
