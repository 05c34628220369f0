"""Each reference algorithm trains for real (gloo, CPU, synthetic data, a few steps), and the
bytes its workers counted equal the specification's formula (divisions/algorithms.py)."""

from __future__ import annotations

import glob
import json
import os

import pytest
from conftest import require_horovod

from ttabench.divisions import algorithms as alg


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttabench: error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


# (algorithm, workers, flags): parameters chosen so that a 4-step run exercises the switch
# (PowerSGD from step 2, two local-SGD averages, one warm-up step)
RUNS = [
    ("allreduce", 2, []),
    ("fp16", 2, []),
    ("powersgd", 2, ["--powersgd-start-step", "2", "--powersgd-rank", "1"]),
    ("local-sgd", 2, ["--local-steps", "2", "--local-sgd-warmup-steps", "1"]),
    ("decentralized", 3, []),
    ("topk", 2, ["--topk-ratio", "0.05"]),
]
# and at 4 workers, where N enters every formula but decentralized's (the closed division's
# smallest batch, 32 per worker)
RUNS += [(name, 4, flags) for name, _, flags in RUNS]


def _run(cli, tmp_path, *flags, data_dir=None, eval_every="4steps"):
    # One evaluation, at the end, unless a test checks something recorded at each one: the
    # bytes and the formula do not depend on evaluations, and each one costs a pass over the
    # test set on every worker (the small synthetic set on disk: 200 test images, not the
    # 1,000 of --synthetic). The thread count does not enter the bytes either.
    data = ("--data-dir", data_dir) if data_dir else ("--synthetic",)
    return cli(
        "run", *data, "--batch-size", "32", "--max-steps", "4", "--eval-every", eval_every,
        "--threads", "1", "--progress", "none", "--results-dir", str(tmp_path / "r"), "--seed", "1",
        *flags, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, workers, flags", RUNS, ids=[f"{r[0]}-{r[1]}" for r in RUNS])
def test_measured_bytes_equal_the_formula(cli, tmp_path, small_data_dir, algorithm, workers, flags):
    # decentralized records its consensus distance at each evaluation: two of them (steps 2, 4)
    eval_every = "2steps" if algorithm == "decentralized" else "4steps"
    proc = _run(
        cli, tmp_path, "--workers", str(workers), "--algorithm", algorithm, *flags,
        data_dir=small_data_dir, eval_every=eval_every,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = glob.glob(str(tmp_path / "r" / "*" / "*" / "*" / "*"))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert summary["status"] == "success" and summary["steps"] == 4
    assert summary["algorithm"] == algorithm == config["resolved"]["algorithm"]
    params = config["resolved"]["algorithm_params"]
    assert params == summary["algorithm_params"]
    assert set(params) == {p.name for p in alg.PARAMS if p.algorithm == algorithm}
    # every worker counted what it handed over; the formula is the specification's, evaluated
    # for the model's shapes, the workers and the 4 steps
    per_rank = [b["comm_bytes"] for b in summary["time_breakdown"]["per_rank"]]
    assert len(per_rank) == workers and all(c["steps"] == 4 for c in per_rank)
    assert summary["comm_bytes_per_step"] > 0
    assert summary["comm_bytes_per_step"] == pytest.approx(summary["comm_bytes_formula"], rel=1e-12)
    assert summary["comm_bytes_model"]["model_bytes"] == 4 * config["model"]["parameters"]
    mllog = open(os.path.join(run_dir, "mllog.txt")).read()
    assert f'"key": "ttabench_algorithm", "value": "{algorithm}"' in mllog
    if algorithm == "decentralized":
        assert [c["step"] for c in summary["consensus_distance"]] == [2, 4]
        assert all(c["value"] > 0 for c in summary["consensus_distance"])
        assert "ttabench_consensus_distance" in mllog
    else:
        assert "consensus_distance" not in summary
    # predict, for the run's own algorithm, parameters and workers, sends what the run measured
    # (the algorithms whose every step sends the same; PowerSGD's start steps and local SGD's
    # rounds make the run's mean differ from predict's steady state)
    out = cli("predict", run_dir, "--workers", str(workers), "--rcps", "none", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["algorithm"] == algorithm and got["algorithm_params"] == params
    wait = "in the synchronisation wait"  # their averaging: in the run's communication wait
    own = {"allreduce": "none", "local-sgd": wait, "decentralized": wait}
    assert got["algorithm_compute"] == own.get(algorithm, "measured")
    if algorithm in ("allreduce", "fp16", "decentralized", "topk"):
        predicted = got["rows"][0]["comm_bytes_per_step"]
        assert predicted == pytest.approx(summary["comm_bytes_per_step"], rel=1e-12)


@pytest.mark.slow
def test_fp16_under_horovod(cli, tmp_path, small_data_dir):
    """Horovod's Compression.fp16: the gradient bytes handed to its optimizer, halved."""
    require_horovod()
    proc = _run(
        cli, tmp_path, "--workers", "2", "--backend", "horovod", "--algorithm", "fp16",
        data_dir=small_data_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = glob.glob(str(tmp_path / "r" / "*" / "*" / "*" / "*"))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["backend"] == "horovod" and summary["algorithm"] == "fp16"
    assert summary["comm_bytes_per_step"] == summary["comm_bytes_formula"] > 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--algorithm", "allreduse"], "invalid choice 'allreduse' (did you mean allreduce?)"),
        (["--algorithm", "powersgd", "--powersgd-rank", "0"], "--powersgd-rank must be in [1, 64], got 0"),
        (["--algorithm", "local-sgd", "--local-steps", "0"], "--local-steps must be in [1, 1024], got 0"),
        (["--algorithm", "topk", "--topk-ratio", "1"], "--topk-ratio must be in (0, 1), got 1.0"),
        (["--algorithm", "topk", "--topk-ratio", "0"], "--topk-ratio must be in (0, 1), got 0.0"),
        (["--topk-ratio", "0.1"], "--topk-ratio is a parameter of --algorithm topk, not allreduce"),
        (["--algorithm", "decentralized"], "--algorithm decentralized needs at least 3 workers"),
        (["--algorithm", "powersgd", "--backend", "horovod"], "--algorithm powersgd runs under torchrun"),
        (["--algorithm", "topk", "--checkpoint-every", "1epoch"], "checkpoints do not hold yet"),
    ],
)
def test_bad_algorithm_input_is_one_line_and_makes_nothing(cli, tmp_path, flags, message):
    line = one_error_line(_run(cli, tmp_path, "--workers", "2", *flags))
    assert message in line
    assert not (tmp_path / "r").exists()
