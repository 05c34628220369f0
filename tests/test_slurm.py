"""`ttabench submit --scheduler slurm` on a real Slurm cluster (scripts/slurm_local.sh).

The cluster is one controller and two slurmd, each node a network namespace with
its own host name and address on a bridge. Results go to a folder under /tmp,
which every namespace sees (one file system). Root only; in CI (CI=true) a
cluster that cannot be brought up is a failure, not a skip.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import IN_CI, require_horovod, run_cli

from ttabench.launch.cluster import horovod_slurm, slurm
from ttabench.launch.net import iface
from ttabench.launch.record.jobenv import expand_hostlist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "slurm_local.sh")
NODES = ("ttanode0", "ttanode1")
NAMESPACES = ("ttaslurm-n0", "ttaslurm-n1")
# Tiny runs: one thread per worker (both "nodes" share this machine's cores), no display.
# --system: the default names the folder after this machine's hardware, which takes seconds to read.
TINY = ("--nodes", "2", "--workers", "1", "--threads", "1", "--progress", "none", "--seed", "5")
TINY += ("--system", "local-test-cluster")


def _local(*args, check=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, check=check)


@pytest.fixture(scope="module")
def cluster():
    """The local cluster for this module: brought up here (and down after), or one already up
    (left as it was)."""
    problem = None
    if os.geteuid() != 0:
        problem = "needs root (network namespaces, Slurm's daemons)"
    elif shutil.which("ip") is None or shutil.which("unshare") is None:
        problem = "needs iproute2 and util-linux"
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    mine = _local("status", check=False).returncode != 0
    if mine:
        up = _local("up", check=False)
        if up.returncode != 0:
            _local("down", check=False)
            pytest.fail(f"scripts/slurm_local.sh up failed:\n{up.stdout}\n{up.stderr}")
    yield
    if mine:
        _local("down")
        leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(ns in leftovers for ns in NAMESPACES), leftovers


def _run_dir(stdout: str) -> str:
    m = re.search(r"submitted Slurm job (\d+); results: (\S+)", stdout)
    assert m, stdout
    return m.group(2)


def _json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _logs(results: str) -> tuple[str, str]:
    """--log-dir beside the results folder (by default the job logs into the submitting folder)."""
    return ("--log-dir", results + "-logs")


def _submit_wait(results, data, *extra, timeout=400):
    return run_cli(
        "submit", *TINY, "--data-dir", data, "--results-dir", results, *_logs(results), "--wait", *extra,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _cancel_jobs_left(shared_tmp):
    """Every job a test submitted below its folder is cancelled afterwards, whatever failed."""
    yield
    ids = []
    for folder, _dirs, files in os.walk(shared_tmp):
        if "submit.json" in files:
            ids.append(str(_json(os.path.join(folder, "submit.json"))["job_id"]))
    if ids and shutil.which("scancel"):
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


def _node_processes() -> dict[str, list[str]]:
    """Every process in each node's namespace, by command line."""
    out = {}
    for ns in NAMESPACES:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        cmds = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmds.append(f.read().replace(b"\0", b" ").decode().strip())
            except OSError:
                pass  # ended meanwhile
        out[ns] = cmds
    return out


# Both backends across nodes: torchrun (one launcher per node, c10d rendezvous) and Horovod
# (one launcher starting every node's workers with srun around Horovod's rendezvous server).
BACKENDS = pytest.mark.parametrize("backend", ["torchrun", "horovod"])


def _backend_args(backend: str) -> tuple[str, ...]:
    if backend == "horovod":
        require_horovod()
    return ("--backend", backend)


