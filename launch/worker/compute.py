"""What a step and an evaluation compute, apart from the clock and the stop rules (loop.py):
each worker's batches of an epoch (the data order), the default loss, autocast, and the
evaluation over the whole test split, sharded over workers.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ttabench.reference_impls.augment import CropFlip, Normalize


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed generator seed per (run seed, epoch) (no collisions such as seed+epoch has)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_plan(n: int, global_batch: int, seed: int, epoch: int, rank: int, world: int):
    """This worker's batches for one epoch, and the epoch's augmentation draws.

    Every worker draws the same permutation; global batch k is positions
    k*B..(k+1)*B of it, and worker r takes every world-th element of that
    batch starting at r (DistributedSampler's interleaving). The union over
    workers of step k is exactly global batch k; the tail that does not fill
    a whole global batch is dropped.
    """
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    perm = torch.randperm(n, generator=g)
    aug = CropFlip.draw(n, g)
    steps = n // global_batch
    batches = perm[: steps * global_batch].view(steps, global_batch)[:, rank::world]
    return batches, aug


def default_train_step(model, x, y):
    return F.cross_entropy(model(x), y)


def evaluate(
    model, images, labels, normalize: Normalize, comm, batch_size: int, autocast_dtype=None
) -> tuple[float, float, int]:
    """Accuracy and mean loss over the whole test split, sharded over workers.

    Worker r evaluates images r, r+world, ...; the correct counts, sample
    counts and loss sums are all-reduced, so every worker returns the same
    numbers, equal to one process evaluating all images.
    """
    was_training = model.training
    model.eval()
    idx = torch.arange(comm.rank, len(labels), comm.world_size, device=labels.device)
    correct = torch.zeros((), dtype=torch.int64, device=labels.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=labels.device)
    with torch.inference_mode(), autocast(images.device, autocast_dtype):
        for chunk in idx.split(batch_size):
            y = labels[chunk]
            out = model(normalize(images[chunk])).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
    total_correct, total_count, total_loss = comm.allreduce(
        [float(correct), float(len(idx)), float(loss_sum)], op="sum"
    )
    model.train(was_training)
    count = int(round(total_count))
    return int(round(total_correct)) / count, total_loss / count, count


def autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
