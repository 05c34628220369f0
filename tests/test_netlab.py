"""`ttabench netlab`: the plan, the state file, the node commands (no root needed), and as
root the real lab: up / status / measured throughput / down, netem where the kernel has
it, and a 2-namespace torchrun run whose communication time grows as the rate falls.

Root tests use their own state file (TTABENCH_NETLAB_STATE) and remove every
namespace they made, also when they fail; they are skipped when a lab is
already up on the machine (it is not theirs to touch), and fail instead under CI=true.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import IN_CI, call_unprivileged, run_cli

from ttabench import UserError
from ttabench.launch import cli
from ttabench.launch.net import lab as netlab
from ttabench.launch.net import nodes, topology

# -- pure parts ---------------------------------------------------------------------


def test_non_root_is_refused_with_one_clear_line():
    with pytest.raises(UserError) as e:
        netlab.require_root(euid=1000)
    assert "root" in str(e.value) and "sudo" in str(e.value)


def _cli_stderr(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, err.getvalue()


def test_cli_as_non_root():
    # The message a non-root user sees; as root, the CLI runs as an ordinary user.
    cli.build_parser()  # every lazy import done before the privileges go
    got = call_unprivileged(_cli_stderr, ["netlab", "up", "--rate", "100mbit"])
    code, stderr = got["value"]
    assert code == 2
    assert stderr.startswith("ttabench: error: ") and stderr.count("\n") == 1, stderr
    assert "netlab needs root" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"hosts": 1}, "--hosts"),
        ({"rate": "fast"}, "bandwidth"),
        ({"delay": "0ms"}, "--delay"),
        ({"burst": "100b"}, "--burst"),
        ({"subnet": 300}, "--subnet"),
        ({"shape": "up"}, "--shape"),
    ],
)
def test_bad_settings_are_user_errors(kw, msg):
    args = dict(hosts=2, rate="100mbit")
    args.update(kw)
    with pytest.raises(UserError) as e:
        topology.make_spec(**args)
    assert msg in str(e.value)


def test_congestion_control_must_be_one_the_kernel_offers():
    with pytest.raises(UserError) as e:
        topology.make_spec(2, "100mbit", congestion_control="bbr", available=["reno", "cubic"])
    assert "--congestion-control 'bbr' is not available" in str(e.value)
    assert "available: reno cubic" in str(e.value)
    spec = topology.make_spec(2, "100mbit", congestion_control="reno", available=["reno", "cubic"])
    assert spec.describe()["congestion_control"] == "reno"
    assert topology.make_spec(2, "100mbit").congestion_control == "cubic"  # Linux's default, not the host's


def test_plan_sets_congestion_control_in_every_host_namespace_before_its_link():
    spec = topology.make_spec(3, "100mbit", congestion_control="reno")
    steps = [s.argv for s in topology.plan(spec)]
    for i in range(3):
        ns = f"ttabench-nl-h{i}"
        cc = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.tcp_congestion_control=reno"]
        assert cc in steps
        assert steps.index(["ip", "netns", "add", ns]) < steps.index(cc)
        assert steps.index(cc) < next(
            k for k, a in enumerate(steps) if a[:3] == ["ip", "link", "add"] and ns in a
        )
    assert not any(a[:3] == ["ip", "netns", "exec"] and a[3] == "ttabench-nl-sw" for a in steps)


def test_queue_is_tbfs_latency_checked_and_recorded():
    assert topology.make_spec(2, "100mbit").describe()["queue"] == "5ms"  # the default
    spec = topology.make_spec(3, "20mbit", queue="50ms")
    assert spec.describe()["queue"] == "50ms"
    tbfs = [a for a in (s.argv for s in topology.plan(spec)) if "tbf" in a]
    assert len(tbfs) == 6  # every host's uplink and downlink
    assert all(a[a.index("latency") + 1] == "50ms" for a in tbfs)
    for bad, msg in (
        ("soon", "takes a time"),
        ("0ms", "above 0"),
        ("11s", "at most 10 s"),
        ("5", "takes a time"),
    ):
        with pytest.raises(UserError, match=msg):
            topology.make_spec(2, "100mbit", queue=bad)


def test_burst_default_is_two_ms_at_the_rate_but_at_least_64kib():
    assert topology.make_spec(2, "100mbit").burst_bytes == 65536  # 2 ms = 25 kB < 64 KiB
    assert topology.make_spec(2, "1gbit").burst_bytes == 250000  # 2 ms at 125 MB/s
    assert topology.make_spec(2, "1gbit", burst="128kb").burst_bytes == 131072


def _by_dev(steps):
    return {
        (s.made["namespace"], s.made["dev"], s.made["qdisc"]): s
        for s in steps
        if s.made and s.made["kind"] == "qdisc"
    }


def test_plan_shapes_uplink_on_the_host_side_and_downlink_on_the_switch_side():
    spec = topology.make_spec(3, "100mbit", subnet=9)
    steps = topology.plan(spec)
    q = _by_dev(steps)
    for i in range(3):
        up = q[(f"ttabench-nl-h{i}", f"ttanl{i}", "tbf")]
        assert up.made["direction"] == f"uplink of host {i}"
        assert up.argv[:3] == ["tc", "-n", f"ttabench-nl-h{i}"]
        assert "rate" in up.argv and up.argv[up.argv.index("rate") + 1] == "100000000bit"
        down = q[("ttabench-nl-sw", f"ttanl{i}-sw", "tbf")]
        assert down.made["direction"] == f"downlink of host {i}"
    assert [n["address"] for n in spec.nodes] == ["10.231.9.1", "10.231.9.2", "10.231.9.3"]
    egress = _by_dev(topology.plan(topology.make_spec(2, "100mbit", shape="egress")))
    assert set(egress) == {("ttabench-nl-h0", "ttanl0", "tbf"), ("ttabench-nl-h1", "ttanl1", "tbf")}


def test_plan_puts_netem_at_the_root_of_the_host_side_with_tbf_as_its_child():
    steps = topology.plan(topology.make_spec(2, "100mbit", delay="5ms"))
    q = _by_dev(steps)
    netem, tbf = q[("ttabench-nl-h0", "ttanl0", "netem")], q[("ttabench-nl-h0", "ttanl0", "tbf")]
    assert netem.argv[netem.argv.index("dev") + 2 :][:3] == ["root", "handle", "1:"]
    assert ["delay", "5ms"] == netem.argv[netem.argv.index("delay") : netem.argv.index("delay") + 2]
    assert tbf.argv[tbf.argv.index("dev") + 2 :][:4] == ["parent", "1:1", "handle", "10:"]
    assert steps.index(netem) < steps.index(tbf)
    assert not any(ns == "ttabench-nl-sw" and kind == "netem" for ns, _, kind in q)


def test_plan_never_touches_the_root_namespace():
    """Every command names one of the lab's namespaces: devices are created inside them."""
    for step in topology.plan(topology.make_spec(4, "1gbit", delay="1ms")):
        a = step.argv
        if a[:3] in (["ip", "netns", "add"], ["ip", "netns", "del"], ["ip", "netns", "exec"]):
            assert a[3].startswith("ttabench-nl-")
        elif a[:3] == ["ip", "link", "add"]:  # a veth pair, both ends created in lab namespaces
            assert a.count("netns") == 2
            assert all(a[i + 1].startswith("ttabench-nl-") for i, x in enumerate(a) if x == "netns")
        else:
            assert a[1] == "-n" and a[2].startswith("ttabench-nl-"), a


