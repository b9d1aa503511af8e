"""The recall cache: answers to hot cues kept on disk and served without the network.

Only stable answers are kept: non-empty, every memory at or above a confidence bar and
CONSOLIDATED. A hit is shown with the confidence it would have now (the server's
forgetting curve, applied for the time the answer spent here); an entry that has decayed
under the bar, or outlived its TTL, is dropped and fetched again.

Storage is one SQLite file (WAL) in the user cache dir, safe for several processes at
once: LRU by a `last_used` column, bounded in total bytes (a counter kept by triggers),
TTL by `stored_at`. A broken or locked cache never fails a recall: it just misses.

This module is on the fast path of `engram recall`: it imports neither grpc nor the
engine's store, only the standard library and the pure forgetting curve (orjson only
to store an answer).

Testing hook: ENGRAM_NOW (unix seconds) overrides the clock of caches built without an
explicit clock, so that subprocess tests can age entries.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from _thread import RLock  # threading's RLock, without importing threading (~2 ms)
from collections.abc import Callable, Mapping, Sequence

from engram_cli.client.settings import (
    DEFAULT_CACHE_MAX_MB,
    DEFAULT_CACHE_MIN_CONFIDENCE,
    DEFAULT_CACHE_REQUIRE_CONSOLIDATED,
    DEFAULT_CACHE_TTL_S,
    ClientSettings,
)
from engram_cli.contract import STATE_CONSOLIDATED
from engram_cli.engine.confidence import category_of, shown
from engram_cli.engine.forgetting import decayed
from engram_cli.values import Value

try:  # hashlib's own blake2b, without hashlib's start-up of OpenSSL (~5 ms a cached recall)
    from _blake2 import blake2b
except ImportError:  # an interpreter without the module: hashlib finds one
    from hashlib import blake2b

# typing costs a cached recall several ms at import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

FILE_NAME = "recall-cache.sqlite3"
ENV_NOW = "ENGRAM_NOW"
_BUSY_TIMEOUT_MS = 5_000
# Past the size bound, evict down to this fraction of it so that a full cache does not
# pay an eviction scan on every store.
_LOW_WATER = 0.9
# Per-entry bookkeeping (key, columns, index entries) on top of the answer itself.
_ROW_OVERHEAD = 200
_FLUSH_EVERY = 256  # lookups between writes of the hit/miss counters and LRU times


class CachePolicy(Value):
    """What may be cached and for how long."""

    __slots__ = ("max_bytes", "min_confidence", "require_consolidated", "ttl_s")
    ttl_s: float
    min_confidence: float
    require_consolidated: bool
    max_bytes: int

    def __init__(self, ttl_s: float = DEFAULT_CACHE_TTL_S,
                 min_confidence: float = DEFAULT_CACHE_MIN_CONFIDENCE,
                 require_consolidated: bool = DEFAULT_CACHE_REQUIRE_CONSOLIDATED,
                 max_bytes: int = int(DEFAULT_CACHE_MAX_MB * 1024 * 1024)) -> None:
        self.ttl_s = ttl_s
        self.min_confidence = min_confidence
        self.require_consolidated = require_consolidated
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> CachePolicy:
        """The cache's share of the client settings (the cache_* keys)."""
        return cls(ttl_s=settings.cache_ttl_s, min_confidence=settings.cache_min_confidence,
                   require_consolidated=settings.cache_require_consolidated,
                   max_bytes=int(settings.cache_max_mb * 1024 * 1024))


DEFAULT_POLICY = CachePolicy()


class Forgetting(Value):
    """The server's forgetting-curve parameters, stored with each entry."""

    __slots__ = ("exponent", "floor", "scale_s")
    exponent: float
    floor: float
    scale_s: float

    def __init__(self, exponent: float, floor: float, scale_s: float) -> None:
        self.exponent = exponent
        self.floor = floor
        self.scale_s = scale_s


