"""Start a run's workers: in this process, through torch.distributed.run's API, or horovodrun.

- backend ``none``: one worker, in this process.
- backend ``torchrun``: PyTorch's elastic agent (``torch.distributed.launcher.api``,
  the code behind the ``torchrun`` command) starts ``--workers`` processes on
  this node; with ``--nnodes M --node-rank i --rdzv-endpoint HOST:PORT`` the
  same command on every node forms one c10d rendezvous.
- backend ``horovod``: ``horovodrun -np N -H localhost:N --gloo`` (``--mpi``
  where Horovod was built with MPI) runs the same worker module; with
  ``--nnodes M`` inside a Slurm allocation one launcher starts every node's
  workers with srun (launch/cluster/horovod_slurm.py).

On one node the launcher creates the run folder before the workers start
and passes it to them, so when a worker dies (signal, exception, OOM) the
launcher still marks the run ``failed`` with the rank and the cause.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import signal
import sys

from ttabench import UserError
from ttabench.divisions.results import atomic_write_json, read_curve, read_json
from ttabench.launch import elastic, procs, system
from ttabench.launch.cluster import horovod_slurm
from ttabench.launch.cluster.outcome import clear_outcome, merged
from ttabench.launch.config import RunConfig
from ttabench.launch.net import iface
from ttabench.launch.record import timelimit

FINAL = ("success", "failed", "diverged", "interrupted")
USER_ERROR = 2  # a worker's exit code after a one-line user error (worker/main.py)


def worker_argv(cfg: RunConfig) -> list[str]:
    """The worker module's arguments: `cfg`, validated here, handed over whole (launch/worker/main.py)."""
    return ["--run-config", cfg.to_json()]


def seed_list(seed: int | None, count: int | None, listed: str | None) -> list[int] | None:
    """The seeds of a multi-seed run (None for a single run); always distinct."""
    if listed is not None:
        try:
            seeds = [int(s) for s in listed.split(",") if s.strip()]
        except ValueError:
            raise UserError(f"--seed-list must be integers separated by commas, got {listed!r}") from None
        if not seeds:
            raise UserError("--seed-list is empty")
        if len(set(seeds)) != len(seeds):
            raise UserError(f"--seed-list repeats a seed: {listed}")
        return seeds
    if count is None:
        return None
    if count < 1:
        raise UserError(f"--seeds must be >= 1, got {count}")
    if seed is not None:
        return [seed + i for i in range(count)]
    seeds: list[int] = []
    while len(seeds) < count:
        s = secrets.randbits(31)
        if s not in seeds:
            seeds.append(s)
    return seeds


def _starting(cfg: RunConfig, doing: str) -> None:
    """The first status line, from process start (the live display follows once a worker runs)."""
    if cfg.progress != "none":
        n = cfg.world_size()
        where = f"; results: {cfg.run_dir}" if cfg.run_dir else ""
        print(f"ttabench: {cfg.benchmark_name()}, {n} worker{'s' * (n > 1)}: {doing}{where}", flush=True)


