"""The write operations: plain functions over the writer's sqlite3 connection.

Each `op_*` runs on the writer thread inside a group transaction (engine/writer.py), so
it must write only through the connection it is given and may be re-run alone if a
neighbour in its group fails. `WriteBatch` does the per-memory work (validation, ids,
JSON) on the caller's thread beforehand: the writer thread is the store's bottleneck
under bulk load and should do little more than run SQL. Consolidation
(engine/consolidation.py) writes through these functions too.
"""

from __future__ import annotations

import functools
import itertools
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import orjson

from engram_cli.engine.inlist import in_list
from engram_cli.engine.model import (
    CREATED,
    REFUSED,
    UNCHANGED,
    UPDATED,
    MemoryRecord,
    State,
    content_id,
    memory_key,
)
from engram_cli.engine.rows import ID_CHUNK, SQL_CHUNK, by_ids, chunks
from engram_cli.engine.rules import created_at_error, memory_error
from engram_cli.errors import NotFound, Overloaded, StoreClosed

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
_STATES = frozenset(int(s) for s in State if s)


class WriteBatch:
    """Memories of one space made ready for the writer, in request order: one SQL row
    each for the valid ones (validated, id filled in, tags and metadata as JSON), and the
    reason for each one refused. Built by the caller's thread, so the writer thread - the
    store's bottleneck under bulk load - does little more than run SQL."""

    __slots__ = ("created_given", "dims", "now", "positions", "rejected", "rows", "space")

    def __init__(self, space: str, now: float) -> None:
        self.space = space
        self.now = now
        self.rows: list[tuple[Any, ...]] = []  # _UPSERT's values
        self.positions: list[int] = []  # each row's position in the request
        self.created_given: list[bool] = []  # False: created_at is `now` (or kept, on update)
        self.rejected: list[tuple[int, str, str]] = []  # (position, id, why)
        # Each row's embedding dimension (0: none); None while no row has an embedding.
        self.dims: list[int] | None = None

    def add(self, position: int, mid: str, content: str, embedding: bytes, confidence: float,
            decay_rate: float, memory_type: int, created_at: float | None, tags: list[str],
            metadata: dict[str, str], state: int = _RECENT, finite: bool = False) -> None:
        """`state` other than RECENT: a consolidation state to keep (an import of an
        export); RECENT lets the store decide, as for any new or changed memory.
        `finite`: the caller has checked the embedding's values (rules.memory_error)."""
        if not mid:
            mid = content_id(content, embedding)
        error = memory_error(content, embedding, confidence, decay_rate, memory_type,
                             finite=finite)
        if not error and state not in _STATES:
            error = ("the consolidation state is not one of recent, consolidating, "
                     "consolidated, reconsolidating")
        if not error and created_at is not None:
            error = created_at_error(created_at)
        if error:
            self.rejected.append((position, mid, error))
            return
        now = self.now
        space = self.space
        self.rows.append((
            space, mid, memory_key(space, mid), content, embedding or None, confidence,
            decay_rate, memory_type, state, created_at or now, now, now,
            orjson.dumps(tags).decode(),
            orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode() if metadata else "{}",
        ))
        self.positions.append(position)
        self.created_given.append(bool(created_at))
        if embedding or self.dims is not None:
            if self.dims is None:
                self.dims = [0] * (len(self.rows) - 1)
            self.dims.append(len(embedding) // 4)

    def add_record(self, position: int, rec: MemoryRecord) -> None:
        self.add(position, rec.id, rec.content, rec.embedding, rec.confidence, rec.decay_rate,
                 rec.memory_type, rec.created_at, rec.tags, rec.metadata, rec.state)

    def values(self) -> list[Any]:
        """The rows flattened, as op_remember takes them (on the caller's thread, not the
        writer's: it is the bottleneck)."""
        return list(itertools.chain.from_iterable(self.rows))


def op_remember(conn: sqlite3.Connection, space: str, rows: list[tuple[Any, ...]],
                values: list[Any], created_given: list[bool], now: float,
                dims: list[int] | None = None) -> list[int]:
    """Rows with an embedding (`dims`: each row's dimension, 0 for none) first meet the
    space's dimension (space_dims, migration 007): the first vector committed to a space
    decides it, here in the writer's transaction, and a row of another dimension is
    REFUSED (Store.write_batch says why); the others are stored.

    Insert-first: every row goes in with ON CONFLICT DO NOTHING; when that inserted
    them all (a bulk load of new memories), that is the whole write, with no look-up.
    Otherwise the batch's keys are read back: those with rowids above the largest before
    the insert were created by it; the rest (ids already stored, or repeated in the
    batch) are compared and updated, and a row whose key another (space, id) holds is
    refused. Answers an outcome code (CREATED, UPDATED, UNCHANGED, REFUSED) per row."""
    conn.execute("INSERT OR IGNORE INTO spaces (name, created_at) VALUES (?, ?)", (space, now))
    if dims is not None:
        wrong = _wrong_dimension(conn, space, dims)
        if wrong:
            keep = [j for j in range(len(rows)) if j not in wrong]
            codes = [REFUSED] * len(rows)
            kept = [rows[j] for j in keep]
            for j, code in zip(keep, op_remember(
                    conn, space, kept, list(itertools.chain.from_iterable(kept)),
                    [created_given[j] for j in keep], now), strict=True):
                codes[j] = code
            return codes
    before = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0] or 0
    inserted = _insert_rows(conn, _INSERT_NEW_HEAD, _INSERT_NEW_TAIL, values)
    codes = [CREATED] * len(rows)
    if inserted == len(rows):
        return codes
    keys = list({row[2] for row in rows})
    existing: dict[int, tuple[Any, ...]] = {}
    fresh: set[int] = set()
    for chunk in chunks(keys, SQL_CHUNK):
        marks, values = in_list(chunk, SQL_CHUNK)
        for row in conn.execute(
            "SELECT rowid, key, space, id, content, embedding, confidence, decay_rate, "
            "memory_type, created_at, tags, metadata, state, suppressed FROM memories "
            f"WHERE key IN ({marks})", values,
        ):
            existing[row[1]] = row[2:]
            if row[0] > before:
                fresh.add(row[1])
    updates = []
    for j, row in enumerate(rows):
        (_, mid, key, content, emb, conf, decay, mtype, given, created_at, _, _, tags,
         meta) = row
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
            and given in (_RECENT, o_state)
        )
        if same:
            codes[j] = UNCHANGED
            continue
        state = (given if given != _RECENT else
                 State.RECONSOLIDATING if o_state == State.CONSOLIDATED else o_state)
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


