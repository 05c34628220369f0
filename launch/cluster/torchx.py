"""TorchX: the same run through PyTorch's launcher for Slurm, Kubernetes, AWS Batch and local.

    ttabench submit --scheduler torchx:local_cwd --nodes 2 --workers 1 ... --wait
    ttabench submit --scheduler torchx:kubernetes --image IMAGE --torchx-cfg queue=default ... --dry-run

The job is TorchX's distributed-data-parallel component (``dist.ddp``): one
replica per node, each `torchrun -m ttabench.launch.worker` with the run's
options, joined by c10d rendezvous on replica 0. Here ttabench's own
launcher is not involved, so the workers alone record how the run ended.

For ``local_cwd`` the run folder is made here and handed to the workers
(--run-dir), so `--wait` can show the run's evaluations and exit with its
code. On other schedulers rank 0 makes the run folder under --results-dir as
the container sees it: mount a shared volume there (TorchX's `mounts`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time

from torchx import specs
from torchx.components import dist as torchx_dist
from torchx.runner import get_runner

from ttabench import UserError
from ttabench.launch import procs
from ttabench.launch.cluster import watch
from ttabench.launch.config import RunConfig
from ttabench.launch.record.jobenv import SUBMIT_COMMAND_ENV, cluster_system_name

LOCAL = ("local_cwd",)  # schedulers whose jobs run on this machine, in this folder
MEM_MB_PER_WORKER = 4096


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app(cfg: RunConfig, nodes: int, image: str, gpus: int | None, submit_command: list[str]) -> specs.AppDef:
    """TorchX's dist.ddp starting the worker module with the run's options on every node."""
    from ttabench.launch.launcher import worker_argv  # imports torch: only when submitting

    worker_cfg = dataclasses.replace(cfg, backend="torchrun", nnodes=1, rdzv_endpoint=None, local_addr=None)
    return torchx_dist.ddp(
        *worker_argv(worker_cfg),
        m="ttabench.launch.worker",
        image=image,
        name=f"ttabench-{cfg.benchmark_name()}",
        j=f"{nodes}x{cfg.workers}",
        cpu=(cfg.threads or 2) * cfg.workers,
        gpu=gpus or 0,
        memMB=MEM_MB_PER_WORKER * cfg.workers,
        rdzv_port=_free_port(),
        env={
            "TORCHX_APP_ID": specs.macros.app_id,  # recorded in config.json's "scheduler"
            SUBMIT_COMMAND_ENV: json.dumps(submit_command),
        },
    )


def parse_cfg(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--torchx-cfg takes KEY=VALUE (e.g. queue=default), got {item!r}")
        out[key] = value
    return out


def submit_run(cfg: RunConfig, args, scheduler: str) -> int:
    if not scheduler:
        raise UserError(
            "--scheduler torchx needs a TorchX scheduler: torchx:local_cwd, torchx:kubernetes, ..."
        )
    runner = get_runner()
    if scheduler not in runner.scheduler_backends():
        known = ", ".join(sorted(runner.scheduler_backends()))
        raise UserError(f"unknown TorchX scheduler {scheduler!r} (TorchX has: {known})")
    local = scheduler in LOCAL
    image = args.image or (os.getcwd() if local else None)
    if image is None:
        raise UserError(f"torchx:{scheduler} needs --image: a container image with ttabench installed")
    system_name = cluster_system_name(cfg)
    cfg = dataclasses.replace(cfg, system=system_name)
    command = ["ttabench"] + sys.argv[1:]
    run_cfg = parse_cfg(args.torchx_cfg)
    if args.dry_run:
        info = runner.dryrun(app(cfg, args.nodes, image, args.gpus_per_node, command), scheduler, cfg=run_cfg)
        print(info)
        return 0
    if local:
        # The replicas run here, with this environment: torchrun from this interpreter's folder.
        os.environ["PATH"] = procs.child_env()["PATH"]
        cfg = dataclasses.replace(cfg, run_dir=cfg.new_run_dir(system_name))
    handle = runner.run(app(cfg, args.nodes, image, args.gpus_per_node, command), scheduler, cfg=run_cfg)
    print(f"submitted TorchX app {handle}; results: {cfg.run_dir or cfg.results_dir}", flush=True)
    if not args.wait:
        return 0
    return _wait(runner, handle, cfg.run_dir)


def _wait(runner, handle: str, run_dir: str | None, poll_s: float = 1.0) -> int:
    last, shown = None, 0
    while True:
        status = runner.status(handle)
        state = status.state.name if status is not None else "UNKNOWN"
        if state != last:
            print(f"app {handle}: {state}", flush=True)
            last = state
        for line in watch.progress_lines(run_dir, shown) if run_dir else []:
            print(line, flush=True)
            shown += 1
        if status is None or status.is_terminal():
            break
        time.sleep(poll_s)
    if run_dir:
        return watch.exit_code(run_dir, lambda line: print(line, flush=True))
    return 0 if state == "SUCCEEDED" else 1
