"""What a test session leaves behind: the processes it started, and the network namespaces,
links, qdiscs and Slurm jobs it made. tests/conftest.py checks both when the session ends.

Processes are found by a tag in their environment (TAG, inherited by everything started from
the session). What is not a process is found by name: the tests and the code they run give it
a recognisable prefix (below), and what exists at the end but did not at the start counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

TAG = "TTABENCH_TEST_SESSION"  # <pytest's pid>-<random>, set by conftest for the whole session
CALL_TAG = "TTABENCH_TEST_CALL"  # one command's tree (conftest.run_command, process_tree)


def process_state(pid: int) -> str:
    """A process's state letter in /proc (R, S, Z: exited, not reaped, ...), "gone" without one."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


STAT_FIELDS = {"ppid": 1, "pgrp": 2, "session": 3}  # after the state, in /proc/PID/stat


def processes_with(field: str, value: int) -> list[int]:
    """Live processes (zombies excluded) whose `field` (ppid, pgrp, session) is `value`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[STAT_FIELDS[field]]) == value and fields[0] != "Z":
                found.append(int(entry))
    return found


def tagged(name: str, value: str) -> list[int]:
    """Live processes (zombies excluded) whose environment has name=value, other than this one."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found.append(int(entry))
    return found


def kill_tagged(name: str, value: str, wait_s: float = 10.0) -> list[int]:
    """SIGKILL every process tagged name=value (until none is left or `wait_s`); returns the pids seen."""
    seen: set[int] = set()
    deadline = time.monotonic() + wait_s
    while True:
        pids = tagged(name, value)
        if not pids or time.monotonic() > deadline:
            return sorted(seen)
        for pid in pids:
            seen.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


# --- what is not a process --------------------------------------------------------------------
# The names given to what the tests make (a link made inside a namespace goes with it):
#   netlab (launch/net/topology.py)      namespaces ttabench-nl-*, links ttanl* inside them
#   tests/test_multinode.py              namespaces ttabench-test-*, links tta-test-* inside them
#   scripts/slurm_local.sh               namespaces ttaslurm-n*; bridge ttaslurm-br, links ttasl*-br
# and qdiscs on this namespace's loopback or on those links. A Slurm job is the session's when
# Slurm runs it in a folder of the session's (its --chdir: the folder `submit` ran in).
NAMESPACE_PREFIXES = ("ttabench-", "ttaslurm-")
LINK_PREFIXES = ("tta",)
HOW_TO_REMOVE = {
    "namespace": "ip netns del NAME (a Slurm node's: scripts/slurm_local.sh down)",
    "link": "ip link del NAME (the Slurm bridge's: scripts/slurm_local.sh down)",
    "qdisc": "tc qdisc del dev DEV root",
    "Slurm job": "scancel ID (cancelled now)",
}


def _lines(argv: list[str]) -> list[str]:
    """The output lines of a system tool; none where it is missing or fails."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return r.stdout.splitlines() if r.returncode == 0 else []


def _ours(name: str, prefixes: tuple[str, ...]) -> bool:
    return name.startswith(prefixes)


def _links() -> set[str]:
    names = (line.split(": ")[1].split("@")[0] for line in _lines(["ip", "-o", "link", "show"]))
    return {n for n in names if _ours(n, LINK_PREFIXES)}


def _qdiscs() -> set[str]:
    """'KIND on DEV' for every qdisc but the default noqueue on lo and on the tests' links."""
    found = set()
    for line in _lines(["tc", "qdisc", "show"]):
        words = line.split()  # qdisc KIND HANDLE dev DEV ...
        if len(words) >= 5 and words[3] == "dev" and words[1] != "noqueue":
            dev = words[4]
            if dev == "lo" or _ours(dev, LINK_PREFIXES):
                found.add(f"{words[1]} {words[2]} on {dev}")
    return found


def _slurm_jobs() -> dict[str, str]:
    """Pending and running Slurm jobs: id -> working folder (none without a reachable cluster)."""
    jobs = {}
    for line in _lines(["squeue", "-h", "-o", "%i|%Z"]):
        job_id, _, workdir = line.partition("|")
        jobs[job_id.strip()] = workdir.strip()
    return jobs


def snapshot(jobs: dict[str, str] | None = None) -> dict[str, set[str]]:
    """The namespaces, links, qdiscs and Slurm jobs (by id) there are now."""
    namespaces = {line.split()[0] for line in _lines(["ip", "netns", "list"]) if line.strip()}
    return {
        "namespace": {n for n in namespaces if _ours(n, NAMESPACE_PREFIXES)},
        "link": _links(),
        "qdisc": _qdiscs(),
        "Slurm job": set(_slurm_jobs() if jobs is None else jobs),
    }


def made_since(before: dict[str, set[str]], folders: list[str]) -> dict[str, list[str]]:
    """What exists now and did not in `before`: namespaces, links and qdiscs by name, Slurm jobs
    whose working folder is one of `folders` or below one (a folder ending in '-' is a prefix)."""

    def in_folders(path: str) -> bool:
        return any(
            path == f or path.startswith(f if f.endswith("-") else f.rstrip("/") + "/") for f in folders
        )

    jobs = {j: workdir for j, workdir in _slurm_jobs().items() if in_folders(workdir)}
    now = snapshot(jobs)
    return {kind: sorted(now[kind] - before[kind]) for kind in now if now[kind] - before[kind]}


def cancel_jobs(ids: list[str]) -> None:
    if ids:
        _lines(["scancel", *ids])
