"""What the timed loop returns: its outcome (``LoopResult``) and this rank's time breakdown.

The loop (loop.py) keeps this rank's own times as it runs (``Times``); at the stop
``time_breakdown`` assembles them with the communication's (waits, the emulated
link's delay, the backward pass's buckets for `ttabench predict`, the bytes
handed to training's operations) into summary.json's ``time_breakdown.per_rank``
entry. Compute excludes the communication wait and the straggler's sleep, which
both fall inside the compute window.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoopResult:
    status: str  # success | diverged | interrupted | failed
    stop_reason: str
    curve: list = field(default_factory=list)
    steps: int = 0
    samples: int = 0
    epochs: float = 0.0
    train_time_s: float = 0.0
    total_time_s: float = 0.0
    diverged_step: int | None = None
    breakdown: dict = field(default_factory=dict)  # this rank's time breakdown


@dataclass
class Times:
    """This rank's own time breakdown (seconds)."""

    data_s: float = 0.0
    compute_s: float = 0.0
    control_s: float = 0.0
    eval_s: float = 0.0
    checkpoint_s: float = 0.0


def time_breakdown(
    comm,
    times: Times,
    *,
    train_local: float,
    total_s: float,
    comm_wait_s: float,
    straggler_s: float,
    hooks_s: float,
    steps: int,
) -> dict:
    """This rank's time breakdown (seconds) at the stop; `steps`: those this process trained."""
    return {
        "rank": comm.rank,
        "train_s": train_local,  # their MAX over ranks is the run's training time
        "total_s": total_s,
        "compute_s": times.compute_s - comm_wait_s - straggler_s,  # both fall inside the compute window
        "comm_wait_s": comm_wait_s,
        "allreduce_busy_s": comm.allreduce_busy_s,
        "network_delay_s": comm.emulator.added_s if comm.emulator else 0.0,
        "data_s": times.data_s,
        "control_s": times.control_s,
        "hooks_s": hooks_s,
        "eval_s": times.eval_s,
        "checkpoint_s": times.checkpoint_s,
        "straggler_s": straggler_s,
        "backward": comm.timeline.summary(),  # for `ttabench predict`
        # bytes this rank handed to training's collectives and point-to-point operations
        "comm_bytes": comm.algorithm.ops.summary(steps),
    }
