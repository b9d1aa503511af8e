"""The memory store: a RAM hot tier in front of the warm tier (SQLite in WAL mode with an
FTS5 index, at `warm_path`), one writer thread, and the recall pipeline.

Writes go through one writer thread that takes every operation waiting in its bounded
queue (`queue_capacity`; past it a write raises Overloaded, which the server answers
with RESOURCE_EXHAUSTED and retry-after-ms), runs them in one transaction and commits
them together (group commit; if one fails, the others are re-run without it); a
caller's future resolves only after the COMMIT, so an acknowledged write is in the WAL
before the client hears of it (fsynced first with durability "fsync"). Reads use
per-thread connections and never wait for the writer.

Recall: seeds (engine/text.py for text, a vector scan for embeddings, or a context
filter) -> spreading activation over the edges table (engine/activation.py) -> ranking by
activation x decayed confidence (engine/forgetting.py) x a small recency boost -> limit,
all inside the `recall_budget_ms` budget. Rows come from the hot tier (engine/hot.py)
when they can. Background threads: consolidation (engine/consolidation.py) and, with
durability "group", the periodic fsync.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import heapq
import itertools
import math
import os
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
from engram_cli.engine.consolidation import Consolidator, PassReport
from engram_cli.engine.forgetting import decayed
from engram_cli.engine.hot import HotTier, Row
from engram_cli.engine.model import (
    CREATED,
    MAX_CONTENT_BYTES,
    MAX_EMBEDDING_DIMS,
    OUTCOME_NAMES,
    REFUSED,
    UNCHANGED,
    UPDATED,
    MemoryRecord,
    MemoryType,
    State,
    WriteOutcome,
    content_id,
    memory_key,
    resolve_space,
)
from engram_cli.engine.settings import DEFAULT_SETTINGS, Settings
from engram_cli.engine.text import WORD_RE, TextSeeder
from engram_cli.errors import EngramError, InvalidArgument, NotFound, Overloaded, StoreClosed

DB_NAME = "engram.db"
LOCK_NAME = "LOCK"
# 16 KiB pages instead of SQLite's 4 KiB: the (space, id) index takes memories in random
# order (ids are hashes), so each commit rewrites most of its leaf pages; a quarter as
# many pages makes a bulk insert about 20% cheaper, for a file about 10% larger.
PAGE_SIZE = 16384
# The writer checkpoints the WAL into the database once it holds this much (SQLite's
# default is 1,000 pages). Past a few hundred thousand memories a bulk commit rewrites
# most of the key index's leaf pages; checkpointing after every such commit copied each
# page back every time, letting the log grow over several commits copies it back once
# (1,000,000-record import: 67k -> 71k records/s, four pairs of runs). The WAL file may
# reach this size plus one commit; at shutdown it is checkpointed and removed.
WAL_CHECKPOINT_BYTES = 128 * 1024 * 1024
_SQL_CHUNK = 900  # stays under SQLite's host-parameter limit with room to spare
_ID_CHUNK = _SQL_CHUNK // 2  # ids looked up by key and id: two values each
_MAX_OPS_PER_COMMIT = 256
_COLUMNS = (
    "rowid, id, content, embedding, confidence, activation, decay_rate, memory_type, "
    "state, created_at, last_access, tags, metadata"
)
_UPSERT = """
INSERT INTO memories (space, id, key, content, embedding, confidence, decay_rate,
                      memory_type, state, created_at, last_access, updated_at, tags, metadata,
                      suppressed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (key) DO UPDATE SET
    content = excluded.content, embedding = excluded.embedding,
    confidence = excluded.confidence, decay_rate = excluded.decay_rate,
    memory_type = excluded.memory_type, state = excluded.state,
    created_at = excluded.created_at, last_access = excluded.last_access,
    updated_at = excluded.updated_at, tags = excluded.tags, metadata = excluded.metadata,
    suppressed = 0
"""
_RECENT = int(State.RECENT)


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


def embedding_to_bytes(values: Iterable[float]) -> bytes:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                     dtype=np.float32)
    return arr.tobytes()


_MEMORY_TYPES = frozenset(int(t) for t in MemoryType)
_CONTENT_CHARS_SAFE = MAX_CONTENT_BYTES // 4  # a str this long is within the byte limit


def memory_error(content: str, embedding: bytes, confidence: float, decay_rate: float,
                 memory_type: int) -> str:
    """Why a memory with these values cannot be stored, or '' when it can: the engine's
    rules every stored memory satisfies (NaN fails every comparison, so it is refused)."""
    if not content and not embedding:
        return "memory has neither content nor embedding"
    if len(content) > _CONTENT_CHARS_SAFE and len(content.encode()) > MAX_CONTENT_BYTES:
        return f"content is {len(content.encode())} bytes; the limit is {MAX_CONTENT_BYTES}"
    if not 0.0 <= confidence <= 1.0:
        return f"confidence {confidence} is outside 0..1"
    if embedding:
        dims = len(embedding) // 4
        if dims > MAX_EMBEDDING_DIMS:
            return f"embedding has {dims} dimensions; the limit is {MAX_EMBEDDING_DIMS}"
        if not np.isfinite(np.frombuffer(embedding, dtype=np.float32)).all():
            return "embedding contains NaN or infinity"
    if not decay_rate >= 0:
        return f"decay_rate {decay_rate} is negative"
    if memory_type not in _MEMORY_TYPES:
        return f"unknown memory_type {memory_type}"
    return ""


class WriteBatch:
    """Memories of one space made ready for the writer, in request order: one SQL row
    each for the valid ones (validated, id filled in, tags and metadata as JSON), and the
    reason for each one refused. Built by the caller's thread, so the writer thread - the
    store's bottleneck under bulk load - does little more than run SQL."""

    __slots__ = ("created_given", "now", "positions", "rejected", "rows", "space")

    def __init__(self, space: str, now: float) -> None:
        self.space = space
        self.now = now
        self.rows: list[tuple[Any, ...]] = []  # _UPSERT's values
        self.positions: list[int] = []  # each row's position in the request
        self.created_given: list[bool] = []  # False: created_at is `now` (or kept, on update)
        self.rejected: list[tuple[int, str, str]] = []  # (position, id, why)

    def add(self, position: int, mid: str, content: str, embedding: bytes, confidence: float,
            decay_rate: float, memory_type: int, created_at: float | None, tags: list[str],
            metadata: dict[str, str]) -> None:
        if not mid:
            mid = content_id(content, embedding)
        error = memory_error(content, embedding, confidence, decay_rate, memory_type)
        if error:
            self.rejected.append((position, mid, error))
            return
        now = self.now
        space = self.space
        self.rows.append((
            space, mid, memory_key(space, mid), content, embedding or None, confidence,
            decay_rate, memory_type, _RECENT, created_at or now, now, now,
            orjson.dumps(tags).decode(),
            orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode() if metadata else "{}",
        ))
        self.positions.append(position)
        self.created_given.append(bool(created_at))

    def add_record(self, position: int, rec: MemoryRecord) -> None:
        self.add(position, rec.id, rec.content, rec.embedding, rec.confidence, rec.decay_rate,
                 rec.memory_type, rec.created_at, rec.tags, rec.metadata)


class _OutsideTransaction:
    """A writer operation that runs alone, between two transactions: PRAGMAs such as
    synchronous cannot change inside one."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, conn: sqlite3.Connection, *args: Any) -> Any:
        return self.fn(conn, *args)


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
                    alone = isinstance(self._pending[0][0], _OutsideTransaction)
                    if alone and ops:
                        break
                    ops.append(self._pending.popleft())
                    if alone:
                        break
            if isinstance(ops[0][0], _OutsideTransaction):
                fn, args, fut = ops[0]
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(self._conn, *args))
                    except Exception as exc:
                        fut.set_exception(exc)
                continue
            self._execute(ops)

    def _execute(self, ops: list[tuple[Callable[..., Any], tuple[Any, ...], Future]]) -> None:
        # Optimistic group commit: every operation in one transaction, no SAVEPOINTs (a
        # SAVEPOINT around writes that fire triggers - the FTS index, the edges table -
        # makes each write slower the larger the database: 29k -> 9k memories/s by 60k).
        # If one operation fails, the group is rolled back and each operation re-run in
        # its own transaction, so a failure still stays its own.
        started = time.perf_counter()
        live = [(fn, args, fut) for fn, args, fut in ops if fut.set_running_or_notify_cancel()]
        if not live:
            return
        done = self._transaction(live, isolate=len(live) == 1)
        if done is None:
            done = []
            for op in live:
                one = self._transaction([op], isolate=True)
                done.extend(one or [])
        self.ops += len(live)
        per_op = (time.perf_counter() - started) / len(live)
        self._op_seconds = 0.8 * self._op_seconds + 0.2 * per_op
        for fut, result, error in done:
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)

    def _transaction(self, ops: list[tuple[Callable[..., Any], tuple[Any, ...], Future]],
                     isolate: bool) -> list[tuple[Future, Any, BaseException | None]] | None:
        """Run ops in one transaction. Answers their outcomes, or None when one failed and
        the group was rolled back (with isolate=True the failure is that op's outcome)."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [(fut, None, EngramError(f"store unavailable: {exc}")) for _, _, fut in ops]
        done: list[tuple[Future, Any, BaseException | None]] = []
        for fn, args, fut in ops:
            try:
                done.append((fut, fn(conn, *args), None))
            except Exception as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if not isolate:
                    return None
                return [(fut, None, exc)]
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(fut, None, EngramError(f"commit failed: {exc}")) for fut, _, _ in done]
        self.commits += 1
        return done


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
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
        self._writer = _Writer(conn, settings.queue_capacity)
        self._writer.start()
        self.hot = HotTier(settings.hot_capacity)
        self.rows_written = 0
        self._text = TextSeeder(lambda: self.rows_written)
        self._touch_lock = threading.Lock()
        self._touch_pending: dict[str, dict[str, float]] = {}
        self._touch_queued = False
        self._stop = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, daemon=True,
                                        name="engram-fsync")
        self._syncer.start()
        self.consolidator = Consolidator(self)
        self.consolidator.start()

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
        # Takes effect only when the file is created (an older store keeps its pages).
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        # The schema's triggers find memories by key (migration 004).
        conn.create_function("engram_key", 2, memory_key, deterministic=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    def _apply_durability(self, conn: sqlite3.Connection, durability: str | None = None
                          ) -> None:
        # WAL + FULL fsyncs the log at every commit; WAL + NORMAL writes it to the OS at
        # every commit (safe from kill -9) and fsyncs at checkpoints, which _sync_loop
        # runs every group_fsync_ms.
        mode = "FULL" if (durability or self.settings.durability) == "fsync" else "NORMAL"
        conn.execute(f"PRAGMA synchronous={mode}")

    def _sync_loop(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.settings.group_fsync_ms / 1000.0):
                if self.settings.durability != "group":
                    continue
                if conn is None:
                    conn = self._connect(cache_mib=1)
                    conn.execute("PRAGMA synchronous=NORMAL")
                with contextlib.suppress(sqlite3.Error):
                    # PASSIVE never blocks the writer or readers; it fsyncs the WAL
                    # before copying pages back.
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            if conn is not None:
                conn.close()

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
        if settings.durability != old.durability:
            # First, on the writer thread between two commits: if the queue is full this
            # raises Overloaded before anything has changed, so the caller can roll back.
            self._writer.submit(_OutsideTransaction(
                lambda conn: self._apply_durability(conn, settings.durability))).result()
        self.settings = settings
        self._writer.capacity = settings.queue_capacity
        self.hot.resize(settings.hot_capacity)
        if (settings.consolidation_interval_s != old.consolidation_interval_s
                or settings.consolidation_min_age_s != old.consolidation_min_age_s):
            self.consolidator.wake()

    @property
    def pressure(self) -> float:
        return self._writer.pressure

    def retry_after_ms(self) -> int:
        """How long a pushed-back writer should wait, from the writer's current pace."""
        return self._writer.retry_after_ms()

    @property
    def queue_depth(self) -> int:
        return self._writer.depth

    # -- writes ------------------------------------------------------------------------

    def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._writer.submit(fn, *args).result()

    def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(conn, *args) on the writer thread (grouped with other writes; re-run
        alone if a neighbour fails, so it must only write through conn); wait for the
        commit and answer its result."""
        return self._writer.submit(fn, *args).result()

    def invalidate(self, keys: Sequence[tuple[str, str]]) -> None:
        """Drop (space, id) pairs from the hot tier after a write changed them."""
        by_space: dict[str, list[str]] = {}
        for sp, mid in keys:
            by_space.setdefault(sp, []).append(mid)
        for sp, mids in by_space.items():
            self.hot.invalidate(sp, mids)

    def remember_many(self, space_id: str, records: Sequence[MemoryRecord]) -> list[WriteOutcome]:
        """Store many memories in one transaction; answers one outcome per record, in order.

        A record without an id gets its content id (set on the record). An existing id is
        replaced (upsert); one identical to what is stored is left alone ("unchanged").
        """
        batch = WriteBatch(resolve_space(space_id), self.clock())
        for i, rec in enumerate(records):
            batch.add_record(i, rec)
        outcomes: list[WriteOutcome | None] = [None] * len(records)
        for i, row, code in zip(batch.positions, batch.rows, self.write_batch(batch),
                                strict=True):
            outcomes[i] = WriteOutcome(i, row[1], OUTCOME_NAMES[code])
        for i, mid, why in batch.rejected:
            outcomes[i] = WriteOutcome(i, mid, "rejected", why)
        for rec, out in zip(records, outcomes, strict=True):
            rec.id = out.memory_id  # type: ignore[union-attr]  # every position is filled
        return outcomes  # type: ignore[return-value]

    def write_batch(self, batch: WriteBatch) -> list[int]:
        """Write a WriteBatch's rows in one transaction; answers an outcome code (CREATED,
        UPDATED, UNCHANGED or REFUSED) per row, in order. A refused row (its key is held by
        another id) is also added to batch.rejected, with the reason."""
        if not batch.rows:
            return []
        # Flattened here, on the caller's thread, not on the writer's: it is the bottleneck.
        values = list(itertools.chain.from_iterable(batch.rows))
        codes: list[int] = self._write(_op_remember, batch.space, batch.rows, values,
                                       batch.created_given, batch.now)
        if REFUSED in codes:
            batch.rejected.extend(
                (i, row[1], f"id {row[1]!r} has the same 64-bit key as another memory of "
                            "this space: store it under another id")
                for i, row, code in zip(batch.positions, batch.rows, codes, strict=True)
                if code == REFUSED)
        created = codes.count(CREATED)
        self.rows_written += created
        if created < len(codes):  # a new memory cannot be in the hot tier: skip those
            changed = [row[1] for row, code in zip(batch.rows, codes, strict=True)
                       if code == UPDATED]
            if changed:
                self.hot.invalidate(batch.space, changed)
        return codes

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
        n = int(self._write(_op_forget, space, list(ids), mode, self.clock()))
        self.hot.invalidate(space, ids)
        return n

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

    def associate_many(self, space_id: str, edges: Sequence[tuple[str, str, float]],
                       kind: int = 0, reason: str = "") -> int:
        """Bulk edges (source, target, strength), one commit; an existing edge is
        strengthened as by associate(). For bulk loads: the memories are not checked to
        exist (recall skips an edge to a missing memory). Answers edges written."""
        space = resolve_space(space_id)
        return int(self._write(_op_associate_many, space, list(edges), kind, reason,
                               self.clock()))

    def consolidate(
        self,
        space_id: str,
        ids: Sequence[str] | None = None,
        older_than: float | None = None,
        types: Sequence[int] = (),
        min_confidence: float = 0.0,
    ) -> PassReport:
        """Consolidate matching memories now (RECENT/RECONSOLIDATING -> CONSOLIDATING ->
        CONSOLIDATED), with this space's co-recall edges; answers what changed."""
        space = resolve_space(space_id)
        return self.consolidator.consolidate(
            space, list(ids) if ids is not None else None, older_than, types, min_confidence)

    def drop_space(self, space_id: str) -> int:
        space = resolve_space(space_id)
        n = int(self._write(_op_drop_space, space))
        self.hot.clear()
        return n

    def touch(self, space: str, ids: Sequence[str]) -> None:
        """Record an access (refreshes the forgetting curve); best effort, never blocks.

        Accesses are gathered and written by one writer operation at a time, so a storm
        of recalls costs the writer one small commit, not one per recall."""
        if not ids:
            return
        now = self.clock()
        self.hot.touched(space, ids, now)
        with self._touch_lock:
            pending = self._touch_pending.setdefault(space, {})
            for mid in ids:
                pending[mid] = now
            if self._touch_queued:
                return
            self._touch_queued = True
        try:
            self._writer.submit(self._op_touch_pending)
        except (Overloaded, StoreClosed):
            with self._touch_lock:
                self._touch_queued = False  # an access time is not worth pushing back a reader

    def _op_touch_pending(self, conn: sqlite3.Connection) -> None:
        with self._touch_lock:
            pending, self._touch_pending = self._touch_pending, {}
            self._touch_queued = False
        for space, times in pending.items():
            conn.executemany(
                "UPDATE memories SET last_access = ? WHERE key = ? AND space = ? AND id = ?",
                [(t, memory_key(space, mid), space, mid) for mid, t in times.items()])

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
        now = self.clock()
        if include_suppressed:
            conn = self._reader()
            found: dict[str, MemoryRecord] = {}
            for chunk in _chunks(list(ids), _ID_CHUNK):
                where, args = _by_ids(space, chunk)
                for row in conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE {where}", args):
                    found[row[1]] = self._row_to_record(row, now)
            return [found[i] for i in ids if i in found]
        rows = self._rows_by_id(self._reader(), space, ids, self.hot.epoch())
        return [self._row_to_record(rows[i], now) for i in ids if i in rows]

    # Rows come from the hot tier when they can, else from disk (and then go hot). Only
    # visible (not suppressed) rows are ever cached.

    def _rows_by_id(self, conn: sqlite3.Connection, space: str, ids: Iterable[str],
                    epoch: int) -> dict[str, Row]:
        rows, missing = self.hot.get_many(space, ids)
        if missing:
            loaded: list[Row] = []
            for chunk in _chunks(missing, _ID_CHUNK):
                where, args = _by_ids(space, chunk)
                loaded.extend(conn.execute(
                    f"SELECT {_COLUMNS} FROM memories WHERE {where} AND suppressed = 0", args))
            self.hot.put_many(space, loaded, epoch)
            rows.update((r[1], r) for r in loaded)
        return rows

    def _rows_by_rowid(self, conn: sqlite3.Connection, space: str, rowids: Iterable[int],
                       epoch: int) -> dict[int, Row]:
        # "+space": without the plus SQLite's planner prefers the (space, state) index,
        # which scans the whole space instead of looking up a few rowids.
        found, missing = self.hot.get_rowids(rowids)
        rows = {rid: row for rid, (sp, row) in found.items() if sp == space}
        if missing:
            loaded: list[Row] = []
            for chunk in _chunks(missing, _SQL_CHUNK):
                marks = ",".join("?" * len(chunk))
                loaded.extend(conn.execute(
                    f"SELECT {_COLUMNS} FROM memories WHERE rowid IN ({marks}) AND +space = ? "
                    f"AND suppressed = 0", (*chunk, space)))
            self.hot.put_many(space, loaded, epoch)
            rows.update((r[0], r) for r in loaded)
        return rows

    def _embedding_seeds(self, conn: sqlite3.Connection, space: str, vector: bytes,
                         min_similarity: float, want: int, deadline: float
                         ) -> tuple[dict[int, float], bool]:
        q = np.frombuffer(vector, dtype=np.float32)
        qn = float(np.linalg.norm(q))
        if qn == 0:
            raise InvalidArgument("embedding cue is all zeros")
        q = q / qn
        best: list[tuple[float, int]] = []
        exhausted = False
        cur = conn.execute(
            "SELECT rowid, embedding FROM memories WHERE space = ? AND suppressed = 0 "
            "AND embedding IS NOT NULL AND length(embedding) = ?", (space, len(vector)))
        while True:
            if time.perf_counter() > deadline:
                exhausted = True  # the best of what was scanned so far
                break
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
        cur.close()
        return ({rowid: sim for sim, rowid in best if sim >= min_similarity and sim > 0},
                exhausted)

    def _context_seeds(self, conn: sqlite3.Connection, space: str, q: RecallQuery, want: int,
                       deadline: float) -> tuple[dict[int, float], bool]:
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
        for n, (rowid, metadata, tags) in enumerate(conn.execute(sql, args)):
            if n % 1024 == 1023 and time.perf_counter() > deadline:
                return seeds, True
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
        return seeds, False

    def recall(self, space_id: str, q: RecallQuery) -> RecallResult:
        """Seeds (text relevance, vector similarity or context) -> spreading activation
        along associations -> rank by activation x current confidence -> limit.

        The whole recall shares one time budget (recall_budget_ms): seeding and spreading
        stop when it runs out and the best found so far is ranked and returned."""
        from engram_cli.engine.activation import path_to, spread

        started = time.perf_counter()
        space = resolve_space(space_id)
        s = self.settings
        conn = self._reader()
        now = self.clock()
        epoch = self.hot.epoch()
        deadline = started + s.recall_budget_ms / 1000.0
        limit = max(1, min(q.limit, 100_000))
        want = max(limit * 3, 32)
        exhausted = False
        if q.text is not None:
            seeds, exhausted = self._text.seeds(conn, space, q.text, want, deadline, limit)
        elif q.embedding is not None:
            seeds, exhausted = self._embedding_seeds(conn, space, q.embedding,
                                                     q.similarity_threshold, want, deadline)
        elif q.time_start is not None or q.time_end is not None or q.location or q.participants:
            seeds, exhausted = self._context_seeds(conn, space, q, want, deadline)
        else:
            raise InvalidArgument("the cue is empty",
                                  "give a semantic query, an embedding or a context")
        threshold = s.threshold if q.threshold is None else q.threshold
        hops = s.max_hops if q.max_hops is None else q.max_hops
        per_hop = s.decay if q.decay is None else q.decay
        # Everything below is keyed by memory rowid; ids come with the rows. Seeds are
        # visible memories of this space already.
        activations = dict(seeds)
        parent: dict[int, int] = {}
        if q.spread and hops > 0 and activations and not exhausted:
            activations, parent, exhausted = spread(
                conn, activations, hops, per_hop, threshold, deadline)
        total = len(activations)
        above = {rid: a for rid, a in activations.items() if a >= threshold}
        top, rows = self._rank(conn, space, above, q, limit, now, epoch)
        results = []
        for _, rid, a in top:
            rec = self._row_to_record(rows[rid], now)
            rec.activation = a
            results.append(rec)
        ids = [r.id for r in results]
        self.touch(space, ids)
        self.consolidator.note_recalled(space, ids)
        result = RecallResult(
            memories=results,
            total_activated=total,
            above_threshold=len(above),
            avg_activation=(sum(above.values()) / len(above)) if above else 0.0,
            budget_exhausted=exhausted,
        )
        if results:
            paths = {rid: path_to(rid, parent) for _, rid, _ in (top if q.trace else top[:1])}
            names = self._ids_of(conn, rows, {r for p in paths.values() for r in p})
            named = {rid: [names.get(r, "?") for r in p] for rid, p in paths.items()}
            result.activation_path = named[top[0][1]]
            if q.trace:
                result.traces = [Trace(rec.id, rec.activation, named[rid])
                                 for rec, (_, rid, _) in zip(results, top, strict=True)]
        result.elapsed_ms = (time.perf_counter() - started) * 1000.0
        return result

    def _rank(self, conn: sqlite3.Connection, space: str, above: dict[int, float],
              q: RecallQuery, limit: int, now: float, epoch: int
              ) -> tuple[list[tuple[float, int, float]], dict[int, Row]]:
        """The `limit` best by activation x current confidence x recency, best first.

        Rows are read in activation order and reading stops once no unread memory can
        beat the current top `limit`: confidence is at most 1 and the recency boost at
        most 5%, so activation x 1.05 bounds a score. A spread reaching hundreds of
        memories then reads a few dozen rows, not hundreds."""
        s = self.settings
        exponent, floor, scale = s.forgetting_exponent, s.forgetting_floor, s.forgetting_scale_s
        required = set(q.required_tags)
        excluded = set(q.excluded_tags)
        order = sorted(above.items(), key=lambda kv: kv[1], reverse=True)
        best: list[tuple[float, int, float]] = []  # min-heap of the top `limit`
        rows: dict[int, Row] = {}
        step = max(limit, 16)
        for i in range(0, len(order), step):
            if len(best) >= limit and min(1.0, order[i][1]) * 1.05 < best[0][0]:
                break
            batch = order[i : i + step]
            rows.update(self._rows_by_rowid(conn, space, [r for r, _ in batch], epoch))
            for rid, a in batch:
                row = rows.get(rid)
                if row is None:
                    continue  # suppressed, or gone since the edge was followed
                # rowid, id, content, embedding, confidence, activation, decay_rate, ...
                elapsed = now - row[10]
                conf = decayed(row[4], elapsed, row[6], exponent, floor, scale)
                if conf < q.min_confidence:
                    continue
                if required or excluded:
                    tags = set(orjson.loads(row[11]))
                    if not required.issubset(tags) or excluded & tags:
                        continue
                # A small recency boost: at most 5%, fading over days since the last access.
                recency = 1.0 + 0.05 / (1.0 + max(0.0, elapsed) / 86_400.0)
                a = min(1.0, a)
                item = (a * conf * recency, rid, a)
                if len(best) < limit:
                    heapq.heappush(best, item)
                elif item > best[0]:
                    heapq.heapreplace(best, item)
        return sorted(best, reverse=True), rows

    @staticmethod
    def _ids_of(conn: sqlite3.Connection, rows: dict[int, Row], rowids: set[int]
                ) -> dict[int, str]:
        out = {rid: rows[rid][1] for rid in rowids if rid in rows}
        missing = [rid for rid in rowids if rid not in out]
        for chunk in _chunks(missing, _SQL_CHUNK):
            out.update(conn.execute(
                f"SELECT rowid, id FROM memories WHERE rowid IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
        return out

    def auto_link(self, space_id: str, rec: MemoryRecord, threshold: float = 0.5
                  ) -> list[str]:
        """Link a just-stored memory to its most similar existing ones (at most 5) whose
        similarity (cosine for embeddings, word overlap for text) is at least
        `threshold`; the edge strength is the similarity. Answers the ids linked."""
        from engram_cli.engine.text import word_similarity

        space = resolve_space(space_id)
        if rec.embedding:
            q = RecallQuery(embedding=rec.embedding, limit=6, similarity_threshold=threshold)
        elif rec.content:
            # Candidates by text relevance, however weak: similarity decides below.
            q = RecallQuery(text=rec.content, limit=10, threshold=0.0)
        else:
            return []
        scored = []
        for other in self.recall(space, q).memories:
            if other.id == rec.id:
                continue
            sim = other.activation if rec.embedding else word_similarity(rec.content,
                                                                         other.content)
            if sim >= threshold:
                scored.append((sim, other.id))
        scored.sort(reverse=True)
        edges = [(rec.id, mid, round(sim, 6)) for sim, mid in scored[:5]]
        if edges:
            self.associate_many(space, edges, kind=1, reason="auto_link")
        return [mid for _, mid, _ in edges]

    def recognize(self, space_id: str, content: str = "", embedding: bytes = b""
                  ) -> tuple[float, list[MemoryRecord]]:
        """How familiar is this? Answers (familiarity 0..1, the most similar memories)."""
        space = resolve_space(space_id)
        if content:
            exact = self.get(space, [content_id(content)])
            if exact:
                return 1.0, exact
            result = self.recall(space, RecallQuery(text=content, limit=5))
            words = set(WORD_RE.findall(content.lower()))
            best = 0.0
            for rec in result.memories:
                other = set(WORD_RE.findall(rec.content.lower()))
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
            "queue_capacity": self._writer.capacity,
            "pressure": self._writer.pressure,
            "commits": self._writer.commits,
            "tiers": self.tier_stats(),
            "consolidation": dataclasses.asdict(self.consolidator.stats),
        }

    def tier_stats(self) -> dict[str, Any]:
        warm_bytes = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                warm_bytes += os.path.getsize(f"{self.path}{suffix}")
        return {
            "hot_size": len(self.hot),
            "hot_capacity": self.hot.capacity,
            "hot_hits": self.hot.hits,
            "hot_misses": self.hot.misses,
            "hot_hit_rate": self.hot.hit_rate,
            "warm_path": str(self.path.parent),
            "warm_bytes": warm_bytes,
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
        self.consolidator.stop()
        self._stop.set()
        self._syncer.join()
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


# -- write operations, run on the writer thread in a group transaction ----------------


def _op_remember(conn: sqlite3.Connection, space: str, rows: list[tuple[Any, ...]],
                 values: list[Any], created_given: list[bool], now: float) -> list[int]:
    """Insert-first: every row goes in with ON CONFLICT DO NOTHING; when that inserted
    them all (a bulk load of new memories), that is the whole write, with no look-up.
    Otherwise the batch's keys are read back: those with rowids above the largest before
    the insert were created by it; the rest (ids already stored, or repeated in the
    batch) are compared and updated, and a row whose key another (space, id) holds is
    refused."""
    conn.execute("INSERT OR IGNORE INTO spaces (name, created_at) VALUES (?, ?)", (space, now))
    before = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0] or 0
    inserted = _insert_rows(conn, _INSERT_NEW_HEAD, _INSERT_NEW_TAIL, values)
    codes = [CREATED] * len(rows)
    if inserted == len(rows):
        return codes
    keys = list({row[2] for row in rows})
    existing: dict[int, tuple[Any, ...]] = {}
    fresh: set[int] = set()
    for chunk in _chunks(keys, _SQL_CHUNK):
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            "SELECT rowid, key, space, id, content, embedding, confidence, decay_rate, "
            "memory_type, created_at, tags, metadata, state, suppressed FROM memories "
            f"WHERE key IN ({marks})", chunk,
        ):
            existing[row[1]] = row[2:]
            if row[0] > before:
                fresh.add(row[1])
    updates = []
    for j, row in enumerate(rows):
        (_, mid, key, content, emb, conf, decay, mtype, _, created_at, _, _, tags, meta) = row
        if key in fresh:  # the first row with a new key is the one inserted
            fresh.discard(key)
            continue
        (o_space, o_id, o_content, o_emb, o_conf, o_decay, o_type, o_created, o_tags, o_meta,
         o_state, o_suppressed) = existing[key]
        if o_id != mid or o_space != space:
            codes[j] = REFUSED
            continue
        if not created_given[j]:
            created_at = o_created
        same = (
            o_content == content and o_emb == emb
            and abs(o_conf - conf) < 1e-7 and abs(o_decay - decay) < 1e-7
            and o_type == mtype and o_tags == tags and o_meta == meta
            and abs(o_created - created_at) < 1e-6 and not o_suppressed
        )
        if same:
            codes[j] = UNCHANGED
            continue
        state = State.RECONSOLIDATING if o_state == State.CONSOLIDATED else o_state
        updates.append((space, mid, key, content, emb, conf, decay, mtype, int(state),
                        created_at, now, now, tags, meta))
        # A later row with this id in the same batch sees this version as stored.
        existing[key] = (space, mid, content, emb, conf, decay, mtype, created_at, tags, meta,
                         state, 0)
        codes[j] = UPDATED
    if updates:
        _insert_rows(conn, _UPSERT_HEAD, _UPSERT_TAIL,
                     list(itertools.chain.from_iterable(updates)))
    return codes


