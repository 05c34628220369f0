"""Tests on a real gloo group: a function run by every rank of a group of fresh processes.

    results = on_gloo(fn, 2, arg)  # fn(rank, world, arg) in 2 processes; {rank: what it returned}

`fn` is a module-level function (the processes are spawned: they import its module), runs
with one thread on a group over TCP on 127.0.0.1, and returns something picklable.
"""

from __future__ import annotations

import datetime
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT_S = 120  # a collective that waits longer fails the test instead of hanging it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, fn, args: tuple, out) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        out[rank] = fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def on_gloo(fn, world: int, *args) -> dict:
    """fn(rank, world, *args) on every rank of a `world`-process gloo group; {rank: its result}."""
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(world, free_port(), fn, args, out), nprocs=world, join=True)
        return dict(out)
