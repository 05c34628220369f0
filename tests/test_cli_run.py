"""`ttabench run` and `ttabench metrics` as a user runs them: real subprocesses,
real results folders, tiny step counts (synthetic data or the real subset)."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import process_tree, run_cli

from ttabench.divisions import metrics
from ttabench.divisions.results import curve_points, read_curve
from ttabench.reference_impls.recipe import THRESHOLDS

HEADER = "epoch,step,samples,train_time_s,total_time_s,accuracy,loss"
SMALL = ("--batch-size", "32", "--threads", "1", "--progress", "none")


def _run_dirs(root: Path) -> list[Path]:
    """Every run folder under a results root: <system>/<benchmark>/<division>/<run-id>."""
    return sorted(p for p in root.glob("*/*/*/*") if p.is_dir())


def _only_run_dir(root: Path) -> Path:
    dirs = _run_dirs(root)
    assert len(dirs) == 1, dirs
    return dirs[0]


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def _mllog(run_dir: Path) -> list[dict]:
    lines = (run_dir / "mllog.txt").read_text().splitlines()
    assert lines
    events = []
    for line in lines:
        assert line.startswith(":::MLLOG "), line
        events.append(json.loads(line[len(":::MLLOG ") :]))
    return events


# --- a. a synthetic run and its results folder --------------------------------------------


# synthetic_run: trained once per session (tests/conftest.py), read by other modules too.


@pytest.mark.slow
def test_run_layout(synthetic_run):
    root, run_dir, _ = synthetic_run
    system, benchmark, division, run_id = run_dir.relative_to(root).parts
    assert (benchmark, division) == ("resnet20", "closed")
    for name in ("mllog.txt", "config.json", "curve.csv", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert (root / system / "system.json").is_file()
    system_json = json.loads((root / system / "system.json").read_text())
    assert "software" in system_json and system_json["software"]["torch"]
    # atomic writes leave no temporary files behind
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_run_prints_plain_progress(synthetic_run):
    _, run_dir, proc = synthetic_run
    assert "run_start" in proc.stdout and "run_stop" in proc.stdout
    assert proc.stdout.count("eval at epoch") == 2
    assert "results:" in proc.stdout


@pytest.mark.slow
def test_run_prints_the_folder_on_one_line(synthetic_run):
    _, run_dir, proc = synthetic_run
    assert any(line.strip().endswith(str(run_dir)) for line in proc.stdout.splitlines()), proc.stdout


@pytest.mark.slow
def test_run_curve(synthetic_run):
    _, run_dir, _ = synthetic_run
    text = (run_dir / "curve.csv").read_text()
    assert text.splitlines()[0] == HEADER
    rows = list(csv.DictReader(text.splitlines()))
    # 6 steps of 32, an evaluation every 96 samples: after steps 3 and 6
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert [int(r["samples"]) for r in rows] == [96, 192]
    for r in rows:
        assert 0 <= float(r["accuracy"]) <= 1
        assert 0 < float(r["train_time_s"]) <= float(r["total_time_s"])
    assert float(rows[0]["train_time_s"]) < float(rows[1]["train_time_s"])


@pytest.mark.slow
def test_run_summary(synthetic_run):
    _, run_dir, _ = synthetic_run
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "success"
    assert s["stop_reason"] == "max_steps"
    assert s["synthetic"] is True and s["dataset"] == "synthetic"
    assert s["steps"] == 6 and s["samples"] == 192
    assert s["global_batch"] == 32 and s["world_size"] == 1
    assert s["benchmark"] == "resnet20" and s["division"] == "closed"


@pytest.mark.slow
def test_run_summary_metrics_recomputable_from_curve(synthetic_run):
    _, run_dir, _ = synthetic_run
    s = json.loads((run_dir / "summary.json").read_text())
    points = curve_points(read_curve(str(run_dir / "curve.csv")))
    again = metrics.summarize(points, metrics.parse_thresholds("0.1:0.3:0.1"))
    assert s["metrics"]["thresholds"] == [0.1, 0.2, 0.3] == again["thresholds"]
    for key in ("tta_s", "ttmt", "attmt_s"):
        assert s["metrics"][key] == again[key], key
    assert "aat" not in s["metrics"] and "target_tta_s" not in s["metrics"]
    assert s["metrics"]["final_accuracy"] == points[-1][1]
    assert s["metrics"]["best_accuracy"] == max(a for _, a in points)
    assert s["train_time_s"] == points[-1][0]


@pytest.mark.slow
def test_metrics_command_on_the_run_folder_matches_summary(synthetic_run):
    _, run_dir, _ = synthetic_run
    proc = run_cli("metrics", str(run_dir), "--thresholds", "0.1:0.3:0.1", "--json")
    _ok(proc)
    out = json.loads(proc.stdout)
    s = json.loads((run_dir / "summary.json").read_text())
    assert set(out) == {"thresholds", "tta_s", "ttmt", "attmt_s"}
    for key in out:
        assert out[key] == s["metrics"][key], key


@pytest.mark.slow
def test_run_config(synthetic_run):
    _, run_dir, _ = synthetic_run
    c = json.loads((run_dir / "config.json").read_text())
    s = json.loads((run_dir / "summary.json").read_text())
    r = c["resolved"]
    assert isinstance(r["seed"], int) and r["seed"] == s["seed"]
    assert r["threads"] == 1
    assert r["precision"] == "fp32"
    assert r["global_batch"] == 32 and r["eval_every_samples"] == 96
    assert c["config"]["max_steps"] == 6 and c["config"]["synthetic"] is True
    assert c["model"]["parameters"] == 269722
    assert c["data"]["name"] == "synthetic" and c["data"]["synthetic"] is True
    assert c["recipe"]["base_lr"] == 0.1


@pytest.mark.slow
def test_run_mllog(synthetic_run):
    _, run_dir, _ = synthetic_run
    events = _mllog(run_dir)
    keys = [e["key"] for e in events]
    for key in (
        "run_start",
        "run_stop",
        "eval_accuracy",
        "seed",
        "global_batch_size",
        "init_start",
        "init_stop",
        "submission_benchmark",
    ):
        assert key in keys, key
    assert keys.index("init_stop") < keys.index("run_start") < keys.index("run_stop")
    assert keys[-1] == "run_stop"
    c = json.loads((run_dir / "config.json").read_text())
    by_key = {e["key"]: e for e in events}
    assert by_key["seed"]["value"] == c["resolved"]["seed"]
    assert by_key["global_batch_size"]["value"] == 32
    rows = read_curve(str(run_dir / "curve.csv"))
    assert [e["value"] for e in events if e["key"] == "eval_accuracy"] == [r["accuracy"] for r in rows]
    assert by_key["run_stop"]["metadata"]["status"] == "success"


# --- b. the real subset ----------------------------------------------------------------------


@pytest.mark.slow
def test_run_on_real_subset(subset_dir, subset_runs):
    # the session's two real-subset runs (tests/conftest.py): 3 steps of 32, an evaluation every 32 samples
    for run_dir in _run_dirs(subset_runs):
        rows = read_curve(str(run_dir))
        assert [r["step"] for r in rows] == [1, 2, 3]
        for row in rows:
            assert 0 <= row["accuracy"] <= 1
            # the accuracy is a count over the 1017 test images
            assert abs(row["accuracy"] * 1017 - round(row["accuracy"] * 1017)) < 1e-6
        s = json.loads((run_dir / "summary.json").read_text())
        assert s["status"] == "success" and s["dataset"] == "cifar10-subset" and s["synthetic"] is False
        c = json.loads((run_dir / "config.json").read_text())
        assert c["data"]["train_size"] == 5085 and c["data"]["test_size"] == 1017
        assert c["data"]["data_dir"] == os.path.abspath(subset_dir)
        assert c["resolved"]["steps_per_epoch"] == 5085 // 32
    assert len(_run_dirs(subset_runs)) == 2


# --- c. metrics on a hand-written curve --------------------------------------------------------

CURVE = (
    HEADER
    + """
