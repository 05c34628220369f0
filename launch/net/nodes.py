"""Running ttabench across the network lab: `ttabench netlab run`.

One `ttabench run` node per host namespace, joined by a c10d rendezvous on
host 0 (``--nnodes/--node-rank/--rdzv-endpoint/--local-addr`` are set per
node). Each node's gloo (or NCCL) traffic is pinned to its namespace's veth
(``GLOO_SOCKET_IFNAME``), and the lab's shaping goes into
``$TTABENCH_NETLAB`` (JSON) so the run records it
(:func:`ttabench.launch.net.lab.shaping_from_env`). All nodes share this
machine, so unless ``--threads`` is given the cores are split between every
worker of every node.
"""

from __future__ import annotations

import json
import sys

from ttabench.launch import procs, system
from ttabench.launch.flags import RunArgs, parse_run_args
from ttabench.launch.net.lab import SHAPING_ENV, shaping_of

RDZV_PORT = 29400
# Flags `netlab run` sets for each node itself.
CONTROLLED_RUN_FLAGS = ("--nnodes", "--node-rank", "--rdzv-endpoint", "--local-addr")


def check_run_args(run_args: list[str], nnodes: int) -> RunArgs:
    """Parse the run flags as `ttabench run` would, before any node starts."""
    return parse_run_args(
        run_args,
        owner="netlab run",
        unit="node",
        controlled=CONTROLLED_RUN_FLAGS,
        fixed=["--nnodes", str(nnodes), "--rdzv-endpoint", "x:1"],
    )


def default_threads(nodes: int, run: RunArgs) -> int:
    """All nodes share this machine: split its cores between every worker of every node."""
    return max(1, system.usable_cores() // max(1, nodes * run.config.workers))


def node_commands(
    state: dict, run: RunArgs, port: int = RDZV_PORT, threads: int | None = None
) -> list[tuple[list[str], dict]]:
    """(argv, extra environment) of each node's `ttabench run`; `threads` unless the flags set them."""
    nodes = state["nodes"]
    endpoint = f"{nodes[0]['address']}:{port}"
    shaping = shaping_of(state)
    extra = ["--threads", str(threads)] if threads and "threads" not in run.given else []
    out = []
    for i, node in enumerate(nodes):
        argv = [
            *("ip", "netns", "exec", node["namespace"]),
            *(sys.executable, "-m", "ttabench", "run"),
            *("--nnodes", str(len(nodes)), "--node-rank", str(i)),
            *("--rdzv-endpoint", endpoint, "--local-addr", node["address"]),
            *extra,
            *run.argv,
        ]
        env = {
            "GLOO_SOCKET_IFNAME": node["interface"],
            "NCCL_SOCKET_IFNAME": node["interface"],
            # NCCL would otherwise move data between local GPUs without the veth.
            "NCCL_P2P_DISABLE": "1",
            "NCCL_SHM_DISABLE": "1",
            "NCCL_IB_DISABLE": "1",
            SHAPING_ENV: json.dumps(dict(shaping, node=i)),
        }
        out.append((argv, env))
    return out


def run_nodes(commands: list[tuple[list[str], dict]], timeout: float | None = None) -> int:
    """Start every node, wait for all; when one fails, stop the others. Returns the exit code."""

    def failed(i: int, code: int) -> None:
        print(f"ttabench: netlab run: node {i} exited with code {code}; stopping the others", file=sys.stderr)

    # Started under procs' signal handling: Ctrl-C or SIGTERM while nodes start stops those started.
    _, result = procs.run_all(
        [(argv, {"env": env}) for argv, env in commands], timeout=timeout, on_failure=failed
    )
    if result.timed_out:
        print(f"ttabench: netlab run: timed out after {timeout:g} s; stopped the nodes", file=sys.stderr)
    return result.code