@pytest.mark.slow
@pytest.mark.root
@BACKENDS
def test_two_node_job_succeeds_and_validates(cluster, subset_dir, shared_tmp, backend):
    """With the script's own requests: one CPU and 500 MB per node, nodes shared, set-up lines."""
    results = os.path.join(shared_tmp, "results")
    setup = os.path.join(shared_tmp, "env.sh")
    with open(setup, "w") as f:
        f.write('echo "set-up ran on $(hostname)"\nexport TTABENCH_TEST_SETUP=1\n')
    requests = ("--cpus-per-task", "1", "--mem", "500M", "--no-exclusive", "--setup", setup)
    r = _submit_wait(results, subset_dir, "--max-steps", "3", *requests, *_backend_args(backend))
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = _run_dir(r.stdout)
    job_id = re.search(r"submitted Slurm job (\d+)", r.stdout).group(1)
    state = slurm.job_state(job_id)  # what Slurm granted, as asked
    asked = ("NumCPUs", "CPUs/Task", "MinMemoryNode")
    assert [state[k] for k in asked] == ["2", "1", "500M"], state
    assert f"job {job_id}: RUNNING on ttanode[0-1]" in r.stdout
    assert re.search(r"eval 1: epoch [0-9.]+, step 3, accuracy", r.stdout)
    # /tmp is no network file system: one warning line, not an error.
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("ttabench: warning:")], r.stderr
    config = _json(os.path.join(run_dir, "config.json"))
    assert config["scheduler"]["name"] == "slurm"
    assert config["scheduler"]["job_id"] == job_id
    assert config["scheduler"]["nodes"] == list(NODES)
    assert config["resolved"]["nodes"] == 2 and config["resolved"]["world_size"] == 2
    assert config["resolved"]["backend"] == backend
    assert _json(os.path.join(run_dir, "summary.json"))["status"] == "success"
    assert "srun" in open(os.path.join(run_dir, "job.sbatch")).read()
    v = run_cli("validate", run_dir)
    assert v.returncode == 0, v.stdout + v.stderr
    # The log, made at submission outside the run folder, is where `submit` said.
    log = os.path.join(results + "-logs", f"slurm-{job_id}.out")
    assert f"log: {log} " in r.stdout and f"; ttabench runs {run_dir} --watch)" in r.stdout
    lines = open(log).read().splitlines()
    first = f"ttabench: job {job_id} on ttanode0: results in {os.path.abspath(run_dir)}"
    assert lines.index("set-up ran on ttanode0") < lines.index(first), lines
    assert _json(os.path.join(run_dir, "submit.json"))["log"] == log


def _sent_bytes(ns: str, dev: str) -> int:
    out = subprocess.run(["tc", "-n", ns, "-s", "qdisc", "show", "dev", dev], capture_output=True, text=True)
    m = re.search(r"qdisc tbf .*?Sent (\d+) bytes", out.stdout, re.S)
    assert m, out.stdout
    return int(m.group(1))


@pytest.mark.slow
@pytest.mark.root
def test_two_node_job_across_a_100mbit_tbf_link(cluster, subset_dir, shared_tmp):
    _local("shape", "100mbit")
    try:
        before = _sent_bytes(NAMESPACES[1], "ttasl1")
        r = _submit_wait(os.path.join(shared_tmp, "results"), subset_dir, "--max-steps", "3")
        after = _sent_bytes(NAMESPACES[1], "ttasl1")
    finally:
        _local("shape", "none")
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = _run_dir(r.stdout)
    config = _json(os.path.join(run_dir, "config.json"))
    assert config["resolved"]["network_shaping"]["rate"] == "100mbit"
    # Node 1 sent its gradients through the shaped qdisc: ResNet-20 has 0.27 M float32
    # parameters; a 2-worker ring all-reduce sends each worker's whole buffer once per step.
    params = config["model"]["parameters"]
    assert after - before >= 3 * 4 * params
    assert run_cli("validate", run_dir).returncode == 0


