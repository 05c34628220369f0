"""Starting and supervising processes: one place for every launcher of the suite.

- :func:`start` runs a command in a new session (so its whole process group can
  be signalled) with the environment handled once (:func:`child_env`: this
  Python's bin folder first on PATH, where horovodrun and ttabench live).
- :func:`supervise` waits for a group of them; the first one that fails stops
  the others (SIGTERM to each process group, a grace period, then SIGKILL),
  Ctrl-C and SIGTERM received here are forwarded the same way, and it returns
  every exit code. :func:`run_all` starts a group and supervises it with the
  handling of Ctrl-C and SIGTERM in place before the first child starts (a
  signal while starting stops those already started); :func:`run` is its
  one-process case. Launchers use these two, never start + supervise.
- :func:`horovodrun_command` is horovodrun on this host. PyTorch's elastic
  agent (the code behind torchrun) is launch/elastic.py.

Used by the launcher (Horovod, torchrun), `bench`, `sweep` and `netlab run`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from ttabench import UserError

GRACE_S = 10.0  # between SIGTERM (or a forwarded signal) and SIGKILL
POLL_S = 0.1  # how often supervise() looks at its children


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached this process while it ran workers (`signal`: the name)."""

    def __init__(self, signal_name: str):
        super().__init__(f"interrupted by {signal_name}")
        self.signal = signal_name


def bin_dir() -> str:
    """The folder of this Python: a virtual environment's bin, with horovodrun and ttabench."""
    return os.path.dirname(sys.executable)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus `extra`, with this Python's bin folder first on PATH."""
    env = dict(os.environ)
    env.update(extra or {})
    env["PATH"] = bin_dir() + os.pathsep + env.get("PATH", "")
    return env


def horovodrun_command(workers: int) -> list[str]:
    """horovodrun with the gloo controller on this host, from this environment."""
    horovodrun = shutil.which("horovodrun", path=child_env()["PATH"])
    if horovodrun is None:
        raise UserError("horovodrun not found: install Horovod with scripts/install_horovod.sh")
    return [horovodrun, "-np", str(workers), "-H", f"localhost:{workers}", "--gloo"]


class Child:
    """One started command, the leader of its own process group.

    Output: passed through (default), to a file (`stdout`), line by line to
    `on_line` (stdout and stderr merged), or kept (`capture`: .stdout/.stderr).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdout=None,
        on_line: Callable[[str], None] | None = None,
        capture: bool = False,
    ):
        self.argv = list(argv)
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers: list[threading.Thread] = []
        if on_line is not None:
            stdout, stderr = subprocess.PIPE, subprocess.STDOUT
        elif capture:
            stdout, stderr = subprocess.PIPE, subprocess.PIPE
        else:
            stderr = subprocess.STDOUT if stdout is not None else None
        self.proc = subprocess.Popen(
            self.argv,
            env=child_env(env),
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        if on_line is not None:
            self._read(self.proc.stdout, on_line)
        elif capture:
            self._read(self.proc.stdout, self._out.append)
            self._read(self.proc.stderr, self._err.append)

    def _read(self, pipe, sink: Callable[[str], None]) -> None:
        # A thread per pipe: a child blocked on a full pipe would never exit.
        def pump():
            with pipe:
                for line in pipe:
                    sink(line)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        self._readers.append(t)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def exit_code(self) -> int | None:
        """The child's exit code once it has exited (-N: killed by signal N), None before, without
        reaping it: until `proc.wait()` reaps it (supervise does so last), its pid, which is its
        process group's id, stays taken, so signalling the group can never reach a process that
        the kernel gave the number to since (pid numbers wrap, at 32768 on some machines)."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped by someone else
            return self.proc.poll()
        if info is None:
            return None
        return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status

    def signal_group(self, sig: int) -> None:
        """Signal the child's whole process group (its own children too). Safe while the child
        is not reaped (see exit_code): supervise reaps only after it."""
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already

    def finish_output(self, timeout: float) -> None:
        """Wait for the output of an exited child; a descendant that keeps the pipe open is killed."""
        for t in self._readers:
            t.join(timeout)
        if any(t.is_alive() for t in self._readers):
            self.signal_group(signal.SIGKILL)
            for t in self._readers:
                t.join()


def start(argv: Sequence[str], **kw) -> Child:
    """Start `argv` in a new session; keywords as for :class:`Child`."""
    return Child(argv, **kw)


@dataclasses.dataclass
class Result:
    """How a supervised group of children ended."""

    codes: list[int]  # each child's exit code, in the order given (-N: killed by signal N)
    failed: int | None = None  # index of the first child that failed, if one did
    interrupted: str | None = None  # "SIGINT" or "SIGTERM" received here and forwarded
    timed_out: bool = False

    @property
    def code(self) -> int:
        """0; 130 when interrupted; 124 on timeout; else the first failure's exit code."""
        if self.interrupted:
            return 130
        if self.timed_out:
            return 124
        return self.codes[self.failed] if self.failed is not None else 0


def stop(
    children: Sequence[Child],
    sig: int = signal.SIGTERM,
    grace_s: float = GRACE_S,
    hurry: Callable[[], bool] | None = None,
) -> None:
    """Send `sig` to each running child's group, wait up to `grace_s` (less once `hurry()` is
    true), then SIGKILL every group (stragglers too, even where the leader has exited) and wait
    for every leader to exit. The leaders are not reaped here (see Child.exit_code): `_finish`
    or `reap` does it."""
    for c in children:
        if c.exit_code() is None:
            c.signal_group(sig)
    _wait_exits(children, time.monotonic() + grace_s, hurry)
    for c in children:
        c.signal_group(signal.SIGKILL)
    _wait_exits(children, None)


