"""Opening a SQLite file that other processes may be opening at the same moment (the
client's caches: several `engram` commands of one user share them).

Switching a new file to WAL, or a first schema change, can be refused "database is locked"
at once, without the busy timeout's wait: that is SQLite's way out of a deadlock between
two connections that both read and then want to write. The whole opening is then tried
again, after a short pause, until `timeout_s` has passed.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

FIRST_PAUSE_S = 0.005
LONGEST_PAUSE_S = 0.2


def open_retrying(path: str | os.PathLike[str], timeout_s: float,
                  prepare: Callable[[sqlite3.Connection], object]) -> sqlite3.Connection:
    """A connection to `path` (autocommit, usable from any thread, waiting up to
    `timeout_s` for a lock) once `prepare(conn)` has run on it; the whole opening tried
    again while it is refused "database is locked", for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    pause = FIRST_PAUSE_S
    while True:
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            prepare(conn)
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        except BaseException:
            conn.close()
            raise
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_S)
