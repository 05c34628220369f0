"""Network emulation: tc-style units, profiles, the alpha-beta model and the added delay."""

from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist

from ttabench import UserError
from ttabench.launch.net.link import PROFILES, Link, LinkEmulator, parse_rate, parse_size, parse_time, resolve
from ttabench.launch.worker import comm as comm_mod


@pytest.mark.parametrize(
    "text,bytes_per_s",
    [
        ("1gbit", 125e6),
        ("100mbit", 12.5e6),
        ("10kbit", 1250.0),
        ("8bit", 1.0),
        ("800", 100.0),
        ("125mbps", 125e6),
        ("1kbps", 1000.0),
        ("1mibit", 131072.0),
        ("2.5gbit", 312.5e6),
        ("1GBIT", 125e6),
    ],
)
def test_parse_rate(text, bytes_per_s):
    assert parse_rate(text) == pytest.approx(bytes_per_s, rel=1e-12)


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("0.5ms", 0.5e-3),
        ("50us", 50e-6),
        ("2s", 2.0),
        ("100", 100e-6),
        ("1msec", 1e-3),
        ("10usec", 10e-6),
        ("0", 0.0),
    ],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    "text,nbytes",
    [
        ("4kb", 4096),
        ("1mb", 1048576),
        ("16MB", 16 * 1048576),
        ("100", 100),
        ("3b", 3),
        ("1k", 1024),
        ("8kbit", 1024),
    ],
)
def test_parse_size(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize(
    "fn,text",
    [
        (parse_rate, "fast"),
        (parse_rate, "1 gigabit"),
        (parse_rate, "0mbit"),
        (parse_rate, "-1mbit"),
        (parse_time, "5 minutes"),
        (parse_time, "ms"),
        (parse_size, "0kb"),
        (parse_size, "1 parsec"),
    ],
)
def test_bad_units_are_user_errors(fn, text):
    with pytest.raises(UserError) as e:
        fn(text)
    assert text in str(e.value)


def test_profiles_and_overrides():
    assert not resolve(None, None, None).emulated
    assert resolve("1gbe", None, None) == PROFILES["1gbe"]
    link = resolve("1gbe", None, "1ms")
    assert link.bandwidth == 125e6 and link.latency == 1e-3 and link.name == "1gbe+override"
    custom = resolve(None, "100mbit", "0.5ms")
    assert custom.bandwidth == 12.5e6 and custom.latency == 0.5e-3 and custom.name == "custom"
    assert resolve(None, "100mbit", None).latency == 0.0
    with pytest.raises(UserError, match="unknown network profile") as info:
        resolve("carrier-pigeon", None, None)
    assert "did you mean" not in str(info.value)
    with pytest.raises(
        UserError, match=r"unknown network profile '10gb' \(did you mean 10gbe\? one of loopback"
    ):
        resolve("10gb", None, None)
    with pytest.raises(UserError, match="needs --bandwidth"):
        resolve(None, None, "1ms")


def test_a_link_with_one_worker_is_recorded_as_not_applied():
    assert PROFILES["1gbe"].describe_for(2) == PROFILES["1gbe"].describe()
    assert PROFILES["loopback"].describe_for(1) == PROFILES["loopback"].describe()
    one = PROFILES["1gbe"].describe_for(1)
    assert one["applied"] is False and one["mechanism"] == "none" and one["profile"] == "loopback"
    assert one["bandwidth_bytes_per_s"] is None  # what `predict` reads: the run was measured unshaped
    assert one["requested"]["profile"] == "1gbe" and one["requested"]["bandwidth_bytes_per_s"] == 125e6
    assert "not applied" in one["note"]


@pytest.mark.slow
def test_one_worker_runs_report_together_whatever_network_was_asked(tmp_path, small_data_dir):
    import json

    from conftest import run_cli

    results = str(tmp_path / "results")
    # the small synthetic set on disk, one thread: the network's record is the subject
    common = ["--data-dir", small_data_dir, "--max-steps", "1", "--batch-size", "32", "--threads", "1"]
    common += ["--progress", "none"]
    common += ["--results-dir", results, "--system", "box"]
    asked = run_cli("run", *common, "--network", "1gbe", "--seed", "1", check=True)
    assert "network 1gbe not applied: with 1 worker no collective crosses a link" in asked.stderr
    run_cli("run", *common, "--seed", "2", check=True)
    (config_path,) = [
        p for p in (tmp_path / "results").glob("box/*/*/*/config.json") if "1gbe" in p.read_text()
    ]
    net = json.loads(config_path.read_text())["resolved"]["network"]
    assert net["applied"] is False and net["requested"]["profile"] == "1gbe"
    rows = json.loads(run_cli("report", results, "--format", "json", check=True).stdout)["rows"]
    assert [(r["workers"], r["network"], r["runs"]) for r in rows] == [(1, "not applied (1 worker)", 2)]


def test_ring_allreduce_model_by_hand():
    link = Link("t", bandwidth=125e6, latency=50e-6)  # 1 Gbit/s, 50 us
    n = 1048576
    # p = 2: 2 steps of latency, and 2(p-1)/p = 1 buffer crosses the link.
    assert link.allreduce_time(n, 2) == pytest.approx(2 * 50e-6 + n / 125e6, rel=1e-12)
    # p = 4: 6 steps, 6/4 of the buffer.
    assert link.allreduce_time(n, 4) == pytest.approx(6 * 50e-6 + 1.5 * n / 125e6, rel=1e-12)
    assert link.allreduce_time(n, 1) == 0.0
    assert PROFILES["loopback"].allreduce_time(n, 8) == 0.0


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t
        self.sleeps = []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s


def test_emulator_adds_only_the_missing_time():
    link = Link("t", bandwidth=1e6, latency=1e-3)
    clock = FakeClock(100.0)
    emu = LinkEmulator(link, world=2, clock=clock, sleep=clock.sleep)
    model = link.allreduce_time(10_000, 2)  # 2 ms + 10 ms = 12 ms
    assert model == pytest.approx(0.012)
    clock.t = 100.004  # the real collective took 4 ms
    added = emu.complete(started=100.0, nbytes=10_000)
    assert added == pytest.approx(0.008)
    assert clock.t == pytest.approx(100.012)
    # A collective slower than the model gets nothing added.
    clock.t = 200.0
    assert emu.complete(started=199.0, nbytes=10_000) == 0.0


def test_emulator_serialises_collectives_on_one_link():
    link = Link("t", bandwidth=1e6, latency=0.0)
    clock = FakeClock(10.0)
    emu = LinkEmulator(link, world=2, clock=clock, sleep=clock.sleep)
    # Two 1000-byte collectives both started at t=10; each needs 1 ms of link.
    emu.complete(10.0, 1000)
    assert clock.t == pytest.approx(10.001)
    emu.complete(10.0, 1000)  # waits for the first to leave the link
    assert clock.t == pytest.approx(10.002)
    assert emu.modelled_s == pytest.approx(0.002)


def test_ddp_hook_adds_the_modelled_delay_with_a_fake_clock(tmp_path):
    """A real DDP model on a real (one-process) gloo group; the emulator pretends
    the ring has 2 workers so every bucket is held for its modelled time."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1, timeout=datetime.timedelta(seconds=30))
    try:
        comm = comm_mod.TorchComm("gloo", torch.device("cpu"), timeout_s=30)
        link = Link("t", bandwidth=1e6, latency=1e-3)
        clock = FakeClock(50.0)
        comm.emulator = LinkEmulator(link, world=2, clock=clock, sleep=clock.sleep)
        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 10))
        ddp = comm.wrap_model(model)
        loss = ddp(torch.randn(8, 64)).sum()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        comm.backward_and_step(loss, opt)
        nbytes = sum(p.numel() * 4 for p in model.parameters())
        # The clock never moved during the real collective, so the emulator
        # slept exactly the model time of the bucket(s) it saw.
        assert sum(clock.sleeps) == pytest.approx(comm.emulator.modelled_s)
        buckets = len(clock.sleeps)
        assert buckets >= 1
        expected = buckets * 2 * 1e-3 + nbytes / 1e6  # 2(p-1) latencies per bucket + all bytes
        assert comm.emulator.modelled_s == pytest.approx(expected, rel=1e-9)
        assert comm.comm_wait_s == pytest.approx(comm.emulator.modelled_s, rel=1e-9)
    finally:
        dist.destroy_process_group()
