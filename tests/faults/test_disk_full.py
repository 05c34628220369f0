"""Results writes on a full disk and on a read-only file system, for real: a small tmpfs is
mounted as the results folder (root only; skipped otherwise) and `ttabench run` runs into it.

What must hold: a non-zero exit with exactly one `ttabench: error:` line naming the file and
the reason, no traceback (and no '--- Logging error ---' from the mllog), no temporary file
left behind, and never a summary without its curve -- a summary.json that says success or
failed has its curve.csv, and its metrics are the ones that curve gives (`ttabench validate`
finds no mismatch). A summary still saying `running` was written at the start, before any
evaluation; validate reports it as incomplete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root"),
    pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command"),
]

RUN = [
    "run",
    "--synthetic",
    "--max-steps",
    "4",
    "--eval-every",
    "64samples",
    "--batch-size",
    "32",
    "--thresholds",
    "0.1:0.2:0.1",
    "--progress",
    "none",
]
ENOSPC = re.compile(r"^ttabench: error: cannot write results file (\S+): No space left on device$")


@pytest.fixture
def tmpfs(tmp_path, request):
    """mount(options) -> a fresh tmpfs at tmp_path/mnt, unmounted at the end even on failure."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = []

    def mount(options: str) -> str:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], check=True, capture_output=True
        )
        mounted.append(str(mnt))
        return str(mnt)

    def unmount():
        for path in mounted:
            if subprocess.run(["umount", path], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", path], capture_output=True)  # still busy: detach

    request.addfinalizer(unmount)
    return mount


def fill(mnt: str, leave_kib: int) -> None:
    """Fill the tmpfs with one file so that `leave_kib` KiB stay free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(os.path.join(mnt, "filler"), "wb") as f:
        f.write(b"\0" * max(0, free - leave_kib * 1024))
    st = os.statvfs(mnt)
    assert st.f_bavail * st.f_frsize == leave_kib * 1024


def error_lines(proc) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Logging error" not in proc.stderr, proc.stderr
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("ttabench: error:")]


def all_files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def check_consistent(results: str) -> None:
    """Never a summary without its curve, and nothing half-written left behind."""
    files = all_files(results)
    assert not [f for f in files if f.endswith(".tmp")], files
    for summary_path in (f for f in files if f.endswith("summary.json")):
        run_dir = os.path.join(results, os.path.dirname(summary_path))
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)  # atomic: whole, never truncated
        if summary["status"] == "running":
            continue  # the record made at the start; validate says it is incomplete
        has_curve = os.path.isfile(os.path.join(run_dir, "curve.csv"))
        evaluated = (summary.get("metrics") or {}).get("final_accuracy") is not None
        assert has_curve or not evaluated, f"{summary_path}: {summary['status']} without its curve"
        if has_curve:
            proc = run_cli("validate", run_dir, "--no-compliance", "--json", timeout=120)
            report = json.loads(proc.stdout)  # a crash leaves no report
            assert proc.returncode == (0 if report["ok"] else 1), proc.stderr
            assert "recomputed" not in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    "leave_kib, partway",
    [(0, False), (16, True), (20, True)],
    ids=["nothing-fits", "log-fills-it", "curve-fills-it"],
)
def test_full_disk_is_one_error_line_and_results_stay_consistent(tmpfs, leave_kib, partway):
    # A run needs about 28 KiB here: system.json, config.json, summary.json and curve.csv of
    # one 4 KiB page each, mllog.txt of two, and the page of the temporary file of an atomic
    # rewrite. With 16 KiB free the log's second page is refused during training; with 20
    # KiB, the first evaluation's curve.csv.
    mnt = tmpfs("size=256k")
    fill(mnt, leave_kib)
    results = os.path.join(mnt, "results")
    proc = run_cli(*RUN, "--results-dir", results, timeout=300)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    errors = error_lines(proc)
    assert len(errors) == 1, proc.stderr
    m = ENOSPC.match(errors[0])
    assert m, errors[0]
    assert m[1].startswith(results + os.sep)
    if partway:  # the run had started writing its folder when the disk ran out
        assert any(f.endswith("config.json") for f in all_files(results)), all_files(results)
    check_consistent(results)


def test_read_only_results_folder_is_one_error_line_and_writes_nothing(tmpfs):
    mnt = tmpfs("ro,size=64k")
    results = os.path.join(mnt, "results")
    proc = run_cli(*RUN, "--results-dir", results, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = error_lines(proc)
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"ttabench: error: cannot create results folder {results}"), errors[0]
    assert errors[0].endswith(": Read-only file system"), errors[0]
    assert os.listdir(mnt) == []
