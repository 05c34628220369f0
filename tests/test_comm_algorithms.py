"""The worker side of top-k on a real (one-process) gloo group: what it keeps and what it
sends add up to the gradient, and with every entry selected it is the plain gradient."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from ttabench.divisions import algorithms as spec
from ttabench.launch.worker.comm import TorchComm


@pytest.fixture
def group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def _grads(model, x) -> list[torch.Tensor]:
    model(x).square().sum().backward()
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("ratio", [0.999999, 0.1])
def test_topk_sends_the_largest_entries_and_keeps_the_rest(group, ratio):
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = _grads(_net(), x)
    comm = TorchComm("gloo", torch.device("cpu"), 30.0)
    comm.use_algorithm("topk", {"topk_ratio": ratio})
    model = _net()
    ddp = comm.wrap_model(model)
    got = _grads(ddp, x)
    memory = comm.algorithm.memory
    for p, g, full in zip(model.parameters(), got, plain):
        k = spec.topk_count(full.numel(), ratio)
        assert int((g != 0).sum()) == k
        # the sent entries are the k largest in magnitude, and sent + kept = the gradient
        assert torch.equal(g.reshape(-1).abs().topk(k).values, full.reshape(-1).abs().topk(k).values)
        assert torch.allclose(g.reshape(-1) + memory[p], full.reshape(-1), atol=0, rtol=0)
    if ratio > 0.99:
        assert all(torch.equal(g, full) for g, full in zip(got, plain))
    shapes = [tuple(p.shape) for p in model.parameters()]
    k = sum(spec.topk_count(spec.numel(s), ratio) for s in shapes)
    assert comm.algorithm.ops.handed == {"all_reduce": 0, "all_gather": 8 * k, "send": 0}