def default_clock() -> float:
    """Wall-clock seconds, or ENGRAM_NOW when set (a testing hook)."""
    override = os.environ.get(ENV_NOW)
    if not override:
        return time.time()
    try:
        return float(override)
    except ValueError:
        from engram_cli.errors import UsageError

        raise UsageError(f"{ENV_NOW}={override!r} is not a number",
                         "give unix seconds, or unset it") from None


def normalize_space(space: str) -> str:
    # '' means the server's default space, which is named 'default': one entry for both.
    return space or "default"


def server_key(server: str) -> str:
    """The server as the cache names it: `localhost:P` and `127.0.0.1:P` are one server."""
    from engram_cli.config import normalize_address

    address = normalize_address(server)
    host, _, port = address.rpartition(":")
    if host in ("localhost", "127.0.0.1"):
        return f"127.0.0.1:{port}"
    return address


def cache_key(server: str, space: str, cue: str, params: Mapping[str, Any]) -> str:
    """The entry for (server, space, cue, every parameter that changes the answer)."""
    # The standard library's json, not orjson: a cache hit must not pay orjson's import
    # (about half of a cached recall's process time here).
    blob = json.dumps(
        {"v": 2, "server": server_key(server), "space": normalize_space(space),
         "cue": cue, "params": dict(params)},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return blake2b(blob, digest_size=16).hexdigest()


def category_name(confidence: float) -> str:
    return category_of(confidence).name.lower()


def qualifies(results: Sequence[Mapping[str, Any]], policy: CachePolicy) -> bool:
    """Stable enough to cache: non-empty, every memory confident enough and consolidated.
    An empty answer is never cached: the memory it lacks may arrive any moment."""
    return not_cached_because(results, policy) is None


def not_cached_because(results: Sequence[Mapping[str, Any]], policy: CachePolicy
                       ) -> str | None:
    """Why an answer does not qualify for the cache (for the user), or None if it does."""
    if not results:
        return "an empty answer is never cached"
    for r in results:
        confidence = shown(float(r.get("confidence", 0.0)))
        if confidence < policy.min_confidence:
            return (f"{r.get('id')} has confidence {confidence:g}, under the cache's "
                    f"{policy.min_confidence:g} (cache_min_confidence)")
        if policy.require_consolidated and r.get("state") != STATE_CONSOLIDATED:
            state = r.get("state")
            return (f"{r.get('id')} is not consolidated yet (state {state})" if state else
                    f"the server does not report {r.get('id')}'s consolidation state")
    return None


class CachedAnswer(Value, frozen=False):
    __slots__ = ("age_s", "results", "stored_at", "trace")
    results: list[dict[str, Any]]
    trace: list[dict[str, Any]] | None
    stored_at: float
    age_s: float

    def __init__(self, results: list[dict[str, Any]], trace: list[dict[str, Any]] | None,
                 stored_at: float, age_s: float) -> None:
        self.results = results
        self.trace = trace
        self.stored_at = stored_at
        self.age_s = age_s


class CacheStats(Value, frozen=False):
    __slots__ = (
        "bytes",
        "entries",
        "evictions",
        "hits",
        "max_bytes",
        "misses",
        "path",
        "spaces",
    )
    path: str
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int
    spaces: dict[str, int]

    def __init__(self, path: str, entries: int = 0, bytes: int = 0, max_bytes: int = 0,
                 hits: int = 0, misses: int = 0, evictions: int = 0,
                 spaces: dict[str, int] | None = None) -> None:
        self.path = path
        self.entries = entries
        self.bytes = bytes
        self.max_bytes = max_bytes
        self.hits = hits
        self.misses = misses
        self.evictions = evictions
        self.spaces = {} if spaces is None else spaces

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "entries": self.entries, "bytes": self.bytes,
                "max_bytes": self.max_bytes, "hits": self.hits, "misses": self.misses,
                "evictions": self.evictions, "spaces": self.spaces}


