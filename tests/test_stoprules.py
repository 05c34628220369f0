"""launch.worker.stoprules: when the loop stops, evaluates and checkpoints, on plain state."""

from __future__ import annotations

import math
from types import SimpleNamespace

from ttabench.launch.worker.loop import LoopState
from ttabench.launch.worker.stoprules import StopRules


def _spec(**kw) -> SimpleNamespace:
    fields = dict(
        max_epochs=None,
        max_steps=None,
        time_budget=None,
        target=None,
        eval_every_samples=0,
        checkpoint_every_samples=0,
    )
    return SimpleNamespace(**{**fields, **kw})


def _state(**kw) -> LoopState:
    fields = dict(global_batch=32, steps_per_epoch=10, seed=0, next_eval=320, next_checkpoint=0)
    return LoopState(**{**fields, **kw})


def test_step_and_epoch_limits():
    rules = StopRules.of(_spec(max_epochs=2.55), steps_per_epoch=10, global_batch=32)
    assert rules.max_steps == 25 and rules.planned_steps() == 25
    assert rules.limit_reason(_state(step=24)) is None
    assert rules.limit_reason(_state(step=25)) == "max_epochs"
    # --max-steps below the epoch limit names the reason
    rules = StopRules.of(_spec(max_epochs=3, max_steps=7), steps_per_epoch=10, global_batch=32)
    assert rules.max_steps == 7 and rules.before_step(_state(step=7)) == "max_steps"
    # --max-steps above the epoch limit: the epochs end the run
    rules = StopRules.of(_spec(max_epochs=1, max_steps=70), steps_per_epoch=10, global_batch=32)
    assert rules.before_step(_state(step=10)) == "max_epochs"
    unlimited = StopRules.of(_spec(target=0.9), steps_per_epoch=10, global_batch=32)
    assert unlimited.max_steps == math.inf and unlimited.planned_steps() is None
    assert unlimited.before_step(_state(step=10**6)) is None


def test_time_budget_stops_before_the_step_that_would_cross_it():
    rules = StopRules.of(_spec(time_budget=10.0), steps_per_epoch=10, global_batch=32)
    # the slowest of the recent steps predicts the next one
    assert rules.before_step(_state(train_s=8.0, recent_steps=[0.5, 2.0, 0.5])) is None
    assert rules.before_step(_state(train_s=8.5, recent_steps=[0.5, 2.0, 0.5])) == "time_budget"


def test_evaluation_and_checkpoint_cadence():
    rules = StopRules.of(_spec(checkpoint_every_samples=96), steps_per_epoch=10, global_batch=32)
    assert rules.eval_every == 320  # default: one epoch of samples
    s = _state(samples=288, next_checkpoint=96)
    assert not rules.eval_due(s) and s.next_eval == 320
    s.samples = 320
    assert rules.eval_due(s) and s.next_eval == 640
    assert rules.checkpoint_due(s) and s.next_checkpoint == 192
    never = StopRules.of(_spec(eval_every_samples=64), steps_per_epoch=10, global_batch=32)
    assert never.eval_every == 64 and not never.checkpoint_due(_state(samples=10**6))


def test_target_and_final_evaluation():
    rules = StopRules.of(_spec(target=0.5), steps_per_epoch=10, global_batch=32)
    assert rules.target_reached(0.5) and not rules.target_reached(0.49)
    assert not StopRules.of(_spec(), steps_per_epoch=10, global_batch=32).target_reached(1.0)
    evaluated = _state(step=7, curve=[{"step": 7}])
    assert not rules.final_evaluation_due("max_steps", evaluated)
    assert rules.final_evaluation_due("time_budget", _state(step=7, curve=[{"step": 5}]))
    assert rules.final_evaluation_due("max_epochs", _state(step=7))
    assert not rules.final_evaluation_due("target", _state(step=7))
    assert not rules.final_evaluation_due("diverged", _state(step=7))
