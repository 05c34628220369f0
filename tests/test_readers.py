"""The reading commands (metrics across runs, compare, report, plot) on hand-written
curves and results trees; every expected number is worked out by hand here."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from ttabench.divisions import experiments, results
from ttabench.launch.cli import main

HEADER = "epoch,step,samples,train_time_s,total_time_s,accuracy,loss\n"


def write_curve(folder, points) -> str:
    """A curve.csv with one row per (train_time_s, accuracy); the rest is filler."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "curve.csv")
    with open(path, "w") as f:
        f.write(HEADER)
        for i, (t, acc) in enumerate(points, start=1):
            f.write(f"{i},{10 * i},{1280 * i},{t!r},{t + 1.0!r},{acc!r},1.0\n")
    return path


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- metrics across runs ------------------------------------------------------------------

# thresholds 0.6:0.8:0.1 = [0.6, 0.7, 0.8], target 0.8
RUNS = {
    # TTA 20, 20, 30 -> ATTMT 70/3, TTA@0.8 30
    "a": [(10.0, 0.5), (20.0, 0.7), (30.0, 0.8)],
    # TTA 12, 24, 24 -> ATTMT 20, TTA@0.8 24
    "b": [(12.0, 0.6), (24.0, 0.8), (36.0, 0.9)],
    # TTA 30, 45, never -> no ATTMT, never reaches the target
    "c": [(15.0, 0.4), (30.0, 0.6), (45.0, 0.7)],
    # TTA 8, 8, 16 -> ATTMT 32/3, TTA@0.8 16
    "d": [(8.0, 0.7), (16.0, 0.8)],
}


@pytest.fixture
def four_runs(tmp_path):
    return {k: os.path.dirname(write_curve(tmp_path / "runs" / k, pts)) for k, pts in RUNS.items()}


def test_metrics_several_runs_json(four_runs, capsys):
    code, out, _ = run_cli(
        capsys, "metrics", *four_runs.values(), "--thresholds", "0.6:0.8:0.1", "--target", "0.8", "--json"
    )
    assert code == 0
    res = json.loads(out)
    assert [r["name"] for r in res["runs"]] == list(four_runs.values())
    assert [r["tta"] for r in res["runs"]] == [30.0, 24.0, None, 16.0]
    attmt = [r["attmt"] for r in res["runs"]]
    assert attmt[0] == pytest.approx(70 / 3, rel=1e-15) and attmt[1] == 20.0
    assert attmt[2] is None and attmt[3] == pytest.approx(32 / 3, rel=1e-15)

    tta = res["stats"]["tta"]  # over 30, 24, 16 (run c excluded, not counted as 0)
    assert tta["n"] == 3
    assert tta["mean"] == pytest.approx(70 / 3, rel=1e-14)
    assert tta["olympic_mean"] == 24.0
    assert tta["variance"] == pytest.approx(148 / 3, rel=1e-14)
    assert tta["std"] == pytest.approx(math.sqrt(148 / 3), rel=1e-14)
    assert tta["cv"] == pytest.approx(math.sqrt(148 / 3) / (70 / 3), rel=1e-14)
    assert 16.0 <= tta["ci95"][0] < tta["ci95"][1] <= 30.0

    att = res["stats"]["attmt"]  # over 70/3, 20, 32/3: mean 162/9 = 18, SS 776/9, var 388/9
    assert att["n"] == 3
    assert att["mean"] == pytest.approx(18.0, rel=1e-14)
    assert att["olympic_mean"] == 20.0
    assert att["variance"] == pytest.approx(388 / 9, rel=1e-14)
    assert set(att) >= {"mean", "olympic_mean", "variance", "std", "cv", "ci95"}

    excluded = {(e["name"], e["metric"]) for e in res["excluded"]}
    assert excluded == {(four_runs["c"], "tta"), (four_runs["c"], "attmt")}
    reasons = {e["metric"]: e["reason"] for e in res["excluded"]}
    assert "did not reach the target 0.8 (best accuracy 0.7000)" in reasons["tta"]
    assert "1 of 3 thresholds not reached (from 0.8)" in reasons["attmt"]
    assert res["bootstrap"]["resamples"] == 10000


