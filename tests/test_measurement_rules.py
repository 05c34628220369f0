"""Each measurement rule of the design card, pinned by a test that fails when the rule breaks.

- The learning rate of every step is the recipe's lr_at(step / steps_per_epoch), on 1 and on
  2 workers (a schedule applied per epoch, or one step late, fails).
- Evaluation is excluded from training time and included in total time: a deliberately slow
  evaluation leaves training time where it was and shows in total time.
- The recorded time is the MAX over ranks: a rank made slower outside the collectives moves it.
- The clock starts at a barrier at run_start: a rank late to it (slow set-up) adds nothing.
- `--precision bf16` given to the CLI really trains in bf16: the weights equal an in-process
  bf16 run to the last bit and differ from fp32.

The in-process parts run the worker's own set-up (`build`) and timed loop (`loop.run`); the
2-worker parts run them on a real gloo group.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import time

import pytest
import torch
from gloo_group import on_gloo

from ttabench.launch import system
from ttabench.launch.config import RunConfig
from ttabench.launch.worker import comm as comm_mod
from ttabench.launch.worker import loop
from ttabench.launch.worker.workload import build
from ttabench.reference_impls.recipe import CLOSED

pytestmark = pytest.mark.slow

SEED = 7


def _cfg(data_dir: str, **kw) -> RunConfig:
    """On the small synthetic set on disk (conftest's small_data_dir): these rules are not about
    the data, and an evaluation there is a pass over 200 test images, not 1,000."""
    base = dict(data_dir=data_dir, seed=SEED, thresholds="0.1:0.2:0.1", device="cpu")
    base.update(kw)
    return RunConfig(**base)


def _train(cfg: RunConfig, comm, hooks=None, record_lr: list | None = None, autocast_dtype=None):
    """The worker's set-up and timed loop, in this process; lr of every optimizer step recorded."""
    setup = build(cfg, comm, SEED, torch.device("cpu"), autocast_dtype)
    opt = setup.spec.optimizer
    if record_lr is not None:
        step = opt.step

        def recording_step(*a, **k):
            record_lr.append([g["lr"] for g in opt.param_groups])
            return step(*a, **k)

        opt.step = recording_step
    result = loop.run(setup.spec, comm, hooks or loop.Hooks())
    return setup, result


def _expected_lrs(steps: int, global_batch: int, train_size: int) -> list[float]:
    steps_per_epoch = train_size // global_batch
    return [CLOSED.lr_at(i / steps_per_epoch, global_batch) for i in range(steps)]


# --- learning rate per step --------------------------------------------------------------

STEPS = 3


def test_lr_of_every_step_is_the_recipes_on_one_worker(small_data_dir):
    torch.set_num_threads(1)
    lrs: list = []
    setup, result = _train(
        _cfg(small_data_dir, batch_size=256, max_steps=STEPS, eval_every="1epoch"),
        comm_mod.Comm(),
        record_lr=lrs,
    )
    assert result.steps == STEPS
    train_size = len(setup.data.train_labels)
    assert train_size % 256  # an epoch is no whole number of steps: floor, ceil and division differ
    expected = _expected_lrs(STEPS, 256, train_size)
    assert len(set(expected)) == STEPS  # warm-up: every step has its own lr (a test that can fail)
    assert lrs == [[e] * len(lrs[0]) for e in expected]


def _lr_on_two_workers(rank: int, comm, data_dir: str) -> dict:
    lrs: list = []
    setup, _ = _train(
        _cfg(data_dir, batch_size=128, max_steps=STEPS, eval_every="1epoch"), comm, record_lr=lrs
    )
    return {"lrs": lrs, "train_size": len(setup.data.train_labels)}


def test_lr_of_every_step_is_the_recipes_on_two_workers(two_workers):
    out = {rank: r["lr"] for rank, r in two_workers.items()}
    assert out[0]["train_size"] % 256  # as on one worker: no whole number of steps an epoch
    expected = _expected_lrs(STEPS, 256, out[0]["train_size"])
    assert len(set(expected)) == STEPS
    for rank in (0, 1):
        lrs = out[rank]["lrs"]
        assert lrs == [[e] * len(lrs[0]) for e in expected], rank


# --- evaluation is not training time -----------------------------------------------------

DELAY = 3.0  # seconds added to every evaluation; far above a few-step run's noise


def test_slow_evaluation_leaves_training_time_and_shows_in_total_time(monkeypatch, small_data_dir):
    torch.set_num_threads(1)
    # an evaluation after every step
    cfg = _cfg(small_data_dir, batch_size=32, max_steps=2, eval_every="32samples")
    evaluate = loop.evaluate

    def slow_evaluate(*a, **k):
        time.sleep(DELAY)
        return evaluate(*a, **k)

    monkeypatch.setattr(loop, "evaluate", slow_evaluate)
    _, slow = _train(cfg, comm_mod.Comm())
    evals = len(slow.curve)
    assert evals == 2
    added = evals * DELAY
    assert slow.breakdown["eval_s"] >= added
    assert slow.total_time_s - slow.train_time_s >= added  # in total time...
    # ... and not in training time, checked within this one run (so whatever the machine's load):
    # training and evaluation are disjoint stretches of the run, so together they fit in its
    # total time; evaluation counted in training time would overshoot it by `added` (6 s).
    assert slow.train_time_s + slow.breakdown["eval_s"] <= slow.total_time_s, (
        slow.train_time_s,
        slow.breakdown,
    )
    for row in slow.curve:
        assert row["total_time_s"] - row["train_time_s"] >= DELAY * (slow.curve.index(row) + 1)


# --- the recorded time is the slowest rank's ---------------------------------------------


class _SlowLastStep(loop.Hooks):
    """Rank 1 sleeps after the last step's collectives, before the evaluation stops its clock."""

    def __init__(self, rank: int, last: int):
        self.rank, self.last = rank, last

    def step(self, info: dict) -> None:
        if self.rank == 1 and info["step"] == self.last:
            time.sleep(DELAY)


def _slower_rank_on_two_workers(rank: int, comm, data_dir: str) -> dict:
    cfg = _cfg(data_dir, batch_size=32, max_steps=3, eval_every="192samples")  # one evaluation, after step 3
    _, result = _train(cfg, comm, hooks=_SlowLastStep(rank, 3))
    return {"recorded": result.curve[-1]["train_time_s"], "own": result.breakdown["train_s"]}


def test_a_slower_rank_moves_the_recorded_time(two_workers):
    out = {rank: r["slower"] for rank, r in two_workers.items()}
    assert out[0]["recorded"] == out[1]["recorded"]  # every rank records the same agreed time
    # Rank 1's own clock holds the delay (it slept with its clock running); rank 0 waited for it
    # with its clock stopped, so the clocks differ by about DELAY.
    assert out[1]["own"] >= DELAY
    # The recorded time is the MAX of the ranks' own clocks, exactly (float64 all-reduce): a mean
    # would sit half their difference below it, rank 0's clock all of it. Exact, so whatever the
    # machine's load does to the clocks themselves.
    assert out[0]["recorded"] == max(out[0]["own"], out[1]["own"]), out
    assert out[1]["own"] != out[0]["own"], out


# --- the clock starts together, at run_start ----------------------------------------------


def _late_rank_on_two_workers(rank: int, comm, data_dir: str) -> dict:
    """Rank 1 is DELAY late to run_start (a slow set-up); the timed loop begins after that."""
    cfg = _cfg(data_dir, batch_size=32, max_steps=3, eval_every="192samples")  # one evaluation, after step 3
    setup = build(cfg, comm, SEED, torch.device("cpu"), None)
    if rank == 1:
        time.sleep(DELAY)
    result = loop.run(setup.spec, comm, loop.Hooks())
    row = result.curve[-1]
    return {"train": row["train_time_s"], "total": row["total_time_s"], "own": result.breakdown["train_s"]}


def _on_two_workers(rank: int, world: int, data_dir: str) -> dict:
    """The 2-worker parts of this module, one after another on one gloo group (one start-up)."""
    parts = {
        "lr": _lr_on_two_workers,
        "slower": _slower_rank_on_two_workers,
        "late": _late_rank_on_two_workers,
    }
    return {
        name: part(rank, comm_mod.TorchComm("gloo", torch.device("cpu"), 120.0), data_dir)
        for name, part in parts.items()
    }


@pytest.fixture(scope="module")
def two_workers(small_data_dir, tmp_path_factory) -> dict:
    """The 2-worker parts' results, {rank: {part: result}}. Under pytest-xdist this module's
    tests are spread over the workers, and each worker that got one of them would start the
    group anew (~25 CPU-s): the first to get here runs it, the others read its results from
    the session's shared temporary folder (JSON: floats read back exactly), under a lock."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return on_gloo(_on_two_workers, 2, small_data_dir)
    # named after this test run (xdist's id for it): a stale file of another run is never read
    run = os.environ["PYTEST_XDIST_TESTRUNUID"]
    shared = tmp_path_factory.getbasetemp().parent / f"measurement-rules-two-workers-{run}.json"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not shared.is_file():
            tmp = shared.with_suffix(".tmp")  # whole or absent: a worker killed mid-write leaves no half
            tmp.write_text(json.dumps(on_gloo(_on_two_workers, 2, small_data_dir)))
            os.replace(tmp, shared)
        return {int(rank): out for rank, out in json.loads(shared.read_text()).items()}


def test_the_clock_starts_when_every_rank_is_ready(two_workers):
    """Set-up is not timed: the clocks start at a barrier at run_start, so a rank that is late
    to it adds nothing. Without the barrier (or with the clock started before it) rank 0 would
    count the DELAY it waits for rank 1 in the first step, and the recorded MAX would hold it.
    Margin: both ranks run the same 3 steps on one machine, so their own clocks differ by far
    less than DELAY / 2 = 1.5 s also under load; the delay would add a whole DELAY."""
    out = {rank: r["late"] for rank, r in two_workers.items()}
    assert out[0]["train"] == out[1]["train"]  # one agreed time
    assert out[0]["own"] - out[1]["own"] < DELAY / 2, out  # rank 0 did not count its wait
    assert out[0]["train"] - out[1]["own"] < DELAY / 2, out  # nor does the recorded time
    assert out[0]["total"] - out[1]["own"] < DELAY / 2 + (out[0]["total"] - out[0]["train"]), out


# --- --precision bf16 through the CLI ----------------------------------------------------


def test_cli_bf16_trains_in_bf16(cli, tmp_path, small_data_dir):
    args = ["--batch-size", "32", "--max-steps", "2", "--eval-every", "1epoch", "--seed", str(SEED)]
    r = cli(
        "run", "--data-dir", small_data_dir, *args, "--precision", "bf16", "--threads", "1", "--save-model",
        "--thresholds", "0.1:0.2:0.1", "--results-dir", str(tmp_path), "--progress", "none",
        check=True, timeout=600,
    )  # fmt: skip
    (run_dir,) = glob.glob(os.path.join(str(tmp_path), "*", "resnet20", "closed", "*"))
    # Whether this CPU has bf16 in hardware is recorded, and its absence said in one warning line.
    native = system.native_bf16()
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["resolved"]["bf16_native"] is native
    assert ("CPU without native bf16" in r.stderr) is (native is False), r.stderr
    got = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    torch.set_num_threads(1)
    cfg = _cfg(small_data_dir, batch_size=32, max_steps=2, eval_every="1epoch")
    bf16, _ = _train(cfg, comm_mod.Comm(), autocast_dtype=torch.bfloat16)
    fp32, _ = _train(cfg, comm_mod.Comm())
    bf16_state, fp32_state = bf16.model.state_dict(), fp32.model.state_dict()
    assert all(torch.equal(got[k], bf16_state[k]) for k in bf16_state)
    assert not all(torch.equal(got[k], fp32_state[k]) for k in fp32_state)


def test_bf16_note_only_for_emulated_bf16_on_a_cpu():
    from ttabench.launch.worker.context import bf16_note

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert "without native bf16" in bf16_note(cpu, torch.bfloat16, False)
    assert bf16_note(cpu, torch.bfloat16, True) is None
    assert bf16_note(cpu, torch.bfloat16, None) is None  # flags unknown: no guess
    assert bf16_note(cpu, None, False) is None  # fp32
    assert bf16_note(gpu, torch.bfloat16, False) is None
    assert system.native_bf16(["avx2", "avx512f"]) is False
    assert system.native_bf16(["avx512f", "avx512_bf16"]) is True
    assert system.native_bf16(["amx_bf16"]) is True
