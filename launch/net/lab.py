"""Real network shaping between network namespaces (Linux, root): `ttabench netlab`.

    ttabench netlab up --hosts 2 --rate 100mbit            # build the lab, then measure it
    ttabench netlab up --hosts 2 --rate 100mbit --delay 5ms  # + netem delay (needs sch_netem)
    ttabench netlab status [--json]
    ttabench netlab measure                                  # TCP throughput across the link
    ttabench netlab run -- --synthetic --max-steps 10 --batch-size 64
    ttabench netlab down                                     # remove exactly what `up` made

State. ``up`` records each object in a state file as soon as it exists
(/run/ttabench-netlab-NAME.json for a lab named NAME with --lab, whatever the
environment; else ``$TTABENCH_NETLAB_STATE``, default /run/ttabench-netlab.json:
net/topology.py). ``down``
deletes exactly the namespaces recorded there (each veth, the bridge and the
qdiscs live inside them and go with them) and then the file. A crash half way
through ``up`` leaves a state file listing what was made, so ``down`` still
cleans up; a failure inside ``up`` removes what it made before reporting.

Parts: net/topology.py (names, addresses, the spec and the plan of `up`, as
plain data), this module (checks, `up`/`down`, the state file),
net/measure.py (TCP throughput across the link), net/nodes.py (one
``ttabench run`` node per host namespace, which records the shaping through
:func:`shaping_from_env`), commands/netlab.py (the ``netlab`` subcommands).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess

from ttabench import UserError
from ttabench.divisions.results import atomic_write_json
from ttabench.launch.net import topology
from ttabench.launch.net.topology import BRIDGE, LAB_PREFIX, LabSpec, lab_name, plan, prefix, switch_ns

DEFAULT_STATE = "/run/ttabench-netlab.json"
STATE_ENV = "TTABENCH_NETLAB_STATE"
SHAPING_ENV = "TTABENCH_NETLAB"


def state_path(name: str | None = None) -> str:
    """The state file of lab `name` when one is given (--lab: each named lab has its own), else
    $TTABENCH_NETLAB_STATE, else that of $TTABENCH_NETLAB_NAME's lab or the default lab's."""
    if name is not None:
        return f"/run/ttabench-netlab-{lab_name(name)}.json"
    name = lab_name()
    default = DEFAULT_STATE if name is None else f"/run/ttabench-netlab-{name}.json"
    return os.environ.get(STATE_ENV) or default


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


NETEM_MISSING = (
    "this kernel has no sch_netem (the netem qdisc module), so netlab cannot add "
    "real delay: leave out --delay and emulate latency with "
    "`ttabench run --bandwidth RATE --latency DELAY` (or --network PROFILE)"
)


def check_netem(run=subprocess.run, name: str | None = None) -> None:
    """Raise UserError(NETEM_MISSING) unless a netem qdisc can be created.

    Tried for real, in a throwaway namespace (on its loopback), after a
    `modprobe sch_netem` where modprobe exists."""
    if shutil.which("modprobe"):
        run(["modprobe", "sch_netem"], capture_output=True, text=True)
    probe = f"{prefix(name)}probe-{os.getpid()}"
    made = run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        raise UserError(f"cannot create a network namespace: {last_line(made.stderr)}")
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
        raise UserError(f"tc netem failed: {last_line(r.stderr)}")


def last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no message)"


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
    path = path or state_path()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, state)


def recorded_namespaces(state: dict) -> list[str]:
    """The namespaces a state file says the lab made, refusing any name not the lab's own."""
    names = [m["name"] for m in state.get("made", []) if m.get("kind") == "netns"]
    for n in names:
        if not n.startswith(LAB_PREFIX) or "/" in n:
            raise UserError(
                f"state file lists namespace {n!r}, which netlab never makes "
                f"(names start with {LAB_PREFIX}): refusing to delete it"
            )
    return names


def existing_namespaces(run=subprocess.run) -> list[str]:
    r = run(["ip", "netns", "list"], capture_output=True, text=True)
    return [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]


def lab_namespaces(run=subprocess.run, name: str | None = None) -> list[str]:
    """The namespaces of lab `name` that exist (the default lab's when None)."""
    return [n for n in existing_namespaces(run) if n.startswith(prefix(name))]


# -- up / down -------------------------------------------------------------------


def up(spec: LabSpec, run=subprocess.run, path: str | None = None) -> dict:
    """Build the lab described by `spec`; returns its state (also written to the state file)."""
    path = path or state_path()
    old = read_state(path)
    if old is not None:
        raise UserError(
            f"a netlab is already up ({old.get('hosts')} hosts at {old.get('rate')}, "
            f"state file {path}): run `ttabench netlab down{_lab_flag(spec.name)}` first"
        )
    stray = lab_namespaces(run, spec.name)
    if stray:
        raise UserError(
            f"namespaces {', '.join(stray)} exist but no netlab state file ({path}) "
            "records them: remove them with `ip netns del NAME` if they are leftovers"
        )
    allowed = run(["cat", topology.ALLOWED_CONGESTION_CONTROL], capture_output=True, text=True)
    topology.check_allowed(spec.congestion_control, allowed.stdout.split() if allowed.returncode == 0 else [])
    if spec.delay is not None:
        check_netem(run, spec.name)
    state = {
        "version": 1,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "complete": False,
        **spec.describe(),
        "switch": {"namespace": switch_ns(spec.name), "bridge": BRIDGE},
        "nodes": spec.nodes,
        "made": [],
    }
    write_state(state, path)
    try:
        for step in plan(spec):
            r = run(step.argv, capture_output=True, text=True)
            if r.returncode != 0:
                raise UserError(f"`{' '.join(step.argv)}` failed: {last_line(r.stderr)}")
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


def _lab_flag(name: str | None) -> str:
    return "" if name is None else f" --lab {name}"


def _remove(state: dict, run=subprocess.run) -> list[str]:
    """Delete the recorded namespaces (newest first); returns those that were there."""
    present = set(existing_namespaces(run))
    removed = []
    for ns in reversed(recorded_namespaces(state)):
        if ns in present:
            r = run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if r.returncode != 0:
                raise UserError(f"cannot delete namespace {ns}: {last_line(r.stderr)}")
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


# -- what a run across the lab records ---------------------------------------------

_SHAPING_KEYS = (
    "mechanism",
    "hosts",
    "rate",
    "rate_bytes_per_s",
    "burst_bytes",
    "delay",
    "delay_s",
    "shape",
    "subnet",
    "lab",
    "congestion_control",
    "queue",
)


def shaping_of(state: dict) -> dict:
    """The lab's shaping as a run records it (with the measured rates, where measured)."""
    shaping = {k: state.get(k) for k in _SHAPING_KEYS}
    if state.get("measured"):
        shaping["measured_bits_per_s"] = [m["bits_per_s"] for m in state["measured"]]
    return shaping


def shaping_from_env(environ=None) -> dict | None:
    """The real shaping a run crosses, as `netlab run` describes it in $TTABENCH_NETLAB."""
    raw = (os.environ if environ is None else environ).get(SHAPING_ENV)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return {"unparsed": raw}
