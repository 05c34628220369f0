"""launch.worker.folder: rank 0's run folder over a run's life, driven directly (no CLI)."""

from __future__ import annotations

import json
import os

import pytest

from ttabench.launch.config import RunConfig
from ttabench.launch.worker import context
from ttabench.launch.worker.folder import RunFolder, user_command


def test_user_command_keeps_the_program_name_only():
    assert user_command(["/usr/local/bin/ttabench", "run", "--synthetic"]) == [
        "ttabench",
        "run",
        "--synthetic",
    ]
    assert user_command(["/some/where/ttabench/__main__.py", "runs"]) == ["ttabench", "runs"]
    assert user_command(["/x/launch/cli.py", "env"]) == ["ttabench", "env"]


def test_user_command_takes_the_launchers_command(monkeypatch):
    monkeypatch.setenv("TTABENCH_COMMAND", json.dumps(["/opt/bin/ttabench", "run", "--workers", "2"]))
    assert user_command(None) == ["ttabench", "run", "--workers", "2"]


@pytest.fixture
def ctx():
    c = context.join(RunConfig(synthetic=True, backend="none", threads=1, seed=3))
    yield c
    c.comm.close()


def test_open_makes_the_run_folder_and_the_mllog_header(tmp_path, ctx):
    cfg = RunConfig(synthetic=True, results_dir=str(tmp_path), progress="none", seed=3)
    folder = RunFolder(cfg, ctx)
    folder.open(None, restarted=False)
    folder.close()
    parts = os.path.relpath(folder.run_dir, tmp_path).split(os.sep)
    assert parts[:3] == [ctx.system_name, "resnet20", "closed"]
    log = open(os.path.join(folder.run_dir, "mllog.txt")).read().splitlines()
    keys = [json.loads(line.split(":::MLLOG ", 1)[1])["key"] for line in log]
    assert keys == [
        "submission_benchmark",
        "submission_division",
        "submission_org",
        "submission_platform",
        "submission_status",
        "cache_clear",
        "init_start",
    ]
    assert cfg == folder.cfg  # the folder never changes the run's configuration


def test_a_failure_during_set_up_leaves_a_summary_that_says_why(tmp_path, ctx):
    cfg = RunConfig(synthetic=True, results_dir=str(tmp_path), progress="none", seed=3)
    folder = RunFolder(cfg, ctx)
    folder.open(None, restarted=False)
    folder.fail(RuntimeError("no memory left\nsecond line"), signal_name=None)
    folder.close()
    summary = json.loads(open(os.path.join(folder.run_dir, "summary.json")).read())
    assert summary == {
        "status": "failed",
        "error": "RuntimeError: no memory left",
        "failed_rank": 0,
        "signal": None,
        # what the run was, so that validate reports it as a failed run of its tree
        "benchmark": "resnet20",
        "division": "closed",
        "world_size": 1,
        "stop_reason": "failed before the first step",
    }
    assert '"ttabench_status": "failed"' in open(os.path.join(folder.run_dir, "mllog.txt")).read()


def test_a_restart_without_a_checkpoint_begins_the_folder_again(tmp_path, ctx):
    run_dir = tmp_path / "sys" / "resnet20" / "closed" / "run1"
    run_dir.mkdir(parents=True)
    for name in ("mllog.txt", "curve.csv", "summary.json"):
        (run_dir / name).write_text("old\n")
    cfg = RunConfig(synthetic=True, run_dir=str(run_dir), progress="none", seed=3)
    folder = RunFolder(cfg, ctx)
    folder.open(None, restarted=True)
    folder.close()
    assert not (run_dir / "curve.csv").exists() and not (run_dir / "summary.json").exists()
    assert "old" not in (run_dir / "mllog.txt").read_text().splitlines()
