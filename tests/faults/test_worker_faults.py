"""Faults during a run, for real: killed workers, exceptions and OOM on one rank, Ctrl-C and
SIGTERM, divergence, resume and restarts. Each case asserts the recorded status and that no
process of the run is left behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import torch
from conftest import require_horovod, run_command

pytestmark = pytest.mark.slow

# One thread per worker (a 2-worker run's default on two cores; a 1-worker run's second thread
# would only wait, spinning, for a core the other test running beside it holds).
OPTIONS = ["--batch-size", "32", "--threads", "1", "--thresholds", "0.1:0.3:0.1", "--progress", "plain"]
_STARTED: list[Run] = []  # every run a test started, ended by _end_runs even when an assert failed


@pytest.fixture
def small(small_data_dir) -> list[str]:
    """Run options on the small synthetic set on disk (1,100 training and 200 test images), for
    the tests here that are not about the data: an evaluation there costs a fifth of one on
    --synthetic's 1,000 test images. (The interrupted-run test counts --synthetic's 5,000
    training images; those that validate a stopped run need the real subset: a synthetic run
    never validates.)"""
    return ["--data-dir", small_data_dir, *OPTIONS]


@pytest.fixture(autouse=True)
def _end_runs():
    yield
    while _STARTED:
        _STARTED.pop().end()


class Run:
    """`ttabench run ...` in its own session, tagged so that every process it starts can be found."""

    def __init__(self, tmp_path, *args):
        self.tag = uuid.uuid4().hex
        self.results = str(tmp_path / "results")
        env = dict(os.environ, TTABENCH_TEST_TAG=self.tag)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ttabench", "run", *args, "--results-dir", self.results],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        _STARTED.append(self)

    def end(self) -> None:
        """Kill what is left of this run: its process group and every process carrying its tag."""
        tagged = self.processes()  # found first, then killed together
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in tagged:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.communicate(timeout=10)

    def processes(self, extra: str | None = None) -> list[int]:
        """PIDs of live processes carrying this run's tag (and `extra` in their environment)."""
        found = []
        for env_path in glob.glob("/proc/[0-9]*/environ"):
            try:
                with open(env_path, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if f"TTABENCH_TEST_TAG={self.tag}".encode() in env and (extra is None or extra.encode() in env):
                pid = int(env_path.split("/")[2])
                if pid != self.proc.pid or extra is None:
                    found.append(pid)
        return found

    def worker(self, rank_var: str) -> int:
        pids = self.processes(rank_var)
        pids = [p for p in pids if b"ttabench.launch.worker" in open(f"/proc/{p}/cmdline", "rb").read()]
        assert len(pids) == 1, pids
        return pids[0]

    def run_dir(self) -> str:
        dirs = glob.glob(os.path.join(self.results, "*", "*", "*", "*"))
        return dirs[0] if len(dirs) == 1 else ""

    def wait_for_evals(self, n: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.run_dir()
            if d and os.path.exists(os.path.join(d, "curve.csv")):
                with open(os.path.join(d, "curve.csv")) as f:
                    if len(f.read().splitlines()) - 1 >= n:
                        return
            if self.proc.poll() is not None:
                raise AssertionError(f"run ended early:\n{self.proc.stdout.read()}")
            time.sleep(0.2)
        raise AssertionError("no evaluation in time")

    def finish(self, timeout: float = 120) -> tuple[int, str, float]:
        t0 = time.monotonic()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()
            raise AssertionError("the run did not stop in time") from None
        return self.proc.returncode, out, time.monotonic() - t0

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.processes() == [], "processes of the run are still alive"

    def summary(self) -> dict:
        with open(os.path.join(self.run_dir(), "summary.json")) as f:
            return json.load(f)


@pytest.mark.parametrize("backend", ["torchrun", pytest.param("horovod", marks=pytest.mark.horovod)])
def test_sigkill_of_one_rank_fails_the_run_promptly(tmp_path, backend, small):
    if backend == "horovod":
        require_horovod()
    run = Run(
        tmp_path,
        *small,
        "--workers",
        "2",
        "--backend",
        backend,
        "--max-steps",
        "2000",
        "--eval-every",
        "8steps",
        "--collective-timeout",
        "600",
    )
    run.wait_for_evals(1)
    os.kill(run.worker("HOROVOD_RANK=1" if backend == "horovod" else "RANK=1"), signal.SIGKILL)
    code, out, waited = run.finish(timeout=600)
    assert code != 0
    # Promptly: the broken connection is noticed (seconds, also on a loaded machine), not the
    # peer's death waited out (the 600 s collective timeout); half of that tells them apart.
    assert waited < 300, f"took {waited:.1f} s to stop after the kill"
    run.assert_nothing_left()
    s = run.summary()
    assert s["status"] == "failed"
    assert s["failed_ranks"][0]["rank"] == 1 and s["failed_ranks"][0]["signal"] == "SIGKILL", s
    assert "rank 1 killed by SIGKILL" in s["error"]
    assert s["last_eval"] is not None and s["last_eval"]["step"] >= 8
    assert "Traceback" not in out.splitlines()[-1]


def test_out_of_memory_on_one_rank_fails_the_run(tmp_path, small):
    sub = tmp_path / "oom.py"
    sub.write_text(
        "import torch, torch.nn.functional as F\n"
        "import torch.distributed as dist\n"
        "from ttabench.divisions.open import Submission\n"
        "from ttabench.reference_impls.resnet import resnet\n"
        "calls = 0\n"
        "def step(model, x, y):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls == 3 and dist.get_rank() == 1:\n"
        "        torch.empty(2 ** 50, dtype=torch.uint8)  # far more memory than the machine has\n"
        "    return F.cross_entropy(model(x), y)\n"
        "oom = Submission(model=lambda: resnet(20), train_step=step)\n"
    )
    run = Run(
        tmp_path,
        *small,
        "--workers",
        "2",
        "--division",
        "open",
        "--model",
        f"{sub}:oom",
        "--max-steps",
        "50",
        "--eval-every",
        "1epoch",
    )
    code, out, _ = run.finish()
    assert code != 0
    run.assert_nothing_left()
    s = run.summary()
    assert s["status"] == "failed"
    assert s["failed_ranks"][0]["rank"] == 1
    assert "memory" in (s["error"] + s.get("worker_error", "")).lower()


@pytest.mark.parametrize("sig,target", [(signal.SIGINT, "group"), (signal.SIGTERM, "launcher")])
def test_ctrl_c_and_sigterm_stop_cleanly_as_interrupted(tmp_path, sig, target, subset_dir):
    real = [*OPTIONS, "--data-dir", subset_dir]
    run = Run(tmp_path, *real, "--workers", "2", "--max-steps", "2000", "--eval-every", "8steps")
    run.wait_for_evals(1)
    if target == "group":  # Ctrl-C in a terminal reaches every process of the foreground group
        os.killpg(run.proc.pid, sig)
    else:  # a scheduler stopping the job
        os.kill(run.proc.pid, sig)
    code, out, waited = run.finish()
    assert code == 130, out[-2000:]
    assert waited < 60
    run.assert_nothing_left()
    s = run.summary()
    assert s["status"] == "interrupted", s
    # Everything written so far is valid: the validator finds no error, only the status warning.
    proc = subprocess.run(
        [sys.executable, "-m", "ttabench", "validate", run.run_dir(), "--no-compliance"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_time_limit_signal_is_recorded_as_time_limit(tmp_path, workers, subset_dir):
    """Slurm's notice before the time limit (--signal=USR1@MARGIN reaches every process of the
    job; the launcher ignores it, the workers act on it): the run stops as on SIGTERM but records stop_reason time_limit, says so in one line
    and exits 124, where a scancel gives `interrupted` and 130."""
    real = [*OPTIONS, "--data-dir", subset_dir]
    run = Run(tmp_path, *real, "--workers", workers, "--max-steps", "2000", "--eval-every", "8steps")
    run.wait_for_evals(1)
    for pid in run.processes():  # as Slurm does: every process of the job, launcher and workers
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    code, out, waited = run.finish()
    assert code == 124, out[-2000:]
    assert waited < 60
    run.assert_nothing_left()
    lines = [ln for ln in out.splitlines() if "time limit" in ln]
    assert lines == [
        "ttabench: stopped because the job's time limit is near (SIGUSR1 from the scheduler); "
        f"recorded as stop_reason time_limit in {run.run_dir()}"
    ], out[-2000:]
    s = run.summary()
    assert (s["status"], s["stop_reason"], s["signal"]) == ("interrupted", "time_limit", "SIGUSR1"), s
    with open(os.path.join(run.run_dir(), "mllog.txt")) as f:
        (stop,) = [json.loads(ln.split(":::MLLOG", 1)[1]) for ln in f if '"run_stop"' in ln]
    assert stop["metadata"]["stop_reason"] == "time_limit", stop
    proc = subprocess.run(
        [sys.executable, "-m", "ttabench", "validate", run.run_dir(), "--no-compliance"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout
    assert "run interrupted (time_limit)" in proc.stdout, proc.stdout


def _model(run_dir: str) -> dict:
    return torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)


@pytest.mark.parametrize(
    "seed_given, workers", [(True, "1"), (False, "1"), (True, "2")], ids=["seed", "no-seed", "2-workers"]
)
def test_resume_continues_to_the_same_weights_and_metrics(tmp_path, seed_given, workers, small):
    # The kill lands after the evaluation at step 8, with 16 steps and two evaluations still to
    # go (a margin against a loaded machine: the test fails if the run ended before the kill);
    # on 2 workers (a global batch of 64: 17 steps an epoch of the 1,100 images) the resumed part
    # crosses an epoch. Each case trains three runs: an evaluation every 8 steps is enough for a
    # curve to compare across the resume.
    steps = 24
    args = [
        *small,
        "--workers",
        workers,
        "--max-steps",
        str(steps),
        "--eval-every",
        "8steps",
        "--checkpoint-every",
        "3steps",
        "--save-model",
    ]
    broken = Run(tmp_path / "broken", *args, *(["--seed", "9"] if seed_given else []))
    broken.wait_for_evals(1)  # step 8: a checkpoint exists from step 6 on
    # The whole run dies at once, as on a lost node: the launcher's group and the workers
    # (torchrun's workers are not in the launcher's process group and outlive it).
    broken.end()
    run_dir = broken.run_dir()
    assert json.load(open(os.path.join(run_dir, "summary.json")))["status"] == "running"
    resumed = run_command(  # its whole tree is killed if it times out
        [sys.executable, "-m", "ttabench", "run", "--resume", run_dir, "--progress", "none"], timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    # Without --seed the run drew one; the resumed part must keep it (data order, augmentation).
    seed = json.load(open(os.path.join(run_dir, "config.json")))["resolved"]["seed"]
    assert seed == 9 or not seed_given
    whole = Run(tmp_path / "whole", *args, "--seed", str(seed))
    code, out, _ = whole.finish(timeout=300)
    assert code == 0, out
    a, b = _model(whole.run_dir()), _model(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    from ttabench.divisions.results import read_curve

    ca, cb = read_curve(whole.run_dir()), read_curve(run_dir)
    assert [(r["step"], r["accuracy"], r["loss"]) for r in ca] == [
        (r["step"], r["accuracy"], r["loss"]) for r in cb
    ]
    times = [r["train_time_s"] for r in cb]
    assert times == sorted(times)  # training time continued, it did not restart
    s = json.load(open(os.path.join(run_dir, "summary.json")))
    assert s["status"] == "success" and len(s["resumes"]) == 1
    assert s["resumes"][0]["step"] % 3 == 0 and 6 <= s["resumes"][0]["step"] < steps
    proc = run_command([sys.executable, "-m", "ttabench", "validate", run_dir, "--json"], timeout=120)
    report = json.loads(proc.stdout)  # a crash leaves no report
    # Synthetic data is never a closed-division result (the compliance checker's dataset rule
    # says so too): those are the only problems; a resumed curve or metric that does not add up
    # would be another.
    assert proc.returncode == 1 and report["statuses"] == {"success": 1}, proc.stderr
    assert [f for f in report["failures"] if "synthetic" not in f and "'dataset'" not in f] == [], report
    assert "mismatch" not in proc.stdout and "curve" not in proc.stdout, proc.stdout


def test_max_restarts_resumes_after_a_killed_worker(tmp_path, small):
    run = Run(
        tmp_path,
        *small,
        "--workers",
        "2",
        "--max-steps",
        "24",
        "--eval-every",
        "8steps",
        "--checkpoint-every",
        "4steps",
        "--max-restarts",
        "1",
        "--seed",
        "3",
    )
    run.wait_for_evals(1)
    os.kill(run.worker("RANK=1"), signal.SIGKILL)
    code, out, _ = run.finish(timeout=300)
    assert code == 0, out[-3000:]
    assert "restart 1 of 1" in out
    run.assert_nothing_left()
    s = run.summary()
    assert s["status"] == "success" and s["steps"] == 24
    assert len(s["resumes"]) == 1 and s["resumes"][0]["step"] >= 8


@pytest.mark.parametrize("workers", ["1", "2"])
def test_divergence_is_recorded_with_its_step(tmp_path, workers, small):
    sub = tmp_path / "hot.py"
    # No batch norm to hold the activations in check, and a learning rate far too large:
    # the logits overflow within a few steps.
    sub.write_text(
        "import torch\n"
        "from torch import nn\n"
        "def mlp():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 256), nn.ReLU(), nn.Linear(256, 10))\n"
        "def hot_sgd(model, run):\n"
        "    return torch.optim.SGD(model.parameters(), lr=1e6), None\n"
    )
    run = Run(
        tmp_path,
        *small,
        "--workers",
        workers,
        "--division",
        "open",
        "--model",
        f"{sub}:mlp",
        "--optimizer",
        f"{sub}:hot_sgd",
        "--max-steps",
        "200",
        "--eval-every",
        "1epoch",
    )
    code, out, _ = run.finish(timeout=300)
    assert code == 3, out[-2000:]
    run.assert_nothing_left()
    s = run.summary()
    assert s["status"] == "diverged" and s["stop_reason"] == "diverged"
    assert isinstance(s["diverged_step"], int) and 1 <= s["diverged_step"] < 200


def test_an_interrupted_run_records_its_numbers_at_the_stop(tmp_path):
    # 5,000 synthetic images, global batch 64: 78 steps an epoch, evaluations every 24 steps.
    # Interrupted after the first evaluation, the run stops between two evaluations and
    # inside the first epoch: its samples are counted at the stop, and so must its time be.
    run = Run(
        tmp_path, "--synthetic", *OPTIONS, "--workers", "2", "--max-epochs", "3",
        "--eval-every", "24steps",
    )  # fmt: skip
    run.wait_for_evals(1)
    os.killpg(run.proc.pid, signal.SIGINT)
    code, out, _ = run.finish()
    assert code == 130, out[-2000:]
    run.assert_nothing_left()
    s = run.summary()
    assert s["status"] == "interrupted", s
    with open(os.path.join(run.run_dir(), "curve.csv")) as f:
        last_eval_step = int(f.read().splitlines()[-1].split(",")[1])
    assert last_eval_step < s["steps"] < 78, (last_eval_step, s["steps"])  # after an evaluation, mid-epoch
    assert s["samples"] == 64 * s["steps"]
    assert s["epochs"] == pytest.approx(s["steps"] / 78)
    assert s["throughput_img_s"] * s["train_time_s"] == pytest.approx(s["samples"], rel=1e-9)
    # one instant: the time breakdown's training time (MAX over the ranks) is the run's
    assert s["time_breakdown"]["max_over_ranks"]["train_s"] == s["train_time_s"]
    # the printed line says the same numbers
    assert f"training time {s['train_time_s']:.2f} s" in out
    assert f"{s['throughput_img_s']:,.0f} img/s" in out
