"""`ttabench metrics` without flags uses what the runs recorded (thresholds, target, budget),
as report, plot and compare do; every expected number is worked out by hand here."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

HEADER = "epoch,step,samples,train_time_s,total_time_s,accuracy,loss\n"
# TTA 10 (0.5), 20 (0.6), 40 (0.7); ATTMT(0.5..0.7) = 70/3; AAT at 25 s = 0.6
POINTS = [(10.0, 0.5), (20.0, 0.6), (40.0, 0.7)]


def make_run(folder, *, spec="0.5:0.7:0.1", target=0.7, budget=25.0, points=POINTS):
    folder.mkdir(parents=True)
    rows = "".join(f"{i},{i},{i},{t!r},{t + 1!r},{a!r},1.0\n" for i, (t, a) in enumerate(points, 1))
    (folder / "curve.csv").write_text(HEADER + rows)
    metrics = {"threshold_spec": spec, "target": target, "budget_s": budget}
    (folder / "summary.json").write_text(json.dumps({"status": "success", "seed": 1, "metrics": metrics}))
    return folder


def test_one_run_without_flags_uses_its_recorded_parameters(tmp_path):
    run = make_run(tmp_path / "a-long-folder-name-that-would-wrap-in-a-narrow-table" / "run-1")
    res = json.loads(run_cli("metrics", str(run), "--json", check=True).stdout)
    assert res["thresholds"] == [0.5, 0.6, 0.7] and res["tta_s"] == [10.0, 20.0, 40.0]
    assert res["attmt_s"] == pytest.approx(70 / 3, rel=1e-15)
    assert res["target_tta_s"] == 40.0 and res["aat"] == 0.6
    out = run_cli("metrics", str(run), check=True).stdout
    assert out.splitlines()[0] == f"run: {run}"  # whole, not folded into pieces above the table
    assert "recorded with the run: thresholds 0.5:0.7:0.1, target 0.7, budget 25" in out
    for text in ("TTA @ 70%", "40.00 s", "ATTMT 50..70%", "23.33 s", "AAT @ 25 s", "60.00%"):
        assert text in out


def test_a_flag_overrides_only_its_own_parameter(tmp_path):
    run = make_run(tmp_path / "run")
    res = json.loads(run_cli("metrics", str(run), "--target", "0.6", "--json", check=True).stdout)
    assert res["target_tta_s"] == 20.0 and res["attmt_s"] == pytest.approx(70 / 3, rel=1e-15)


def test_several_runs_share_the_recorded_parameters(tmp_path):
    make_run(tmp_path / "runs" / "a")
    make_run(tmp_path / "runs" / "b", points=[(5.0, 0.5), (15.0, 0.7)])  # TTA 5 15 15, ATTMT 35/3
    res = json.loads(run_cli("metrics", str(tmp_path / "runs"), "--json", check=True).stdout)
    assert [r["tta"] for r in res["runs"]] == [40.0, 15.0]
    assert res["stats"]["attmt"]["mean"] == pytest.approx((70 / 3 + 35 / 3) / 2, rel=1e-14)
    assert res["stats"]["tta"]["target"] == 0.7


def test_runs_recording_different_parameters_name_the_flag(tmp_path):
    make_run(tmp_path / "runs" / "a")
    make_run(tmp_path / "runs" / "b", target=0.6)
    proc = run_cli("metrics", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "ttabench: error: the runs record different metric parameters; pass --target (recorded: 0.6, 0.7)"
    )
    res = json.loads(
        run_cli("metrics", str(tmp_path / "runs"), "--target", "0.6", "--json", check=True).stdout
    )
    assert [r["tta"] for r in res["runs"]] == [20.0, 20.0]


def test_a_bare_curve_without_flags_says_what_to_pass(tmp_path):
    run = make_run(tmp_path / "run")
    proc = run_cli("metrics", str(run / "curve.csv"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("ttabench: error: nothing to compute") and "--thresholds" in proc.stderr
