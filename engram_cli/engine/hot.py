"""The hot tier: recently used memory rows kept in RAM in front of the warm tier (SQLite).

An LRU keyed by (space, id), bounded both in rows (`hot_capacity`) and in bytes
(`hot_max_bytes`, the rows' sizes as Python holds them), with a rowid index so that
text seeds (which FTS5 answers as rowids) hit it too. Eviction is by recency of use:
every recall that returns or spreads through a memory moves it to the young end, so the
memories recall keeps touching - the activated ones - stay hot.

Writes invalidate. A reader may have read a row from disk just before a write committed
and try to cache it just after; the write epoch stops that: `put` is refused for a key
invalidated after the reader's `epoch()` snapshot, so a stale row never enters.

Beside the rows it keeps what recall looked up of other memories in the index of visible
memories (rows.Lookup: confidence, key, decay rate, last access), at most STANDING_PER_ROW
per row of `hot_capacity`, oldest out first; their bytes count in `hot_max_bytes` with
the rows'. A write drops its own memories' (found by key) and moves the epoch; what a
reader looked up is kept only if no write came in since its epoch() snapshot.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from engram_cli.engine.model import memory_key

Row = tuple[Any, ...]  # store._COLUMNS order: rowid, id, content, ... metadata
# What recall looks up of a visible memory in the index of visible memories (rows.Lookup),
# the row as SQLite answers it: (rowid, stored confidence, key, decay rate, last access).
Standing = tuple[int, float, int, float, float]
_LAST_ACCESS = 10
_MAX_TOMBSTONES = 200_000
# Memories whose looked-up values are kept beside the rows (see `put_standing`), per row
# the hot tier may hold: a hybrid recall looks up some 170 at a million memories, where
# its answer's rows are ten. The oldest tenth goes when full.
STANDING_PER_ROW = 2
# What one costs: its tuple, its numbers and both dicts' entries (measured with
# tracemalloc: 325 bytes), 66 MB at the default capacity.
STANDING_BYTES = 330
# Per row beyond its fields: the key tuple, the dict entries (rows, sizes, rowids) and the
# OrderedDict links; measured with tracemalloc: ~245 bytes.
_ENTRY_OVERHEAD = 256


def row_bytes(row: Row) -> int:
    """What a cached row costs, erring high: the tuple and every field (its numbers too,
    which small rows are mostly made of; shared small ints and None are counted anyway)."""
    return sys.getsizeof(row) + _ENTRY_OVERHEAD + sum(map(sys.getsizeof, row))


class HotTier:
    def __init__(self, capacity: int, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._sizes: dict[tuple[str, str], int] = {}
        self._rows: OrderedDict[tuple[str, str], Row] = OrderedDict()
        self._by_rowid: dict[int, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._epoch = 0
        self._floor = 0  # readers that started before this epoch may not insert
        self._invalidated: dict[tuple[str, str], int] = {}
        # space: {rowid: Standing} of memories recall looked up without reading their
        # rows, oldest first, and key: rowid of the same, for a write to find its own.
        self._standing: dict[str, dict[int, Standing]] = {}
        self._standing_keys: dict[int, int] = {}
        self._kept = 0  # entries of _standing, all spaces
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def epoch(self) -> int:
        return self._epoch

    def resize(self, capacity: int, max_bytes: int | None = None) -> None:
        with self._lock:
            self.capacity = capacity
            if max_bytes is not None:
                self.max_bytes = max_bytes
            self._evict()
            self._trim()

    def get_many(self, space: str, ids: Iterable[str]) -> tuple[dict[str, Row], list[str]]:
        """Answers (rows found by id, ids missing)."""
        found: dict[str, Row] = {}
        missing: list[str] = []
        with self._lock:
            rows = self._rows
            for mid in ids:
                key = (space, mid)
                row = rows.get(key)
                if row is None:
                    missing.append(mid)
                else:
                    rows.move_to_end(key)
                    found[mid] = row
            self.hits += len(found)
            self.misses += len(missing)
        return found, missing

    def get_rowids(self, rowids: Iterable[int]
                   ) -> tuple[dict[int, tuple[str, Row]], list[int]]:
        """Answers ({rowid: (space, row)}, rowids missing)."""
        found: dict[int, tuple[str, Row]] = {}
        missing: list[int] = []
        with self._lock:
            for rid in rowids:
                key = self._by_rowid.get(rid)
                row = self._rows.get(key) if key is not None else None
                if row is None or key is None:
                    missing.append(rid)
                else:
                    self._rows.move_to_end(key)
                    found[rid] = (key[0], row)
            self.hits += len(found)
            self.misses += len(missing)
        return found, missing

    def put_many(self, space: str, rows: Sequence[Row], since_epoch: int) -> None:
        if self.capacity <= 0 or self.max_bytes <= 0 or not rows:
            return
        sized = [(row, row_bytes(row)) for row in rows]  # outside the lock
        with self._lock:
            if since_epoch < self._floor:
                return
            tomb = self._invalidated
            sizes = self._sizes
            for row, size in sized:
                key = (space, row[1])
                if tomb.get(key, -1) > since_epoch:
                    continue  # written after the reader looked: the row may be stale
                self.bytes += size - sizes.get(key, 0)
                sizes[key] = size
                self._rows[key] = row
                self._rows.move_to_end(key)
                self._by_rowid[row[0]] = key
            self._evict()

    def get_standing(self, space: str, rowids: Iterable[int]
                     ) -> tuple[dict[int, Standing], list[int]]:
        """Answers ({rowid: Standing}, rowids missing): what recall looked up of a visible
        memory of this space in the index of visible memories (rows.Lookup), kept since."""
        with self._lock:
            known = self._standing.get(space, {})
            kept = {rid: v for rid in rowids if (v := known.get(rid)) is not None}
        return kept, [rid for rid in rowids if rid not in kept]

    def put_standing(self, space: str, values: dict[int, Standing], since_epoch: int
                     ) -> None:
        """Keep these, read by a reader whose epoch() was `since_epoch`: unless a write
        came in since (it may have changed them; a write drops its own memories' values,
        by key, and moves the epoch)."""
        if self.capacity <= 0 or not values:
            return
        with self._lock:
            if since_epoch != self._epoch:
                return
            kept = self._standing.setdefault(space, {})
            had = len(kept)
            kept.update(values)
            self._standing_keys.update({v[2]: rid for rid, v in values.items()})
            self._kept += len(kept) - had
            self.bytes += (len(kept) - had) * STANDING_BYTES
            self._trim()

    def _trim(self) -> None:
        """Kept look-ups past STANDING_PER_ROW x capacity, or past max_bytes with the rows,
        go: the oldest (of the space that keeps most first), and a tenth of what is kept
        more (under the lock)."""
        most = STANDING_PER_ROW * self.capacity
        over = max(self._kept - most, -(-(self.bytes - self.max_bytes) // STANDING_BYTES))
        if over <= 0:
            return
        over += self._kept // 10
        keys = self._standing_keys
        for space, kept in sorted(self._standing.items(), key=lambda sk: -len(sk[1])):
            gone = list(islice(kept, over))
            for rid in gone:
                key = kept.pop(rid)[2]
                if keys.get(key) == rid:
                    del keys[key]
            self._kept -= len(gone)
            self.bytes -= len(gone) * STANDING_BYTES
            if not kept:
                del self._standing[space]
            over -= len(gone)
            if over <= 0:
                break

    def _unkeep(self, space: str, mid: str) -> None:
        """Drop a memory's kept look-up (under the lock)."""
        rid = self._standing_keys.pop(memory_key(space, mid), None)
        if rid is not None and self._standing.get(space, {}).pop(rid, None) is not None:
            self._kept -= 1
            self.bytes -= STANDING_BYTES

    def accessed(self, space: str, times: list[tuple[int, float]]) -> None:
        """These (key, access time)s were written: their memories' kept look-ups get
        them, and none a reader looked up before is kept (`touched` brought the kept ones
        up to date already, but a reader that looked one up in the index just before may
        have kept its old access time since, or keep it after)."""
        with self._lock:
            self._epoch += 1
            self._set_access(space, times)

    def _forget(self, key: tuple[str, str], row: Row) -> None:
        self._by_rowid.pop(row[0], None)
        self.bytes -= self._sizes.pop(key, 0)

    def _evict(self) -> None:
        rows = self._rows
        while rows and (len(rows) > self.capacity or self.bytes > self.max_bytes):
            key, row = rows.popitem(last=False)
            self._forget(key, row)

    def invalidate(self, space: str, ids: Iterable[str]) -> None:
        """Forget these ids (they were just written); cheap on the write path."""
        with self._lock:
            self._epoch += 1
            epoch = self._epoch
            rows = self._rows
            tomb = self._invalidated
            kept = bool(self._standing)
            for mid in ids:
                key = (space, mid)
                tomb[key] = epoch
                row = rows.pop(key, None)
                if row is not None:
                    self._forget(key, row)
                if kept:
                    self._unkeep(space, mid)
            if len(tomb) > _MAX_TOMBSTONES:
                tomb.clear()
                self._floor = epoch

    def clear(self) -> None:
        """Forget everything (bulk changes: a dropped space, a large consolidation)."""
        with self._lock:
            self._epoch += 1
            self._standing.clear()
            self._standing_keys.clear()
            self._kept = 0
            self._floor = self._epoch
            self._rows.clear()
            self._by_rowid.clear()
            self._sizes.clear()
            self.bytes = 0
            self._invalidated.clear()

    def touched(self, space: str, ids: Iterable[str], now: float) -> None:
        """Keep cached last_access in step with the disk (a recall refreshes it)."""
        ids = list(ids)
        keyed = [(memory_key(space, mid), now) for mid in ids]
        with self._lock:
            rows = self._rows
            for mid in ids:
                key = (space, mid)
                row = rows.get(key)
                if row is not None:
                    rows[key] = (*row[:_LAST_ACCESS], now, *row[_LAST_ACCESS + 1:])
            self._set_access(space, keyed)

    def _set_access(self, space: str, times: Iterable[tuple[int, float]]) -> None:
        """Kept look-ups get these (key, access time)s (under the lock)."""
        kept, keys = self._standing.get(space), self._standing_keys
        if not kept:
            return
        for k, t in times:
            if (rid := keys.get(k)) in kept:
                r, c, k2, d, _ = kept[rid]
                if k2 == k:
                    kept[rid] = (r, c, k, d, t)
