"""The full-text index kept in few b-trees: merged in small steps once writes are quiet.

FTS5 adds a b-tree (a segment) to its index with each transaction that writes to it and
merges them as they pile up (automerge: four of a level become one of the next), so a
store an import built holds many: a million memories imported here held 16. A query
reads a word's postings from every b-tree, and the text seeds of a recall (engine/text.py)
count and read the postings of a dozen words or more. Merged down to at most one b-tree
a level (16 -> 2 there), counting the 2,700 distinct words of 500 cues took half as long
(583 -> 307 ms), and hybrid recall (max_hops 3) of those cues over gRPC, each round on a
server just started, three rounds interleaved: p50 7.8-8.1 -> 6.1-6.9 ms, p99 16-26 ->
10.6-12.5 ms.

So, once clients create fewer than QUIET_RATE memories a second (looked at every
CHECK_S), this thread merges any two b-trees of one level (FTS5's 'merge' command, with
usermerge 2: migration 008), MERGE_PAGES pages a step, each step a write like any other
through the writer thread, until a step finds nothing to merge; it looks again after the
next commit. A million memories took about 300 steps of at most 17 ms, 1.2 s in all.

Not FTS5's 'optimize', nor a 'merge' of a negative number of pages: both first move
every b-tree to a new level of its own, and with SQLite 3.40 the levels then grew by two
at each round of writes and merging (480 after 300 rounds), towards FTS5's limit of 2,000,
past which the index can no longer be read. Merging b-trees of one level adds levels
only as a binary counter adds digits.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("engram.textmerge")

CHECK_S = 2.0
QUIET_RATE = 1_000  # memories created a second, at most, while merge steps run
MERGE_PAGES = 32  # pages of merged postings a step writes (of FTS5's 4 KB)


def op_merge_step(conn: sqlite3.Connection, pages: int) -> bool:
    """One step of merging: whether it found b-trees to merge (FTS5 documents the test:
    a step that merged changed two rows or more)."""
    before = conn.total_changes
    conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('merge', ?)",
                 (pages,))
    return conn.total_changes - before >= 2


class TextMerger(threading.Thread):
    """write(fn, *args) runs a write operation on the writer thread and answers its result;
    rows_written() counts the memories the store has written; commits() the writer's
    commits; merged() is told each time the index is merged down (writes are quiet: the
    store then counts its words again if they are stale, engine/vocab.py)."""

    def __init__(self, write: Callable[..., Any], rows_written: Callable[[], int],
                 commits: Callable[[], int], merged: Callable[[], None] = lambda: None
                 ) -> None:
        super().__init__(name="engram-text-merge", daemon=True)
        self._write = write
        self._merged = merged
        self._rows_written = rows_written
        self._commits = commits
        self._stopping = threading.Event()
        self.steps = 0  # steps that merged
        # The writer's commit count when a step last found nothing to merge: until the
        # next commit there is nothing to look at.
        self.clean_at = -1

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=30)

    def run(self) -> None:
        seen = (time.monotonic(), self._rows_written())
        while not self._stopping.wait(CHECK_S):
            seen, quiet = self._look(seen)
            if quiet and self._commits() != self.clean_at:
                seen = self._merge(seen)

    def _look(self, seen: tuple[float, int]) -> tuple[tuple[float, int], bool]:
        """(now, rows_written), and whether clients created at most QUIET_RATE memories a
        second since `seen`."""
        now, rows = time.monotonic(), self._rows_written()
        return (now, rows), rows - seen[1] <= QUIET_RATE * (now - seen[0])

    def _merge(self, seen: tuple[float, int]) -> tuple[float, int]:
        """Merge steps until nothing is left to merge, writes pick up, or the store stops;
        answers the latest (time, rows_written) looked at."""
        while not self._stopping.is_set():
            before = self._commits()
            try:
                merged = self._write(op_merge_step, MERGE_PAGES)
            except Exception as exc:
                # A full store, a full write queue: tried again after the next commit.
                log.warning("merging the full-text index: %s", exc)
                self.clean_at = self._commits()
                return seen
            if not merged:
                # Only this step committed meanwhile: clean as of that commit.
                self.clean_at = before + 1 if self._commits() == before + 1 else -1
                self._merged()
                return seen
            self.steps += 1
            if time.monotonic() - seen[0] >= CHECK_S:
                seen, quiet = self._look(seen)
                if not quiet:
                    return seen
        return seen
