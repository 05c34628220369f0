"""`ttabench netlab up | down | status | measure | run`: the network lab's subcommands (see net/lab.py)."""

from __future__ import annotations

import json
import os
import subprocess

from ttabench.launch.commands import netlab_bench
from ttabench.launch.flags import add_passed_run_flags
from ttabench.launch.net import lab, measure, nodes, topology
from ttabench.launch.net.link import parse_size
from ttabench.launch.usage import add_command


def _print_state(state: dict, path: str, live: bool) -> None:
    shaped = "uplink and downlink" if state["shape"] == "both" else "uplink only"
    print(
        f"netlab: {state['hosts']} hosts, rate {state['rate']} "
        f"(tbf, burst {state['burst_bytes']} B, queue {state.get('queue') or 'not recorded'}, "
        f"shaped: {shaped}), "
        f"delay {state['delay'] or 'none'}, TCP {state.get('congestion_control') or 'not recorded'}; "
        f"state file {path}" + ("" if state.get("complete") else " [INCOMPLETE: run `ttabench netlab down`]")
    )
    present = set(lab.existing_namespaces()) if live else set()
    for n in state["nodes"]:
        mark = "" if not live else ("" if n["namespace"] in present else "  [namespace missing]")
        print(
            f"  {n['namespace']}: {n['interface']} {n['address']}/24 <-> "
            f"{state['switch']['namespace']}/{n['switch_port']} on bridge {topology.BRIDGE}{mark}"
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
        print("  " + measure.format_measurements(state, [r]))


def _cmd_up(args) -> int:
    lab.require_root()
    spec = topology.make_spec(
        args.hosts,
        args.rate,
        args.delay,
        args.burst,
        args.shape,
        args.subnet,
        name=args.lab,
        congestion_control=args.congestion_control,
        queue=args.queue,
    )
    path = lab.state_path(spec.name)
    state = lab.up(spec, path=path)
    _print_state(state, path, live=False)
    if not args.no_measure:
        state["measured"] = measure.measure(state, parse_size(args.measure_bytes), args.measure_seconds)
        lab.write_state(state, path)
        print(measure.format_measurements(state, state["measured"]))
    return 0


def _cmd_down(args) -> int:
    lab.require_root()
    path = lab.state_path(args.lab)
    removed, gone = lab.down(path=path)
    if not removed and not gone:
        stray = lab.lab_namespaces(name=topology.lab_name(args.lab))
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
    path = lab.state_path(args.lab)
    state = lab.read_state(path)
    if args.json:
        print(json.dumps(state, indent=2))
        return 0 if state is not None else 1
    if state is None:
        print(f"netlab: none up (no state file at {path})")
        return 1
    _print_state(state, path, live=os.geteuid() == 0)
    return 0


def _cmd_measure(args) -> int:
    lab.require_root()
    path = lab.state_path(args.lab)
    state = lab.load_lab(path)
    rows = measure.measure(state, parse_size(args.bytes), args.seconds)
    state["measured"] = rows
    lab.write_state(state, path)
    print(json.dumps(rows, indent=2) if args.json else measure.format_measurements(state, rows))
    return 0


def _cmd_run(args) -> int:
    lab.require_root()
    state = lab.load_lab(lab.state_path(args.lab))
    run = nodes.check_run_args(args.run_args, state["hosts"])
    threads = nodes.default_threads(state["hosts"], run)
    commands = nodes.node_commands(state, run, port=args.port, threads=threads)
    print(
        f"netlab run: {state['hosts']} nodes at {state['rate']}, rendezvous "
        f"{state['nodes'][0]['address']}:{args.port}",
        flush=True,
    )
    return nodes.run_nodes(commands, timeout=args.timeout)


def add_lab_flag(p) -> None:
    p.add_argument(
        "--lab",
        metavar="NAME",
        help=f"the lab's name (letters, digits): namespaces ttabench-nlNAME-*, its own state file "
        f"(default ${topology.NAME_ENV}, else the default lab ttabench-nl-*)",
    )


def add_tcp_flags(p) -> None:
    """--congestion-control and --queue: how TCP meets the lab's links (netlab up and bench)."""
    p.add_argument(
        "--congestion-control",
        default=topology.DEFAULT_CONGESTION_CONTROL,
        metavar="NAME",
        help=f"TCP congestion control in every host namespace, one of the kernel's "
        f"(default {topology.DEFAULT_CONGESTION_CONTROL}; else a namespace inherits the host's)",
    )
    p.add_argument(
        "--queue",
        metavar="TIME",
        help=f"tbf's queue limit as time at the rate, tc's latency (default {topology.DEFAULT_QUEUE})",
    )


def add_commands(sub) -> None:
    n = sub.add_parser(
        "netlab",
        help="real network shaping between network namespaces (root)",
        description=lab.__doc__.split("\n\n")[0],
    )
    nsub = n.add_subparsers(dest="netlab_command", required=True, metavar="ACTION")

    u = add_command(nsub, "up", _cmd_up, help="create namespaces joined by shaped veths, then measure")
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
        default=topology.DEFAULT_SUBNET,
        help=f"addresses 10.231.SUBNET.1..N (default {topology.DEFAULT_SUBNET})",
    )
    add_tcp_flags(u)
    u.add_argument("--no-measure", action="store_true", help="skip the throughput measurement")
    u.add_argument("--measure-bytes", default="8mb", help="bytes per direction measured (8mb)")
    u.add_argument("--measure-seconds", type=float, default=5.0, help="time cap per direction")
    add_lab_flag(u)

    add_lab_flag(add_command(nsub, "down", _cmd_down, help="remove exactly what `netlab up` made"))

    s = add_command(nsub, "status", _cmd_status, help="print the lab's state (and its live qdiscs as root)")
    s.add_argument("--json", action="store_true", help="print the state file")
    add_lab_flag(s)

    m = add_command(
        nsub, "measure", _cmd_measure, help="TCP throughput host 0 -> 1 and back, beside the rate"
    )
    m.add_argument("--bytes", default="8mb", help="at most this much per direction (8mb)")
    m.add_argument("--seconds", type=float, default=5.0, help="at most this long per direction")
    m.add_argument("--json", action="store_true")
    add_lab_flag(m)

    r = add_command(
        nsub,
        "run",
        _cmd_run,
        help="one `ttabench run` node per host namespace",
        description="ttabench netlab run [--port P] -- RUN FLAGS: one node per "
        "host namespace, rendezvous on host 0.",
    )
    r.add_argument("--port", type=int, default=nodes.RDZV_PORT, help="rendezvous port on host 0")
    r.add_argument("--timeout", type=float, help="stop all nodes after this many seconds")
    add_lab_flag(r)
    add_passed_run_flags(r, "flags of `ttabench run` (e.g. --synthetic --max-steps 10)")

    netlab_bench.add_command_to(nsub, add_lab_flag, add_tcp_flags)
