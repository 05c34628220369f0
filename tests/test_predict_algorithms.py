"""`ttabench predict --algorithm`: each reference algorithm's predicted step on a synthetic
profile, by hand; the choice of algorithm and parameters; bad input through the real CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_predict import _profile, _write_run

from ttabench import UserError
from ttabench.launch.commands import predict_algorithm as pa
from ttabench.launch.net import cost
from ttabench.launch.net.link import Link, save_profile

LINK = Link("l", 1e7, 0.001)  # 10 MB/s, 1 ms per message step
MATRIX = [(250, 1000)]  # one 250 x 1000 fp32 tensor: S = 1,000,000 bytes
PROF = _profile(use_floor=False)  # test_predict's profile: compute 0.5 s, one 1 MB bucket ready at 0.2 s
# p = 4: the loop's 24-byte control all-reduce, 2(p-1) alpha + 2(p-1)/p 24/B
BASE4 = 0.01 + 0.5 + 0.002 + 0.003 + (6 * 0.001 + 1.5 * 24 / 1e7)


def _alg(name, params=None, shapes=MATRIX):
    return dict(name=name, params=pa.choose(name, params or {}, name, {})[1], shapes=shapes, same_as_run=True)


def _step(name, params=None, shapes=MATRIX, p=4, link=LINK):
    return pa.predict_step(PROF, p, link, cost.Topology(), 1.0, **_alg(name, params, shapes))


def test_allreduce_fp16_topk_decentralized_by_hand():
    # allreduce: the 1 MB bucket, ready at 0.2 s, takes 6 x 1 ms + 1.5 x 1e6 / 1e7 = 0.156 s:
    # done at 0.356 s, 0.056 s after the backward pass ends
    ar = _step("allreduce")
    assert ar["comm_exposed_s"] == pytest.approx(0.056, rel=1e-12)
    assert ar["step_time_s"] == pytest.approx(BASE4 + 0.056, rel=1e-12)
    assert ar["comm_bytes_per_step"] == pytest.approx(1.5e6, rel=1e-12)
    # fp16: half the bytes, 0.006 + 0.075 = 0.081 s from 0.2: hidden by the backward pass
    fp = _step("fp16")
    assert fp["comm_exposed_s"] == pytest.approx(0.0, abs=1e-15)
    assert fp["step_time_s"] == pytest.approx(BASE4, rel=1e-12)
    assert fp["comm_bytes_per_step"] == pytest.approx(0.75e6, rel=1e-12)
    # topk 1 %: k = 2,500 entries; all_gather of 10,000 value bytes and of 10,000 index bytes,
    # each (p-1)(alpha + n/B) = 3 x (0.001 + 0.001), after the step (no overlap)
    tk = _step("topk")
    assert tk["comm_exposed_s"] == pytest.approx(0.012, rel=1e-12)
    assert tk["step_time_s"] == pytest.approx(BASE4 + 0.012, rel=1e-12)
    assert tk["comm_bytes_per_step"] == pytest.approx(3 * 8 * 2500, rel=1e-12)
    # decentralized: S sent to each of two neighbours, alpha + S/B each
    dc = _step("decentralized")
    assert dc["comm_exposed_s"] == pytest.approx(2 * (0.001 + 0.1), rel=1e-12)
    assert dc["step_time_s"] == pytest.approx(BASE4 + 0.202, rel=1e-12)
    assert dc["comm_bytes_per_step"] == pytest.approx(2e6, rel=1e-12)
    # the order on this link and profile: fp16 < topk < allreduce < decentralized
    times = [r["step_time_s"] for r in (fp, tk, ar, dc)]
    assert times == sorted(times)
    # speed-up against one worker (no communication, 0.515 s), efficiency per worker
    rows = pa.scaling_rows(PROF, [1, 4], LINK, cost.Topology(), 1.0, **_alg("topk"))
    assert rows[0]["step_time_s"] == pytest.approx(0.515, rel=1e-12)
    assert rows[1]["speedup"] == pytest.approx((4 * 32 / (BASE4 + 0.012)) / (32 / 0.515), rel=1e-12)
    assert rows[1]["efficiency"] == pytest.approx(rows[1]["speedup"] / 4, rel=1e-12)


def test_powersgd_and_local_sgd_steady_state_by_hand():
    # powersgd rank 2, after its start steps: the bias (1,000 fp32) uncompressed, P = 250 x 2,
    # Q = 1000 x 2; three all-reduces, each with its own 2(p-1) alpha
    shapes = [(250, 1000), (1000,)]
    ps = _step("powersgd", shapes=shapes)
    comm = sum(0.006 + 1.5 * n / 1e7 for n in (4000, 2000, 8000))
    assert ps["comm_exposed_s"] == pytest.approx(comm, rel=1e-12)
    assert ps["step_time_s"] == pytest.approx(BASE4 + comm, rel=1e-12)
    # local SGD, H = 4: one all-reduce of S every 4 steps, its mean per step
    ls = _step("local-sgd")
    assert ls["comm_exposed_s"] == pytest.approx(0.156 / 4, rel=1e-12)
    assert ls["comm_bytes_per_step"] == pytest.approx(1.5e6 / 4, rel=1e-12)
    assert _step("local-sgd", {"local_steps": 2})["comm_exposed_s"] == pytest.approx(0.078, rel=1e-12)
    # over a run's first steps (what a measured run's mean holds): PowerSGD start step 2 over
    # 4 steps = two plain all-reduces of S = 1,004,000 (0.006 + 1.5 x 0.1004 = 0.1566 s each)
    # and two steady steps; local SGD over
    # 6 steps = one average (after step 4), not 6/4 of one
    run_ps = pa.predict_step(
        PROF,
        4,
        LINK,
        cost.Topology(),
        1.0,
        **_alg("powersgd", {"powersgd_start_step": 2}, shapes),
        run_steps=4,
    )
    assert run_ps["comm_exposed_s"] == pytest.approx((2 * 0.1566 + 2 * comm) / 4, rel=1e-12)
    run_ls = pa.predict_step(PROF, 4, LINK, cost.Topology(), 1.0, **_alg("local-sgd"), run_steps=6)
    assert run_ls["comm_exposed_s"] == pytest.approx(0.156 / 6, rel=1e-12)
    assert run_ls["comm_bytes_per_step"] == pytest.approx(1.5e6 / 6, rel=1e-12)


def test_serial_communication_adds_the_runs_synchronisation_wait():
    # decentralized's model here: 2 x (0.001 + 0.1) = 0.202 s. A run of it on loopback (link model
    # 0) waited 0.03 s a step for its peers: a slower link adds its transfer to that wait
    floor = dataclasses.replace(PROF, use_floor=True)  # PROF: as measured with real shaping
    shapes = MATRIX
    info = {
        "algorithm": "decentralized",
        "algorithm_params": {},
        "link": Link("loopback", None, 0.0),
        "comm_wait_total_step_s": 0.03,
        "steps": 10,
    }
    sync = pa.sync_wait(floor, dict(info), "decentralized", shapes)
    assert sync == pytest.approx(0.03, rel=1e-12)
    dc = dict(_alg("decentralized"), sync_wait_s=sync)
    r = pa.predict_step(floor, 4, LINK, cost.Topology(), 1.0, **dc)
    assert r["comm_exposed_s"] == pytest.approx(0.232, rel=1e-12)
    assert r["sync_wait_s"] == pytest.approx(0.03, rel=1e-12)
    # a run on an emulated link waited the link's modelled time plus its skew: only the excess is
    # synchronisation (the emulator hides a real transfer shorter than the model)
    emulated = dict(info, link=LINK, comm_wait_total_step_s=0.21)
    assert pa.sync_wait(floor, emulated, "decentralized", shapes) == pytest.approx(0.008, rel=1e-9)
    assert pa.sync_wait(floor, dict(emulated, comm_wait_total_step_s=0.1), "decentralized", shapes) == 0
    # from a run of another algorithm, with real shaping, or for allreduce/fp16 (their buckets'
    # measured floor): nothing added
    assert pa.sync_wait(floor, dict(info, algorithm="topk"), "decentralized", shapes) == 0
    assert pa.sync_wait(PROF, info, "decentralized", shapes) == 0
    assert pa.sync_wait(floor, dict(info, algorithm="allreduce"), "allreduce", shapes) == 0
    other = dict(dc, same_as_run=False)
    assert pa.predict_step(floor, 4, LINK, cost.Topology(), 1.0, **other)["comm_exposed_s"] == pytest.approx(
        0.202
    )
    assert pa.predict_step(PROF, 4, LINK, cost.Topology(), 1.0, **dc)["comm_exposed_s"] == pytest.approx(
        0.202
    )
    # the run's own parameters and steps, whatever is asked: a local-SGD run of H = 2 over 6 steps
    # (one warm-up step of plain all-reduce, then its rounds of 2, as the run ran),
    # predicted for H = 8, keeps the wait it measured beyond its own operations
    ls = {"local_steps": 2, "local_sgd_warmup_steps": 1}
    run_ls = dict(
        info, algorithm="local-sgd", algorithm_params=ls, link=LINK, comm_wait_total_step_s=0.2, steps=6
    )
    own = pa.choose("local-sgd", ls, "local-sgd", {})[1]
    expected = 0.2 - pa.serial_comm_time("local-sgd", own, shapes, floor.world, LINK, 6)
    assert (
        pa.sync_wait(floor, run_ls, "local-sgd", shapes) == pytest.approx(expected, rel=1e-12)
        and expected > 0
    )
    # one worker sends nothing and waits for no one
    assert pa.predict_step(floor, 1, LINK, cost.Topology(), 1.0, **dc)["comm_exposed_s"] == 0.0


def test_choice_of_algorithm_parameters_and_compute_note():
    # no --algorithm: the run's own, with the run's own parameters
    assert pa.choose(None, {}, "topk", {"topk_ratio": 0.05}) == ("topk", {"topk_ratio": 0.05})
    # another algorithm: its defaults, or the flags given
    assert pa.choose("topk", {}, "allreduce", {}) == ("topk", {"topk_ratio": 0.01})
    assert pa.choose("topk", {"topk_ratio": 0.1}, "topk", {"topk_ratio": 0.05})[1] == {"topk_ratio": 0.1}
    with pytest.raises(UserError, match="did you mean powersgd"):
        pa.choose("powersdg", {}, "allreduce", {})
    own = pa.compute_note("topk", "topk")
    assert own["algorithm_compute"] == "measured" and "top-k selection" in own["note"]
    other = pa.compute_note("powersgd", "allreduce")
    assert other["algorithm_compute"] == "not measured" and "not included" in other["note"]
    back = pa.compute_note("allreduce", "topk")
    assert back["algorithm_compute"] == "none" and "includes the run's topk compute" in back["note"]
    assert pa.compute_note("allreduce", "allreduce")["algorithm_compute"] == "none"
    # a blocking hook's run: its compute also holds its communication of all but the last bucket
    assert "every gradient bucket but the last" in own["note"]
    # the averaging of local-sgd and decentralized is communication wait in the run, not compute
    # (in the synchronisation wait that predict adds, unless the run was really shaped)
    avg = pa.compute_note("decentralized", "decentralized")
    assert avg["algorithm_compute"] == "in the synchronisation wait" and "communication wait" in avg["note"]
    shaped = pa.compute_note("local-sgd", "local-sgd", shaped=True)
    assert shaped["algorithm_compute"] == "not measured" and "not included" in shaped["note"]


def _run_with(tmp_path, algorithm=None, params=None, shapes=None):
    run = _write_run(str(tmp_path / "run"))
    if algorithm or shapes:
        with open(f"{run}/summary.json") as f:
            summary = json.load(f)
        if algorithm:
            summary.update(algorithm=algorithm, algorithm_params=params or {})
        if shapes:
            summary["comm_bytes_model"] = {"model_bytes": 1_000_000, "param_shapes": shapes}
        with open(f"{run}/summary.json", "w") as f:
            json.dump(summary, f)
    save_profile(str(tmp_path / "l.json"), LINK)
    return run, str(tmp_path / "l.json")


def test_predict_command_for_another_algorithm(tmp_path, cli):
    run, link = _run_with(tmp_path, shapes=[[250, 1000]])
    out = cli("predict", run, "--workers", "1,4", "--network", link, "--algorithm", "topk", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["algorithm"] == "topk" and got["algorithm_params"] == {"topk_ratio": 0.01}
    assert got["run_algorithm"] == "allreduce"
    assert got["algorithm_compute"] == "not measured" and "not included" in got["algorithm_compute_note"]
    # the hand-made run's critical rank: compute 0.5, data 0.01, control 0.002, hooks 0.003
    four = got["rows"][1]
    assert four["step_time_s"] == pytest.approx(BASE4 + 0.012, rel=1e-12)
    table = cli("predict", run, "--workers", "4", "--network", link, "--algorithm", "powersgd")
    assert table.returncode == 0, table.stderr
    assert "algorithm powersgd powersgd_rank=2" in table.stdout and "not measured" in table.stdout


def test_predict_command_defaults_to_the_runs_own_algorithm(tmp_path, cli):
    run, link = _run_with(tmp_path, "decentralized", {}, [[250, 1000]])
    out = cli("predict", run, "--workers", "1,2,4", "--network", link, "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["algorithm"] == "decentralized" and got["algorithm_compute"] == "in the synchronisation wait"
    assert [r["workers"] for r in got["rows"]] == [4]  # below 3 workers: refused, said so
    assert [r["workers"] for r in got["refused_workers"]] == [1, 2]
    assert got["rows"][0]["step_time_s"] == pytest.approx(BASE4 + 0.202, rel=1e-12)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--algorithm", "allreduse"], "unknown --algorithm 'allreduse' (did you mean allreduce?)"),
        (["--algorithm", "powersgd", "--powersgd-rank", "0"], "--powersgd-rank must be in [1, 64], got 0"),
        (["--algorithm", "local-sgd", "--local-steps", "0"], "--local-steps must be in [1, 1024], got 0"),
        (["--algorithm", "topk", "--topk-ratio", "1"], "--topk-ratio must be in (0, 1), got 1.0"),
        (["--topk-ratio", "0.1"], "--topk-ratio is a parameter of --algorithm topk, not allreduce"),
        (["--algorithm", "decentralized", "--workers", "1,2"], "decentralized needs at least 3 workers"),
        (["--algorithm", "topk", "--topology", "tree"], "ring schedules only"),
        (["--algorithm", "powersgd"], "recorded no parameter shapes"),
    ],
)
def test_predict_algorithm_bad_input(tmp_path, cli, args, message):
    run = _write_run(str(tmp_path / "run"))  # an allreduce run without recorded shapes
    out = cli("predict", run, *args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttabench: error:") and message in lines[0], out.stderr
    assert out.stdout == ""