def launch(cfg: RunConfig, argv: list[str] | None = None) -> int:
    backend = cfg.backend_name()
    if backend == "none":
        if cfg.world_size() != 1:
            raise UserError("--backend none runs exactly one worker")
        _starting(cfg, "importing torch")
        if cfg.division == "open":  # as for N workers: a broken submission leaves no folder
            check_open_submission(cfg)
        # Imported here: the worker needs torch, which `ttabench` starts without.
        from ttabench.launch.worker.main import run_worker

        return run_worker(cfg, command=argv)
    hvd_nodes = backend == "horovod" and cfg.nnodes > 1  # one launcher for every node, in Slurm
    if hvd_nodes:
        horovod_slurm.allocation_nodes(cfg.nnodes)  # outside an allocation: one line, nothing made
    if cfg.division == "open":
        check_open_submission(cfg)
    if backend == "torchrun" and cfg.dist_backend == "nccl":
        import torch  # not at the top: the CLI starts without torch where it can

        from ttabench.launch.worker.comm import check_nccl  # imports torch too

        check_nccl(cfg.workers, torch.cuda.device_count())  # one line here, not one per worker
    # Workers record the command the user typed, not their own.
    os.environ["TTABENCH_COMMAND"] = json.dumps(argv or sys.argv)
    if cfg.nnodes == 1 or hvd_nodes:
        cfg = _with_run_dir(cfg)
    if cfg.nnodes > 1:  # gloo would bind the interface of the node's name: loopback where it does not resolve
        cfg = dataclasses.replace(cfg, local_addr=iface.for_launcher(cfg.local_addr, cfg.rdzv_endpoint))
    if cfg.nnodes > 1 and cfg.run_dir:  # an earlier start's view of this node is not this one's
        clear_outcome(cfg.run_dir, cfg.node_rank)
    _starting(cfg, f"starting {backend} workers, rendezvous")
    signal.signal(timelimit.SIGNAL, signal.SIG_IGN)  # for the workers (their own handler)
    if backend == "torchrun":
        outcome = _launch_torchrun(cfg)
        restarts = 0
        while (
            outcome.code not in (0, 130)
            and restarts < cfg.max_restarts
            and cfg.run_dir
            and _can_restart(cfg.run_dir)
        ):
            # Start every worker again on a fresh rendezvous; they continue
            # from the run's last checkpoint (or from the start without one).
            restarts += 1
            print(
                f"ttabench: {outcome.text}; restart {restarts} of {cfg.max_restarts}",
                file=sys.stderr,
                flush=True,
            )
            outcome = _launch_torchrun(dataclasses.replace(cfg, resume=True))
    elif backend == "horovod":
        outcome = _launch_horovod(cfg) if cfg.nnodes == 1 else _launch_horovod_slurm(cfg)
    else:
        raise UserError(f"unknown backend {backend}")
    if outcome.code == 0 or not cfg.run_dir:
        return outcome.code
    # Every worker agreed on the time limit and exits 124 (the summary may not say so yet).
    time_limit = any(r.get("exitcode") == timelimit.EXIT for r in outcome.ranks)
    outcome = _stopped_together(outcome)
    if cfg.nnodes > 1 and not hvd_nodes:  # this node saw only its own ranks: merge every node's view
        with merged(cfg.run_dir, cfg.node_rank, outcome.ranks, outcome.interrupted) as (ranks, interrupted):
            text = _ranks_text(ranks) or outcome.text
            status = record_outcome(cfg.run_dir, Outcome(outcome.code, text, ranks, interrupted))
    else:
        status = record_outcome(cfg.run_dir, outcome)
    if status == "diverged":
        print("ttabench: the run diverged (non-finite loss); recorded in summary.json", file=sys.stderr)
        return 3
    if status == "interrupted" and (time_limit or _stop_reason(cfg.run_dir) == timelimit.REASON):
        print(timelimit.line(cfg.run_dir), file=sys.stderr)
        return timelimit.EXIT
    if status == "interrupted":
        print(f"ttabench: interrupted; {cfg.run_dir} keeps everything written so far", file=sys.stderr)
        return 130
    print(f"ttabench: run failed: {outcome.text}", file=sys.stderr)
    return outcome.code


def check_open_submission(cfg: RunConfig) -> None:
    """The worker's checks of the submission, once, in this process on the CPU and without
    reading the data set: a broken submission then ends in one error line here instead of
    one per worker, before any folder or process exists."""
    # Imported here: torch and the worker's set-up, which `ttabench` starts without.
    from ttabench.launch.worker.workload import check_submission

    # The global batch is checked as the workers will see it.
    check_submission(cfg, cfg.world_size())


def _with_run_dir(cfg: RunConfig) -> RunConfig:
    if cfg.run_dir:
        return cfg
    name = system.system_name(cfg.system)
    run_dir = cfg.new_run_dir(name)
    return dataclasses.replace(cfg, run_dir=run_dir, system=name)


