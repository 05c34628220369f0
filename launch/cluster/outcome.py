"""How a multi-node run ended, from every node's launcher at once.

Each node's launcher sees only its own ranks: when node 1's worker is killed,
node 1 knows `rank 1 killed by SIGKILL` and node 0 only that its peer went
away. So each launcher whose workers ended abnormally writes its view to
``node-K.outcome.json`` in the run folder and then, holding a lock on the
folder, merges every node's view (the root cause first) into summary.json.
The launcher that finishes last sees every view, whatever the order.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os

from ttabench.divisions.results import atomic_write_json, read_json

LOCK = ".outcome.lock"


def _order(r: dict) -> tuple:
    # A rank killed by a signal is the root cause; its peers fail on the broken link.
    return (r.get("signal") != "SIGKILL", r.get("signal") is None, r.get("rank", 0))


def clear_outcome(run_dir: str, node_rank: int) -> None:
    """Remove what an earlier start of this node recorded (a resumed or restarted run)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(run_dir, f"node-{node_rank}.outcome.json"))


@contextlib.contextmanager
def merged(run_dir: str, node_rank: int, ranks: list[dict], interrupted: bool):
    """Record this node's view; yield (every node's ranks, root cause first; interrupted on any
    node) while holding the run folder's lock, so the caller's summary update is not lost."""
    atomic_write_json(
        os.path.join(run_dir, f"node-{node_rank}.outcome.json"),
        {"node_rank": node_rank, "ranks": ranks, "interrupted": interrupted},
    )
    with open(os.path.join(run_dir, LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        views = [read_json(p) for p in sorted(glob.glob(os.path.join(run_dir, "node-*.outcome.json")))]
        every = {}
        for view in views:
            for r in view.get("ranks", []):
                every[r.get("rank")] = r
        yield sorted(every.values(), key=_order), any(v.get("interrupted") for v in views)
