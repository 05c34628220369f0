"""Start a run's workers: in this process, through torch.distributed.run's API, or horovodrun.

- backend ``none``: one worker, in this process.
- backend ``torchrun``: PyTorch's elastic agent (``torch.distributed.launcher.api``,
  the code behind the ``torchrun`` command) starts ``--workers`` processes on
  this node; with ``--nnodes M --node-rank i --rdzv-endpoint HOST:PORT`` the
  same command on every node forms one c10d rendezvous.
- backend ``horovod``: ``horovodrun -np N -H localhost:N --gloo`` (``--mpi``
  where Horovod was built with MPI) runs the same worker module.

On one node the launcher creates the run folder before the workers start
and passes it to them, so when a worker dies (signal, exception, OOM) the
launcher still marks the run ``failed`` with the rank and the cause.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import uuid

from ttabench import UserError
from ttabench.divisions.submission import atomic_write_json, new_run_dir, read_json
from ttabench.launch.config import RunConfig

FINAL = ("success", "failed", "diverged", "interrupted")


def worker_argv(cfg: RunConfig) -> list[str]:
    """Command-line flags that reproduce `cfg` for ttabench.launch.worker."""
    out = []
    defaults = RunConfig()
    for f in dataclasses.fields(RunConfig):
        v = getattr(cfg, f.name)
        if v == getattr(defaults, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + f.name.replace("_", "-"))
        elif v is not None:
            out += [flag, str(v)]
    return out


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
    import secrets

    seeds: list[int] = []
    while len(seeds) < count:
        s = secrets.randbits(31)
        if s not in seeds:
            seeds.append(s)
    return seeds


def launch(cfg: RunConfig, argv: list[str] | None = None) -> int:
    backend = cfg.backend_name()
    if backend == "none":
        if cfg.world_size() != 1:
            raise UserError("--backend none runs exactly one worker")
        from ttabench.launch.worker import run_worker

        return run_worker(cfg, command=argv)
    if cfg.division == "open":
        check_open_submission(cfg)
    if cfg.nnodes == 1:
        cfg = _with_run_dir(cfg)
    if backend == "torchrun":
        code, failure = _launch_torchrun(cfg)
    elif backend == "horovod":
        if cfg.nnodes != 1:
            raise UserError("multi-node Horovod runs are started with horovodrun -H host1:n,host2:n "
                            "... python -m ttabench.launch.worker --backend horovod (see README)")
        code, failure = _launch_horovod(cfg)
    else:
        raise UserError(f"unknown backend {backend}")
    if code != 0 and cfg.run_dir:
        mark_failed(cfg.run_dir, failure)
        print(f"ttabench: run failed: {failure}", file=sys.stderr)
    return code


def check_open_submission(cfg: RunConfig) -> None:
    """The worker's set-up, once, in this process on the CPU: a broken submission then ends
    in one error line here instead of one per worker, before any folder or process exists."""
    import torch

    from ttabench.launch import comm
    from ttabench.launch.worker import build

    one = comm.Comm()
    one.world_size = cfg.world_size()  # the global batch is checked as the workers will see it
    build(dataclasses.replace(cfg, device="cpu", precision="fp32"), one, cfg.seed or 0,
          torch.device("cpu"), None)


def _with_run_dir(cfg: RunConfig) -> RunConfig:
    if cfg.run_dir:
        return cfg
    from ttabench.launch import system

    name = cfg.system or system.default_system_name(system.describe())
    run_dir = new_run_dir(cfg.results_dir, name, cfg.benchmark_name(), cfg.division)
    return dataclasses.replace(cfg, run_dir=run_dir, system=name)


def mark_failed(run_dir: str, failure: str) -> None:
    """Record a failure the workers could not record themselves (e.g. SIGKILL)."""
    path = os.path.join(run_dir, "summary.json")
    try:
        summary = read_json(path)
    except UserError:
        summary = {}
    if summary.get("status") in ("success", "diverged"):
        return
    summary["status"] = "failed"
    # Keep what a worker recorded itself (it knows the exception); add what the
    # launcher saw (which ranks ended how).
    if summary.get("error"):
        summary["launcher_error"] = failure
    else:
        summary["error"] = failure
    atomic_write_json(path, summary)


def _launch_torchrun(cfg: RunConfig) -> tuple[int, str]:
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    worker_cfg = dataclasses.replace(cfg, backend="torchrun")
    args = ["-m", "ttabench.launch.worker"] + worker_argv(worker_cfg)
    if cfg.nnodes == 1:
        endpoint, rdzv_configs = "127.0.0.1:0", {"is_host": True}
        run_id = uuid.uuid4().hex
    else:
        endpoint, rdzv_configs = cfg.rdzv_endpoint, {"is_host": cfg.node_rank == 0}
        run_id = "ttabench-" + cfg.rdzv_endpoint.replace(":", "-")
    rdzv_configs["timeout"] = int(max(60, cfg.collective_timeout))
    lc = LaunchConfig(
        min_nodes=cfg.nnodes, max_nodes=cfg.nnodes, nproc_per_node=cfg.workers,
        run_id=run_id, rdzv_backend="c10d", rdzv_endpoint=endpoint, rdzv_configs=rdzv_configs,
        max_restarts=0, monitor_interval=0.2, start_method="spawn", local_addr=cfg.local_addr,
        logs_specs=DefaultLogsSpecs(),
    )
    # torchrun's default of one OpenMP thread per worker: the worker sets its
    # threads itself (--threads, default cores / local workers) and records them.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        elastic_launch(lc, entrypoint=sys.executable)(*args)
        return 0, ""
    except ChildFailedError as e:
        return 1, _describe_failures(e)


def _describe_failures(e) -> str:
    parts = []
    for rank, f in sorted(e.failures.items()):  # keyed by global rank
        if f.signal_name() != "<N/A>" and f.exitcode < 0:
            cause = f"killed by {f.signal_name()}"
        else:
            cause = f"exit code {f.exitcode}"
        msg = f.message if isinstance(f.message, str) else (f.message or {}).get("message", "")
        if "To enable traceback" in msg:  # torch's placeholder when no error file was written
            msg = ""
        detail = f": {msg.strip().splitlines()[-1]}" if msg and msg.strip() else ""
        parts.append(f"rank {rank} {cause}{detail}")
    return "; ".join(parts)


def horovodrun_command(workers: int) -> list[str]:
    """horovodrun with the gloo controller on this host, from this environment."""
    horovodrun = shutil.which("horovodrun", path=os.path.dirname(sys.executable) + os.pathsep
                              + os.environ.get("PATH", ""))
    if horovodrun is None:
        raise UserError("horovodrun not found: install Horovod with scripts/install_horovod.sh")
    return [horovodrun, "-np", str(workers), "-H", f"localhost:{workers}", "--gloo"]


def _launch_horovod(cfg: RunConfig) -> tuple[int, str]:
    worker_cfg = dataclasses.replace(cfg, backend="horovod")
    cmd = (horovodrun_command(cfg.workers) + [sys.executable, "-m", "ttabench.launch.worker"]
           + worker_argv(worker_cfg))
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait()
    if code == 0:
        return 0, ""
    return code, f"horovodrun exited with code {code}"
