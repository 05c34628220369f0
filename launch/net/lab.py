"""Real network shaping between network namespaces (Linux, root): `ttabench netlab`.

    ttabench netlab up --hosts 2 --rate 100mbit            # build the lab, then measure it
    ttabench netlab up --hosts 2 --rate 100mbit --delay 5ms  # + netem delay (needs sch_netem)
    ttabench netlab status [--json]
    ttabench netlab measure                                  # TCP throughput across the link
    ttabench netlab run -- --synthetic --max-steps 10 --batch-size 64
    ttabench netlab down                                     # remove exactly what `up` made

Topology. One namespace per host, ``ttabench-nl-h0`` .. ``ttabench-nl-h{N-1}``,
and a switch namespace ``ttabench-nl-sw`` holding a Linux bridge. Host i has
one veth pair: ``ttanl{i}`` inside its namespace (address 10.231.K.{i+1}/24)
and ``ttanl{i}-sw`` inside the switch namespace, enslaved to the bridge. Every
device is created directly inside its namespace (``ip link add ... netns``),
so the root namespace's interfaces are never touched; the namespaces have no
route beyond their own /24, so nothing but the lab's own addresses (and each
namespace's loopback) can be reached from them.

Shaping. A tbf qdisc shapes the egress of the device it sits on:

- ``ttanl{i}`` (host side) shapes host i's *uplink*: what host i sends;
- ``ttanl{i}-sw`` (switch side, default ``--shape both``) shapes host i's
  *downlink*: what the switch delivers to host i.

With both, every host has a full-duplex link of ``--rate`` to a switch,
like a real NIC port: two senders to one receiver share its downlink.
With ``--shape egress`` only uplinks are shaped, which is enough for a ring
(each host sends to one neighbour) but lets N-to-1 traffic exceed the rate.
Delay (``--delay``, netem, only where the kernel has ``sch_netem``) sits on
the host side only, as the root qdisc with tbf as its child, so a packet
between two hosts is delayed once: one-way delay = DELAY, RTT = 2 x DELAY.
Without sch_netem, ``ttabench run --latency`` emulates latency instead.

tbf's bucket (``--burst``, default max(64 KiB, 2 ms at the rate)) must hold
at least one packet; a bucket much below 2 ms of traffic starves TCP at
gigabit rates on a busy host (1 Gbit/s measured ~720 Mbit/s with 64 KiB,
~940 Mbit/s with 128 KiB on this project's test machine).

State. ``up`` records each object in a state file as soon as it exists
(``$TTABENCH_NETLAB_STATE``, default /run/ttabench-netlab.json). ``down``
deletes exactly the namespaces recorded there (each veth, the bridge and the
qdiscs live inside them and go with them) and then the file. A crash half way
through ``up`` leaves a state file listing what was made, so ``down`` still
cleans up; a failure inside ``up`` removes what it made before reporting.

``netlab run`` starts one ``ttabench run`` node per host namespace (c10d
rendezvous on host 0), with ``GLOO_SOCKET_IFNAME`` naming the namespace's
veth, and puts the shaping into ``$TTABENCH_NETLAB`` (JSON) so the run can
record it (:func:`shaping_from_env`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from ttabench import UserError

PREFIX = "ttabench-nl-"
SWITCH_NS = PREFIX + "sw"
BRIDGE = "ttanl-br"
DEFAULT_STATE = "/run/ttabench-netlab.json"
STATE_ENV = "TTABENCH_NETLAB_STATE"
SHAPING_ENV = "TTABENCH_NETLAB"
DEFAULT_SUBNET = 100  # 10.231.100.0/24
MAX_HOSTS = 32
MIN_BURST = 64 * 1024
BURST_SECONDS = 0.002
TBF_LATENCY = "50ms"  # queue limit of tbf, expressed as time at the rate
MEASURE_PORT = 45201
RDZV_PORT = 29400
# Flags `netlab run` sets for each node itself.
CONTROLLED_RUN_FLAGS = ("--nnodes", "--node-rank", "--rdzv-endpoint", "--local-addr")


def host_ns(i: int) -> str:
    return f"{PREFIX}h{i}"


def host_dev(i: int) -> str:
    return f"ttanl{i}"


def switch_port(i: int) -> str:
    return f"ttanl{i}-sw"


def host_addr(subnet: int, i: int) -> str:
    return f"10.231.{subnet}.{i + 1}"


def state_path() -> str:
    return os.environ.get(STATE_ENV) or DEFAULT_STATE


# -- checks --------------------------------------------------------------------


def require_root(euid: int | None = None) -> None:
    """netlab creates namespaces and qdiscs: root only, with iproute2's ip and tc."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        raise UserError(
            "netlab needs root (it creates network namespaces and tc qdiscs): "
            "run it with sudo, or use emulation (ttabench run --network/--bandwidth)"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise UserError(f"netlab needs iproute2's `{tool}` on PATH (apt-get install iproute2)")


