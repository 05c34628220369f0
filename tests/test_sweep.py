"""`ttabench sweep`: the table from summaries (exact arithmetic), failed points, and a real
tiny sweep (workers 1,2 x loopback,100mbit on small synthetic data)."""

from __future__ import annotations

import csv
import json
import os

import pytest
from conftest import run_cli

from ttabench import UserError
from ttabench.launch.commands import sweep, sweep_table
from ttabench.launch.commands.sweep_table import Point


def _summary(
    img_s, train_s, epochs, comm_wait, delay, *, attmt=None, target_tta=None, target=0.5, status="success"
):
    return {
        "status": status,
        "backend": "torchrun",
        "steps": 10,
        "epochs": epochs,
        "train_time_s": train_s,
        "throughput_img_s": img_s,
        "time_breakdown": {"max_over_ranks": {"comm_wait_s": comm_wait, "network_delay_s": delay}},
        "metrics": {
            "target": target,
            "target_tta_s": target_tta,
            "thresholds": [0.1, 0.2],
            "attmt_s": attmt,
            "threshold_spec": "0.1:0.2:0.1",
            "final_accuracy": 0.3,
        },
    }


def test_rows_speedup_and_efficiency_by_hand(tmp_path):
    rows = sweep_table.add_speedups(
        [
            sweep_table.point_row(
                Point(1, "1gbe"), _summary(100.0, 50.0, 2.0, 0.0, 0.0, attmt=20.0, target_tta=30.0)
            ),
            sweep_table.point_row(Point(2, "1gbe"), _summary(150.0, 40.0, 4.0, 10.0, 4.0)),
            sweep_table.point_row(Point(4, "1gbe"), _summary(320.0, 20.0, 4.0, 5.0, 2.0)),
            sweep_table.point_row(Point(2, "wan"), _summary(80.0, 10.0, 1.0, 1.0, 0.5)),  # no 1-worker row
        ]
    )
    one, two, four, wan = rows
    assert one["speedup"] == 1.0 and one["efficiency"] == 1.0
    assert one["time_per_epoch_s"] == 25.0 and one["comm_share"] == 0.0
    assert one["tta_target_s"] == 30.0 and one["attmt_s"] == 20.0
    assert two["speedup"] == 1.5 and two["efficiency"] == 0.75
    assert two["time_per_epoch_s"] == 10.0 and two["comm_share"] == 0.25
    assert two["network_delay_s"] == 4.0
    assert two["tta_target_s"] is None and two["attmt_s"] is None  # empty cells in sweep.csv
    assert four["speedup"] == 3.2 and four["efficiency"] == 0.8
    assert wan["speedup"] is None and wan["efficiency"] is None
    table = sweep_table.markdown_table(rows).splitlines()
    assert table[0].startswith("| workers | network | status | img/s | time/epoch (s) | comm share")
    assert table[3] == (
        "| 2 | 1gbe | success | 150.0 | 10.00 | 25.0% | 4.00 | 1.50 | 0.75 | not reached | undefined |"
    )
    # sweep.csv: numbers or empty cells, never a word in a numeric column
    out = tmp_path / "out"
    out.mkdir()
    sweep_table.write_outputs(str(out), rows, [None] * len(rows), ["ttabench", "sweep"])
    with open(out / "sweep.csv") as f:
        two_csv = list(csv.DictReader(f))[1]
    assert (two_csv["tta_target_s"], two_csv["attmt_s"]) == ("", "")


def test_report_says_undefined_for_an_attmt_and_not_reached_for_a_tta():
    from ttabench.launch.commands import report

    r = {
        "target": 0.5, "tta_s": None, "tta_stat": None, "tta_reached": 0, "scored": 2,
        "threshold_spec": "0.2:0.5:0.1", "attmt_s": None, "attmt_stat": None, "attmt_reached": 0,
    }  # fmt: skip
    assert report._tta(r) == "50%: not reached (0/2)"
    assert report._attmt(r) == "0.2:0.5:0.1: undefined (0/2)"


def test_failed_and_missing_points():
    failed = sweep_table.point_row(
        Point(2, "1gbe"), {"status": "failed", "error": "RuntimeError: boom"}, error="exit code 1: boom"
    )
    assert failed["status"] == "failed" and failed["img_s"] is None
    assert sweep_table.point_row(Point(2, "1gbe"), None, "no results folder")["status"] == "failed"
    # A run whose summary says success but whose process failed is not a success.
    row = sweep_table.point_row(Point(1, "1gbe"), _summary(1, 1, 1, 0, 0), "exit code 3: x")
    assert row["status"] == "failed"
    rows = sweep_table.add_speedups(
        [
            sweep_table.point_row(Point(1, "1gbe"), None, "x"),
            sweep_table.point_row(Point(2, "1gbe"), _summary(150.0, 40.0, 4.0, 1, 0)),
        ]
    )
    assert rows[1]["speedup"] is None  # no successful 1-worker point on that network
    assert "| 1 | 1gbe | failed | - |" in sweep_table.markdown_table(rows)


