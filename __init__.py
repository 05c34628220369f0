"""ttabench: time-to-accuracy benchmarks for distributed training.

The repository's top-level folders are this package's sub-packages:
``reference_impls`` (closed-division workloads), ``divisions`` (rules,
metrics, submissions) and ``launch`` (CLI, launchers, the timed loop).
"""

__version__ = "0.1.0"


class UserError(Exception):
    """A problem the user can fix (bad path, corrupt file, bad flag, bad model).

    The CLI prints it as one line, without a traceback unless ``--debug``.
    """


def error_line(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
