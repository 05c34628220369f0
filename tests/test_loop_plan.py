"""launch.worker.compute.epoch_plan: disjoint per-worker shards whose union is the global batch."""

from __future__ import annotations

import pytest
import torch

from ttabench.launch.worker.compute import epoch_plan, epoch_seed

N = 1000
GLOBAL_BATCH = 64
SEED = 1234


def _plan(world, rank, epoch=0, n=N, gb=GLOBAL_BATCH, seed=SEED):
    return epoch_plan(n, gb, seed, epoch, rank, world)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_union_of_workers_is_the_one_worker_global_batch(world):
    single, _ = _plan(1, 0)
    shards = [_plan(world, r)[0] for r in range(world)]
    steps = N // GLOBAL_BATCH
    assert single.shape == (steps, GLOBAL_BATCH)
    for b in shards:
        assert b.shape == (steps, GLOBAL_BATCH // world)
    for k in range(steps):
        union = set()
        for b in shards:
            union |= set(b[k].tolist())
        assert union == set(single[k].tolist())


@pytest.mark.parametrize("world", [1, 2, 4])
def test_shards_disjoint_and_each_index_at_most_once(world):
    shards = [_plan(world, r)[0] for r in range(world)]
    everything = torch.cat([b.reshape(-1) for b in shards]).tolist()
    assert len(everything) == len(set(everything))  # disjoint across workers and steps
    assert all(0 <= i < N for i in everything)
    # the tail that does not fill a global batch is dropped: 15 * 64 = 960 of 1000
    assert len(everything) == (N // GLOBAL_BATCH) * GLOBAL_BATCH == 960


@pytest.mark.parametrize("world", [2, 4])
def test_interleaving_is_distributed_sampler_order(world):
    """Worker r takes positions r, r+world, ... of each global batch."""
    single, _ = _plan(1, 0)
    for r in range(world):
        b, _ = _plan(world, r)
        assert torch.equal(b, single[:, r::world])


def test_exact_division_drops_nothing():
    b, _ = _plan(1, 0, n=640)
    assert sorted(b.reshape(-1).tolist()) == list(range(640))


def test_reshuffled_between_epochs():
    e0, a0 = _plan(2, 0, epoch=0)
    e1, a1 = _plan(2, 0, epoch=1)
    assert not torch.equal(e0, e1)
    assert not torch.equal(a0.dy, a1.dy)
    # each epoch is still a permutation of the same data set
    s0, _ = _plan(1, 0, epoch=0, n=640)
    s1, _ = _plan(1, 0, epoch=1, n=640)
    assert sorted(s0.reshape(-1).tolist()) == sorted(s1.reshape(-1).tolist()) == list(range(640))


def test_deterministic_across_calls():
    for world in (1, 2, 4):
        for r in range(world):
            b1, a1 = _plan(world, r, epoch=3)
            b2, a2 = _plan(world, r, epoch=3)
            assert torch.equal(b1, b2)
            assert torch.equal(a1.dy, a2.dy) and torch.equal(a1.dx, a2.dx)
            assert torch.equal(a1.flip, a2.flip)


def test_different_seeds_differ():
    assert not torch.equal(_plan(1, 0, seed=1)[0], _plan(1, 0, seed=2)[0])


def test_augmentation_same_on_every_worker():
    """Draws are indexed by data-set position, so an image is augmented the same
    whatever the worker count or the shard it lands in."""
    _, ref = _plan(1, 0)
    assert ref.dy.shape == (N,)
    for world in (2, 4):
        for r in range(world):
            _, aug = _plan(world, r)
            assert torch.equal(aug.dy, ref.dy) and torch.equal(aug.dx, ref.dx)
            assert torch.equal(aug.flip, ref.flip)


def test_epoch_seed_no_collisions():
    seeds = {epoch_seed(s, e) for s in range(20) for e in range(20)}
    assert len(seeds) == 400
    assert epoch_seed(1, 0) != epoch_seed(0, 1)
    assert 0 <= epoch_seed(2**31 - 1, 10_000) < 2**63
