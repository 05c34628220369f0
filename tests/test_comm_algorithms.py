"""The worker side of the algorithms on real gloo groups: top-k keeps and sends what adds up to
the gradient (one process); decentralized and local SGD average parameters exactly, evaluation
sees the workers' average and training continues from each worker's own model (4 processes)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from gloo_group import on_gloo
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


# --- the parameter exchanges on 4 real gloo workers, with exact values ----------------------


def _exchanges(rank: int, world: int) -> dict:
    result = {}
    for name, params in (("decentralized", {}), ("local-sgd", {"local_steps": 2})):
        comm = TorchComm("gloo", torch.device("cpu"), 60.0)
        comm.use_algorithm(name, params)
        model = _net()
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(rank))  # worker i's model: every parameter i
        alg = comm.algorithm
        seen = []
        for _ in range(2):
            alg.after_step(model)
            seen.append(sorted({float(v) for p in model.parameters() for v in p.reshape(-1)}))
        with torch.no_grad():  # models that differ again, for the evaluation's average
            for p in model.parameters():
                p.fill_(float(rank))
        alg.before_eval(model)
        evaluated = sorted({float(v) for p in model.parameters() for v in p.reshape(-1)})
        alg.after_eval(model)
        back = sorted({float(v) for p in model.parameters() for v in p.reshape(-1)})
        result[name] = {
            "steps": seen,
            "evaluated": evaluated,
            "back": back,
            "consensus": alg.consensus,
            "handed": alg.ops.handed,
            "numel": sum(p.numel() for p in model.parameters()),
        }
    return result


@pytest.mark.slow
def test_parameter_exchanges_average_exactly():
    world = 4
    out = on_gloo(_exchanges, world)
    n = out[0]["decentralized"]["numel"]
    s = 4 * n
    for rank in range(world):
        dec, loc = out[rank]["decentralized"], out[rank]["local-sgd"]
        # D-PSGD on the ring 0-1-2-3: (left + mine + right) / 3
        first = ((rank - 1) % world + rank + (rank + 1) % world) / 3
        assert dec["steps"][0] == [pytest.approx(first)]
        assert dec["handed"] == {"all_reduce": 0, "all_gather": 0, "send": 2 * 2 * s}  # 2 steps
        # local SGD, H = 2: no exchange after step 1; the mean 1.5 after step 2
        assert loc["steps"] == [[float(rank)], [1.5]]
        assert loc["handed"] == {"all_reduce": s, "all_gather": 0, "send": 0}
        for r in (dec, loc):  # evaluation sees the average; training continues from its own
            assert r["evaluated"] == [1.5] and r["back"] == [float(rank)]
        # mean over workers of ||x_i - 1.5 x 1||: (1.5 + 0.5 + 0.5 + 1.5) / 4 x sqrt(n)
        assert dec["consensus"] == pytest.approx(math.sqrt(n))
        assert loc["consensus"] is None
    expected = {0: 4 / 3, 1: 1.0, 2: 2.0, 3: 5 / 3}
    assert {r: out[r]["decentralized"]["steps"][0][0] for r in range(world)} == pytest.approx(expected)


def test_a_submissions_operations_are_counted_and_the_uncounted_refused(group):
    """While a submission's communication runs, torch.distributed's operations go through the
    same Ops as the references' (handed bytes counted); the ones Ops does not count raise, and
    torch.distributed is itself again afterwards."""
    from ttabench.launch.worker import comm_counting
    from ttabench.launch.worker.comm import Comm

    real = dist.all_reduce
    ops = comm_counting.Ops(Comm())
    with comm_counting.counted_dist(ops):
        dist.all_reduce(torch.ones(10))  # 40 bytes
        dist.all_reduce(tensor=torch.ones(2))  # 8 bytes, given by keyword
        dist.all_reduce(torch.ones(4, dtype=torch.float16), async_op=True).get_future().wait()
        dist.all_gather([torch.empty(3)], torch.ones(3))
        dist.all_gather_single(torch.empty(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64))
        with pytest.raises(
            RuntimeError, match=r"torch.distributed.broadcast in a submission's communication"
        ):
            dist.broadcast(torch.ones(2), src=0)
    assert ops.handed == {"all_reduce": 40 + 8 + 8, "all_gather": 12 + 40, "send": 0}
    assert ops.sent == 0.0  # one worker sends nothing (sent_bytes of a 1-process group)
    assert dist.all_reduce is real and dist.broadcast.__module__ != comm_counting.__name__