def _by_ids(space: str, ids: Sequence[str]) -> tuple[str, list[Any]]:
    """A WHERE condition, and its values, for these ids of a space: found through the key
    index ("+space": not through the (space, state) index)."""
    marks = ",".join("?" * len(ids))
    return (f"key IN ({marks}) AND +space = ? AND id IN ({marks})",
            [*(memory_key(space, mid) for mid in ids), space, *ids])


# Many rows per statement: fewer statements for SQLite to prepare and step. (It was worth
# about 3x while the writer ran each operation in a SAVEPOINT, inside which FTS5 flushes
# its pending index data at every statement; the writer no longer uses SAVEPOINTs.)
_ROW_MARKS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
_ROW_WIDTH = _ROW_MARKS.count("?")
_UPSERT_HEAD, _UPSERT_TAIL = _UPSERT.split(_ROW_MARKS.join(("VALUES ", "")), 1)
_INSERT_NEW_HEAD = _UPSERT_HEAD
_INSERT_NEW_TAIL = "\nON CONFLICT (key) DO NOTHING"
_MAX_ROWS_PER_UPSERT = 2400


def _rows_per_upsert(conn: sqlite3.Connection) -> int:
    """As many rows as SQLite's limit on host parameters allows."""
    try:
        limit = conn.getlimit(  # type: ignore[attr-defined]  # Python >= 3.11
            sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[attr-defined]
    except AttributeError:
        limit = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    return max(1, min(_MAX_ROWS_PER_UPSERT, limit // _ROW_WIDTH))


def _insert_rows(conn: sqlite3.Connection, head: str, tail: str, values: list[Any]) -> int:
    """Run head VALUES (row), (row)... tail over rows of _ROW_WIDTH values each, given one
    after another in `values`; answers the rows changed.

    Full chunks, then the remainder in power-of-two chunks (at most ~11 more statements):
    batch sizes vary from request to request, and a statement with a row count never seen
    before is parsed and compiled anew (about 1.5 us a record at 2,400-record batches of
    random size), while these few shapes stay in the statement cache."""
    full = _rows_per_upsert(conn)
    start, total, changed = 0, len(values) // _ROW_WIDTH, 0
    while start < total:
        n = min(full, total - start)
        if n < full:
            n = 1 << (n.bit_length() - 1)
        changed += conn.execute(_rows_sql(head, tail, n),
                                values[start * _ROW_WIDTH : (start + n) * _ROW_WIDTH]).rowcount
        start += n
    return changed


@functools.lru_cache(maxsize=64)
def _rows_sql(head: str, tail: str, n: int) -> str:
    # The same str object each time: the statement cache's lookup hashes it only once.
    return f"{head}VALUES {','.join([_ROW_MARKS] * n)}{tail}"


def _op_forget(conn: sqlite3.Connection, space: str, ids: list[str], mode: str, now: float
               ) -> int:
    affected = 0
    for chunk in _chunks(ids, _ID_CHUNK):
        marks = ",".join("?" * len(chunk))
        where, args = _by_ids(space, chunk)
        if mode == "delete":
            cur = conn.execute(f"DELETE FROM memories WHERE {where}", args)
            conn.execute(f"DELETE FROM associations WHERE space = ? AND (source IN ({marks}) "
                         f"OR target IN ({marks}))", (space, *chunk, *chunk))
        elif mode == "overwrite":
            cur = conn.execute(
                f"UPDATE memories SET content = '', embedding = NULL, suppressed = 1, "
                f"updated_at = ? WHERE {where}", (now, *args))
        else:
            cur = conn.execute(
                f"UPDATE memories SET suppressed = 1, updated_at = ? "
                f"WHERE {where} AND suppressed = 0", (now, *args))
        affected += cur.rowcount
    return affected


def _op_associate(conn: sqlite3.Connection, space: str, source: str, target: str, kind: int,
                  strength: float, reason: str, now: float) -> tuple[bool, float]:
    for mid in (source, target):
        where, args = _by_ids(space, [mid])
        if conn.execute(f"SELECT 1 FROM memories WHERE {where} AND suppressed = 0",
                        args).fetchone() is None:
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


def op_mark(conn: sqlite3.Connection, space: str | None, ids: list[str] | None,
            state_from: int, state_to: int, stored_before: float | None,
            created_before: float | None, types: list[int], min_confidence: float,
            limit: int, after: int | None) -> list[tuple[int, str, str]]:
    """Move up to `limit` memories in state_from to state_to; answers (rowid, space, id)."""
    sql = "SELECT rowid, space, id FROM memories WHERE state = ? AND suppressed = 0"
    args: list[Any] = [state_from]
    if space is not None:
        sql += " AND space = ?"
        args.append(space)
    if stored_before is not None:
        sql += " AND updated_at <= ?"
        args.append(stored_before)
    if created_before is not None:
        sql += " AND created_at <= ?"
        args.append(created_before)
    if types:
        sql += f" AND memory_type IN ({','.join('?' * len(types))})"
        args.extend(types)
    if min_confidence > 0:
        sql += " AND confidence >= ?"
        args.append(min_confidence)
    if after is not None:
        sql += " AND rowid > ?"
        args.append(after)
    chosen: list[tuple[int, str, str]] = []
    if ids is not None:
        for chunk in _chunks(ids, _ID_CHUNK):
            if space is not None:
                where, more = _by_ids(space, chunk)
                chosen.extend(conn.execute(f"{sql} AND {where}", (*args, *more)))
            else:
                chosen.extend(conn.execute(
                    sql + f" AND id IN ({','.join('?' * len(chunk))})", (*args, *chunk)))
        chosen.sort()
        chosen = chosen[:limit]
    else:
        chosen = conn.execute(sql + " ORDER BY rowid LIMIT ?", (*args, limit)).fetchall()
    if state_from != state_to:
        conn.executemany("UPDATE memories SET state = ? WHERE rowid = ?",
                         [(state_to, rowid) for rowid, _, _ in chosen])
    return chosen


def op_finish(conn: sqlite3.Connection, rowids: list[int], state: int) -> int:
    """CONSOLIDATING -> `state` for these memories (an update since may have moved them)."""
    n = 0
    for rowid in rowids:
        n += conn.execute("UPDATE memories SET state = ? WHERE rowid = ? AND state = ?",
                          (state, rowid, State.CONSOLIDATING)).rowcount
    return n


def op_reinforce(conn: sqlite3.Connection, space: str, a: str, b: str, strength: float,
                 reason: str, now: float) -> bool | None:
    """Create or strengthen a <-> b; answers created, or None when either memory is gone."""
    try:
        created, _ = _op_associate(conn, space, a, b, 0, strength, reason, now)
    except NotFound:
        return None
    return created


def _op_associate_many(conn: sqlite3.Connection, space: str,
                       edges: list[tuple[str, str, float]], kind: int, reason: str,
                       now: float) -> int:
    n = 0
    for source, target, strength in edges:
        if source == target:
            continue
        conn.execute(
            "INSERT INTO associations (space, source, target, type, strength, reason, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (space, source, target) DO UPDATE SET "
            "strength = min(1.0, strength + excluded.strength * (1.0 - strength)), "
            "updated_at = excluded.updated_at",
            (space, source, target, kind, strength, reason, now, now))
        n += 1
    return n


def _op_drop_space(conn: sqlite3.Connection, space: str) -> int:
    n = conn.execute("DELETE FROM memories WHERE space = ?", (space,)).rowcount
    conn.execute("DELETE FROM associations WHERE space = ?", (space,))
    conn.execute("DELETE FROM spaces WHERE name = ?", (space,))
    return int(n)
