"""What a run records about the scheduler that started it, read from the job's own environment.

Rank 0 puts this into config.json as ``"scheduler"``: the scheduler, the job
id and the nodes the job really ran on (not what was asked for).
"""

from __future__ import annotations

import json
import os
import re

from ttabench.divisions.results import safe_name
from ttabench.launch import system

SUBMIT_COMMAND_ENV = "TTABENCH_SUBMIT_COMMAND"


def cluster_system_name(cfg) -> str:
    """The <system> of a submitted run's path: --system, else this machine's hardware name
    (the submitting machine's: name the cluster with --system where they differ)."""
    return safe_name(system.system_name(cfg.system))


def expand_hostlist(spec: str) -> list[str]:
    """Slurm's compressed host list -> names: 'n[0-2,5],gpu7' -> ['n0', 'n1', 'n2', 'n5', 'gpu7']."""
    names: list[str] = []
    for prefix, ranges, single in re.findall(r"([^,\[]+)\[([^\]]*)\]|([^,\[\]]+)", spec):
        if single:
            names.append(single)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            if not hi:
                names.append(prefix + lo)
                continue
            width = len(lo)  # zero padding is kept: n[08-10] -> n08, n09, n10
            names += [f"{prefix}{i:0{width}d}" for i in range(int(lo), int(hi) + 1)]
    return names


def from_env(environ=None) -> dict | None:
    """{"name": "slurm", "job_id", "nodes", ...} inside a Slurm job; TorchX's app id where
    TorchX started the run; None otherwise."""
    env = os.environ if environ is None else environ
    out: dict | None = None
    if env.get("SLURM_JOB_ID"):
        nodelist = env.get("SLURM_JOB_NODELIST", "")
        out = {
            "name": "slurm",
            "job_id": env["SLURM_JOB_ID"],
            "cluster": env.get("SLURM_CLUSTER_NAME"),
            "partition": env.get("SLURM_JOB_PARTITION"),
            "node_list": nodelist,
            "nodes": expand_hostlist(nodelist),
            "num_nodes": int(env.get("SLURM_JOB_NUM_NODES") or len(expand_hostlist(nodelist))),
        }
    elif env.get("TORCHX_APP_ID") or env.get("TORCHX_JOB_ID"):
        out = {"name": "torchx", "job_id": env.get("TORCHX_JOB_ID") or env.get("TORCHX_APP_ID")}
    if out is not None and env.get(SUBMIT_COMMAND_ENV):
        try:
            out["submit_command"] = json.loads(env[SUBMIT_COMMAND_ENV])
        except ValueError:
            out["submit_command"] = env[SUBMIT_COMMAND_ENV]
    return out
