"""`ttabench netlab bench` and the model of what gloo runs (launch/net/gloo.py).

Pure parts: gloo's schedules (the broadcast tree, the ring's bytes and steps),
the fluid broadcast against times computed by hand, the fit recovering the
model's own parameters, lab names that never collide, bad input in one line.
As root (slow): a 4-host bench end to end, and a bench killed with SIGTERM
in the middle that leaves no namespace, device, state file or worker behind.
Every root test uses a lab name of its own, so it never meets another lab.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zlib

import pytest
from conftest import run_cli

from ttabench import UserError
from ttabench.launch import cli
from ttabench.launch.commands import netlab_bench
from ttabench.launch.net import cost, gloo, topology
from ttabench.launch.net import lab as netlab

MB = 1024**2
B = 12.5e6  # 100 Mbit/s in bytes/s

# -- the model -------------------------------------------------------------------------


@pytest.mark.parametrize("p", [2, 4, 8, 16])
def test_predict_s_ring_is_the_validated_gloo_ring_at_the_nominal_rate(p):
    # `ttabench predict` times all-reduce with cost.ring_time at the link's nominal rate; the
    # model validated on the labs is gloo.py's: the same ring over rate x TCP's payload share,
    # less what the tbf bucket sends at once. For large messages they differ by that share only.
    burst, alpha = 64 * 1024, 100e-6
    for n in (4 * MB, 16 * MB, 256 * MB):
        lab_model = gloo.pattern_time("allreduce", n, p, 1, B, alpha, burst, gloo.EFFICIENCY)
        assert lab_model == pytest.approx(cost.ring_time(n, p, alpha, B * gloo.EFFICIENCY) - burst / B)
    big = 256 * MB
    ratio = cost.ring_time(big, p, alpha, B) / gloo.pattern_time(
        "allreduce", big, p, 1, B, alpha, burst, gloo.EFFICIENCY
    )
    assert ratio == pytest.approx(gloo.EFFICIENCY, rel=1e-3) and 0.93 < gloo.EFFICIENCY < 0.94


def test_broadcast_tree_is_glo_s_binomial_order():
    # gloo/broadcast.cc: in round i a rank whose low i bits are zero sends to rank ^ (1 << i)
    assert gloo._children(0, 8) == [1, 2, 4]
    assert gloo._children(1, 8) == [3, 5]
    assert gloo._children(2, 8) == [6]
    assert gloo._children(3, 8) == [7]
    assert gloo._children(0, 5) == [1, 2, 4] and gloo._children(1, 5) == [3]
    # every rank but the root receives exactly once
    for p in (2, 3, 5, 8, 13, 16):
        got = sorted(c for v in range(p) for c in gloo._children(v, p))
        assert got == list(range(1, p)), p


def test_broadcast_time_by_hand():
    n = 1 * MB
    assert gloo.pattern_time("broadcast", n, 2, 1, B, 0.0) == pytest.approx(n / B)
    # p=4: the root's two sends share its uplink (both done at 2n/B), then rank 1 -> 3
    assert gloo.pattern_time("broadcast", n, 4, 1, B, 0.0) == pytest.approx(3 * n / B)
    # p=16 (u = n/B): the root's 4 sends share equally, all done at 4u. Rank 1 forwards to
    # 3, 5, 9 with weights 1, 2/3, 4/9 (HEAD_START 1.5): rates 9/19, 6/19, 4/19, so 3 is done
    # after 19/9 u (at 55/9 u); rank 3 then sends to 7 and 11 at 3/5 and 2/5: 7 done after 5/3 u
    # (at 70/9 u), and 7 -> 15 one u more: 79/9 u, against 10u with equal shares everywhere
    assert gloo.HEAD_START == 1.5
    assert gloo.pattern_time("broadcast", n, 16, 1, B, 0.0) == pytest.approx(79 / 9 * n / B)
    # latency once per level of the tree (rank 7 of 8: 0 -> 1 -> 3 -> 7, three levels); rank 1's
    # transfer to 3 (weight 1 of 5/3) is done 5/3 u after the root's three at 3u, then 3 -> 7
    assert gloo.pattern_time("broadcast", n, 8, 1, B, 1e-3) == pytest.approx(17 / 3 * n / B + 3 * 1e-3)
    # a full bucket lets the first `burst` bytes of each link pass at once
    assert gloo.pattern_time("broadcast", n, 2, 1, B, 0.0, burst=n / 4) == pytest.approx(0.75 * n / B)
    # two ranks per host: sends inside a host are free, the host's uplink is shared by both
    assert gloo.pattern_time("broadcast", n, 2, 2, B, 0.0) == pytest.approx(2 * n / B)
    # TCP's share: a ring's links also carry the reverse stream's ACKs, a broadcast's only data
    ring = gloo.pattern_time("ring-exchange", n, 2, 1, B, 0.0, efficiency=gloo.EFFICIENCY)
    assert ring == pytest.approx(n / (B * gloo.MSS / (gloo.FRAME + gloo.ACK / 2)))
    bcast = gloo.pattern_time("broadcast", n, 2, 1, B, 0.0, efficiency=gloo.EFFICIENCY)
    assert bcast == pytest.approx(n / (B * gloo.MSS / gloo.FRAME))


def test_the_races_ends_by_hand():
    n, u = 1 * MB, 1 * MB / B
    # p=4: the root's two transfers start in either order, the first with the head start
    # (rates 3/5 and 2/5 of B). gloo's order (1 first, which forwards to 3): 1 done at 5/3 u,
    # 3 at 8/3 u. Reversed: 2 done at 5/3 u, then 1 alone at 2u, 3 at 3u (= equal shares)
    low, high = gloo.pattern_range("broadcast", n, 4, 1, B, 0.0)
    assert (low, high) == (pytest.approx(8 / 3 * u), pytest.approx(3 * u))
    assert gloo.pattern_time("broadcast", n, 4, 1, B, 0.0) == pytest.approx(high)
    # 16 hosts: the range holds the equal shares of pattern_time (here its slow end)
    low, high = gloo.pattern_range("broadcast", n, 16, 1, B, 0.0)
    assert low < high and low <= gloo.pattern_time("broadcast", n, 16, 1, B, 0.0) <= high
    # 2-rank all-gather: both ways at once (n) or one half later (1.5 n)
    t = gloo.pattern_range("allgather", n, 2, 1, B, 1e-3, burst=65536)
    assert t == (
        pytest.approx(2e-3 + (n - 65536) / B),
        gloo.pattern_time("allgather", n, 2, 1, B, 1e-3, 65536),
    )
    # no race: one way
    for pattern, hosts in (("broadcast", 2), ("allgather", 4), ("allreduce", 2), ("ring-exchange", 8)):
        t = gloo.pattern_time(pattern, n, hosts, 1, B, 1e-3)
        assert gloo.pattern_range(pattern, n, hosts, 1, B, 1e-3) == (t, t), pattern


def test_a_race_point_is_judged_against_the_nearer_end_of_its_range():
    from benchmarks import scale_table

    assert scale_table._residual(1.0, 2.0, 0.9, 1.2) == 0.0  # inside: whatever the nominal
    assert scale_table._residual(0.5, 1.0, 0.9, 1.2) == pytest.approx(0.8)
    assert scale_table._residual(2.0, 1.0, 0.9, 1.2) == pytest.approx(-0.4)
    assert scale_table._residual(2.0, 1.0, 1.0, 1.0) == pytest.approx(-0.5)  # no race: the model


def test_ring_patterns_bytes_and_steps():
    n = 4 * MB
    assert gloo.pattern_time("allreduce", n, 4, 1, B, 0.0) == pytest.approx(1.5 * n / B)
    assert gloo.pattern_time("allreduce", n, 4, 1, B, 1e-3) == pytest.approx(1.5 * n / B + 6e-3)
    # gloo's flat ring over 4 hosts x 2 ranks crosses each host link once per step: 2(p-1)/p, p = 8
    assert gloo.pattern_time("allreduce", n, 4, 2, B, 0.0) == pytest.approx(1.75 * n / B)
    assert gloo.pattern_time("allgather", n, 8, 1, B, 0.0) == pytest.approx(7 * n / B)
    # two ranks: gloo's allgather posts sends before receives, so one rank starts half a buffer late
    assert gloo.pattern_time("allgather", n, 2, 1, B, 0.0) == pytest.approx(1.5 * n / B)
    t = gloo.pattern_time("allgather", n, 2, 1, B, 1e-3, burst=65536)
    assert t == pytest.approx(2e-3 + (n / 2 - 65536) / B + (n - 65536) / B)
    assert gloo.pattern_time("allgather", n, 2, 2, B, 0.0) == pytest.approx(3 * n / B)  # 4 ranks: a ring
    assert gloo.pattern_time("ring-exchange", n, 16, 1, B, 0.0) == pytest.approx(n / B)
    # payload share and bucket
    eff = gloo.EFFICIENCY
    assert 0.9 < eff < 0.96
    t = gloo.pattern_time("ring-exchange", n, 4, 1, B, 0.0, burst=65536, efficiency=eff)
    assert t == pytest.approx((n / eff - 65536) / B)
    assert gloo.pattern_time("ring-exchange", 1000, 4, 1, B, 0.0, burst=65536) == 0.0
    # two ranks: both ways between one pair at once (the receive is posted first), each way its
    # own links and bucket
    t = gloo.pattern_time("ring-exchange", n, 2, 1, B, 1e-3, burst=65536)
    assert t == pytest.approx(1e-3 + (n - 65536) / B)
    # neighbour-exchange: 2n each way on every host link, all four flows at once, any placement
    for hosts, k in ((3, 1), (8, 1), (2, 2), (4, 2)):
        t = gloo.pattern_time("neighbour-exchange", n, hosts, k, B, 1e-3, burst=65536, efficiency=eff)
        assert t == pytest.approx(1e-3 + (2 * n / eff - 65536) / B)
    for pattern in gloo.PATTERNS:
        assert gloo.pattern_time(pattern, n, 1, 1, B, 1e-3) == 0.0
    with pytest.raises(UserError, match="unknown pattern"):
        gloo.pattern_time("alltoall", n, 2, 1, B, 0.0)


def test_busbw_factors_follow_nccl_tests():
    assert gloo.bus_factor("allreduce", 4) == pytest.approx(1.5)
    assert gloo.bus_factor("allgather", 4) == pytest.approx(0.75)
    assert gloo.bus_factor("broadcast", 4) == 1.0
    assert gloo.result_bytes("allgather", 100, 4) == 400


def _result(pattern, hosts, alpha, bw, burst, sizes):
    rows = [
        {
            "size_bytes": n,
            "measured_s": gloo.pattern_time(pattern, n, hosts, 1, bw, alpha, burst, gloo.EFFICIENCY),
        }
        for n in sizes
    ]
    return {
        "pattern": pattern,
        "hosts": hosts,
        "workers": hosts,
        "workers_per_host": 1,
        "lab": {},
        "model": {"burst_bytes": burst, "efficiency": gloo.EFFICIENCY},
        "rows": rows,
    }


@pytest.mark.parametrize("pattern", ["allreduce", "allgather", "ring-exchange"])
def test_fit_recovers_the_model_s_own_link(tmp_path, pattern):
    path = str(tmp_path / "lab.json")
    result = _result(pattern, 4, 300e-6, 2.4e6, 65536, [MB, 4 * MB, 16 * MB])
    got = netlab_bench.fit(result, path)
    assert got["latency_s"] == pytest.approx(300e-6, rel=1e-6)
    assert got["bandwidth_bytes_per_s"] == pytest.approx(2.4e6, rel=1e-6)
    saved = json.load(open(path))
    assert saved["format"] == "ttabench-network-profile" and saved["fitted_from"]["pattern"] == pattern
    with pytest.raises(UserError, match="twice the bucket"):
        netlab_bench.fit(_result(pattern, 4, 0, 2.4e6, 65536, [1024, 2048, MB]), path)


# -- lab names ---------------------------------------------------------------------------


def test_named_labs_never_share_a_prefix():
    names = [None, "bench", "b", "t1", "t12", "nl"]
    prefixes = [topology.prefix(n) for n in names]
    assert prefixes[0] == "ttabench-nl-"
    for i, a in enumerate(prefixes):
        for j, b in enumerate(prefixes):
            assert i == j or not b.startswith(a), (a, b)
    spec = topology.make_spec(2, "100mbit", name="t7")
    assert [n["namespace"] for n in spec.nodes] == ["ttabench-nlt7-h0", "ttabench-nlt7-h1"]
    for step in topology.plan(spec):
        assert all("ttabench-nl-" not in a for a in step.argv), step.argv
    assert netlab.recorded_namespaces({"made": [{"kind": "netns", "name": "ttabench-nlt7-sw"}]})


def test_lab_name_from_flag_or_environment(monkeypatch):
    monkeypatch.delenv(netlab.STATE_ENV, raising=False)
    monkeypatch.delenv(topology.NAME_ENV, raising=False)
    assert topology.lab_name() is None and netlab.state_path() == netlab.DEFAULT_STATE
    assert netlab.state_path("x1") == "/run/ttabench-netlab-x1.json"
    monkeypatch.setenv(topology.NAME_ENV, "env2")
    assert topology.lab_name() == "env2" and topology.lab_name("flag") == "flag"
    for bad in ("", "Upper", "a-b", "x" * 13, "a/b"):
        with pytest.raises(UserError, match="lab name"):
            topology.lab_name(bad)


@pytest.mark.parametrize(
    "flags,msg",
    [
        (["--pattern", "alltoall"], "unknown pattern"),
        (["--hosts", "1"], "--hosts"),
        (["--workers-per-host", "0"], "--workers-per-host"),
        (["--sizes", "lots"], "size"),
        (["--rate", "fast"], "bandwidth"),
        (["--repeat", "0"], "--repeat"),
        (["--lab", "Bad-Name"], "lab name"),
        (["--latency", "soon"], "latency"),
        (["--congestion-control", "nosuch"], "not available"),
        (["--queue", "soon"], "--queue"),
        (["--sizes", "64kb,128kb", "--fit", "unused.json"], "--fit needs at least 2 sizes"),
        (["--pattern", "allreduce,broadcast", "--fit", "unused.json"], "--fit fits one pattern"),
        (["--hosts", "2", "--pattern", "neighbour-exchange"], "at least 3 ranks"),
        (["--hosts", "2", "--pattern", "allgather", "--fit", "unused.json"], "at least 3 workers"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_made(flags, msg):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["netlab", "bench", "--lab", "tbad", *flags])
    assert code == 2, err.getvalue()
    assert err.getvalue().startswith("ttabench: error: ") and err.getvalue().count("\n") == 1, err.getvalue()
    assert msg in err.getvalue()
    assert not os.path.exists("/run/ttabench-netlab-tbad.json") and not netlab.lab_namespaces(name="tbad")
    assert not os.path.exists("unused.json")


def test_an_explicit_lab_name_wins_over_the_state_file_variable(monkeypatch, tmp_path):
    shared = str(tmp_path / "state.json")
    monkeypatch.setenv(netlab.STATE_ENV, shared)
    monkeypatch.delenv(topology.NAME_ENV, raising=False)
    assert netlab.state_path() == shared
    assert netlab.state_path("a1") == "/run/ttabench-netlab-a1.json"
    assert netlab.state_path("a1") != netlab.state_path("a2")


def _stub_lab(monkeypatch, up):
    """netlab_bench.run with lab.up replaced by `up` and lab.down recording its calls."""
    downs = []
    monkeypatch.setattr(netlab, "require_root", lambda: None)
    monkeypatch.setattr(netlab, "up", up)
    monkeypatch.setattr(netlab, "down", lambda path=None, run=None: downs.append(path))
    return downs


def test_a_bench_never_takes_down_a_lab_it_did_not_make(monkeypatch):
    def already_up(spec, path=None):
        raise UserError("a netlab is already up")

    downs = _stub_lab(monkeypatch, already_up)
    with pytest.raises(UserError, match="already up"):
        netlab_bench.run(netlab_bench.NetBenchConfig(hosts=2, lab="tup2"))
    assert downs == []


def test_a_bench_takes_down_the_lab_it_made_when_the_workers_fail(monkeypatch):
    downs = _stub_lab(monkeypatch, lambda spec, path=None: {"hosts": spec.hosts})

    def fail(*args):
        raise UserError("rank 1 exited with code 1")

    monkeypatch.setattr(netlab_bench, "_run_workers", fail)
    with pytest.raises(UserError, match="rank 1"):
        netlab_bench.run(netlab_bench.NetBenchConfig(hosts=2, lab="tup3"))
    assert downs == [netlab.state_path("tup3")]


def test_bad_input_from_the_real_command():
    proc = run_cli("netlab", "bench", "--hosts", "2", "--pattern", "allreduce,alltoall", timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "unknown pattern 'alltoall'" in proc.stderr, proc.stderr


# -- as root: real labs ------------------------------------------------------------------


@pytest.fixture
def root_lab(monkeypatch, request):
    """A lab name of this test's own (its name's checksum and this process) and its state file;
    afterwards nothing of it is left."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces and qdiscs")
    monkeypatch.delenv(netlab.STATE_ENV, raising=False)
    name = f"t{zlib.crc32(request.node.name.encode()) % 100000}p{os.getpid() % 100000}"
    yield name
    leftover = netlab.lab_namespaces(name=name)
    for ns in leftover:  # only when the bench itself failed to clean up
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert not leftover, f"the bench left namespaces {leftover}"