class FakeHost:
    """Runs `ip`/`tc` commands against a set of namespace names; fails on request."""

    def __init__(self, existing=(), fail_on=None, tc_error="", allowed=""):
        self.ns = set(existing)
        self.calls = []
        self.fail_on = fail_on
        self.tc_error = tc_error
        self.allowed = allowed  # tcp_allowed_congestion_control ("": not readable)

    def __call__(self, argv, **kw):
        self.calls.append(list(argv))
        out, err, code = "", "", 0
        if self.fail_on and self.fail_on(argv):
            code, err = 2, "RTNETLINK answers: Operation not permitted"
        elif argv[:3] == ["ip", "netns", "list"]:
            out = "".join(f"{n} (id: {k})\n" for k, n in enumerate(sorted(self.ns)))
        elif argv[:3] == ["ip", "netns", "add"]:
            if argv[3] in self.ns:
                code, err = 1, f'Cannot create namespace file "/run/netns/{argv[3]}": File exists'
            self.ns.add(argv[3])
        elif argv[:3] == ["ip", "netns", "del"]:
            self.ns.discard(argv[3])
        elif argv == ["cat", topology.ALLOWED_CONGESTION_CONTROL]:
            out, code = self.allowed, 0 if self.allowed else 1
        elif argv[0] == "tc" and "netem" in argv and self.tc_error:
            code, err = 2, self.tc_error
        return subprocess.CompletedProcess(argv, code, out, err)


