"""launch/procs.py with real processes: a failure stops the siblings and their children,
signals reach the children, a timeout stops them, and nothing is left behind.

Bounds on time are loose on purpose (the machine may be loaded): what is asserted is
that nobody waits for a sibling's 60-second sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ttabench.launch import procs

PY = sys.executable


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped has ended)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def _wait_for(path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def _sleeper_with_grandchild(pids_file) -> list[str]:
    """A child that starts a grandchild in its own process group, writes both pids, sleeps."""
    code = f"""
        import subprocess, sys, time
        g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pids_file)!r}, "w").write(f"{{__import__('os').getpid()}} {{g.pid}}")
        time.sleep(60)
    """
    return [PY, "-c", textwrap.dedent(code)]


def test_a_failing_child_stops_its_siblings_and_their_children(tmp_path):
    pids_file = tmp_path / "pids"
    sleeper = procs.start(_sleeper_with_grandchild(pids_file))
    pids = [int(p) for p in _wait_for(pids_file).split()]
    seen = []
    t0 = time.monotonic()
    failing = procs.start([PY, "-c", "import sys; sys.exit(3)"])
    result = procs.supervise([sleeper, failing], on_failure=lambda i, code: seen.append((i, code)))
    assert time.monotonic() - t0 < 30  # not the sleeper's 60 s
    assert seen == [(1, 3)] and result.failed == 1 and result.code == 3
    assert result.codes[0] == -signal.SIGTERM  # stopped by us, recorded as such
    assert not any(_alive(p) for p in pids), pids  # the grandchild went with its group


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    ready = tmp_path / "ready"
    code = f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open({str(ready)!r}, 'w').write('1'); time.sleep(60)"
    stubborn = procs.start([PY, "-c", code])
    _wait_for(ready)
    t0 = time.monotonic()
    result = procs.supervise([stubborn, procs.start([PY, "-c", "raise SystemExit(2)"])], grace_s=1.0)
    assert result.code == 2 and result.codes[0] == -signal.SIGKILL
    assert time.monotonic() - t0 < 30
    assert not _alive(stubborn.pid)


def test_timeout_stops_everything_with_exit_code_124():
    child, result = procs.run([PY, "-c", "import time; time.sleep(60)"], timeout=1.0)
    assert result.timed_out and result.code == 124 and result.codes == [-signal.SIGTERM]
    assert not _alive(child.pid)


def test_all_succeed_and_output_is_captured_or_streamed(tmp_path):
    child, result = procs.run(
        [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], capture=True
    )
    assert result.code == 0 and result.codes == [0] and result.failed is None
    assert child.stdout == "out\n" and child.stderr == "err\n"
    lines = []
    _, result = procs.run([PY, "-c", "print('a'); print('b')"], on_line=lines.append)
    assert result.code == 0 and lines == ["a\n", "b\n"]
    with open(tmp_path / "log", "w") as log:
        procs.run([PY, "-c", "import sys; print('x'); print('y', file=sys.stderr)"], stdout=log)
    assert sorted((tmp_path / "log").read_text().split()) == ["x", "y"]


def test_environment_is_extended_with_this_pythons_bin_first():
    child, _ = procs.run(
        [PY, "-c", "import os; print(os.environ['PATH'].split(os.pathsep)[0], os.environ['EXTRA'])"],
        env={"EXTRA": "1"},
        capture=True,
    )
    assert child.stdout.split() == [os.path.dirname(sys.executable), "1"]


SUPERVISOR = """
import sys
from ttabench.launch import procs
code = (
    "import signal, sys, time\\n"
    "def got(n, f):\\n"
    "    open(sys.argv[1], 'w').write(signal.Signals(n).name)\\n"
    "    sys.exit(1)\\n"
    "signal.signal(signal.SIGTERM, got)\\n"
    "signal.signal(signal.SIGINT, got)\\n"
    "open(sys.argv[2], 'w').write('1')\\n"
    "time.sleep(60)\\n"
)
result = procs.supervise([procs.start([sys.executable, "-c", code, sys.argv[1], sys.argv[2]])])
print(result.interrupted, result.code, flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_are_forwarded_to_the_children(tmp_path, sig):
    """The supervisor's children run in their own sessions: only forwarding reaches them."""
    got, ready = tmp_path / "got", tmp_path / "ready"
    sup = subprocess.Popen(
        [PY, "-c", SUPERVISOR, str(got), str(ready)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(ready)
        os.kill(sup.pid, sig)
        out, _ = sup.communicate(timeout=60)
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
    assert out.split() == [sig.name, "130"]
    assert got.read_text() == sig.name


def test_horovodrun_is_looked_up_next_to_this_python(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").symlink_to(sys.executable)
    (fake / "horovodrun").write_text("#!/bin/sh\n")
    (fake / "horovodrun").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake / "python"))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert procs.horovodrun_command(2) == [
        str(fake / "horovodrun"),
        "-np",
        "2",
        "-H",
        "localhost:2",
        "--gloo",
    ]
