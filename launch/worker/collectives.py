"""Timing one communication pattern over message sizes: the worker side of
`ttabench bench allreduce` and `ttabench netlab bench`.

    python -m ttabench.launch.worker.collectives --pattern allgather --sizes 65536,1048576 --out R.json

(one process per rank, with torch.distributed's env:// variables set: MASTER_ADDR,
MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE; `netlab bench` starts
them inside the lab's namespaces, `bench allreduce` under torchrun.)

A round: a barrier, then the pattern once, timed on each rank; the round's
time is the MAX over ranks (a tiny all-reduce after the round, untimed).
A barrier lets the ranks go up to tens of ms apart where its own messages cross
shaped links and many processes share few cores, and a rank that starts late
delays every rank that waits for its data. `--start clock` (ranks on ONE machine
only, as in a lab's namespaces: one wall clock) starts them together instead:
they agree on an instant on that clock (START_MARGIN_S after the latest rank
asked, or the gap or twice the last agreement's time if longer) and each sleeps
until it; a rank that got the instant late starts late, which `rank_start_s`
shows.
`--warmup` rounds first (not kept), then `--repeat` timed ones. Patterns
(n = the size, float32 buffers; as the gloo backend runs them, see
launch/net/gloo.py for the algorithm each one is):

    allreduce       dist.all_reduce of n bytes (through Comm, so an emulated link applies)
    allgather       dist.all_gather: n bytes from each rank, p x n in the result
    broadcast       dist.broadcast of n bytes from rank 0
    ring-exchange   each rank receives n bytes from rank-1 and sends n to rank+1 (irecv posted first)
    neighbour-exchange
                    each rank sends n bytes to rank-1 and to rank+1 and receives n from each
                    (decentralized SGD's exchange, comm_counting.exchange; at least 3 ranks)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from ttabench.divisions.results import atomic_write_json

START_MARGIN_S = 0.1

PATTERNS = ("allreduce", "allgather", "broadcast", "ring-exchange", "neighbour-exchange")


def pattern_op(pattern: str, comm, nbytes: int):
    """A callable that runs `pattern` once on an n-byte float32 buffer (buffers made here)."""
    import torch
    import torch.distributed as dist

    from ttabench.launch.worker.comm_counting import exchange

    buf = torch.ones(max(1, nbytes // 4), dtype=torch.float32)
    p, r = comm.world_size, comm.rank
    if pattern == "allreduce":
        return lambda: comm.allreduce_tensor(buf)
    if pattern == "allgather":
        out = [torch.empty_like(buf) for _ in range(p)]
        return lambda: dist.all_gather(out, buf)
    if pattern == "broadcast":
        return lambda: dist.broadcast(buf, src=0)
    if pattern == "ring-exchange":
        got = [torch.empty_like(buf)]
        return lambda: exchange(buf, ((r + 1) % p,), ((r - 1) % p,), got)
    if pattern == "neighbour-exchange":
        return lambda: exchange(buf, ((r - 1) % p, (r + 1) % p))
    raise ValueError(f"unknown pattern {pattern!r}")


def time_pattern(
    comm, pattern: str, nbytes: int, warmup: int, repeat: int, gap_s: float = 0.0, start: str = "barrier"
) -> dict:
    """The pattern's round times (max over ranks) for an n-byte buffer; `gap_s` idle before each,
    `start` "barrier" or "clock" (module docstring).

    `rank_done_s`: per round, when each rank finished, counted from the first rank's start
    (the order in which a tree's ranks got their data); `rank_start_s` likewise when each
    rank started (how unevenly the barrier or the agreed instant let them go). Comparable
    only where the ranks share one clock: processes on one machine (a lab's namespaces, one
    node under torchrun)."""
    op = pattern_op(pattern, comm, nbytes)
    p, rank = comm.world_size, comm.rank
    times, started, done = [], [], []
    agree_s = 0.0  # how long the last agreement on a start instant took (clock start)
    for i in range(warmup + repeat):
        agree_s = _start_together(comm, gap_s, start, agree_s)
        t0 = time.perf_counter()
        op()
        t1 = time.perf_counter()
        # one untimed max-all-reduce: the round's time, and every rank's start and end in its slot
        slots = [t1 - t0] + [0.0] * (2 * p)
        slots[1 + 2 * rank], slots[2 + 2 * rank] = t0, t1
        got = comm.allreduce(slots, op="max")
        if i >= warmup:
            times.append(got[0])
            first = min(got[1::2])
            started.append([t - first for t in got[1::2]])
            done.append([end - first for end in got[2::2]])
    return {
        "bytes": max(1, nbytes // 4) * 4,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
        "rank_start_s": started,
        "rank_done_s": done,
    }


def _start_together(comm, gap_s: float, start: str, agree_s: float = 0.0) -> float:
    """Returns when the round may start: idle `gap_s` first (a shaped link's bucket fills up).
    Clock start: the margin covers twice `agree_s`, the slowest rank's time to agree last
    round (returned for the next: many ranks, a long --delay); barrier: 0."""
    if start == "clock":
        asked = time.time()
        latest, slowest = comm.allreduce([asked, agree_s], op="max")
        at = latest + max(gap_s, START_MARGIN_S, 2 * slowest)
        took = time.time() - asked
        time.sleep(max(0.0, at - time.time()))
        return took
    if gap_s > 0:
        time.sleep(gap_s)
    comm.barrier()
    return 0.0


def tcp_retransmits() -> int:
    """TCP segments this network namespace has retransmitted (/proc/net/snmp, Tcp RetransSegs)."""
    try:
        with open("/proc/net/snmp", encoding="ascii") as f:
            tcp = [line.split() for line in f if line.startswith("Tcp:")]
        return int(tcp[1][tcp[0].index("RetransSegs")])
    except (OSError, ValueError, IndexError):
        return 0


def main(argv=None) -> int:
    import torch

    from ttabench.launch.worker import comm as comm_mod

    p = argparse.ArgumentParser(prog="python -m ttabench.launch.worker.collectives")
    p.add_argument("--pattern", required=True, help="one or several of PATTERNS, comma-separated")
    p.add_argument("--sizes", required=True, help="bytes, comma-separated")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--gap", type=float, default=0.0, help="seconds idle before each round")
    p.add_argument("--start", choices=("barrier", "clock"), default="barrier", help="how a round starts")
    p.add_argument("--collective-timeout", type=float, default=120.0)
    p.add_argument("--out", required=True, help="rank 0 writes the rows here (JSON)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    comm = comm_mod.init("torchrun", "gloo", torch.device("cpu"), args.collective_timeout)
    try:
        rows = []
        for pattern in args.pattern.split(","):
            for nbytes in (int(s) for s in args.sizes.split(",")):
                before = tcp_retransmits() if comm.local_rank == 0 else 0  # one count per namespace
                r = time_pattern(comm, pattern, nbytes, args.warmup, args.repeat, args.gap, args.start)
                sent_again = tcp_retransmits() - before if comm.local_rank == 0 else 0
                r["tcp_retransmits"] = int(comm.allreduce([float(sent_again)])[0])  # every round, all hosts
                rows.append({"pattern": pattern, **r})
                if comm.rank == 0:  # after each size: an interrupted bench keeps what it measured
                    atomic_write_json(
                        args.out, {"workers": comm.world_size, "pattern": args.pattern, "rows": rows}
                    )
    finally:
        comm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
