"""Checkpoints: what a run needs to continue exactly where it stopped.

``checkpoint.pt`` in the run folder holds a ``Checkpoint``: the loop's state
(``loop.LoopState``: position, cadences, clocks, the curve so far, seed), rank
0's model and optimizer state, the RNG state, how many mllog lines the run
had written at that moment, and the run's fixed summary fields. Sync SGD keeps
every worker's weights and optimizer state equal, so rank 0's copy serves all
of them.

It is written atomically (never half a checkpoint) and read with
``torch.load(weights_only=True)``: a checkpoint is data, never code.
A resumed run continues its clocks: training time picks up from the
checkpoint, and the work done after it by the run that died is discarded
(its evaluations are dropped from curve.csv and mllog.txt), so the metrics
mean the same as for a run that never stopped.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass

import torch

from ttabench import UserError, error_line
from ttabench.divisions.results import CHECKPOINT_FILE, atomic_write_bytes
from ttabench.launch.worker.loop import LoopState

FILE = CHECKPOINT_FILE
FORMAT = 2  # 2: one LoopState, and the summary fields a resumed run keeps


@dataclass
class Checkpoint:
    loop: LoopState
    model: dict  # state_dict, on the CPU
    optimizer: dict  # state_dict
    rng: torch.Tensor  # torch's global RNG state
    mllog_lines: int  # mllog.txt lines written when it was taken
    summary: dict  # summary.json's fields fixed at the start (Recorder.base)

    def to_dict(self) -> dict:
        """Plain data (weights_only loads refuse classes), with the format number."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dict(d, format=FORMAT, loop=self.loop.to_dict())


def cpu_state_dict(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def write_torch(path: str, obj) -> None:
    """torch.save, written atomically (temp file + rename)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save(run_dir: str, *, model, optimizer, loop_state: LoopState, mllog_lines: int, summary: dict) -> None:
    ckpt = Checkpoint(
        loop=loop_state,
        model=cpu_state_dict(model),
        optimizer=optimizer.state_dict(),
        rng=torch.get_rng_state(),
        mllog_lines=mllog_lines,
        summary=summary,
    )
    write_torch(os.path.join(run_dir, FILE), ckpt.to_dict())


def load(run_dir: str) -> Checkpoint | None:
    """The checkpoint of a run folder, or None if it has none."""
    path = os.path.join(run_dir, FILE)
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign, or carrying code: all refused
        raise UserError(f"cannot read checkpoint {path}: {error_line(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a ttabench checkpoint (format {FORMAT})")
    fields = {f.name for f in dataclasses.fields(Checkpoint)}
    try:
        return Checkpoint(**dict({k: state[k] for k in fields}, loop=LoopState.from_dict(state["loop"])))
    except (KeyError, TypeError) as e:
        raise UserError(f"{path} is an incomplete ttabench checkpoint: {error_line(e)}") from None


def restore(ckpt: Checkpoint, model, optimizer) -> LoopState:
    """Load weights, optimizer state and RNG; returns the loop's state to resume from."""
    model.load_state_dict(ckpt.model)
    optimizer.load_state_dict(ckpt.optimizer)
    torch.set_rng_state(ckpt.rng)
    return ckpt.loop


def truncate_log(path: str, lines: int) -> None:
    """Keep the first `lines` lines of the run's mllog.txt (what the checkpoint covered)."""
    with open(path, "rb") as f:
        kept = f.readlines()[:lines]
    atomic_write_bytes(path, b"".join(kept))