def test_metrics_run_that_never_reaches_target_excluded_with_two_left(four_runs, capsys):
    # Only a and c: TTA stats over one value; olympic mean undefined (n < 3) with a note.
    code, out, _ = run_cli(capsys, "metrics", four_runs["a"], four_runs["c"], "--target", "0.8", "--json")
    assert code == 0
    res = json.loads(out)
    tta = res["stats"]["tta"]
    assert tta["n"] == 1 and tta["mean"] == 30.0
    assert tta["olympic_mean"] is None and tta["variance"] is None and tta["ci95"] is None
    assert any("olympic mean needs at least 3 runs" in n for n in tta["notes"])
    assert res["stats"]["attmt"] is None  # no --thresholds asked
    assert res["excluded"][0]["name"] == four_runs["c"]


def test_metrics_folder_of_runs_expands(four_runs, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "metrics", str(tmp_path / "runs"), "--target", "0.8", "--json")
    assert code == 0
    assert sorted(r["name"] for r in json.loads(out)["runs"]) == sorted(four_runs.values())


def test_metrics_single_input_json_unchanged(four_runs, capsys):
    code, out, _ = run_cli(
        capsys,
        "metrics",
        four_runs["a"],
        "--thresholds",
        "0.6:0.8:0.1",
        "--target",
        "0.8",
        "--budget",
        "25",
        "--json",
    )
    assert code == 0
    res = json.loads(out)
    assert set(res) == {"thresholds", "tta_s", "ttmt", "attmt_s", "aat", "target_tta_s"}
    assert res["tta_s"] == [20.0, 20.0, 30.0]
    assert res["aat"] == 0.7 and res["target_tta_s"] == 30.0


def test_metrics_tie_at_threshold_counts_as_reached(tmp_path, capsys):
    # 0.7 == threshold 0.7 -> reached at 10 s (>=), written and read back exactly.
    run = os.path.dirname(write_curve(tmp_path / "tie", [(5.0, 0.69), (10.0, 0.7), (15.0, 0.71)]))
    other = os.path.dirname(write_curve(tmp_path / "tie2", [(4.0, 0.7)]))
    code, out, _ = run_cli(
        capsys, "metrics", run, other, "--thresholds", "0.69:0.71:0.01", "--target", "0.7", "--json"
    )
    res = json.loads(out)
    assert [r["tta_s"] for r in res["runs"]] == [[5.0, 10.0, 15.0], [4.0, 4.0, None]]
    assert [r["tta"] for r in res["runs"]] == [10.0, 4.0]
    assert res["stats"]["tta"]["mean"] == 7.0
    assert res["stats"]["attmt"]["n"] == 1 and res["stats"]["attmt"]["mean"] == 10.0


def test_metrics_human_output(four_runs, capsys):
    code, out, _ = run_cli(
        capsys, "metrics", *four_runs.values(), "--thresholds", "0.6:0.8:0.1", "--target", "0.8"
    )
    assert code == 0
    assert "olympic mean" in out and "24.000" in out and "excluded from TTA" in out


# --- compare --------------------------------------------------------------------------------

A = [(10.0, 0.5), (20.0, 0.6), (40.0, 0.7)]  # TTA 10 20 40, ATTMT(0.5..T) 10 15 70/3
B = [(5.0, 0.55), (15.0, 0.65), (30.0, 0.7)]  # TTA 5 15 30, ATTMT 5 10 50/3


