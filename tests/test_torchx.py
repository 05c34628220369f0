"""`ttabench submit --scheduler torchx:...`: a real 2-replica run with TorchX's local scheduler,
and the Kubernetes request TorchX would send (its dry run)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import IN_CI, run_cli


@pytest.fixture(scope="module", autouse=True)
def torchx_installed():
    try:
        import kubernetes  # noqa: F401
        import torchx  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("TorchX is not installed (pip install -e '.[test]' installs it)")
        pytest.skip("TorchX not installed (pip install torchx kubernetes)")


@pytest.mark.slow
def test_local_scheduler_runs_two_replicas_to_success(subset_dir, shared_tmp):
    r = run_cli(
        "submit", "--scheduler", "torchx:local_cwd", "--nodes", "2", "--workers", "1", "--threads", "1",
        "--data-dir", subset_dir, "--max-steps", "3", "--progress", "none", "--seed", "4",
        "--results-dir", os.path.join(shared_tmp, "results"), "--wait", timeout=400,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"submitted TorchX app (local_cwd://\S+); results: (\S+)", r.stdout)
    assert m, r.stdout
    handle, run_dir = m.groups()
    assert f"app {handle}: SUCCEEDED" in r.stdout
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["scheduler"] == {
        "name": "torchx",
        "job_id": handle,
        "submit_command": config["scheduler"]["submit_command"],
    }
    assert config["resolved"]["nodes"] == 2 and config["resolved"]["world_size"] == 2
    v = run_cli("validate", run_dir)
    assert v.returncode == 0, v.stdout + v.stderr


def test_kubernetes_dry_run_is_a_two_task_volcano_job_running_the_worker(shared_tmp):
    results = Path(shared_tmp) / "results"
    r = run_cli(
        "submit", "--scheduler", "torchx:kubernetes", "--image", "registry.example/ttabench:1",
        "--torchx-cfg", "queue=default", "--nodes", "2", "--workers", "2",
        "--data-dir", "/data/cifar-10-batches-py", "--max-epochs", "1", "--results-dir", str(results),
        "--dry-run", timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    spec = yaml.safe_load(r.stdout)
    assert spec["kind"] == "Job" and spec["spec"]["queue"] == "default"
    tasks = spec["spec"]["tasks"]
    assert [t["name"] for t in tasks] == ["worker-0", "worker-1"]
    for task in tasks:
        (container,) = task["template"]["spec"]["containers"]
        assert container["image"] == "registry.example/ttabench:1"
        command = container["command"][-1]
        assert "torchrun" in command and "--nnodes 2 --nproc_per_node 2" in command
        assert "-m ttabench.launch.worker" in command
        assert '"data_dir": "/data/cifar-10-batches-py"' in command  # the container's path, unchecked here
    assert not results.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--scheduler", "torchx:nosuch"), "unknown TorchX scheduler 'nosuch'"),
        (("--scheduler", "torchx:kubernetes"), "torchx:kubernetes needs --image"),
        (("--scheduler", "torchx"), "--scheduler torchx needs a TorchX scheduler"),
        (("--scheduler", "torchx:kubernetes", "--image", "x", "--torchx-cfg", "queue"), "KEY=VALUE"),
    ],
)
def test_bad_torchx_input_is_one_line(subset_dir, shared_tmp, extra, message):
    r = run_cli(
        "submit",
        "--nodes",
        "2",
        "--data-dir",
        subset_dir,
        "--results-dir",
        os.path.join(shared_tmp, "r"),
        *extra,
        "--dry-run",
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("ttabench: error: ") and message in r.stderr