# Named, ordered migrations; PRAGMA user_version records how many have run.
MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("entries, counters and the byte-count triggers", """
        CREATE TABLE entries (
            key TEXT PRIMARY KEY,
            server TEXT NOT NULL,
            space TEXT NOT NULL,
            cue TEXT NOT NULL,
            stored_at REAL NOT NULL,
            last_used REAL NOT NULL,
            size INTEGER NOT NULL,
            forgetting TEXT NOT NULL,
            body BLOB NOT NULL
        );
        CREATE INDEX entries_last_used ON entries(last_used);
        CREATE INDEX entries_stored_at ON entries(stored_at);
        CREATE INDEX entries_space ON entries(server, space);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters(name, value)
            VALUES ('bytes', 0), ('hits', 0), ('misses', 0), ('evictions', 0);
        CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
            UPDATE counters SET value = value + NEW.size WHERE name = 'bytes';
        END;
        CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
            UPDATE counters SET value = value - OLD.size WHERE name = 'bytes';
        END;
        CREATE TRIGGER entries_resize AFTER UPDATE OF size ON entries BEGIN
            UPDATE counters SET value = value - OLD.size + NEW.size WHERE name = 'bytes';
        END;
    """),
)


class RecallCache:
    """The on-disk cache of recall answers. Thread-safe; several processes may share it."""

    def __init__(self, path: Path | str, policy: CachePolicy = DEFAULT_POLICY,
                 clock: Callable[[], float] | None = None) -> None:
        # A string inside: a cache hit does not import pathlib (~8 ms).
        self._file = os.fspath(path)
        self.policy = policy
        self.clock = clock or default_clock
        self.error: str | None = None  # why the cache is unusable, once it failed
        self._lock = RLock()
        self._conn: sqlite3.Connection | None = None
        self._pending: dict[str, int] = {}
        self._touched: dict[str, float] = {}
        self._ops = 0

    @classmethod
    def default(cls, policy: CachePolicy = DEFAULT_POLICY,
                clock: Callable[[], float] | None = None) -> RecallCache:
        """The cache in the user cache dir (ENGRAM_CACHE_DIR overrides it)."""
        from engram_cli.config import ENV_CACHE_DIR, user_path

        return cls(user_path(ENV_CACHE_DIR, "cache", FILE_NAME), policy, clock)

    @property
    def path(self) -> Path:
        """The cache's SQLite file."""
        from pathlib import Path

        return Path(self._file)

    # -- connection -----------------------------------------------------------------

    def _db(self, create: bool = True, _retried: bool = False) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if self.error is not None:
            return None
        if not create and not os.path.exists(self._file):
            return None
        from engram_cli.errors import UnsafePath
        from engram_cli.files import create_private, private_dir

        try:
            private_dir(os.path.dirname(self._file) or ".", own=False)
            # Answers hold memory contents: only this user may read them (SQLite gives
            # the -wal and -shm files the database file's permissions), and a symlink
            # planted at the path is refused.
            create_private(self._file)
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            if not isinstance(exc, sqlite3.OperationalError) and not _retried:
                # Not a database (a torn or foreign file): it is only a cache, start over.
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(self._file + suffix)
                    except FileNotFoundError:
                        pass
                return self._db(create, _retried=True)
            self.error = f"{self._file}: {exc}"
            return None
        except (sqlite3.Error, OSError) as exc:
            self.error = f"{self._file}: {exc}"
            return None
        except UnsafePath as exc:
            self.error = f"{exc}: {exc.hint}"
            return None
        self._conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        """A connection in WAL mode with the schema in place (client/sqlite_open.py: other
        processes may be opening a new cache at the same moment)."""
        from engram_cli.client.sqlite_open import open_retrying

        def prepare(conn: sqlite3.Connection) -> None:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)

        return open_retrying(self._file, _BUSY_TIMEOUT_MS / 1000, prepare)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have migrated meanwhile.
            done = conn.execute("PRAGMA user_version").fetchone()[0]
            for _name, sql in MIGRATIONS[done:]:
                for statement in _statements(sql):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._flush()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> RecallCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, fn: Callable[[sqlite3.Connection], Any], create: bool = True,
               default: Any = None) -> Any:
        """Run fn in one write transaction; a cache failure becomes `default`."""
        with self._lock:
            conn = self._db(create)
            if conn is None:
                return default
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(conn)
                    conn.execute("COMMIT")
                    return out
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self.error = f"{self._file}: {exc}"
                return default

    # -- the cache ------------------------------------------------------------------

    def get(self, key: str, count_miss: bool = True) -> CachedAnswer | None:
        """The answer for key with its confidences decayed to now, or None (a miss).
        Entries past their TTL or decayed under the bar are dropped on the way.
        count_miss=False: a look that is followed by a counted one (the fast path)."""
        now = self.clock()
        policy = self.policy
        with self._lock:
            conn = self._db()
            if conn is None:
                return None
            try:
                row = conn.execute(
                    "SELECT stored_at, forgetting, body FROM entries WHERE key = ?",
                    (key,)).fetchone()
            except sqlite3.Error as exc:
                self.error = f"{self._file}: {exc}"
                return None
            if row is None:
                if count_miss:
                    self._note("misses")
                return None
            stored_at, forgetting_json, body = row
            age = max(0.0, now - stored_at)
            answer = None
            if age <= policy.ttl_s:
                answer = _decayed_answer(body, forgetting_json, stored_at, age)
                if not qualifies(answer.results, policy):
                    answer = None
            if answer is None:
                self._write(lambda c: c.execute("DELETE FROM entries WHERE key = ?", (key,)))
                self._note("evictions")
                if count_miss:
                    self._note("misses")
                return None
            self._note("hits")
            self._touched[key] = now
            return answer

    # Hit and miss counts and LRU times are bookkeeping, not answers: they are kept in
    # memory and written in one transaction every so often and on close, so that a
    # lookup is a plain read and concurrent pipelines do not queue for the write lock.

    def _note(self, name: str, by: int = 1) -> None:
        self._pending[name] = self._pending.get(name, 0) + by
        self._ops += 1
        if self._ops >= _FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            if self._pending or self._touched:
                self._write(self._apply_pending, create=False)
            self._pending, self._touched, self._ops = {}, {}, 0

    def _apply_pending(self, conn: sqlite3.Connection) -> None:
        """Write the bookkeeping inside the caller's transaction (lock held)."""
        for name, by in self._pending.items():
            _bump(conn, name, by)
        conn.executemany("UPDATE entries SET last_used = max(last_used, ?) WHERE key = ?",
                         [(t, k) for k, t in self._touched.items()])
        self._pending, self._touched, self._ops = {}, {}, 0

    def put(self, key: str, server: str, space: str, cue: str,
            results: Sequence[Mapping[str, Any]], forgetting: Forgetting,
            trace: Sequence[Mapping[str, Any]] | None = None) -> bool:
        """Store the answer if it qualifies; True when stored. A non-qualifying answer
        removes any older entry for the key (it is no longer the answer)."""
        import orjson

        now = self.clock()
        policy = self.policy
        if not qualifies(results, policy):
            self.discard(key)
            return False
        body = orjson.dumps({"results": list(results), "trace": list(trace)
                             if trace is not None else None})
        size = len(body) + len(cue.encode("utf-8")) + _ROW_OVERHEAD
        if size > policy.max_bytes:
            return False
        forgetting_json = orjson.dumps(
            {"exponent": forgetting.exponent, "floor": forgetting.floor,
             "scale_s": forgetting.scale_s}).decode()

        def store(conn: sqlite3.Connection) -> bool:
            self._apply_pending(conn)  # so that eviction sees the latest LRU times
            conn.execute(
                "INSERT INTO entries(key, server, space, cue, stored_at, last_used, size, "
                "forgetting, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET server = excluded.server, "
                "space = excluded.space, cue = excluded.cue, stored_at = excluded.stored_at, "
                "last_used = excluded.last_used, size = excluded.size, "
                "forgetting = excluded.forgetting, body = excluded.body",
                (key, server_key(server), normalize_space(space), cue, now, now, size,
                 forgetting_json, body))
            expired = conn.execute("DELETE FROM entries WHERE stored_at < ?",
                                   (now - policy.ttl_s,)).rowcount
            total = _counter(conn, "bytes")
            evicted = 0
            if total > policy.max_bytes:
                # Keep the most recently used entries that fit under the low-water mark.
                evicted = conn.execute(
                    "DELETE FROM entries WHERE key IN (SELECT key FROM (SELECT key, "
                    "SUM(size) OVER (ORDER BY last_used DESC, key) AS running FROM entries) "
                    "WHERE running > ?)", (int(policy.max_bytes * _LOW_WATER),)).rowcount
            if expired + evicted:
                _bump(conn, "evictions", expired + evicted)
            return True

        return bool(self._write(store, default=False))

    def discard(self, key: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM entries WHERE key = ?", (key,)),
                    create=False)

    def invalidate(self, server: str, space: str) -> int:
        """Drop every entry of one space on one server; the number dropped."""

        return int(self._write(
            lambda conn: conn.execute("DELETE FROM entries WHERE server = ? AND space = ?",
                                      (server_key(server), normalize_space(space))
                                      ).rowcount, create=False, default=0))

    def clear(self) -> int:
        """Drop every entry and reset the counters; the number of entries dropped."""

        with self._lock:
            self._pending, self._touched, self._ops = {}, {}, 0

        def wipe(conn: sqlite3.Connection) -> int:
            n = conn.execute("DELETE FROM entries").rowcount
            conn.execute("UPDATE counters SET value = 0")
            return int(n)

        return int(self._write(wipe, create=False, default=0))

    def stats(self) -> CacheStats:
        out = CacheStats(path=self._file, max_bytes=self.policy.max_bytes)
        with self._lock:
            self._flush()
            conn = self._db(create=False)
            if conn is None:
                return out
            try:
                counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
                out.entries = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
                out.spaces = {f"{server}/{space}": n for server, space, n in conn.execute(
                    "SELECT server, space, count(*) FROM entries GROUP BY server, space "
                    "ORDER BY server, space")}
            except sqlite3.Error as exc:
                self.error = f"{self._file}: {exc}"
                return out
        out.bytes = int(counters.get("bytes", 0))
        out.hits = int(counters.get("hits", 0))
        out.misses = int(counters.get("misses", 0))
        out.evictions = int(counters.get("evictions", 0))
        return out


def invalidate_space(server: str, space: str) -> int:
    """Forget the cached answers of one space after a write to it through this CLI
    (import, forget). Cheap: no grpc, and nothing is created when there is no cache."""
    with RecallCache.default() as cache:
        return cache.invalidate(server, space)


def _statements(sql: str) -> list[str]:
    # sqlite3's executescript() would commit our transaction; split on complete statements.
    out, current = [], ""
    for line in sql.strip().splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def _bump(conn: sqlite3.Connection, name: str, by: int = 1) -> None:
    conn.execute("UPDATE counters SET value = value + ? WHERE name = ?", (by, name))


def _counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def _decayed_answer(body: bytes, forgetting_json: str, stored_at: float, age: float
                    ) -> CachedAnswer:
    data = json.loads(body)
    f = json.loads(forgetting_json)
    results = data["results"]
    for r in results:
        c = decayed(float(r["confidence"]), age, float(r.get("decay_rate") or 0.0),
                    f["exponent"], f["floor"], f["scale_s"])
        r["confidence"] = c
        r["confidence_category"] = category_name(c)
    return CachedAnswer(results=results, trace=data.get("trace"), stored_at=stored_at,
                        age_s=age)
