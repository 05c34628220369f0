"""GPU readiness without a GPU: the device choices that can be checked on a CPU, and
benchmarks/device_check.sh's CPU-only parts, run for real (small)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import run_cli

from benchmarks import device_steps
from ttabench import UserError
from ttabench.launch.worker import comm, warmup
from ttabench.launch.worker.compute import default_train_step
from ttabench.launch.worker.context import gpu_math
from ttabench.reference_impls import cifar10
from ttabench.reference_impls.resnet import resnet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_workers_sharing_a_gpu_get_gloo_because_nccl_refuses_them():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert comm.default_dist_backend(cuda, local_world_size=1, gpus=1) == "nccl"
    assert comm.default_dist_backend(cuda, local_world_size=8, gpus=8) == "nccl"
    assert comm.default_dist_backend(cuda, local_world_size=2, gpus=1) == "gloo"
    assert comm.default_dist_backend(cpu, local_world_size=1, gpus=0) == "gloo"
    comm.check_nccl(2, 2)
    with pytest.raises(UserError, match=r"nccl needs one GPU per worker \(2 workers on this node, 1 GPUs\)"):
        comm.check_nccl(2, 1)


def test_nccl_on_a_machine_without_enough_gpus_is_a_user_error_before_any_process_group(monkeypatch):
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the GPUs")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(UserError, match="nccl needs one GPU per worker"):
        comm.init("torchrun", "nccl", torch.device("cpu"), 5.0)


def test_nccl_for_workers_sharing_a_device_is_one_line_before_any_worker_or_folder(tmp_path):
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the GPUs")
    proc = run_cli(
        "run",
        "--synthetic",
        "--workers",
        "2",
        "--dist-backend",
        "nccl",
        "--max-steps",
        "1",
        "--results-dir",
        str(tmp_path / "results"),
        env={"CUDA_VISIBLE_DEVICES": ""},
        timeout=600,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ttabench: error: --dist-backend nccl needs one GPU per worker (2 workers on this node, 0 GPUs): "
        "leave --dist-backend unset (gloo) or start fewer workers"
    ]
    assert not (tmp_path / "results").exists()


def test_cpu_runs_record_no_gpu_math():
    assert gpu_math(torch.device("cpu")) is None


def test_datapath_feeds_every_batch_of_every_epoch():
    data = cifar10.synthetic(train_size=300, test_size=10)
    t0 = time.perf_counter()
    r = device_steps.datapath(torch.device("cpu"), data, epochs=2)
    elapsed = time.perf_counter() - t0
    assert (r["steps"], r["batch"], r["device"]) == (2 * (300 // 128), 128, "cpu")
    # The time it reports lies within the call, so the rate is at least what the caller saw.
    assert 0 < r["seconds"] <= elapsed
    assert r["img_s"] == pytest.approx(r["steps"] * 128 / r["seconds"])
    assert r["img_s"] >= r["steps"] * 128 / elapsed


def test_figures_gather_the_steps_and_fail_on_a_failed_one(tmp_path):
    (tmp_path / "steps.tsv").write_text("env\tok\t3\nfp32\tfailed\t12\ncompile-bf16\tskipped\t0\n")
    fig = device_steps.figures(str(tmp_path))
    assert [s["status"] for s in fig["steps"]] == ["ok", "failed", "skipped"]
    assert "| fp32 | failed | 12 |" in (tmp_path / "figures.md").read_text()
    assert device_steps.main(["figures", "--out", str(tmp_path)]) == 1


def test_figures_keep_a_run_that_failed_before_writing_its_config(tmp_path):
    """A run that fails in the warm-up leaves summary.json without config.json (seen on a GPU:
    --compile reduce-overhead); the figures list it as failed instead of crashing."""
    (tmp_path / "steps.tsv").write_text("compile-ro-bf16\tfailed\t40\n")
    run = tmp_path / "results" / "device-check-cuda" / "resnet20" / "closed" / "20261204-113757-7523b3"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "failed", "world_size": 1, "steps": 0}))
    fig = device_steps.figures(str(tmp_path))
    assert fig["runs"] == [
        {"run": run.name, "device": None, "precision": None, "compile": None, "workers": 1,
         "dist_backend": None, "status": "failed", "steps": 0, "img_s": None,
         "final_accuracy": None, "warmup_s": None}
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(5400)  # ~3 minutes on a quiet 2-core machine; 15-25 under a load of 15-20
def test_device_check_script_runs_its_cpu_parts_without_a_gpu(tmp_path):
    out = tmp_path / "check"
    # generous limits: this test checks what the steps do, not how fast a shared machine is
    env = dict(
        os.environ,
        TTABENCH_PYTHON=sys.executable,
        CUDA_VISIBLE_DEVICES="",
        DEVICE_CHECK_BUDGET_S="100000",
        DEVICE_CHECK_TIMEOUT_SCALE="20",
    )
    proc = subprocess.run(
        ["bash", os.path.join(REPO, "benchmarks", "device_check.sh"), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=5300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0].startswith("device_check: no CUDA GPU visible")
    steps = dict(line.split("\t")[:2] for line in (out / "steps.tsv").read_text().splitlines())
    assert steps == {
        "env": "ok",
        "peak": "ok",
        "datapath": "ok",
        "fp32": "ok",
        "bf16": "ok",
        "compile-bf16": "skipped",
        "compile-ro-bf16": "skipped",
        "workers2": "ok",
        "nccl-shared": "ok",
        "throughput": "ok",
    }
    fig = json.loads((out / "figures.json").read_text())
    assert fig["env"]["device"] == "cpu" and not fig["env"]["cuda_available"]
    assert set(fig["peak"]) == {"fp32", "bf16"} and fig["peak"]["bf16"]["n"] == 256
    assert fig["datapath"]["steps"] == 5000 // 128
    runs = sorted(
        (r["precision"], r["workers"], r["dist_backend"], r["status"], r["steps"]) for r in fig["runs"]
    )
    assert runs == [
        ("bf16", 1, None, "success", 2),
        ("bf16", 2, "gloo", "success", 2),
        ("fp32", 1, None, "success", 2),
    ]
    (mode,) = fig["throughput"]
    assert mode["mode"] == "fp32-cl" and mode["fraction"]["median"] > 0
    assert "nccl needs one GPU per worker" in (out / "logs" / "nccl-shared.log").read_text()
    assert (out / "figures.md").read_text().startswith("# device check")


def test_cuda_graph_warmup_takes_three_steps_and_still_restores_the_model():
    # CUDA graphs run a step eagerly, record the next and replay from the third on; the
    # marking of each step is a no-op on a CPU, so the step count is checked here.
    torch.manual_seed(0)
    model = resnet(20)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def step(m, x, y):
        calls.append(len(x))
        return default_train_step(m, x, y)

    warmup.prepare(model, model, device="cpu", train_batch=4, train_step=step, cudagraphs=True)
    assert calls == [4, 4, 4]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
