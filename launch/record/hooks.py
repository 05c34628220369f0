"""Side work hooks into the timed loop (progress display, results, mllog); it does not
live in it. The loop calls these in order: run_start, then per epoch epoch_start, step
(after each step), eval_start/evaluated (each evaluation), epoch_stop, and run_stop."""

from __future__ import annotations

import time


class Hooks:
    """Side work called by the loop; every method is optional."""

    def run_start(self, info: dict) -> None: ...
    def epoch_start(self, epoch: int) -> None: ...
    def step(self, info: dict) -> None: ...
    def eval_start(self, epoch: float) -> None: ...
    def evaluated(self, row: dict) -> None: ...
    def epoch_stop(self, epoch: int) -> None: ...
    def run_stop(self, result) -> None: ...


class HookList(Hooks):
    def __init__(self, hooks):
        self.hooks = [h for h in hooks if h is not None]
        self.overhead_s = 0.0  # time spent in side work while the clock ran

    def __getattribute__(self, name):
        if name in ("run_start", "epoch_start", "step", "eval_start", "evaluated", "epoch_stop", "run_stop"):
            hooks = object.__getattribute__(self, "hooks")

            def call(*args):
                t0 = time.perf_counter()
                for h in hooks:
                    getattr(h, name)(*args)
                self.overhead_s += time.perf_counter() - t0

            return call
        return object.__getattribute__(self, name)