1.0,10,1280,12.5,14.0,0.70,1.2
2.0,20,2560,25.0,28.0,0.73,1.0
3.0,30,3840,37.5,42.0,0.72,0.9
4.0,40,5120,50.0,56.0,0.77,0.8
"""
)


def test_metrics_json_hand_computed(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text(CURVE)
    proc = run_cli(
        "metrics", str(path), "--thresholds", "0.70:0.77:0.01", "--target", "0.73", "--budget", "40", "--json"
    )
    _ok(proc)
    # TTA: 0.70 at 12.5 s; 0.71..0.73 at 25 s (0.73 exactly equal); 0.74..0.77 at 50 s.
    # ATTMT = (12.5 + 3 * 25 + 4 * 50) / 8 = 287.5 / 8 = 35.9375.
    # AAT(40) = the evaluation at 37.5 s = 0.72 (the last, not the best).
    assert json.loads(proc.stdout) == {
        "thresholds": [0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77],
        "tta_s": [12.5, 25.0, 25.0, 25.0, 50.0, 50.0, 50.0, 50.0],
        "ttmt": [
            [12.5, 0.7],
            [25.0, 0.71],
            [25.0, 0.72],
            [25.0, 0.73],
            [50.0, 0.74],
            [50.0, 0.75],
            [50.0, 0.76],
            [50.0, 0.77],
        ],
        "attmt_s": 35.9375,
        "aat": 0.72,
        "target_tta_s": 25.0,
    }


def test_metrics_json_unreached_and_two_inputs(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text(CURVE)
    b_dir = tmp_path / "run"
    b_dir.mkdir()
    (b_dir / "curve.csv").write_text(HEADER + "\n0.5,5,640,4.0,5.0,0.5,2.0\n")
    proc = run_cli("metrics", str(a), str(b_dir), "--thresholds", "0.75:0.8:0.05", "--budget", "3", "--json")
    _ok(proc)
    runs = json.loads(proc.stdout)["runs"]
    expected = [
        {
            "name": str(a),
            "thresholds": [0.75, 0.8],
            "tta_s": [50.0, None],
            "ttmt": [[50.0, 0.75]],
            "attmt_s": None,
            "aat": None,
        },
        {
            "name": str(b_dir),
            "thresholds": [0.75, 0.8],
            "tta_s": [None, None],
            "ttmt": [],
            "attmt_s": None,
            "aat": None,
        },
    ]
    assert len(runs) == 2
    for got, want in zip(runs, expected):
        assert {k: got.get(k, "<missing>") for k in want} == want


def test_metrics_table_output(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text(CURVE)
    proc = run_cli("metrics", str(path), "--thresholds", "0.70:0.80:0.05", "--target", "0.9")
    _ok(proc)
    assert "not reached" in proc.stdout


# --- d. user errors: exit 2, one line, no traceback ---------------------------------------------


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ttabench: error: "), lines[0]
    return lines[0]


def test_error_missing_data_dir(tmp_path):
    missing = tmp_path / "no-such-dir"
    line = _one_line_error(
        run_cli(
            "run",
            "--data-dir",
            str(missing),
            "--max-steps",
            "1",
            *SMALL,
            "--results-dir",
            str(tmp_path / "results"),
        )
    )
    assert str(missing) in line


def test_error_no_data_at_all(tmp_path):
    line = _one_line_error(
        run_cli(
            "run",
            "--max-steps",
            "1",
            *SMALL,
            "--results-dir",
            str(tmp_path / "results"),
            env={"TTABENCH_DATA_DIR": ""},
        )
    )
    assert "--data-dir" in line and "--synthetic" in line


def test_error_corrupt_data_file_names_it(tmp_path, subset_dir):
    import shutil

    d = tmp_path / "data"
    shutil.copytree(subset_dir, d)
    raw = (d / "test_batch").read_bytes()
    (d / "test_batch").write_bytes(raw[: len(raw) // 2])
    line = _one_line_error(
        run_cli(
            "run",
            "--data-dir",
            str(d),
            "--max-steps",
            "1",
            *SMALL,
            "--results-dir",
            str(tmp_path / "results"),
        )
    )
    assert str(d / "test_batch") in line


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--thresholds", "0.9:0.1:0.1"), "threshold"),
        (("--thresholds", "0.70:0.77:0.02"), "whole number"),
        (("--thresholds", "abc"), "LOW:HIGH:STEP"),
        (("--workers", "0"), "--workers"),
        (("--target", "1.5"), "--target"),
        (("--target", "0"), "--target"),
        (("--eval-every", "junk"), "--eval-every"),
        (("--eval-every", "0epoch"), "--eval-every"),
        (("--batch-size", "1000"), "closed division"),
        (("--batch-size", "16"), "closed division"),
        (("--max-steps", "0"), "--max-steps"),
        (("--time-budget", "0"), "--time-budget"),
        (("--data-dir", "/tmp"), "not both"),
    ],
)
def test_error_bad_run_flags(tmp_path, args, needle):
    line = _one_line_error(
        run_cli("run", "--synthetic", "--progress", "none", "--results-dir", str(tmp_path / "results"), *args)
    )
    assert needle in line
    # a flag error is caught before anything starts: no results folder
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("--benchmark", "resnet99"),
        ("--precision", "fp8"),
        ("--batch-size", "many"),
    ],
)
def test_error_argparse(tmp_path, args):
    proc = run_cli("run", "--synthetic", "--results-dir", str(tmp_path / "results"), *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ttabench: error: argument {args[0]}: "), lines
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "content,needle",
    [
        ("step,epoch,samples,train_time_s,total_time_s,accuracy,loss\n1,1,1,1.0,1.0,0.5,1.0\n", "header"),
        ("", "header"),
        (HEADER + "\n1.0,10,1280,12.5,14.0,1.7,1.2\n", "accuracy"),
        (HEADER + "\n1.0,10,1280,12.5,14.0,-0.1,1.2\n", "accuracy"),
        (HEADER + "\n1.0,10,1280,12.5,14.0,high,1.2\n", "bad value"),
        (HEADER + "\n1.0,ten,1280,12.5,14.0,0.5,1.2\n", "bad value"),
        (HEADER + "\n1.0,10,1280,nan,14.0,0.5,1.2\n", "train_time_s"),
        (HEADER + "\n1.0,10,1280,12.5,14.0,0.5\n", "fields"),
        (HEADER + "\n1.0,10,1280,12.5,14.0,0.5,1.2\n2.0,20,2560,10.0,14.0,0.6,1.0\n", "backwards"),
    ],
)
def test_error_malformed_curve(tmp_path, content, needle):
    path = tmp_path / "curve.csv"
    path.write_text(content)
    line = _one_line_error(run_cli("metrics", str(path), "--thresholds", "0.5:0.6:0.1", "--json"))
    assert str(path) in line and needle in line


def test_error_malformed_curve_names_the_line(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text(HEADER + "\n1.0,10,1280,12.5,14.0,0.5,1.2\n2.0,20,2560,25.0,28.0,1.7,1.0\n")
    line = _one_line_error(run_cli("metrics", str(path), "--json"))
    assert f"{path}:3" in line


def test_error_metrics_missing_file(tmp_path):
    missing = tmp_path / "nope" / "curve.csv"
    line = _one_line_error(run_cli("metrics", str(missing), "--json"))
    assert str(missing) in line


def test_error_metrics_folder_without_curve(tmp_path):
    (tmp_path / "notes.txt").write_text("no curve here")
    line = _one_line_error(run_cli("metrics", str(tmp_path), "--json"))
    assert str(tmp_path) in line


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--thresholds", "0.5:0.4:0.1"), "threshold"),
        (("--target", "1.5"), "--target"),
        (("--budget", "-1"), "--budget"),
    ],
)
def test_error_bad_metrics_flags(tmp_path, args, needle):
    path = tmp_path / "curve.csv"
    path.write_text(CURVE)
    line = _one_line_error(run_cli("metrics", str(path), *args))
    assert needle in line


@pytest.mark.parametrize("command", ["run", "metrics"])
def test_error_infinite_threshold_step(tmp_path, command):
    path = tmp_path / "curve.csv"
    path.write_text(CURVE)
    args = (
        ["run", "--synthetic", "--results-dir", str(tmp_path / "results")]
        if command == "run"
        else ["metrics", str(path)]
    )
    line = _one_line_error(run_cli(*args, "--thresholds", "0.5:0.5:inf"))
    assert "threshold" in line


def test_missing_data_fails_before_any_worker_or_folder(tmp_path):
    missing = tmp_path / "no-such-dir"
    proc = run_cli(
        "run",
        "--data-dir",
        str(missing),
        "--workers",
        "2",
        "--max-steps",
        "1",
        *SMALL,
        "--results-dir",
        str(tmp_path / "results"),
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"ttabench: error: CIFAR-10 directory not found: {missing} "
        "(run `ttabench data download --dir DIR` or pass --data-dir)"
    ]
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_failed_two_worker_run_is_marked_failed_without_traceback(tmp_path):
    # Every file is there (the launcher's early check passes), but one is
    # truncated: the workers fail while loading it.
    from ttabench.reference_impls import cifar10

    data = tmp_path / "data"
    cifar10.write(cifar10.synthetic(train_size=200, test_size=50), str(data))
    test_batch = data / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:1000])
    proc = run_cli(
        "run",
        "--data-dir",
        str(data),
        "--workers",
        "2",
        "--max-steps",
        "1",
        *SMALL,
        "--results-dir",
        str(tmp_path / "results"),
        timeout=300,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    s = json.loads((_only_run_dir(tmp_path / "results") / "summary.json").read_text())
    assert s["status"] == "failed"
    # What the worker saw, and which ranks ended how (the root cause first).
    assert "pickle data was truncated" in s["error"] + s.get("worker_error", "")
    assert [r["exitcode"] for r in s["failed_ranks"]] == [2, 2]
    assert "rank" in s["error"] + s.get("launcher_error", "")


# --- e. two runs at once ------------------------------------------------------------------------


@pytest.mark.slow
def test_two_simultaneous_runs_get_different_folders(tmp_path, small_data_dir):
    root = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "ttabench",
        "run",
        "--data-dir",  # the small set on disk: the test is about folders, not the data
        small_data_dir,
        "--max-steps",
        "2",
        "--eval-every",
        "1epoch",
        *SMALL,
        "--thresholds",
        "0.1:0.2:0.1",
        "--results-dir",
        str(root),
        "--system",
        "twin",
    ]
    with process_tree() as env:  # both runs' trees go if a wait times out
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    dirs = _run_dirs(root)
    assert len(dirs) == 2 and dirs[0] != dirs[1]
    assert all(d.parent == root / "twin" / "resnet20" / "closed" for d in dirs)
    seeds = set()
    for d in dirs:
        s = json.loads((d / "summary.json").read_text())
        assert s["status"] == "success"
        assert [r["step"] for r in read_curve(str(d))] == [2]
        seeds.add(s["seed"])
        # each run's log holds only its own events
        assert [e["key"] for e in _mllog(d)].count("run_start") == 1
    assert len(seeds) == 2  # a fresh seed per run
    assert (root / "twin" / "system.json").is_file()


# --- f. time budget (AAT mode) ---------------------------------------------------------------------


# Steps of a known length: a tiny model whose train step sleeps STEP_S. The budget rule
# predicts the next step from the slowest recent ones; with ResNet-20 on a loaded machine
# one step can suddenly take seconds longer than any before it, and the test would measure
# the load, not the rule. Sleeping steps keep the rule's inputs what the test intends.
STEP_S = 0.5
SLEEPY = f"""
import time
import torch.nn.functional as F
from torch import nn
from ttabench.divisions.open import Submission


