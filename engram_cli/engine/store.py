"""The memory store: one data directory, opened, locked, migrated and closed here, with
every engine question delegated to the room that answers it.

A RAM hot tier (engine/hot.py: memory rows, bounded by hot_capacity and hot_max_bytes)
sits in front of the warm tier: SQLite in WAL mode with an FTS5 index, at `warm_path`,
with the vector index (engine/indexer.py; held in RAM whole) persisted beside it. Writes
go through the single writer thread (engine/writer.py) as write operations
(engine/writes.py); reads lease one of a fixed number of read connections
(engine/readers.py) and never wait for the writer (engine/recall.py, engine/rows.py).
Background threads: consolidation (engine/consolidation.py), the merging of the full-text
index's b-trees (engine/textmerge.py) and, with durability "group", the periodic fsync
(engine/writer.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engram_cli.engine import backup as backups
from engram_cli.engine import migrations, rows
from engram_cli.engine.consolidation import Consolidator, PassReport
from engram_cli.engine.export import Edges, Row, export_pages, list_spaces, op_put_associations
from engram_cli.engine.hot import HotTier
from engram_cli.engine.indexer import INDEX_DIR, Indexer
from engram_cli.engine.model import (
    CREATED,
    OUTCOME_NAMES,
    REFUSED,
    UPDATED,
    MemoryRecord,
    WriteOutcome,
    memory_key,
    resolve_space,
)
from engram_cli.engine.readers import (
    READER_CACHE_BYTES,
    READER_STATEMENTS,
    ReaderPool,
    sqlite_memory,
)
from engram_cli.engine.recall import Recaller, RecallQuery, RecallResult
from engram_cli.engine.rows import space_dimension
from engram_cli.engine.rules import dimension_error
from engram_cli.engine.settings import DEFAULT_SETTINGS, Settings
from engram_cli.engine.text import TextSeeder
from engram_cli.engine.textmerge import TextMerger
from engram_cli.engine.vocab import Vocabulary
from engram_cli.engine.warmth import IndexWarmer
from engram_cli.engine.writer import (
    OutsideTransaction,
    Syncer,
    Writer,
    apply_durability,
    apply_size_cap,
)
from engram_cli.engine.writes import (
    AccessTimes,
    WriteBatch,
    op_associate,
    op_associate_many,
    op_drop_space,
    op_forget,
    op_remember,
)
from engram_cli.errors import EngramError, InvalidArgument, StoreClosed
from engram_cli.files import create_private, open_private, private_dir

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
# reach this size plus one commit; the writer also checkpoints it once quiet after a burst
# (engine/writer.py), and at shutdown it is checkpointed and removed.
WAL_CHECKPOINT_BYTES = 128 * 1024 * 1024


_DIMENSION_HINT = ("a space holds the dimension of its first vector: send vectors of that "
                   "size, or use another space")


class DataDirLocked(EngramError):
    """Another server holds the data directory."""


class Store:
    """A memory store in one data directory. Thread-safe."""

    def __init__(
        self,
        data_dir: Path | str,
        settings: Settings = DEFAULT_SETTINGS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = private_dir(Path(data_dir), own=False)
        self.settings = settings
        self.clock = clock
        self._lock_fd = self._lock_data_dir()
        db_dir = Path(settings.warm_path) if settings.warm_path else self.data_dir
        self.path = db_dir / DB_NAME
        try:
            private_dir(db_dir, own=False)
            # SQLite gives the -wal and -shm files the database file's mode: 0600 from here.
            create_private(self.path)
        except OSError as exc:  # warm_path = "/proc/self" was a traceback
            self._unlock()
            where = f"warm_path {db_dir}" if settings.warm_path else f"the data dir {db_dir}"
            raise EngramError(f"cannot create the store in {where}: {exc.strerror or exc}",
                              "choose a directory the server can write") from None
        self._closed = False
        conn = self._connect(cache_bytes=64 << 20)
        try:
            self.applied_migrations = migrations.migrate(conn)
        except BaseException:
            conn.close()
            self._unlock()
            raise
        apply_durability(conn, settings.durability)
        apply_size_cap(conn, settings.max_store_bytes)
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
        self._writer = Writer(conn, settings.queue_capacity)
        self._writer.start()
        self.hot = HotTier(settings.hot_capacity, settings.hot_max_bytes)
        self.rows_written = 0
        self._accesses = AccessTimes(self._writer.submit, written=self.hot.accessed)
        self._syncer = Syncer(lambda: self._connect(cache_bytes=1 << 20), lambda: self.settings)
        self._readers = ReaderPool(self._open_reader, settings.readers)
        # The engine's rooms read on the connection of the store call they run in.
        self._reader = self._readers.current
        self._syncer.start()
        self.consolidator = Consolidator(self.write, self.invalidate, lambda: self.settings,
                                         self.clock)
        self.indexer = Indexer(db_dir / INDEX_DIR, settings.embedding_model, self._reader,
                               self._writer.submit, settings.vector_candidates,
                               settings.embedding_workers)
        vocab = Vocabulary(lambda: self._connect(cache_bytes=4 << 20),
                           lambda: self._writer.commits, self._top_rowid)
        self._recaller = Recaller(self._reader, self.hot,
                                  TextSeeder(lambda: self.rows_written, vocab),
                                  lambda: self.settings, self.clock, self._recalled,
                                  lambda: self.indexer)
        self.text_merger = TextMerger(self.write, lambda: self.rows_written,
                                      lambda: self._writer.commits, vocab.refresh)
        # recall's index of visible memories, read ahead after an open or an idle
        self.warmth = IndexWarmer(lambda: self._open_reader(cache_bytes=1 << 20))
        self.consolidator.start()
        self.indexer.start()
        self.text_merger.start()
        self.warmth.start()

    # -- set-up ------------------------------------------------------------------------

    def _lock_data_dir(self) -> int:
        import fcntl

        fd = open_private(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
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

    def _connect(self, cache_bytes: int = 16 << 20, statements: int = 128
                 ) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0,
            cached_statements=statements,
        )
        # Takes effect only when the file is created (an older store keeps its pages).
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        # The schema's triggers find memories by key (migration 004).
        conn.create_function("engram_key", 2, memory_key, deterministic=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA cache_size=-{cache_bytes // 1024}")  # negative: KiB
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    def _top_rowid(self) -> int:
        with self._readers.lease() as conn:
            return int(conn.execute("SELECT max(rowid) FROM memories").fetchone()[0] or 0)

    def _open_reader(self, cache_bytes: int = READER_CACHE_BYTES) -> sqlite3.Connection:
        conn = self._connect(cache_bytes, READER_STATEMENTS)
        conn.execute("PRAGMA query_only=ON")
        return conn

    # -- settings ----------------------------------------------------------------------

    def update_settings(self, settings: Settings) -> None:
        """Apply live settings; those marked restart_required take effect on restart."""
        old = self.settings
        if settings.durability != old.durability:
            # First, on the writer thread between two commits: if the queue is full this
            # raises Overloaded before anything has changed, so the caller can roll back.
            self._writer.submit(OutsideTransaction(
                lambda conn: apply_durability(conn, settings.durability))).result()
        if settings.max_store_bytes != old.max_store_bytes:
            self._writer.submit(OutsideTransaction(
                lambda conn: apply_size_cap(conn, settings.max_store_bytes))).result()
        self.settings = settings
        self._writer.capacity = settings.queue_capacity
        self.hot.resize(settings.hot_capacity, settings.hot_max_bytes)
        if settings.vector_candidates != old.vector_candidates:
            self.indexer.set_candidates(settings.vector_candidates)
        if (settings.consolidation_interval_s != old.consolidation_interval_s
                or settings.consolidation_min_age_s != old.consolidation_min_age_s):
            self.consolidator.wake()

    def release_memory(self) -> None:
        """Free SQLite's page caches (the writer's, up to 64 MiB, and the idle readers'):
        for a server between bursts, so that its RSS returns near where it started. The
        caches fill again from the OS file cache as they are used. Skipped for the writer
        when its queue is full (it is busy, not idle)."""
        self._readers.shrink()
        with contextlib.suppress(EngramError):
            self._writer.submit(OutsideTransaction(
                lambda conn: conn.execute("PRAGMA shrink_memory").fetchall())).result()

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
        codes: list[int] = self.write(op_remember, batch.space, batch.rows, batch.values(),
                                      batch.created_given, batch.now, batch.dims)
        if REFUSED in codes:
            batch.rejected.extend(self._refusals(batch, codes))
        created = codes.count(CREATED)
        self.rows_written += created
        if created < len(codes):  # a new memory cannot be in the hot tier: skip those
            changed = [row[1] for row, code in zip(batch.rows, codes, strict=True)
                       if code == UPDATED]
            if changed:
                self.hot.invalidate(batch.space, changed)
        return codes

    def _refusals(self, batch: WriteBatch, codes: list[int]) -> list[tuple[int, str, str]]:
        """(position, id, why) of each row the writer refused: an embedding of another
        dimension than the space's (decided once, so reading it after the commit is
        reading what the writer compared with), or an id whose key another id holds."""
        held = None
        if batch.dims:
            with self._readers.lease() as conn:
                held = space_dimension(conn, batch.space)
        out = []
        for j, (i, row, code) in enumerate(zip(batch.positions, batch.rows, codes,
                                               strict=True)):
            if code != REFUSED:
                continue
            dim = batch.dims[j] if batch.dims else 0
            if dim and held is not None and dim != held:
                why = dimension_error(dim, batch.space, held)
            else:
                why = (f"id {row[1]!r} has the same 64-bit key as another memory of this "
                       "space: store it under another id")
            out.append((i, row[1], why))
        return out

    def remember(self, space_id: str, record: MemoryRecord) -> WriteOutcome:
        outcome = self.remember_many(space_id, [record])[0]
        if outcome.outcome == "rejected":
            raise InvalidArgument(outcome.error, _DIMENSION_HINT
                                  if outcome.error.startswith("embedding has ") else "")
        return outcome

    def forget(self, space_id: str, ids: Sequence[str], mode: str) -> int:
        """mode: suppress (reversible: hidden until stored again) | delete | overwrite."""
        space = resolve_space(space_id)
        if mode not in ("suppress", "delete", "overwrite"):
            raise InvalidArgument(f"unknown forget mode {mode!r}")
        if not ids:
            return 0
        n = int(self.write(op_forget, space, list(ids), mode, self.clock()))
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
        return self.write(op_associate, space, source, target, kind, strength, reason,
                          self.clock())  # type: ignore[no-any-return]

    def associate_many(self, space_id: str, edges: Sequence[tuple[str, str, float]],
                       kind: int = 0, reason: str = "") -> int:
        """Bulk edges (source, target, strength), one commit; an existing edge is
        strengthened as by associate(). For bulk loads: the memories are not checked to
        exist (recall skips an edge to a missing memory). Answers edges written."""
        space = resolve_space(space_id)
        return int(self.write(op_associate_many, space, list(edges), kind, reason,
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

    def put_associations(self, space_id: str,
                         edges: Sequence[tuple[str, str, float, int, str]]) -> int:
        """Edges (source, target, strength, type, reason) stored with exactly these values
        (an import of an export); answers edges written."""
        space = resolve_space(space_id)
        for source, target, strength, _, _ in edges:
            if not source or not target:
                raise InvalidArgument("an association needs a source and a target")
            if not (0.0 <= strength <= 1.0):
                raise InvalidArgument(f"association {source!r} -> {target!r}: strength "
                                      f"{strength} is outside 0..1")
        return int(self.write(op_put_associations, space, list(edges), self.clock()))

    def drop_space(self, space_id: str) -> int:
        space = resolve_space(space_id)
        n = int(self.write(op_drop_space, space))
        self.hot.clear()
        # The space may come back holding another dimension: its index goes with it.
        if self.indexer.index is not None:
            self.indexer.index.drop_space(space)
        return n

    def touch(self, space: str, ids: Sequence[str]) -> None:
        """Record an access (refreshes the forgetting curve); best effort, never blocks."""
        if not ids:
            return
        now = self.clock()
        # The kept rows get the new time only where it will be written.
        self.hot.touched(space, self._accesses.note(space, ids, now), now)

    # -- reads -------------------------------------------------------------------------

    def get(self, space_id: str, ids: Sequence[str], include_suppressed: bool = False
            ) -> list[MemoryRecord]:
        with self._readers.lease():
            return self._recaller.get(resolve_space(space_id), ids, include_suppressed)

    def recall(self, space_id: str, q: RecallQuery) -> RecallResult:
        """Seeds (text relevance, vector similarity or context) -> spreading activation
        along associations -> rank by activation x current confidence -> limit, inside
        the recall_budget_ms budget (engine/recall.py)."""
        self.warmth.recalled()
        with self._readers.lease():
            return self._recaller.recall(resolve_space(space_id), q)

    def _recalled(self, space: str, ids: list[str], stale: list[str]) -> None:
        self.touch(space, stale)
        self.consolidator.note_recalled(space, ids)

    def auto_link(self, space_id: str, rec: MemoryRecord, threshold: float = 0.5
                  ) -> list[str]:
        """Link a just-stored memory to its most similar existing ones (at most 5) whose
        similarity (cosine for embeddings, word overlap for text) is at least
        `threshold`; the edge strength is the similarity. Answers the ids linked."""
        space = resolve_space(space_id)
        with self._readers.lease():
            edges = [(rec.id, mid, round(sim, 6))
                     for sim, mid in self._recaller.similar(space, rec, threshold)]
        if edges:
            self.associate_many(space, edges, kind=1, reason="auto_link")
        return [mid for _, mid, _ in edges]

    def recognize(self, space_id: str, content: str = "", embedding: bytes = b""
                  ) -> tuple[float, list[MemoryRecord]]:
        """How familiar is this? Answers (familiarity 0..1, the most similar memories)."""
        with self._readers.lease():
            return self._recaller.recognize(resolve_space(space_id), content, embedding)

    def matching_ids(self, space_id: str, q: RecallQuery, cap: int = 100_000) -> list[str]:
        """Ids a cue selects (no spreading), for Forget by pattern: a text cue by its words
        alone, as upstream Engram selects (in hybrid mode, forgetting "old phone number"
        deleted every phone number); an embedding cue by its vector."""
        q.limit = cap
        q.spread = False
        q.threshold = 0.0
        q.mode = "lexical"  # for a text cue; an embedding cue seeds by vector whatever it is
        return [r.id for r in self.recall(space_id, q).memories]

    def stats(self, space_id: str | None = None) -> dict[str, Any]:
        """Counts and averages for one space, or all spaces when space_id is None."""
        space = resolve_space(space_id) if space_id is not None else None
        with self._readers.lease() as conn:
            counts = rows.counts(conn, space)
            vectors = self.vector_stats()
        used, peak = sqlite_memory()
        return {
            **counts,
            "queue_depth": self._writer.depth,
            "queue_capacity": self._writer.capacity,
            "pressure": self._writer.pressure,
            "commits": self._writer.commits,
            "idle_checkpoints": self._writer.idle_checkpoints,
            "tiers": self.tier_stats(),
            "consolidation": dataclasses.asdict(self.consolidator.stats),
            "vector_index": vectors,
            "text_index": {"merge_steps": self.text_merger.steps},
            "readers": {"size": self._readers.size, "open": self._readers.opened,
                        "background": self._readers.unpooled, "waits": self._readers.waits,
                        "sqlite_bytes": used, "sqlite_peak_bytes": peak},
        }

    def vector_stats(self) -> dict[str, Any]:
        ix = self.indexer
        vs = ix.index.stats() if ix.index is not None else None
        with self._readers.lease():  # pending() reads the log
            pending = ix.pending()
        return {
            "model": ix.model_name,
            "dim": ix.model.dim if ix.model is not None else 0,
            "indexed": vs.count if vs else 0,
            "pending": pending,
            "fresh": vs.fresh if vs else 0,  # searchable, not yet in the index
            "bytes": vs.bytes if vs else 0,
            "embedded": ix.embedded,
            "ready": ix.ready.is_set(),
            "error": ix.error,
        }

    def tier_stats(self) -> dict[str, Any]:
        warm_bytes = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                warm_bytes += os.path.getsize(f"{self.path}{suffix}")
        return {
            "hot_size": len(self.hot),
            "hot_capacity": self.hot.capacity,
            "hot_bytes": self.hot.bytes,
            "hot_max_bytes": self.hot.max_bytes,
            "hot_hits": self.hot.hits,
            "hot_misses": self.hot.misses,
            "hot_hit_rate": self.hot.hit_rate,
            "warm_path": str(self.path.parent),
            "warm_bytes": warm_bytes,
        }

    def health(self) -> dict[str, tuple[bool, str]]:
        components: dict[str, tuple[bool, str]] = {}
        try:
            with self._readers.lease() as conn:
                conn.execute("SELECT 1 FROM memories LIMIT 1").fetchall()
            components["storage"] = (True, f"sqlite {sqlite3.sqlite_version} at {self.path}")
        except sqlite3.Error as exc:
            components["storage"] = (False, f"storage error: {exc}")
        writer = self._writer
        if writer.full_since:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(writer.full_since))
            components["space"] = (False, f"full since {since}: writes refused "
                                   f"({writer.full_error}); free disk space or raise "
                                   "max_store_bytes")
        else:
            components["space"] = (True, "room to write")
        alive = self._writer.is_alive()
        components["writer"] = (alive, f"queue {self._writer.depth}/{self._writer.capacity}"
                                if alive else "writer thread stopped")
        return components

    def export(self, space_id: str, since: float | None = None, embeddings: bool = True,
               page_size: int = 0) -> Iterator[tuple[int, list[Row], Edges]]:
        """(total, rows, edges) for every page of a space's visible memories, all from one
        snapshot (engine/export.py), on a connection of the export's own."""
        space = resolve_space(space_id)
        if self._closed:
            raise StoreClosed("the store is closed")
        conn = self._connect(cache_bytes=8 << 20)
        try:
            conn.execute("PRAGMA query_only=ON")
            yield from export_pages(conn, space, since, embeddings, page_size)
        finally:
            conn.close()

    def spaces(self) -> list[dict[str, Any]]:
        """Every space with its counts of memories, suppressed ones and associations."""
        with self._readers.lease() as conn:
            return list_spaces(conn)

    def backup(self, dest: Path) -> backups.BackupReport:
        """An online, verified copy of the store into the new directory `dest`
        (engine/backup.py); reads and writes go on meanwhile."""
        if self._closed:
            raise StoreClosed("the store is closed")
        # Not into the store's own directories (backups.backup refuses a relative dest):
        # a directory named engram.toml there, say, would keep the server from starting.
        for own in {self.data_dir.resolve(), self.path.parent.resolve()}:
            if dest.is_absolute() and dest.parent.resolve().is_relative_to(own):
                raise InvalidArgument(f"{dest} is in the store's own directory {own}",
                                      "back up to a directory outside it")
        conn = self._connect(cache_bytes=8 << 20)
        try:
            return backups.backup(conn, dest)
        except OSError as exc:  # the destination's file system: the caller's to fix
            raise InvalidArgument(f"cannot write the backup {dest}: {exc.strerror or exc}",
                                  "pick a directory the server can write") from None
        finally:
            conn.close()

    def schema_version(self) -> int:
        with self._readers.lease() as conn:
            return migrations.schema_version(conn)

    # -- shutdown ----------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued writes, checkpoint the WAL, release the data directory."""
        if self._closed:
            return
        self.indexer.stop()  # saves the index; its last write goes before the writer closes
        self._closed = True
        self.warmth.close()
        self.text_merger.stop()
        self.consolidator.stop()
        self._syncer.stop()
        self._accesses.flush()
        self._writer.close()
        self._writer.join()
        conn = self._writer.conn
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # a busy reader; the WAL is replayed on next open
        conn.close()
        self._readers.close()
        self._recaller.close()
        self._unlock()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
