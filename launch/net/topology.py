"""The network lab's topology and the commands that build it, as plain data (no side effects).

Topology. One namespace per host, ``ttabench-nl-h0`` .. ``ttabench-nl-h{N-1}``,
and a switch namespace ``ttabench-nl-sw`` holding a Linux bridge. A named lab
(``--lab NAME`` or ``$TTABENCH_NETLAB_NAME``; NAME lower-case letters and digits)
uses the prefix ``ttabench-nlNAME-`` instead, so several labs (a bench's, a
test's, the default one) live side by side: no lab's prefix begins another's.
The devices and addresses inside the namespaces are the same in every lab. Host i has
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

TCP. Every host namespace gets its own congestion control (``--congestion-control``,
default cubic, Linux's default), set with sysctl inside the namespace once it
exists. A new namespace otherwise inherits the root namespace's choice, which
differs between machines (bbr on this project's test machine) and changes what
a shaped link measures: with bbr, 4 TCP flows on one 100 Mbit/s tbf link took
1.16x the time of their bytes at the rate, with cubic 1.01-1.04x
(results/predict/exchange-order/congestion-control/).

tbf's bucket (``--burst``, default max(64 KiB, 2 ms at the rate)) must hold
at least one packet; a bucket much below 2 ms of traffic starves TCP at
gigabit rates on a busy host (1 Gbit/s measured ~720 Mbit/s with 64 KiB,
~940 Mbit/s with 128 KiB on this project's test machine).

tbf's queue (``--queue``, tc's ``latency``: how long a packet may wait at the
rate before tbf drops it; default 5 ms) is the link's buffer, which TCP
(cubic) keeps full. The model has no queueing delay, and a deep queue adds
one: at 20 Mbit/s, 4 and 8 hosts, ring-exchange and neighbour-exchange took
1.00-1.32x the model with 50 ms and 0.98-1.09x with 5 ms; the all-reduce ring
0.98-1.01x with both (results/predict/exchange-order/tbf-queue/). Why is not
measured; a lead: ACKs and receive announcements wait behind the data queued
the other way. With 50 ms, 16 hosts at 100 Mbit/s also kept this machine's
softirq busy 41 % of the time (3 % with 5 ms). Labs before the queue was
recorded (their config or JSON has no ``queue``) ran with 50 ms.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ttabench import UserError
from ttabench.launch.net.link import parse_rate, parse_size, parse_time

PREFIX = "ttabench-nl-"  # the default (unnamed) lab's namespaces
SWITCH_NS = PREFIX + "sw"
LAB_PREFIX = "ttabench-nl"  # every lab's namespaces start with this
NAME_ENV = "TTABENCH_NETLAB_NAME"
MAX_NAME = 12
BRIDGE = "ttanl-br"
DEFAULT_SUBNET = 100  # 10.231.100.0/24
MAX_HOSTS = 32
MIN_BURST = 64 * 1024
BURST_SECONDS = 0.002
DEFAULT_QUEUE = "5ms"  # tbf's queue limit (its `latency`): how long a packet may wait at the rate
MAX_QUEUE_S = 10.0
DEFAULT_CONGESTION_CONTROL = "cubic"
AVAILABLE_CONGESTION_CONTROL = "/proc/sys/net/ipv4/tcp_available_congestion_control"
# what a network namespace other than the host's may choose (the kernel refuses the rest, EPERM)
ALLOWED_CONGESTION_CONTROL = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"


def lab_name(name: str | None = None, environ=None) -> str | None:
    """The lab's name: `name` (--lab), else $TTABENCH_NETLAB_NAME, else None (the default lab)."""
    environ = os.environ if environ is None else environ
    name = name if name is not None else environ.get(NAME_ENV) or None
    if name is not None and not re.fullmatch(f"[a-z0-9]{{1,{MAX_NAME}}}", name):
        raise UserError(
            f"lab name {name!r} must be 1-{MAX_NAME} lower-case letters or digits (--lab, ${NAME_ENV})"
        )
    return name


def prefix(name: str | None = None) -> str:
    """The namespaces' prefix of lab `name`: ttabench-nl- (default lab) or ttabench-nlNAME-."""
    return PREFIX if name is None else f"{LAB_PREFIX}{name}-"


def switch_ns(name: str | None = None) -> str:
    return prefix(name) + "sw"


def host_ns(i: int, name: str | None = None) -> str:
    return f"{prefix(name)}h{i}"


def host_dev(i: int) -> str:
    return f"ttanl{i}"


def switch_port(i: int) -> str:
    return f"ttanl{i}-sw"


def host_addr(subnet: int, i: int) -> str:
    return f"10.231.{subnet}.{i + 1}"


def burst_bytes(rate_bytes_per_s: float, burst: str | None = None) -> int:
    if burst is not None:
        b = parse_size(burst)
        if b < 2048:
            raise UserError(f"--burst {burst} is smaller than one packet: use at least 2kb")
        return b
    return max(MIN_BURST, int(rate_bytes_per_s * BURST_SECONDS))


