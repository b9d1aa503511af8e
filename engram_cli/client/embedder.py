"""Embedding on the client: which model and dimension (`EmbedSpec`), fitting a model's
vectors to a server's dimension, and the on-disk cache that means a text is embedded once.

The models are the server's own registry (engram_cli.engine.embedding), so a vector made
here is the vector our server would make. Fitting to another dimension: a Matryoshka-
trained model (WordLlama) may be truncated (then re-normalised); any model may be padded
with zeros, which changes no dot product and no norm, so every cosine stays as it was.

The cache is SQLite in the user cache dir (`embeddings/vectors.sqlite`, 0600 in a 0700
directory), keyed by a hash of the model name and the text, holding the model's own
vector (so one entry serves every --embed-dim), bounded by size: the oldest entries go
first. It is only a cache: when it cannot be used, embedding goes on without it. An import
writes it from a thread of its own (`put_later`), 16 MiB of rows a transaction: a row costs
~15 us of SQLite CPU and up to ~40 us of waiting on the disk, which the importer's thread
no longer pays, and nothing needs the rows at once (a text asked for again before its row
is written is answered from memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import sqlite3
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_CACHE_MB = 1024
CACHE_DIR_NAME = "embeddings"
CACHE_FILE_NAME = "vectors.sqlite"
MAX_DIM = 65_536
PAGE_SIZE = 16384
_ROW_OVERHEAD = 48  # bytes per entry besides the vector: key, rowid, b-tree
# Chunks handed to the writer thread and not yet taken, at most (chunks of 256 rows): room
# for what arrives while a transaction is written, so that the importer goes on meanwhile.
WRITE_QUEUE = 48
# Rows the writer thread gathers for one transaction (held in memory meanwhile), and the
# page cache of its connection. The keys are hashes, so each transaction touches index
# pages all over the key index, and the index outgrows SQLite's default 2 MB page cache:
# the more rows share a page and the more of the index stays cached, the less each row
# costs. 1,000,000 rows of 1 KB, CPU per row over the last 200,000: 20.4 us with 4 MB
# transactions and the default cache, 13.5 us with 16 MB, 10.0 us with 16 MB and a 32 MB
# cache (the first 200,000: 7.8, 7.9, 6.3 us).
WRITE_BYTES = 16 * 1024 * 1024
WRITE_CACHE_KIB = 32 * 1024


@dataclass(frozen=True)
class EmbedSpec:
    """A model and the dimension its vectors are sent with."""

    model: str
    dim: int  # what is sent
    native: int  # what the model makes
    matryoshka: bool = False

    @classmethod
    def resolve(cls, model: str | None, dim: int | None) -> EmbedSpec:
        """From --embed MODEL and --embed-dim N; raises UsageError."""
        from engram_cli.engine.embedding import DEFAULT_MODEL, MODELS, NONE

        name = model or DEFAULT_MODEL
        info = MODELS.get(name)
        if info is None:
            raise UsageError(f"--embed: unknown model {name!r}" + (
                " (none embeds nothing)" if name == NONE else ""),
                f"choose one of: {', '.join(MODELS)}")
        target = info.dim if dim is None else dim
        if not 1 <= target <= MAX_DIM:
            raise UsageError(f"--embed-dim {target} is not valid", f"give 1 to {MAX_DIM}")
        if target < info.dim and not info.matryoshka:
            raise UsageError(
                f"--embed-dim {target} is below {name}'s {info.dim} dimensions, and its "
                "vectors are not trained to be truncated",
                f"give --embed-dim {info.dim} or more (zero padding keeps every cosine)")
        return cls(name, target, info.dim, info.matryoshka)

    def fit(self, vectors: np.ndarray) -> np.ndarray:
        """(n, native) unit rows -> (n, dim) float32: zero-padded or truncated and
        re-normalised."""
        import numpy as np

        if self.dim == self.native:
            return vectors.astype(np.float32, copy=False)
        if self.dim > self.native:
            out = np.zeros((len(vectors), self.dim), dtype=np.float32)
            out[:, :self.native] = vectors
            return out
        out = np.array(vectors[:, :self.dim], dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


def text_key(model: str, text: str) -> bytes:
    """The cache key of `text` embedded by `model`."""
    return hashlib.blake2b(f"{model}\0{text}".encode(), digest_size=16).digest()


def embedding_field(row: np.ndarray) -> bytes:
    """A vector as engram.v1 Memory field 2 (`repeated float embedding`, packed): appended
    to a serialized Memory, it is that memory with this embedding."""
    return embedding_field_head(len(row)) + row.astype("<f4", copy=False).tobytes()


def embedding_field_head(dim: int) -> bytes:
    """What comes before `dim` float32 bytes in `embedding_field`."""
    from engram_cli.client.batching import varint

    return b"\x12" + varint(4 * dim)


def private_dir(path: Path) -> Path:
    """`path` as a directory only this user can use (0700), never a symlink."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{path} is not a plain directory")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


