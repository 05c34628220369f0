"""`python -m benchmarks.algorithms`: each algorithm's own compute beside a plain step, with
tiny settings (the hooks are the ones a run uses, in a one-process gloo group)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist

from benchmarks import algorithms as bench
from ttabench.divisions import algorithms as spec


def test_tiny_run_prints_and_records_every_algorithm(tmp_path, capsys):
    assert not dist.is_initialized()
    out = tmp_path / "algorithms.json"
    assert bench.main(["--batch", "2", "--reps", "1", "--threads", "1", "--json", str(out)]) == 0
    assert not dist.is_initialized()  # the one-process group is gone again
    got = json.loads(out.read_text())
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"CPU: {got['cpu']}; 1 threads; ResNet-20 (1,078,888 bytes fp32)")
    assert got["model_bytes"] == 1_078_888 and got["plain_step_ms"] > 0
    labels = [spec.label(n, spec.resolved_params(n, {})) for n in spec.ALGORITHMS]
    assert [r["algorithm"] for r in got["algorithms"]] == labels
    for r in got["algorithms"]:
        assert r["compute_ms"] > 0 and r["share"] == pytest.approx(r["compute_ms"] / got["plain_step_ms"])
        assert any(line.startswith(r["algorithm"] + " ") for line in printed)


def test_bucket_views_are_the_gradients():
    """The benchmark's bucket is what DDP hands a hook: one flat buffer, gradients as views."""
    params = [torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(4))]
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, float(i + 1))
    b = bench.Bucket(params)
    assert b.buffer().tolist() == [1.0] * 6 + [2.0] * 4
    b.gradients()[1].mul_(3)
    assert b.buffer()[6:].tolist() == [6.0] * 4
    b.refill()
    assert b.buffer()[6:].tolist() == [2.0] * 4


def test_bad_settings_are_one_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(["--reps", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("--reps and --batch must be >= 1")