def test_state_file_records_exactly_what_up_made_and_down_removes_only_that(tmp_path):
    path = str(tmp_path / "state.json")
    host = FakeHost(existing={"other-ns", "ttabench-test-a"})
    state = netlab.up(topology.make_spec(2, "100mbit"), run=host, path=path)
    on_disk = json.load(open(path))
    assert on_disk["complete"] and on_disk == state
    assert netlab.recorded_namespaces(on_disk) == ["ttabench-nl-sw", "ttabench-nl-h0", "ttabench-nl-h1"]
    kinds = [m["kind"] for m in on_disk["made"]]
    assert kinds.count("veth") == 2 and kinds.count("qdisc") == 4 and kinds.count("bridge") == 1
    with pytest.raises(UserError, match="already up"):
        netlab.up(topology.make_spec(2, "10mbit"), run=host, path=path)
    removed, gone = netlab.down(run=host, path=path)
    assert sorted(removed) == ["ttabench-nl-h0", "ttabench-nl-h1", "ttabench-nl-sw"] and gone == []
    assert host.ns == {"other-ns", "ttabench-test-a"}  # nothing else touched
    assert not os.path.exists(path)
    assert netlab.down(run=host, path=path) == ([], [])


def test_a_congestion_control_the_host_does_not_allow_namespaces_is_refused_first(tmp_path):
    """A host may offer cubic yet let network namespaces choose only what it allows (seen: reno
    bbr); the kernel would refuse the sysctl half-way: refused before anything is made."""
    path = str(tmp_path / "state.json")
    host = FakeHost(allowed="reno bbr\n")
    with pytest.raises(
        UserError, match=r"choose only reno bbr .*tcp_allowed_congestion_control='reno bbr cubic'"
    ):
        netlab.up(topology.make_spec(2, "100mbit", available=["reno", "bbr", "cubic"]), run=host, path=path)
    assert not host.ns and not os.path.exists(path)
    ok = FakeHost(allowed="reno bbr cubic\n")
    assert netlab.up(topology.make_spec(2, "100mbit", available=["cubic"]), run=ok, path=path)["complete"]


def test_failure_half_way_removes_what_was_made(tmp_path):
    path = str(tmp_path / "state.json")
    host = FakeHost(existing={"other-ns"}, fail_on=lambda a: a[:2] == ["tc", "-n"] and "ttabench-nl-h1" in a)
    with pytest.raises(UserError) as e:
        netlab.up(topology.make_spec(2, "100mbit"), run=host, path=path)
    assert "Operation not permitted" in str(e.value)
    assert host.ns == {"other-ns"} and not os.path.exists(path)


def test_down_after_a_crash_uses_the_partial_state(tmp_path):
    path = str(tmp_path / "state.json")
    netlab.write_state(
        {
            "complete": False,
            "made": [
                {"kind": "netns", "name": "ttabench-nl-sw"},
                {"kind": "netns", "name": "ttabench-nl-h0"},
            ],
        },
        path,
    )
    host = FakeHost(existing={"ttabench-nl-sw", "ttabench-nl-h0", "ttabench-nl-h1", "x"})
    with pytest.raises(UserError, match="not completely built"):
        netlab.load_lab(path)
    removed, _ = netlab.down(run=host, path=path)
    # h1 is not in the state file: not ours to delete.
    assert sorted(removed) == ["ttabench-nl-h0", "ttabench-nl-sw"]
    assert host.ns == {"ttabench-nl-h1", "x"}