def burst_bytes(rate_bytes_per_s: float, burst: str | None = None) -> int:
    from ttabench.launch.net.link import parse_size

    if burst is not None:
        b = parse_size(burst)
        if b < 2048:
            raise UserError(f"--burst {burst} is smaller than one packet: use at least 2kb")
        return b
    return max(MIN_BURST, int(rate_bytes_per_s * BURST_SECONDS))


NETEM_MISSING = (
    "this kernel has no sch_netem (the netem qdisc module), so netlab cannot add "
    "real delay: leave out --delay and emulate latency with "
    "`ttabench run --bandwidth RATE --latency DELAY` (or --network PROFILE)"
)


def check_netem(run=subprocess.run) -> None:
    """Raise UserError(NETEM_MISSING) unless a netem qdisc can be created.

    Tried for real, in a throwaway namespace (on its loopback), after a
    `modprobe sch_netem` where modprobe exists."""
    if shutil.which("modprobe"):
        run(["modprobe", "sch_netem"], capture_output=True, text=True)
    probe = f"{PREFIX}probe-{os.getpid()}"
    made = run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        raise UserError(f"cannot create a network namespace: {_last_line(made.stderr)}")
    try:
        r = run(
            ["tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            capture_output=True,
            text=True,
        )
    finally:
        run(["ip", "netns", "del", probe], capture_output=True, text=True)
    if r.returncode != 0:
        if "unknown" in r.stderr.lower() or "no such file" in r.stderr.lower():
            raise UserError(NETEM_MISSING)
        raise UserError(f"tc netem failed: {_last_line(r.stderr)}")


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no message)"


# -- the plan: what `up` runs, as plain data ------------------------------------


@dataclass
class Step:
    argv: list[str]
    made: dict | None = None  # recorded in the state file once the step succeeded


@dataclass
class LabSpec:
    hosts: int
    rate: str
    rate_bytes_per_s: float
    burst_bytes: int
    delay: str | None = None
    delay_s: float | None = None
    shape: str = "both"
    subnet: int = DEFAULT_SUBNET
    nodes: list[dict] = field(default_factory=list)

    def describe(self) -> dict:
        """What a run records as its real shaping (passed in $TTABENCH_NETLAB)."""
        return {
            "mechanism": "netlab (network namespaces, veth, tc tbf)",
            "hosts": self.hosts,
            "rate": self.rate,
            "rate_bytes_per_s": self.rate_bytes_per_s,
            "burst_bytes": self.burst_bytes,
            "delay": self.delay,
            "delay_s": self.delay_s,
            "shape": self.shape,
            "subnet": f"10.231.{self.subnet}.0/24",
        }


