"""What `ttabench predict` needs from each training step, recorded on every worker.

Per step: when the backward pass started; when each gradient bucket (DDP) or
each gradient (one process, Horovod) became ready, relative to that start,
with its bytes; how long each bucket's all-reduce really took on the
transport (before any emulated delay); when the backward pass returned; and
how long the optimizer step took. `summary()` keeps medians over the steps,
leaving out the first (DDP rebuilds its buckets after it and lazy
initialisation makes it slow), so the record stays small whatever the run's
length.

Also here: the emulated straggler (`--straggler RANK:FACTOR`), which slows
one worker's compute outside every collective.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable


class BackwardTimeline:
    """Gradient-ready events of each step's backward pass (see the module docstring)."""

    def __init__(self, kind: str):
        self.kind = kind  # "buckets" (DDP hands whole buckets) or "gradients" (one event per tensor)
        self._steps: list[dict] = []
        self._cur: dict | None = None

    def backward_start(self, now: float) -> None:
        self._cur = {"t0": now, "events": [], "backward_end": None, "done": None}

    def ready(self, now: float, nbytes: int) -> list | None:
        """A bucket or gradient is ready; returns its record, for `allreduce_done`."""
        if self._cur is None:  # a backward pass outside the timed loop (warm-up)
            return None
        event = [now - self._cur["t0"], int(nbytes), None]
        self._cur["events"].append(event)
        return event

    @staticmethod
    def allreduce_done(event: list | None, real_s: float) -> None:
        if event is not None:
            event[2] = real_s

    def backward_end(self, now: float) -> None:
        if self._cur is not None:
            self._cur["backward_end"] = now - self._cur["t0"]

    def step_end(self, now: float) -> None:
        """After the optimizer step."""
        cur, self._cur = self._cur, None
        if cur is None or cur["backward_end"] is None:
            return
        cur["optimizer_s"] = now - cur["t0"] - cur["backward_end"]
        self._steps.append(cur)

    def summary(self) -> dict:
        steps = self._steps[1:] or self._steps
        if steps:  # steps with the last step's bucket layout (DDP's may change after step 1)
            n = len(steps[-1]["events"])
            steps = [s for s in steps if len(s["events"]) == n]
        events = []
        for i in range(len(steps[-1]["events"]) if steps else 0):
            real = [s["events"][i][2] for s in steps if s["events"][i][2] is not None]
            events.append(
                {
                    "bytes": steps[-1]["events"][i][1],
                    "ready_s": statistics.median(s["events"][i][0] for s in steps),
                    "allreduce_real_s": statistics.median(real) if real else None,
                }
            )
        last_ready = [s["events"][-1][0] for s in steps if s["events"]]
        return {
            "kind": self.kind,
            "steps_recorded": len(self._steps),
            "steps_used": len(steps),
            # backward compute: until the last bucket/gradient was ready (with no
            # events, until backward returned)
            "backward_s": _median(last_ready or [s["backward_end"] for s in steps]),
            "backward_return_s": _median([s["backward_end"] for s in steps]),
            "optimizer_s": _median([s["optimizer_s"] for s in steps]),
            "events": events,
        }


def _median(values: list) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Straggler:
    """An emulated slow worker: after each step's compute, sleep (factor-1) x that compute."""

    factor: float
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep
    # as slept (it can exceed what was asked by the OS's wake-up latency)
    added_s: float = field(default=0.0, init=False)

    def after_compute(self, compute_s: float) -> None:
        delay = (self.factor - 1.0) * max(0.0, compute_s)
        if delay > 0:
            t0 = self.clock()
            self.sleep(delay)
            self.added_s += self.clock() - t0
