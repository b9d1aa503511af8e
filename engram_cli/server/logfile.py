"""The server's log file when it runs in the background: size-bounded and rotated.

`engram serve --log-file PATH` logs to PATH through a RotatingFileHandler (LOG_MAX_BYTES
per file, LOG_BACKUPS old files: PATH.1 is the newest of them). The process's stdout and
stderr are pointed at the current file too and follow it at each rotation, so that what
does not go through `logging` (a thread's uncaught traceback, gRPC's own C-level lines)
lands in the same bounded set of files instead of a renamed or deleted one.
"""

from __future__ import annotations

import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3


class RotatingLog(RotatingFileHandler):
    """A RotatingFileHandler that also carries file descriptors 1 and 2 along."""

    def __init__(self, path: Path | str, max_bytes: int = LOG_MAX_BYTES,
                 backups: int = LOG_BACKUPS) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._follow()

    def _follow(self) -> None:
        if self.stream is None:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        fd = self.stream.fileno()
        os.dup2(fd, 1)
        os.dup2(fd, 2)

    def doRollover(self) -> None:
        super().doRollover()
        self._follow()