def test_grid_and_flags_are_checked_up_front():
    assert sweep.parse_grid("1,2", "loopback,1gbe") == [
        Point(1, "loopback"),
        Point(2, "loopback"),
        Point(1, "1gbe"),
        Point(2, "1gbe"),
    ]
    for w, n, msg in (("0", "1gbe", ">= 1"), ("a", "1gbe", "integers"), ("1", "5g", "unknown network")):
        with pytest.raises(UserError, match=msg):
            sweep.parse_grid(w, n)
    pts = sweep.parse_grid("1,2", "1gbe")
    with pytest.raises(UserError, match="--workers"):
        sweep.check_run_args(["--workers", "4"], pts, "resnet20", "auto")
    with pytest.raises(UserError, match="the sweep sets --workers"):  # argparse's abbreviation
        sweep.check_run_args(["--synthetic", "--worker", "4"], pts, "resnet20", "auto")
    with pytest.raises(UserError, match="one run per point: leave --seed-list out"):
        sweep.check_run_args(["--synthetic", "--seed-list", "1,2"], pts, "resnet20", "auto")
    with pytest.raises(UserError, match="bad `ttabench run` flags"):
        sweep.check_run_args(["--frobnicate"], pts, "resnet20", "auto")
    run = sweep.check_run_args(["--", "--synthetic", "--prog", "none"], pts, "resnet20", "auto")
    assert run.argv == ["--synthetic", "--prog", "none"] and run.given == {"synthetic", "progress"}


def test_a_failed_point_is_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    def fake_run_point(pt, out_dir, benchmark, backend, run_args, timeout=None):
        if pt.workers == 2:
            return None, "exit code 1: RuntimeError: peer died", None
        return _summary(100.0, 10.0, 1.0, 0.0, 0.0), None, f"runs/{pt.name}/x"

    monkeypatch.setattr(sweep, "run_point", fake_run_point)
    rows, table = sweep.sweep(
        sweep.parse_grid("1,2", "1gbe,100mbit"),
        str(tmp_path),
        "resnet20",
        "auto",
        [],
        ["ttabench", "sweep"],
        echo=lambda *_: None,
    )
    assert [r["status"] for r in rows] == ["success", "failed", "success", "failed"]
    md = (tmp_path / "sweep.md").read_text()
    assert "w2-1gbe: failed (exit code 1: RuntimeError: peer died)" in md
    assert len(list(csv.DictReader(open(tmp_path / "sweep.csv")))) == 4


@pytest.mark.slow
def test_tiny_real_sweep(tmp_path, small_data_dir):
    out = tmp_path / "sweep"
    # the small synthetic set on disk: the sweep is not about the data, and each of its four
    # runs ends in an evaluation, over 200 test images there instead of --synthetic's 1,000
    proc = run_cli(
        "sweep",
        "--benchmark",
        "resnet20",
        "--workers",
        "1,2",
        "--network",
        "loopback,100mbit",
        "--out",
        str(out),
        "--",
        "--data-dir",
        small_data_dir,
        "--max-steps",
        "4",
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--thresholds",
        "0.1:0.2:0.1",
        "--seed",
        "1",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| workers | network | status | img/s |" in proc.stdout  # the table is printed
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert list(rows[0]) == sweep_table.CSV_COLUMNS
    assert [(r["workers"], r["network"]) for r in rows] == [
        ("1", "loopback"),
        ("2", "loopback"),
        ("1", "100mbit"),
        ("2", "100mbit"),
    ]
    md = (out / "sweep.md").read_text()
    assert md.count("| success |") == 4 and "no link is crossed" in md
    summaries = {}
    for r in rows:
        assert r["status"] == "success"
        summaries[(r["workers"], r["network"])] = json.load(
            open(os.path.join(out, r["run_dir"], "summary.json"))
        )
        config = json.load(open(os.path.join(out, r["run_dir"], "config.json")))
        net = config["resolved"]["network"]
        if r["workers"] == "1" and r["network"] != "loopback":  # no link crossed: recorded as not applied
            assert net["applied"] is False and net["requested"]["profile"] == r["network"]
        else:
            assert net["profile"] == r["network"]
    for r in rows:
        s = summaries[(r["workers"], r["network"])]
        base = summaries[("1", r["network"])]
        speedup = s["throughput_img_s"] / base["throughput_img_s"]
        assert float(r["img_s"]) == pytest.approx(s["samples"] / s["train_time_s"])
        assert float(r["speedup"]) == pytest.approx(speedup)
        assert float(r["efficiency"]) == pytest.approx(speedup / int(r["workers"]))
        assert float(r["time_per_epoch_s"]) == pytest.approx(s["train_time_s"] / s["epochs"])
        wait = max(b["comm_wait_s"] for b in s["time_breakdown"]["per_rank"])
        assert float(r["comm_share"]) == pytest.approx(wait / s["train_time_s"])
        assert r["attmt_s"] == "" or float(r["attmt_s"]) > 0  # undefined: an empty numeric cell
    # The emulated 100 Mbit/s link delays the 2-worker run's all-reduces; loopback adds nothing.
    assert float(rows[3]["network_delay_s"]) > 0 and float(rows[1]["network_delay_s"]) == 0
    assert float(rows[0]["network_delay_s"]) == 0 == float(rows[2]["network_delay_s"])