def _start_and_wait_for_training(results: str, data: str, backend: str) -> tuple[subprocess.Popen, str, str]:
    """`submit --wait` in the background, returned once the run's clock has started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ttabench", "submit", *TINY, "--data-dir", data, "--results-dir", results]
        + [*_logs(results), "--max-epochs", "1", "--wait", *_backend_args(backend)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job_id = None
    try:
        first = proc.stdout.readline()
        m = re.search(r"submitted Slurm job (\d+); results: (\S+)", first)
        assert m, first + proc.stderr.read()
        job_id, run_dir = m.group(1), m.group(2)
        deadline = time.monotonic() + 300
        mllog = os.path.join(run_dir, "mllog.txt")
        while not (os.path.exists(mllog) and '"run_start"' in open(mllog).read()):
            assert time.monotonic() < deadline, "the run did not start within 300 s"
            assert proc.poll() is None, proc.stdout.read() + proc.stderr.read()
            time.sleep(0.5)
    except BaseException:
        _cancel(proc, job_id)  # neither the job nor `submit --wait` outlives a failed start
        raise
    return proc, job_id, run_dir


def _cancel(proc: subprocess.Popen, job_id: str | None) -> None:
    """The job cancelled (when it has an id) and `submit --wait` killed, if still there."""
    if job_id is not None:
        subprocess.run(["scancel", job_id], check=False, capture_output=True)
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.mark.slow
@pytest.mark.root
@BACKENDS
def test_scancel_mid_run_is_recorded_as_interrupted(cluster, subset_dir, shared_tmp, backend):
    proc, job_id, run_dir = _start_and_wait_for_training(
        os.path.join(shared_tmp, "results"), subset_dir, backend
    )
    try:
        subprocess.run(["scancel", job_id], check=True)
        out, err = proc.communicate(timeout=120)
    except BaseException:
        _cancel(proc, job_id)
        raise
    assert proc.returncode == 130, out + err
    _assert_interrupted_and_valid(run_dir)


def _assert_interrupted_and_valid(run_dir: str) -> None:
    """Recorded as interrupted by SIGTERM, with what it measured, all of it valid."""
    summary = _json(os.path.join(run_dir, "summary.json"))
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM", summary
    assert summary["steps"] > 0
    v = run_cli("validate", run_dir)  # everything written so far is valid
    assert v.returncode == 0, v.stdout + v.stderr


@pytest.mark.slow
@pytest.mark.root
@BACKENDS
def test_the_time_limit_is_recorded_as_time_limit(cluster, subset_dir, shared_tmp, backend):
    """--time 2: the script asks Slurm for SIGUSR1 24 s before the limit (--signal=USR1@24); the
    run stops at the next step, keeps what it measured and records stop_reason time_limit (a
    scancel records `interrupted`); the job exits 124, which Slurm shows as FAILED 124:0."""
    results = os.path.join(shared_tmp, "results")
    # The job trains until Slurm's signal, 90-120 s: over an emulated 10 Mbit/s link each step
    # waits about a second for its all-reduce instead of keeping both cores busy all that time.
    r = _submit_wait(
        results, subset_dir, "--time", "2", "--max-epochs", "50", "--eval-every", "10steps",
        "--bandwidth", "10mbit", *_backend_args(backend), timeout=400,
    )  # fmt: skip
    assert r.returncode == 124, r.stdout + r.stderr
    run_dir = _run_dir(r.stdout)
    job_id = re.search(r"submitted Slurm job (\d+)", r.stdout).group(1)
    assert "#SBATCH --signal=USR1@24" in open(os.path.join(run_dir, "job.sbatch")).read()
    assert re.search(r"eval 1: epoch", r.stdout), r.stdout  # it measured before the limit
    assert f"run interrupted (time_limit): {run_dir}" in r.stdout
    summary = _json(os.path.join(run_dir, "summary.json"))
    assert (summary["status"], summary["stop_reason"], summary["signal"]) == (
        "interrupted", "time_limit", "SIGUSR1",
    ), summary  # fmt: skip
    assert summary["steps"] > 0
    log = open(os.path.join(results + "-logs", f"slurm-{job_id}.out")).read()
    assert "ttabench: stopped because the job's time limit is near (SIGUSR1 from the scheduler)" in log
    state = slurm.job_state(job_id)
    assert (state["JobState"], state["ExitCode"]) == ("FAILED", "124:0"), state
    v = run_cli("validate", run_dir)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "run interrupted (time_limit)" in v.stdout


@pytest.mark.slow
@pytest.mark.root
def test_requeue_is_refused_and_the_run_stays_one_valid_run(cluster, subset_dir, shared_tmp):
    """`scontrol requeue` (what a node failure or a preemption asks for): the script says
    --no-requeue, so Slurm refuses it and the run is not started again over its own folder.
    While the job runs, `validate` of the tree reports it as running and does not fail."""
    results = os.path.join(shared_tmp, "results")
    proc, job_id, run_dir = _start_and_wait_for_training(results, subset_dir, "torchrun")
    try:
        v = run_cli("validate", results)
        assert v.returncode == 0, v.stdout + v.stderr
        assert f"{run_dir}: warning: its job is still running: checked once it ends" in v.stdout
        rq = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
        assert rq.returncode != 0 and "disabled" in rq.stderr, rq.stdout + rq.stderr
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    with open(os.path.join(run_dir, "mllog.txt")) as f:
        assert sum('"run_start"' in ln for ln in f) == 1
    assert not glob.glob(os.path.join(run_dir, "node-*.outcome.json"))
    log = open(os.path.join(results + "-logs", f"slurm-{job_id}.out")).read()
    assert log.count(f"ttabench: job {job_id} on ") == 1  # one attempt
    v = run_cli("validate", results)
    assert v.returncode == 0, v.stdout + v.stderr
    runs = json.loads(run_cli("runs", results, "--json").stdout)["runs"]
    assert [(e["status"], e["job_id"]) for e in runs] == [("success", job_id)]


def _submit_pending(results: str, data: str) -> tuple[str, str]:
    """A job held back an hour (--begin): (its run folder, its job id)."""
    r = run_cli(
        "submit", *TINY, "--data-dir", data, "--results-dir", results, *_logs(results),
        "--max-steps", "3", "--sbatch-arg", "--begin now+1hour",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return _run_dir(r.stdout), re.search(r"submitted Slurm job (\d+)", r.stdout).group(1)


def _wait_for_state(job_id: str, states: tuple[str, ...], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (slurm.job_state(job_id) or {}).get("JobState") not in states:
        assert time.monotonic() < deadline, slurm.job_state(job_id)
        time.sleep(0.5)
    return slurm.job_state(job_id)


@pytest.mark.slow
@pytest.mark.root
def test_a_job_that_never_trained_is_listed_and_reported(cluster, subset_dir, shared_tmp):
    """A pending job and, once cancelled, a job cancelled before training: `runs` lists it with
    its job id and status, `runs --watch` waits for it, `validate` reports it (a warning)
    instead of counting nothing."""
    results = os.path.join(shared_tmp, "results")
    job_dir, job_id = _submit_pending(results, subset_dir)
    runs = run_cli("runs", results, "--json")
    assert runs.returncode == 0, runs.stderr
    (entry,) = json.loads(runs.stdout)["runs"]
    assert (entry["path"], entry["status"], entry["job_id"]) == (job_dir, "pending", job_id), entry
    table = run_cli("runs", results).stdout
    assert "pending" in table and job_id in table, table
    w = run_cli("runs", results, "--watch", "--interval", "0.5", "--max-wait", "1")
    assert w.returncode == 1, w.stdout + w.stderr
    assert "waiting for 1: 1 pending (every 0.5 s" in w.stdout
    assert w.stdout.rstrip().endswith("stopped watching after 1 s: 1 still unfinished")
    v = run_cli("validate", results)
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"{job_dir}: warning: job {job_id} is pending: no run recorded yet" in v.stdout
    assert "(1 pending)" in v.stdout
    subprocess.run(["scancel", job_id], check=True)
    _wait_for_state(job_id, ("CANCELLED",), 30)
    (entry,) = json.loads(run_cli("runs", results, "--json").stdout)["runs"]
    assert entry["status"] == "cancelled before training", entry
    w = run_cli("runs", results, "--watch")  # nothing left to wait for: at once
    assert w.returncode == 0 and "every listed run has finished (1)" in w.stdout, w.stdout + w.stderr
    v = run_cli("validate", results)
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"job {job_id}: no run recorded (ended CANCELLED before training)" in v.stdout
    assert "(1 not started)" in v.stdout
    # A run folder whose job ended with no final status recorded (a lost node, a killed launcher):
    # a copy of a committed run, its summary still `running`, naming this ended job.
    src = sorted(Path(REPO, "results").glob("*/*/*/*/summary.json"))[0].parent
    lost = Path(shared_tmp, "lost", *src.parts[-4:])
    shutil.copytree(src, lost)
    (lost / "summary.json").write_text(json.dumps(dict(_json(lost / "summary.json"), status="running")))
    (lost / "submit.json").write_text(json.dumps({"scheduler": "slurm", "job_id": job_id}))
    (entry,) = json.loads(run_cli("runs", str(lost.parents[3]), "--json").stdout)["runs"]
    assert (entry["status"], entry["job_state"]) == ("ended while running (CANCELLED)", "CANCELLED"), entry


@pytest.mark.slow
@pytest.mark.root
def test_a_first_node_without_the_run_folder_says_so_in_the_log(cluster, subset_dir, shared_tmp):
    """The run folder gone before the job starts (what a node that does not mount it sees): the
    job stops with one line naming the node and the folder, in a log that exists (it is not in
    the run folder)."""
    results = os.path.join(shared_tmp, "results")
    run_dir, job_id = _submit_pending(results, subset_dir)
    shutil.rmtree(run_dir)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    state = _wait_for_state(job_id, slurm.ENDED, 120)
    assert (state["JobState"], state["ExitCode"]) == ("FAILED", "2:0"), state
    log = open(os.path.join(results + "-logs", f"slurm-{job_id}.out")).read()
    assert (
        f"ttabench: error: {run_dir} is not visible on ttanode0: "
        "the results folder must be on a file system every node shares"
    ) in log.splitlines(), log


@pytest.mark.slow
@pytest.mark.root
def test_a_dry_run_script_submitted_by_hand_makes_its_run(cluster, subset_dir, shared_tmp):
    results = os.path.join(shared_tmp, "results")
    r = run_cli(
        "submit", *TINY, "--data-dir", subset_dir, "--results-dir", results, *_logs(results),
        "--max-steps", "3", "--dry-run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(results)
    os.makedirs(results + "-logs")  # as `submit` does; here the user does
    t = subprocess.run(
        ["sbatch", "--parsable", "--wait"], input=r.stdout, capture_output=True, text=True, timeout=400
    )
    job_id = t.stdout.strip().split(";")[0]
    log = os.path.join(results + "-logs", f"slurm-{job_id}.out")
    assert t.returncode == 0, t.stderr + (open(log).read() if os.path.exists(log) else "")
    (parent,) = re.findall(r'^run_dir=(\S+)/"slurm-\$SLURM_JOB_ID"$', r.stdout, re.M)
    run_dir = os.path.join(parent, f"slurm-{job_id}")
    assert run_dir.startswith(results + os.sep)
    assert _json(os.path.join(run_dir, "summary.json"))["status"] == "success"
    assert run_cli("validate", run_dir).returncode == 0


@pytest.mark.slow
@pytest.mark.root
@BACKENDS
def test_a_killed_worker_fails_the_job_within_seconds(cluster, subset_dir, shared_tmp, backend):
    proc, job_id, run_dir = _start_and_wait_for_training(
        os.path.join(shared_tmp, "results"), subset_dir, backend
    )
    try:
        workers = [
            int(pid)
            for pid in subprocess.run(
                ["ip", "netns", "pids", NAMESPACES[1]], capture_output=True, text=True
            ).stdout.split()
            if b"ttabench.launch.worker" in open(f"/proc/{pid}/cmdline", "rb").read()
        ]
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=120)
    except BaseException:
        _cancel(proc, job_id)
        raise
    # Far below the 120 s collective timeout: the failure is noticed, not waited out.
    assert time.monotonic() - killed < 60, out + err
    assert proc.returncode == 1, out + err
    summary = _json(os.path.join(run_dir, "summary.json"))
    assert summary["status"] == "failed"
    assert summary["error"].startswith("rank 1 killed by SIGKILL"), summary["error"]
    # Nothing of the run is left on either node: no launcher or worker at once, and Slurm's own
    # step daemon (slurmstepd) ends by itself moments after the job.
    assert not [c for cmds in _leftovers().values() for c in cmds if not c.startswith("slurmstepd")]
    deadline = time.monotonic() + 30
    while any(_leftovers().values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_leftovers().values()), _leftovers()


def _leftovers() -> dict[str, list[str]]:
    """Every process in each node's namespace but the node's slurmd."""
    return {ns: [c for c in cmds if not c.startswith("slurmd ")] for ns, cmds in _node_processes().items()}


@pytest.mark.slow
@pytest.mark.root
def test_dry_run_script_is_accepted_by_sbatch_test_only(cluster, subset_dir, shared_tmp):
    results = Path(shared_tmp) / "results"
    r = run_cli(
        "submit", *TINY, "--data-dir", subset_dir, "--results-dir", str(results), "--max-steps", "3",
        "--partition", "debug", "--time", "5", "--sbatch-arg=--comment=dry", "--dry-run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "#SBATCH --nodes=2" in r.stdout and "#SBATCH --comment=dry" in r.stdout
    assert not results.exists()  # nothing made, nothing submitted
    t = subprocess.run(["sbatch", "--test-only"], input=r.stdout, capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    assert re.search(r"Job \d+ to start at .* on nodes ttanode\[0-1\] in partition debug", t.stderr)


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize(
    "extra, env, message",
    [
        (
            ("--partition", "nosuch"),
            {},
            "--partition nosuch: no such partition (this cluster has: debug)",
        ),
        (("--nodes", "8"), {}, "--nodes 8: the default partition has 2 nodes; the job would never start"),
        (
            ("--nodes", "3", "--partition", "debug"),
            {},
            "--nodes 3: partition debug has 2 nodes; the job would never start",
        ),
        (("--gpus-per-node", "1"), {}, "Slurm rejected the job: Invalid generic resource"),
        ((), {"PATH": os.path.dirname(sys.executable)}, "`sbatch` is not on PATH"),
        (("--nodes", "0"), {}, "--nodes must be >= 1, got 0"),
        (("--time", "1h"), {}, "--time must be M, M:S, H:M:S, D-H, D-H:M or D-H:M:S"),
        (("--scheduler", "pbs"), {}, "--scheduler must be slurm or torchx:SCHEDULER"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(cluster, subset_dir, shared_tmp, extra, env, message):
    results = Path(shared_tmp) / "results"
    r = run_cli(
        "submit", *TINY, "--data-dir", subset_dir, "--results-dir", str(results), *_logs(str(results)),
        *extra, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("ttabench: warning:")]
    assert errors == [f"ttabench: error: {errors[0].split('error: ', 1)[1]}"], r.stderr
    assert message in errors[0]
    assert "Traceback" not in r.stderr
    assert not results.exists() and not os.path.exists(str(results) + "-logs")


def test_unresolvable_rendezvous_host_is_one_clear_line(subset_dir, shared_tmp):
    r = run_cli(
        "run", "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "no-such-host.invalid:29400",
        "--data-dir", subset_dir, "--results-dir", shared_tmp, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert (
        r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[0]]
        and "rendezvous host 'no-such-host.invalid' does not resolve" in r.stderr
    )


def test_local_addr_of_another_machine_is_one_clear_line(subset_dir, shared_tmp):
    r = run_cli(
        "run", "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "127.0.0.1:29400",
        "--local-addr", "203.0.113.77", "--data-dir", subset_dir, "--results-dir", shared_tmp, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--local-addr 203.0.113.77 is not an address of this node" in r.stderr


def test_slurm_time_formats_and_the_signal_margin():
    t = slurm.time_limit_s
    assert [t(x) for x in ("30", "1:30", "1:00:00", "2-3", "2-3:04", "2-3:04:05")] == [
        1800, 90, 3600, 183600, 183840, 183845,
    ]  # fmt: skip
    assert [slurm.signal_margin_s(s) for s in (30, 90, 120, 3600)] == [10, 18, 24, 60]


def test_hostlist_expansion():
    assert expand_hostlist("ttanode[0-1]") == ["ttanode0", "ttanode1"]
    assert expand_hostlist("n[08-10,12],gpu7") == ["n08", "n09", "n10", "n12", "gpu7"]
    assert expand_hostlist("a1,b2") == ["a1", "b2"]


@pytest.mark.slow  # it brings the cluster up
@pytest.mark.root
def test_no_route_to_the_rendezvous_host_is_one_clear_line(cluster, subset_dir, shared_tmp):
    # Inside a node's namespace only the cluster's /24 is reachable (nothing is sent: UDP connect).
    r = subprocess.run(
        ["ip", "netns", "exec", NAMESPACES[1], sys.executable, "-m", "ttabench", "run", "--nnodes", "2",
         "--node-rank", "1", "--rdzv-endpoint", "192.0.2.99:29400", "--data-dir", subset_dir,
         "--results-dir", shared_tmp],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "ttabench: error: no route from this node to 192.0.2.99 (Network is unreachable)"
    ]


def test_a_worker_pins_gloo_to_the_interface_on_the_route_to_master_addr():
    env = {"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1"}
    iface.for_worker(env)
    assert env[iface.ENV] == "lo"
    given = dict(env, GLOO_SOCKET_IFNAME="eth9")
    iface.for_worker(given)  # what the user set stays
    assert given[iface.ENV] == "eth9"
    one_node = {"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    iface.for_worker(one_node)
    assert iface.ENV not in one_node


# --- Horovod across nodes: the parts that need no cluster --------------------------------


@pytest.mark.slow  # needs Horovod, which make test-fast does not install
@pytest.mark.horovod
def test_horovod_plan_is_horovodruns():
    """Ranks node by node, as horovodrun -H n0:2,n1:2 assigns them (Horovod's own function)."""
    require_horovod()  # a failure in CI, where Horovod is installed
    from horovod.runner.common.util import hosts

    ours = horovod_slurm.plan(["n0", "n1"], 2)
    theirs = hosts.get_host_assignments(hosts.parse_hosts("n0:2,n1:2"), 4)
    keys = ("hostname", "rank", "local_rank", "cross_rank", "size", "local_size", "cross_size")
    assert [tuple(getattr(s, k) for k in keys) for s in ours] == [
        tuple(getattr(s, k) for k in keys) for s in theirs
    ]
    env = horovod_slurm.slot_env(ours[3], "10.0.0.1", 1234, "eth0")
    assert (
        env["HOROVOD_RANK"] == "3" and env["HOROVOD_LOCAL_RANK"] == "1" and env["HOROVOD_CROSS_RANK"] == "1"
    )
    assert env["HOROVOD_GLOO_RENDEZVOUS_ADDR"] == "10.0.0.1" and env["HOROVOD_GLOO_IFACE"] == "eth0"
    assert env["HOROVOD_CONTROLLER"] == env["HOROVOD_CPU_OPERATIONS"] == "gloo"


def test_srun_lines_name_the_ranks_and_how_they_ended():
    f = horovod_slurm.srun_ends
    assert f("srun: error: n1: task 1: Exited with exit code 3") == [
        {"rank": 1, "exitcode": 3, "signal": None, "message": "on n1"}
    ]
    assert [(r["rank"], r["signal"]) for r in f("srun: error: n0: tasks 0-1,4: Killed")] == [
        (0, "SIGKILL"),
        (1, "SIGKILL"),
        (4, "SIGKILL"),
    ]
    assert f("srun: error: n0: task 2: Segmentation fault")[0]["signal"] == "SIGSEGV"
    assert f("srun: error: n0: task 0: launch failed") == []
    assert f("srun: launch/slurm: _step_signal: Terminating StepId=3.0") == []


def test_horovod_needs_host_names_that_do_not_resolve_to_loopback(capsys):
    with pytest.raises(SystemExit) as e:
        horovod_slurm.check_host_name("localhost")
    assert e.value.code == 2
    assert "resolves to 127.0.0.1" in capsys.readouterr().err
    horovod_slurm.check_host_name("10.0.0.7")  # an address resolves to itself


def test_multi_node_horovod_outside_slurm_is_one_line_and_makes_nothing(subset_dir, shared_tmp):
    results = Path(shared_tmp) / "results"
    env = {"SLURM_JOB_ID": ""}  # not inside an allocation, even when the tests run in one
    r = run_cli(
        "run", "--backend", "horovod", "--nnodes", "2", "--rdzv-endpoint", "127.0.0.1:29400",
        "--data-dir", subset_dir, "--results-dir", str(results), "--max-steps", "1", env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(
        "ttabench: error: --backend horovod on several nodes runs inside a Slurm allocation"
    )
    assert not results.exists()


def test_horovod_sbatch_script_starts_one_launcher(subset_dir, shared_tmp):
    r = run_cli(
        "submit", *TINY, "--backend", "horovod", "--data-dir", subset_dir,
        "--results-dir", os.path.join(shared_tmp, "results"), "--max-steps", "3", "--dry-run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "\nsrun " not in r.stdout  # no launcher per node: the one launcher runs srun itself
    (start,) = [ln for ln in r.stdout.splitlines() if ln.startswith("exec ")]
    assert "--backend horovod" in start and "--nnodes 2" in start and '--rdzv-endpoint "$rdzv"' in start


def test_a_submitted_job_without_a_run_is_listed_where_slurm_cannot_be_asked(tmp_path):
    """A folder holding only job.sbatch and submit.json, read where squeue is not on PATH:
    `runs` lists it as submitted with its job id, `validate` reports it without failing."""
    job_dir = tmp_path / "results" / "sys" / "resnet20" / "closed" / "20260101-000000-abcdef"
    job_dir.mkdir(parents=True)
    (job_dir / "job.sbatch").write_text("#!/bin/bash\n")
    (job_dir / "submit.json").write_text(
        json.dumps({"scheduler": "slurm", "job_id": "41", "nodes": 2, "log": "/logs/slurm-41.out"})
    )
    env = {"PATH": os.path.dirname(sys.executable)}
    runs = run_cli("runs", str(tmp_path / "results"), "--json", env=env)
    assert runs.returncode == 0, runs.stderr
    (entry,) = json.loads(runs.stdout)["runs"]
    assert (entry["status"], entry["job_id"]) == ("submitted", "41"), entry
    v = run_cli("validate", str(tmp_path / "results"), env=env)
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.splitlines()[0] == (
        f"{job_dir}: warning: job 41: no run recorded (pending, cancelled before it started, "
        "or failed before training); its log: /logs/slurm-41.out"
    )
    assert "(1 not started)" in v.stdout


@pytest.mark.slow
@pytest.mark.root
def test_a_folder_with_spaces_quotes_and_hashes_reaches_slurm_as_one_path(cluster, shared_tmp):
    """The header `submit` writes for such a folder, under a one-line body, run by the real
    sbatch: the job runs in that folder, logs where the header says, and gets its comment whole."""
    where = Path(shared_tmp) / 'a b #1 "q\'s"'
    (where / "my logs").mkdir(parents=True)
    r = run_cli(
        "submit", *TINY, "--nodes", "1", "--synthetic", "--system", "local-test-cluster", "--results-dir",
        "results", "--log-dir", "my logs", "--sbatch-arg", "--comment two words #x", "--dry-run", cwd=where,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    header = [ln for ln in r.stdout.splitlines() if ln.startswith("#SBATCH ")]
    body = 'pwd; scontrol show job "$SLURM_JOB_ID" | grep -o "Comment=.*"'
    s = subprocess.run(
        ["sbatch", "--parsable"], input="\n".join(["#!/bin/bash", *header, body, ""]),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert s.returncode == 0, s.stderr
    job_id = s.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            time.sleep(0.5)
    finally:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
    log = (where / "my logs" / f"slurm-{job_id}.out").read_text()
    assert [ln.rstrip() for ln in log.splitlines()[:2]] == [str(where), "Comment=two words #x"], log
