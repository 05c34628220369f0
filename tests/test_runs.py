"""Where a user's runs go by default, and `ttabench runs` listing them.

The listing is checked on a copy of the repository's committed results (real runs of this
suite) and on a real tiny training run made with default options.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ctrl_c_as_in_a_terminal, process_tree, run_cli

from ttabench.divisions import experiments, metrics, scoring
from ttabench.launch import cli
from ttabench.launch.commands import runs
from ttabench.launch.config import DEFAULT_RESULTS_DIR

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "results"


@pytest.fixture
def tree(tmp_path) -> Path:
    dest = tmp_path / "results"
    shutil.copytree(COMMITTED, dest)
    return dest


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("curve.csv"))


def test_default_results_dir_is_git_ignored_and_not_the_committed_tree():
    assert DEFAULT_RESULTS_DIR != "results"
    proc = subprocess.run(
        # safe.directory: a checkout owned by another user is still a checkout ("dubious ownership"
        # would exit 128 as well).
        [
            "git",
            "-c",
            f"safe.directory={REPO}",
            "check-ignore",
            "-q",
            DEFAULT_RESULTS_DIR + "/x/summary.json",
        ],
        cwd=REPO,
        capture_output=True,
    )
    if proc.returncode == 128 and not (Path(REPO) / ".git").exists():
        pytest.skip("not a git checkout")
    assert proc.returncode == 0, f"{DEFAULT_RESULTS_DIR}/ is not git-ignored"
    help_text = run_cli("run", "--help", check=True).stdout
    assert f"./{DEFAULT_RESULTS_DIR}" in " ".join(help_text.split())


@pytest.mark.slow
def test_run_with_default_options_writes_to_the_user_folder(default_options_run):
    # trained once per session (tests/conftest.py) in a folder that holds a results/ folder,
    # as a checkout does: that results/ tree stays untouched
    cwd, _ = default_options_run
    assert list((cwd / "results").iterdir()) == []
    runs = _run_dirs(cwd / DEFAULT_RESULTS_DIR)
    assert len(runs) == 1
    assert (runs[0].parents[2] / "system.json").is_file()
    # `ttabench runs` without arguments lists exactly that run.
    listed = json.loads(run_cli("runs", "--json", cwd=cwd, check=True).stdout)["runs"]
    assert [r["id"] for r in listed] == [runs[0].name]
    assert listed[0]["status"] == "success" and listed[0]["dataset"] == "synthetic"


def test_runs_lists_every_run_newest_first_with_the_recorded_metrics(tree):
    out = json.loads(run_cli("runs", str(tree), "--json", check=True).stdout)
    listed = out["runs"]
    assert sorted(r["path"] for r in listed) == sorted(str(p) for p in _run_dirs(tree))
    starts = [r["started"] for r in listed]
    assert starts == sorted(starts, reverse=True) and len(set(starts)) > 1
    for r in listed:
        run = scoring.load_run(r["path"])
        m = run.run_metrics
        spec = m.get("threshold_spec")
        expect = metrics.summarize(
            run.points, metrics.parse_thresholds(spec) if spec else None, target=m.get("target")
        )
        assert r["tta_s"] == expect.get("target_tta_s")
        assert r["attmt_s"] == expect.get("attmt_s")
        assert r["final_accuracy"] == run.points[-1][1]
        assert r["status"] == run.status
        assert {k: r[k] for k in ("system", "benchmark", "division", "workers", "network", "algorithm")} == {
            k: v for k, v in experiments.describe_run(run).items() if k != "dataset"
        }


def test_runs_table_keeps_lines_whole_off_a_terminal(tree):
    proc = run_cli("runs", str(tree), check=True)
    ids = [p.name for p in _run_dirs(tree)]
    lines = proc.stdout.splitlines()
    for run_id in ids:
        (line,) = [ln for ln in lines if run_id in ln]
        assert "amd-epyc-2c" in line and "resnet20" in line and "%" in line
    # newest first: the rows appear in descending run-id time (these ids start with it)
    order = [next(i for i, ln in enumerate(lines) if run_id in ln) for run_id in sorted(ids, reverse=True)]
    assert order == sorted(order)


def test_runs_lists_an_unreadable_run_instead_of_failing(tree):
    broken = _run_dirs(tree)[0]
    (broken / "curve.csv").write_text("not,a,curve\n")
    proc = run_cli("runs", str(tree))
    assert proc.returncode == 0, proc.stderr
    assert f"{broken.name}: " in proc.stdout and "not a ttabench curve" in proc.stdout
    entry = next(
        r for r in json.loads(run_cli("runs", str(tree), "--json").stdout)["runs"] if r["id"] == broken.name
    )
    assert entry["status"] == "unreadable"


def test_runs_user_errors_and_empty_default(tmp_path):
    proc = run_cli("runs", str(tmp_path / "missing"))
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == f"ttabench: error: not a folder: {tmp_path / 'missing'}"
    )
    proc = run_cli("runs", cwd=tmp_path, check=True)
    assert "no runs in ttabench-results yet" in proc.stdout
    assert json.loads(run_cli("runs", "--json", cwd=tmp_path, check=True).stdout)["runs"] == []


def test_runs_does_not_import_torch(tree):
    code = (
        "import sys; from ttabench.launch.cli import main; "
        f"rc = main(['runs', {str(tree)!r}, '--json']); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_runs_says_not_evaluated_for_a_run_without_an_evaluation(tmp_path):
    run = tmp_path / "results" / "box" / "resnet20" / "closed" / "20990101-000000-abcdef"
    run.mkdir(parents=True)
    summary = {"status": "interrupted", "benchmark": "resnet20", "division": "closed", "world_size": 2}
    (run / "summary.json").write_text(json.dumps(summary))
    out = run_cli("runs", str(tmp_path / "results"), check=True).stdout
    (line,) = [x for x in out.splitlines() if "abcdef" in x]
    assert "| interrupted |" in line and "| not evaluated |" in line


def test_runs_table_shows_the_algorithm_only_when_a_run_is_not_allreduce(tree):
    # the algorithm study's runs (several algorithms) show the column; every other committed run
    # trained with allreduce
    assert "| algorithm |" in run_cli("runs", str(tree / "algorithms"), check=True).stdout
    shutil.rmtree(tree / "algorithms")
    plain = run_cli("runs", str(tree), check=True).stdout
    assert "algorithm" not in plain
    # one run's record says it trained with top-k (as `ttabench run --algorithm topk` writes it)
    edited = _run_dirs(tree)[0]
    summary = json.loads((edited / "summary.json").read_text())
    summary.update(algorithm="topk", algorithm_params={"topk_ratio": 0.05})
    (edited / "summary.json").write_text(json.dumps(summary))
    lines = run_cli("runs", str(tree), check=True).stdout.splitlines()
    header = next(ln for ln in lines if "network" in ln and "status" in ln)
    assert header.index("network") < header.index("algorithm") < header.index("final acc.")
    (line,) = [ln for ln in lines if edited.name in ln]
    assert "topk topk_ratio=0.05" in line
    others = [ln for ln in lines if any(p.name in ln for p in _run_dirs(tree)[1:])]
    assert others and all("allreduce" in ln for ln in others)


# --- runs --watch ------------------------------------------------------------------------------


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _one_running_run(tmp_path: Path) -> tuple[Path, Path, str]:
    """A copy of one committed run whose summary says `running`, as while it trains: (results
    root, the summary's path, the summary's real text)."""
    src = _run_dirs(COMMITTED)[0]
    dest = tmp_path / "results" / src.relative_to(COMMITTED)
    shutil.copytree(src, dest)
    summary = dest / "summary.json"
    text = summary.read_text()
    summary.write_text(json.dumps(dict(json.loads(text), status="running")))
    return tmp_path / "results", summary, text


@contextlib.contextmanager
def _watching(root: Path):
    """`ttabench runs ROOT --watch --interval 0.2`, read up to its first `waiting for` line:
    (the process, the lines read). It and all it started are killed when the block ends."""
    with process_tree() as env:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ttabench", "runs", str(root), "--watch", "--interval", "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=ctrl_c_as_in_a_terminal,  # the Ctrl-C test's SIGINT must reach it
        )
        try:
            lines = []
            while not lines or not lines[-1].startswith("waiting for "):
                line = proc.stdout.readline()
                assert line, "".join(lines) + proc.stderr.read()
                lines.append(line)
            yield proc, lines
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_runs_watch_follows_a_tree_until_every_run_has_finished(tmp_path):
    root, summary, finished = _one_running_run(tmp_path)
    with _watching(root) as (proc, lines):
        assert lines[-1].startswith("waiting for 1: 1 running (every 0.2 s, at most 86400 s;"), lines
        _replace(summary, finished)  # the run ends (as the run writes it: never a half-written file)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    status = json.loads(finished)["status"]
    # The listing again, once, with the run's final status; then the line that ends the watch.
    assert out.count(" runs in ") == 1 and f"| {status} " in out, out
    assert out.rstrip().splitlines()[-1] == "every listed run has finished (1)"


def test_runs_watch_is_bounded_and_stops_cleanly_on_ctrl_c(tmp_path):
    root, _, _ = _one_running_run(tmp_path)
    r = run_cli("runs", str(root), "--watch", "--interval", "0.1", "--max-wait", "0.5", timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.rstrip().splitlines()[-1] == "stopped watching after 0.5 s: 1 still unfinished"
    with _watching(root) as (proc, _):
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert err.splitlines() == ["ttabench: stopped watching (the runs and their jobs go on)"], err
    for bad, message in (
        (("--json",), "--watch shows the table as it changes; --json prints the listing once"),
        (("--interval", "0"), "--interval must be a finite number of seconds > 0"),
    ):
        r = run_cli("runs", str(root), "--watch", *bad)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = run_cli("runs", str(tmp_path / "nowhere"), "--watch")
    assert r.returncode == 2 and r.stderr.strip() == f"ttabench: error: not a folder: {tmp_path / 'nowhere'}"


def test_runs_watch_does_not_take_a_summary_caught_mid_write_for_an_end(tmp_path):
    root, summary, finished = _one_running_run(tmp_path)
    summary.write_text(finished[: len(finished) // 2])  # as a reader may catch it while it is written
    lines = []

    def out(line):
        lines.append(line)
        if line.startswith("waiting for 1: 1 unreadable"):
            _replace(summary, finished)  # the write completes

    assert runs.watch(str(root), 0.01, 60, out=out) == 0, lines
    assert lines[0].startswith("waiting for 1: 1 unreadable (every 0.01 s"), lines
    assert lines[-1] == "every listed run has finished (1)", lines
    # One that stays unreadable, with nothing else to wait for, ends the watch, not as finished.
    summary.write_text("{")
    lines.clear()
    assert runs.watch(str(root), 0.01, 60, out=lines.append) == 1, lines
    assert lines[-1] == f"stopped watching: 1 unreadable at {runs.UNREADABLE_LOOKS} looks in a row", lines


@pytest.mark.parametrize(
    "bad, message",
    [
        (("--interval", "nan"), "--interval must be a finite number of seconds > 0, got nan"),
        (("--interval", "inf"), "--interval must be a finite number of seconds > 0, got inf"),
        (("--interval", "0"), "--interval must be a finite number of seconds > 0, got 0"),
        (("--max-wait=-inf",), "--max-wait must be a finite number of seconds > 0, got -inf"),
        (("--max-wait", "NaN"), "--max-wait must be a finite number of seconds > 0, got nan"),
        (("--max-wait", "0"), "--max-wait must be a finite number of seconds > 0, got 0"),
    ],
)
def test_runs_watch_refuses_an_interval_or_max_wait_that_is_not_finite(tmp_path, capsys, bad, message):
    code = cli.main(["runs", str(tmp_path), "--watch", *bad])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.splitlines() == [f"ttabench: error: {message}"], out + err
