"""launch.record.recorder: curve.csv after every evaluation, summary.json from the curve, mllog events."""

from __future__ import annotations

import json
from types import SimpleNamespace

from ttabench.divisions.results import read_curve
from ttabench.launch.config import RunConfig
from ttabench.launch.record.mllog import RunLog
from ttabench.launch.record.recorder import Recorder


def _row(epoch: float, t: float, acc: float) -> dict:
    return {
        "epoch": epoch,
        "step": int(10 * epoch),
        "samples": int(320 * epoch),
        "train_time_s": t,
        "total_time_s": t + 0.5,
        "accuracy": acc,
        "loss": 1.0,
    }


def _recorder(tmp_path, cfg: RunConfig, curve=None) -> Recorder:
    log = RunLog(str(tmp_path / "mllog.txt"))
    thresholds = ("0.2:0.4:0.1", (0.2, 0.4, 0.1))
    return Recorder(str(tmp_path), log, {"benchmark": "resnet20"}, cfg, thresholds, curve=curve)


def _summary(tmp_path) -> dict:
    return json.loads((tmp_path / "summary.json").read_text())


def test_a_new_recorder_marks_the_run_running(tmp_path):
    rec = _recorder(tmp_path, RunConfig())
    s = _summary(tmp_path)
    assert s["status"] == "running" and s["benchmark"] == "resnet20"
    assert s["metrics"]["threshold_spec"] == "0.2:0.4:0.1"
    assert s["metrics"]["final_accuracy"] is None
    rec.log.close()


def test_every_evaluation_is_on_disk_and_the_summary_is_computed_from_it(tmp_path):
    rec = _recorder(tmp_path, RunConfig(target=0.3, time_budget=2.5))
    rec.run_start({})
    rec.epoch_start(0)
    for row in (_row(1, 1.0, 0.25), _row(2, 2.0, 0.35), _row(3, 3.0, 0.45)):
        rec.eval_start(row["epoch"])
        rec.evaluated(row)
        assert read_curve(str(tmp_path / "curve.csv"))[-1]["accuracy"] == row["accuracy"]
    rec.epoch_stop(0)
    s = rec.write_summary({"status": "success"})
    m = s["metrics"]
    assert s == _summary(tmp_path)
    assert m["thresholds"] == [0.2, 0.3, 0.4]
    assert m["tta_s"] == [1.0, 2.0, 3.0]
    assert m["attmt_s"] == 2.0  # (1 + 2 + 3) / 3
    assert m["target_tta_s"] == 2.0  # first accuracy >= 0.3
    assert m["aat"] == 0.35  # the last evaluation at or before 2.5 s
    assert (m["final_accuracy"], m["best_accuracy"]) == (0.45, 0.45)
    rec.run_stop(SimpleNamespace(stop_reason="target", status="success"))
    rec.log.close()
    log = (tmp_path / "mllog.txt").read_text()
    assert log.count('"key": "eval_accuracy"') == 3
    assert '"key": "run_stop"' in log and '"status": "success"' in log


def test_a_resumed_recorder_rewrites_the_curve_it_was_given(tmp_path):
    rows = [_row(1, 1.0, 0.25)]
    rec = _recorder(tmp_path, RunConfig(), curve=rows)
    assert [r["accuracy"] for r in read_curve(str(tmp_path / "curve.csv"))] == [0.25]
    assert _summary(tmp_path)["metrics"]["final_accuracy"] == 0.25
    rec.log.close()