def _wrong_dimension(conn: sqlite3.Connection, space: str, dims: list[int]) -> set[int]:
    """The rows whose embedding has another dimension than the space holds; a space without
    one yet takes its first row's."""
    row = conn.execute("SELECT dim FROM space_dims WHERE space = ?", (space,)).fetchone()
    if row is None:
        held = next(d for d in dims if d)
        conn.execute("INSERT INTO space_dims (space, dim) VALUES (?, ?)", (space, held))
    else:
        held = row[0]
    return {j for j, d in enumerate(dims) if d and d != held}


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


def op_forget(conn: sqlite3.Connection, space: str, ids: list[str], mode: str, now: float
              ) -> int:
    """mode: suppress (hidden until stored again) | delete | overwrite; answers rows hit."""
    affected = 0
    for chunk in chunks(ids, ID_CHUNK):
        marks = ",".join("?" * len(chunk))
        where, args = by_ids(space, chunk)
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


def op_associate(conn: sqlite3.Connection, space: str, source: str, target: str, kind: int,
                 strength: float, reason: str, now: float) -> tuple[bool, float]:
    """Create or strengthen source -> target; answers (created, final strength). Raises
    NotFound when either memory is missing or suppressed."""
    for mid in (source, target):
        where, args = by_ids(space, [mid])
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


