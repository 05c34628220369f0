"""A run that fails before its first step, on 1 and on 2 workers: a broken submission leaves
nothing; a failure inside the workers' set-up leaves a folder marked failed, with the reason,
that `validate` reports as a failed run without failing the other runs of the tree."""

from __future__ import annotations

import glob
import json
import os

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

RUN = ["--division", "open", "--max-steps", "2", "--batch-size", "16", "--progress", "none"]

MODELS = """\
import os
from torch import nn

def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))

def five_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 5))

def fails_in_workers():
    # The launcher checks a submission once before any folder exists (the first call);
    # the workers build it again and fail there, after their run folder is open.
    counter = os.environ["CALLS_FILE"]
    with open(counter, "a") as f:
        f.write("x")
    with open(counter) as f:
        if len(f.read()) > 1:
            raise RuntimeError("out of luck in the worker")
    return mlp()
"""


def _run_dirs(results) -> list[str]:
    return glob.glob(os.path.join(str(results), "*", "*", "*", "*"))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_broken_submission_leaves_nothing(tmp_path, workers):
    models = tmp_path / "models.py"
    models.write_text(MODELS)
    results = tmp_path / "results"
    proc = run_cli(
        "run", "--synthetic", *RUN, "--workers", workers, "--model", f"{models}:five_classes",
        "--results-dir", str(results),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "expected 2x10 (N x 10 logits)" in proc.stderr
    assert not results.exists() or _run_dirs(results) == []


def test_a_failed_start_is_a_failed_run_that_fails_nothing_else(tmp_path, small_data_dir):
    models = tmp_path / "models.py"
    models.write_text(MODELS)
    results = tmp_path / "results"
    # the small synthetic set on disk: no worker generates --synthetic's set first
    common = ["--data-dir", small_data_dir, *RUN, "--results-dir", str(results), "--system", "box"]
    run_cli("run", *common, "--model", f"{models}:mlp", check=True)  # a good run in the same tree
    for workers in ("1", "2"):
        calls = tmp_path / f"calls-{workers}"
        proc = run_cli(
            "run",
            *common,
            "--workers",
            workers,
            "--model",
            f"{models}:fails_in_workers",
            env={"CALLS_FILE": str(calls)},
        )
        assert proc.returncode != 0
        assert "out of luck in the worker" in proc.stdout + proc.stderr
    dirs = _run_dirs(results)
    assert len(dirs) == 3
    failed = []
    for d in dirs:
        with open(os.path.join(d, "summary.json")) as f:
            s = json.load(f)
        if s["status"] == "failed":
            failed.append(s)
            assert "out of luck in the worker" in s["error"]
            assert s["division"] == "open" and s["benchmark"] == "fails_in_workers"
    assert sorted(s["world_size"] for s in failed) == [1, 2]

    proc = run_cli("validate", str(results), "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 0, out["failures"]
    assert out["ok"] and out["statuses"] == {"success": 1, "failed": 2}
    said = [w for w in out["warnings"] if "run failed (" in w and "out of luck in the worker" in w]
    assert len(said) == 2, out["warnings"]
    # the other readers list them as failed runs too
    runs = json.loads(run_cli("runs", str(results), "--json", check=True).stdout)["runs"]
    assert sorted(r["status"] for r in runs) == ["failed", "failed", "success"]