def test_up_refuses_unrecorded_lab_namespaces_and_foreign_state_entries(tmp_path):
    path = str(tmp_path / "state.json")
    with pytest.raises(UserError, match="no netlab state file"):
        netlab.up(topology.make_spec(2, "1mbit"), run=FakeHost(existing={"ttabench-nl-h0"}), path=path)
    with pytest.raises(UserError, match="refusing"):
        netlab.recorded_namespaces({"made": [{"kind": "netns", "name": "production"}]})
    open(path, "w").write("{not json")
    with pytest.raises(UserError, match="cannot read the netlab state file"):
        netlab.read_state(path)


def test_missing_netem_gives_the_clear_message_and_removes_the_probe():
    host = FakeHost(tc_error="Error: Specified qdisc kind is unknown.")
    with pytest.raises(UserError) as e:
        netlab.check_netem(run=host)
    assert "sch_netem" in str(e.value) and "--latency" in str(e.value)
    assert host.ns == set()  # the probe namespace is gone
    netlab.check_netem(run=FakeHost())  # a kernel with netem: no error


def test_up_with_delay_checks_netem_before_building_anything(tmp_path):
    host = FakeHost(tc_error="Error: Specified qdisc kind is unknown.")
    with pytest.raises(UserError, match="sch_netem"):
        netlab.up(topology.make_spec(2, "100mbit", delay="5ms"), run=host, path=str(tmp_path / "s.json"))
    assert host.ns == set() and not os.path.exists(tmp_path / "s.json")


def _fake_state(hosts=2):
    spec = topology.make_spec(hosts, "20mbit")
    return dict(
        spec.describe(),
        nodes=spec.nodes,
        complete=True,
        measured=[{"bits_per_s": 19.5e6}, {"bits_per_s": 19.4e6}],
    )


def test_node_commands_one_node_per_namespace_on_its_own_interface():
    run = nodes.check_run_args(["--synthetic", "--max-steps", "3"], 2)
    cmds = nodes.node_commands(_fake_state(), run, port=29999, threads=1)
    assert len(cmds) == 2
    for i, (argv, env) in enumerate(cmds):
        assert argv[:4] == ["ip", "netns", "exec", f"ttabench-nl-h{i}"]
        assert argv[5:8] == ["-m", "ttabench", "run"]
        flags = dict(zip(argv[8::2], argv[9::2]))
        assert flags["--nnodes"] == "2" and flags["--node-rank"] == str(i)
        assert flags["--rdzv-endpoint"] == "10.231.100.1:29999"
        assert flags["--local-addr"] == f"10.231.100.{i + 1}" and flags["--threads"] == "1"
        assert argv[-3:] == ["--synthetic", "--max-steps", "3"]
        assert env["GLOO_SOCKET_IFNAME"] == f"ttanl{i}"
        shaping = netlab.shaping_from_env({netlab.SHAPING_ENV: env[netlab.SHAPING_ENV]})
        assert shaping["rate"] == "20mbit" and shaping["hosts"] == 2 and shaping["node"] == i
        assert shaping["measured_bits_per_s"] == [19.5e6, 19.4e6]
    # The user's --threads wins, also abbreviated as argparse allows.
    for given in (["--threads", "2"], ["--thread", "2"], ["--threads=2"]):
        run = nodes.check_run_args(["--synthetic", *given], 2)
        argv = nodes.node_commands(_fake_state(), run, threads=1)[0][0]
        assert argv[argv.index("--local-addr") + 2 :] == ["--synthetic", *given], argv
    assert netlab.shaping_from_env({}) is None


def test_run_args_are_checked_before_any_node_starts():
    nodes.check_run_args(["--synthetic", "--max-steps", "3"], 2)
    nodes.check_run_args(["--", "--synthetic"], 2)  # the separator itself is not a flag
    with pytest.raises(UserError, match="bad `ttabench run` flags.*--no-such-flag"):
        nodes.check_run_args(["--no-such-flag"], 2)
    with pytest.raises(UserError, match="--batch-size"):
        nodes.check_run_args(["--batch-size", "0"], 2)
    for flag in (["--node-rank", "1"], ["--node-r", "1"], ["--local-addr=10.0.0.1"]):
        with pytest.raises(UserError, match="netlab run sets --(node-rank|local-addr) for each node"):
            nodes.check_run_args(["--synthetic", *flag], 2)
    with pytest.raises(UserError, match="one run per node: leave --seeds out"):
        nodes.check_run_args(["--synthetic", "--seeds", "2"], 2)