def step(model, x, y):
    time.sleep({STEP_S})
    return F.cross_entropy(model(x), y)


sleepy = Submission(model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), train_step=step)
"""


def _sleepy_budget_run(tmp_path, data_dir: str, budget: str):
    sub = tmp_path / "sleepy.py"
    sub.write_text(SLEEPY)
    proc = run_cli(
        "run",
        "--data-dir",
        data_dir,
        "--division",
        "open",
        "--model",
        f"{sub}:sleepy",
        "--time-budget",
        budget,
        *SMALL,
        "--thresholds",
        "0.1:0.3:0.1",
        "--results-dir",
        str(tmp_path / "results"),
        timeout=300,
    )
    _ok(proc)
    run_dir = _only_run_dir(tmp_path / "results")
    return json.loads((run_dir / "summary.json").read_text()), read_curve(str(run_dir))


@pytest.mark.slow
def test_time_budget_stops_and_evaluates_within_budget(tmp_path, small_data_dir):
    s, rows = _sleepy_budget_run(tmp_path, small_data_dir, "3")
    assert s["status"] == "success" and s["stop_reason"] == "time_budget"
    assert rows[-1]["train_time_s"] <= 3.0
    assert s["steps"] >= 3  # it trained up to the budget, not one step
    assert rows[-1]["step"] == s["steps"]
    assert s["metrics"]["budget_s"] == 3.0
    assert s["metrics"]["aat"] == rows[-1]["accuracy"]


@pytest.mark.slow
def test_time_budget_shorter_than_a_step_still_defines_aat(tmp_path, small_data_dir):
    budget = STEP_S / 4  # shorter than any step, longer than the set-up before the first evaluation
    s, rows = _sleepy_budget_run(tmp_path, small_data_dir, str(budget))
    assert s["stop_reason"] == "time_budget"
    # The first step's length is unknown until it has run, so it may overshoot a
    # budget this short; the evaluation of the starting point (t=0) is what
    # defines AAT then, and no point past the budget may count.
    assert rows[1]["train_time_s"] > budget  # the first step did overshoot
    within = [r for r in rows if r["train_time_s"] <= budget]
    assert within and within[0]["step"] == 0
    assert s["metrics"]["aat"] == within[-1]["accuracy"]


# --- g. target (TTA mode) ---------------------------------------------------------------------------


@pytest.mark.slow
def test_target_stops_at_first_evaluation_reaching_it(tmp_path):
    # seed 4: 0.120 after 10 steps, 0.111 after 20, 0.165 after 30 (the run stops there)
    proc = run_cli(
        "run",
        "--synthetic",
        "--target",
        "0.13",
        "--seed",
        "4",
        "--max-steps",
        "40",
        "--eval-every",
        "320samples",
        *SMALL,
        "--thresholds",
        "0.1:0.3:0.1",
        "--results-dir",
        str(tmp_path),
        timeout=300,
    )
    _ok(proc)
    run_dir = _only_run_dir(tmp_path)
    s = json.loads((run_dir / "summary.json").read_text())
    rows = read_curve(str(run_dir))
    assert s["status"] == "success" and s["stop_reason"] == "target"
    assert rows[-1]["accuracy"] >= 0.13
    assert len(rows) >= 2 and all(r["accuracy"] < 0.13 for r in rows[:-1])
    assert s["steps"] == rows[-1]["step"] < 40
    assert s["metrics"]["target"] == 0.13
    assert s["metrics"]["target_tta_s"] == rows[-1]["train_time_s"]
    run_stop = [e for e in _mllog(run_dir) if e["key"] == "run_stop"]
    assert len(run_stop) == 1 and run_stop[0]["metadata"]["status"] == "success"


# --- compilation stays outside the clock -------------------------------------------------------------


@pytest.mark.slow
def test_compiled_run_warms_up_before_the_clock(tmp_path, small_data_dir):
    proc = run_cli(
        "run",
        "--data-dir",
        small_data_dir,
        "--compile",
        "default",
        "--max-steps",
        "10",
        *SMALL,
        "--thresholds",
        "0.1:0.3:0.1",
        "--results-dir",
        str(tmp_path),
        timeout=600,
    )
    _ok(proc)
    run_dir = _only_run_dir(tmp_path)
    cfg = json.loads((run_dir / "config.json").read_text())
    s = json.loads((run_dir / "summary.json").read_text())
    assert cfg["resolved"]["compile"] == "default"
    warmup_s = cfg["resolved"]["warmup_s"]
    # torch.compile of a ResNet takes tens of seconds; ten compiled steps of batch 32 take
    # about a second. Were compilation inside the clock, train time would exceed the warm-up.
    assert warmup_s > 0 and s["train_time_s"] < warmup_s
    assert s["status"] == "success" and s["steps"] == 10


@pytest.mark.slow
def test_eager_run_records_no_warmup(synthetic_run):
    _, run_dir, _ = synthetic_run  # trained without --compile
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["resolved"]["compile"] == "none" and cfg["resolved"]["warmup_s"] is None


# --- default thresholds come from the data set -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("data", ["synthetic", "cifar10-subset"])
def test_default_thresholds_follow_the_data_set(tmp_path, request, data):
    if data == "synthetic":  # the session's run with default options (tests/conftest.py)
        _, run_dir = request.getfixturevalue("default_options_run")
    else:
        source = ("--data-dir", request.getfixturevalue("subset_dir"))
        _ok(run_cli("run", *source, "--max-steps", "1", *SMALL, "--results-dir", str(tmp_path), timeout=300))
        run_dir = _only_run_dir(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert config["config"]["thresholds"] == THRESHOLDS[data]
    assert summary["metrics"]["threshold_spec"] == THRESHOLDS[data]
    assert summary["dataset"] == data


# --- the offline demo teaches what TTMT is -------------------------------------------------------


def _demo_args(results_dir: Path) -> list[str]:
    """`make demo`'s ttabench command, read from the Makefile, writing into results_dir."""
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n\t((?:.*\\\n)*.*)", makefile, re.M).group(1)
    words = shlex.split(recipe.replace("\\\n", " "))
    assert words[0].endswith("/ttabench") and "--results-dir" in words, words
    args = words[1:]
    args[args.index("--results-dir") + 1] = str(results_dir)
    return args