def test_compare_two_curves(tmp_path, capsys):
    a, b = write_curve(tmp_path / "a", A), write_curve(tmp_path / "b", B)
    code, out, _ = run_cli(capsys, "compare", a, b, "--thresholds", "0.5:0.7:0.1", "--json")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [r["threshold"] for r in rows] == [0.5, 0.6, 0.7]
    assert set(rows[0]) == {"threshold", "tta_a", "tta_b", "tta_ratio", "attmt_a", "attmt_b", "attmt_ratio"}
    assert [(r["tta_a"], r["tta_b"]) for r in rows] == [(10.0, 5.0), (20.0, 15.0), (40.0, 30.0)]
    assert [r["tta_ratio"] for r in rows] == [0.5, 0.75, 0.75]
    assert [r["attmt_a"] for r in rows] == pytest.approx([10.0, 15.0, 70 / 3], rel=1e-15)
    assert [r["attmt_b"] for r in rows] == pytest.approx([5.0, 10.0, 50 / 3], rel=1e-15)
    assert [r["attmt_ratio"] for r in rows] == pytest.approx([0.5, 2 / 3, 5 / 7], rel=1e-14)


def test_compare_folder_of_runs_averaged(tmp_path, capsys):
    # A = two seeds: run1 TTA 10 20 40; run2 TTA 20 30 never.
    # Group: TTA 15, 25, None (not every run reached 0.7); ATTMT: mean of 10|20 = 15,
    # mean of 15|25 = 20, None.
    write_curve(tmp_path / "A" / "run1", A)
    write_curve(tmp_path / "A" / "run2", [(20.0, 0.5), (30.0, 0.65)])
    b = write_curve(tmp_path / "b", B)
    code, out, _ = run_cli(capsys, "compare", str(tmp_path / "A"), b, "--thresholds", "0.5:0.7:0.1", "--json")
    assert code == 0
    res = json.loads(out)
    assert len(res["a"]["runs"]) == 2
    rows = res["rows"]
    assert [r["tta_a"] for r in rows] == [15.0, 25.0, None]
    assert [r["attmt_a"] for r in rows] == [15.0, 20.0, None]
    assert [r["tta_ratio"] for r in rows] == [5 / 15, 15 / 25, None]
    assert rows[2]["attmt_ratio"] is None
    assert "every run reached" in res["averaging"]


def test_compare_human_table(tmp_path, capsys):
    a, b = write_curve(tmp_path / "a", A), write_curve(tmp_path / "b", B)
    code, out, _ = run_cli(capsys, "compare", a, b, "--thresholds", "0.5:0.7:0.1")
    assert code == 0 and "0.750" in out and "B/A" in out


def test_compare_needs_thresholds_for_bare_curves(tmp_path, capsys):
    a, b = write_curve(tmp_path / "a", A), write_curve(tmp_path / "b", B)
    code, _, err = run_cli(capsys, "compare", a, b)
    assert code == 2
    assert err.count("\n") == 1 and "--thresholds" in err


def test_missing_input_is_one_line_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "metrics", str(tmp_path / "nope"))
    assert code == 2 and err.startswith("ttabench: error: not found:") and err.count("\n") == 1


# --- report ---------------------------------------------------------------------------------


