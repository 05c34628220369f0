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
