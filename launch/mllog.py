"""MLPerf-style event log of a run, written with the mlperf-logging library.

Each event is one ``:::MLLOG {...}`` line appended to ``mllog.txt`` and
flushed at once, so a run that dies leaves every event up to its death.
Only rank 0 logs. The event order follows MLPerf Training's closed rules
(submission info, cache_clear, init_start/stop, run_start, blocks/epochs with
eval_start/eval_accuracy/eval_stop, run_stop with a status).
"""

from __future__ import annotations

import logging
import os
import secrets

from mlperf_logging.mllog.mllog import MLLogger
from mlperf_logging.mllog import constants as C

__all__ = ["RunLog", "C"]


class _FlushingFileHandler(logging.FileHandler):
    def emit(self, record):
        super().emit(record)
        self.flush()


class RunLog:
    """An MLLogger bound to one run's mllog.txt (no global logging state)."""

    def __init__(self, path: str | None):
        self.path = path
        self._logger = None
        self._handler = None
        if path is None:
            return
        logger = logging.getLogger(f"ttabench.mllog.{os.getpid()}.{secrets.token_hex(4)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        self._handler = _FlushingFileHandler(path, mode="a", encoding="utf-8")
        self._handler.setLevel(logging.INFO)
        logger.addHandler(self._handler)
        self._logger = MLLogger(logger=logger, default_stack_offset=2,
                                      root_dir=os.path.dirname(os.path.dirname(__file__)))

    def event(self, key, value=None, **metadata):
        if self._logger is not None:
            self._logger.event(key=key, value=value, metadata=metadata or None)

    def start(self, key, value=None, **metadata):
        if self._logger is not None:
            self._logger.start(key=key, value=value, metadata=metadata or None)

    def end(self, key, value=None, **metadata):
        if self._logger is not None:
            self._logger.end(key=key, value=value, metadata=metadata or None)

    def close(self):
        if self._handler is not None:
            self._handler.close()
            self._logger.logger.removeHandler(self._handler)
            self._handler = None
            self._logger = None
