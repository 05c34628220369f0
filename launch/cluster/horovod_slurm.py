"""Horovod across the nodes of a Slurm allocation, started with srun instead of ssh.

horovodrun reaches other hosts over ssh, which compute nodes of a cluster
often do not allow between each other. Inside an allocation ttabench does
what horovodrun's gloo mode does, with srun as the remote shell:

- the launcher (one, on the allocation's first node, started by the sbatch
  script) starts Horovod's HTTP rendezvous server and gives it the plan:
  every node of the allocation with --workers slots, ranks node by node, as
  ``horovodrun -H n0:W,n1:W`` assigns them;
- one ``srun --ntasks-per-node=W`` starts a small task on every slot, which
  works out its Horovod ranks from Slurm's (SLURM_NODEID, SLURM_LOCALID), sets
  Horovod's gloo environment (the rendezvous address and port, the interface
  on the route to it) and becomes the ordinary worker module;
- every node's host name must resolve to its cluster address (Horovod 0.28
  finds a process set's address by host name, whatever HOROVOD_GLOO_IFACE
  says); a task whose name resolves to loopback stops with one line;
- srun's own lines (``srun: error: NODE: task K: Exited with exit code C``)
  say which rank ended how; ``--kill-on-bad-exit=1`` stops the others when one
  fails, so the job ends promptly.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import sys

from ttabench import UserError
from ttabench.launch import procs
from ttabench.launch.config import RunConfig
from ttabench.launch.net import iface
from ttabench.launch.record.jobenv import expand_hostlist

TASK_MODULE = "ttabench.launch.cluster.horovod_slurm"


@dataclasses.dataclass(frozen=True)
class Slot:
    """One worker's place in Horovod's plan (horovodrun's SlotInfo)."""

    hostname: str
    rank: int
    local_rank: int
    cross_rank: int
    size: int
    local_size: int
    cross_size: int


def plan(nodes: list[str], workers: int) -> list[Slot]:
    """Every slot, ranks node by node: what horovodrun -H n0:W,n1:W,... assigns."""
    size = len(nodes) * workers
    return [
        Slot(host, i * workers + local, local, i, size, workers, len(nodes))
        for i, host in enumerate(nodes)
        for local in range(workers)
    ]


def slot_env(slot: Slot, addr: str, port: int, nic: str) -> dict[str, str]:
    """Horovod's environment of one worker with the gloo controller (as horovodrun sets it)."""
    return {
        "HOROVOD_HOSTNAME": slot.hostname,
        "HOROVOD_RANK": str(slot.rank),
        "HOROVOD_SIZE": str(slot.size),
        "HOROVOD_LOCAL_RANK": str(slot.local_rank),
        "HOROVOD_LOCAL_SIZE": str(slot.local_size),
        "HOROVOD_CROSS_RANK": str(slot.cross_rank),
        "HOROVOD_CROSS_SIZE": str(slot.cross_size),
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": addr,
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(port),
        "HOROVOD_CONTROLLER": "gloo",
        "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_IFACE": nic,
        "PYTHONUNBUFFERED": "1",
    }


def allocation_nodes(nnodes: int, environ=None) -> list[str]:
    """The first `nnodes` nodes of the Slurm allocation this process runs in."""
    env = os.environ if environ is None else environ
    if not env.get("SLURM_JOB_ID"):
        raise UserError(
            "--backend horovod on several nodes runs inside a Slurm allocation "
            "(ttabench submit --scheduler slurm --backend horovod --nodes N); elsewhere start it "
            "with horovodrun -H host1:n,host2:n ... python -m ttabench.launch.worker --backend horovod"
        )
    nodes = expand_hostlist(env.get("SLURM_JOB_NODELIST", ""))
    if len(nodes) < nnodes:
        raise UserError(f"--nnodes {nnodes}, but the Slurm allocation has {len(nodes)} node(s): {nodes}")
    return nodes[:nnodes]


# srun: error: ttanode1: task 1: Exited with exit code 3 | tasks 0-1: Killed | task 0: Segmentation fault
_SRUN_END = re.compile(r"srun: error: (\S+): tasks? ([\d,\-]+): (.+?)\s*$")
_EXIT = re.compile(r"Exited with exit code (\d+)")
# How srun words a task's death by signal (strsignal), and the signal's name.
SIGNAL_WORDS = {
    "Killed": "SIGKILL",
    "Terminated": "SIGTERM",
    "Segmentation fault": "SIGSEGV",
    "Aborted": "SIGABRT",
    "Interrupt": "SIGINT",
    "Bus error": "SIGBUS",
}


def srun_ends(line: str) -> list[dict]:
    """The ranks an srun error line reports as ended, as the launcher records them."""
    m = _SRUN_END.search(line)
    if not m:
        return []
    node, tasks, what = m.groups()
    code = _EXIT.fullmatch(what)
    if code is None and what not in SIGNAL_WORDS:
        return []  # another srun error about these tasks, not how they ended
    exitcode, sig = (int(code.group(1)), None) if code else (-1, SIGNAL_WORDS[what])
    ranks = []
    for part in tasks.split(","):
        lo, _, hi = part.partition("-")
        ranks += [
            {"rank": rank, "exitcode": exitcode, "signal": sig, "message": f"on {node}"}
            for rank in range(int(lo), int(hi or lo) + 1)
        ]
    return ranks


def launch(cfg: RunConfig, worker_args: list[str]):
    """Start every worker of a multi-node Horovod run with srun; (exit code, ranks, interrupted)."""
    # Imported here: Horovod is an optional dependency (scripts/install_horovod.sh).
    try:
        from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts
        from horovod.runner.http.http_server import RendezvousServer
    except ImportError as e:
        raise UserError(
            f"--backend horovod: Horovod is not installed ({e}); see scripts/install_horovod.sh"
        ) from e
    srun = shutil.which("srun")
    if srun is None:
        raise UserError("`srun` is not on PATH: --backend horovod on several nodes runs inside a Slurm job")
    nodes = allocation_nodes(cfg.nnodes)
    addr = iface.resolve(iface.endpoint_host(cfg.rdzv_endpoint), "the rendezvous host")
    server = RendezvousServer()
    port = server.start()
    try:
        server.init(
            get_host_assignments(
                parse_hosts(",".join(f"{n}:{cfg.workers}" for n in nodes)), len(nodes) * cfg.workers
            )
        )
        cpus = max(1, int(os.environ.get("SLURM_CPUS_ON_NODE", "1")) // cfg.workers)
        cmd = [
            srun,
            f"--nodes={len(nodes)}",
            f"--nodelist={','.join(nodes)}",
            f"--ntasks-per-node={cfg.workers}",
            "--distribution=block",  # srun's task ids are then Horovod's ranks
            f"--cpus-per-task={cpus}",
            "--kill-on-bad-exit=1",
            sys.executable, "-m", TASK_MODULE, addr, str(port), str(cfg.workers), "--", *worker_args,
        ]  # fmt: skip
        ranks: list[dict] = []

        def read(line: str) -> None:
            sys.stdout.write(line)
            ranks.extend(srun_ends(line))

        _, result = procs.run(cmd, on_line=read)
    finally:
        server.stop()
    return result.code, ranks, result.interrupted


def check_host_name(name: str) -> None:
    """Horovod 0.28 finds a process set's address by the host name, not HOROVOD_GLOO_IFACE: a
    name that resolves to loopback makes every other node connect to its own 127.0.0.1."""
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        addr = None
    if addr is None or addr.startswith("127."):
        where = "does not resolve" if addr is None else f"resolves to {addr}"
        print(
            f"ttabench: error: this node's host name {name} {where}: Horovod across nodes needs it "
            "to resolve to the node's cluster address (DNS or /etc/hosts), or use --backend torchrun",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2)


def task_main(argv: list[str], environ=None) -> None:
    """One srun task: Horovod's environment from Slurm's, then the worker module in its place."""
    env = dict(os.environ if environ is None else environ)
    addr, port, workers, sep, *worker_args = argv
    if sep != "--":
        raise SystemExit(f"usage: python -m {TASK_MODULE} ADDR PORT WORKERS -- WORKER_ARGS")
    nodes = expand_hostlist(env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"])
    node, local = int(env["SLURM_NODEID"]), int(env["SLURM_LOCALID"])
    slot = plan(nodes, int(workers))[node * int(workers) + local]
    nic, _ = iface.pick(None, addr, "the Horovod rendezvous host")
    if len(nodes) > 1:
        check_host_name(socket.gethostname())
    env.update(slot_env(slot, addr, int(port), nic))
    env["GLOO_SOCKET_IFNAME"] = nic  # the launcher's node named its own interface
    python = sys.executable
    os.execve(python, [python, "-m", "ttabench.launch.worker", *worker_args], env)


if __name__ == "__main__":
    task_main(sys.argv[1:])