def make_spec(
    hosts: int,
    rate: str,
    delay: str | None = None,
    burst: str | None = None,
    shape: str = "both",
    subnet: int = DEFAULT_SUBNET,
) -> LabSpec:
    from ttabench.launch.net.link import parse_rate, parse_time

    if not 2 <= hosts <= MAX_HOSTS:
        raise UserError(f"--hosts must be in 2..{MAX_HOSTS}, got {hosts}")
    if not 0 <= subnet <= 255:
        raise UserError(f"--subnet must be in 0..255 (10.231.SUBNET.0/24), got {subnet}")
    if shape not in ("both", "egress"):
        raise UserError(f"--shape must be both or egress, got {shape!r}")
    rate_bps = parse_rate(rate)
    delay_s = None
    if delay is not None:
        delay_s = parse_time(delay)
        if delay_s <= 0:
            raise UserError(f"--delay must be > 0, got {delay!r}")
    spec = LabSpec(hosts, rate, rate_bps, burst_bytes(rate_bps, burst), delay, delay_s, shape, subnet)
    spec.nodes = [
        {
            "namespace": host_ns(i),
            "interface": host_dev(i),
            "switch_port": switch_port(i),
            "address": host_addr(subnet, i),
        }
        for i in range(hosts)
    ]
    return spec


def _tbf(spec: LabSpec) -> list[str]:
    return [
        "tbf",
        "rate",
        f"{int(spec.rate_bytes_per_s * 8)}bit",
        "burst",
        str(spec.burst_bytes),
        "latency",
        TBF_LATENCY,
    ]


def plan(spec: LabSpec) -> list[Step]:
    """Every command `up` runs, in order; each object is recorded once it exists."""
    sw = SWITCH_NS
    steps = [
        Step(["ip", "netns", "add", sw], {"kind": "netns", "name": sw}),
        Step(["ip", "-n", sw, "link", "set", "lo", "up"]),
        Step(
            ["ip", "-n", sw, "link", "add", BRIDGE, "type", "bridge"],
            {"kind": "bridge", "namespace": sw, "name": BRIDGE},
        ),
        Step(["ip", "-n", sw, "link", "set", BRIDGE, "up"]),
    ]
    for i, node in enumerate(spec.nodes):
        ns, dev, port = node["namespace"], node["interface"], node["switch_port"]
        steps += [
            Step(["ip", "netns", "add", ns], {"kind": "netns", "name": ns}),
            Step(["ip", "-n", ns, "link", "set", "lo", "up"]),
            Step(
                ["ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", port, "netns", sw],
                {"kind": "veth", "namespace": ns, "name": dev, "peer_namespace": sw, "peer": port},
            ),
            Step(
                ["ip", "-n", ns, "addr", "add", f"{node['address']}/24", "dev", dev],
                {"kind": "address", "namespace": ns, "dev": dev, "address": f"{node['address']}/24"},
            ),
            Step(["ip", "-n", sw, "link", "set", port, "master", BRIDGE]),
            Step(["ip", "-n", ns, "link", "set", dev, "up"]),
            Step(["ip", "-n", sw, "link", "set", port, "up"]),
        ]
        # Host side: its uplink (what host i sends). netem first, tbf as its child.
        if spec.delay is not None:
            steps.append(
                Step(
                    [
                        "tc",
                        "-n",
                        ns,
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "handle",
                        "1:",
                        "netem",
                        "delay",
                        spec.delay,
                        "limit",
                        str(_netem_limit(spec)),
                    ],
                    {
                        "kind": "qdisc",
                        "namespace": ns,
                        "dev": dev,
                        "qdisc": "netem",
                        "direction": f"uplink of host {i}",
                        "delay": spec.delay,
                    },
                )
            )
            parent = ["parent", "1:1", "handle", "10:"]
        else:
            parent = ["root", "handle", "1:"]
        steps.append(
            Step(
                ["tc", "-n", ns, "qdisc", "add", "dev", dev, *parent, *_tbf(spec)],
                {
                    "kind": "qdisc",
                    "namespace": ns,
                    "dev": dev,
                    "qdisc": "tbf",
                    "direction": f"uplink of host {i}",
                    "rate": spec.rate,
                },
            )
        )
        if spec.shape == "both":  # switch side: host i's downlink
            steps.append(
                Step(
                    ["tc", "-n", sw, "qdisc", "add", "dev", port, "root", "handle", "1:", *_tbf(spec)],
                    {
                        "kind": "qdisc",
                        "namespace": sw,
                        "dev": port,
                        "qdisc": "tbf",
                        "direction": f"downlink of host {i}",
                        "rate": spec.rate,
                    },
                )
            )
    return steps