def _ci_demo_run() -> Path | None:
    """The run `make demo` made just before the suite: .ci/run names its results folder in
    $TTABENCH_DEMO_RESULTS, and a successful run there whose recorded command is the Makefile's
    demo command is checked instead of training it again. None otherwise."""
    root = os.environ.get("TTABENCH_DEMO_RESULTS")
    if not root:
        return None
    expected = _demo_args(Path("RESULTS"))
    for run_dir in reversed(_run_dirs(Path(root))):
        try:
            command = json.loads((run_dir / "config.json").read_text())["command"][1:]
            status = json.loads((run_dir / "summary.json").read_text())["status"]
        except (OSError, ValueError, KeyError):
            continue
        if "--results-dir" in command:
            command[command.index("--results-dir") + 1] = "RESULTS"
        if command == expected and status == "success":
            return run_dir
    return None


@pytest.mark.slow
def test_make_demo_climbs_over_several_evaluations(tmp_path):
    """The demo's accuracy climbs over several evaluations: it starts below its lowest default
    threshold and reaches its thresholds at two or more different times, so its TTMT/ATTMT
    are not one jump (the earlier synthetic set reached all of them at one evaluation).
    Two, not more: the exact curve depends on the CPU's floating-point kernels."""
    run_dir = _ci_demo_run()
    if run_dir is None:
        _ok(run_cli(*_demo_args(tmp_path), "--progress", "none", timeout=600))
        run_dir = _only_run_dir(tmp_path)
    m = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert m["threshold_spec"] == THRESHOLDS["synthetic"]
    reached = [t for t in m["tta_s"] if t is not None]
    assert len(reached) >= 3 and len(set(reached)) >= 2, m
    first = read_curve(str(run_dir / "curve.csv"))[0]
    assert first["accuracy"] < m["thresholds"][0]
