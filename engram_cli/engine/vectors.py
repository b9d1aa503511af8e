"""The vector index: approximate nearest neighbours per memory space, persisted in a directory.

One usearch HNSW index per space (spaces never see each other's vectors), keyed by the
memory's SQLite rowid, holding vectors quantized to int8 by default so that a million
256-d vectors take about half a gigabyte. SQLite stays the source of truth: this index only
proposes candidates, and the caller re-reads each one from SQLite (dropping deleted,
suppressed or changed memories, and re-scoring with the exact vector).

Persistence: `save(watermark)` writes every changed space to a new file (temporary file,
fsync, rename; 0600 files in a 0700 directory, never through a symlink), then the manifest,
which names the files and records the caller's watermark: the last change sequence whose
effect is in the files. The manifest's rename is the commit point, so after kill -9 the
directory holds the previous save or this one, whole. `open()` answers the watermark to
replay changes after; when the files are missing, corrupt or were made by another model,
it starts empty with watermark 0 and says why (`rebuild_reason`), and the caller rebuilds
from SQLite. Replaying a change twice is harmless: `add` replaces a key, `remove` ignores
one that is absent.

Fresh vectors: `add_fresh` makes vectors searchable at once in a space's fresh segment
(engine/fresh.py, scanned exactly beside the graph walk), and `merge` moves the oldest of
them into the HNSW graph, chunk by chunk, from another thread. Inserting into the graph is
the slow half of indexing, so the indexer embeds while a merger inserts. The fresh segment
is not saved: `save` records a watermark before its oldest vector, so a restart replays it.

Threads: any number of concurrent searches, and writers (add/remove/merge/save) one at a
time, each waiting for searches to drain; a batch is added in chunks so that a search waits
at most one chunk. numpy and usearch are imported when an index is opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engram_cli.engine.fresh import FreshSegment
from engram_cli.errors import InvalidArgument, UsageError
from engram_cli.files import create_exclusive, fsync_dir, private_dir, read_private

FORMAT = 1
MANIFEST = "manifest.json"
_SPACE_FILE = re.compile(r"[a-z0-9_-]{1,64}")  # fullmatch: no trailing newline
# Vectors added under one exclusive hold of the lock: at ~10-20k vectors/s that keeps a
# search's wait for a writer to a few milliseconds.
WRITE_CHUNK = 64
# Spaces of at most this many vectors are searched exhaustively (see search()); above it
# the HNSW walk wins (2x faster at 20,000, and the gap grows with the space).
EXACT_BELOW = 10_000
# Vectors a space's fresh segment holds at most before the indexer stops embedding to let the
# merger catch up: 32 MB at 256-d, scanned in ~1-2 ms (it is searched with every cue).
FRESH_MAX = 32_768


@dataclass(frozen=True)
class IndexConfig:
    """How the indexes are built and searched. Changing `model`, `dtype` or
    `connectivity` makes the saved files unusable (open() starts empty and says why)."""

    model: str
    # int8 holds a 256-d unit vector in 256 bytes (f16: 512) and, re-scored exactly by the
    # caller, loses no recall@10 measurably; "f16" or "f32" keep more precision in RAM.
    dtype: str = "i8"
    # HNSW edges per node (M) and the candidate list while inserting (efConstruction):
    # 16/64 adds ~14k vectors/s on two cores at recall@10 0.95 with re-scoring
    # (benchmarks/vector_index_bench.py); 128 adds ~4x slower for +0.02.
    connectivity: int = 16
    expansion_add: int = 64
    # the candidate list while searching (ef); at least the number of results asked for
    expansion_search: int = 128
    # threads per add() call; the server's indexer leaves a core to the RPC threads
    threads: int = 1


@dataclass
class SpaceStats:
    dim: int
    count: int
    bytes: int


@dataclass
class VectorStats:
    """What stats and Introspect show of the index."""

    count: int = 0  # searchable: in the graph or the fresh segment
    bytes: int = 0
    fresh: int = 0  # in the fresh segment, not yet in the graph
    watermark: int = 0
    unsaved: int = 0  # changes applied since the last save
    spaces: dict[str, SpaceStats] = field(default_factory=dict)


class _RWLock:
    """Many readers or one writer; a waiting writer holds new readers back."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Space:
    def __init__(self, index: Any, dim: int, saved: dict[str, Any] | None = None) -> None:
        self.index = index
        self.dim = dim
        # the manifest entry of the file this index was loaded from or last saved to
        self.saved = saved
        self.dirty = False
        self.fresh: FreshSegment | None = None

    def count(self) -> int:
        return len(self.index) + (len(self.fresh) if self.fresh is not None else 0)


