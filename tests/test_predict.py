"""`ttabench predict`: the cost model on hand-computed cases, the step profile a run records,
the command on a hand-made run folder, its errors, `bench allreduce --fit`, and a small
version of the validation (benchmarks/validate_predict.py) on real runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from ttabench import UserError
from ttabench.launch.net import cost
from ttabench.launch.net.link import Link, load_profile, parse_series, parse_size, save_profile
from ttabench.launch.worker.timeline import BackwardTimeline, Straggler

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLOW = Link("slow", 1e7, 0.0)  # 10 MB/s, no latency: easy numbers


# -- the cost model, by hand -----------------------------------------------------------


def test_ring_tree_hierarchical_by_hand():
    # ring: 2(p-1) alpha + 2(p-1)/p n/B = 6e-5 + 1.5 * 1e6 / 1e8
    assert cost.ring_time(1e6, 4, 1e-5, 1e8) == pytest.approx(0.01506, rel=1e-12)
    # tree: 2 ceil(log2 5) alpha + 2 n/B = 6e-5 + 0.02
    assert cost.tree_time(1e6, 5, 1e-5, 1e8) == pytest.approx(0.02006, rel=1e-12)
    assert cost.tree_time(1e6, 4, 1e-5, 1e8) == pytest.approx(4e-5 + 0.02, rel=1e-12)
    inter, intra = Link("inter", 1e8, 1e-5), Link("intra", 1e9, 1e-6)
    topo = cost.Topology("hierarchical", per_node=4, intra=intra)
    # 8 = 2 nodes x 4: intra 2*3*1e-6 + 1.5*1e6/1e9 = 0.001506; inter 2*1e-5 + 1*1e6/1e8 = 0.01002
    assert cost.allreduce_time(1e6, 8, inter, topo) == pytest.approx(0.011526, rel=1e-12)
    # one node: only the intra part; a free intra link: only the inter part
    assert cost.allreduce_time(1e6, 4, inter, topo) == pytest.approx(0.001506, rel=1e-12)
    free = cost.Topology("hierarchical", per_node=4)
    assert cost.allreduce_time(1e6, 8, inter, free) == pytest.approx(0.01002, rel=1e-12)
    assert cost.allreduce_time(1e6, 4, inter, cost.Topology("ring")) == pytest.approx(0.01506, rel=1e-12)
    for t in (cost.Topology("ring"), cost.Topology("tree"), topo):
        assert cost.allreduce_time(1e6, 1, inter, t) == 0.0
    assert cost.allreduce_time(1e6, 8, Link("loopback", None, 0.0)) == 0.0


def test_overlap_of_buckets_with_the_backward_pass():
    # bucket 1 ready at 0.10 takes 0.05 (link busy until 0.15); bucket 2 ready at 0.12 waits
    # for the link, runs 0.15..0.18; backward compute ended at 0.12: 0.06 exposed
    assert cost.exposed_comm([(0.10, 0.05, 0.0), (0.12, 0.03, 0.0)], 0.12) == pytest.approx(0.06)
    # fully hidden
    assert cost.exposed_comm([(0.01, 0.05, 0.0), (0.2, 0.01, 0.0)], 0.3) == 0.0
    # the measured transport time is a floor: max(0.1 + 0.01, 0.1 + 0.2) - 0.1
    assert cost.exposed_comm([(0.10, 0.01, 0.2)], 0.10) == pytest.approx(0.2)


def test_bucketize_like_ddp():
    mib = 1024**2
    events = [
        {"bytes": 600_000, "ready_s": 0.1},
        {"bytes": 600_000, "ready_s": 0.2},
        {"bytes": 10 * mib, "ready_s": 0.3},
        {"bytes": 20 * mib, "ready_s": 0.4},
        {"bytes": 5, "ready_s": 0.5},
    ]
    got = cost.bucketize(events)
    assert [(b["bytes"], b["ready_s"]) for b in got] == [(1_200_000, 0.2), (30 * mib, 0.4), (5, 0.5)]


def _profile(**kw) -> cost.StepProfile:
    d = dict(
        world=2,
        batch_size=32,
        compute_s=0.5,
        data_s=0.01,
        control_s=0.002,
        hooks_s=0.003,
        backward_s=0.3,
        buckets=[{"bytes": 1_000_000, "ready_s": 0.2, "allreduce_real_s": 0.001}],
    )
    d.update(kw)
    return cost.StepProfile(**d)


def test_predict_step_by_hand():
    prof = _profile()
    # p = 2: the bucket takes 1e6/1e7 = 0.1 s from 0.2: done at 0.3 = end of backward, hidden
    two = cost.predict_step(prof, 2, SLOW)
    control2 = 2 * 1 / 2 * 24 / 1e7
    assert two["comm_exposed_s"] == pytest.approx(0.0, abs=1e-15)
    assert two["step_time_s"] == pytest.approx(0.01 + 0.5 + 0.002 + control2 + 0.003, rel=1e-12)
    # p = 4: 2*3/4 * 1e6/1e7 = 0.15 s: done at 0.35, 0.05 exposed
    four = cost.predict_step(prof, 4, SLOW)
    control4 = 2 * 3 / 4 * 24 / 1e7
    assert four["comm_exposed_s"] == pytest.approx(0.05, rel=1e-12)
    step4 = 0.01 + 0.5 + 0.05 + 0.002 + control4 + 0.003
    assert four["step_time_s"] == pytest.approx(step4, rel=1e-12)
    assert four["images_per_s"] == pytest.approx(4 * 32 / step4, rel=1e-12)
    # one straggler at 3x: (3-1) x 0.5 s of compute more per step
    slow = cost.predict_step(prof, 4, SLOW, straggler=3.0)
    assert slow["step_time_s"] == pytest.approx(step4 + 1.0, rel=1e-12)
    # one worker: no communication at all, no straggler to wait for
    one = cost.predict_step(prof, 1, SLOW, straggler=3.0)
    assert one["step_time_s"] == pytest.approx(0.01 + 0.5 + 0.002 + 0.003, rel=1e-12)
    rows = cost.scaling_rows(prof, [1, 4], SLOW)
    assert rows[1]["speedup"] == pytest.approx((4 * 32 / step4) / (32 / 0.515), rel=1e-12)
    assert rows[1]["efficiency"] == pytest.approx(rows[1]["speedup"] / 4, rel=1e-12)


def test_fit_alpha_beta_recovers_the_model():
    pts = [(n, cost.ring_time(n, 4, 1e-4, 1e8)) for n in (1e3, 1e5, 1e6, 1e7)]
    alpha, bw = cost.fit_alpha_beta(pts, 4)
    assert alpha == pytest.approx(1e-4, rel=1e-9)
    assert bw == pytest.approx(1e8, rel=1e-9)
    # a negative intercept is no latency: the slope through the origin
    alpha, bw = cost.fit_alpha_beta([(1e6, 0.009), (2e6, 0.02)], 2)
    assert alpha == 0.0
    assert bw == pytest.approx(1 / ((1e6 * 0.009 + 2e6 * 0.02) / 5e12), rel=1e-12)
    with pytest.raises(UserError, match="2 different sizes"):
        cost.fit_alpha_beta([(1e6, 0.1), (1e6, 0.2)], 2)
    with pytest.raises(UserError, match="does not grow"):
        cost.fit_alpha_beta([(1e6, 0.2), (2e6, 0.1)], 2)


def test_parse_series():
    assert parse_series("8:256M:x4", parse_size, "--sizes")[:3] == [8, 32, 128]
    assert parse_series("8:256M:x4", parse_size, "--sizes")[-1] == 8 * 4**12
    assert parse_series("1:1024:x2", int, "--workers") == [2**k for k in range(11)]
    assert parse_series("4kb,1mb,4kb", parse_size, "--sizes") == [4096, 1048576]
    for bad in ("8:1k", "8:1k:4", "1k:8:x4", "8:1k:x1", ""):
        with pytest.raises(UserError):
            parse_series(bad, parse_size, "--sizes")


# -- what a run records ------------------------------------------------------------------


def test_timeline_medians_leave_out_the_first_step():
    tl = BackwardTimeline("buckets")
    for k, (ready1, ready2, real) in enumerate([(5.0, 9.0, 1.0), (0.2, 0.3, 0.01), (0.4, 0.5, 0.03)]):
        t0 = 100.0 * k
        tl.backward_start(t0)
        e1 = tl.ready(t0 + ready1, 1000)
        tl.allreduce_done(e1, real)
        tl.ready(t0 + ready2, 24)
        tl.backward_end(t0 + ready2 + 0.05)
        tl.step_end(t0 + ready2 + 0.07)
    s = tl.summary()
    assert (s["steps_recorded"], s["steps_used"]) == (3, 2)
    assert s["events"][0] == {
        "bytes": 1000,
        "ready_s": pytest.approx(0.3),
        "allreduce_real_s": pytest.approx(0.02),
    }
    assert s["events"][1]["allreduce_real_s"] is None
    assert s["backward_s"] == pytest.approx(0.4)
    assert s["optimizer_s"] == pytest.approx(0.02)
    # a backward pass outside the loop (warm-up) records nothing
    assert BackwardTimeline("gradients").ready(1.0, 8) is None


def test_straggler_sleeps_factor_minus_one_times_the_compute():
    slept = []
    now = [0.0]

    def sleep(s):
        slept.append(s)
        now[0] += s

    st = Straggler(2.5, clock=lambda: now[0], sleep=sleep)
    st.after_compute(0.2)
    st.after_compute(0.4)
    assert slept == pytest.approx([0.3, 0.6])
    assert st.added_s == pytest.approx(0.9)


# -- the command on a hand-made run folder -----------------------------------------------


def _write_run(folder, *, per_rank=None, world=2, status="success", straggler=None):
    os.makedirs(folder, exist_ok=True)
    steps = 10
    bwd = {
        "kind": "buckets",
        "backward_s": 0.3,
        "events": [{"bytes": 1_000_000, "ready_s": 0.2, "allreduce_real_s": 0.001}],
    }
    ranks = per_rank or [
        {
            "rank": r,
            "compute_s": 5.0 - r,
            "data_s": 0.1,
            "control_s": 0.02,
            "hooks_s": 0.03 * (r == 0),
            "backward": bwd,
        }
        for r in range(world)
    ]
    config = {
        "config": {"thresholds": "0.20:0.30:0.10", "target": None, "straggler": straggler},
        "resolved": {
            "world_size": world,
            "global_batch": 32 * world,
            "network": {"profile": "loopback", "bandwidth_bytes_per_s": None, "latency_s": None},
            "network_shaping": None,
        },
        "data": {"train_size": 6400},
    }
    summary = {"status": status, "steps": steps, "train_time_s": 5.2, "time_breakdown": {"per_rank": ranks}}
    for name, obj in (("config.json", config), ("summary.json", summary)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(obj, f)
    with open(os.path.join(folder, "curve.csv"), "w") as f:
        f.write("epoch,step,samples,train_time_s,total_time_s,accuracy,loss\n")
        f.write("0.5,50,3200,26.0,30.0,0.22,2.0\n1.0,100,6400,52.0,60.0,0.31,1.8\n")
    return folder


def test_predict_command_on_a_hand_made_run(tmp_path, cli):
    run = _write_run(str(tmp_path / "run"))
    plot = str(tmp_path / "s.png")
    out = cli("predict", run, "--workers", "1,2,4", "--network", "slow.json", "--json", "--plot", plot)
    assert out.returncode == 2 and "slow.json" in out.stderr  # not written yet: one clear line
    save_profile(str(tmp_path / "slow.json"), SLOW)
    out = cli(
        "predict",
        run,
        "--workers",
        "1,2,4",
        "--network",
        str(tmp_path / "slow.json"),
        "--json",
        "--plot",
        plot,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["critical_rank"] == 0  # the rank with the most compute
    rows = {r["workers"]: r for r in got["rows"]}
    assert set(rows[1]) >= {"workers", "network", "step_time_s", "comm_exposed_s", "images_per_s", "speedup"}
    # per step on rank 0: compute 0.5, data 0.01, control 0.002, hooks 0.003 (max over ranks)
    assert rows[1]["step_time_s"] == pytest.approx(0.515, rel=1e-12)
    four = 0.515 + 0.05 + 2 * 3 / 4 * 24 / 1e7
    assert rows[4]["step_time_s"] == pytest.approx(four, rel=1e-12)
    assert rows[4]["network"] == "file:slow"
    # the run reached 20% at epoch 0.5 and 30% at epoch 1.0; 6400 images / (32 x 4) = 50 steps
    assert rows[4]["tta_s"]["0.2"] == pytest.approx(0.5 * 50 * four, rel=1e-12)
    assert rows[4]["attmt_s"] == pytest.approx(0.75 * 50 * four, rel=1e-12)
    assert "assumed unchanged" in rows[4]["convergence"]
    assert "same global batch 64" in rows[2]["convergence"]
    assert os.path.getsize(plot) > 1000
    table = cli("predict", run, "--workers", "2", "--network", "10gbe,1gbe", "--topology", "tree")
    assert table.returncode == 0 and "10gbe" in table.stdout and "1gbe" in table.stdout


def test_predict_takes_the_runs_own_straggler(tmp_path, cli):
    run = _write_run(str(tmp_path / "run"), straggler="1:3")
    got = json.loads(cli("predict", run, "--workers", "1,2", "--network", "loopback", "--json").stdout)
    assert got["straggler"] == 3.0
    one, two = got["rows"]
    assert one["step_time_s"] == pytest.approx(0.515, rel=1e-12)  # one worker: nobody to wait for
    assert two["step_time_s"] == pytest.approx(0.515 + 2 * 0.5, rel=1e-12)
    assert two["efficiency"] == pytest.approx((2 * 32 / 1.515) / (32 / 0.515) / 2, rel=1e-12)
    again = json.loads(cli("predict", run, "--workers", "2", "--straggler", "1", "--json").stdout)
    assert again["rows"][0]["step_time_s"] == pytest.approx(0.515, rel=1e-12)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--workers", "0"], "--workers must be >= 1"),
        (["--topology", "mesh"], "unknown topology"),
        (["--topology", "hierarchical", "--gpus-per-node", "3", "--workers", "6,8"], "whole number of nodes"),
        (["--network", "nosuchnet"], "unknown network profile"),
        (["--straggler", "0.5"], "factor >= 1"),
    ],
)
def test_predict_bad_input(tmp_path, cli, args, message):
    run = _write_run(str(tmp_path / "run"))
    out = cli("predict", run, *args)
    assert out.returncode == 2
    assert out.stderr.startswith("ttabench: error:") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_predict_refuses_a_run_without_the_profile(tmp_path, cli):
    old = [{"rank": 0, "compute_s": 1.0, "data_s": 0.1, "control_s": 0.0, "hooks_s": 0.0}]
    run = _write_run(str(tmp_path / "old"), per_rank=old, world=1)
    out = cli("predict", run)
    assert out.returncode == 2 and "no step profile" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    failed = str(tmp_path / "failed")
    os.makedirs(failed)
    with open(os.path.join(failed, "summary.json"), "w") as f:
        json.dump({"status": "failed", "error": "boom"}, f)
    with open(os.path.join(failed, "config.json"), "w") as f:
        json.dump({}, f)
    out = cli("predict", failed)
    assert out.returncode == 2 and "status failed" in out.stderr


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "cannot read"),
        ('{"format": "other"}', "not a ttabench network profile"),
        ('{"format": "ttabench-network-profile", "latency_s": 0, "bandwidth_bytes_per_s": -1}', "must be"),
        (
            '{"format": "ttabench-network-profile", "latency_s": "1ms", "bandwidth_bytes_per_s": 1e9}',
            "must be",
        ),
    ],
)
def test_malformed_profile_file(tmp_path, cli, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(UserError, match=message):
        load_profile(str(bad))
    run = _write_run(str(tmp_path / "run"))
    for args in (["predict", run, "--network", str(bad)], ["run", "--synthetic", "--network", str(bad)]):
        out = cli(*args)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_run_rejects_a_bad_straggler(cli):
    for spec, message in (("2:2", "rank 2 does not exist"), ("1:0.5", "FACTOR >= 1"), ("x", "RANK:FACTOR")):
        out = cli("run", "--synthetic", "--workers", "2", "--straggler", spec)
        assert out.returncode == 2 and message in out.stderr, out.stderr


# -- real processes ------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_allreduce_fit_recovers_the_emulated_link(tmp_path, cli):
    prof = str(tmp_path / "link.json")
    out = cli(
        "bench", "allreduce", "--workers", "2", "--bandwidth", "100mbit", "--latency", "5ms",
        "--sizes", "64kb:1mb:x4", "--repeat", "3", "--warmup", "1", "--fit", prof, "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for r in result["rows"]:
        assert r["algbw_GBps"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9, rel=1e-12)
        assert r["busbw_GBps"] == pytest.approx(r["algbw_GBps"] * 2 * 1 / 2, rel=1e-12)
    assert [r["bytes"] for r in result["rows"]] == [65536, 262144, 1048576]
    link = load_profile(prof)
    # The emulator holds every all-reduce to at least the model; real time only adds to
    # it, mostly as a constant (so into the latency), hence the one-sided latency bound.
    # Margins from a measurement under load (3 fits at a load of 10-12 on 2 cores, 5-6x the core
    # count): bandwidth within -0.6 % .. +2.6 %, latency 5.1-6.1 ms; the bounds allow at least 4x that.
    assert link.bandwidth == pytest.approx(12.5e6, rel=0.1)
    assert 0.8 * 5e-3 <= link.latency <= 5e-3 + 10e-3
    bad = cli("bench", "allreduce", "--sizes", "1k", "--fit", str(tmp_path / "no" / "f.json"))
    assert bad.returncode == 2 and "cannot write" in bad.stderr


def test_a_validation_point_keeps_only_its_latest_run(tmp_path):
    from benchmarks import validate_predict

    point = tmp_path / "allreduce-base-r0"
    for run in ("20261204-013437-c7ca91", "20261204-043040-aaaaaa"):
        d = point / "amd-epyc-2c" / "resnet20" / "closed" / run
        d.mkdir(parents=True)
        (d / "summary.json").write_text("{}")
    (point / "log.txt").write_text("the last run's output")
    validate_predict.clear_point(str(point))
    assert not list(point.glob("*/*/*/*")) and (point / "log.txt").exists()


@pytest.mark.slow
def test_validation_in_small(tmp_path, small_data_dir):
    """The committed validation's script on tiny runs: every point measured and predicted;
    the 1-worker prediction reproduces its own run (its parts add up to its step time)."""
    out = str(tmp_path / "v")
    # the small synthetic set on disk: each of the four runs ends in an evaluation, over 200
    # test images there instead of --synthetic's 1,000 (evaluation is no part of a step)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.validate_predict", "--out", out, "--reps", "1",
         "--max-steps", "3", "--batch-size", "32", "--networks", "100mbit",
         "--data-dir", small_data_dir],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(out, "validation.json")) as f:
        v = json.load(f)
    points = [r["point"] for r in v["rows"]]
    assert points == [
        "1 worker (self)",
        "2 workers loopback (self)",
        "emulated 100mbit",
        "straggler 1:2 (loopback)",
    ]
    for r in v["rows"]:
        assert math.isfinite(r["residual"]) and r["measured_step_s"] > 0
    assert abs(v["rows"][0]["residual"]) < 0.05
    # the emulated link's model: 1,078,888 bytes at 100 Mbit/s take 86 ms; some of it may hide
    assert v["rows"][2]["predicted_step_s"] > v["rows"][1]["predicted_step_s"]
    with open(os.path.join(out, "scaling.json")) as f:
        rows = json.load(f)["rows"]
    assert max(r["workers"] for r in rows) == 1024
    assert os.path.getsize(os.path.join(out, "scaling.png")) > 1000


def test_a_real_backward_pass_records_its_buckets_and_gradients(tmp_path):
    """DDP on a real (one-process) gloo group hands whole buckets to the hook; one process
    records every gradient; both add up to the model's gradient bytes."""
    import datetime
    import gc
    import time

    import torch
    import torch.distributed as dist

    from ttabench.launch.worker import comm as comm_mod

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 10))
    nbytes = sum(p.numel() * 4 for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    single = comm_mod.Comm()
    single.wrap_model(model)
    for _ in range(2):
        single.backward_and_step(model(torch.randn(8, 64)).sum(), opt)
    s = single.timeline.summary()
    assert s["kind"] == "gradients" and len(s["events"]) == 4
    assert sum(e["bytes"] for e in s["events"]) == nbytes
    assert s["backward_s"] <= s["backward_return_s"]

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1, timeout=datetime.timedelta(seconds=30))
    try:
        comm = comm_mod.TorchComm("gloo", torch.device("cpu"), timeout_s=30)
        ddp = comm.wrap_model(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)))
        for _ in range(3):
            comm.backward_and_step(ddp(torch.randn(8, 64)).sum(), opt)
        s = comm.timeline.summary()
        assert s["kind"] == "buckets" and s["steps_used"] == 2
        assert sum(e["bytes"] for e in s["events"]) == nbytes
        assert all(e["allreduce_real_s"] >= 0 for e in s["events"])
        # Free DDP while the group is still registered, after its worker thread had time to drop
        # the hook's Python callback: freed last, DDP's reducer destroys the group and joins that
        # thread while holding the GIL the thread waits for (a deadlock seen once in 3 suite runs).
        time.sleep(0.1)
        del ddp
        gc.collect()
    finally:
        dist.destroy_process_group()