def op_reinforce(conn: sqlite3.Connection, space: str, a: str, b: str, strength: float,
                 reason: str, now: float) -> bool | None:
    """Create or strengthen a <-> b; answers created, or None when either memory is gone."""
    try:
        created, _ = op_associate(conn, space, a, b, 0, strength, reason, now)
    except NotFound:
        return None
    return created


def op_associate_many(conn: sqlite3.Connection, space: str,
                      edges: list[tuple[str, str, float]], kind: int, reason: str,
                      now: float) -> int:
    """Bulk edges (source, target, strength), existing ones strengthened; answers edges
    written. The memories are not checked to exist (recall skips an edge to a missing
    memory)."""
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
        for chunk in chunks(ids, ID_CHUNK):
            if space is not None:
                where, more = by_ids(space, chunk)
                chosen.extend(conn.execute(f"{sql} AND {where}", (*args, *more)))
            else:
                chosen.extend(conn.execute(
                    sql + f" AND id IN ({','.join('?' * len(chunk))})", (*args, *chunk)))
        chosen.sort()
        chosen = chosen[:limit]
    else:
        chosen = conn.execute(sql + " ORDER BY rowid LIMIT ?", (*args, limit)).fetchall()
    if state_from != state_to:
        _set_state(conn, [rowid for rowid, _, _ in chosen], state_to)
    return chosen


def op_finish(conn: sqlite3.Connection, rowids: list[int], state: int) -> int:
    """CONSOLIDATING -> `state` for these memories (an update since may have moved them)."""
    return _set_state(conn, rowids, state, State.CONSOLIDATING)


def _set_state(conn: sqlite3.Connection, rowids: Sequence[int], state: int,
               only_from: int | None = None) -> int:
    """Set these memories' state (those in `only_from` alone, when given), a statement per
    SQL_CHUNK of them: a statement per memory cost a consolidation pass 22 us a memory of
    Python and SQLite overhead, three times the row's own update (a million memories
    took 63 s, while recall's p99 doubled)."""
    guard, also = ("", ()) if only_from is None else (" AND state = ?", (only_from,))
    n = 0
    for chunk in chunks(list(rowids), SQL_CHUNK):
        marks, values = in_list(chunk, SQL_CHUNK)
        n += conn.execute(f"UPDATE memories SET state = ? WHERE rowid IN ({marks}){guard}",
                          (state, *values, *also)).rowcount
    return n


def op_drop_space(conn: sqlite3.Connection, space: str) -> int:
    n = conn.execute("DELETE FROM memories WHERE space = ?", (space,)).rowcount
    conn.execute("DELETE FROM associations WHERE space = ?", (space,))
    conn.execute("DELETE FROM spaces WHERE name = ?", (space,))
    conn.execute("DELETE FROM space_dims WHERE space = ?", (space,))
    return int(n)


# Seconds between two writes of recall's access times.
ACCESS_WRITE_S = 1.0
# Access times one write takes at most; the rest wait for the next. A refresh rewrites
# the memory's row and its entry in the index of visible memories, two random pages, and
# a storm of recalls over memories not recalled for a while (in any store older than ~18
# minutes, most of them) refreshes up to ten an answer: written all at once each second,
# they slowed the recalls around each commit (see AccessTimes).
ACCESS_BATCH = 256
# Access times waiting at most; past it a refresh is not noted (its memory's stored time
# stays, and a later recall notes it again).
ACCESS_PENDING_MAX = 100_000