def test_default_threads_reads_workers_as_argparse_does(monkeypatch):
    """`--worker 2` is argparse's abbreviation of --workers: the cores are split by it too."""
    monkeypatch.setattr(nodes.system, "usable_cores", lambda: 16)
    for flags, workers in (([], 1), (["--workers", "2"], 2), (["--worker", "2"], 2), (["--workers=4"], 4)):
        run = nodes.check_run_args(["--synthetic", "--batch-size", "32", *flags], 2)
        assert nodes.default_threads(2, run) == 16 // (2 * workers), flags


def test_run_nodes_fails_fast_and_stops_the_others():
    py = sys.executable
    t0 = time.monotonic()
    code = nodes.run_nodes(
        [
            ([py, "-c", "import time; time.sleep(60)"], {}),
            ([py, "-c", "import sys, time; time.sleep(0.5); sys.exit(3)"], {}),
        ]
    )
    assert code == 3 and time.monotonic() - t0 < 20
    assert nodes.run_nodes([([py, "-c", "pass"], {}), ([py, "-c", "pass"], {})]) == 0


# -- as root: the real lab -------------------------------------------------------------


def _root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces and qdiscs"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs iproute2 (ip, tc)"
    if netlab.lab_namespaces():
        # Not this test's to touch; in CI a leftover lab must not turn the root tests into skips.
        msg = "a netlab is already up on this machine (not this test's to touch)"
        if IN_CI:
            pytest.fail(msg + ": CI must start without one (`ttabench netlab down`)")
        return msg
    return None


@pytest.fixture
def lab_env(tmp_path, monkeypatch):
    """A private state file; afterwards the lab is down, whatever happened."""
    reason = _root_skip_reason()
    if reason:
        pytest.skip(reason)
    path = str(tmp_path / "netlab.json")
    monkeypatch.setenv(netlab.STATE_ENV, path)
    try:
        yield {**os.environ, netlab.STATE_ENV: path}, path
    finally:
        _teardown(path)


def _teardown(path):
    try:
        netlab.down(path=path)
    finally:
        for ns in netlab.lab_namespaces():  # only reachable if down itself failed
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert not netlab.lab_namespaces()


