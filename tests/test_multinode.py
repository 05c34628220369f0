"""Multi-node torchrun: two launcher processes forming one c10d rendezvous.

On 127.0.0.1 always; between two network namespaces joined by a veth pair
when the test runs as root with `ip` available (skipped with the reason
otherwise).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import IN_CI, process_tree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_cmd(node_rank: int, endpoint: str, results: str, local_addr: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ttabench",
        "run",
        "--synthetic",
        "--nnodes",
        "2",
        "--node-rank",
        str(node_rank),
        "--rdzv-endpoint",
        endpoint,
        "--workers",
        "1",
        "--local-addr",
        local_addr,
        "--batch-size",
        "32",
        "--max-steps",
        "3",
        "--eval-every",
        "1epoch",
        "--thresholds",
        "0.1:0.2:0.1",
        "--seed",
        "3",
        "--results-dir",
        results,
        "--progress",
        "none",
        "--collective-timeout",
        "60",
    ]


def _check_one_run(results: str) -> dict:
    runs = glob.glob(os.path.join(results, "*", "resnet20", "closed", "*"))
    assert len(runs) == 1, runs  # only global rank 0 writes
    summary = json.load(open(os.path.join(runs[0], "summary.json")))
    assert summary["status"] == "success"
    assert summary["world_size"] == 2 and summary["nodes"] == 2
    return summary


def _wait_all(procs, timeout=300):
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            outs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for code, out, err in outs:
        assert code == 0, f"node exited {code}\n{out}\n{err}"


@pytest.mark.slow
def test_two_nodes_on_loopback(tmp_path):
    endpoint = f"127.0.0.1:{_free_port()}"
    results = str(tmp_path / "results")
    with process_tree() as env:  # the nodes' workers too, when a wait times out or fails
        procs = [
            subprocess.Popen(
                _node_cmd(i, endpoint, results, "127.0.0.1"),
                text=True,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i in (0, 1)
        ]
        _wait_all(procs)
    _check_one_run(results)


NS = ("ttabench-test-a", "ttabench-test-b")
ADDRS = ("10.231.7.1", "10.231.7.2")  # the test's own namespaces only


def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    return None


@pytest.fixture
def two_namespaces():
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)

    def ip(*args, check=True):
        return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)

    for ns in NS:
        ip("netns", "del", ns, check=False)
    try:
        for ns in NS:
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip(
            "link",
            "add",
            "tta-test-a",
            "netns",
            NS[0],
            "type",
            "veth",
            "peer",
            "name",
            "tta-test-b",
            "netns",
            NS[1],
        )
        for ns, dev, addr in zip(NS, ("tta-test-a", "tta-test-b"), ADDRS):
            ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
    except subprocess.CalledProcessError as e:
        for ns in NS:
            ip("netns", "del", ns, check=False)
        if IN_CI:
            raise
        pytest.skip(f"could not create namespaces: {e.stderr.strip()}")
    yield NS
    for ns in NS:
        ip("netns", "del", ns, check=False)


@pytest.mark.slow
@pytest.mark.root
def test_two_nodes_in_network_namespaces(tmp_path, two_namespaces):
    endpoint = f"{ADDRS[0]}:29517"
    results = str(tmp_path / "results")
    procs = []
    with process_tree() as tree_env:  # the nodes' workers too, when a wait times out or fails
        for i, ns in enumerate(two_namespaces):
            cmd = ["ip", "netns", "exec", ns] + _node_cmd(i, endpoint, results, ADDRS[i])
            # GLOO must use the veth, not the namespace's loopback.
            env = dict(tree_env, GLOO_SOCKET_IFNAME=("tta-test-a", "tta-test-b")[i])
            procs.append(
                subprocess.Popen(cmd, text=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            )
        _wait_all(procs)
    _check_one_run(results)
