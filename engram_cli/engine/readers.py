"""The read connections: a fixed number of read-only SQLite connections that every
reading thread shares, instead of one per thread.

A server runs max_workers + max_streams RPC threads (48 by default); with a connection
each, their page caches and prepared statements held about 440 MB after a fuzz. A pool of
`readers` connections bounds that at `readers` x (READER_CACHE_BYTES + the statements of
READER_STATEMENTS), whatever the number of threads. A thread takes a connection for one
engine call (`lease`, reentrant: the engine's own calls made inside it use the same
connection) and gives it back when the call ends, also when it raises; a thread that finds
none free waits for one, in turn: a connection given back goes to the longest waiting
thread (with whichever thread grabbed the lock first, one of 32 threads on one reader
waited a whole second while others went through).

Background threads that read on their own schedule (the vector indexer) and hold no
lease get a connection of their own outside the pool (`current`): there are one or two of
them, and a lease for as long as they live would take a reader away from recall for good.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator

from engram_cli.errors import StoreClosed

# SQLite page cache of each reader, in bytes; pages past it come from the OS file cache,
# a pread away.
READER_CACHE_BYTES = 4 * 1024 * 1024
# Prepared statements each reader keeps (Python's default: 128). A statement with a long
# IN list holds 100-200 KB of compiled program: after 600 varied recalls, gets and
# recognizes a reader's statements held 17.4 MiB with 128 kept, 6.7 with 48, 1.8 with 16
# (SQLITE_DBSTATUS_STMT_USED); re-preparing one costs well under a millisecond.
READER_STATEMENTS = 16


class _Turn:
    """A waiting thread's place in the queue; `conn` is None when the pool closed."""

    __slots__ = ("conn", "ready")

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.ready = threading.Event()


class ReaderPool:
    """At most `size` pooled read connections, opened on demand by `connect`."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int) -> None:
        self._connect = connect
        self.size = max(1, size)
        self._idle: list[sqlite3.Connection] = []  # last in, first out: the warmest cache
        self._all: list[sqlite3.Connection] = []
        self._own: list[sqlite3.Connection] = []  # background threads', outside the pool
        self._lock = threading.Lock()
        self._queue: deque[_Turn] = deque()
        self._local = threading.local()
        self._closed = False
        self.waits = 0  # leases that had to wait for a free connection

    @property
    def opened(self) -> int:
        """Pooled connections open now (never more than `size`)."""
        return len(self._all)

    @property
    def unpooled(self) -> int:
        """Connections of background threads, outside the pool."""
        return len(self._own)

    @contextlib.contextmanager
    def lease(self) -> Iterator[sqlite3.Connection]:
        """A connection for the calling thread until the block ends."""
        held = getattr(self._local, "lease", None)
        if held is not None:
            yield held
            return
        conn = self._take()
        self._local.lease = conn
        try:
            yield conn
        finally:
            self._local.lease = None
            self._give(conn)

    def current(self) -> sqlite3.Connection:
        """The connection the calling thread leased; a thread without a lease (a
        background thread) gets one of its own, outside the pool."""
        conn = getattr(self._local, "lease", None) or getattr(self._local, "own", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise StoreClosed("the store is closed")
                conn = self._connect()
                self._own.append(conn)
            self._local.own = conn
        return conn

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            if self._idle:
                return self._idle.pop()
            if len(self._all) < self.size:
                conn = self._connect()
                self._all.append(conn)
                return conn
            turn = _Turn()
            self._queue.append(turn)
            self.waits += 1
        turn.ready.wait()
        if turn.conn is None:
            raise StoreClosed("the store is closed")
        return turn.conn

    def _give(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # a block that raised inside an explicit transaction
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
        with self._lock:
            if self._closed:
                conn.close()
                return
            if self._queue:  # straight to the longest waiting thread
                turn = self._queue.popleft()
                turn.conn = conn
                turn.ready.set()
                return
            self._idle.append(conn)

    def shrink(self) -> None:
        """Free the page caches of the idle connections (SQLite reads the pages again,
        from the OS file cache, when they are next needed)."""
        with self._lock:  # not the background threads': they may be reading right now
            for conn in self._idle:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA shrink_memory")

    def close(self) -> None:
        """Close every idle and background connection; a leased one closes when given
        back. Waiting and later leases raise StoreClosed."""
        with self._lock:
            self._closed = True
            for conn in (*self._idle, *self._own):
                conn.close()
            self._idle.clear()
            self._own.clear()
            while self._queue:
                self._queue.popleft().ready.set()


def sqlite_memory() -> tuple[int, int]:
    """(bytes SQLite has allocated now, the most it had at once) in this process, all
    connections together; (0, 0) where the library cannot be asked."""
    import ctypes

    try:
        lib = ctypes.CDLL("libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.restype = ctypes.c_int64
        return int(lib.sqlite3_memory_used()), int(lib.sqlite3_memory_highwater(0))
    except (OSError, AttributeError):
        return 0, 0
