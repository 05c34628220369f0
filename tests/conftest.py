"""Shared fixtures: the real CIFAR-10 subset, and how to run the CLI for real."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import leftovers
import pytest
from leftovers import CALL_TAG, TAG, kill_tagged, processes_with, tagged

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Under CI=true a skipped test is a failed test, except these (test id without parameters ->
# why CI may skip it). Anything else that cannot run in CI is a missing dependency of the
# scripts that set CI up (.ci/run, the Makefile, scripts/), never something to skip quietly.
CI_ALLOWED_SKIPS = {
    "tests/test_device_check.py::test_nccl_on_a_machine_without_enough_gpus_is_a_user_error_before_any_process_group": (
        "checks the error on a machine with fewer than two GPUs; one with two or more has nothing to check"
    ),
    "tests/test_device_check.py::test_nccl_for_workers_sharing_a_device_is_one_line_before_any_worker_or_folder": (
        "checks the error on a machine with fewer than two GPUs; one with two or more has nothing to check"
    ),
}


def _skip_to_failure(report) -> None:
    """Turn a skip into a failure in CI unless the test is on CI_ALLOWED_SKIPS."""
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    if report.nodeid.split("[", 1)[0] in CI_ALLOWED_SKIPS:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI=true: {reason}\n(CI must provide what this test needs; a test that may "
        "be skipped in CI goes on CI_ALLOWED_SKIPS in tests/conftest.py with its reason)"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_to_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_to_failure(outcome.get_result())


def require_horovod() -> None:
    """Skip the calling test without Horovod; in CI, where it must be installed, fail it."""
    try:
        import horovod.torch  # noqa: F401
    except Exception:
        if IN_CI:
            pytest.fail("Horovod is not installed (CI must install it: scripts/install_horovod.sh)")
        pytest.skip("Horovod not installed (scripts/install_horovod.sh)")


NOBODY = 65534


def call_unprivileged(fn, *args) -> dict:
    """fn(*args) in a forked child that runs as an ordinary user (uid/gid 65534) when this
    process is root, so that a test of what a non-root user meets also runs as root.

    The child is forked, not executed anew: the interpreter may live where that user cannot
    read. Returns {"value": ...} or {"error": exception type, "message": ...}; everything fn
    needs must be imported before the call.
    """
    if os.geteuid() != 0:
        try:
            return {"value": fn(*args)}
        except Exception as e:
            return {"error": type(e).__name__, "message": str(e)}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                out = {"value": fn(*args)}
            except Exception as e:
                out = {"error": type(e).__name__, "message": str(e)}
            os.write(w, json.dumps(out, default=str).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged child failed"
    return json.loads(data)


# The synthetic data set, small, on disk (CIFAR-10's layout, marked synthetic): 1,100 training
# and 200 test images (a size no tested batch divides: an epoch ends inside a step's worth). For runs whose test is not about the data: an evaluation here is a pass
# over 200 images, not the 1,000 of --synthetic's test split (~0.4 instead of ~2.2 CPU-s on one
# thread), and a run reads it as it would any --data-dir.
SMALL_TRAIN, SMALL_TEST = 1100, 200


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory):
    from ttabench.reference_impls import cifar10

    path = tmp_path_factory.mktemp("small-synthetic") / "cifar-10-batches-py"
    cifar10.write(cifar10.synthetic(train_size=SMALL_TRAIN, test_size=SMALL_TEST), str(path))
    with _read_only(path.parent):  # runs only read their --data-dir
        yield str(path)


@pytest.fixture(scope="session")
def subset_dir() -> str:
    """The real CIFAR-10 subset (../shared/data/cifar10-subset), via $TTABENCH_DATA_DIR.

    Missing data is a failure in CI and a skip elsewhere.
    """
    path = os.environ.get("TTABENCH_DATA_DIR", "")
    if path and os.path.isfile(os.path.join(path, "data_batch_1")):
        return path
    msg = f"CIFAR-10 subset not found (TTABENCH_DATA_DIR={path!r})"
    if IN_CI:
        pytest.fail(msg + " -- CI must provide it")
    pytest.skip(msg)


# Every process the tests start carries TAG=<this session's id> in its environment (inherited by
# workers, horovodrun, Chromium, also in sessions of their own), so that what a test leaves
# behind can be found and killed. run_command adds CALL_TAG to kill one command's whole tree.
# Under pytest-xdist (`make test` runs two workers) each worker process has a tag of its own.
SESSION = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
os.environ[TAG] = SESSION
# One id for the whole test run, the xdist workers included (they inherit it from the controller,
# which imports this file before it starts them).
RUN = os.environ.setdefault("TTABENCH_TEST_RUN", SESSION)
# shared_tmp's folders: named after the run, so that what the run made there is its own.
SHARED_TMP_PREFIX = os.path.join(tempfile.gettempdir(), f"ttabench-test-{RUN}-")


def ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn for a child that a test sends SIGINT: Ctrl-C's default action
    (KeyboardInterrupt), as for a job started in a terminal's foreground. A suite run as a
    background job (`make coverage &`) ignores SIGINT, every child inherits that, and the product
    rightly leaves an inherited ignore alone."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def process_tree(env: dict | None = None):
    """An environment (this one plus `env`) with a fresh tag: whatever is started with it, and
    everything that starts in turn, is killed when the block ends, however it ends."""
    call = uuid.uuid4().hex
    full_env = {**os.environ, **(env or {}), CALL_TAG: call}
    try:
        yield full_env
    finally:
        kill_tagged(CALL_TAG, call)


def run_command(
    argv: list[str], *, timeout: float = 600, env: dict | None = None, cwd=None
) -> subprocess.CompletedProcess:
    """Run `argv` and capture its output. On a timeout, an assertion or any other exception here
    (Ctrl-C too), the command's whole tree is killed (workers in sessions of their own
    included: they carry this call's tag), then the exception goes on."""
    call = uuid.uuid4().hex
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env[CALL_TAG] = call
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=cwd
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_tagged(CALL_TAG, call)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_cli(
    *args: str, timeout: float = 600, env: dict | None = None, cwd=None, check: bool = False
) -> subprocess.CompletedProcess:
    """Run `python -m ttabench ARGS` in a real subprocess (run_command) and capture its output."""
    proc = run_command([sys.executable, "-m", "ttabench", *args], timeout=timeout, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"ttabench {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def shared_tmp():
    """A fresh folder under the system's temporary folder, removed afterwards. Unlike tmp_path it
    is not under pytest's numbered base folder, which another pytest session of the same user
    prunes (it keeps three): a job that starts later must still find its results folder."""
    path = tempfile.mkdtemp(prefix=os.path.basename(SHARED_TMP_PREFIX))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- runs trained once per session ------------------------------------------------------------
# Several modules check the same kind of finished run; each is trained once and read by all of
# them. Tests only read these folders: a test that changes one works on a copy
# (shutil.copytree into its tmp_path), and the fixture fails the session if a shared folder
# changed under the tests' hands.


def run_dirs(root) -> list[Path]:
    """Every run folder under a results root: <system>/<benchmark>/<division>/<run-id>."""
    return sorted(p for p in Path(root).glob("*/*/*/*") if p.is_dir())


def _fingerprint(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _train(root: Path, *args: str, runs: int = 1, cwd=None, timeout: float = 600):
    """`ttabench run ARGS --batch-size 32 --threads 1` into results root `root`, given as
    --results-dir unless the run is started in `cwd` with the default; (the finished command,
    its run folders), checked to be `runs` successful runs."""
    where = () if cwd else ("--results-dir", str(root))
    proc = run_cli(
        "run", *args, "--batch-size", "32", "--threads", "1", *where, cwd=cwd, timeout=timeout
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    dirs = run_dirs(root)
    assert len(dirs) == runs, dirs
    return proc, dirs


@contextlib.contextmanager
def _read_only(folder: Path):
    """The block's tests may read `folder`, not change it: checked when the session ends."""
    before = _fingerprint(folder)
    yield
    assert _fingerprint(folder) == before, f"a test changed the shared run folder {folder} (copy it first)"


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """One tiny closed run on the synthetic data: 6 steps of 32 on 1 thread, an evaluation every
    96 samples, thresholds 0.1:0.3:0.1, plain progress. (results root, run folder, the
    finished command's CompletedProcess)."""
    root = tmp_path_factory.mktemp("synthetic-run")
    proc, (run_dir,) = _train(
        root, "--synthetic", "--max-steps", "6", "--eval-every", "96samples",
        "--thresholds", "0.1:0.3:0.1", "--progress", "plain", timeout=300,
    )  # fmt: skip
    with _read_only(root):
        yield root, run_dir, proc


@pytest.fixture(scope="session")
def default_options_run(tmp_path_factory):
    """One tiny synthetic run with default options (no --results-dir, no --thresholds), started
    in a folder "checkout" that holds an empty results/ folder, as a checkout of this repository
    does: 2 steps of 32 on 1 thread, an evaluation every 32 samples. (that folder, run folder)."""
    from ttabench.launch.config import DEFAULT_RESULTS_DIR

    cwd = tmp_path_factory.mktemp("default-options") / "checkout"
    (cwd / "results").mkdir(parents=True)
    _, (run_dir,) = _train(
        cwd / DEFAULT_RESULTS_DIR, "--synthetic", "--max-steps", "2", "--eval-every", "32samples",
        "--progress", "none", cwd=cwd,
    )  # fmt: skip
    with _read_only(cwd):
        yield cwd, run_dir


@pytest.fixture(scope="session")
def subset_runs(subset_dir, tmp_path_factory) -> Path:
    """Two real closed runs on the CIFAR-10 subset, seeds 101 and 102: 3 steps of 32 on 1 thread,
    an evaluation every 32 samples, thresholds 0.05:0.15:0.05. The results root."""
    root = tmp_path_factory.mktemp("subset-runs")
    _train(
        root, "--data-dir", subset_dir, "--seeds", "2", "--seed", "101", "--max-steps", "3",
        "--eval-every", "32samples", "--thresholds", "0.05:0.15:0.05", "--progress", "none", runs=2,
    )  # fmt: skip
    with _read_only(root):
        yield root


# Helpers of this interpreter that end with it (multiprocessing's, started by mp.spawn/Manager).
INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _own_helper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except OSError:
        return False
    return ppid == os.getpid() and any(h in cmdline for h in INTERPRETER_HELPERS)


_MADE_BEFORE = pytest.StashKey[dict]()
_WORKERS_LEFT = pytest.StashKey[list]()

# --- pytest-xdist: two workers share the machine -----------------------------------------------
# Whatever makes network namespaces, links or qdiscs, or brings the local Slurm cluster up (one
# cluster, one set of names for the whole machine) runs on one worker, one test after another:
# these modules are one unit of work for xdist's scheduler. Every other test is a unit of its own,
# spread over the workers as they become free. (A scheduler of our own rather than xdist_group
# markers: `--dist loadgroup` renames nodes through an attribute pytest 9 no longer reads, and
# the group silently falls apart.)
SYSTEM_MODULES = (
    "tests/test_slurm.py",
    "tests/test_netlab.py",
    "tests/test_netlab_bench.py",
    "tests/test_multinode.py",
    "tests/faults/test_disk_full.py",
    "tests/test_project_checks.py",  # makes a namespace, a link and a qdisc to see them reported
)
SYSTEM_UNIT = "system tests, one after another"


def work_unit(nodeid: str) -> str:
    """What the xdist scheduler hands out whole: SYSTEM_UNIT for the tests of SYSTEM_MODULES,
    else the test itself."""
    return SYSTEM_UNIT if nodeid.split("::", 1)[0] in SYSTEM_MODULES else nodeid


@pytest.hookimpl(optionalhook=True)  # an xdist hook: the suite also runs without xdist
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling  # here: only with xdist, in its controller

    class SystemTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return SystemTestsTogether(config, log)


def _xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _xdist_controller(config) -> bool:
    """The process that only hands tests out to xdist workers (it runs none itself)."""
    return not _xdist_worker(config) and bool(getattr(config.option, "numprocesses", None))


def pytest_configure(config):
    config.stash[_WORKERS_LEFT] = []


@pytest.hookimpl(optionalhook=True)  # an xdist hook: the suite also runs without xdist
def pytest_testnodedown(node, error):
    """(controller) what a worker found still running when it ended (see pytest_sessionfinish)."""
    output = getattr(node, "workeroutput", {}) or {}
    node.config.stash[_WORKERS_LEFT].extend(output.get("processes_left", []))


def pytest_sessionstart(session):
    if not _xdist_worker(session.config):  # the controller's snapshot is the run's
        session.config.stash[_MADE_BEFORE] = leftovers.snapshot()


def _processes_left() -> list[str]:
    """Processes still tagged with this session, or still children of this process, a few seconds
    after the last test (time to finish exiting), killed; their command lines. (A child inherits
    the tag, yet the scan of environments once missed a leaked child under the full suite: the
    process was alive afterwards, its parent this one.)"""

    def alive() -> list[int]:
        found = set(tagged(TAG, SESSION)) | set(processes_with("ppid", os.getpid()))
        return sorted(pid for pid in found if not _own_helper(pid))

    deadline = time.monotonic() + 5
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = []
    for pid in alive():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                left.append(f"{pid}: " + f.read().replace(b"\0", b" ").decode(errors="replace")[:200])
        except OSError:
            pass
    for pid in alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def pytest_sessionfinish(session, exitstatus):
    """Nothing the tests started or made may outlive them: a process still tagged with this
    session fails the run (and is killed). So does, under CI=true, a network namespace, link,
    qdisc or Slurm job named as the tests name theirs (tests/leftovers.py) that was not there
    when the session started: a job is cancelled, the rest named with how to remove it. Outside
    CI they are only reported: on a shared machine another suite's lab may come and go meanwhile."""
    config = session.config
    if _xdist_worker(config):
        # A worker checks the processes its own tests started (tagged with its SESSION) and hands
        # the list to the controller, which fails the run; the rest is the controller's to check.
        config.workeroutput["processes_left"] = _processes_left()
        return
    problems = []
    # the controller started no test process itself: its workers report theirs
    left = config.stash[_WORKERS_LEFT] if _xdist_controller(config) else _processes_left()
    if left:
        problems.append("processes started by the tests were still running at the end (killed now):")
        problems += [f"  {line}" for line in left]
    # where the session's Slurm jobs run: this folder, tmp_path's and shared_tmp's
    factory = getattr(config, "_tmp_path_factory", None)  # none with -p no:tmpdir
    folders = [os.getcwd(), SHARED_TMP_PREFIX] + ([str(factory.getbasetemp())] if factory else [])
    made = leftovers.made_since(config.stash[_MADE_BEFORE], folders)
    leftovers.cancel_jobs(made.get("Slurm job", []))
    for kind, names in made.items():
        problems.append(f"{kind}s made by the tests remain at the end ({leftovers.HOW_TO_REMOVE[kind]}):")
        problems += [f"  {name}" for name in names]
    if left or (made and IN_CI):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif made:
        problems.append(
            "(not a failure outside CI=true: another suite's lab on this machine would count too)"
        )
    if problems:
        print("\n" + "\n".join(problems), file=sys.stderr)
