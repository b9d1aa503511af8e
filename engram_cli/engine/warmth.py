"""Reading the index of visible memories back into the OS file cache, whole and in order,
when recall may find it reclaimed.

Every recall looks up its candidates in the index of visible memories (rows.Lookup), ~170
of them for a first-time hybrid cue at a million memories, a random leaf each. A machine
may take back file pages nobody has read for a while, even with memory free (this one has
paged out file pages unused for 60 s). Recalls after an idle, a restart or an import then
read that index back one 16-KiB page per look-up, up to ~2,900 of them at a million
memories (the index holds ~47 bytes a memory), and a recall that meets many cold leaves
waits for each in turn. Read whole and in order, the index is one sequential pass: ~50 ms
at a million here.

Measured in one process at a million memories, with the store's pages dropped from the
cache, 300 first-time hybrid cues (two runs each): p99 37.9-43.9 ms without a pass and
14.9-15.2 ms after one; with the pass started by the first of them, as a store starts it,
13.1-17.3 ms against 27.1-32.6 (p50 alike within the runs' drift).

A store starts a pass when it opens, and a recall starts one when no recall has run for
IDLE_S: a machine that keeps unused pages longer than that reclaims nothing, and a pass
costs little. A pass runs on a thread and a connection of its own, so the recall that
starts it does not wait. One pass runs at a time; closing the store interrupts it.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable

from engram_cli.engine.background import BackgroundRead

# Seconds without a recall after which the next one starts a pass.
IDLE_S = 20.0


class IndexWarmer:
    """Passes over the index of visible memories, on a connection `connect` opens."""

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = BackgroundRead(connect, "engram-index-warmth",
                                    "reading the index of visible memories ahead")
        self._clock = clock
        self._last = -math.inf  # when the last recall or pass started
        self.passes = 0  # passes finished

    def recalled(self) -> None:
        """A recall starts: after IDLE_S without one, a pass starts too."""
        now = self._clock()
        idle, self._last = now - self._last, now
        if idle > IDLE_S:
            self.start()

    def start(self) -> None:
        """Start a pass unless one is running."""
        if self._read.start(self._pass):  # which holds its own lock
            self._last = self._clock()

    def _pass(self, conn: sqlite3.Connection) -> None:
        # A column of the index, so that every page of it is read (SQLite counts count(*)
        # through the smallest index, whichever one INDEXED BY names).
        conn.execute("SELECT count(last_access) FROM memories INDEXED BY memories_visible"
                     ).fetchone()
        self.passes += 1

    def close(self) -> None:
        """Interrupt a running pass and wait for its thread."""
        self._read.close(timeout=10)
