"""A submission's own distributed algorithm in the open division: the small CNN of
small_cnn.py, trained with the closed recipe, communicating its own way.

`fp16_allreduce` sets a DDP communication hook with torch's signature
``(state, bucket) -> Future[Tensor]``: each gradient bucket is cast to fp16, averaged
with one all-reduce and cast back (what torch's fp16_compress_hook does):

    ttabench run --division open --model examples/own_communication.py:fp16_allreduce --synthetic --workers 2 --max-steps 20

`local_sgd` sets a hook that keeps each worker's own gradient (no communication in the
backward pass) and a step-level synchronisation ``(model, step) -> None`` that averages
the parameters with one all-reduce after every 4th step (local SGD, H = 4; momentum
buffers stay local):

    ttabench run --division open --model examples/own_communication.py:local_sgd --synthetic --workers 2 --max-steps 20

The collectives are called through the ``torch.distributed`` module: ttabench counts the
bytes handed to them (summary.json's comm_bytes_per_step) and charges an emulated network
for them, as for the reference algorithms. With 2 workers and S the model's bytes (fp32),
fp16_allreduce sends S/2 per worker per step and local_sgd S/4.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from small_cnn import small_cnn

from ttabench.divisions.open import Submission

AVERAGE_EVERY = 4  # local SGD's H


def fp16_compress(state, bucket) -> torch.futures.Future:
    """A DDP communication hook: the bucket's mean, all-reduced in fp16."""
    half = bucket.buffer().to(torch.float16).div_(dist.get_world_size())
    fut = dist.all_reduce(half, async_op=True).get_future()

    def back(f):
        out = bucket.buffer()
        out.copy_(f.value()[0])
        return out

    return fut.then(back)


def keep_local_gradient(state, bucket) -> torch.futures.Future:
    """A DDP communication hook that communicates nothing: each worker steps on its own gradient."""
    fut = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


def average_parameters(model: torch.nn.Module, step: int) -> None:
    """After every AVERAGE_EVERY-th step, every worker's parameters become their mean."""
    if (step + 1) % AVERAGE_EVERY:
        return
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset : offset + p.numel()].view(p.shape))
            offset += p.numel()


fp16_allreduce = Submission(model=small_cnn, comm_hook=fp16_compress)
local_sgd = Submission(model=small_cnn, comm_hook=keep_local_gradient, sync_step=average_parameters)