@pytest.mark.slow
@pytest.mark.root
def test_four_host_bench_end_to_end(root_lab, tmp_path):
    profile = str(tmp_path / "lab.json")
    proc = run_cli(
        "netlab", "bench", "--hosts", "4", "--rate", "100mbit", "--sizes", "256kb,2mb",
        "--repeat", "3", "--lab", root_lab, "--json", "--fit", profile, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["hosts"] == 4 and result["workers"] == 4 and result["lab"]["lab"] == root_lab
    assert result["lab"]["congestion_control"] == "cubic" and result["lab"]["queue"] == "5ms"
    rows = result["rows"]
    assert [r["size_bytes"] for r in rows] == [256 * 1024, 2 * MB]
    for r in rows:
        assert set(r) >= {"hosts", "workers", "pattern", "size_bytes", "measured_s", "predicted_s"}
        assert r["predicted_range_s"] == [r["predicted_s"]] * 2  # an all-reduce: no race
        assert r["hosts"] == 4 and r["pattern"] == "allreduce" and len(r["times_s"]) == 3
        assert r["busbw_GBps"] == pytest.approx(1.5 * r["algbw_GBps"])
        # when each rank finished, from the first rank's start (one clock: one machine): the
        # last finish is at least the round's time (the longest rank's own span)
        assert len(r["rank_done_s"]) == 3 and all(len(ends) == 4 for ends in r["rank_done_s"])
        for ends, t in zip(r["rank_done_s"], r["times_s"]):
            assert min(ends) > 0 and t <= max(ends) < t + 0.5, (ends, t)
        # and when each started: the first at 0, each before its own end
        for starts, ends in zip(r["rank_start_s"], r["rank_done_s"]):
            assert min(starts) == 0 and all(0 <= s < e for s, e in zip(starts, ends)), (starts, ends)
    # 2 MiB over 100 Mbit/s is link-bound (~250 ms): far above anything the load adds, so a
    # generous bound: the model within a factor 1.5 either way.
    big = rows[-1]
    assert 1 / 1.5 < big["measured_s"] / big["predicted_s"] < 1.5, big
    assert big["measured_s"] > rows[0]["measured_s"]
    assert json.load(open(profile))["bandwidth_bytes_per_s"] > 0
    assert not netlab.lab_namespaces(name=root_lab) and not os.path.exists(netlab.state_path(root_lab))


@pytest.mark.slow
@pytest.mark.root
def test_neighbour_exchange_moves_both_directions_at_once(root_lab):
    """Decentralized SGD's exchange (receives posted first) near the overlapped model: with the
    sends first, gloo made one direction of each pair wait for the other (measured 1.84-2.08x
    the model at 3-8 hosts, 100 Mbit/s; receives first 1.12-1.26x)."""
    proc = run_cli(
        "netlab", "bench", "--hosts", "3", "--rate", "100mbit", "--sizes", "2mb",
        "--pattern", "neighbour-exchange", "--repeat", "3", "--lab", root_lab, "--json", timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    assert row["pattern"] == "neighbour-exchange" and row["workers"] == 3
    assert 1 / 1.5 < row["measured_s"] / row["predicted_s"] < 1.6, row


def _pids_in(namespaces: list[str]) -> set[int]:
    pids = set()
    for ns in namespaces:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        pids |= {int(x) for x in out.split()}
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.root
def test_sigterm_mid_run_leaves_nothing_behind(root_lab, tmp_path):
    cmd = [sys.executable, "-m", "ttabench", "netlab", "bench", "--hosts", "3", "--rate", "20mbit",
           "--sizes", "64kb,4mb", "--repeat", "50", "--lab", root_lab]  # fmt: skip
    # TMPDIR: the bench's rows file (rank 0 writes it after each size) lands where this test sees it
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # inside the timed rounds: the 64 KiB rows are written, 4 MiB (~2 s a round, 51 rounds) runs
        deadline, pids, names, rows = time.monotonic() + 300, set(), [], []
        while time.monotonic() < deadline and not rows:
            found = [n for n in netlab.lab_namespaces(name=root_lab) if not n.endswith("-sw")]
            if len(found) == 3:
                names = netlab.lab_namespaces(name=root_lab)
                pids |= _pids_in(found)
            rows = list(tmp_path.glob("ttabench-netbench-*/rows.json"))
            assert bench.poll() is None, bench.communicate()
            time.sleep(0.5)
        assert rows and len(pids) >= 3, "the workers never measured a size"
        bench.send_signal(signal.SIGTERM)
        _, err = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 130, err
    assert err.strip().splitlines()[-1] == "ttabench: interrupted", err
    assert not netlab.lab_namespaces(name=root_lab)
    assert not os.path.exists(netlab.state_path(root_lab))
    # the veths and qdiscs lived in the namespaces: the namespaces themselves are gone
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert len(names) == 4 and not [n for n in names if n in listed or os.path.exists(f"/run/netns/{n}")]
    time.sleep(1)
    assert not [p for p in pids if _alive(p)], "workers outlived the bench"
    assert not _processes_naming(str(tmp_path)), "a process of the bench remains"


def _processes_naming(text: str) -> list[int]:
    """Live processes whose command line contains `text` (the workers carry their --out path)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read() and _alive(int(entry)):
                    found.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError, OSError):
            continue
    return found


def test_a_named_lab_that_is_up_names_its_own_down_command(tmp_path):
    made = []

    def host(argv, **kw):  # every command succeeds; no namespace exists beforehand
        made.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    path = str(tmp_path / "s.json")
    netlab.up(topology.make_spec(2, "100mbit", name="tup"), run=host, path=path)
    assert any(a[:4] == ["ip", "netns", "add", "ttabench-nltup-h1"] for a in made)
    with pytest.raises(UserError, match="run `ttabench netlab down --lab tup` first"):
        netlab.up(topology.make_spec(2, "100mbit", name="tup"), run=host, path=path)


@pytest.mark.slow
@pytest.mark.root
def test_timeout_stops_the_workers_and_takes_the_lab_down(root_lab):
    proc = run_cli("netlab", "bench", "--hosts", "2", "--rate", "20mbit", "--sizes", "4mb", "--repeat", "50",
                   "--timeout", "3", "--lab", root_lab, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "timed out after 3 s" in proc.stderr, proc.stderr
    assert not netlab.lab_namespaces(name=root_lab) and not os.path.exists(netlab.state_path(root_lab))


def _scale_bench(rate: str, hosts: int, k: int, patterns: list[str], measured_s: float) -> dict:
    """A bench as benchmarks.netlab_scale records it, with made-up times."""
    rows = [
        {"hosts": hosts, "pattern": p, "size_bytes": MB, "measured_s": measured_s, "tcp_retransmits": 0}
        for p in patterns
    ]
    return {
        "hosts": hosts,
        "workers_per_host": k,
        "lab": {"rate": rate},
        "model": {"rate_bytes_per_s": 12.5e6, "latency_s": 1e-4, "burst_bytes": 65536, "efficiency": 0.936},
        "rows": rows,
        "start": "clock",
        "duration_s": 1.0,
        "loadavg_1_5_15_before": [1.0, 1.0, 1.0],
        "loadavg_1_5_15_after": [1.0, 1.0, 1.0],
        "allreduce_fit": {"latency_s": 1e-4, "bandwidth_bytes_per_s": 12e6}
        if "allreduce" in patterns
        else None,
    }


def test_netlab_scale_append_measures_only_the_named_patterns_again(tmp_path, monkeypatch):
    from benchmarks import netlab_scale

    out = str(tmp_path)
    old = [_scale_bench("100mbit", h, 1, ["allreduce", "ring-exchange"], 0.5) for h in (2, 4)]
    with open(os.path.join(out, "scale-validation.json"), "w") as f:
        json.dump({"cpu": "x", "cpus": 2, "torch": "t", "repeat": 7, "benches": old}, f)
    asked = []

    def fake_bench(args, rate, hosts, k):
        asked.append((hosts, netlab_scale.lab_patterns(args, hosts, k)))
        return _scale_bench(rate, hosts, k, netlab_scale.lab_patterns(args, hosts, k), 0.25)

    monkeypatch.setattr(netlab_scale, "bench", fake_bench)
    argv = ["--out", out, "--rates", "100mbit", "--hosts", "2x1,4x1", "--append", "--software-rate", "none"]
    assert netlab_scale.main(argv + ["--patterns", "ring-exchange, neighbour-exchange"]) == 0
    # neighbour-exchange needs 3 workers: the 2-host lab times ring-exchange only
    assert asked == [(2, ["ring-exchange"]), (4, ["ring-exchange", "neighbour-exchange"])]
    log = json.load(open(os.path.join(out, "scale-validation.json")))
    got = sorted((r["hosts"], r["pattern"], r["measured_s"]) for b in log["benches"] for r in b["rows"])
    assert got == [
        (2, "allreduce", 0.5), (2, "ring-exchange", 0.25),
        (4, "allreduce", 0.5), (4, "neighbour-exchange", 0.25), (4, "ring-exchange", 0.25),
    ]  # fmt: skip
    assert [b["allreduce_fit"] is not None for b in log["benches"]] == [True, True, False, False]
    table = open(os.path.join(out, "scale-validation.md")).read()
    assert table.count("| 100mbit | ring-exchange |") == 2 and "| 100mbit | neighbour-exchange |" in table
    assert os.path.getsize(os.path.join(out, "scale-validation.png")) > 1000
    # measuring allreduce again drops the fits of the rows it replaces; another --repeat is refused
    asked.clear()
    assert netlab_scale.main(argv + ["--patterns", "allreduce", "--hosts", "4x1"]) == 0
    log = json.load(open(os.path.join(out, "scale-validation.json")))
    # (the 2-host lab's allreduce, not measured now, stays)
    assert [b.get("allreduce_fit") is not None for b in log["benches"]] == [True, False, False, True]
    with pytest.raises(SystemExit, match="--repeat 7"):
        netlab_scale.main(argv + ["--patterns", "allreduce", "--repeat", "5"])
    # nor are rounds started together appended to a log whose rounds followed a barrier
    log["benches"][0].pop("start")
    with open(os.path.join(out, "scale-validation.json"), "w") as f:
        json.dump(log, f)
    with pytest.raises(SystemExit, match="all started together"):
        netlab_scale.main(argv + ["--patterns", "allreduce"])


def test_netlab_scale_shows_the_labs_software_time_beside_the_model(tmp_path, monkeypatch):
    from benchmarks import netlab_scale, scale_table

    asked = []

    def fake_bench(args, rate, hosts, k):
        asked.append((rate, hosts, netlab_scale._sizes(args, rate)))
        patterns = ["allreduce", "broadcast"] if rate == "10gbit" and hosts == 2 else ["allreduce"]
        return _scale_bench(rate, hosts, k, patterns, 0.004 if rate == "10gbit" else 0.2)

    monkeypatch.setattr(netlab_scale, "bench", fake_bench)
    out = str(tmp_path)
    argv = [
        "--out",
        out,
        "--rates",
        "100mbit,20mbit",
        "--hosts",
        "2x1,4x1",
        "--patterns",
        "allreduce,broadcast",
    ]
    assert netlab_scale.main(argv + ["--sizes-100mbit", "1mb", "--sizes-20mbit", "64kb,1mb"]) == 0
    # lab by lab, first at the software rate with every size of both rates
    assert asked == [
        ("10gbit", 2, "1mb,64kb"), ("100mbit", 2, "1mb"), ("20mbit", 2, "64kb,1mb"),
        ("10gbit", 4, "1mb,64kb"), ("100mbit", 4, "1mb"), ("20mbit", 4, "64kb,1mb"),
    ]  # fmt: skip
    log = json.load(open(os.path.join(out, "scale-validation.json")))
    assert [b.get("role") for b in log["benches"]] == ["software", None, None] * 2
    rows = scale_table.rows_of(log)
    assert len(rows) == 4 and all(r["rate"] != "10gbit" for r in rows)  # the software benches are no points
    r = next(r for r in rows if r["hosts"] == 4 and r["rate"] == "100mbit")
    # 1 MiB all-reduced over 4 hosts: each link carries 2 x 3/4 MiB / payload share; the bucket
    # passes at once, the rest at 12.5 MB/s; 6 message steps of 100 us. Beside it, the software
    # time plus that network part without the latency (the software time holds it)
    transfer = (1.5 * MB / gloo.EFFICIENCY - 65536) / 12.5e6
    assert r["predicted_s"] == pytest.approx(6 * 1e-4 + transfer, rel=1e-12)
    assert r["residual"] == pytest.approx(r["predicted_s"] / 0.2 - 1, rel=1e-12)
    assert r["software_s"] == 0.004
    assert r["with_software_s"] == pytest.approx(0.004 + transfer, rel=1e-12)
    assert r["with_software_residual"] == pytest.approx(r["with_software_s"] / 0.2 - 1, rel=1e-12)
    table = open(os.path.join(out, "scale-validation.md")).read()
    line = f"| 100mbit | allreduce | 1 MiB | transfer | 4 x 1 | 200.0 | {1e3 * r['predicted_s']:.1f} |"
    assert line in table and f"| 4.0 | {1e3 * r['with_software_s']:.1f} |" in table
    # without a software bench: the model alone, and no software columns
    log["benches"] = [b for b in log["benches"] if b.get("role") != "software"]
    r = next(r for r in scale_table.rows_of(log) if r["hosts"] == 4 and r["rate"] == "100mbit")
    assert r["software_s"] is None and r["with_software_s"] is None
    assert r["predicted_s"] == pytest.approx(6 * 1e-4 + transfer, rel=1e-12)
    assert "0 of the 0 points with a software time" in scale_table.markdown(log)
    assert "ranks started together at an instant of this machine's clock" in scale_table.markdown(log)
    assert "each round after a barrier" in scale_table.markdown(
        dict(log, benches=[{k: v for k, v in b.items() if k != "start"} for b in log["benches"]])
    )
    # the regime: a buffer that takes under 50 ms at the rate is counted apart (here 64 KiB at
    # 12.5 MB/s: 5 ms), so is the point whose time the 2 cores' per-message software dominates
    shaped = [b for b in log["benches"] if b["lab"]["rate"] == "100mbit"]
    shaped[0]["rows"][0]["size_bytes"] = 65536
    table = scale_table.markdown(log)
    assert "| 100mbit | allreduce | 64 KiB | per message | 2 x 1 |" in table
    transfer_ok = sum(abs(r["residual"]) <= 0.15 for r in scale_table.rows_of(log) if r["transfer"])
    assert f": {transfer_ok} of the 3 whose buffer takes at least 50 ms at the rate" in table
    with pytest.raises(SystemExit, match="must not hold the --software-rate"):
        netlab_scale.main(["--out", out, "--rates", "100mbit,10gbit"])


@pytest.mark.parametrize("start", ["clock", "barrier"])
def test_every_round_starts_the_way_asked(monkeypatch, start):
    """--start clock: each round starts at the agreed instant, START_MARGIN_S after the ranks
    asked (not only the first few rounds); barrier: right after the gap and the barrier."""
    from ttabench.launch.worker import collectives
    from ttabench.launch.worker.comm import Comm

    calls = []
    monkeypatch.setattr(collectives, "pattern_op", lambda *a: lambda: calls.append(time.perf_counter()))
    r = collectives.time_pattern(Comm(), "allreduce", 4, warmup=1, repeat=4, gap_s=0.02, start=start)
    assert len(calls) == 5 and len(r["rank_start_s"]) == 4 and r["rank_start_s"][0] == [0.0]
    apart = [b - a for a, b in zip(calls, calls[1:])]
    least = collectives.START_MARGIN_S if start == "clock" else 0.02
    assert all(least <= d < least + 0.08 for d in apart), apart


def test_a_slow_agreement_widens_the_next_rounds_margin(monkeypatch):
    """Clock start: when agreeing on the instant takes longer than START_MARGIN_S (many ranks,
    a long --delay), the next round waits twice that long, so every rank is there in time."""
    from ttabench.launch.worker import collectives
    from ttabench.launch.worker.comm import Comm

    class SlowComm(Comm):
        def allreduce(self, values, op="sum"):
            time.sleep(0.15)  # each all-reduce: longer than the 0.1 s margin
            return list(values)

    calls = []
    monkeypatch.setattr(collectives, "pattern_op", lambda *a: lambda: calls.append(time.perf_counter()))
    collectives.time_pattern(SlowComm(), "allreduce", 4, warmup=1, repeat=3, gap_s=0.0, start="clock")
    apart = [b - a for a, b in zip(calls, calls[1:])]
    # the round's own all-reduce (0.15) and then 2 x 0.15 from the agreement's start; a fixed
    # 0.1 s margin would have passed before the agreement ended: 0.3 apart
    assert all(0.42 <= d < 0.6 for d in apart), apart
