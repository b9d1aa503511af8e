"""A readers-writer lock: the vector index's searches share it, its writers take it alone.

A waiting writer holds new readers back, so that a stream of searches cannot keep a writer
out; and the readers waiting when a writer lets go all go in before the next writer, so
that a writer taking the lock chunk after chunk cannot keep a search out for the whole
run. (While the index caught up with an import, the merger moved 16 chunks a call, and a
recall's search waited 3-10 ms on average behind them.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class RWLock:
    """Many readers or one writer, each side let in by turns."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._released = 0  # times a writer let go
        self._admitting = 0  # readers a writer's release let in, not yet in

    @property
    def readers(self) -> int:
        """Readers inside now (a moment's count, read without the lock)."""
        return self._readers

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._readers_waiting += 1
            seen = self._released
            while self._writer or (self._writers_waiting and self._released == seen):
                self._cond.wait()
            self._readers_waiting -= 1
            if self._released != seen and self._admitting:
                self._admitting -= 1  # was waiting when a writer let go
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers or self._admitting:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._released += 1
                self._admitting = self._readers_waiting
                self._cond.notify_all()
