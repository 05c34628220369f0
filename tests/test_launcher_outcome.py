"""launcher.record_outcome: what summary.json says after workers stopped abnormally, whichever
rank torch lists as the root cause."""

import json

from ttabench.launch.launcher import Outcome, record_outcome


def _summary(tmp_path, **fields):
    (tmp_path / "summary.json").write_text(json.dumps(fields))


def _ranks(*ranks):
    return [{"rank": r, "exitcode": code, "signal": sig, "message": ""} for r, code, sig in ranks]


def test_a_user_error_every_rank_found_stays_the_error_whichever_rank_is_listed_first(tmp_path):
    # Both ranks stopped on the same user error (exit code 2); torch listed rank 1 first.
    _summary(tmp_path, status="failed", failed_rank=0, error="UserError: out of luck in the worker")
    out = Outcome(2, "rank 1 exit code 2; rank 0 exit code 2", _ranks((1, 2, None), (0, 2, None)))
    assert record_outcome(str(tmp_path), out) == "failed"
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["error"] == "UserError: out of luck in the worker"
    assert s["launcher_error"] == "rank 1 exit code 2; rank 0 exit code 2"
    assert "worker_error" not in s


def test_a_consequence_recorded_by_rank_0_gives_way_to_the_root_cause(tmp_path):
    # Rank 1 crashed first (exit 1); rank 0 then saw its collective break and recorded that.
    _summary(tmp_path, status="failed", failed_rank=0, error="DistBackendError: connection reset")
    out = Outcome(1, "rank 1 exit code 1: boom; rank 0 exit code 1", _ranks((1, 1, None), (0, 1, None)))
    assert record_outcome(str(tmp_path), out) == "failed"
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["error"] == "rank 1 exit code 1: boom; rank 0 exit code 1"
    assert s["worker_error"] == "DistBackendError: connection reset"


def test_the_recording_rank_listed_first_keeps_its_error(tmp_path):
    _summary(tmp_path, status="failed", failed_rank=0, error="RuntimeError: no memory left")
    out = Outcome(
        1, "rank 0 exit code 1; rank 1 killed by SIGTERM", _ranks((0, 1, None), (1, -15, "SIGTERM"))
    )
    assert record_outcome(str(tmp_path), out) == "failed"
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["error"] == "RuntimeError: no memory left"
    assert s["launcher_error"] == "rank 0 exit code 1; rank 1 killed by SIGTERM"