class VectorIndex:
    """The approximate-nearest-neighbour indexes of every space, in one directory."""

    def __init__(self, directory: Path, config: IndexConfig) -> None:
        self.directory = directory
        self.config = config
        self.watermark = 0
        self.rebuild_reason = ""  # why open() started empty when files were there
        self._spaces: dict[str, _Space] = {}
        self._generation = 0
        self._unsaved = 0
        self._lock = _RWLock()
        self._writer = threading.Lock()  # add/remove/save one at a time

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(cls, directory: Path, config: IndexConfig) -> VectorIndex:
        """The indexes saved in `directory` (made private, created if missing), or empty
        ones with watermark 0 when there are none or they cannot be used."""
        if config.dtype not in ("i8", "f16", "f32"):
            raise UsageError(f"vector index dtype {config.dtype!r} is not one of i8, f16, f32")
        private_dir(directory)
        self = cls(directory, config)
        try:
            self._load()
        except _Unusable as exc:
            self._spaces.clear()
            self.watermark = 0
            self.rebuild_reason = str(exc)
        self._remove_strays()
        return self

    def _load(self) -> None:
        path = self.directory / MANIFEST
        try:
            raw = read_private(path)
        except FileNotFoundError:
            if any(self.directory.glob("*.usearch")):
                raise _Unusable("index files without a manifest") from None
            return
        try:
            doc = orjson.loads(raw)
            fmt, model, watermark = doc["format"], doc["model"], int(doc["watermark"])
            dtype, connectivity = doc["dtype"], int(doc["connectivity"])
            spaces = dict(doc["spaces"])
            generation = int(doc["generation"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise _Unusable(f"unreadable manifest: {exc}") from None
        if fmt != FORMAT:
            raise _Unusable(f"index format {fmt}, this version reads {FORMAT}")
        if (model, dtype, connectivity) != (self.config.model, self.config.dtype,
                                            self.config.connectivity):
            raise _Unusable(f"made with model {model!r} {dtype} M{connectivity}, the "
                            f"settings now say {self.config.model!r} {self.config.dtype} "
                            f"M{self.config.connectivity}")
        for space, entry in spaces.items():
            try:
                file, dim, size, digest = (entry["file"], int(entry["dim"]), int(entry["size"]),
                                           entry["blake2b"])
            except (KeyError, TypeError, ValueError) as exc:
                raise _Unusable(f"manifest entry of space {space!r}: {exc}") from None
            if not _SPACE_FILE.fullmatch(space) or Path(file).name != file:
                raise _Unusable(f"manifest names a bad space or file: {space!r} {file!r}")
            fpath = self.directory / file
            # A damaged file must never reach the native loader: it trusts the offsets it
            # reads, so bad bytes could crash the whole server rather than raise.
            try:
                got = _digest(fpath)
            except FileNotFoundError:
                raise _Unusable(f"{file} is missing") from None
            if got != (size, digest):
                raise _Unusable(f"{file} is damaged (size or checksum differs)")
            index = self._new_index(dim)
            try:
                index.load(str(fpath))
            except (RuntimeError, ValueError, OSError) as exc:
                raise _Unusable(f"{file}: {exc}") from None
            if index.ndim != dim:
                raise _Unusable(f"{file} holds {index.ndim}-d vectors, the manifest says {dim}")
            self._spaces[space] = _Space(index, dim, {"file": file, "dim": dim, "size": size,
                                                      "blake2b": digest})
        self.watermark = watermark
        self._generation = generation

    def _remove_strays(self) -> None:
        """Files of a save that was cut short, or that the last save replaced."""
        keep = {MANIFEST, *(s.saved["file"] for s in self._spaces.values() if s.saved)}
        for p in self.directory.iterdir():
            if p.name not in keep and p.suffix in (".usearch", ".tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()

    def _new_index(self, dim: int) -> Any:
        from usearch.index import Index

        c = self.config
        return Index(ndim=dim, metric="cos", dtype=c.dtype, connectivity=c.connectivity,
                     expansion_add=c.expansion_add, expansion_search=c.expansion_search)

    # ----------------------------------------------------------------- writing

    def add(self, space: str, keys: Any, vectors: Any) -> None:
        """Index `vectors` (n x dim floats) under `keys` (n int64 rowids) in the graph,
        replacing any vector already there under the same key. The first add to a space fixes
        its dimension; a vector of another dimension raises InvalidArgument naming both."""
        keys, vecs = _batch(space, keys, vectors)
        if not len(keys):
            return
        with self._writer:
            sp = self._space_for(space, vecs.shape[1])
            for start in range(0, len(keys), WRITE_CHUNK):
                k, v = keys[start:start + WRITE_CHUNK], vecs[start:start + WRITE_CHUNK]
                with self._lock.write():
                    if sp.fresh is not None:
                        sp.fresh.discard(k.astype("int64"))
                    present = k[sp.index.contains(k)]
                    if len(present):
                        sp.index.remove(present)
                    sp.index.add(k, v, threads=self.config.threads)
            sp.dirty = True
            self._unsaved += len(keys)

    def add_fresh(self, space: str, keys: Any, vectors: Any, since: int) -> None:
        """Like add(), searchable at once, but into the space's fresh segment: `merge` moves
        them into the graph later. `since` is the caller's watermark before this change: a
        save records no later watermark while one of these vectors is still fresh."""
        keys, vecs = _batch(space, keys, vectors)
        if not len(keys):
            return
        with self._writer:
            sp = self._space_for(space, vecs.shape[1])
            with self._lock.write():
                present = keys[sp.index.contains(keys)]
                if len(present):  # an older vector of the key must not be found any more
                    sp.index.remove(present)
                    sp.dirty = True
                    self._unsaved += len(present)
                if sp.fresh is None:
                    sp.fresh = FreshSegment(sp.dim)
                sp.fresh.add(keys.astype("int64"), vecs, since)

    def fresh(self) -> int:
        """Vectors waiting in fresh segments for the graph."""
        with self._lock.read():
            return sum(len(sp.fresh) for sp in self._spaces.values() if sp.fresh is not None)

    def merge(self, most: int = WRITE_CHUNK * 4) -> int:
        """Move up to `most` of the oldest fresh vectors of one space into its graph; answers
        how many moved (0: nothing was fresh). A search meanwhile finds each of them in the
        segment or in the graph: the move of a chunk is one exclusive hold of the lock."""
        with self._writer:
            with self._lock.read():
                sp = next((s for s in self._spaces.values() if s.fresh), None)
                if sp is None or sp.fresh is None:
                    return 0
                keys, vecs = sp.fresh.oldest(most)
            # Inserting is the slow part: build nothing under the exclusive lock but the
            # graph insert itself, and that in chunks.
            for start in range(0, len(keys), WRITE_CHUNK):
                k = keys[start:start + WRITE_CHUNK]
                with self._lock.write():
                    sp.index.add(k.astype("uint64"), vecs[start:start + WRITE_CHUNK],
                                 threads=self.config.threads)
                    sp.fresh.merged(k)
            sp.dirty = True
            self._unsaved += len(keys)
            return len(keys)

    def _space_for(self, space: str, dim: int) -> _Space:
        """The space's index, created with this dimension if new (hold `_writer`)."""
        sp = self._spaces.get(space)
        if sp is None:
            if not dim:
                raise InvalidArgument("an empty vector cannot be indexed")
            sp = _Space(self._new_index(dim), dim)
            with self._lock.write():
                self._spaces[space] = sp
        elif dim != sp.dim:
            raise InvalidArgument(f"vector has {dim} dimensions; space {space!r} holds {sp.dim}")
        return sp

    def remove(self, space: str, keys: Any) -> int:
        """Drop `keys` from a space's index; answers how many were there."""
        import numpy as np

        keys = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1)
        removed = 0
        with self._writer:
            sp = self._spaces.get(space)
            if sp is None or not len(keys):
                return 0
            for start in range(0, len(keys), WRITE_CHUNK * 16):
                part = keys[start:start + WRITE_CHUNK * 16]
                with self._lock.write():
                    if sp.fresh is not None:
                        removed += sp.fresh.discard(part.astype(np.int64))
                    removed += int(np.sum(sp.index.remove(part)))
            sp.dirty = True
            self._unsaved += len(keys)
        return removed

    def drop_space(self, space: str) -> None:
        """Forget a space's whole index (its file goes at the next save)."""
        with self._writer, self._lock.write():
            if self._spaces.pop(space, None) is not None:
                self._unsaved += 1

    def save(self, watermark: int) -> None:
        """Persist every changed space and record `watermark`: the caller's last change
        sequence whose effect is in the index now; or, while vectors wait in a fresh
        segment (which is not saved), the earliest `since` among them, so that a restart
        replays them. Searches go on meanwhile."""
        with self._writer:
            with self._lock.read():
                for sp in self._spaces.values():
                    since = sp.fresh.since() if sp.fresh is not None else None
                    if since is not None:
                        watermark = min(int(watermark), since)
            generation = self._generation + 1
            written: list[Path] = []
            try:
                with self._lock.read():  # saving only reads the indexes
                    entries = {}
                    for name, sp in sorted(self._spaces.items()):
                        if sp.dirty or sp.saved is None:
                            path = self.directory / f"{name}.{generation}.usearch"
                            written.append(path)
                            size, digest = _write_private(path, sp.index.save)
                            entries[name] = {"file": path.name, "dim": sp.dim, "size": size,
                                             "blake2b": digest}
                        else:
                            entries[name] = sp.saved
                        entries[name]["count"] = len(sp.index)
                doc = {"format": FORMAT, "model": self.config.model,
                       "dtype": self.config.dtype, "connectivity": self.config.connectivity,
                       "watermark": int(watermark), "generation": generation,
                       "spaces": entries}
                manifest = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
                _write_private(self.directory / MANIFEST,
                               lambda path: Path(path).write_bytes(manifest))
            except BaseException:
                for p in written:
                    with contextlib.suppress(OSError):
                        p.unlink()
                raise
            self._generation = generation
            self.watermark = int(watermark)
            for name, sp in self._spaces.items():
                sp.saved = entries[name]
                sp.dirty = False
            self._unsaved = 0
            self._remove_strays()

    # ----------------------------------------------------------------- reading

    def search(self, space: str, vector: Any, k: int) -> list[tuple[int, float]]:
        """The about-`k` nearest keys of a space by cosine, as (key, similarity), best
        first; [] for a space without an index. Similarities are of the quantized vectors:
        re-score with the exact ones when it matters."""
        import numpy as np

        q = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        with self._lock.read():
            sp = self._spaces.get(space)
            if sp is None or k <= 0:
                return []
            if q.shape[0] != sp.dim:
                raise InvalidArgument(
                    f"cue has {q.shape[0]} dimensions; space {space!r} holds {sp.dim}")
            # A small space is scanned exhaustively: as fast as the graph walk there
            # (measured: 1.2 against 1.2 ms at 3,000 vectors), exact, and so the same
            # answer whatever order the memories were indexed in.
            found = sp.index.search(q, k, exact=len(sp.index) <= EXACT_BELOW)
            fresh = []
            if sp.fresh is not None and len(sp.fresh):
                norm = float(np.linalg.norm(q))
                fresh = sp.fresh.search(q / norm if norm else q, k)
        keys, dist = found.keys, found.distances
        out = [(int(keys[i]), 1.0 - float(dist[i])) for i in range(len(keys))]
        if fresh:  # a key is in the graph or the segment, never both
            out = sorted(out + fresh, key=lambda kv: kv[1], reverse=True)[:k]
        return out

    def set_expansion_search(self, ef: int) -> None:
        """Candidates examined per search (HNSW ef), for every space from now on."""
        with self._lock.write():
            self.config = dataclasses.replace(self.config, expansion_search=ef)
            for sp in self._spaces.values():
                sp.index.expansion_search = ef

    def dim(self, space: str) -> int | None:
        """The dimension a space's index holds; None before its first vector."""
        with self._lock.read():
            sp = self._spaces.get(space)
            return sp.dim if sp else None

    def __len__(self) -> int:
        with self._lock.read():
            return sum(sp.count() for sp in self._spaces.values())

    def stats(self) -> VectorStats:
        with self._lock.read():
            per = {name: SpaceStats(sp.dim, sp.count(), int(sp.index.memory_usage) + (
                       sp.fresh.nbytes() if sp.fresh is not None else 0))
                   for name, sp in self._spaces.items()}
            fresh = sum(len(sp.fresh) for sp in self._spaces.values() if sp.fresh is not None)
        return VectorStats(count=sum(s.count for s in per.values()),
                           bytes=sum(s.bytes for s in per.values()), fresh=fresh,
                           watermark=self.watermark, unsaved=self._unsaved, spaces=per)


class _Unusable(Exception):
    """The saved index cannot be used; the caller rebuilds it."""


def _batch(space: str, keys: Any, vectors: Any) -> tuple[Any, Any]:
    """(uint64 keys, float32 n x dim vectors) of an add, a later duplicate key winning, as
    if added one after another."""
    import numpy as np

    _check_space(space)
    keys = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1)
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    if vecs.ndim == 1:
        vecs = vecs.reshape(1, -1)
    if vecs.shape[0] != keys.shape[0]:
        raise ValueError(f"{keys.shape[0]} keys for {vecs.shape[0]} vectors")
    _, last = np.unique(keys[::-1], return_index=True)
    if len(last) != len(keys):
        pick = np.sort(len(keys) - 1 - last)
        keys, vecs = keys[pick], vecs[pick]
    return keys, vecs


def _check_space(space: str) -> None:
    if not _SPACE_FILE.fullmatch(space):
        raise InvalidArgument(f"space name {space!r} cannot name an index file")


def _digest(path: Path) -> tuple[int, str]:
    """(size, blake2b-128 hex) of a file, read in chunks, never through a symlink."""
    h = hashlib.blake2b(digest_size=16)
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _write_private(path: Path, write: Callable[[str], Any]) -> tuple[int, str]:
    """Have `write(temp_path)` fill a fresh 0600 temporary file, fsync it and rename it to
    `path`; answers the file's (size, digest)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created here, exclusively and private (one left by a killed process of the same pid
    # is replaced), so the writer only ever truncates our file.
    os.close(create_exclusive(tmp))
    try:
        write(str(tmp))
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        result = _digest(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return result
