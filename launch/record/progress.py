"""Live progress on rank 0: a rich panel on a terminal, plain lines otherwise.

Rendering is throttled (the panel redraws at most a few times a second, on
the training thread, with no background refresh thread competing for the
cores), and the time it takes is counted as harness overhead by the loop.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table
from ttabench.launch.worker.hooks import Hooks


class _State:
    def __init__(self, title: str, thresholds: list[float], target: float | None):
        self.title = title
        self.thresholds = thresholds
        self.target = target
        self.epoch = self.step = self.samples = 0
        self.loss = float("nan")
        self.train_s = 0.0
        self.img_s = 0.0
        self.max_steps = None
        self.last_eval = None  # row dict
        self.reached: dict[float, float] = {}

    def on_eval(self, row: dict) -> None:
        self.last_eval = row
        for thr in self.thresholds:
            if thr not in self.reached and row["accuracy"] >= thr:
                self.reached[thr] = row["train_time_s"]


def _fmt_acc(row) -> str:
    return "-" if row is None else f"{100 * row['accuracy']:.2f}%"


class RichProgress(Hooks):
    min_interval_s = 0.25

    def __init__(self, title: str, thresholds, target, console: Console | None = None):
        self.s = _State(title, thresholds, target)
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self._last = 0.0
        self._window = []  # (time, samples) for a recent img/s

    def _table(self) -> Table:
        s = self.s
        t = Table(title=s.title, show_header=False, box=None, pad_edge=False)
        t.add_column(style="bold cyan", no_wrap=True)
        t.add_column()
        steps = f"{s.step}" + (f" / {s.max_steps}" if s.max_steps else "")
        t.add_row("epoch / step", f"{s.epoch} / {steps}")
        t.add_row("throughput", f"{s.img_s:,.0f} img/s")
        t.add_row("train loss", f"{s.loss:.4f}")
        t.add_row("training time", f"{s.train_s:,.1f} s")
        row = s.last_eval
        t.add_row(
            "last accuracy", _fmt_acc(row) + ("" if row is None else f" at {row['train_time_s']:.1f} s")
        )
        if s.target is not None:
            t.add_row("target", f"{100 * s.target:.2f}%")
        marks = " ".join(
            ("[green]" if thr in s.reached else "[dim]") + f"{100 * thr:g}[/]" for thr in s.thresholds
        )
        t.add_row("thresholds", marks)
        return t

    def _render(self, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._last >= self.min_interval_s:
            self._last = now
            self.live.update(self._table(), refresh=True)

    def run_start(self, info):
        self.s.max_steps = info.get("max_steps")
        self.live.start()
        self._render(force=True)

    def epoch_start(self, epoch):
        self.s.epoch = epoch

    def step(self, info):
        s = self.s
        s.step, s.samples, s.loss, s.train_s = (
            info["step"],
            info["samples"],
            info["loss"],
            info["train_time_s"],
        )
        self._window.append((s.train_s, s.samples))
        if len(self._window) > 20:
            self._window.pop(0)
        (t0, n0), (t1, n1) = self._window[0], self._window[-1]
        if t1 > t0:
            s.img_s = (n1 - n0) / (t1 - t0)
        self._render()

    def evaluated(self, row):
        self.s.on_eval(row)
        self._window.clear()  # evaluation pauses the clock: restart the rate window
        self._render(force=True)

    def run_stop(self, result):
        self._render(force=True)
        self.live.stop()


class PlainProgress(Hooks):
    """One line per evaluation, and a step line at most every `every_s` seconds."""

    def __init__(self, title: str, thresholds, target, stream=None, every_s: float = 10.0):
        self.s = _State(title, thresholds, target)
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self._last = time.perf_counter()
        self._prev = (0.0, 0)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def run_start(self, info):
        self._print(
            f"{self.s.title}: run_start ({info['steps_per_epoch']} steps/epoch, "
            f"global batch {info['global_batch']})"
        )

    def step(self, info):
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            t0, n0 = self._prev
            rate = (info["samples"] - n0) / max(1e-9, info["train_time_s"] - t0)
            self._print(
                f"  epoch {info['epoch']} step {info['step']}: loss {info['loss']:.4f}, "
                f"{rate:,.0f} img/s, train time {info['train_time_s']:.1f} s"
            )
            self._last = now
            self._prev = (info["train_time_s"], info["samples"])

    def evaluated(self, row):
        self.s.on_eval(row)
        self._prev = (row["train_time_s"], row["samples"])
        reached = sum(1 for t in self.s.thresholds if t in self.s.reached)
        self._print(
            f"  eval at epoch {row['epoch']:g} (step {row['step']}): accuracy "
            f"{_fmt_acc(row)}, loss {row['loss']:.4f}, train time "
            f"{row['train_time_s']:.2f} s, thresholds reached {reached}/"
            f"{len(self.s.thresholds)}"
        )

    def run_stop(self, result):
        self._print(
            f"{self.s.title}: run_stop ({result.status}, {result.stop_reason}) after "
            f"{result.steps} steps, train time {result.train_time_s:.2f} s"
        )


def make(mode: str, title: str, thresholds, target):
    if mode == "none":
        return None
    if mode == "auto":
        mode = "rich" if sys.stdout.isatty() else "plain"
    cls = RichProgress if mode == "rich" else PlainProgress
    return cls(title, thresholds, target)
