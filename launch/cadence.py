"""A cadence, how often something happens in a run: every N epochs, steps or samples.

``--eval-every`` and ``--checkpoint-every`` are spelled as text (``1epoch``,
``0.5epoch``, ``200steps``, ``12800samples``); RunConfig (launch/config.py)
parses them once, with ``parse_cadence``, into a ``Cadence`` that the loop turns
into samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ttabench import UserError

_CADENCE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(epochs?|e|samples?|steps?)\s*$")


@dataclass(frozen=True)
class Cadence:
    """How often something happens: every `value` epochs, steps or samples."""

    value: float
    unit: str  # "epoch", "steps" or "samples"

    def samples(self, steps_per_epoch: int, global_batch: int) -> int:
        """The cadence in samples (at least one step's worth is not enforced: the loop checks after steps)."""
        scale = {"epoch": steps_per_epoch * global_batch, "steps": global_batch, "samples": 1}[self.unit]
        return max(1, int(round(self.value * scale)))


def parse_cadence(spec: str, flag: str = "--eval-every") -> Cadence:
    """'1epoch' -> Cadence(1.0, 'epoch'); '12800samples' -> (12800.0, 'samples'); '50steps' -> (50.0, 'steps')."""
    m = _CADENCE.match(spec) if isinstance(spec, str) else None
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"{flag} must look like 1epoch, 0.5epoch, 12800samples or 100steps, got {spec!r}")
    word = m.group(2)
    unit = "epoch" if word.startswith("e") else "steps" if word.startswith("st") else "samples"
    if unit != "epoch" and float(m.group(1)) < 1:
        raise UserError(f"{flag} must be at least 1 {unit.rstrip('s')}, got {spec!r}")
    return Cadence(float(m.group(1)), unit)
