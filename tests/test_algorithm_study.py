"""The algorithm study's tooling: results/algorithms/make_study.sh (which runs, resumable), the
table and figure builder (benchmarks/algorithm_study.py) on hand-made curves in copies of the
session's synthetic run, and (slow) a tiny version of benchmarks/validate_algorithms.py and of
benchmarks/algorithm_scaling.py on its runs."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from benchmarks import algorithm_scaling, algorithm_study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "results", "algorithms", "make_study.sh")

# A stand-in for `ttabench`: logs its arguments; a run writes a summary.json of its seed with
# the status in $STUB_STATUS into its results folder, as a finished run does.
STUB = r"""#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
echo "  File \"$PWD/launch/worker/x.py\", line 1"  # as a stack trace names a file
dir=""; seed=""
while [ $# -gt 0 ]; do
  case "$1" in --results-dir) dir=$2;; --seed) seed=$2;; esac; shift
done
if [ -n "$dir" ]; then
  mkdir -p "$dir/sys/resnet20/closed"
  d=$(mktemp -d "$dir/sys/resnet20/closed/run-XXXXXX")
  printf '{\n  "seed": %s,\n  "status": "%s"\n}\n' "$seed" "$STUB_STATUS" > "$d/summary.json"
fi
"""


def _make_study(tmp_path, status="success", **env):
    stub = tmp_path / "ttabench-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls.txt"
    log.touch()
    e = dict(
        os.environ, TTABENCH=str(stub), STUB_LOG=str(log), STUB_STATUS=status, OUT=str(tmp_path / "study")
    )
    e.update(env)
    proc = subprocess.run(["bash", SCRIPT], env=e, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return log.read_text().splitlines()


def test_make_study_runs_each_cell_once_and_skips_finished_runs(tmp_path):
    plan = dict(SEEDS="1 2", ALGORITHMS="allreduce decentralized", NETWORKS="20mbit tbf-100mbit")
    calls = _make_study(tmp_path, "failed", **plan)
    runs = [c for c in calls if c.startswith("run ") or c.startswith("netlab run ")]
    assert len(runs) == 8  # 2 seeds x 2 algorithms x 2 networks
    first = runs[0].split()
    assert first[:5] == ["run", "--workers", "2", "--network", "20mbit"]
    assert "--batch-size 64 --seed 1 --algorithm allreduce --target 0.45 --max-epochs 15" in runs[0]
    assert "--thresholds 0.30:0.45:0.01 --threads 1" in runs[0]
    # decentralized: DEC_WORKERS (4) x 32 = the same global batch 128; real shaping: one node
    # of one worker per host, the lab up before and down after
    dec_tbf = [c for c in calls if "decentralized" in c and c.startswith("netlab run")]
    assert len(dec_tbf) == 2 and "--batch-size 32" in dec_tbf[0] and "--workers" not in dec_tbf[0]
    assert calls.count("netlab up --hosts 4 --rate 100mbit") == 2
    assert calls.count("netlab up --hosts 2 --rate 100mbit") == 2
    assert sum(c == "netlab down" for c in calls) == 4
    logs = sorted((tmp_path / "study" / "logs").iterdir())
    assert len(logs) == 8 and all('"launch/worker/x.py"' in p.read_text() for p in logs)
    assert not any(REPO + os.sep in p.read_text() for p in logs)  # no absolute path of this machine
    # the failed runs are run again; finished ones are not
    again = _make_study(tmp_path, "success", **plan)
    assert len(again) == len(calls) * 2
    third = _make_study(tmp_path, "success", **plan)
    assert len(third) == len(again)  # nothing new: every cell has a finished run
    # a further seed runs only that seed's cells
    more = _make_study(tmp_path, "success", **dict(plan, SEEDS="1 2 3"))
    new = more[len(third) :]
    assert sum("--seed 3 " in c for c in new) == 4 and not any("--seed 1 " in c for c in new)


def _cell_run(template, root, algorithm, network, seed, points, steps=8, comm_bytes=1000.0):
    """A copy of the session's synthetic run as one of a study cell's runs, its curve replaced by
    `points` (training s, accuracy) and its seed, steps and bytes set."""
    dest = os.path.join(root, algorithm, network, "sys", "resnet20", "closed", f"seed{seed}")
    shutil.copytree(template, dest)
    rows = ["epoch,step,samples,train_time_s,total_time_s,accuracy,loss"]
    rows += [f"{i + 1},{i + 1},{32 * (i + 1)},{t},{t + 1},{a},1.0" for i, (t, a) in enumerate(points)]
    with open(os.path.join(dest, "curve.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    with open(os.path.join(dest, "summary.json")) as f:
        s = json.load(f)
    s.update(seed=seed, steps=steps, train_time_s=points[-1][0], comm_bytes_per_step=comm_bytes)
    with open(os.path.join(dest, "summary.json"), "w") as f:
        json.dump(s, f, indent=2)


def test_study_table_and_figure_by_hand(tmp_path, synthetic_run):
    _, template, _ = synthetic_run
    root = str(tmp_path / "study")
    # thresholds 0.3, 0.4, 0.5, target 0.5; TTA(0.3, 0.4, 0.5) and ATTMT by hand:
    cells = [
        (1, [(10, 0.35), (20, 0.45), (30, 0.55)]),  # 10, 20, 30: ATTMT 20
        (2, [(10, 0.32), (26, 0.52)]),  # 10, 26, 26: ATTMT 62/3
        (3, [(45, 0.6)]),  # 45, 45, 45
        (4, [(5, 0.5)]),  # 5, 5, 5
    ]
    for seed, points in cells:
        _cell_run(template, root, "allreduce", "1gbe", seed, points)
    _cell_run(template, root, "topk", "20mbit", 1, [(10, 0.35), (20, 0.42)], comm_bytes=21896.0)
    # a cell whose only run is still running: nothing to score yet, no error
    _cell_run(template, root, "topk", "1gbe", 5, [(10, 0.2)])
    running = os.path.join(root, "topk", "1gbe", "sys", "resnet20", "closed", "seed5", "summary.json")
    with open(running) as f:
        s = json.load(f)
    with open(running, "w") as f:
        json.dump(dict(s, status="running"), f)
    out = str(tmp_path / "out")
    args = [root, "--algorithms", "allreduce,topk", "--networks", "1gbe,20mbit", "--target", "0.5"]
    assert algorithm_study.main(args + ["--thresholds", "0.3:0.5:0.1", "--out", out]) == 0
    with open(os.path.join(out, "study.json")) as f:
        rows = {(r["algorithm"], r["network"]): r for r in json.load(f)["rows"]}
    ar = rows["allreduce", "1gbe"]
    assert ar["runs"] == 4 and sorted(ar["seeds"]) == [1, 2, 3, 4]
    assert ar["tta"]["olympic_mean"] == pytest.approx(28.0)  # 30, 26, 45, 5 without 45 and 5
    lo, hi = ar["tta"]["ci95"]
    assert 5 <= lo < 26.5 < hi <= 45
    assert ar["attmt_s"] == pytest.approx((20 + 62 / 3 + 45 + 5) / 4)
    assert ar["final_accuracy"] == pytest.approx((0.55 + 0.52 + 0.6 + 0.5) / 4)
    assert ar["step_time_s"] == pytest.approx((30 + 26 + 45 + 5) / 4 / 8)
    assert ar["bandwidth_mbit"] == pytest.approx(1000)
    tk = rows["topk", "20mbit"]
    assert tk["runs"] == 1 and tk["reached_target"] == 0 and tk["attmt_s"] is None
    assert tk["comm_bytes_per_step"] == 21896.0
    assert rows["allreduce", "20mbit"]["runs"] == 0 and rows["topk", "1gbe"]["runs"] == 0
    md = open(os.path.join(out, "study.md")).read()
    assert "| allreduce | 1gbe | 4 (1,2,3,4) | 28 [" in md
    assert "| topk | 20mbit | 1 (1) | not reached (0 of 1) | not reached (0 of 1 reached all) |" in md
    assert md.count("| not run |") == 2
    assert "21,896" in md
    assert os.path.getsize(os.path.join(out, "study.png")) > 1000
    # fewer than 3 runs: the plain mean, marked so; an unknown network: one line, exit 2
    assert "(mean, n < 3)" in algorithm_study.tta_text(
        {"runs": 2, "tta": {"n": 2, "olympic_mean": None, "mean": 10.0, "ci95": None}}
    )
    assert algorithm_study.main([root, "--networks", "2gbe", "--out", out]) == 2


def _module(name: str, *args: str) -> None:
    """python -m benchmarks.NAME ARGS from the repository root, which must succeed."""
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_validate_algorithms_script(tmp_path):
    """A tiny version of the committed validation: one algorithm, one link, 3 steps, synthetic."""
    out = str(tmp_path / "v")
    _module("validate_algorithms", "--out", out, "--reps", "1", "--max-steps", "3", "--algorithms", "topk",
            "--networks", "20mbit", "--synthetic")  # fmt: skip
    with open(os.path.join(out, "predict-validation.json")) as f:
        v = json.load(f)
    assert [(r["algorithm"], r["point"]) for r in v["rows"]] == [
        ("topk", "loopback (base)"),
        ("topk", "emulated 20mbit"),
    ]
    base, link = v["rows"]
    for r in v["rows"]:
        assert math.isfinite(r["residual"]) and r["measured_step_s"] > 0 and r["workers"] == 2
        assert len(r["load_1min_range"]) == 2
    # 20mbit: two all_gathers of 1 % of the gradients take (alpha + n/B) each: the prediction grows
    assert link["predicted_step_s"] > base["predicted_step_s"]
    run = v["runs"][1]
    assert run["predict_command"].endswith("--algorithm topk --workers 2 --network 20mbit")
    assert run["from_allreduce_step_s"] is None  # no allreduce base run in this measurement
    assert v["measurements"][0]["command"][:3] == ["python", "-m", "benchmarks.validate_algorithms"]
    assert "| topk | 2 | emulated 20mbit | 1 |" in open(os.path.join(out, "predict-validation.md")).read()
    # the scaling table from the same base run: `ttabench predict` at 2 workers on 20mbit is the
    # validation's prediction of that point (topk has no start steps: steady state = run mean)
    _module("algorithm_scaling", "--out", out, "--algorithms", "topk", "--workers", "2:8:x2",
            "--networks", "1gbe,20mbit")  # fmt: skip
    with open(os.path.join(out, "scaling.json")) as f:
        s = json.load(f)
    assert [(r["network"], r["workers"]) for r in s["rows"]] == [
        (n, p) for n in ("1gbe", "20mbit") for p in (2, 4, 8)
    ]
    assert s["predictions"]["topk"]["basis"] == v["runs"][0]["run_dir"]  # the (only) base run
    at_20mbit = {r["workers"]: r["step_s"]["topk"] for r in s["rows"] if r["network"] == "20mbit"}
    assert at_20mbit[2] == pytest.approx(link["predicted_step_s"], rel=1e-9)
    assert at_20mbit[2] < at_20mbit[4] < at_20mbit[8]  # all_gather's (p-1) n grows with the workers
    assert all(r["winner"] == "topk" and r["margin"] is None for r in s["rows"])
    assert os.path.getsize(os.path.join(out, "scaling.png")) > 1000


def test_scaling_table_names_the_shortest_step_and_its_margin():
    """The winner of a row and by how much, on hand-made predictions (what `predict --json` prints)."""

    def out(*steps):
        return {"rows": [{"network": "1gbe", "workers": p, "step_time_s": s, "comm_bytes_per_step": 10 * p}
                         for p, s in zip((2, 4), steps)]}  # fmt: skip

    rows = algorithm_scaling.table(
        {"allreduce": out(0.5, 0.8), "topk": out(0.6, 0.4), "fp16": out(0.55, 0.9)}
    )
    assert [(r["workers"], r["winner"]) for r in rows] == [(2, "allreduce"), (4, "topk")]
    assert rows[0]["margin"] == pytest.approx(0.55 / 0.5 - 1) and rows[1]["margin"] == pytest.approx(1.0)
    assert rows[1]["step_s"] == {"allreduce": 0.8, "topk": 0.4, "fp16": 0.9}
    assert rows[1]["comm_bytes_per_step"]["topk"] == 40