def make_run(
    root,
    system,
    run_id,
    points,
    *,
    status="success",
    seed=1,
    workers=1,
    network=None,
    target=0.8,
    spec="0.6:0.8:0.1",
    img_s=100.0,
    dataset="cifar10-subset",
    batch=128,
):
    folder = root / system / "resnet20" / "closed" / run_id
    write_curve(folder, points)
    summary = {
        "benchmark": "resnet20",
        "division": "closed",
        "dataset": dataset,
        "seed": seed,
        "world_size": workers,
        "status": status,
        "throughput_img_s": img_s,
        "metrics": {"threshold_spec": spec, "target": target, "budget_s": None},
    }
    config = {
        "config": {"benchmark": "resnet20", "division": "closed", "network": network, "batch_size": batch},
        "resolved": {"system": system, "world_size": workers, "seed": seed},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "results"
    # sys-a: 3 scored runs (TTA@0.8 30, 24, 16; ATTMT 70/3, 20, 32/3) + 1 failed run
    make_run(root, "sys-a", "r1", RUNS["a"], seed=1, img_s=100.0)
    make_run(root, "sys-a", "r2", RUNS["b"], seed=2, img_s=110.0)
    make_run(root, "sys-a", "r3", RUNS["d"], seed=3, img_s=120.0)
    make_run(root, "sys-a", "r4", [(5.0, 0.9)], seed=4, status="failed")
    # sys-b: 2 workers on an emulated 1gbe network; one run reaching the target, one not
    make_run(
        root,
        "sys-b",
        "r1",
        [(5.0, 0.6), (10.0, 0.7), (20.0, 0.8)],
        seed=5,
        workers=2,
        network="1gbe",
        img_s=300.0,
    )
    make_run(root, "sys-b", "r2", RUNS["c"], seed=6, workers=2, network="1gbe", img_s=280.0)
    return root


def test_report_json(tree, capsys):
    code, out, _ = run_cli(capsys, "report", str(tree), "--format", "json")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [(r["system"], r["workers"], r["network"]) for r in rows] == [
        ("sys-a", 1, "not applied (1 worker)"),
        ("sys-b", 2, "1gbe"),
    ]
    a, b = rows
    assert (a["runs"], a["scored"], a["statuses"]) == (4, 3, {"success": 3, "failed": 1})
    assert a["tta_s"] == 24.0 and a["tta_stat"] == "olympic_mean" and a["tta_reached"] == 3
    assert a["attmt_s"] == 20.0 and a["attmt_stat"] == "olympic_mean"
    assert a["throughput_img_s"] == 110.0
    assert a["target"] == 0.8 and a["threshold_spec"] == "0.6:0.8:0.1"
    # sys-b: only one run reached 0.8 (TTA 20, ATTMT (5+10+20)/3); the other is not averaged in
    assert b["tta_s"] == 20.0 and b["tta_stat"] == "mean" and b["tta_reached"] == 1
    assert b["attmt_s"] == pytest.approx(35 / 3, rel=1e-15) and b["attmt_reached"] == 1
    assert b["throughput_img_s"] == 290.0


def test_report_markdown_and_csv(tree, capsys):
    code, out, _ = run_cli(capsys, "report", str(tree))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("| system | benchmark | division |")
    row_a = next(ln for ln in lines if ln.startswith("| sys-a "))
    assert "0.8: 24.00 s (3/3)" not in row_a  # the target is shown as a percentage
    assert "80%: 24.00 s (3/3)" in row_a and "4 (1 failed, 3 success)" in row_a
    row_b = next(ln for ln in lines if ln.startswith("| sys-b "))
    assert "80%: 20.00 s* (1/2)" in row_b and "| 1gbe |" in row_b
    assert any(ln.startswith("* plain mean") for ln in lines)
    assert any("not the full benchmark" in ln for ln in lines)

    code, out, _ = run_cli(capsys, "report", str(tree), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["system"] for r in rows] == ["sys-a", "sys-b"]
    assert float(rows[0]["tta_s"]) == 24.0 and rows[0]["statuses"] == "failed:1;success:3"


def test_report_rows_are_experiments(tree, tmp_path, capsys):
    """Runs of another batch size in the same tree, and a copy of sys-a's runs in a second tree:
    separate rows (never averaged together), each saying what sets it apart."""
    root = tree
    make_run(root, "sys-a", "big1", RUNS["a"], seed=1, batch=256)
    make_run(root, "sys-a", "big2", RUNS["b"], seed=2, batch=256)
    code, out, _ = run_cli(capsys, "report", str(root), "--format", "json")
    rows = json.loads(out)["rows"]
    assert [(r["system"], r["setting"], r["runs"]) for r in rows] == [
        ("sys-a", "batch_size=128", 4),
        ("sys-a", "batch_size=256", 2),
        ("sys-b", "", 2),
    ]
    code, out, _ = run_cli(capsys, "report", str(root))
    assert "| setting |" in out.splitlines()[0]
    assert any(ln.startswith("| sys-a ") and "| batch_size=256 |" in ln for ln in out.splitlines())

    both = tmp_path / "both"
    for name in ("one", "two"):
        shutil.copytree(root / "sys-b", both / name / "sys-b")
    code, out, _ = run_cli(capsys, "report", str(both), "--format", "json")
    rows = json.loads(out)["rows"]
    assert sorted(r["setting"] for r in rows) == [
        f"tree={os.path.relpath(both / name)}" for name in ("one", "two")
    ]
    assert [r["runs"] for r in rows] == [2, 2]


def test_report_without_twins_has_no_setting_column(tree, capsys):
    code, out, _ = run_cli(capsys, "report", str(tree))
    assert "setting" not in out.splitlines()[0]


def test_report_override_target(tree, capsys):
    # At 0.7: sys-a TTA 20, 24, 8 -> olympic 20
    code, out, _ = run_cli(capsys, "report", str(tree), "--format", "json", "--target", "0.7")
    assert json.loads(out)["rows"][0]["tta_s"] == 20.0


def test_network_label():
    assert experiments.network_label(None) == "loopback"
    assert experiments.network_label({"config": {"network": None}}) == "loopback"
    assert experiments.network_label({"config": {"network": "wan"}}) == "wan"
    emulated = {
        "config": {"network": None},
        "resolved": {"network": {"profile": "custom", "mechanism": "emulated"}},
    }
    assert experiments.network_label(emulated) == "custom"
    loopback = {"resolved": {"network": {"profile": "loopback", "mechanism": "none"}}}
    assert experiments.network_label(loopback) == "loopback"
    shaped = {"resolved": {"network_shaping": {"rate": "100mbit", "delay": None}}}
    assert experiments.network_label(shaped) == "tbf 100mbit"
    # one worker crosses no link, whatever was asked (also as recorded before it said so)
    for resolved in (
        {"world_size": 1},
        {"world_size": 1, "network": {"profile": "1gbe", "mechanism": "emulated"}},
    ):
        assert experiments.network_label({"config": {"network": "1gbe"}, "resolved": resolved}) == (
            "not applied (1 worker)"
        )
    assert experiments.network_label({"config": {"network": "1gbe", "workers": 1, "nnodes": 1}}) == (
        "not applied (1 worker)"
    )


def test_one_worker_runs_group_together_whatever_network_was_asked(tmp_path):
    def config(network, workers):
        return {
            "config": {"benchmark": "resnet20", "network": network, "bandwidth": None, "workers": workers},
            "resolved": {"system": "s", "world_size": workers},
        }

    run = str(tmp_path / "r" / "s" / "resnet20" / "closed" / "x")
    key = results.experiment_key
    assert (
        key(run, None, config("1gbe", 1))
        == key(run, None, config(None, 1))
        == key(run, None, config("wan", 1))
    )
    assert key(run, None, config("1gbe", 2)) != key(run, None, config(None, 2))


# --- plot -----------------------------------------------------------------------------------


def test_plot_writes_png(tree, tmp_path, capsys):
    out_png = tmp_path / "fig.png"
    one_run = tree / "sys-b" / "resnet20" / "closed" / "r1"
    code, out, err = run_cli(capsys, "plot", str(tree / "sys-a"), str(one_run), "-o", str(out_png))
    assert code == 0, err
    data = out_png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    assert "wrote" in out


def test_plot_curve_without_thresholds(tmp_path, capsys):
    a = write_curve(tmp_path / "a", A)
    out_png = tmp_path / "one.png"
    code, out, _ = run_cli(capsys, "plot", a, "-o", str(out_png), "--label", "A")
    assert code == 0 and out_png.stat().st_size > 5000 and "no thresholds" in out


def test_plot_rejects_bad_output(tmp_path, capsys):
    a = write_curve(tmp_path / "a", A)
    code, _, err = run_cli(capsys, "plot", a, "-o", str(tmp_path / "fig.pdf"))
    assert code == 2 and ".png" in err


# --- no torch in the readers ----------------------------------------------------------------


def test_readers_do_not_import_torch():
    code = (
        "import sys, ttabench.launch.commands.readers, ttabench.divisions.validate, "
        "ttabench.divisions.scoring, ttabench.divisions.stats; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
