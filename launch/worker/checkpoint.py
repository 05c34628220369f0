"""Checkpoints: what a run needs to continue exactly where it stopped.

``checkpoint.pt`` in the run folder holds rank 0's model and optimizer
state, the loop's position (epoch, step within it, samples, next evaluation
and checkpoint), its clocks (training time and total time so far), the
curve so far, the RNG state, and how many mllog lines the run had written at
that moment. Sync SGD keeps every worker's weights and optimizer state equal,
so rank 0's copy serves all of them.

It is written atomically (never half a checkpoint) and read with
``torch.load(weights_only=True)``: a checkpoint is data, never code.
A resumed run continues its clocks: training time picks up from the
checkpoint, and the work done after it by the run that died is discarded
(its evaluations are dropped from curve.csv and mllog.txt), so the metrics
mean the same as for a run that never stopped.
"""

from __future__ import annotations

import io
import os

from ttabench import UserError

FILE = "checkpoint.pt"
FORMAT = 1


def save(run_dir: str, *, model, optimizer, loop_state: dict, mllog_lines: int) -> None:
    import torch
    from ttabench.divisions.results import atomic_write_bytes

    state = {
        "format": FORMAT,
        "loop": loop_state,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "mllog_lines": mllog_lines,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(os.path.join(run_dir, FILE), buf.getvalue())


def load(run_dir: str) -> dict | None:
    """The checkpoint of a run folder, or None if it has none."""
    import torch

    path = os.path.join(run_dir, FILE)
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign, or carrying code: all refused
        raise UserError(
            f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a ttabench checkpoint (format {FORMAT})")
    return state


def restore(state: dict, model, optimizer) -> dict:
    """Load weights, optimizer state and RNG; returns the loop's state to resume from."""
    import torch

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return state["loop"]


def count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def truncate_log(path: str, lines: int) -> None:
    """Keep the first `lines` lines of the run's mllog.txt (what the checkpoint covered)."""
    from ttabench.divisions.results import atomic_write_bytes

    with open(path, "rb") as f:
        kept = f.readlines()[:lines]
    atomic_write_bytes(path, b"".join(kept))
