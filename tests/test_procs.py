"""launch/procs.py with real processes: a failure stops the siblings and their children,
signals reach the children, a timeout stops them, and nothing is left behind.

Bounds on time are loose on purpose (the machine may be loaded): what is asserted is
that nobody waits for a sibling's 60-second sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import ctrl_c_as_in_a_terminal
from leftovers import process_state, processes_with

from ttabench.launch import elastic, procs

PY = sys.executable


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped has ended)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def _all_gone(pids, timeout: float = 10.0) -> bool:
    """True once none of `pids` runs: a SIGKILLed process takes a moment to end."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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
    assert _all_gone(pids), pids  # the grandchild went with its group


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


def test_an_exited_child_keeps_its_pid_until_its_group_was_dealt_with(tmp_path):
    """Its pid is its process group's id: while the supervisor may still signal that group, the
    exited leader stays a zombie (not reaped), so the kernel cannot give the number to another
    process that a late killpg would then hit. Reaped at the end, with its code."""
    quick = procs.start([PY, "-c", "raise SystemExit(0)"])
    ready = tmp_path / "ready"
    slow = procs.start([PY, "-c", f"import time; open({str(ready)!r}, 'w').write('1'); time.sleep(3)"])
    states = []

    def on_failure(i, code):  # never: both succeed
        raise AssertionError((i, code))

    def look():
        _wait_for(ready)
        deadline = time.monotonic() + 10
        while quick.exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        states.append(process_state(quick.pid))

    t = threading.Thread(target=look)
    t.start()
    result = procs.supervise([quick, slow], on_failure=on_failure)
    t.join()
    assert states == ["Z"], states  # exited, not reaped, while its sibling ran
    assert result.codes == [0, 0] and process_state(quick.pid) == "gone"
    # a child killed by a signal: the same code as Popen's, before and after reaping
    killed = procs.start([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    deadline = time.monotonic() + 30
    while killed.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert killed.exit_code() == -signal.SIGKILL and procs.reap([killed]) == [-signal.SIGKILL]


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
        preexec_fn=ctrl_c_as_in_a_terminal,
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


STUBBORN = """
import sys
from ttabench.launch import procs
code = (
    "import os, signal, sys, time\\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\\n"
    "open(sys.argv[1], 'w').write(str(os.getpid()))\\n"
    "time.sleep(120)\\n"
)
result = procs.supervise([procs.start([sys.executable, "-c", code, sys.argv[1]])], grace_s=60)
print(result.interrupted, result.code, flush=True)
"""


def test_a_second_ctrl_c_cuts_the_grace_short_and_still_kills_and_reaps(tmp_path):
    """A child that ignores the forwarded signal would have 60 s of grace; a second Ctrl-C
    ends it early, and the supervisor still SIGKILLs the group, reaps and reports (before,
    the second signal raised out of the stop and left the child running)."""
    ready = tmp_path / "ready"
    sup = subprocess.Popen(
        [PY, "-c", STUBBORN, str(ready)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    child = None
    try:
        _wait_for(ready)
        child = int(ready.read_text())
        os.kill(sup.pid, signal.SIGINT)
        time.sleep(1.0)
        assert sup.poll() is None  # in the grace period: the child ignores SIGINT
        t0 = time.monotonic()
        os.kill(sup.pid, signal.SIGINT)
        out, _ = sup.communicate(timeout=30)
        assert time.monotonic() - t0 < 20
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
        if child is not None and os.path.exists(f"/proc/{child}"):
            os.kill(child, signal.SIGKILL)
    assert out.split() == ["SIGINT", "130"]
    assert not os.path.exists(f"/proc/{child}")  # killed and reaped, not left running


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


def test_rendezvous_is_local_alone_and_one_named_run_across_nodes():
    (ep1, cf1, id1), (_, _, id2) = elastic.Rendezvous().c10d(5.0), elastic.Rendezvous().c10d(5.0)
    assert ep1 == "127.0.0.1:0" and cf1 == {"is_host": True, "timeout": elastic.RDZV_MIN_TIMEOUT_S}
    assert id1 != id2  # two local runs never join each other
    nodes = [elastic.Rendezvous(2, rank, "host0:29400", f"host{rank}") for rank in (0, 1)]
    (ep0, cf0, run0), (ep1, cf1, run1) = (n.c10d(elastic.RDZV_MIN_TIMEOUT_S + 30.5) for n in nodes)
    assert ep0 == ep1 == "host0:29400" and run0 == run1 == "ttabench-host0-29400"
    assert (cf0["is_host"], cf1["is_host"]) == (True, False)
    assert (
        cf0["timeout"] == cf1["timeout"] == elastic.RDZV_MIN_TIMEOUT_S + 30
    )  # the collective timeout, if longer


# The signal window: a launcher that starts its children and only then installs its handlers
# dies of a SIGTERM (or raises KeyboardInterrupt) in between, while the children, in sessions
# of their own, run on. The script below holds every start open until the test says go, so the
# signal lands in that window on purpose, every time.
WINDOW = """
import os, sys, time
from ttabench.launch import procs
pids_file, go, which = sys.argv[1], sys.argv[2], sys.argv[3]
real_start = procs.start

def start_then_wait(argv, **kw):
    child = real_start(argv, **kw)
    with open(pids_file, "a") as f:
        f.write(f"{child.pid}\\n")
    deadline = time.monotonic() + 120
    while not os.path.exists(go) and time.monotonic() < deadline:  # the window
        time.sleep(0.02)
    return child

procs.start = start_then_wait
# The sleeper closes its output: an orphan must not hold the test's pipe (the test would wait).
sleep = [sys.executable, "-c", "import os, time; os.close(1); os.close(2); time.sleep(120)"]
if which == "run":
    child, result = procs.run(sleep)
    print(result.interrupted, result.code, flush=True)
elif which == "nodes":
    from ttabench.launch.net import nodes
    print(nodes.run_nodes([(sleep, {}), (sleep, {})]), flush=True)
else:  # the launcher's Horovod path: horovodrun replaced by a sleeper, no Horovod needed
    from ttabench.launch import cli
    procs.horovodrun_command = lambda workers: sleep
    sys.exit(cli.main(["run", "--backend", "horovod", "--workers", "2", "--synthetic",
                       "--max-epochs", "1", "--results-dir", which]))
"""


def _session_alive(sid: int) -> list[int]:
    """Live processes of session `sid` (a child started by procs leads its own session)."""
    return processes_with("session", sid)


def _signal_in_the_window(tmp_path, sig, which) -> tuple[subprocess.CompletedProcess, list[int]]:
    pids_file, go = tmp_path / "pids", tmp_path / "go"
    sup = subprocess.Popen(
        [PY, "-c", WINDOW, str(pids_file), str(go), which],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    pids = []
    try:
        pids = [int(_wait_for(pids_file).split()[0])]
        os.kill(sup.pid, sig)  # a child runs; supervision has not begun
        go.write_text("1")
        out, err = sup.communicate(timeout=60)
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
        pids = [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else pids
        for pid in pids:  # whatever happens, nothing of this test stays behind
            for p in _session_alive(pid):
                os.kill(p, signal.SIGKILL)
    return subprocess.CompletedProcess(sup.args, sup.returncode, out, err), pids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_between_start_and_supervision_stops_the_child(tmp_path, sig):
    r, pids = _signal_in_the_window(tmp_path, sig, "run")
    left = {pid: _session_alive(pid) for pid in pids}
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [sig.name, "130"]
    assert left == {pids[0]: []}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_nodes_start_stops_those_started_and_starts_no_more(tmp_path, sig):
    r, pids = _signal_in_the_window(tmp_path, sig, "nodes")
    left = {pid: _session_alive(pid) for pid in pids}
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["130"]
    assert left == {pids[0]: []}  # one node started, stopped; the second never started


def test_a_sigterm_while_horovodrun_starts_is_recorded_as_interrupted(tmp_path):
    results = tmp_path / "results"
    r, pids = _signal_in_the_window(tmp_path, signal.SIGTERM, str(results))
    left = {pid: _session_alive(pid) for pid in pids}
    assert r.returncode == 130, r.stderr
    assert left == {pids[0]: []}
    (summary,) = list(results.rglob("summary.json"))
    assert json.loads(summary.read_text())["status"] == "interrupted"


def test_every_launcher_starts_its_children_under_the_signal_handling():
    """procs.start + procs.supervise leaves the window open; product code uses run/run_all."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    offenders = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("tests", ".venv", ".git", "build") and not d.startswith(".")]
        for name in files:
            if name.endswith(".py") and name != "procs.py":
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if "procs.start(" in text or "procs.supervise(" in text or "start_new_session" in text:
                    offenders.append(os.path.relpath(path, root))
    assert offenders == []