class AccessTimes:
    """Recall's access times (they refresh the forgetting curve), written best effort:
    gathered here and written by one writer operation at most every ACCESS_WRITE_S, so a
    storm of recalls costs the writer one small commit a second, not one per recall. (A
    commit per recall, fsynced, cost a lone client's embedding-cue recall at a million
    memories 1-2 ms of its 5-7 over gRPC.) The first access after a quiet second is
    written at once; the memories' rows in the hot tier have the new time already.
    `written(space, [(key, access time)])` is told, after the commit, what was written
    (memory_key: the keys the writes found the memories by).

    A write takes at most `batch` (ACCESS_BATCH) times, the oldest noted first; the rest
    wait for the next interval, and at most `most` (ACCESS_PENDING_MAX) wait. Over gRPC at
    a million memories, a store whose every answer needed a refresh, hybrid recalls one
    server at a time, 4 pairs alternated: p99 16.8 ms writing all that had gathered each
    second, 11.9 writing 256 (in the run after, 11.2 writing 256 and 9.4 with no refresh
    due). A closing store writes all."""

    def __init__(self, submit: Callable[..., Future], interval: float = ACCESS_WRITE_S,
                 written: Callable[[str, list[tuple[int, float]]], None] | None = None,
                 batch: int = ACCESS_BATCH, most: int = ACCESS_PENDING_MAX) -> None:
        self._submit = submit
        self._interval = interval
        self._written = written
        self.batch = batch
        self.most = most
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, float]] = {}
        self._queued = False  # a write is submitted or its timer runs
        self._timer: threading.Timer | None = None
        self._last = -math.inf  # time.monotonic() of the last submission

    def note(self, space: str, ids: Sequence[str], now: float) -> list[str]:
        """Never blocks: an access time is not worth pushing back a reader. Answers the
        ids noted (all but those past `most`)."""
        with self._lock:
            pending = self._pending.setdefault(space, {})
            waiting = self._waiting()
            noted = []
            for mid in ids:
                if mid not in pending:
                    if waiting >= self.most:
                        continue
                    waiting += 1
                pending[mid] = now
                noted.append(mid)
            if self._queued:
                return noted
            self._queued = True
            if self._arm(self._last + self._interval - time.monotonic()):
                return noted
        self._write()
        return noted

    def _arm(self, wait: float) -> bool:
        """Start the timer of the next write when it is `wait` seconds off (under the
        lock); False when it is due now."""
        if wait <= 0:
            return False
        self._timer = threading.Timer(wait, self._write)
        self._timer.daemon = True
        self._timer.start()
        return True

    def flush(self) -> None:
        """Submit everything gathered now, not at its timers (the store is closing)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._write(everything=True)

    def _waiting(self) -> int:
        """Times gathered and not yet taken (under the lock; a few spaces' dicts)."""
        return sum(map(len, self._pending.values()))

    def _take(self, most: float) -> dict[str, dict[str, float]]:
        """The first `most` gathered times, the oldest noted first (under the lock)."""
        taken = {}
        for space, times in list(self._pending.items()):
            if most <= 0:
                break
            if len(times) <= most:
                del self._pending[space]
            else:
                times = {mid: times.pop(mid) for mid in list(itertools.islice(times, int(most)))}
            if times:
                taken[space] = times
                most -= len(times)
        return taken

    def _write(self, everything: bool = False) -> None:
        # What is gathered goes with the operation, not taken when it runs: the writer
        # runs an operation again alone when a neighbour in its group failed, and an
        # operation that took the gathered times itself found none the second time.
        with self._lock:
            self._timer = None
            pending = self._take(math.inf if everything else self.batch)
            if pending:
                self._last = time.monotonic()
            # More than one write's worth: the rest goes at the next interval.
            self._queued = self._waiting() > 0 and self._arm(self._interval)
        if not pending:
            return
        try:
            fut = self._submit(self._op_write, pending)
        except (Overloaded, StoreClosed):
            with self._lock:  # kept for the next write; a time noted since is newer
                for space, times in pending.items():
                    self._pending[space] = times | self._pending.get(space, {})
            return
        if self._written is not None:
            fut.add_done_callback(self._committed)

    def _committed(self, fut: Future) -> None:
        if fut.exception() is None and self._written is not None:
            for space, times in fut.result().items():
                self._written(space, times)

    @staticmethod
    def _op_write(conn: sqlite3.Connection, pending: dict[str, dict[str, float]]
                  ) -> dict[str, list[tuple[int, float]]]:
        written = {}
        for space, times in pending.items():
            rows = [(t, memory_key(space, mid), space, mid) for mid, t in times.items()]
            conn.executemany(
                "UPDATE memories SET last_access = ? WHERE key = ? AND space = ? AND id = ?",
                rows)
            written[space] = [(key, t) for t, key, _, _ in rows]
        return written
