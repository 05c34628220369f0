"""The live panel and the plain lines, captured through rich's recording console at a fixed width."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from ttabench.launch.record.progress import NONE, PlainProgress, RichProgress, StopLimits, nearest_stop
from ttabench.launch.record.tables import print_run_summary

WIDTH = 100
RUN_DIR = "results/sys/resnet20/closed/20261201-101010-abcdef"


def terminal() -> Console:
    return Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True, color_system=None)


def frame(display: RichProgress) -> str:
    """One frame of the panel as text, as a terminal of WIDTH columns shows it."""
    c = terminal()
    c.print(display.table())
    return c.export_text()


def field(text: str, label: str) -> str:
    (line,) = [x for x in text.splitlines() if x.lstrip().startswith(label)]
    return line.split(label, 1)[1].strip()


def rich_display(rules: StopLimits) -> RichProgress:
    return RichProgress("resnet20 closed", [0.5, 0.6], rules, RUN_DIR, console=terminal())


def step(d, n, train_s, loss=2.0, per_step=32):
    d.step({"step": n, "samples": n * per_step, "loss": loss, "train_time_s": train_s, "epoch": 0})


def test_first_frame_shows_no_number_before_it_is_measured():
    d = rich_display(StopLimits(max_epochs=2))
    text = frame(d)
    assert "nan" not in text and "0 img/s" not in text
    assert field(text, "train loss") == NONE
    assert field(text, "throughput") == NONE
    assert field(text, "last accuracy") == NONE
    assert field(text, "status") == "starting"
    assert field(text, "results") == RUN_DIR  # shown from the first frame, whole
    d.close()


def test_status_follows_the_phases_before_and_after_the_clock_starts():
    d = rich_display(StopLimits(max_steps=4))
    d.phase("loading data")
    assert field(frame(d), "status") == "loading data"
    d.phase("compiling (torch.compile default, before the clock starts)")
    assert field(frame(d), "status").startswith("compiling")
    d.run_start({"steps_per_epoch": 10, "global_batch": 32, "max_steps": 4})
    assert field(frame(d), "status") == "running"
    d.eval_start(0.1)
    assert field(frame(d), "status") == "evaluating"
    d.evaluated({"epoch": 0.1, "step": 1, "accuracy": 0.55, "loss": 1.0, "train_time_s": 2.0, "samples": 32})
    text = frame(d)
    assert field(text, "status") == "running"
    assert field(text, "last accuracy") == "55.00% at 2.0 s"
    d.run_stop(SimpleNamespace(status="success", stop_reason="max_steps"))
    # What the live display left on the terminal is its last frame.
    assert "finished: success (max_steps)" in d.console.export_text()


def test_epochs_are_counted_as_completed_fractions_everywhere():
    d = rich_display(StopLimits(max_epochs=2))
    d.run_start({"steps_per_epoch": 10, "global_batch": 32, "max_steps": None})
    step(d, 15, 30.0)
    text = frame(d)
    assert field(text, "epoch") == "1.50 of 2"
    assert field(text, "step") == "15"
    out = io.StringIO()
    p = PlainProgress("t", [0.5], StopLimits(max_epochs=2), stream=out, every_s=0.0)
    p.run_start({"steps_per_epoch": 10, "global_batch": 32, "max_steps": None})
    step(p, 15, 30.0)
    p.evaluated(
        {"epoch": 1.5, "step": 15, "accuracy": 0.4, "loss": 1.0, "train_time_s": 30.0, "samples": 480}
    )
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("  epoch 1.50 step 15:")
    assert lines[-1].startswith("  eval at epoch 1.50 (step 15)")
    d.close()


def test_progress_bar_heads_for_the_nearest_stop_rule():
    d = rich_display(StopLimits(max_epochs=2, time_budget=100.0))
    d.run_start({"steps_per_epoch": 10, "global_batch": 32, "max_steps": None})
    step(d, 5, 10.0)  # 2 s a step: 15 steps (30 s) left to 2 epochs, 90 s to the budget
    assert nearest_stop(d.s) == ("2 epochs", 0.25, 30.0)
    assert field(frame(d), "progress").endswith("25% of 2 epochs, ETA 0:30")
    d.s.rules.time_budget = 20.0  # now the budget comes first
    assert nearest_stop(d.s) == ("budget 20 s", 0.5, 10.0)
    d.close()


def test_target_eta_extrapolates_the_last_two_evaluations():
    d = rich_display(StopLimits(target=0.9))
    d.run_start({"steps_per_epoch": 10, "global_batch": 32, "max_steps": None})
    assert nearest_stop(d.s) == ("target 90%", 0.0, None)
    assert field(frame(d), "progress").endswith(f"0% of target 90%, ETA {NONE}")
    for t, acc in ((10.0, 0.5), (20.0, 0.7)):
        d.evaluated(
            {"epoch": 1.0, "step": 10, "accuracy": acc, "loss": 1.0, "train_time_s": t, "samples": 320}
        )
    step(d, 11, 22.0)
    what, frac, eta = nearest_stop(d.s)
    assert what == "target 90%" and abs(frac - 0.7 / 0.9) < 1e-9 and abs(eta - 8.0) < 1e-9
    d.close()


def _summary(budget=None):
    metrics = {"final_accuracy": 0.61, "target": None, "target_tta_s": None}
    if budget is not None:
        metrics.update(budget_s=budget, aat=0.6)
    return {
        "benchmark": "resnet20",
        "division": "closed",
        "world_size": 1,
        "synthetic": True,
        "status": "success",
        "stop_reason": "max_epochs",
        "steps": 117,
        "epochs": 3.0,
        "train_time_s": 25.4594,
        "total_time_s": 31.0,
        "throughput_img_s": 590.0,
        "metrics": metrics,
    }


def test_plain_summary_never_wraps_and_shows_aat_only_with_a_budget():
    long_dir = "results/" + "a-very-long-system-name-" * 4 + "/resnet20/closed/20261201-101010-abcdef"
    out = io.StringIO()
    print_run_summary(long_dir, Console(file=out, width=80), summary=_summary())
    text = out.getvalue()
    assert (
        "[synthetic data: not a closed-division result]: status success (max_epochs), 117 steps, 3.00 epochs"
        in text
    )
    assert (
        "training time 25.46 s (evaluation excluded), total 31.00 s, 590 img/s, final accuracy 61.00%" in text
    )
    assert f"results: {long_dir}\n" in text  # the path whole, on one line
    assert "AAT" not in text
    out = io.StringIO()
    print_run_summary(long_dir, Console(file=out, width=80), summary=_summary(budget=30.0))
    assert "| AAT @ 30 s | 60.00% |" in out.getvalue()


def test_summary_of_a_run_interrupted_before_any_evaluation_says_not_evaluated():
    s = dict(_summary(), status="interrupted", stop_reason="interrupted", steps=3, epochs=3 / 39)
    s.update(
        train_time_s=0.75, throughput_img_s=3 * 128 / 0.75, metrics=dict(s["metrics"], final_accuracy=None)
    )
    out = io.StringIO()
    print_run_summary("r", Console(file=out, width=80), summary=s)
    assert (
        "training time 0.75 s (evaluation excluded), total 31.00 s, 512 img/s, not evaluated"
        in out.getvalue()
    )
    assert "0.00%" not in out.getvalue()