def _netem_limit(spec: LabSpec) -> int:
    # netem holds every packet for the delay: its queue (packets) must hold
    # rate x delay of full-size packets, or it drops at high rates.
    return max(1000, int(2 * spec.rate_bytes_per_s * (spec.delay_s or 0) / 1500) + 100)


# -- state file ----------------------------------------------------------------


def read_state(path: str | None = None) -> dict | None:
    path = path or state_path()
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(
            f"cannot read the netlab state file {path}: {e} (remove the lab's "
            "namespaces with `ip netns del`, then the file)"
        ) from None


def write_state(state: dict, path: str | None = None) -> None:
    from ttabench.divisions.results import atomic_write_json

    path = path or state_path()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, state)


def recorded_namespaces(state: dict) -> list[str]:
    """The namespaces a state file says the lab made, refusing any name not the lab's own."""
    names = [m["name"] for m in state.get("made", []) if m.get("kind") == "netns"]
    for n in names:
        if not n.startswith(PREFIX) or "/" in n:
            raise UserError(
                f"state file lists namespace {n!r}, which netlab never makes "
                f"(names start with {PREFIX}): refusing to delete it"
            )
    return names


def existing_namespaces(run=subprocess.run) -> list[str]:
    r = run(["ip", "netns", "list"], capture_output=True, text=True)
    return [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]


def lab_namespaces(run=subprocess.run) -> list[str]:
    return [n for n in existing_namespaces(run) if n.startswith(PREFIX)]


# -- up / down -------------------------------------------------------------------


def up(spec: LabSpec, run=subprocess.run, path: str | None = None) -> dict:
    """Build the lab described by `spec`; returns its state (also written to the state file)."""
    path = path or state_path()
    old = read_state(path)
    if old is not None:
        raise UserError(
            f"a netlab is already up ({old.get('hosts')} hosts at {old.get('rate')}, "
            f"state file {path}): run `ttabench netlab down` first"
        )
    stray = lab_namespaces(run)
    if stray:
        raise UserError(
            f"namespaces {', '.join(stray)} exist but no netlab state file ({path}) "
            "records them: remove them with `ip netns del NAME` if they are leftovers"
        )
    if spec.delay is not None:
        check_netem(run)
    state = {
        "version": 1,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "complete": False,
        **spec.describe(),
        "switch": {"namespace": SWITCH_NS, "bridge": BRIDGE},
        "nodes": spec.nodes,
        "made": [],
    }
    write_state(state, path)
    try:
        for step in plan(spec):
            r = run(step.argv, capture_output=True, text=True)
            if r.returncode != 0:
                raise UserError(f"`{' '.join(step.argv)}` failed: {_last_line(r.stderr)}")
            if step.made is not None:
                state["made"].append(step.made)
                write_state(state, path)
    except BaseException:
        _remove(state, run)
        os.unlink(path)
        raise
    state["complete"] = True
    write_state(state, path)
    return state


def _remove(state: dict, run=subprocess.run) -> list[str]:
    """Delete the recorded namespaces (newest first); returns those that were there."""
    present = set(existing_namespaces(run))
    removed = []
    for ns in reversed(recorded_namespaces(state)):
        if ns in present:
            r = run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if r.returncode != 0:
                raise UserError(f"cannot delete namespace {ns}: {_last_line(r.stderr)}")
            removed.append(ns)
    return removed


