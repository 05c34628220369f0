"""Live progress on rank 0: a rich panel on a terminal, plain lines otherwise.

The display exists from the start of the worker: a status line says what is
happening before the clock starts (loading data, building the model,
compiling, rendezvous), and the results folder is shown from the first frame.
Nothing is shown as a number before it was measured ("–").

One epoch convention everywhere, as in curve.csv and summary.json: epochs
*completed*, as a fraction (step / steps per epoch), so "epoch 1.50" is
halfway through the second pass over the data.

Rendering is throttled (the panel redraws at most a few times a second, on
the training thread, with no background refresh thread competing for the
cores), and the time it takes is counted as harness overhead by the loop.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from ttabench.launch.record.hooks import Hooks

NONE = "–"  # shown for a value not measured yet


@dataclass
class StopLimits:
    """The limits a run stops at, as the display shows them (the loop's rules: worker/stoprules.py)."""

    max_epochs: float | None = None
    max_steps: int | None = None
    time_budget: float | None = None
    target: float | None = None


@dataclass
class _State:
    title: str
    thresholds: list[float]
    rules: StopLimits
    run_dir: str | None = None
    phase: str = "starting"
    steps_per_epoch: int | None = None
    step: int = 0
    samples: int = 0
    loss: float | None = None
    train_s: float = 0.0
    img_s: float | None = None
    last_eval: dict | None = None
    evals: list = field(default_factory=list)  # (train_time_s, accuracy)
    reached: dict = field(default_factory=dict)

    @property
    def epochs(self) -> float | None:
        return None if not self.steps_per_epoch else self.step / self.steps_per_epoch

    def on_eval(self, row: dict) -> None:
        self.last_eval = row
        self.evals.append((row["train_time_s"], row["accuracy"]))
        for thr in self.thresholds:
            if thr not in self.reached and row["accuracy"] >= thr:
                self.reached[thr] = row["train_time_s"]


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def nearest_stop(s: _State) -> tuple[str, float, float | None] | None:
    """(what, fraction done, ETA in training seconds or None) for the stop rule that is
    expected first: the one with the smallest ETA, else the one furthest along."""
    r, found = s.rules, []
    per_step = s.train_s / s.step if s.step else None
    step_limits = []
    if r.max_steps is not None:
        step_limits.append((r.max_steps, f"{r.max_steps} steps"))
    if r.max_epochs is not None and s.steps_per_epoch:
        step_limits.append((math.ceil(r.max_epochs * s.steps_per_epoch - 1e-9), f"{r.max_epochs:g} epochs"))
    for total, what in step_limits:
        eta = None if per_step is None else max(0.0, total - s.step) * per_step
        found.append((what, min(1.0, s.step / total), eta))
    if r.time_budget is not None:
        found.append(
            (f"budget {r.time_budget:g} s", min(1.0, s.train_s / r.time_budget), r.time_budget - s.train_s)
        )
    if r.target is not None:
        best = max((a for _, a in s.evals), default=0.0)
        eta = None
        if len(s.evals) >= 2:  # straight line through the last two evaluations
            (t0, a0), (t1, a1) = s.evals[-2:]
            if a1 > a0 and t1 > t0:
                eta = max(0.0, (r.target - a1) * (t1 - t0) / (a1 - a0) - (s.train_s - t1))
        found.append((f"target {100 * r.target:g}%", min(1.0, best / r.target), eta))
    if not found:
        return None
    return min(found, key=lambda f: (math.inf if f[2] is None else f[2], -f[1]))


def _progress_text(s: _State) -> str:
    near = nearest_stop(s)
    if near is None:
        return NONE
    what, frac, eta = near
    return f"{100 * frac:3.0f}% of {what}, ETA " + (NONE if eta is None else _clock(eta))


def _fmt_acc(row) -> str:
    return NONE if row is None else f"{100 * row['accuracy']:.2f}%"


class _Display(Hooks):
    """What both displays share: the state, the phases before the clock, the hooks' updates."""

    def __init__(self, title: str, thresholds, rules: StopLimits, run_dir: str | None = None):
        self.s = _State(title, list(thresholds), rules, run_dir=run_dir)

    def phase(self, text: str) -> None:
        """What the worker does now (loading data, compiling, ...)."""
        self.s.phase = text
        self._phase_changed()

    def set_run_dir(self, run_dir: str) -> None:
        self.s.run_dir = run_dir

    def set_thresholds(self, thresholds) -> None:
        self.s.thresholds = list(thresholds)

    def set_title(self, title: str) -> None:
        self.s.title = title

    def _phase_changed(self) -> None: ...

    def _update_step(self, info) -> None:
        s = self.s
        s.step, s.samples, s.loss, s.train_s = (
            info["step"],
            info["samples"],
            info["loss"],
            info["train_time_s"],
        )

    def run_start(self, info):
        self.s.steps_per_epoch = info["steps_per_epoch"]
        if info.get("max_steps") is not None:
            self.s.rules.max_steps = info["max_steps"]
        self.s.step = info.get("resumed_at_step") or 0
        self.phase("running")

    def eval_start(self, epoch):
        self.phase("evaluating")

    def evaluated(self, row):
        self.s.on_eval(row)
        self.phase("running")


class RichProgress(_Display):
    min_interval_s = 0.25

    def __init__(self, title, thresholds, rules, run_dir=None, console: Console | None = None):
        super().__init__(title, thresholds, rules, run_dir)
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self._last = 0.0
        self._window = []  # (time, samples) for a recent img/s
        self.live.start()
        self._render(force=True)

    def table(self) -> Table:
        s = self.s
        t = Table(title=escape(s.title), show_header=False, box=None, pad_edge=False)
        t.add_column(style="bold cyan", no_wrap=True)
        t.add_column()
        t.add_row("status", escape(s.phase))
        t.add_row("results", escape(s.run_dir or NONE), style=None)
        epochs = NONE if s.epochs is None else f"{s.epochs:.2f}"
        if s.rules.max_epochs is not None:
            epochs += f" of {s.rules.max_epochs:g}"
        t.add_row("epoch", epochs)
        t.add_row("step", f"{s.step}" + (f" of {s.rules.max_steps}" if s.rules.max_steps else ""))
        t.add_row("throughput", NONE if s.img_s is None else f"{s.img_s:,.0f} img/s")
        t.add_row("train loss", NONE if s.loss is None else f"{s.loss:.4f}")
        t.add_row("training time", f"{s.train_s:,.1f} s")
        row = s.last_eval
        t.add_row(
            "last accuracy", _fmt_acc(row) + ("" if row is None else f" at {row['train_time_s']:.1f} s")
        )
        if s.rules.target is not None:
            t.add_row("target", f"{100 * s.rules.target:.2f}%")
        marks = " ".join(
            ("[green]" if thr in s.reached else "[dim]") + f"{100 * thr:g}[/]" for thr in s.thresholds
        )
        t.add_row("thresholds", marks)
        near = nearest_stop(s)
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=1.0, completed=near[1] if near else 0.0, width=24), _progress_text(s))
        t.add_row("progress", bar)
        return t

    def _render(self, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._last >= self.min_interval_s:
            self._last = now
            self.live.update(self.table(), refresh=True)

    def _phase_changed(self) -> None:
        self._render(force=True)

    def step(self, info):
        self._update_step(info)
        s = self.s
        self._window.append((s.train_s, s.samples))
        if len(self._window) > 20:
            self._window.pop(0)
        (t0, n0), (t1, n1) = self._window[0], self._window[-1]
        if t1 > t0:
            s.img_s = (n1 - n0) / (t1 - t0)
        self._render()

    def evaluated(self, row):
        self._window.clear()  # evaluation pauses the clock: restart the rate window
        super().evaluated(row)

    def run_stop(self, result):
        self.s.phase = f"finished: {result.status} ({result.stop_reason})"
        self._render(force=True)
        self.live.stop()

    def close(self) -> None:
        """Stop the live display (a run that ended before run_stop)."""
        self.live.stop()


class PlainProgress(_Display):
    """A line per phase and per evaluation, and a step line at most every `every_s` seconds."""

    def __init__(self, title, thresholds, rules, run_dir=None, stream=None, every_s: float = 10.0):
        super().__init__(title, thresholds, rules, run_dir)
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self._last = time.perf_counter()
        self._prev = (0.0, 0)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def set_run_dir(self, run_dir: str) -> None:
        super().set_run_dir(run_dir)
        self._print(f"{self.s.title}: results: {run_dir}")

    def _phase_changed(self) -> None:
        if self.s.phase not in ("running", "evaluating"):
            self._print(f"{self.s.title}: {self.s.phase}")

    def run_start(self, info):
        super().run_start(info)
        self._print(
            f"{self.s.title}: run_start ({info['steps_per_epoch']} steps/epoch, "
            f"global batch {info['global_batch']})"
        )

    def step(self, info):
        self._update_step(info)
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            t0, n0 = self._prev
            rate = (info["samples"] - n0) / max(1e-9, info["train_time_s"] - t0)
            self._print(
                f"  epoch {self.s.epochs:.2f} step {info['step']}: loss {info['loss']:.4f}, "
                f"{rate:,.0f} img/s, train time {info['train_time_s']:.1f} s; {_progress_text(self.s)}"
            )
            self._last = now
            self._prev = (info["train_time_s"], info["samples"])

    def evaluated(self, row):
        super().evaluated(row)
        self._prev = (row["train_time_s"], row["samples"])
        reached = sum(1 for t in self.s.thresholds if t in self.s.reached)
        self._print(
            f"  eval at epoch {row['epoch']:.2f} (step {row['step']}): accuracy "
            f"{_fmt_acc(row)}, loss {row['loss']:.4f}, train time "
            f"{row['train_time_s']:.2f} s, thresholds reached {reached}/"
            f"{len(self.s.thresholds)}"
        )

    def run_stop(self, result):
        self._print(
            f"{self.s.title}: run_stop ({result.status}, {result.stop_reason}) after "
            f"{result.steps} steps, {result.epochs:.2f} epochs, train time {result.train_time_s:.2f} s"
        )

    def close(self) -> None: ...


def make(mode: str, title: str, thresholds, rules: StopLimits, run_dir: str | None = None):
    """The display for --progress MODE (None for "none"), shown from now on."""
    if mode == "none":
        return None
    if mode == "auto":
        mode = "rich" if sys.stdout.isatty() else "plain"
    cls = RichProgress if mode == "rich" else PlainProgress
    return cls(title, thresholds, rules, run_dir)