def test_predict_is_a_pure_reader():
    code = "import sys, ttabench.launch.commands.predict; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _subset_run(folder):
    """The hand-made run as a 2-worker resnet20 run on the CIFAR-10 subset at global batch 128."""
    _write_run(folder)
    cfg_path, sum_path = os.path.join(folder, "config.json"), os.path.join(folder, "summary.json")
    with open(cfg_path) as f:
        config = json.load(f)
    config["resolved"].update(global_batch=128, threads=1, device="cpu")
    config["data"]["train_size"] = 5085
    with open(sum_path) as f:
        summary = json.load(f)
    summary.update(benchmark="resnet20", dataset="cifar10-subset")
    for path, obj in ((cfg_path, config), (sum_path, summary)):
        with open(path, "w") as f:
            json.dump(obj, f)
    return folder


def test_predict_takes_epochs_to_target_from_the_shipped_rcps(tmp_path, cli):
    from ttabench.divisions import rcp
    from ttabench.launch.commands.predict_convergence import SHIPPED_RCPS

    shipped = os.path.join(SHIPPED_RCPS, "resnet20-cifar10-subset.json")
    refs = {r.batch: r for r in rcp.references(shipped, rcp.load(shipped), "resnet20")}
    m128, m256 = refs[128].mean, refs[256].mean  # olympic means: 6.94 and 8.24 epochs to 45 %
    run = _subset_run(str(tmp_path / "run"))
    out = cli("predict", run, "--workers", "1,2,3,4,8", "--network", "loopback", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["rcps"] == shipped and got["epochs_target"] == 0.45
    assert got["compute_basis"] == {
        "threads_per_worker": 1,
        "batch_per_worker": 64,
        "device": "cpu",
        "measured_workers": 2,
    }
    rows = {r["workers"]: r for r in got["rows"]}
    # global batch 64: below the smallest RCP, which stands for it (as rcp_checker does)
    assert rows[1]["epochs_to_target"] == m128 and rows[1]["epochs_source"] == "rcp"
    assert rows[2]["epochs_to_target"] == m128  # the measured global batch
    # 192: linear between the records at 128 and 256
    assert rows[3]["epochs_to_target"] == pytest.approx((m128 + m256) / 2, rel=1e-12)
    assert rows[4]["epochs_to_target"] == m256 and rows[4]["epochs_source"] == "rcp"
    # 512 is past the largest RCP: nothing to go on but the measured run, and the row says so
    assert rows[8]["epochs_source"] == "measured run" and "assumed unchanged" in rows[8]["convergence"]
    # TTA stretches the measured curve's epochs (20 % at epoch 0.5) by RCP(256) / RCP(128)
    spe = 5085 // 256
    assert rows[4]["tta_s"]["0.2"] == pytest.approx(
        0.5 * m256 / m128 * spe * rows[4]["step_time_s"], rel=1e-12
    )
    table = cli("predict", run, "--workers", "2,4", "--network", "loopback")
    assert table.returncode == 0, table.stderr
    assert "1 thread(s) per worker, batch 64 per worker on cpu" in table.stdout
    assert f"{m256:.2f} (RCP)" in table.stdout


def test_predict_without_rcps_says_every_row_assumes_unchanged_epochs(tmp_path, cli):
    run = _subset_run(str(tmp_path / "run"))
    got = json.loads(cli("predict", run, "--workers", "1,2,4", "--rcps", "none", "--json", check=True).stdout)
    assert got["rcps"] is None and got["epochs_target"] == 0.3  # the run's highest threshold
    for r in got["rows"]:
        assert r["epochs_source"] == "measured run" and r["epochs_to_target"] == 1.0
    rows = {r["workers"]: r for r in got["rows"]}
    assert (
        "assumed unchanged at 64" in rows[1]["convergence"]
        and "assumed unchanged at 256" in rows[4]["convergence"]
    )
    assert "same global batch 128" in rows[2]["convergence"]
    assert "assumed unchanged with the global batch in every row" in got["convergence"]
    # an RCP file for another data set is one line, not a silent assumption
    other = tmp_path / "other.json"
    records = json.load(
        open(os.path.join(os.path.dirname(__file__), "..", "results", "rcps", "resnet20-cifar10-subset.json"))
    )
    for rec in records.values():
        rec["Hyperparams"]["dataset"] = "cifar10"
    other.write_text(json.dumps(records))
    bad = cli("predict", run, "--rcps", str(other))
    assert (
        bad.returncode == 2 and "RCPs for data set cifar10, the run trained on cifar10-subset" in bad.stderr
    )