def down(run=subprocess.run, path: str | None = None) -> tuple[list[str], list[str]]:
    """Remove exactly what the state file records. Returns (removed, already gone)."""
    path = path or state_path()
    state = read_state(path)
    if state is None:
        return [], []
    recorded = recorded_namespaces(state)
    removed = _remove(state, run)
    os.unlink(path)
    return removed, [n for n in recorded if n not in removed]


def load_lab(path: str | None = None) -> dict:
    path = path or state_path()
    state = read_state(path)
    if state is None:
        raise UserError(
            f"no netlab is up (no state file at {path}): "
            "run `ttabench netlab up --hosts 2 --rate 100mbit` first"
        )
    if not state.get("complete"):
        raise UserError(
            f"the netlab in {path} was not completely built: `ttabench netlab down`, then `up` again"
        )
    return state


# -- measuring the link ------------------------------------------------------------


def measure_pair(
    state: dict, src: int, dst: int, nbytes: int, seconds: float, port: int = MEASURE_PORT
) -> dict:
    """TCP throughput from host `src` to host `dst`: at most `nbytes` or `seconds`."""
    nodes = state["nodes"]
    py = [sys.executable, "-m", "ttabench.launch.net.lab"]
    dst_addr = nodes[dst]["address"]
    recv = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            nodes[dst]["namespace"],
            *py,
            "_recv",
            dst_addr,
            str(port),
            str(seconds + 10),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if recv.stdout.readline().strip() != "ready":
            raise UserError(
                f"throughput receiver in {nodes[dst]['namespace']} did not start: "
                f"{_last_line(recv.stderr.read())}"
            )
        send = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                nodes[src]["namespace"],
                *py,
                "_send",
                dst_addr,
                str(port),
                str(nbytes),
                str(seconds),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        if send.returncode != 0:
            raise UserError(f"throughput sender failed: {_last_line(send.stderr)}")
        out, err = recv.communicate(timeout=seconds + 30)
        if recv.returncode != 0:
            raise UserError(f"throughput receiver failed: {_last_line(err)}")
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    r = json.loads(out.strip().splitlines()[-1])
    bits = 8 * r["bytes"] / r["seconds"] if r["seconds"] > 0 else None
    return {
        "from": nodes[src]["namespace"],
        "to": nodes[dst]["namespace"],
        "bytes": r["bytes"],
        "seconds": r["seconds"],
        "bits_per_s": bits,
        "ratio": bits / (8 * state["rate_bytes_per_s"]) if bits else None,
    }


def measure(state: dict, nbytes: int = 8 * 1024**2, seconds: float = 5.0) -> list[dict]:
    """Host 0 -> host 1 and back: both directions cross an uplink and a downlink."""
    return [measure_pair(state, 0, 1, nbytes, seconds), measure_pair(state, 1, 0, nbytes, seconds)]


