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
import sys

from mlperf_logging.mllog import constants as C
from mlperf_logging.mllog.mllog import MLLogger

from ttabench import UserError

__all__ = ["RunLog", "C"]


class _FlushingFileHandler(logging.FileHandler):
    """Appends and flushes each event; a write that fails raises instead of being dropped.

    logging's StreamHandler.emit catches every exception and calls handleError, whose
    default prints '--- Logging error ---' and a traceback to stderr and carries on: a run
    on a full disk would go on losing events with a traceback per event. handleError is
    called inside emit's except block, so here it re-raises the exception being handled,
    a failed write as a one-line UserError naming the file. After a failed write nothing
    more is written: MLLogger catches the error and logs 'Failed to encode', which must not
    land in the file (or succeed and hide the failure).
    """

    error: UserError | None = None  # the first failed write
    lines = 0  # lines in the file: what it held when opened, plus each event written

    def emit(self, record):
        if self.error is not None:
            raise UserError(str(self.error))
        super().emit(record)
        self.flush()
        self.lines += 1

    def flush(self):
        try:
            super().flush()
        except OSError as e:
            raise self._failed(e) from None

    def handleError(self, record):
        e = sys.exc_info()[1]
        if isinstance(e, OSError):
            raise self._failed(e) from None
        raise e  # UserError from flush(), or a bug: never swallowed

    def _failed(self, e: OSError) -> UserError:
        if self.error is None:
            self.error = UserError(f"cannot write results file {self.baseFilename}: {e.strerror or e}")
        return UserError(str(self.error))


class RunLog:
    """An MLLogger bound to one run's mllog.txt (no global logging state).

    `lines` is how many lines the file already holds (a resumed run's log, cut
    at its checkpoint); ``RunLog.lines`` then counts on, so nobody re-reads the file.
    """

    def __init__(self, path: str | None, lines: int = 0):
        self.path = path
        self._logger = None
        self._handler = None
        if path is None:
            return
        logger = logging.getLogger(f"ttabench.mllog.{os.getpid()}.{secrets.token_hex(4)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        try:
            self._handler = _FlushingFileHandler(path, mode="a", encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot write results file {path}: {e.strerror or e}") from None
        self._handler.setLevel(logging.INFO)
        self._handler.lines = lines
        logger.addHandler(self._handler)
        self._logger = MLLogger(
            logger=logger, default_stack_offset=2, root_dir=os.path.dirname(os.path.dirname(__file__))
        )

    @property
    def lines(self) -> int:
        """Lines in mllog.txt now (0 without a file)."""
        return self._handler.lines if self._handler is not None else 0

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
        """Close the log; UserError if what it still holds cannot be written (unless a write
        already failed: that first error is the one to report)."""
        if self._handler is not None:
            handler, self._handler = self._handler, None
            self._logger.logger.removeHandler(handler)
            self._logger = None
            try:
                handler.close()
            except (OSError, UserError) as e:
                if handler.error is None:
                    raise e if isinstance(e, UserError) else handler._failed(e) from None
