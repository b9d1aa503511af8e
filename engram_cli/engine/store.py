"""The durable store: SQLite in WAL mode with an FTS5 index, one writer thread.

Writes go through one writer thread that takes every operation waiting in its bounded
queue, runs each in its own SAVEPOINT (a failing operation never undoes its neighbours)
and commits them together (group commit); a caller's future resolves only after the
COMMIT, so an acknowledged write is in the WAL before the client hears of it. Reads use
per-thread connections and never wait for the writer.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from engram_cli.engine import migrations
from engram_cli.engine.forgetting import decayed
from engram_cli.engine.model import (
    MAX_CONTENT_BYTES,
    MAX_EMBEDDING_DIMS,
    MemoryRecord,
    MemoryType,
    State,
    WriteOutcome,
    content_id,
    resolve_space,
)
from engram_cli.errors import EngramError, InvalidArgument, NotFound, Overloaded, StoreClosed
from engram_cli.tuning.settings import DEFAULT_SETTINGS, Settings

DB_NAME = "engram.db"
LOCK_NAME = "LOCK"
_SQL_CHUNK = 900  # stays under SQLite's host-parameter limit with room to spare
_MAX_OPS_PER_COMMIT = 256
_COLUMNS = (
    "rowid, id, content, embedding, confidence, activation, decay_rate, memory_type, "
    "state, created_at, last_access, tags, metadata"
)
_UPSERT = """
INSERT INTO memories (space, id, content, embedding, confidence, decay_rate, memory_type,
                      state, created_at, last_access, updated_at, tags, metadata, suppressed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (space, id) DO UPDATE SET
    content = excluded.content, embedding = excluded.embedding,
    confidence = excluded.confidence, decay_rate = excluded.decay_rate,
    memory_type = excluded.memory_type, state = excluded.state,
    created_at = excluded.created_at, last_access = excluded.last_access,
    updated_at = excluded.updated_at, tags = excluded.tags, metadata = excluded.metadata,
    suppressed = 0
"""
_WORD_RE = re.compile(r"\w+", re.UNICODE)


class DataDirLocked(EngramError):
    """Another server holds the data directory."""


@dataclass
class RecallQuery:
    """What to recall; exactly one of text, embedding or a context (time/location) is set."""

    text: str | None = None
    embedding: bytes | None = None
    similarity_threshold: float = 0.0
    time_start: float | None = None
    time_end: float | None = None
    location: str = ""
    participants: Sequence[str] = ()
    required_tags: Sequence[str] = ()
    excluded_tags: Sequence[str] = ()
    min_confidence: float = 0.0
    limit: int = 10
    spread: bool = False
    max_hops: int | None = None  # None: the server setting
    decay: float | None = None  # per-hop activation kept; None: the server setting
    threshold: float | None = None  # activation threshold; None: the server setting
    trace: bool = False


@dataclass
class Trace:
    memory_id: str
    activation: float
    path: list[str]


@dataclass
class RecallResult:
    memories: list[MemoryRecord] = field(default_factory=list)
    total_activated: int = 0
    above_threshold: int = 0
    avg_activation: float = 0.0
    elapsed_ms: float = 0.0
    activation_path: list[str] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    budget_exhausted: bool = False


def fts_query(text: str, limit_terms: int = 32) -> str | None:
    """Cue text -> an FTS5 query: every word, quoted, OR-ed; bm25 does the ranking."""
    words = _WORD_RE.findall(text.lower())
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    terms = list(seen)[:limit_terms]
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def embedding_to_bytes(values: Iterable[float]) -> bytes:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                     dtype=np.float32)
    return arr.tobytes()


def validate_record(rec: MemoryRecord) -> None:
    """Engine-level rules every stored memory satisfies; raises InvalidArgument."""
    if not rec.content and not rec.embedding:
        raise InvalidArgument("memory has neither content nor embedding")
    if len(rec.content) * 4 > MAX_CONTENT_BYTES and len(rec.content.encode()) > MAX_CONTENT_BYTES:
        raise InvalidArgument(
            f"content is {len(rec.content.encode())} bytes; the limit is {MAX_CONTENT_BYTES}"
        )
    if not (0.0 <= rec.confidence <= 1.0) or math.isnan(rec.confidence):
        raise InvalidArgument(f"confidence {rec.confidence} is outside 0..1")
    if rec.embedding:
        dims = len(rec.embedding) // 4
        if dims > MAX_EMBEDDING_DIMS:
            raise InvalidArgument(f"embedding has {dims} dimensions; the limit is "
                                  f"{MAX_EMBEDDING_DIMS}")
        if not np.isfinite(np.frombuffer(rec.embedding, dtype=np.float32)).all():
            raise InvalidArgument("embedding contains NaN or infinity")
    if rec.decay_rate < 0 or math.isnan(rec.decay_rate):
        raise InvalidArgument(f"decay_rate {rec.decay_rate} is negative")
    if rec.memory_type not in MemoryType._value2member_map_:
        raise InvalidArgument(f"unknown memory_type {rec.memory_type}")


class _Writer(threading.Thread):
    """The single writer: a bounded queue of operations, committed in groups."""

    def __init__(self, conn: sqlite3.Connection, capacity: int) -> None:
        super().__init__(name="engram-writer", daemon=True)
        self._conn = conn
        self.capacity = capacity
        self._pending: collections.deque[tuple[Callable[..., Any], tuple[Any, ...], Future]] = (
            collections.deque()
        )
        self._cv = threading.Condition()
        self._closed = False
        self._op_seconds = 0.001  # moving average, for the retry-after hint
        self.commits = 0
        self.ops = 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def pressure(self) -> float:
        return min(1.0, len(self._pending) / self.capacity)

    def retry_after_ms(self) -> int:
        # Time to drain half the queue, clamped: long enough to help, short enough to retry.
        est = self._op_seconds * max(1, len(self._pending)) * 500
        return int(min(2000, max(10, est)))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        with self._cv:
            if self._closed:
                raise StoreClosed("the store is shutting down", "retry against a live server")
            if len(self._pending) >= self.capacity:
                raise Overloaded(
                    f"write queue full ({self.capacity} requests waiting)",
                    retry_after_ms=self.retry_after_ms(),
                    hint="retry after the hinted delay",
                )
            self._pending.append((fn, args, fut))
            self._cv.notify()
        return fut

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if not self._pending:
                    return
                ops: list[tuple[Callable[..., Any], tuple[Any, ...], Future]] = []
                while self._pending and len(ops) < _MAX_OPS_PER_COMMIT:
                    ops.append(self._pending.popleft())
            self._execute(ops)

    def _execute(self, ops: list[tuple[Callable[..., Any], tuple[Any, ...], Future]]) -> None:
        started = time.perf_counter()
        conn = self._conn
        done: list[tuple[Future, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for _, _, fut in ops:
                fut.set_exception(EngramError(f"store unavailable: {exc}"))
            return
        for fn, args, fut in ops:
            if not fut.set_running_or_notify_cancel():
                continue
            conn.execute("SAVEPOINT op")
            try:
                result = fn(conn, *args)
            except Exception as exc:  # one operation's failure stays its own
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                done.append((fut, None, exc))
            else:
                conn.execute("RELEASE op")
                done.append((fut, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for fut, _, _ in done:
                fut.set_exception(EngramError(f"commit failed: {exc}"))
            return
        self.commits += 1
        self.ops += len(ops)
        per_op = (time.perf_counter() - started) / max(1, len(ops))
        self._op_seconds = 0.8 * self._op_seconds + 0.2 * per_op
        for fut, result, error in done:
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)


class Store:
    """A memory store in one data directory. Thread-safe."""

    def __init__(
        self,
        data_dir: Path | str,
        settings: Settings = DEFAULT_SETTINGS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.clock = clock
        self._lock_fd = self._lock_data_dir()
        db_dir = Path(settings.warm_path) if settings.warm_path else self.data_dir
        db_dir.mkdir(parents=True, exist_ok=True)
        self.path = db_dir / DB_NAME
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        conn = self._connect(cache_mib=64)
        try:
            self.applied_migrations = migrations.migrate(conn)
        except BaseException:
            conn.close()
            self._unlock()
            raise
        self._apply_durability(conn)
        self._writer = _Writer(conn, settings.queue_capacity)
        self._writer.start()

    # -- set-up ------------------------------------------------------------------------

    def _lock_data_dir(self) -> int:
        import fcntl

        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise DataDirLocked(
                f"data directory {self.data_dir} is in use by another engram server",
                "stop that server (`engram stop`) or pick another --data-dir",
            ) from exc
        return fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = -1

    def _connect(self, cache_mib: int = 16) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    def _apply_durability(self, conn: sqlite3.Connection) -> None:
        # WAL + FULL fsyncs the log at every commit; WAL + NORMAL writes it to the OS at
        # every commit (safe from kill -9) and fsyncs at checkpoints.
        mode = "FULL" if self.settings.durability == "fsync" else "NORMAL"
        conn.execute(f"PRAGMA synchronous={mode}")

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreClosed("the store is closed")
            conn = self._connect(cache_mib=16)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # -- settings ----------------------------------------------------------------------

    def update_settings(self, settings: Settings) -> None:
        """Apply live settings; those marked restart_required take effect on restart."""
        old = self.settings
        self.settings = settings
        self._writer.capacity = settings.queue_capacity
        if settings.durability != old.durability:
            self._writer.submit(lambda conn: None).result()  # let the writer go idle
            self._apply_durability(self._writer._conn)

    @property
    def pressure(self) -> float:
        return self._writer.pressure

    @property
    def queue_depth(self) -> int:
        return self._writer.depth

    # -- writes ------------------------------------------------------------------------

    def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._writer.submit(fn, *args).result()

    def remember_many(self, space_id: str, records: Sequence[MemoryRecord]) -> list[WriteOutcome]:
        """Store many memories in one transaction; answers one outcome per record, in order.

        A record without an id gets its content id. An existing id is replaced (upsert);
        one identical to what is stored is left alone ("unchanged").
        """
        space = resolve_space(space_id)
        outcomes: list[WriteOutcome] = []
        valid: list[tuple[int, MemoryRecord]] = []
        for i, rec in enumerate(records):
            if not rec.id:
                rec.id = content_id(rec.content, rec.embedding)
            try:
                validate_record(rec)
            except InvalidArgument as exc:
                outcomes.append(WriteOutcome(i, rec.id, "rejected", str(exc)))
                continue
            outcomes.append(WriteOutcome(i, rec.id, "pending"))
            valid.append((i, rec))
        if valid:
            written = self._write(_op_remember, space, valid, self.clock())
            for i, outcome in written:
                outcomes[i].outcome = outcome
        return outcomes

    def remember(self, space_id: str, record: MemoryRecord) -> WriteOutcome:
        outcome = self.remember_many(space_id, [record])[0]
        if outcome.outcome == "rejected":
            raise InvalidArgument(outcome.error)
        return outcome

    def forget(self, space_id: str, ids: Sequence[str], mode: str) -> int:
        """mode: suppress (reversible: hidden until stored again) | delete | overwrite."""
        space = resolve_space(space_id)
        if mode not in ("suppress", "delete", "overwrite"):
            raise InvalidArgument(f"unknown forget mode {mode!r}")
        if not ids:
            return 0
        return int(self._write(_op_forget, space, list(ids), mode, self.clock()))

    def associate(
        self, space_id: str, source: str, target: str, kind: int, strength: float, reason: str
    ) -> tuple[bool, float]:
        """Create or strengthen a durable weighted edge; answers (created, final strength)."""
        space = resolve_space(space_id)
        if not source or not target:
            raise InvalidArgument("source_memory and target_memory are both required")
        if source == target:
            raise InvalidArgument("a memory cannot be associated with itself")
        if not (0.0 <= strength <= 1.0) or math.isnan(strength):
            raise InvalidArgument(f"strength {strength} is outside 0..1")
        strength = strength or 0.5
        return self._write(_op_associate, space, source, target, kind, strength, reason,
                           self.clock())  # type: ignore[no-any-return]

    def consolidate(
        self,
        space_id: str,
        ids: Sequence[str] | None = None,
        older_than: float | None = None,
        types: Sequence[int] = (),
        min_confidence: float = 0.0,
    ) -> dict[str, int]:
        """Move matching memories to CONSOLIDATED; answers {id: new state} of those moved."""
        space = resolve_space(space_id)
        return self._write(  # type: ignore[no-any-return]
            _op_consolidate, space, list(ids) if ids is not None else None, older_than,
            list(types), min_confidence,
        )

    def drop_space(self, space_id: str) -> int:
        space = resolve_space(space_id)
        return int(self._write(_op_drop_space, space))

    def touch(self, space: str, ids: Sequence[str]) -> None:
        """Record an access (refreshes the forgetting curve); best effort, never blocks."""
        if not ids:
            return
        try:
            self._writer.submit(_op_touch, space, list(ids), self.clock())
        except (Overloaded, StoreClosed):
            pass  # an access time is not worth pushing back a reader for

    # -- reads -------------------------------------------------------------------------

    def _row_to_record(self, row: Sequence[Any], now: float) -> MemoryRecord:
        (_rowid, mid, content, emb, conf, activation, decay_rate, mtype, state, created,
         last_access, tags, metadata) = row
        s = self.settings
        return MemoryRecord(
            id=mid,
            content=content,
            embedding=emb or b"",
            confidence=decayed(conf, now - last_access, decay_rate, s.forgetting_exponent,
                               s.forgetting_floor, s.forgetting_scale_s),
            tags=orjson.loads(tags),
            metadata=orjson.loads(metadata),
            memory_type=mtype,
            decay_rate=decay_rate,
            created_at=created,
            activation=activation,
            state=state,
            last_access=last_access,
        )

    def get(self, space_id: str, ids: Sequence[str], include_suppressed: bool = False
            ) -> list[MemoryRecord]:
        space = resolve_space(space_id)
        conn = self._reader()
        now = self.clock()
        found: dict[str, MemoryRecord] = {}
        cond = "" if include_suppressed else " AND suppressed = 0"
        for chunk in _chunks(list(ids), _SQL_CHUNK):
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE space = ? AND id IN ({marks}){cond}",
                (space, *chunk),
            ):
                found[row[1]] = self._row_to_record(row, now)
        return [found[i] for i in ids if i in found]

    def _text_seeds(self, conn: sqlite3.Connection, space: str, text: str, want: int
                    ) -> dict[int, float]:
        query = fts_query(text)
        if query is None:
            return {}
        # Rank inside the FTS table (fast path for ORDER BY rank LIMIT), then keep this
        # space's rows; widen the window if other spaces crowded it out.
        window = max(want * 4, 64)
        while True:
            rows = conn.execute(
                "SELECT f.rowid, f.rank FROM (SELECT rowid, rank FROM memories_fts "
                " WHERE memories_fts MATCH ? ORDER BY rank LIMIT ?) AS f "
                "JOIN memories m ON m.rowid = f.rowid WHERE m.space = ? AND m.suppressed = 0",
                (query, window, space),
            ).fetchall()
            if len(rows) >= want:
                break
            total = conn.execute(
                "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts "
                "MATCH ? LIMIT ?)", (query, window + 1)).fetchone()[0]
            if total <= window:
                break
            window *= 8
        if not rows:
            return {}
        # bm25 ranks are negative, best lowest; scale so the best seed has activation 1.
        best = -min(r[1] for r in rows) or 1.0
        return {r[0]: max(0.0, -r[1]) / best for r in rows[:want]}

    def _embedding_seeds(self, conn: sqlite3.Connection, space: str, vector: bytes,
                         min_similarity: float, want: int) -> dict[int, float]:
        q = np.frombuffer(vector, dtype=np.float32)
        qn = float(np.linalg.norm(q))
        if qn == 0:
            raise InvalidArgument("embedding cue is all zeros")
        q = q / qn
        best: list[tuple[float, int]] = []
        cur = conn.execute(
            "SELECT rowid, embedding FROM memories WHERE space = ? AND suppressed = 0 "
            "AND embedding IS NOT NULL AND length(embedding) = ?", (space, len(vector)))
        while True:
            rows = cur.fetchmany(8192)
            if not rows:
                break
            mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
                len(rows), -1)
            norms = np.linalg.norm(mat, axis=1)
            norms[norms == 0] = 1.0
            sims = (mat @ q) / norms
            k = min(want, len(rows))
            idx = np.argpartition(-sims, k - 1)[:k]
            best.extend((float(sims[i]), rows[i][0]) for i in idx)
            best = sorted(best, reverse=True)[:want]
        return {rowid: sim for sim, rowid in best if sim >= min_similarity and sim > 0}

    def _context_seeds(self, conn: sqlite3.Connection, space: str, q: RecallQuery, want: int
                       ) -> dict[int, float]:
        sql = "SELECT rowid, metadata, tags FROM memories WHERE space = ? AND suppressed = 0"
        args: list[Any] = [space]
        if q.time_start is not None:
            sql += " AND created_at >= ?"
            args.append(q.time_start)
        if q.time_end is not None:
            sql += " AND created_at <= ?"
            args.append(q.time_end)
        sql += " ORDER BY created_at DESC"
        seeds: dict[int, float] = {}
        participants = {p.lower() for p in q.participants}
        for rowid, metadata, tags in conn.execute(sql, args):
            if q.location or participants:
                meta = orjson.loads(metadata)
                if q.location and meta.get("location", "").lower() != q.location.lower():
                    continue
                if participants:
                    who = {t.lower() for t in orjson.loads(tags)}
                    who |= {w.strip().lower() for w in meta.get("who", "").split(",")}
                    if not participants & who:
                        continue
            seeds[rowid] = 1.0
            if len(seeds) >= want:
                break
        return seeds

    def recall(self, space_id: str, q: RecallQuery) -> RecallResult:
        """Seeds (text relevance, vector similarity or context) -> spreading activation
        along associations -> rank by activation x current confidence -> limit."""
        from engram_cli.engine.activation import spread

        started = time.perf_counter()
        space = resolve_space(space_id)
        s = self.settings
        conn = self._reader()
        now = self.clock()
        limit = max(1, min(q.limit, 10_000))
        want = max(limit * 3, 32)
        if q.text is not None:
            seeds = self._text_seeds(conn, space, q.text, want)
        elif q.embedding is not None:
            seeds = self._embedding_seeds(conn, space, q.embedding, q.similarity_threshold, want)
        elif q.time_start is not None or q.time_end is not None or q.location or q.participants:
            seeds = self._context_seeds(conn, space, q, want)
        else:
            raise InvalidArgument("the cue is empty",
                                  "give a semantic query, an embedding or a context")
        threshold = s.threshold if q.threshold is None else q.threshold
        hops = s.max_hops if q.max_hops is None else q.max_hops
        per_hop = s.decay if q.decay is None else q.decay
        deadline = started + s.recall_budget_ms / 1000.0
        id_of = self._ids_for_rowids(conn, list(seeds))
        activations = {id_of[r]: a for r, a in seeds.items() if r in id_of}
        paths: dict[str, list[str]] = {mid: [mid] for mid in activations}
        exhausted = False
        if q.spread and hops > 0 and activations:
            activations, paths, exhausted = spread(
                conn, space, activations, paths, hops, per_hop, threshold, deadline)
        total = len(activations)
        above = {mid: a for mid, a in activations.items() if a >= threshold}
        records = self.get(space, list(above))
        results = []
        required = set(q.required_tags)
        excluded = set(q.excluded_tags)
        for rec in records:
            if rec.confidence < q.min_confidence:
                continue
            if required and not required.issubset(rec.tags):
                continue
            if excluded and excluded.intersection(rec.tags):
                continue
            rec.activation = min(1.0, above[rec.id])
            results.append(rec)

        def score(rec: MemoryRecord) -> float:
            age_days = max(0.0, now - rec.last_access) / 86_400.0
            recency = 1.0 + 0.05 / (1.0 + age_days)
            return rec.activation * rec.confidence * recency

        results.sort(key=score, reverse=True)
        results = results[:limit]
        self.touch(space, [r.id for r in results])
        result = RecallResult(
            memories=results,
            total_activated=total,
            above_threshold=len(above),
            avg_activation=(sum(above.values()) / len(above)) if above else 0.0,
            budget_exhausted=exhausted,
        )
        if results:
            result.activation_path = paths.get(results[0].id, [])
        if q.trace:
            result.traces = [Trace(r.id, r.activation, paths.get(r.id, [r.id])) for r in results]
        result.elapsed_ms = (time.perf_counter() - started) * 1000.0
        return result

    @staticmethod
    def _ids_for_rowids(conn: sqlite3.Connection, rowids: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for chunk in _chunks(rowids, _SQL_CHUNK):
            marks = ",".join("?" * len(chunk))
            out.update(conn.execute(f"SELECT rowid, id FROM memories WHERE rowid IN ({marks})",
                                    chunk).fetchall())
        return out

    def recognize(self, space_id: str, content: str = "", embedding: bytes = b""
                  ) -> tuple[float, list[MemoryRecord]]:
        """How familiar is this? Answers (familiarity 0..1, the most similar memories)."""
        space = resolve_space(space_id)
        if content:
            exact = self.get(space, [content_id(content)])
            if exact:
                return 1.0, exact
            result = self.recall(space, RecallQuery(text=content, limit=5))
            words = set(_WORD_RE.findall(content.lower()))
            best = 0.0
            for rec in result.memories:
                other = set(_WORD_RE.findall(rec.content.lower()))
                if words or other:
                    best = max(best, len(words & other) / len(words | other))
            return best, result.memories
        if embedding:
            result = self.recall(space, RecallQuery(embedding=embedding, limit=5))
            best = max((r.activation for r in result.memories), default=0.0)
            return best, result.memories
        raise InvalidArgument("nothing to recognize", "send content, an embedding or a memory")

    def matching_ids(self, space_id: str, q: RecallQuery, cap: int = 100_000) -> list[str]:
        """Ids a cue selects (no spreading), for Forget by pattern."""
        q.limit = cap
        q.spread = False
        q.threshold = 0.0
        return [r.id for r in self.recall(space_id, q).memories]

    def stats(self, space_id: str | None = None) -> dict[str, Any]:
        """Counts and averages for one space, or all spaces when space_id is None."""
        conn = self._reader()
        where, args = ("WHERE suppressed = 0", [])
        if space_id is not None:
            where += " AND space = ?"
            args = [resolve_space(space_id)]
        row = conn.execute(
            f"SELECT count(*), avg(activation), avg(confidence), min(created_at), "
            f"max(created_at) FROM memories {where}", args).fetchone()
        by_type = {
            MemoryType(t).name.lower(): n for t, n in conn.execute(
                f"SELECT memory_type, count(*) FROM memories {where} GROUP BY memory_type", args)
        }
        by_state = {
            State(st).name.lower(): n for st, n in conn.execute(
                f"SELECT state, count(*) FROM memories {where} GROUP BY state", args)
        }
        per_space = dict(conn.execute(
            f"SELECT space, count(*) FROM memories {where} GROUP BY space", args).fetchall())
        if space_id is None:
            assoc = conn.execute("SELECT count(*) FROM associations").fetchone()[0]
        else:
            assoc = conn.execute("SELECT count(*) FROM associations WHERE space = ?",
                                 args).fetchone()[0]
        suppressed = conn.execute(
            "SELECT count(*) FROM memories WHERE suppressed = 1"
            + (" AND space = ?" if space_id is not None else ""), args).fetchone()[0]
        return {
            "total_memories": row[0],
            "avg_activation": row[1] or 0.0,
            "avg_confidence": row[2] or 0.0,
            "oldest_memory": row[3],
            "newest_memory": row[4],
            "by_type": by_type,
            "by_state": by_state,
            "spaces": per_space,
            "total_associations": assoc,
            "suppressed": suppressed,
            "queue_depth": self._writer.depth,
            "pressure": self._writer.pressure,
            "commits": self._writer.commits,
        }

    def health(self) -> dict[str, tuple[bool, str]]:
        components: dict[str, tuple[bool, str]] = {}
        try:
            self._reader().execute("SELECT 1 FROM memories LIMIT 1").fetchall()
            components["storage"] = (True, f"sqlite {sqlite3.sqlite_version} at {self.path}")
        except sqlite3.Error as exc:
            components["storage"] = (False, f"storage error: {exc}")
        alive = self._writer.is_alive()
        components["writer"] = (alive, f"queue {self._writer.depth}/{self._writer.capacity}"
                                if alive else "writer thread stopped")
        return components

    def schema_version(self) -> int:
        return migrations.schema_version(self._reader())

    # -- shutdown ----------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued writes, checkpoint the WAL, release the data directory."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        self._writer.join()
        conn = self._writer._conn
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # a busy reader; the WAL is replayed on next open
        conn.close()
        with self._readers_lock:
            for r in self._readers:
                r.close()
            self._readers.clear()
        self._unlock()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- write operations, run on the writer thread inside a SAVEPOINT ---------------------


def _op_remember(conn: sqlite3.Connection, space: str, items: list[tuple[int, MemoryRecord]],
                 now: float) -> list[tuple[int, str]]:
    conn.execute("INSERT OR IGNORE INTO spaces (name, created_at) VALUES (?, ?)", (space, now))
    existing: dict[str, tuple[Any, ...]] = {}
    ids = list({rec.id for _, rec in items})
    for chunk in _chunks(ids, _SQL_CHUNK):
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            "SELECT id, content, embedding, confidence, decay_rate, memory_type, created_at, "
            f"tags, metadata, state, suppressed FROM memories WHERE space = ? AND id IN ({marks})",
            (space, *chunk),
        ):
            existing[row[0]] = row[1:]
    rows = []
    outcomes = []
    for i, rec in items:
        tags = orjson.dumps(rec.tags).decode()
        meta = orjson.dumps(rec.metadata, option=orjson.OPT_SORT_KEYS).decode()
        emb = rec.embedding or None
        old = existing.get(rec.id)
        if old is None:
            state = State.RECENT
            created = rec.created_at or now
            outcome = "created"
        else:
            (o_content, o_emb, o_conf, o_decay, o_type, o_created, o_tags, o_meta, o_state,
             o_suppressed) = old
            created = rec.created_at or o_created
            same = (
                o_content == rec.content and o_emb == emb
                and abs(o_conf - rec.confidence) < 1e-7 and abs(o_decay - rec.decay_rate) < 1e-7
                and o_type == rec.memory_type and o_tags == tags and o_meta == meta
                and abs(o_created - created) < 1e-6 and not o_suppressed
            )
            if same:
                outcomes.append((i, "unchanged"))
                continue
            state = State.RECONSOLIDATING if o_state == State.CONSOLIDATED else o_state
            outcome = "updated"
        rows.append((space, rec.id, rec.content, emb, rec.confidence, rec.decay_rate,
                     rec.memory_type, state, created, now, now, tags, meta))
        # A later duplicate of this id in the same batch sees this version as stored.
        existing[rec.id] = (rec.content, emb, rec.confidence, rec.decay_rate, rec.memory_type,
                            created, tags, meta, state, 0)
        outcomes.append((i, outcome))
    if rows:
        conn.executemany(_UPSERT, rows)
    return outcomes


def _op_forget(conn: sqlite3.Connection, space: str, ids: list[str], mode: str, now: float
               ) -> int:
    affected = 0
    for chunk in _chunks(ids, _SQL_CHUNK):
        marks = ",".join("?" * len(chunk))
        if mode == "delete":
            cur = conn.execute(f"DELETE FROM memories WHERE space = ? AND id IN ({marks})",
                               (space, *chunk))
            conn.execute(f"DELETE FROM associations WHERE space = ? AND (source IN ({marks}) "
                         f"OR target IN ({marks}))", (space, *chunk, *chunk))
        elif mode == "overwrite":
            cur = conn.execute(
                f"UPDATE memories SET content = '', embedding = NULL, suppressed = 1, "
                f"updated_at = ? WHERE space = ? AND id IN ({marks})", (now, space, *chunk))
        else:
            cur = conn.execute(
                f"UPDATE memories SET suppressed = 1, updated_at = ? "
                f"WHERE space = ? AND suppressed = 0 AND id IN ({marks})", (now, space, *chunk))
        affected += cur.rowcount
    return affected


def _op_associate(conn: sqlite3.Connection, space: str, source: str, target: str, kind: int,
                  strength: float, reason: str, now: float) -> tuple[bool, float]:
    for mid in (source, target):
        if conn.execute("SELECT 1 FROM memories WHERE space = ? AND id = ? AND suppressed = 0",
                        (space, mid)).fetchone() is None:
            raise NotFound(f"no memory {mid!r} in space {space!r}")
    row = conn.execute(
        "SELECT strength FROM associations WHERE space = ? AND source = ? AND target = ?",
        (space, source, target)).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO associations (space, source, target, type, strength, reason, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (space, source, target, kind, strength, reason, now, now))
        return True, strength
    # Strengthening saturates towards 1: each reinforcement closes part of the gap.
    final = min(1.0, row[0] + strength * (1.0 - row[0]))
    conn.execute(
        "UPDATE associations SET strength = ?, type = ?, reason = ?, updated_at = ? "
        "WHERE space = ? AND source = ? AND target = ?",
        (final, kind, reason or "", now, space, source, target))
    return False, final


def _op_consolidate(conn: sqlite3.Connection, space: str, ids: list[str] | None,
                    older_than: float | None, types: list[int], min_confidence: float
                    ) -> dict[str, int]:
    sql = ("SELECT id FROM memories WHERE space = ? AND suppressed = 0 AND state IN (?, ?, ?)")
    args: list[Any] = [space, State.RECENT, State.CONSOLIDATING, State.RECONSOLIDATING]
    if older_than is not None:
        sql += " AND created_at <= ?"
        args.append(older_than)
    if types:
        sql += f" AND memory_type IN ({','.join('?' * len(types))})"
        args.extend(types)
    if min_confidence > 0:
        sql += " AND confidence >= ?"
        args.append(min_confidence)
    if ids is not None:
        chosen: list[str] = []
        for chunk in _chunks(ids, _SQL_CHUNK):
            chosen.extend(r[0] for r in conn.execute(
                sql + f" AND id IN ({','.join('?' * len(chunk))})", (*args, *chunk)))
    else:
        chosen = [r[0] for r in conn.execute(sql, args)]
    for chunk in _chunks(chosen, _SQL_CHUNK):
        marks = ",".join("?" * len(chunk))
        conn.execute(f"UPDATE memories SET state = ? WHERE space = ? AND id IN ({marks})",
                     (State.CONSOLIDATED, space, *chunk))
    return {mid: int(State.CONSOLIDATED) for mid in chosen}


def _op_drop_space(conn: sqlite3.Connection, space: str) -> int:
    n = conn.execute("DELETE FROM memories WHERE space = ?", (space,)).rowcount
    conn.execute("DELETE FROM associations WHERE space = ?", (space,))
    conn.execute("DELETE FROM spaces WHERE name = ?", (space,))
    return int(n)


def _op_touch(conn: sqlite3.Connection, space: str, ids: list[str], now: float) -> None:
    for chunk in _chunks(ids, _SQL_CHUNK):
        conn.execute(
            f"UPDATE memories SET last_access = ? WHERE space = ? AND id IN "
            f"({','.join('?' * len(chunk))})", (now, space, *chunk))