def _wait_exits(children: Sequence[Child], deadline: float | None, hurry=None) -> None:
    """Until every child has exited (not reaped), `deadline` (time.monotonic) passed or
    `hurry()` (with a deadline) is true."""
    while any(c.exit_code() is None for c in children):
        if deadline is not None and (time.monotonic() >= deadline or (hurry is not None and hurry())):
            return
        time.sleep(POLL_S / 10)


def reap(children: Sequence[Child]) -> list[int]:
    """Reap every (exited) child; their exit codes."""
    return [c.proc.wait() for c in children]


class _Signals:
    """While in effect, Ctrl-C and SIGTERM raise :class:`Interrupted` in the main thread, except
    between :meth:`hold` and :meth:`release`, which hold one back until then: a child being
    started is in the list that gets stopped before the signal is acted on. Put in place before
    the first child starts, so that no signal finds children that nobody would stop. A signal
    ignored when this begins (SIG_IGN, e.g. a background job's SIGINT) stays ignored."""

    def __init__(self):
        self.main = threading.current_thread() is threading.main_thread()
        self.old: dict[int, object] = {}
        self.holding = False
        self.pending: str | None = None

    def __enter__(self) -> _Signals:
        if self.main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self.old[sig] = signal.signal(sig, self._got)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)

    def _got(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.holding:
            self.pending = self.pending or name
        else:
            raise Interrupted(name)

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        """Stop holding signals back; one that came meanwhile is raised now (and is no longer
        pending)."""
        self.holding = False
        if self.pending:
            name, self.pending = self.pending, None
            raise Interrupted(name)


def interruptible() -> _Signals:
    """A context in which Ctrl-C and SIGTERM raise :class:`Interrupted` in the main thread: for a
    command that must clean up (a network lab) also when a signal comes before or between its
    children (run_all's own handling takes over while it runs, and gives it back after)."""
    return _Signals()


def _stop_interrupted(
    children: Sequence[Child], e: BaseException, result: Result, grace_s: float, signals: _Signals
) -> None:
    """Forward the signal and stop every child. A second Ctrl-C/SIGTERM meanwhile is held, not
    raised (it would skip the SIGKILL and the reap): it only cuts the grace period short."""
    result.interrupted = e.signal if isinstance(e, Interrupted) else "SIGINT"
    signals.hold()
    stop(children, signal.Signals[result.interrupted], grace_s, hurry=lambda: signals.pending is not None)


def _wait(children: Sequence[Child], result: Result, deadline, grace_s, on_failure) -> None:
    while True:
        codes = [c.exit_code() for c in children]
        result.failed = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
        if result.failed is not None:
            if on_failure is not None:
                on_failure(result.failed, codes[result.failed])
            stop(children, signal.SIGTERM, grace_s)
            return
        if all(code == 0 for code in codes):
            return
        if deadline is not None and time.monotonic() > deadline:
            result.timed_out = True
            stop(children, signal.SIGTERM, grace_s)
            return
        time.sleep(POLL_S)


def _finish(children: Sequence[Child], result: Result, grace_s: float) -> Result:
    for c in children:
        c.finish_output(grace_s)
    result.codes = reap(children)  # last: each group's signals are behind it
    return result


def supervise(
    children: Sequence[Child],
    *,
    timeout: float | None = None,
    grace_s: float = GRACE_S,
    on_failure: Callable[[int, int], None] | None = None,
) -> Result:
    """Wait for every child. The first non-zero exit stops the others (`on_failure(index, code)`
    is called first); so do a timeout and Ctrl-C/SIGTERM here, which are forwarded as such.

    For children started beforehand: a signal before this call takes its default action.
    Launchers use :func:`run_all` (or :func:`run`), which starts them under the handlers."""
    deadline = None if timeout is None else time.monotonic() + timeout
    result = Result(codes=[])
    with _Signals() as signals:
        try:
            _wait(children, result, deadline, grace_s, on_failure)
        except (KeyboardInterrupt, Interrupted) as e:
            _stop_interrupted(children, e, result, grace_s, signals)
    return _finish(children, result, grace_s)


def run_all(
    commands: Sequence[tuple[Sequence[str], Mapping]],
    *,
    timeout: float | None = None,
    grace_s: float = GRACE_S,
    on_failure: Callable[[int, int], None] | None = None,
) -> tuple[list[Child], Result]:
    """Start each (argv, keywords for :class:`Child`) and supervise them all, as :func:`supervise`.

    Ctrl-C and SIGTERM are handled from before the first child starts: one that arrives while
    children are being started stops those already started (forwarded as such), starts no
    more, and is the result's `interrupted`, exactly as during the wait."""
    children: list[Child] = []
    result = Result(codes=[])
    signals = _Signals()
    signals.hold()  # from the start: nothing can come between a start and its listing
    with signals:
        try:
            for argv, kw in commands:
                signals.hold()
                children.append(start(argv, **kw))
                signals.release()
            deadline = None if timeout is None else time.monotonic() + timeout
            _wait(children, result, deadline, grace_s, on_failure)
        except (KeyboardInterrupt, Interrupted) as e:
            _stop_interrupted(children, e, result, grace_s, signals)
        except BaseException:  # a command that cannot start: the ones started before it go too
            stop(children, signal.SIGTERM, grace_s)
            reap(children)
            raise
    return children, _finish(children, result, grace_s)


def run(argv: Sequence[str], *, timeout: float | None = None, **kw) -> tuple[Child, Result]:
    """Start one command and supervise it (signals handled from before it starts, as
    :func:`run_all`); keywords as for :class:`Child`."""
    children, result = run_all([(argv, kw)], timeout=timeout)
    return children[0], result
