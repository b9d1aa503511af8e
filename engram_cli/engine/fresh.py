"""The fresh segment of a space's vector index: vectors searchable the moment they are
embedded, before the index has taken them in (the design of LanceDB's unindexed rows and
Milvus's growing segments).

The indexer puts each new vector here first, where a search scans it exactly, and a merger
moves the oldest into the index behind it, in chunks under the index's write lock: the
embedder never waits for the index's lock, nor for a retraining (engine/vectors.py).
The segment is bounded (engine/vectors.py FRESH_MAX), so a scan stays a millisecond or two.

Rows are appended at the end and merged from the front; a removed or replaced row is marked
dead where it is and skipped. Each row remembers `since`: the caller's watermark before the
change that put it here, so that a save can record a watermark the saved index really
covers (this segment is never saved: a restart replays it from the log). Not thread-safe:
engine/vectors.py holds its lock around every call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engram_cli.engine.unit import unit_rows


class FreshSegment:
    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._keys = np.zeros(capacity, dtype=np.int64)
        self._since = np.zeros(capacity, dtype=np.int64)
        self._alive = np.zeros(capacity, dtype=bool)
        # float32: numpy's matrix product is BLAS only for float32/64 (float16 scans
        # measured ~20x slower), and the segment is small enough for 1 KB a 256-d row.
        self._vecs = np.zeros((capacity, dim), dtype=np.float32)
        self._head = 0  # rows before it were merged
        self._end = 0
        self._row: dict[int, int] = {}  # live key -> row

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, key: int) -> bool:
        return key in self._row

    def add(self, keys: np.ndarray, vecs: np.ndarray, since: int) -> None:
        """Append unit-normalised copies of `vecs` under `keys` (replacing any row of the
        same key); keys are unique within one call."""
        self.discard(keys)
        n = len(keys)
        self._room(n)
        s, e = self._end, self._end + n
        self._vecs[s:e] = unit_rows(vecs)
        self._keys[s:e] = keys
        self._since[s:e] = since
        self._alive[s:e] = True
        self._row.update(zip(keys.tolist(), range(s, e), strict=True))
        self._end = e

    def discard(self, keys: np.ndarray) -> int:
        """Mark these keys' rows dead; answers how many were here."""
        gone = 0
        for key in keys.tolist():
            row = self._row.pop(key, None)
            if row is not None:
                self._alive[row] = False
                gone += 1
        return gone

    def oldest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to `n` of the oldest live rows: (keys, vectors), in the order they came."""
        rows = np.flatnonzero(self._alive[self._head:self._end])[:n] + self._head
        return self._keys[rows], self._vecs[rows]  # copies: fancy indexing copies

    def merged(self, keys: np.ndarray) -> None:
        """These keys are in the index now: drop them, and move the head past dead rows."""
        self.discard(keys)
        while self._head < self._end and not self._alive[self._head]:
            self._head += 1
        if self._head == self._end:
            self._head = self._end = 0

    def since(self) -> int | None:
        """The smallest `since` of a live row (None when the segment is empty)."""
        if not self._row:
            return None
        live = self._alive[self._head:self._end]
        return int(self._since[self._head:self._end][live].min())

    def search(self, q: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The `k` most similar live rows to the unit vector `q`, exactly: (key, cosine)."""
        if not self._row or k <= 0:
            return []
        h, e = self._head, self._end
        sims = self._vecs[h:e] @ q
        sims[~self._alive[h:e]] = -np.inf
        k = min(k, len(self._row))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top])]
        return [(int(self._keys[h + i]), float(sims[i])) for i in top]

    def scores(self, keys: list[int], q: np.ndarray) -> dict[int, float]:
        """{key: cosine to the unit `q`} of those of `keys` this segment holds."""
        rows = [(key, self._row[key]) for key in keys if key in self._row]
        if not rows:
            return {}
        sims = self._vecs[[r for _, r in rows]] @ q
        return dict(zip([k for k, _ in rows], sims.tolist(), strict=True))

    def nbytes(self) -> int:
        return int(self._vecs.nbytes + self._keys.nbytes * 2 + self._alive.nbytes)

    def _room(self, n: int) -> None:
        """Space for `n` more rows at the end: slide the live rows to the front, or grow."""
        if self._end + n <= len(self._keys):
            return
        live = np.flatnonzero(self._alive[self._head:self._end]) + self._head
        need = len(live) + n
        size = len(self._keys)
        while size < need:
            size *= 2
        arrays: list[Any] = [self._keys, self._since, self._alive, self._vecs]
        fresh = [np.zeros((size, *a.shape[1:]), dtype=a.dtype) for a in arrays]
        for old, new in zip(arrays, fresh, strict=True):
            new[:len(live)] = old[live]
        self._keys, self._since, self._alive, self._vecs = fresh
        self._head, self._end = 0, len(live)
        self._row = dict(zip(self._keys[:len(live)].tolist(), range(len(live)), strict=True))
