"""Opening a SQLite file that other processes may be opening at the same moment (the
client's caches: several `engram` commands of one user share them).

Switching a new file to WAL, or a first schema change, can be refused "database is locked"
at once, without the busy timeout's wait: that is SQLite's way out of a deadlock between
two connections that both read and then want to write. The whole opening is then tried
again, after a short pause, until `timeout_s` has passed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

FIRST_PAUSE_S = 0.005
LONGEST_PAUSE_S = 0.2


def open_retrying(opening: Callable[[], sqlite3.Connection], timeout_s: float
                  ) -> sqlite3.Connection:
    """`opening()` (which closes its connection when it raises), tried again while it is
    refused "database is locked", for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    pause = FIRST_PAUSE_S
    while True:
        try:
            return opening()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_S)