@dataclasses.dataclass
class Outcome:
    """How the workers of a run ended, as the launcher saw it."""

    code: int  # 0, 130 (interrupted) or the failing exit code
    text: str = ""  # one line: which ranks ended how
    ranks: list = dataclasses.field(default_factory=list)  # [{rank, exitcode, signal, message}]
    interrupted: bool = False


def _stop_reason(run_dir: str) -> str | None:
    try:
        return read_json(os.path.join(run_dir, "summary.json")).get("stop_reason")
    except UserError:
        return None


def _stopped_together(outcome: Outcome) -> Outcome:
    """Workers that all stopped on a stop request (exit 130, or 124 at a time limit, peers
    stopped by SIGTERM) were interrupted, not failed, even when no signal reached this launcher."""
    codes = {r.get("exitcode") for r in outcome.ranks}
    if outcome.interrupted or not codes & {130, timelimit.EXIT}:
        return outcome
    if codes <= {130, timelimit.EXIT, -signal.SIGTERM, 128 + signal.SIGTERM}:
        return dataclasses.replace(outcome, code=130, interrupted=True)
    return outcome


def _can_restart(run_dir: str) -> bool:
    """A run that diverged or was interrupted is not restarted; a failed one is."""
    try:
        status = read_json(os.path.join(run_dir, "summary.json")).get("status")
    except UserError:
        status = None
    return status not in ("success", "diverged", "interrupted")


def record_outcome(run_dir: str, outcome: Outcome) -> str:
    """Complete summary.json after workers stopped abnormally; returns the final status.

    Workers record what they can (rank 0 writes `failed`, `interrupted` or
    `diverged` with the error it saw), but a rank killed by a signal records
    nothing. The launcher adds which ranks ended how, the root cause first,
    and the last completed evaluation; it never turns a recorded `diverged`
    or `interrupted` into `failed`, and never touches a finished run.
    """
    path = os.path.join(run_dir, "summary.json")
    try:
        summary = read_json(path)
    except UserError:
        summary = {}
    status = summary.get("status")
    if status == "success":
        return status
    if status not in ("diverged", "interrupted"):
        status = "interrupted" if outcome.interrupted else "failed"
    summary["status"] = status
    summary["failed_ranks"] = outcome.ranks
    root = outcome.ranks[0] if outcome.ranks else None
    recorder = next((r for r in outcome.ranks if r["rank"] == summary.get("failed_rank")), None)
    # A rank that ended by itself with exit code 2 stopped on a user error it found itself (the
    # same mistake on every rank, e.g. a broken open-division model): a root cause whichever rank
    # torch happens to list first, never the consequence of another rank's failure.
    own_user_error = (
        recorder is not None and recorder["signal"] is None and recorder["exitcode"] == USER_ERROR
    )
    recorded_root = root is not None and root["signal"] is None and (recorder is root or own_user_error)
    if summary.get("error") and (recorded_root or not outcome.ranks):
        summary["launcher_error"] = outcome.text  # the recording worker was the root cause
    elif status == "failed":
        if summary.get("error"):
            summary["worker_error"] = summary["error"]  # a consequence (e.g. a broken collective)
        summary["error"] = outcome.text
    try:
        curve = read_curve(run_dir) if os.path.exists(os.path.join(run_dir, "curve.csv")) else []
    except UserError:
        curve = []
    summary["last_eval"] = curve[-1] if curve else None
    atomic_write_json(path, summary)
    return status


def _launch_torchrun(cfg: RunConfig) -> Outcome:
    worker_cfg = dataclasses.replace(cfg, backend="torchrun")
    args = ["-m", "ttabench.launch.worker"] + worker_argv(worker_cfg)
    rendezvous = elastic.Rendezvous(cfg.nnodes, cfg.node_rank, cfg.rdzv_endpoint, cfg.local_addr)
    try:
        failed = elastic.elastic_run(
            args, nproc_per_node=cfg.workers, collective_timeout=cfg.collective_timeout, rendezvous=rendezvous
        )
    except procs.Interrupted as e:
        # The agent stopped the workers (SIGTERM, then SIGKILL after a grace
        # period); each one that could has recorded `interrupted`.
        return Outcome(130, str(e), interrupted=True)
    return Outcome(0) if failed is None else _torch_failures(failed)