class EmbeddingCache:
    """Model vectors by (model, text), on disk, bounded to `max_mb`."""

    def __init__(self, path: Path, max_mb: float = DEFAULT_CACHE_MB) -> None:
        self.path = path
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.error: str | None = None
        self.hits = 0
        self._conn: sqlite3.Connection | None = None
        self._bytes = -1  # unknown until the first write
        # put_later: rows handed to the writer thread, readable here until it wrote them.
        self._pending: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[list[tuple[bytes, bytes]] | None] = queue.Queue(
            maxsize=WRITE_QUEUE)
        self._writer: threading.Thread | None = None

    @classmethod
    def default(cls, max_mb: float = DEFAULT_CACHE_MB) -> EmbeddingCache:
        """The cache in the user cache dir (ENGRAM_CACHE_DIR overrides it)."""
        from engram_cli.config import cache_dir

        return cls(cache_dir() / CACHE_DIR_NAME / CACHE_FILE_NAME, max_mb)

    def _db(self) -> sqlite3.Connection | None:
        if self._conn is not None or self.error is not None:
            return self._conn
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
            os.fchmod(fd, 0o600)
            os.close(fd)
            conn = self._connect()
            conn.execute("CREATE TABLE IF NOT EXISTS vectors (n INTEGER PRIMARY KEY, "
                         "key BLOB NOT NULL UNIQUE, vec BLOB NOT NULL)")
        except (sqlite3.Error, OSError) as exc:
            self.error = f"{self.path}: {exc}"
            return None
        self._conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        from engram_cli.client.sqlite_open import open_retrying

        def prepare(conn: sqlite3.Connection) -> None:
            # A new cache's pages (no effect on an existing file): a vector is a kilobyte or
            # more, and on 4 KB pages each commit wrote twice as many bytes per vector to
            # the WAL (the importer's write-behind thread: 12 -> 9 us a vector).
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")

        return open_retrying(self.path, 10.0, prepare)

    def get_many(self, model: str, dim: int, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors of those `keys` it holds (of `dim` floats)."""
        import numpy as np

        conn = self._db()
        if conn is None or not keys:
            return {}
        found: dict[bytes, np.ndarray] = {}
        if self._pending:
            with self._lock:
                for key in keys:
                    blob = self._pending.get(key)
                    if blob is not None and len(blob) == 4 * dim:
                        found[key] = np.frombuffer(blob, dtype="<f4")
            if found:
                keys = [k for k in keys if k not in found]
        try:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                rows = conn.execute("SELECT key, vec FROM vectors WHERE key IN ("
                                    + ",".join("?" * len(part)) + ")", part).fetchall()
                for key, vec in rows:
                    if len(vec) == 4 * dim:
                        found[key] = np.frombuffer(vec, dtype="<f4")
        except sqlite3.Error as exc:
            self._fail(exc)
            return {}
        self.hits += len(found)
        return found

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store vectors (one row per key) now; drops the oldest entries over the bound."""
        conn = self._db()
        if conn is None or not keys:
            return
        self._write(conn, list(zip(keys, _blobs(vectors), strict=True)))
        if self.error is not None:
            self.close()

    def put_later(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """`put_many` from the writer thread (started here), which gathers WRITE_BYTES of
        rows for a transaction; `get_many` answers them from memory meanwhile, and `close`
        waits until they are written. Blocks while WRITE_QUEUE chunks are waiting, so
        memory stays bounded if the disk is slow."""
        if self._db() is None or not keys:
            return
        rows = list(zip(keys, _blobs(vectors), strict=True))
        with self._lock:
            self._pending.update(rows)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_behind,
                                            name="engram-embed-cache", daemon=True)
            self._writer.start()
        self._queue.put(rows)

    def _write_behind(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            conn.execute(f"PRAGMA cache_size = -{WRITE_CACHE_KIB}")
        except sqlite3.Error as exc:
            self.error = f"{self.path}: {exc}"
        while True:
            rows = self._queue.get()
            if rows is None:
                break
            more = True
            size = len(rows) * len(rows[0][1])  # a chunk's rows are of one size
            while more and size < WRITE_BYTES:  # gather: one transaction for many chunks
                nxt = self._queue.get()
                if nxt is None:
                    more = False
                else:
                    rows.extend(nxt)
                    size += len(nxt) * len(nxt[0][1])
            if conn is not None and self.error is None:
                self._write(conn, rows)
            with self._lock:
                for key, blob in rows:
                    if self._pending.get(key) is blob:
                        del self._pending[key]
            if not more:
                break
        if conn is not None:
            conn.close()

    def _write(self, conn: sqlite3.Connection, rows: list[tuple[bytes, bytes]]) -> None:
        try:
            blobs = [b for _, b in rows]
            conn.execute("BEGIN")
            conn.executemany("INSERT OR IGNORE INTO vectors (key, vec) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
            if self._bytes < 0:
                self._bytes = _used_bytes(conn)
            else:
                self._bytes += sum(len(b) + _ROW_OVERHEAD for b in blobs)
            if self._bytes > self.max_bytes:
                self._evict(conn, len(blobs[0]) + _ROW_OVERHEAD)
                self._bytes = _used_bytes(conn)
        except sqlite3.Error as exc:
            # Not _fail: in the writer thread, close() would wait for that very thread.
            self.error = f"{self.path}: {exc}"
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def _evict(self, conn: sqlite3.Connection, row_bytes: int) -> None:
        # Down to 90% of the bound, so that eviction runs now and then, not every write.
        excess = self._bytes - int(self.max_bytes * 0.9)
        rows = max(1, excess // row_bytes)
        conn.execute("DELETE FROM vectors WHERE n IN (SELECT n FROM vectors ORDER BY n "
                     "LIMIT ?)", (rows,))

    def _fail(self, exc: Exception) -> None:
        self.error = f"{self.path}: {exc}"
        self.close()

    def close(self) -> None:
        """Waits for the rows `put_later` was given to be written."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes the cache's pages hold (its free pages left out): three pragmas, where a sum
    over the rows would read a full cache's gigabyte at the start of every import."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * conn.execute("PRAGMA page_size").fetchone()[0])


def _blobs(vectors: np.ndarray) -> list[bytes]:
    """Rows as float32 bytes: one conversion for the whole array, then slices."""
    data = vectors.astype("<f4", copy=False).tobytes()
    size = len(data) // len(vectors) if len(vectors) else 0
    return [data[i:i + size] for i in range(0, len(data), size)] if size else []


class CueEmbedder:
    """`recall --embed`: a cue's vector, from the embedding cache or the model (loaded at
    the first cue the cache does not hold)."""

    def __init__(self, model: str, dim: int | None) -> None:
        self.spec = EmbedSpec.resolve(model, dim)
        self.cache = EmbeddingCache.default()
        self._model: Any = None

    def vector(self, text: str) -> list[float]:
        key = text_key(self.spec.model, text)
        found = self.cache.get_many(self.spec.model, self.spec.native, [key]).get(key)
        if found is None:
            if self._model is None:
                from engram_cli.engine.embedding import load_model

                self._model = load_model(self.spec.model)
            vectors = self._model.embed([text])
            self.cache.put_many([key], vectors)
            found = vectors[0]
        return [float(x) for x in self.spec.fit(found[None, :])[0]]