def available_congestion_controls(path: str = AVAILABLE_CONGESTION_CONTROL) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def check_queue(queue: str) -> str:
    """--queue: a time tc takes (a number and s, ms or us), above 0 and at most 10 s."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?(s|ms|us)", queue):
        raise UserError(f"--queue takes a time such as 5ms or 50ms, got {queue!r}")
    if not 0 < parse_time(queue) <= MAX_QUEUE_S:
        raise UserError(f"--queue must be above 0 and at most {MAX_QUEUE_S:g} s, got {queue!r}")
    return queue


def check_congestion_control(name: str, available: list[str] | None = None) -> str:
    """`name` if this kernel offers it, else one clear error (the lab is not built)."""
    available = available_congestion_controls() if available is None else available
    if name not in available:
        offered = " ".join(available) or f"none listed in {AVAILABLE_CONGESTION_CONTROL}"
        raise UserError(
            f"--congestion-control {name!r} is not available on this kernel (available: {offered}; "
            f"another needs its module loaded: modprobe tcp_{name})"
        )
    return name


def check_allowed(name: str, allowed: list[str]) -> None:
    """One clear error if the host keeps network namespaces from choosing `name`: a namespace
    may only pick what net.ipv4.tcp_allowed_congestion_control lists (seen: "reno bbr" on a host
    whose own default is bbr, cubic available); the kernel refuses the rest (EPERM). An empty
    list (not readable) checks nothing."""
    if allowed and name not in allowed:
        listed = " ".join(allowed)
        raise UserError(
            f"--congestion-control {name!r} is available but this host lets a network namespace "
            f"choose only {listed} (net.ipv4.tcp_allowed_congestion_control); allow it as root "
            f"in the host's namespace: sysctl -w net.ipv4.tcp_allowed_congestion_control="
            f"'{listed} {name}'"
        )


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
    name: str | None = None  # the lab's name (None: the default lab)
    congestion_control: str = DEFAULT_CONGESTION_CONTROL  # TCP's, in every host namespace
    queue: str = DEFAULT_QUEUE  # tbf's queue limit, as time at the rate

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
            "lab": self.name,
            "congestion_control": self.congestion_control,
            "queue": self.queue,
        }


def make_spec(
    hosts: int,
    rate: str,
    delay: str | None = None,
    burst: str | None = None,
    shape: str = "both",
    subnet: int = DEFAULT_SUBNET,
    name: str | None = None,
    congestion_control: str = DEFAULT_CONGESTION_CONTROL,
    available: list[str] | None = None,
    queue: str | None = None,
) -> LabSpec:
    """The lab, every setting checked; `available`: the kernel's congestion controls (default:
    read from /proc)."""
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
    spec.name = lab_name(name)
    spec.congestion_control = check_congestion_control(congestion_control, available)
    spec.queue = check_queue(queue or DEFAULT_QUEUE)
    spec.nodes = [
        {
            "namespace": host_ns(i, spec.name),
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
        spec.queue,
    ]


def plan(spec: LabSpec) -> list[Step]:
    """Every command `up` runs, in order; each object is recorded once it exists."""
    sw = switch_ns(spec.name)
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
        steps += _host_steps(node, sw, spec.congestion_control) + _shaping_steps(spec, i, node, sw)
    return steps


def _host_steps(node: dict, sw: str, congestion_control: str) -> list[Step]:
    """Host i's namespace, its TCP congestion control and its veth to the switch's bridge."""
    ns, dev, port = node["namespace"], node["interface"], node["switch_port"]
    return [
        Step(["ip", "netns", "add", ns], {"kind": "netns", "name": ns}),
        Step(["ip", "-n", ns, "link", "set", "lo", "up"]),
        Step(
            ["ip", "netns", "exec", ns, "sysctl", "-q", "-w"]
            + [f"net.ipv4.tcp_congestion_control={congestion_control}"]
        ),
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


def _qdisc(ns: str, dev: str, where: list[str], qdisc: list[str], direction: str, **record) -> Step:
    return Step(
        ["tc", "-n", ns, "qdisc", "add", "dev", dev, *where, *qdisc],
        {"kind": "qdisc", "namespace": ns, "dev": dev, "qdisc": qdisc[0], "direction": direction, **record},
    )


def _shaping_steps(spec: LabSpec, i: int, node: dict, sw: str) -> list[Step]:
    """Host i's uplink on its own side (netem first, tbf as its child); its downlink on the switch's."""
    ns, dev, uplink = node["namespace"], node["interface"], f"uplink of host {i}"
    root = ["root", "handle", "1:"]
    steps = []
    if spec.delay is not None:
        netem = ["netem", "delay", spec.delay, "limit", str(_netem_limit(spec))]
        steps.append(_qdisc(ns, dev, root, netem, uplink, delay=spec.delay))
        root = ["parent", "1:1", "handle", "10:"]
    steps.append(_qdisc(ns, dev, root, _tbf(spec), uplink, rate=spec.rate))
    if spec.shape == "both":
        down = f"downlink of host {i}"
        steps.append(
            _qdisc(sw, node["switch_port"], ["root", "handle", "1:"], _tbf(spec), down, rate=spec.rate)
        )
    return steps


def _netem_limit(spec: LabSpec) -> int:
    # netem holds every packet for the delay: its queue (packets) must hold
    # rate x delay of full-size packets, or it drops at high rates.
    return max(1000, int(2 * spec.rate_bytes_per_s * (spec.delay_s or 0) / 1500) + 100)