def _torch_failures(e) -> Outcome:
    """ChildFailedError -> Outcome, the root cause first.

    That is a rank killed by SIGKILL (the OOM killer, kill -9), if any: its peers
    then fail on the broken connection and record their errors at once, while the
    agent dates the killed rank only when it notices (every 0.2 s), so the earliest
    timestamp is not the cause. Otherwise the earliest failure: a peer of a rank
    that raised may itself abort (SIGABRT in gloo's teardown) later. Ranks the
    agent stops afterwards are not failures.
    """
    first_rank, _ = e.get_first_failure()
    killed = {rank for rank, f in e.failures.items() if f.exitcode == -signal.SIGKILL}
    ranks = []
    for rank, f in sorted(
        e.failures.items(), key=lambda kv: (kv[0] not in killed, kv[0] != first_rank, kv[0])
    ):
        signal_name = f.signal_name() if f.exitcode < 0 else None
        msg = f.message if isinstance(f.message, str) else (f.message or {}).get("message", "")
        if signal_name or "To enable traceback" in msg:  # no account of its own, or torch's placeholder
            msg = ""
        msg = msg.strip().splitlines()[-1] if msg.strip() else ""
        ranks.append({"rank": rank, "exitcode": f.exitcode, "signal": signal_name, "message": msg})
    return Outcome(1, _ranks_text(ranks), ranks)


def _ranks_text(ranks: list[dict]) -> str:
    """'rank 1 killed by SIGKILL; rank 0 exit code 1: <its last line>' (the order given)."""
    return "; ".join(
        f"rank {r['rank']} "
        + (f"killed by {r['signal']}" if r["signal"] else f"exit code {r['exitcode']}")
        + (f": {r['message']}" if r.get("message") else "")
        for r in ranks
    )


def _launch_horovod_slurm(cfg: RunConfig) -> Outcome:
    """Every node's workers from this one launcher, with srun (launch/cluster/horovod_slurm.py)."""
    code, ranks, interrupted = horovod_slurm.launch(
        cfg, worker_argv(dataclasses.replace(cfg, backend="horovod"))
    )
    if code == 0:
        return Outcome(0)
    if interrupted:
        return Outcome(130, f"interrupted by {interrupted}", ranks, interrupted=True)
    return Outcome(code, _ranks_text(ranks) or f"srun exited with code {code}", ranks)


_HVD_EXIT = re.compile(r"Process (\d+) exit with status code (-?\d+)")


def _launch_horovod(cfg: RunConfig) -> Outcome:
    """horovodrun, its output passed through line by line and read for which rank ended how
    (horovodrun's own closing summary sometimes names the wrong process)."""
    worker_cfg = dataclasses.replace(cfg, backend="horovod")
    cmd = (
        procs.horovodrun_command(cfg.workers)
        + [sys.executable, "-m", "ttabench.launch.worker"]
        + worker_argv(worker_cfg)
    )
    ranks = []

    def read(line: str) -> None:
        sys.stdout.write(line)
        m = _HVD_EXIT.search(line)
        if m:
            code = int(m.group(2))
            sig = signal.Signals(code - 128).name if code > 128 and code - 128 < 65 else None
            ranks.append({"rank": int(m.group(1)), "exitcode": code, "signal": sig, "message": ""})

    _, result = procs.run(cmd, on_line=read)
    code = result.code
    if code == 0:
        return Outcome(0)
    if result.interrupted:
        return Outcome(130, f"interrupted by {result.interrupted}", ranks, interrupted=True)
    return Outcome(code, _ranks_text(ranks) or f"horovodrun exited with code {code}", ranks)
