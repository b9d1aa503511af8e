"""Every indexed word's document count, read from the full-text index in one pass.

A recall's text seeds weigh each cue word by its document frequency (engine/text.py).
Counted word by word, that is one or two full-text queries per new word, each reading
the word's postings from pages the machine may long since have reclaimed: a held-out cue's
first recall at a million memories spent 1.5 ms on average counting, and 6.3 ms at its
99th percentile, of 9.8 and 18.5 ms in all. FTS5 keeps no counts, but its vocabulary
table (fts5vocab, 'row') lists every term with the number of documents that hold it in
one scan of the index: 64,000 terms of 25 million postings in 0.5 s at a million
memories. So a background thread takes that list (a snapshot) once a store is past
SMALL, and again once it has grown by a tenth or REFRESH_S has passed with commits in
between; a word's count is then a look-up, plus a count of its postings among the
memories written since (only where those could move it by more than a twentieth).

The index holds stems (the porter tokenizer: "running" is "run"), a cue holds words, and
porter is not idempotent, so a cue word is stemmed by the very tokenizer of the memories'
index, in a private in-memory FTS5 table of its own, and the stem is kept.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engram_cli.engine.background import BackgroundRead

# Below this many memories (highest rowid) every word is counted: a few thousand postings
# at most, and counts that follow every write exactly.
SMALL = 16_384
GROWTH = 0.1  # a snapshot is taken again once the store has this much more memories
REFRESH_S = 600.0  # or after this long, when commits (edits, deletions) came in between
# A word's postings written since the snapshot are counted unless there are too few of
# those memories to move its count by more than this fraction.
TAIL_FRACTION = 0.05
_STEM_CACHE_MAX = 200_000
_CHUNK = 65_536
_TOKENIZE_RE = re.compile(r"tokenize\s*=\s*'((?:[^']|'')*)'", re.IGNORECASE)


@dataclass(frozen=True)
class Snapshot:
    top: int  # the highest rowid when it was taken
    taken: float  # time.monotonic()
    commits: int  # the store's commit count then
    hashes: np.ndarray  # sorted hash(term as UTF-8 bytes), int64
    counts: np.ndarray  # documents holding each (int32), aligned with hashes

    def count(self, stem: str) -> int:
        h = hash(stem.encode())
        at = int(np.searchsorted(self.hashes, h))
        if at < len(self.hashes) and self.hashes[at] == h:
            return int(self.counts[at])
        return 0

    def tail_counted(self, top: int, counted: int) -> bool:
        """Whether a word in `counted` memories of this snapshot needs its postings among
        the memories written since (up to rowid `top`) counted too."""
        return top - self.top > TAIL_FRACTION * counted


class Vocabulary:
    """connect() opens a read connection to the store (its own: a scan of the whole index
    would flush a reader's cache); commits() counts the store's commits (a snapshot older
    than REFRESH_S is taken again only when it moved); top() reads the store's highest
    rowid (on a pooled reader)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 commits: Callable[[], int], top: Callable[[], int]) -> None:
        self._commits = commits
        self._top = top
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._taking = BackgroundRead(connect, "engram-vocabulary",
                                      "counting the full-text index's words", self._failed)
        self._failed_at = -REFRESH_S  # time.monotonic() of the last snapshot that failed
        self._stemmer: sqlite3.Connection | None = None
        self._stems: dict[str, str | None] = {}

    def current(self, top: int) -> Snapshot | None:
        """The snapshot to count from in a store whose highest rowid is `top` (None: count
        every word), and a new one started in the background when this one is stale."""
        if top <= SMALL:
            return None
        snap = self._snapshot
        if self._stale(snap, top):
            self._start()
        return snap

    def stems(self, words: Sequence[str]) -> dict[str, str]:
        """{word: the index's stem of it}, for the words that are one token to the index's
        tokenizer (any other is counted by a query); {} before the first snapshot."""
        out: dict[str, str] = {}
        new = []
        for w in words:
            if w in self._stems:
                stem = self._stems[w]
                if stem is not None:
                    out[w] = stem
            else:
                new.append(w)
        if not new:
            return out
        with self._lock:
            conn = self._stemmer
            if conn is None:
                return out
            conn.execute("BEGIN")
            try:
                conn.executemany("INSERT INTO cue (rowid, w) VALUES (?, ?)", enumerate(new))
                found: dict[int, list[str]] = {}
                for doc, term in conn.execute("SELECT doc, term FROM cue_terms"):
                    found.setdefault(doc, []).append(term)
            finally:
                conn.execute("ROLLBACK")
            if len(self._stems) + len(new) > _STEM_CACHE_MAX:
                self._stems.clear()
            for i, w in enumerate(new):
                terms = found.get(i, [])
                stem = terms[0] if len(terms) == 1 else None
                self._stems[w] = stem
                if stem is not None:
                    out[w] = stem
        return out

    def refresh(self) -> None:
        """Take a new snapshot in the background if the one held is stale (or none is held
        and the store is past SMALL): called once writes are quiet, so that the first
        recalls after an import find one."""
        top = self._top()
        if top > SMALL and self._stale(self._snapshot, top):
            self._start()

    def close(self) -> None:
        self._taking.close(timeout=30)
        with self._lock:
            if self._stemmer is not None:
                self._stemmer.close()
                self._stemmer = None

    def _stale(self, snap: Snapshot | None, top: int) -> bool:
        return snap is None or top - snap.top > GROWTH * snap.top or (
            time.monotonic() - snap.taken > REFRESH_S and self._commits() != snap.commits)

    def _start(self) -> None:
        if time.monotonic() - self._failed_at < REFRESH_S:
            return  # each word counted meanwhile
        self._taking.start(self._take)

    def _failed(self) -> None:
        self._failed_at = time.monotonic()

    def _take(self, conn: sqlite3.Connection) -> None:
        snap, tokenizer = _read(conn, self._commits())
        with self._lock:
            if self._stemmer is None and not self._taking.closed:
                self._stemmer = _stemmer(tokenizer)
            self._snapshot = snap


