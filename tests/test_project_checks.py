"""The project's own checks: lint whatever the clone's folder is called, and skips that cannot
hide in CI (tests/conftest.py's guard)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from leftovers import process_state

REPO = Path(__file__).resolve().parent.parent


def _tracked_files() -> list[str]:
    """The files of this checkout that git would commit (tracked, or new and not ignored)."""
    out = subprocess.run(
        [
            "git",
            "-c",
            f"safe.directory={REPO}",
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and os.path.isfile(REPO / f)]


def test_lint_passes_in_a_clone_folder_named_ttabench(tmp_path):
    """`git clone` names the folder ttabench; ruff must not then see the package as first-party
    on its own and sort imports differently than in a folder of another name."""
    copy = tmp_path / "ttabench"
    for f in _tracked_files():
        (copy / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, copy / f)
    ruff = [sys.executable, "-m", "ruff"]
    for args in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        r = subprocess.run(ruff + args, cwd=copy, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def _copy_conftest(tests: Path) -> None:
    for name in ("conftest.py", "leftovers.py"):
        shutil.copy(REPO / "tests" / name, tests / name)


def _pytest(folder: Path, *args: str, ci: bool | None = None) -> subprocess.CompletedProcess:
    """pytest on `folder`/tests (a suite the test wrote, with the project's conftest) in a
    subprocess: CI=true in its environment if `ci`, none if not ci, this one's if None."""
    env = dict(os.environ)
    if ci is not None:
        env.pop("CI", None)
        env.update({"CI": "true"} if ci else {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-ra",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(folder),
            *args,
            "tests",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_under_ci_a_skip_fails_unless_it_is_on_the_allowed_list(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    _copy_conftest(tests)
    allowed = "test_nccl_on_a_machine_without_enough_gpus_is_a_user_error_before_any_process_group"
    (tests / "test_device_check.py").write_text(
        f"import pytest\n\ndef {allowed}():\n    pytest.skip('this machine has the GPUs')\n"
    )
    (tests / "test_kinds.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_skip_call():
                pytest.skip("no tool")

            @pytest.mark.skipif(True, reason="no mount command")
            def test_skipif_mark():
                pass

            @pytest.mark.xfail(reason="known")
            def test_xfail():
                assert False

            def test_passes():
                pass
            """
        )
    )
    outside = _pytest(tmp_path, ci=False)
    assert outside.returncode == 0, outside.stdout
    assert "3 skipped" in outside.stdout  # and listed: -ra prints every skip's reason
    assert "SKIPPED" in outside.stdout and "no mount command" in outside.stdout

    in_ci = _pytest(tmp_path, ci=True)
    assert in_ci.returncode == 1, in_ci.stdout
    # A skip in the test body fails it; a skipif mark (decided at set-up) is an error.
    failed = sorted(
        line.split()[1] for line in in_ci.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))
    )
    assert failed == ["tests/test_kinds.py::test_skip_call", "tests/test_kinds.py::test_skipif_mark"], (
        in_ci.stdout
    )
    assert "skipped under CI=true: no mount command" in in_ci.stdout
    assert "1 skipped" in in_ci.stdout and "1 xfailed" in in_ci.stdout and "1 passed" in in_ci.stdout

    # A module skipped as a whole (importorskip at import time) is a collection error in CI.
    (tests / "test_module_level.py").write_text(
        "import pytest\n\npytest.importorskip('no_such_module_here')\n\ndef test_x():\n    pass\n"
    )
    outside = _pytest(tmp_path, ci=False)
    assert outside.returncode == 0 and "4 skipped" in outside.stdout, outside.stdout
    in_ci = _pytest(tmp_path, ci=True)
    assert in_ci.returncode == 2, in_ci.stdout
    assert "ERROR tests/test_module_level.py - skipped under CI=true" in in_ci.stdout


def test_make_test_reports_nothing_collected_as_a_failure_and_prints_the_slowest_tests():
    """pytest exits 5 when it collects nothing; the Makefile passes that on."""
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "--durations=15" in recipe
    # `make coverage`: the same suite, the package's statement coverage, pytest's exit status kept
    recipe = makefile.split("\ncoverage:", 1)[1].split("\n\n", 1)[0]
    assert "$(COVERAGE) run -m pytest tests" in recipe and "$(COVERAGE) report" in recipe
    assert recipe.rstrip().endswith("exit $$status")
    assert "-eq 5" not in makefile and "rc=0" not in makefile


LEAKY = """
import os, subprocess, sys, time
from conftest import run_command

def _tree(pids_file):
    # A child that starts a grandchild in a session of its own, writes both pids, sleeps.
    code = (
        "import os, subprocess, sys, time\\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],\\n"
        "                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\\n"
        f"open({pids_file!r}, 'w').write(f'{{os.getpid()}} {{g.pid}}')\\n"
        "time.sleep(120)\\n"
    )
    return [sys.executable, "-c", code]

def test_timeout_kills_the_tree(tmp_path):
    try:
        run_command(_tree(str(tmp_path / "pids")), timeout=3)
    except subprocess.TimeoutExpired:
        pass
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    for pid in pids:  # gone at once (or a zombie), not at the end of the session
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "Z", pid
        except FileNotFoundError:
            pass
    with open(os.path.join(os.path.dirname(__file__), "tree.txt"), "w") as f:  # (xdist: no -s)
        f.write(" ".join(map(str, pids)))

def test_leaves_a_process_behind():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    with open(os.path.join(os.path.dirname(__file__), "leaked.txt"), "w") as f:
        f.write(f"{p.pid} {_stat(p.pid)}")

def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return f"state={fields[0]} pgrp={fields[2]} start={fields[19]}"
    except FileNotFoundError:
        return "gone"
"""


# The suite alone, and as `make test` runs it: on pytest-xdist workers, where each worker finds
# what its own tests left and the controller fails the run.
XDIST = pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])


@XDIST
def test_a_command_that_times_out_loses_its_whole_tree_and_leftovers_fail_the_session(tmp_path, xdist):
    tests = tmp_path / "tests"
    tests.mkdir()
    _copy_conftest(tests)
    (tests / "test_leaky.py").write_text(LEAKY)
    r = _pytest(tmp_path, *xdist)
    tree = tests / "tree.txt"
    pids = [int(p) for p in tree.read_text().split()] if tree.exists() else []
    assert len(pids) == 2, r.stdout + r.stderr
    assert not any(os.path.exists(f"/proc/{p}") and process_state(p) != "Z" for p in pids), pids
    # Both tests pass; the process the second left behind fails the session, and is killed.
    # (If the session did not see it: the leaked process as the test saw it and as it is now,
    # to tell "killed by someone else before the session ended" from "not found".)
    leaked = tests / "leaked.txt"
    seen = leaked.read_text() if leaked.exists() else "no leaked.txt"
    now = process_state(int(seen.split()[0])) if seen[0].isdigit() else "-"
    assert "2 passed" in r.stdout and r.returncode == 1, f"leaked: {seen}, now {now}\n" + r.stdout + r.stderr
    left = r.stderr.split("still running at the end (killed now):\n", 1)[1].strip().splitlines()
    assert len(left) == 1 and "time.sleep(120)" in left[0], r.stderr


LEAVES_A_LAB = """
import subprocess

def test_leaves_a_namespace_and_a_shaped_link():
    for argv in ({argvs}):
        subprocess.run(argv, check=True)
"""


@XDIST
def test_a_namespace_link_or_qdisc_left_behind_fails_the_session(tmp_path, xdist):
    """A namespace, a link and a qdisc named as the tests name theirs, made by a test and not
    removed, fail a CI session that made them, each named with how to remove it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace")
    ns, dev = f"ttabench-test-left-{os.getpid()}", f"ttatl{os.getpid() % 100000}"
    argvs = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", dev + "a", "type", "veth", "peer", "name", dev + "b"],
        ["tc", "qdisc", "add", "dev", dev + "a", "root", "tbf", "rate", "1mbit", "burst", "32kb", "latency", "1s"],
    ]  # fmt: skip
    tests = tmp_path / "tests"
    tests.mkdir()
    _copy_conftest(tests)
    (tests / "test_lab.py").write_text(LEAVES_A_LAB.format(argvs=repr(argvs)))
    try:
        r = _pytest(tmp_path, *xdist, ci=True)  # outside CI they are reported, not a failure
    finally:
        subprocess.run(["ip", "link", "del", dev + "a"], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert "1 passed" in r.stdout and r.returncode == 1, r.stdout + r.stderr
    report = r.stderr.splitlines()

    def listed(kind: str) -> list[str]:
        at = report.index(next(ln for ln in report if ln.startswith(f"{kind}s made by the tests remain")))
        return [ln.strip() for ln in itertools.takewhile(lambda ln: ln.startswith("  "), report[at + 1 :])]

    # (in: on a shared machine another suite's lab may appear meanwhile and be listed too)
    assert ns in listed("namespace") and {dev + "a", dev + "b"} <= set(listed("link")), r.stderr
    ours = [q for q in listed("qdisc") if q.endswith(f" on {dev}a")]
    assert len(ours) == 1 and ours[0].startswith("tbf "), r.stderr


SYSTEM_LIKE = """
import os, time

def _record(name):
    with open({ran!r}, "a") as f:
        f.write(f"{{name}} {{os.environ['PYTEST_XDIST_WORKER']}}\\n")
    time.sleep(0.3)

{tests}
"""


def test_system_tests_run_on_one_xdist_worker_and_the_rest_on_both(tmp_path):
    """conftest's scheduler: the modules of SYSTEM_MODULES (one Slurm cluster, namespaces and
    qdiscs named for the whole machine) are one unit of work, every other test a unit of its own."""
    tests = tmp_path / "tests"
    (tests / "faults").mkdir(parents=True)
    _copy_conftest(tests)
    system = ["test_slurm.py", "test_netlab.py", "faults/test_disk_full.py"]
    for name in [*system, "test_other.py", "test_more.py"]:
        body = "\n".join(f"def test_{i}():\n    _record({name!r})\n" for i in range(6))
        (tests / name).write_text(SYSTEM_LIKE.format(ran=str(tmp_path / "ran.txt"), tests=body))
    r = _pytest(tmp_path, "-n", "2")
    assert "30 passed" in r.stdout, r.stdout + r.stderr
    ran = [line.split() for line in (tmp_path / "ran.txt").read_text().splitlines()]
    workers = {name: {w for n, w in ran if n == name} for name in {n for n, _ in ran}}
    assert len(set().union(*(workers[name] for name in system))) == 1, workers
    assert set().union(*workers.values()) == {"gw0", "gw1"}, workers
