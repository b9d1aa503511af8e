"""A read that runs on a thread and a SQLite connection of its own, one at a time, and
that closing interrupts: the full-text vocabulary's snapshot (engine/vocab.py) and the
pass over recall's index of visible memories (engine/warmth.py). A connection of its own,
because a scan of a whole index would flush a pooled reader's page cache."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("engram.engine")


class BackgroundRead:
    """Runs `work(conn)` on a connection `connect` opens. A failure is logged with `what`
    (what the read does) and reported to `failed`; one that closing caused is not."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str, what: str,
                 failed: Callable[[], None] = lambda: None) -> None:
        self._connect = connect
        self._name = name  # the thread's
        self._what = what
        self._failed = failed
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None  # the running read's
        self.closed = False

    def start(self, work: Callable[[sqlite3.Connection], None]) -> bool:
        """Start `work` unless a read is running or this is closed; answers whether it
        started."""
        with self._lock:
            if self.closed or (self._thread is not None and self._thread.is_alive()):
                return False
            self._thread = threading.Thread(target=self._run, args=(work,), name=self._name,
                                            daemon=True)
            self._thread.start()
            return True

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of the last read started."""
        return self._thread

    def _run(self, work: Callable[[sqlite3.Connection], None]) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            log.warning("%s: %s", self._what, exc)
            self._failed()
            return
        with self._lock:
            if self.closed:
                conn.close()
                return
            self._conn = conn
        try:
            work(conn)
        except sqlite3.Error as exc:  # interrupted by close(), or a store gone bad
            if not self.closed:
                log.warning("%s: %s", self._what, exc)
                self._failed()
        finally:
            with self._lock:
                self._conn = None
            conn.close()

    def close(self, timeout: float) -> None:
        """Interrupt a running read (it ends at its next SQLite step) and wait for its
        thread, `timeout` seconds at most."""
        with self._lock:
            self.closed = True
            thread, conn = self._thread, self._conn
            if conn is not None:
                conn.interrupt()
        if thread is not None:
            thread.join(timeout)
