"""The worker module's entry and the state it hands on: the run configuration as JSON,
`python -m ttabench.launch.worker` started by hand, checkpoints, the mllog line count."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from ttabench import UserError
from ttabench.launch.config import RunConfig
from ttabench.launch.launcher import worker_argv
from ttabench.launch.record.mllog import C, RunLog
from ttabench.launch.worker import checkpoint
from ttabench.launch.worker.loop import LoopState
from ttabench.launch.worker.main import build_parser, config_from_args

# A value unlike the default for every field (types as the flags give them).
ALL_CHANGED = RunConfig(
    benchmark="resnet56-v2",
    division="open",
    model="examples/small_cnn.py:small_cnn",
    optimizer="pkg.opt:adam",
    data_dir="some/data dir",
    synthetic=True,
    seed=2**31 - 1,
    batch_size=7,
    target=0.925,
    time_budget=0.1 + 0.2,  # not exactly 0.3: the round trip must keep every bit
    max_epochs=2.5,
    max_steps=13,
    eval_every="0.5epoch",
    thresholds="0.5:0.6:0.05",
    device="cpu",
    precision="bf16",
    compile="max-autotune",
    channels_last=False,
    threads=3,
    eval_batch_size=250,
    workers=4,
    backend="horovod",
    dist_backend="gloo",
    nnodes=2,
    node_rank=1,
    rdzv_endpoint="host0:29400",
    local_addr="host1",
    algorithm="topk",
    powersgd_rank=3,
    powersgd_start_step=5,
    local_steps=8,
    local_sgd_warmup_steps=2,
    topk_ratio=0.05,
    network="wan",
    bandwidth="1gbit",
    latency="0.5ms",
    straggler="1:2",
    collective_timeout=30.5,
    results_dir="out/results",
    system="my-system",
    progress="plain",
    checkpoint_every="200steps",
    max_restarts=2,
    save_model=True,
    run_dir="out/results/s/b/d/r",
    resume=True,
)


def test_every_field_is_changed_in_the_round_trip_fixture():
    defaults = RunConfig()
    same = [
        f.name
        for f in dataclasses.fields(RunConfig)
        if getattr(ALL_CHANGED, f.name) == getattr(defaults, f.name)
    ]
    assert same == []


@pytest.mark.parametrize("cfg", [RunConfig(), ALL_CHANGED], ids=["defaults", "all-changed"])
def test_run_config_json_round_trip_is_exact(cfg):
    back = RunConfig.from_json(cfg.to_json())
    assert back == cfg
    for f in dataclasses.fields(RunConfig):
        assert type(getattr(back, f.name)) is type(getattr(cfg, f.name)), f.name


def test_from_json_refuses_a_field_it_does_not_know():
    with pytest.raises(TypeError):
        RunConfig.from_json('{"no_such_field": 1}')


def test_launcher_hands_the_config_whole_and_the_worker_takes_it_without_validating(tmp_path):
    # validate() would refuse this (no such data folder); handed over by a launcher, the
    # worker takes it as it is: the launcher validated it, once.
    cfg = RunConfig(data_dir=str(tmp_path / "missing"), seed=5, max_steps=3)
    with pytest.raises(UserError):
        cfg.validate()
    args = build_parser().parse_args(worker_argv(cfg))
    assert config_from_args(args) == cfg


def test_worker_started_by_hand_parses_and_validates(tmp_path):
    args = build_parser().parse_args(["--data-dir", str(tmp_path / "missing"), "--max-steps", "3"])
    with pytest.raises(UserError, match="missing"):
        config_from_args(args)
    cfg = config_from_args(build_parser().parse_args(["--synthetic", "--max-steps", "3", "--seed", "4"]))
    assert (cfg.synthetic, cfg.max_steps, cfg.seed, cfg.resume) == (True, 3, 4, False)


def _worker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ttabench.launch.worker", *args], capture_output=True, text=True, timeout=300
    )


def test_worker_module_help_prints_usage():
    proc = _worker("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m ttabench.launch.worker")
    assert "--resume RUN_DIR" in proc.stdout
    assert "--run-config" not in proc.stdout  # the launcher's, not the user's
    assert "Traceback" not in proc.stderr


def test_worker_resume_takes_a_run_folder_like_ttabench_run(tmp_path):
    proc = _worker("--resume", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"ttabench: error: not a run folder (no config.json): {tmp_path}"
    ]


# --- checkpoints and the mllog line count ----------------------------------------------------


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer


def test_checkpoint_saves_and_restores_exactly_the_loop_state(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()  # momentum buffers and BN statistics are part of the state
    state = LoopState(
        global_batch=64,
        steps_per_epoch=79,
        seed=12345,
        next_eval=5056,
        next_checkpoint=1280,
        step=19,
        samples=1216,
        epoch=0,
        epoch_step=19,
        train_s=0.1 + 0.2,
        total_s=1.0 / 3.0,
        curve=[{"epoch": 0.126582, "step": 10, "accuracy": 0.5, "loss": 1.25, "train_time_s": 0.7}],
        recent_steps=[0.01, 0.03, 0.02],
    )
    summary = {"benchmark": "resnet20", "seed": 12345, "resumes": [{"step": 6, "train_time_s": 0.2}]}
    rng = torch.get_rng_state()
    checkpoint.save(
        str(tmp_path), model=model, optimizer=optimizer, loop_state=state, mllog_lines=28, summary=summary
    )
    torch.rand(5)  # move the RNG on: restore must put it back

    ckpt = checkpoint.load(str(tmp_path))
    assert (ckpt.loop, ckpt.mllog_lines, ckpt.summary) == (state, 28, summary)
    fresh, fresh_opt = _model_and_optimizer(1)
    assert checkpoint.restore(ckpt, fresh, fresh_opt) == state
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(torch.get_rng_state(), rng)
    a, b = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert all(torch.equal(a[k]["momentum_buffer"], b[k]["momentum_buffer"]) for k in a)


def test_checkpoint_of_another_format_is_refused_in_one_line(tmp_path):
    torch.save({"format": 1, "loop": {}}, tmp_path / checkpoint.FILE)
    with pytest.raises(UserError, match="not a ttabench checkpoint"):
        checkpoint.load(str(tmp_path))


def test_run_log_counts_its_lines_without_reading_the_file(tmp_path):
    path = tmp_path / "mllog.txt"
    log = RunLog(str(path))
    log.event(C.SUBMISSION_ORG, "ttabench")
    log.start(C.RUN_START)
    log.end(C.EPOCH_STOP, epoch_num=0)
    assert log.lines == 3
    log.close()
    # a resumed run's log, cut at a checkpoint, counts on from there
    log = RunLog(str(path), lines=3)
    log.event(C.EVAL_ACCURACY, 0.5)
    assert log.lines == 4 == len(path.read_text().splitlines())
    log.close()
    assert RunLog(None).lines == 0


def test_a_stop_request_delivered_twice_is_one_request():
    """scancel / Ctrl-C reach every process, and the launcher forwards its signal again: a
    repeat within moments must not turn the graceful stop into an abrupt one."""
    import signal

    from ttabench.launch.worker.main import _StopFlag

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        stop = _StopFlag()
        assert not stop()
        stop._handle(signal.SIGTERM, None)
        stop._handle(signal.SIGTERM, None)  # the forwarded copy: no exception
        assert stop() == 1 and stop.signal == "SIGTERM"
        stop.at -= _StopFlag.DEDUP_S  # a second request, later: stop at once
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_the_time_limit_notice_is_its_own_stop_request():
    """SIGUSR1 (Slurm's --signal=USR1@MARGIN before the time limit) asks for a stop the workers
    agree on as 2, above an interruption's 1, so every rank records time_limit."""
    import signal

    from ttabench.launch.worker.main import _StopFlag

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        stop = _StopFlag()
        stop._handle(signal.SIGUSR1, None)
        assert stop() == 2 and stop.signal == "SIGUSR1"
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
