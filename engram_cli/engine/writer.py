"""The single writer thread, and the durability it commits with.

Every write goes through one thread that takes every operation waiting in its bounded
queue (`queue_capacity`; past it a write raises Overloaded, which the server answers with
RESOURCE_EXHAUSTED and retry-after-ms), runs them in one transaction and commits them
together (group commit; if one fails, the others are re-run without it). A caller's future
resolves only after the COMMIT, so an acknowledged write is in the WAL before the client
hears of it (fsynced first with durability "fsync"; with "group" the Syncer thread fsyncs
every `group_fsync_ms`).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from engram_cli.contract import STORE_FULL_DETAIL
from engram_cli.engine.settings import Settings
from engram_cli.errors import EngramError, Overloaded, StoreClosed, StoreFull

MAX_OPS_PER_COMMIT = 256
# How long a writer refused for a full store is told to wait: freeing space takes a
# person or a cleanup job, not milliseconds.
STORE_FULL_RETRY_MS = 2000
# Near the cap a small write may still fit while the next large one does not: the store
# counts as full until writes have gone through for this long since the last refusal.
FULL_CLEARS_AFTER_S = 5.0
# The writer checkpoints the WAL (store.py: on its own once it holds WAL_CHECKPOINT_BYTES)
# also when it has been idle this long after commits that changed at least
# IDLE_CHECKPOINT_ROWS rows since it last did. Else what an import leaves in the WAL (up to
# 128 MB) is copied back by whichever later commit takes it past the limit, however small:
# at a million memories that copy took 430-580 ms of the writer (153 MB written where it
# was counted) and came during or between recall passes, beside the recalls, for the cores
# and the caches.
# Idle means no write for longer than the interval of recall's access-time writes
# (engine/writes.py), so a stream of recalls does not set off small checkpoints one after
# another, and an import, which never leaves the writer idle that long, is not slowed.
IDLE_CHECKPOINT_S = 2.0
IDLE_CHECKPOINT_ROWS = 1000
log = logging.getLogger("engram.engine")


def is_full(exc: BaseException) -> bool:
    """A full disk, or the database at its max_page_count (max_store_bytes)."""
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", None) == 13  # SQLITE_FULL
                or "database or disk is full" in str(exc))
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC

_Op = tuple[Callable[..., Any], tuple[Any, ...], Future]


class OutsideTransaction:
    """A writer operation that runs alone, between two transactions: PRAGMAs such as
    synchronous cannot change inside one."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, conn: sqlite3.Connection, *args: Any) -> Any:
        return self.fn(conn, *args)


def apply_durability(conn: sqlite3.Connection, durability: str) -> None:
    # WAL + FULL fsyncs the log at every commit; WAL + NORMAL writes it to the OS at
    # every commit (safe from kill -9) and fsyncs at checkpoints, which the Syncer runs
    # every group_fsync_ms.
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'fsync' else 'NORMAL'}")


# SQLite's largest max_page_count: no cap.
_NO_PAGE_CAP = 4_294_967_294