@pytest.mark.root
def test_up_status_measure_down(lab_env):
    env, path = lab_env
    bad = run_cli("netlab", "up", "--rate", "100mbit", "--congestion-control", "nosuch", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not available" in bad.stderr
    assert not netlab.lab_namespaces() and not os.path.exists(path)
    # reno, not the default: a host whose own default is cubic must not pass this by chance;
    # likewise a queue that is not the default
    proc = run_cli(
        "netlab", "up", "--hosts", "2", "--rate", "100mbit", "--measure-bytes", "4mb",
        "--congestion-control", "reno", "--queue", "20ms", env=env, check=True,
    )  # fmt: skip
    assert "measured ttabench-nl-h0 -> ttabench-nl-h1" in proc.stdout and "TCP reno" in proc.stdout
    assert "queue 20ms" in proc.stdout
    state = json.load(open(path))
    assert state["complete"] and state["hosts"] == 2 and state["congestion_control"] == "reno"
    assert state["queue"] == "20ms"
    for ns in ("ttabench-nl-h0", "ttabench-nl-h1"):
        read = ["ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.tcp_congestion_control"]
        assert subprocess.run(read, capture_output=True, text=True, check=True).stdout.strip() == "reno"
    assert sorted(netlab.lab_namespaces()) == ["ttabench-nl-h0", "ttabench-nl-h1", "ttabench-nl-sw"]
    # A measurement, so a loose bound: tbf at 100 Mbit/s lets TCP reach 0.9-1.0x here.
    for m in state["measured"]:
        assert 0.5 < m["ratio"] < 1.2, m
    status = run_cli("netlab", "status", env=env, check=True).stdout
    assert "ttanl0 10.231.100.1/24" in status and status.count("qdisc tbf") == 4
    # the kernel's own account of each tbf: 20 ms at the rate
    assert status.count("lat 20") == 4, status
    again = run_cli("netlab", "up", "--rate", "10mbit", env=env)
    assert again.returncode == 2 and "already up" in again.stderr
    measured = run_cli("netlab", "measure", "--bytes", "2mb", "--json", env=env, check=True)
    assert len(json.loads(measured.stdout)) == 2
    down = run_cli("netlab", "down", env=env, check=True)
    assert "removed" in down.stdout
    assert not netlab.lab_namespaces() and not os.path.exists(path)


@pytest.mark.root
def test_up_with_delay_needs_netem(lab_env):
    env, path = lab_env
    try:
        netlab.check_netem()
        has_netem = True
    except UserError:
        has_netem = False
    proc = run_cli("netlab", "up", "--rate", "100mbit", "--delay", "5ms", "--no-measure", env=env)
    if not has_netem:
        assert proc.returncode == 2
        assert "sch_netem" in proc.stderr and "--latency" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not netlab.lab_namespaces() and not os.path.exists(path)
    else:
        assert proc.returncode == 0, proc.stderr
        qdiscs = subprocess.run(
            ["tc", "-n", "ttabench-nl-h0", "qdisc", "show", "dev", "ttanl0"], capture_output=True, text=True
        ).stdout
        assert "netem" in qdiscs and "tbf" in qdiscs


RATES = ("20mbit", "1gbit")


@pytest.fixture(scope="module")
def runs_at_two_rates(tmp_path_factory):
    """The same 2-node torchrun run (ResNet-20, 6 steps, batch 64) over a 20 Mbit/s and a
    1 Gbit/s tbf-limited link: {rate: (summary, config)}."""
    reason = _root_skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("netlab-runs")
    out = {}
    for rate in RATES:
        path = str(tmp / f"state-{rate}.json")
        env = {**os.environ, netlab.STATE_ENV: path}
        try:
            run_cli("netlab", "up", "--hosts", "2", "--rate", rate, "--no-measure", env=env, check=True)
            results = str(tmp / rate)
            run_cli(
                "netlab",
                "run",
                "--timeout",
                "400",
                "--",
                "--synthetic",
                "--max-steps",
                "6",
                "--batch-size",
                "64",
                "--seed",
                "1",
                "--thresholds",
                "0.1:0.2:0.1",
                "--progress",
                "none",
                "--collective-timeout",
                "120",
                "--results-dir",
                results,
                env=env,
                check=True,
                timeout=480,
            )
        finally:
            _teardown(path)
        (run,) = glob.glob(os.path.join(results, "*", "resnet20", "closed", "*"))
        out[rate] = (
            json.load(open(os.path.join(run, "summary.json"))),
            json.load(open(os.path.join(run, "config.json"))),
        )
    return out


@pytest.mark.slow
@pytest.mark.root
def test_two_namespace_run_comm_time_grows_as_rate_falls(runs_at_two_rates):
    waits = {}
    for rate, (summary, _) in runs_at_two_rates.items():
        assert summary["status"] == "success" and summary["nodes"] == 2 and summary["steps"] == 6
        worst = summary["time_breakdown"]["max_over_ranks"]
        assert worst["network_delay_s"] == 0.0  # real shaping, nothing emulated
        waits[rate] = worst["comm_wait_s"]
    # ResNet-20's ~1.1 MB of gradients cross 20 Mbit/s in ~0.45 s per step.
    assert waits["20mbit"] > 2 * waits["1gbit"], waits
    assert waits["20mbit"] > 6 * 0.2, waits


@pytest.mark.slow
@pytest.mark.root
def test_run_records_the_real_shaping(runs_at_two_rates):
    for rate, (_, config) in runs_at_two_rates.items():
        shaping = config["resolved"].get("network_shaping")
        assert shaping is not None, "worker.py does not record $TTABENCH_NETLAB yet"
        assert shaping["rate"] == rate and shaping["hosts"] == 2 and shaping["shape"] == "both"
        assert shaping["congestion_control"] == "cubic"
