"""A run stopped because the scheduler's time limit is near: the signal, the exit code, the line.

Slurm sends SIGUSR1 to every process of the job MARGIN seconds before the limit
(the sbatch script asks for it: --signal=USR1@MARGIN). The workers stop at the
next step as on an interruption and record `interrupted` with stop_reason
`time_limit`; the launcher ignores the signal and waits for them. The run then
exits 124, as `timeout` does, where an interruption exits 130.
"""

from __future__ import annotations

import signal

SIGNAL = signal.SIGUSR1
EXIT = 124
REASON = "time_limit"


def line(run_dir: str | None) -> str:
    """What the terminal (the job's log) says, once."""
    return (
        "ttabench: stopped because the job's time limit is near (SIGUSR1 from the scheduler); "
        f"recorded as stop_reason {REASON} in {run_dir}"
    )