def apply_size_cap(conn: sqlite3.Connection, max_bytes: int) -> None:
    """Cap the database at max_bytes (0: no cap); past it a write fails SQLITE_FULL, as on
    a full disk. A cap below the current size holds the database at its current size."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = max(1, max_bytes // page_size) if max_bytes > 0 else _NO_PAGE_CAP
    conn.execute(f"PRAGMA max_page_count={pages}").fetchall()


class Writer(threading.Thread):
    """The single writer: a bounded queue of operations, committed in groups."""

    def __init__(self, conn: sqlite3.Connection, capacity: int) -> None:
        super().__init__(name="engram-writer", daemon=True)
        self._conn = conn
        self.capacity = capacity
        self._pending: collections.deque[_Op] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._op_seconds = 0.001  # moving average, for the retry-after hint
        self.commits = 0
        self.ops = 0
        self.full_since = 0.0  # wall-clock time the store was found full; 0: it is not
        self.full_error = ""
        self._full_last = 0.0  # the last refusal for a full store
        self._last_commit = 0.0
        self._quiet_since = time.monotonic()  # the last commit (or start)
        self._checkpointed_at = conn.total_changes  # rows changed by then
        self.idle_checkpoints = 0

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer's connection: for the store to close once the thread has ended."""
        return self._conn

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
                    idle_in = self._checkpoint_in()
                    if idle_in == 0.0:
                        break
                    waits = [t for t in (idle_in, 1.0 if self.full_since else None)
                             if t is not None]
                    self._cv.wait(min(waits) if waits else None)
                    self._check_room()
                if not self._pending and not self._closed:
                    ops = None
                elif not self._pending:
                    return
                else:
                    ops = self._take()
            if ops is None:
                self._idle_checkpoint()
            elif isinstance(ops[0][0], OutsideTransaction):
                fn, args, fut = ops[0]
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(self._conn, *args))
                    except Exception as exc:
                        fut.set_exception(exc)
            else:
                self._execute(ops)

    def _take(self) -> list[_Op]:
        """The next group to run (under the lock): up to MAX_OPS_PER_COMMIT operations, or
        one OutsideTransaction alone."""
        ops: list[_Op] = []
        while self._pending and len(ops) < MAX_OPS_PER_COMMIT:
            alone = isinstance(self._pending[0][0], OutsideTransaction)
            if alone and ops:
                break
            ops.append(self._pending.popleft())
            if alone:
                break
        return ops

    def _checkpoint_in(self) -> float | None:
        """Seconds until an idle checkpoint is due (0: now), None when none is."""
        if self._conn.total_changes - self._checkpointed_at < IDLE_CHECKPOINT_ROWS:
            return None
        return max(0.0, IDLE_CHECKPOINT_S - (time.monotonic() - self._quiet_since))

    def _idle_checkpoint(self) -> None:
        """Copy the WAL into the database while nothing is written (PASSIVE: readers are
        not waited for; what a reader's snapshot still needs stays, for the next one)."""
        self._checkpointed_at = self._conn.total_changes
        started = time.perf_counter()
        try:
            busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.debug("idle checkpoint: %s", exc)
            return
        self.idle_checkpoints += 1
        log.debug("idle checkpoint: %d of %d WAL pages in %.0f ms%s", copied, frames,
                  (time.perf_counter() - started) * 1e3,
                  " (readers' snapshots hold the rest)" if busy or copied < frames else "")

    def _execute(self, ops: list[_Op]) -> None:
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

    def _transaction(self, ops: list[_Op], isolate: bool
                     ) -> list[tuple[Future, Any, BaseException | None]] | None:
        """Run ops in one transaction. Answers their outcomes, or None when one failed and
        the group was rolled back (with isolate=True the failure is that op's outcome)."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error = self._full(exc) or EngramError(f"store unavailable: {exc}")
            return [(fut, None, error) for _, _, fut in ops]
        done: list[tuple[Future, Any, BaseException | None]] = []
        for fn, args, fut in ops:
            try:
                done.append((fut, fn(conn, *args), None))
            except Exception as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                full = self._full(exc)
                if full is not None:  # no neighbour would fare better: all of them wait
                    return [(f, None, full) for _, _, f in ops]
                if not isolate:
                    return None
                return [(fut, None, exc)]
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = self._full(exc) or EngramError(f"commit failed: {exc}")
            return [(fut, None, error) for fut, _, _ in done]
        self.commits += 1
        self._last_commit = time.time()
        self._quiet_since = time.monotonic()
        self._check_room()
        return done

    def _check_room(self) -> None:
        """Writes went through after the last refusal, long enough ago: not full now."""
        if (self.full_since and self._last_commit > self._full_last
                and time.time() - self._full_last > FULL_CLEARS_AFTER_S):
            log.warning("the store has room again after %.0f s: writes resume",
                        time.time() - self.full_since)
            self.full_since, self.full_error = 0.0, ""

    def _full(self, exc: BaseException) -> StoreFull | None:
        """The error a full store's writers get, or None when `exc` is something else.
        Logged once when the store becomes full (and once when it has room again)."""
        if not is_full(exc):
            return None
        self._full_last = time.time()
        if not self.full_since:
            self.full_since, self.full_error = time.time(), str(exc)
            log.warning("the store is full (%s): writes are answered RESOURCE_EXHAUSTED "
                        "until there is room (free disk space, or raise max_store_bytes)", exc)
        return StoreFull(f"{STORE_FULL_DETAIL} ({exc})", retry_after_ms=STORE_FULL_RETRY_MS,
                         hint="free disk space (or raise max_store_bytes); writes resume "
                         "by themselves")


class Syncer(threading.Thread):
    """With durability "group": fsyncs the WAL every group_fsync_ms (a PASSIVE checkpoint
    on a connection of its own, which never blocks the writer or readers)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 settings: Callable[[], Settings]) -> None:
        super().__init__(name="engram-fsync", daemon=True)
        self._connect = connect
        self._settings = settings
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join()

    def run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.wait(self._settings().group_fsync_ms / 1000.0):
                if self._settings().durability != "group":
                    continue
                if conn is None:
                    conn = self._connect()
                    conn.execute("PRAGMA synchronous=NORMAL")
                with contextlib.suppress(sqlite3.Error):
                    # PASSIVE fsyncs the WAL before copying pages back.
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            if conn is not None:
                conn.close()
