"""When the timed loop stops, evaluates and checkpoints: the stop rules, over the loop's state.

- A step or epoch limit (``--max-steps``, ``--max-epochs``) stops before the
  step that would pass it.
- A time budget (AAT mode) stops before a step that would cross it; the next
  step is predicted by the slowest of the last few (``LoopState.last_step_s``).
- A target accuracy stops at the evaluation that reaches it.
- Evaluations come every ``eval_every`` samples (default: one epoch),
  checkpoints every ``checkpoint_every`` samples; a run stopped by a limit
  ends with an evaluation of where it stopped.

No clock and no collectives here: the loop (loop.py) agrees on the times
across workers first, so every worker takes the same decision at the same step.
``spec`` below is the loop's ``LoopSpec`` and ``s`` its ``LoopState``, by their
fields: loop.py imports this module, so this one does not import loop.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LIMITS = ("max_epochs", "max_steps", "time_budget")  # the reasons that end with an evaluation


@dataclass(frozen=True)
class StopRules:
    max_steps: float  # the step limit of --max-steps and --max-epochs; math.inf: none
    step_flag: int | None  # --max-steps: it names the reason when its limit is the one reached
    time_budget: float | None  # seconds of training time
    target: float | None  # accuracy
    eval_every: int  # samples
    checkpoint_every: int  # samples; 0 = never

    @classmethod
    def of(cls, spec, steps_per_epoch: int, global_batch: int) -> StopRules:
        max_steps = math.inf
        if spec.max_epochs is not None:
            max_steps = math.floor(spec.max_epochs * steps_per_epoch + 1e-9)
        if spec.max_steps is not None:
            max_steps = min(max_steps, spec.max_steps)
        return cls(
            max_steps=max_steps,
            step_flag=spec.max_steps,
            time_budget=spec.time_budget,
            target=spec.target,
            eval_every=spec.eval_every_samples or steps_per_epoch * global_batch,
            checkpoint_every=spec.checkpoint_every_samples,
        )

    def planned_steps(self) -> int | None:
        """The step limit, None without one (the run_start event's max_steps)."""
        return None if self.max_steps == math.inf else self.max_steps

    def limit_reason(self, s) -> str | None:
        """'max_steps' or 'max_epochs' once the step limit is reached, else None."""
        if s.step < self.max_steps:
            return None
        return "max_steps" if self.step_flag is not None and s.step >= self.step_flag else "max_epochs"

    def before_step(self, s) -> str | None:
        """The reason to stop before the next step, or None to take it."""
        reason = self.limit_reason(s)
        if reason is not None:
            return reason
        if self.time_budget is not None and s.train_s + s.last_step_s() > self.time_budget:
            return "time_budget"  # the next step would cross it: evaluate now, within budget
        return None

    def eval_due(self, s) -> bool:
        """Whether an evaluation is due after this step; if so the next one is scheduled."""
        if s.samples < s.next_eval:
            return False
        s.next_eval += self.eval_every
        return True

    def checkpoint_due(self, s) -> bool:
        """Whether a checkpoint is due after this step; if so the next one is scheduled."""
        if not self.checkpoint_every or s.samples < s.next_checkpoint:
            return False
        s.next_checkpoint += self.checkpoint_every
        return True

    def target_reached(self, accuracy: float) -> bool:
        return self.target is not None and accuracy >= self.target

    def final_evaluation_due(self, reason: str | None, s) -> bool:
        """A run stopped by a limit is evaluated where it stopped (unless it just was)."""
        return reason in LIMITS and (not s.curve or s.curve[-1]["step"] != s.step)
