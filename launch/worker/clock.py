"""The loop's one clock: ``time.perf_counter()``, paused in plain sight around evaluation."""

from __future__ import annotations

import time
from typing import Callable


class Clock:
    """Training time (evaluation excluded) and total time since run_start."""

    def __init__(self, sync: Callable[[], None], train_s: float = 0.0, total_s: float = 0.0):
        self._sync = sync  # device synchronize: a GPU clock read must see finished work
        self.start = None
        self.train_s = train_s  # a resumed run continues its clocks, it does not restart them
        self._total_before = total_s
        self._segment = None

    def begin(self):
        self._sync()
        self.start = self._segment = time.perf_counter()

    def pause(self):
        self._sync()
        now = time.perf_counter()
        self.train_s += now - self._segment
        self._segment = None
        return now

    def resume(self):
        self._segment = time.perf_counter()

    def train_elapsed(self) -> float:
        self._sync()
        return self.train_s + (time.perf_counter() - self._segment if self._segment else 0.0)

    def total_elapsed(self) -> float:
        return self._total_before + time.perf_counter() - self.start