def _read(conn: sqlite3.Connection, commits: int) -> tuple[Snapshot, str]:
    """The snapshot and the index's tokenizer, both as of one read transaction. Terms are
    hashed as UTF-8 bytes, read as bytes (a term that is not valid UTF-8 is one all the
    same), a chunk at a time: a store of a million memories with a few unique tokens each
    (ids, numbers) has millions of terms, 12 bytes each here."""
    taken = time.monotonic()
    conn.execute("BEGIN")
    try:
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'memories_fts'").fetchone()[0]
        match = _TOKENIZE_RE.search(sql)
        tokenizer = match.group(1).replace("''", "'") if match else "unicode61"
        top = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0] or 0
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.memories_vocab "
                     "USING fts5vocab(main, memories_fts, 'row')")
        conn.text_factory = bytes
        cur = conn.execute("SELECT term, doc FROM temp.memories_vocab")
        hashes: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        while chunk := cur.fetchmany(_CHUNK):
            hashes.append(np.fromiter((hash(t) for t, _ in chunk), np.int64, len(chunk)))
            counts.append(np.fromiter((d for _, d in chunk), np.int32, len(chunk)))
    finally:
        conn.text_factory = str
        conn.execute("ROLLBACK")
    h = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
    c = np.concatenate(counts) if counts else np.zeros(0, np.int32)
    order = np.argsort(h, kind="stable")
    return Snapshot(top, taken, commits, h[order], c[order]), tokenizer


def _stemmer(tokenizer: str) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    quoted = tokenizer.replace("'", "''")
    conn.execute(f"CREATE VIRTUAL TABLE cue USING fts5(w, content='', detail=none, "
                 f"tokenize='{quoted}')")
    conn.execute("CREATE VIRTUAL TABLE cue_terms USING fts5vocab(cue, 'instance')")
    return conn