def _recv_main(addr: str, port: int, timeout: float) -> int:
    """Inside the receiving namespace: accept one connection, count bytes until EOF."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(1)
        s.settimeout(timeout)
        print("ready", flush=True)
        conn, _ = s.accept()
        with conn:
            conn.settimeout(timeout)
            got, got_first, first, last = 0, 0, None, None
            while True:
                b = conn.recv(1 << 20)
                if not b:
                    break
                last = time.perf_counter()
                if first is None:
                    first = last
                    got_first = len(b)
                got += len(b)
    # The first read's bytes arrived at `first`: they are not part of the timed span.
    print(json.dumps({"bytes": got - got_first, "seconds": (last - first) if first else 0.0}))
    return 0


def _send_main(addr: str, port: int, nbytes: int, seconds: float) -> int:
    """Inside the sending namespace: send until `nbytes` are sent or `seconds` passed."""
    buf = b"\0" * (64 * 1024)
    deadline = time.perf_counter() + seconds
    with socket.create_connection((addr, port), timeout=seconds + 10) as s:
        sent = 0
        while sent < nbytes and time.perf_counter() < deadline:
            sent += s.send(buf[: min(len(buf), nbytes - sent)])
    return 0


def format_measurements(state: dict, rows: list[dict]) -> str:
    out = []
    for r in rows:
        got = f"{r['bits_per_s'] / 1e6:.1f} Mbit/s" if r["bits_per_s"] else "-"
        ratio = f"{r['ratio']:.2f}x the configured rate" if r["ratio"] else "-"
        out.append(
            f"measured {r['from']} -> {r['to']}: {got} ({r['bytes'] / 1e6:.1f} MB in "
            f"{r['seconds']:.2f} s); configured {state['rate']} = "
            f"{8 * state['rate_bytes_per_s'] / 1e6:g} Mbit/s: {ratio}"
        )
    return "\n".join(out)


# -- running a job across the lab ------------------------------------------------


def shaping_from_env(environ=None) -> dict | None:
    """The real shaping a run crosses, as `netlab run` describes it in $TTABENCH_NETLAB."""
    raw = (os.environ if environ is None else environ).get(SHAPING_ENV)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return {"unparsed": raw}


def node_commands(
    state: dict, run_args: list[str], port: int = RDZV_PORT, threads: int | None = None
) -> list[tuple[list[str], dict]]:
    """(argv, extra environment) of each node's `ttabench run`."""
    for a in run_args:
        if a.split("=")[0] in CONTROLLED_RUN_FLAGS:
            raise UserError(f"netlab run sets {a.split('=')[0]} for each node itself: leave it out")
    nodes = state["nodes"]
    endpoint = f"{nodes[0]['address']}:{port}"
    shaping = {
        k: state.get(k)
        for k in (
            "mechanism",
            "hosts",
            "rate",
            "rate_bytes_per_s",
            "burst_bytes",
            "delay",
            "delay_s",
            "shape",
            "subnet",
        )
    }
    if state.get("measured"):
        shaping["measured_bits_per_s"] = [m["bits_per_s"] for m in state["measured"]]
    extra = (
        ["--threads", str(threads)]
        if threads and not any(a.split("=")[0] == "--threads" for a in run_args)
        else []
    )
    out = []
    for i, node in enumerate(nodes):
        argv = [
            "ip",
            "netns",
            "exec",
            node["namespace"],
            sys.executable,
            "-m",
            "ttabench",
            "run",
            "--nnodes",
            str(len(nodes)),
            "--node-rank",
            str(i),
            "--rdzv-endpoint",
            endpoint,
            "--local-addr",
            node["address"],
            *extra,
            *run_args,
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


def check_run_args(run_args: list[str], nnodes: int) -> None:
    """Parse the run flags as `ttabench run` would, before any node starts."""
    from ttabench.launch.config import add_arguments, from_args

    p = argparse.ArgumentParser(prog="ttabench netlab run --", add_help=False, exit_on_error=False)
    add_arguments(p)
    try:
        ns = p.parse_args(run_args + ["--nnodes", str(nnodes), "--rdzv-endpoint", "x:1"])
    except (argparse.ArgumentError, SystemExit) as e:
        raise UserError(f"bad `ttabench run` flags after --: {e}") from None
    from_args(ns).validate()


def run_nodes(
    commands: list[tuple[list[str], dict]], timeout: float | None = None, poll_s: float = 0.2
) -> int:
    """Start every node, wait for all; when one fails, stop the others. Returns the exit code."""
    procs = []
    for argv, env in commands:
        procs.append(subprocess.Popen(argv, env=dict(os.environ, **env), start_new_session=True))
    deadline = None if timeout is None else time.monotonic() + timeout
    code = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                print(
                    f"ttabench: netlab run: node {i} exited with code {code}; stopping the others",
                    file=sys.stderr,
                )
                break
            if all(c == 0 for c in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                print(
                    f"ttabench: netlab run: timed out after {timeout:g} s; stopping the nodes",
                    file=sys.stderr,
                )
                code = 124
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        code = 130
    _stop(procs)
    return code


def _stop(procs, grace_s: float = 10.0) -> None:
    """SIGTERM each node's process group (its agent and workers), SIGKILL what remains."""
    for p in procs:
        if p.poll() is None:
            _killpg(p.pid, signal.SIGTERM)
    end = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        _killpg(p.pid, signal.SIGKILL)  # stragglers of the group, even if the leader exited
        p.wait()


def _killpg(pgid: int, sig) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def default_threads(nodes: int, run_args: list[str]) -> int:
    """All nodes share this machine: split its cores between every worker of every node."""
    from ttabench.launch.record import system

    workers = 1
    for i, a in enumerate(run_args):
        if a == "--workers" and i + 1 < len(run_args):
            workers = int(run_args[i + 1])
        elif a.startswith("--workers="):
            workers = int(a.split("=", 1)[1])
    return max(1, system.usable_cores() // max(1, nodes * workers))


# -- CLI -------------------------------------------------------------------------


def _print_state(state: dict, path: str, live: bool) -> None:
    shaped = "uplink and downlink" if state["shape"] == "both" else "uplink only"
    print(
        f"netlab: {state['hosts']} hosts, rate {state['rate']} "
        f"(tbf, burst {state['burst_bytes']} B, shaped: {shaped}), "
        f"delay {state['delay'] or 'none'}; state file {path}"
        + ("" if state.get("complete") else " [INCOMPLETE: run `ttabench netlab down`]")
    )
    present = set(existing_namespaces()) if live else set()
    for n in state["nodes"]:
        mark = "" if not live else ("" if n["namespace"] in present else "  [namespace missing]")
        print(
            f"  {n['namespace']}: {n['interface']} {n['address']}/24 <-> "
            f"{SWITCH_NS}/{n['switch_port']} on bridge {BRIDGE}{mark}"
        )
    if live:
        for m in state.get("made", []):
            if m["kind"] == "qdisc" and m["namespace"] in present:
                r = subprocess.run(
                    ["tc", "-n", m["namespace"], "qdisc", "show", "dev", m["dev"]],
                    capture_output=True,
                    text=True,
                )
                for line in r.stdout.strip().splitlines():
                    print(f"  {m['namespace']}/{m['dev']} ({m['direction']}): {line.strip()}")
    for r in state.get("measured") or []:
        print("  " + format_measurements(state, [r]))


def _cmd_up(args) -> int:
    require_root()
    spec = make_spec(args.hosts, args.rate, args.delay, args.burst, args.shape, args.subnet)
    state = up(spec)
    path = state_path()
    _print_state(state, path, live=False)
    if not args.no_measure:
        from ttabench.launch.net.link import parse_size

        state["measured"] = measure(state, parse_size(args.measure_bytes), args.measure_seconds)
        write_state(state, path)
        print(format_measurements(state, state["measured"]))
    return 0


def _cmd_down(args) -> int:
    require_root()
    path = state_path()
    removed, gone = down(path=path)
    if not removed and not gone:
        stray = lab_namespaces()
        print(
            f"netlab: nothing to remove (no state file at {path})"
            + (f"; namespaces {', '.join(stray)} are not recorded there and were left alone" if stray else "")
        )
        return 0
    print(
        f"netlab: removed {', '.join(removed) or 'nothing'}"
        + (f"; already gone: {', '.join(gone)}" if gone else "")
        + f"; deleted {path}"
    )
    return 0


def _cmd_status(args) -> int:
    path = state_path()
    state = read_state(path)
    if args.json:
        print(json.dumps(state, indent=2))
        return 0 if state is not None else 1
    if state is None:
        print(f"netlab: none up (no state file at {path})")
        return 1
    _print_state(state, path, live=os.geteuid() == 0)
    return 0


def _cmd_measure(args) -> int:
    require_root()
    from ttabench.launch.net.link import parse_size

    state = load_lab()
    rows = measure(state, parse_size(args.bytes), args.seconds)
    state["measured"] = rows
    write_state(state)
    print(json.dumps(rows, indent=2) if args.json else format_measurements(state, rows))
    return 0


def _cmd_run(args) -> int:
    require_root()
    state = load_lab()
    run_args = list(args.run_args)
    if run_args[:1] == ["--"]:
        run_args = run_args[1:]
    check_run_args(run_args, state["hosts"])
    threads = default_threads(state["hosts"], run_args)
    commands = node_commands(state, run_args, port=args.port, threads=threads)
    print(
        f"netlab run: {state['hosts']} nodes at {state['rate']}, rendezvous "
        f"{state['nodes'][0]['address']}:{args.port}",
        flush=True,
    )
    return run_nodes(commands, timeout=args.timeout)


def add_commands(sub) -> None:
    n = sub.add_parser(
        "netlab",
        help="real network shaping between network namespaces (root)",
        description=__doc__.split("\n\n")[0],
    )
    nsub = n.add_subparsers(dest="netlab_command", required=True, metavar="ACTION")

    u = nsub.add_parser("up", help="create namespaces joined by shaped veths, then measure")
    u.add_argument("--hosts", type=int, default=2, help="host namespaces (default 2)")
    u.add_argument("--rate", required=True, help="link rate per host, tc units (100mbit, 1gbit)")
    u.add_argument("--delay", help="one-way delay added by netem (needs sch_netem), e.g. 5ms")
    u.add_argument("--burst", help="tbf bucket, tc size units (default max(64kb, 2 ms at RATE))")
    u.add_argument(
        "--shape",
        choices=("both", "egress"),
        default="both",
        help="both: each host's uplink and downlink (default); egress: uplinks only",
    )
    u.add_argument(
        "--subnet",
        type=int,
        default=DEFAULT_SUBNET,
        help=f"addresses 10.231.SUBNET.1..N (default {DEFAULT_SUBNET})",
    )
    u.add_argument("--no-measure", action="store_true", help="skip the throughput measurement")
    u.add_argument("--measure-bytes", default="8mb", help="bytes per direction measured (8mb)")
    u.add_argument("--measure-seconds", type=float, default=5.0, help="time cap per direction")
    u.set_defaults(func=_cmd_up)

    d = nsub.add_parser("down", help="remove exactly what `netlab up` made")
    d.set_defaults(func=_cmd_down)

    s = nsub.add_parser("status", help="print the lab's state (and its live qdiscs as root)")
    s.add_argument("--json", action="store_true", help="print the state file")
    s.set_defaults(func=_cmd_status)

    m = nsub.add_parser("measure", help="TCP throughput host 0 -> 1 and back, beside the rate")
    m.add_argument("--bytes", default="8mb", help="at most this much per direction (8mb)")
    m.add_argument("--seconds", type=float, default=5.0, help="at most this long per direction")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_measure)

    r = nsub.add_parser(
        "run",
        help="one `ttabench run` node per host namespace",
        description="ttabench netlab run [--port P] -- RUN FLAGS: one node per "
        "host namespace, rendezvous on host 0.",
    )
    r.add_argument("--port", type=int, default=RDZV_PORT, help="rendezvous port on host 0")
    r.add_argument("--timeout", type=float, help="stop all nodes after this many seconds")
    r.add_argument(
        "run_args",
        nargs=argparse.REMAINDER,
        metavar="-- RUN FLAGS",
        help="flags of `ttabench run` (e.g. --synthetic --max-steps 10)",
    )
    r.set_defaults(func=_cmd_run)


def _helper_main(argv: list[str]) -> int:
    """`python -m ttabench.launch.net.lab _recv|_send ...`: the measurement's two ends."""
    if argv[:1] == ["_recv"]:
        return _recv_main(argv[1], int(argv[2]), float(argv[3]))
    if argv[:1] == ["_send"]:
        return _send_main(argv[1], int(argv[2]), int(argv[3]), float(argv[4]))
    print(
        "usage: python -m ttabench.launch.net.lab _recv ADDR PORT TIMEOUT | _send ADDR PORT BYTES SECONDS",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
