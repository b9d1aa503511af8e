"""The vector index: nearest neighbours per memory space, persisted in a directory.

One faiss index per space (spaces never see each other's vectors), keyed by the memory's
SQLite rowid, over unit vectors (cosine). A small space is an exact store (engine/ivf.py);
at `train_at` vectors it becomes a coded store: every vector as a 4-bit product-quantized
code in k-means lists, all of which a search scans with faiss's fast-scan kernels (a
hybrid recall's, of a large store, only the lists nearest its cue), and as an 8-bit code
that re-scores the scan's best `candidates`. Adding costs two encodings a vector and a
look for its nearest list (~90k vectors/s on one core, where an HNSW graph took 1.9k/s),
so the index keeps up with the embedder.

SQLite stays the source of truth: this index only proposes candidates, and the caller
checks each one against SQLite (dropping deleted and suppressed memories, and re-scoring
with the stored vector those whose changes the index has yet to take in).

Growth: the codes were trained on the vectors the space held when it was trained; once it
holds `growth` times as many, `rebuild` (called from the indexer's merger, on a thread of
its own) trains new codes off-lock on a sample of the current vectors, copies every vector
into them chunk by chunk, replays the adds and removes that happened meanwhile (a
journal), and swaps them in. Searches go on against the old index throughout:
only the copy of each chunk holds the read lock, and only the last few journal entries and
the swap hold the write lock.

Persistence: `save(watermark)` writes every changed space to a new file (temporary file,
fsync, rename; 0600 files in a 0700 directory, never through a symlink), then the manifest,
which names the files and records the caller's watermark: the last change sequence whose
effect is in the files. The manifest's rename is the commit point, so after kill -9 the
directory holds the previous save or this one, whole. `open()` answers the watermark to
replay changes after; when the files are missing, corrupt, of another format (an older
version's HNSW files) or were made by another model, it starts empty with watermark 0 and
says why (`rebuild_reason`), and the caller rebuilds from SQLite. Replaying a change twice
is harmless: `add` replaces a key, `remove` ignores one that is absent.

Fresh vectors: `add_fresh` makes vectors searchable at once in a space's fresh segment
(engine/fresh.py, scanned exactly beside the index), and `merge` moves the oldest of them
into the index, chunk by chunk, from another thread, so the indexer embeds while a merger
inserts. The fresh segment is not saved: `save` records a watermark before its oldest
vector, so a restart replays it.

Threads: any number of concurrent searches, and writers (add/remove/merge/save) one at a
time, each waiting for searches to drain; a batch is added in chunks, so that a search
waits at most one chunk's encoding (~2 ms; its vectors' lists are found before, unlocked). faiss
releases the GIL while it searches, adds and trains. numpy and faiss are imported when an
index is opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engram_cli.engine.fresh import FreshSegment
from engram_cli.engine.rules import dimension_error
from engram_cli.engine.rwlock import RWLock
from engram_cli.engine.unit import unit, unit_rows
from engram_cli.errors import InvalidArgument
from engram_cli.files import (
    digest_file,
    private_dir,
    read_private,
    write_atomic,
    write_hashed,
)

FORMAT = 4  # 1: usearch HNSW files; 2: IVF-SQ8 inverted files; 3: fast-scan codes of one list
MANIFEST = "manifest.json"
SUFFIX = ".faiss"
_SPACE_FILE = re.compile(r"[a-z0-9_-]{1,64}")  # fullmatch: no trailing newline
# Vectors appended under one exclusive hold of the lock: two encodings, about a millisecond.
WRITE_CHUNK = 256
# A space is an exact store until it holds this many vectors: a scan of 20,000 256-d float32
# vectors takes ~1-2 ms on one core here (32,000: ~6 ms, out of the caches), while codes
# train in under a second at this size.
TRAIN_AT = 20_000
# A space's codes are trained again when it holds this many times the vectors they were
# trained on (so every vector is re-added about 1.3 times over the space's growth).
GROWTH = 4
# Fast-scan candidates re-scored per search by default (see IndexConfig.candidates).
CANDIDATES = 256
# Vectors a space's fresh segment holds at most before the indexer stops embedding to let the
# merger catch up: 32 MB at 256-d, scanned in ~1-2 ms (it is searched with every cue).
FRESH_MAX = 32_768
# Vectors copied from the old index to a new one per hold of the read lock.
COPY_CHUNK = 32_768
# A rebuild swaps its new index in once the journal left to replay is this short.
REPLAY_UNDER_LOCK = 4096


@dataclass(frozen=True)
class IndexConfig:
    """How the indexes are built and searched. Changing `model` makes the saved files
    unusable (open() starts empty and says why)."""

    model: str
    # A coded space's fast-scan candidates re-scored with 8-bit codes per search. recall@10
    # at a million real texts (benchmarks/vector_index_bench.py, re-scored exactly):
    # 128 -> 0.96, 256 -> 0.98, 512 -> 0.99; ~0.2 ms per 100 candidates.
    candidates: int = CANDIDATES
    train_at: int = TRAIN_AT
    growth: int = GROWTH
    # The id of the database the index is a cache of (migration 013): a saved index that
    # records another is unusable. "" for none (an index saved before ids is kept).
    database: str = ""


@dataclass
class SpaceStats:
    dim: int
    count: int
    bytes: int


@dataclass
class VectorStats:
    """What stats and Introspect show of the index."""

    count: int = 0  # searchable: in the index or the fresh segment
    bytes: int = 0
    fresh: int = 0  # in the fresh segment, not yet in the index
    watermark: int = 0
    unsaved: int = 0  # changes applied since the last save
    spaces: dict[str, SpaceStats] = field(default_factory=dict)


class _Space:
    def __init__(self, index: Any, dim: int, trained_on: int = 0,
                 saved: dict[str, Any] | None = None) -> None:
        self.index = index  # ivf.exact_store or, trained, an ivf.Coded
        self.dim = dim
        self.trained_on = trained_on  # vectors the codes were trained on; 0: exact store
        # the manifest entry of the file this index was loaded from or last saved to
        self.saved = saved
        self.dirty = False
        self.fresh: FreshSegment | None = None
        # While a rebuild runs: every change since its snapshot, in order ((keys, vectors)
        # an add, (keys, None) a remove), and the keys they touched.
        self.journal: list[tuple[Any, Any]] | None = None
        self.touched: set[int] = set()

    def count(self) -> int:
        return int(self.index.ntotal) + (len(self.fresh) if self.fresh is not None else 0)

    def put(self, keys: Any, vecs: Any, nearest: Any = None) -> None:
        """Replace or add `keys` (hold the write lock); `nearest`: in a coded store, each
        vector's nearest list, found before without the lock (`nearest`)."""
        self.index.remove_ids(keys)  # an id added twice would be held twice
        if nearest is None:
            self.index.add_with_ids(vecs, keys)
        else:
            self.index.add_with_ids(vecs, keys, nearest)
        if self.journal is not None:
            self.journal.append((keys, vecs))
            self.touched.update(keys.tolist())

    def nearest(self, vecs: Any) -> Any:
        """In a coded store, each vector's nearest list (what `put` takes; hold `_writer`,
        so that the store is not swapped meanwhile, and no lock); else None."""
        return self.index.nearest_lists(vecs) if self.trained_on else None

    def drop(self, keys: Any) -> int:
        """Remove `keys` (hold the write lock); answers how many were there."""
        gone = int(self.index.remove_ids(keys))
        if self.journal is not None:
            self.journal.append((keys, None))
            self.touched.update(keys.tolist())
        return gone


class VectorIndex:
    """The nearest-neighbour indexes of every space, in one directory."""

    def __init__(self, directory: Path, config: IndexConfig) -> None:
        self.directory = directory
        self.config = config
        self.watermark = 0
        self.rebuild_reason = ""  # why open() started empty when files were there
        self._spaces: dict[str, _Space] = {}
        self._generation = 0
        self._unsaved = 0
        self._lock = RWLock()
        self._writer = threading.Lock()  # add/remove/save one at a time

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(cls, directory: Path, config: IndexConfig) -> VectorIndex:
        """The indexes saved in `directory` (made private, created if missing), or empty
        ones with watermark 0 when there are none or they cannot be used."""
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
        from engram_cli.engine import ivf

        path = self.directory / MANIFEST
        try:
            raw = read_private(path)
        except FileNotFoundError:
            if any(self.directory.glob(f"*{SUFFIX}")) or any(self.directory.glob("*.usearch")):
                raise _Unusable("index files without a manifest") from None
            return
        try:
            doc = orjson.loads(raw)
            fmt, model, watermark = doc["format"], doc["model"], int(doc["watermark"])
            spaces = dict(doc["spaces"])
            generation = int(doc["generation"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise _Unusable(f"unreadable manifest: {exc}") from None
        if fmt != FORMAT:
            raise _Unusable(f"index format {fmt} (an older version's), this version reads "
                            f"{FORMAT}")
        if model != self.config.model:
            raise _Unusable(f"made with model {model!r}, the settings now say "
                            f"{self.config.model!r}")
        database = str(doc.get("database", ""))
        if database and self.config.database and database != self.config.database:
            raise _Unusable(f"it was saved with database {database}, this store is "
                            f"{self.config.database}")
        for space, entry in spaces.items():
            try:
                file, dim, size, digest = (entry["file"], int(entry["dim"]), int(entry["size"]),
                                           entry["blake2b"])
                trained_on = int(entry["trained_on"])
            except (KeyError, TypeError, ValueError) as exc:
                raise _Unusable(f"manifest entry of space {space!r}: {exc}") from None
            if not _SPACE_FILE.fullmatch(space) or Path(file).name != file:
                raise _Unusable(f"manifest names a bad space or file: {space!r} {file!r}")
            fpath = self.directory / file
            # A damaged file must never reach the native loader: it trusts the sizes it
            # reads, so bad bytes could crash the whole server rather than raise.
            try:
                got = digest_file(fpath)
            except FileNotFoundError:
                raise _Unusable(f"{file} is missing") from None
            if got != (size, digest):
                raise _Unusable(f"{file} is damaged (size or checksum differs)")
            try:
                index = ivf.read(fpath, coded=trained_on > 0)
            except ValueError as exc:
                raise _Unusable(str(exc)) from None
            if index.d != dim:
                raise _Unusable(f"{file} holds {index.d}-d vectors, the manifest says {dim}")
            self._spaces[space] = _Space(index, dim, trained_on, {
                "file": file, "dim": dim, "size": size, "blake2b": digest,
                "trained_on": trained_on})
        self.watermark = watermark
        self._generation = generation

    def _remove_strays(self) -> None:
        """Files of a save that was cut short, that the last save replaced, or of an older
        format."""
        keep = {MANIFEST, *(s.saved["file"] for s in self._spaces.values() if s.saved)}
        for p in self.directory.iterdir():
            if p.name not in keep and p.suffix in (SUFFIX, ".usearch", ".tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()

    # ----------------------------------------------------------------- writing

    def add(self, space: str, keys: Any, vectors: Any) -> None:
        """Index `vectors` (n x dim floats) under `keys` (n int64 rowids), replacing any
        vector already there under the same key. The first add to a space fixes its
        dimension; a vector of another dimension raises InvalidArgument naming both."""
        keys, vecs = _batch(space, keys, vectors)
        if not len(keys):
            return
        with self._writer:
            sp = self._space_for(space, vecs.shape[1])
            self._append(sp, keys, vecs, discard_fresh=True)
            sp.dirty = True
            self._unsaved += len(keys)

    def _append(self, sp: _Space, keys: Any, vecs: Any, discard_fresh: bool) -> None:
        """Add in chunks (hold _writer: the index cannot be swapped meanwhile)."""
        for start in range(0, len(keys), WRITE_CHUNK):
            k, v = keys[start:start + WRITE_CHUNK], vecs[start:start + WRITE_CHUNK]
            nearest = sp.nearest(v)  # off the lock: ~0.6 ms a chunk at 512 lists
            with self._lock.write():
                if discard_fresh and sp.fresh is not None:
                    sp.fresh.discard(k)
                sp.put(k, v, nearest)
                if not discard_fresh and sp.fresh is not None:
                    sp.fresh.merged(k)

    def add_fresh(self, space: str, keys: Any, vectors: Any, since: int) -> None:
        """Like add(), searchable at once, but into the space's fresh segment: `merge` moves
        them into the index later. `since` is the caller's watermark before this change: a
        save records no later watermark while one of these vectors is still fresh."""
        keys, vecs = _batch(space, keys, vectors)
        if not len(keys):
            return
        with self._writer:
            sp = self._space_for(space, vecs.shape[1])
            with self._lock.write():
                if sp.drop(keys):  # an older vector of the key must not be found any more
                    sp.dirty = True
                    self._unsaved += len(keys)
                if sp.fresh is None:
                    sp.fresh = FreshSegment(sp.dim)
                sp.fresh.add(keys, vecs, since)

    def fresh(self) -> int:
        """Vectors waiting in fresh segments for the index."""
        with self._lock.read():
            return sum(len(sp.fresh) for sp in self._spaces.values() if sp.fresh is not None)

    def merge(self, most: int = WRITE_CHUNK * 16) -> int:
        """Move up to `most` of the oldest fresh vectors of one space into its index;
        answers how many moved (0: nothing was fresh). A search meanwhile finds each of them
        in the segment or in the index: the move of a chunk is one exclusive hold."""
        with self._writer:
            with self._lock.read():
                sp = next((s for s in self._spaces.values() if s.fresh), None)
                if sp is None or sp.fresh is None:
                    return 0
                keys, vecs = sp.fresh.oldest(most)
            self._append(sp, keys, vecs, discard_fresh=False)
            sp.dirty = True
            self._unsaved += len(keys)
            return len(keys)

    def _space_for(self, space: str, dim: int) -> _Space:
        """The space's index, created with this dimension if new (hold `_writer`)."""
        from engram_cli.engine import ivf

        sp = self._spaces.get(space)
        if sp is None:
            if not dim:
                raise InvalidArgument("an empty vector cannot be indexed")
            sp = _Space(ivf.exact_store(dim), dim)
            with self._lock.write():
                self._spaces[space] = sp
        elif dim != sp.dim:
            raise InvalidArgument(dimension_error(dim, space, sp.dim, "vector"))
        return sp

    def remove(self, space: str, keys: Any) -> int:
        """Drop `keys` from a space's index; answers how many were there."""
        import numpy as np

        keys = np.unique(np.ascontiguousarray(keys, dtype=np.int64).reshape(-1))
        removed = 0
        with self._writer:
            sp = self._spaces.get(space)
            if sp is None or not len(keys):
                return 0
            for start in range(0, len(keys), WRITE_CHUNK * 16):
                part = keys[start:start + WRITE_CHUNK * 16]
                with self._lock.write():
                    if sp.fresh is not None:
                        removed += sp.fresh.discard(part)
                    removed += sp.drop(part)
            sp.dirty = True
            self._unsaved += len(keys)
        return removed

    def clear(self, reason: str) -> None:
        """Start empty, with watermark 0, saying why (`rebuild_reason`): the caller
        rebuilds from SQLite. The files go at the next save."""
        with self._writer, self._lock.write():
            self._spaces.clear()
            self.watermark = 0
            self.rebuild_reason = reason
            self._unsaved += 1

    def drop_space(self, space: str) -> None:
        """Forget a space's whole index (its file goes at the next save)."""
        with self._writer, self._lock.write():
            if self._spaces.pop(space, None) is not None:
                self._unsaved += 1

    # ----------------------------------------------------------------- growing

    def due(self) -> str | None:
        """A space that should be trained (an exact store of `train_at` vectors) or
        retrained (`growth` times the vectors it was trained on, stale codes of removed
        and replaced vectors past an eighth of it, or codes of another layout than this
        version trains), if any. A space of fewer than CODED_MIN_DIM dimensions stays
        exact."""
        from engram_cli.engine import ivf

        c = self.config
        with self._lock.read():
            for name, sp in self._spaces.items():
                n = int(sp.index.ntotal)
                if sp.journal is None and (
                        n >= c.growth * sp.trained_on or sp.index.stale() > n // 8
                        or sp.index.outdated() if sp.trained_on
                        else n >= c.train_at and sp.dim >= ivf.CODED_MIN_DIM):
                    return name
        return None

    def rebuild(self, space: str, cancelled: Callable[[], bool] = lambda: False,
                before_swap: Callable[[], None] | None = None) -> bool:
        """Train new codes for `space` on its current vectors and swap them in; answers
        whether it was swapped (False: the space went, or `cancelled()` said stop).
        Searches and writers carry on meanwhile; `before_swap` runs once the copy is done,
        before the journal of the changes made meanwhile is replayed."""
        import numpy as np

        from engram_cli.engine import ivf

        with self._writer:
            sp = self._spaces.get(space)
            if sp is None or sp.journal is not None:
                return False
            old = sp.index
            with self._lock.read():
                ids = ivf.all_ids(old)
                pick = np.random.default_rng(len(ids)).choice(
                    len(ids), ivf.sample_size(len(ids)), replace=False)
                sample = old.reconstruct_batch(np.sort(ids[pick]))
            # From here every change is journaled: a key not in `touched` is as it was.
            sp.journal, sp.touched = [], set()
        trained_on = len(ids)
        swapped = False
        try:
            new = ivf.train(sp.dim, sample, trained_on)
            del sample
            for start in range(0, len(ids), COPY_CHUNK):  # copy, chunk by chunk
                if cancelled() or self._spaces.get(space) is not sp:
                    return False
                with self._lock.read():  # writers change the old index between chunks
                    keys = ids[start:start + COPY_CHUNK]
                    if sp.touched:  # the journal's replay puts these right
                        keys = keys[~np.isin(keys, np.fromiter(sp.touched, np.int64))]
                    vecs = old.reconstruct_batch(keys) if len(keys) else None
                if vecs is not None:
                    new.add_with_ids(vecs, keys)
            if before_swap is not None:
                before_swap()
            while not cancelled():
                with self._writer:
                    if self._spaces.get(space) is not sp:
                        return False
                    ops, sp.journal = sp.journal or [], []
                    if sum(len(k) for k, _ in ops) <= REPLAY_UNDER_LOCK:
                        with self._lock.write():
                            ivf.replay(new, ops)
                            sp.index, sp.trained_on = new, trained_on
                            sp.journal, sp.touched = None, set()
                            sp.dirty = True
                            self._unsaved += 1
                        swapped = True
                        return True
                ivf.replay(new, ops)
            return False
        finally:
            if not swapped:
                with self._writer:
                    sp.journal, sp.touched = None, set()

    def refresh_lookups(self) -> int:
        """Re-take the look-up of where each key's 8-bit code lies (engine/ivf.py) in every
        trained space that changed much since its last one; answers how many. Searches find
        what changed since through faiss, a little slower. The copy of the keys holds the
        read lock (~2 ms a million), as does putting the new one in place; making it holds
        none."""
        from engram_cli.engine import ivf

        done = 0
        with self._lock.read():
            names = list(self._spaces)
        for name in names:
            with self._lock.read():
                sp = self._spaces.get(name)
                if sp is None or not isinstance(sp.index, ivf.Coded) \
                        or not sp.index.lookup_due():
                    continue
                index = sp.index
                keys, changed = index.lookup_keys()
            lookup = ivf.make_lookup(keys)
            with self._lock.read():  # no writer counts changes meanwhile
                index.set_lookup(lookup, changed)
            done += 1
        return done

    # ----------------------------------------------------------------- saving

    def save(self, watermark: int) -> None:
        """Persist every changed space and record `watermark`: the caller's last change
        sequence whose effect is in the index now; or, while vectors wait in a fresh
        segment (which is not saved), the earliest `since` among them, so that a restart
        replays them. Searches go on meanwhile."""
        from engram_cli.engine import ivf

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
                            path = self.directory / f"{name}.{generation}{SUFFIX}"
                            written.append(path)
                            size, digest = write_hashed(
                                path, functools.partial(ivf.write, sp.index))
                            entries[name] = {"file": path.name, "dim": sp.dim, "size": size,
                                             "blake2b": digest, "trained_on": sp.trained_on}
                        else:
                            entries[name] = sp.saved
                        entries[name]["count"] = int(sp.index.ntotal)
                doc = {"format": FORMAT, "model": self.config.model,
                       "database": self.config.database,
                       "watermark": int(watermark), "generation": generation,
                       "spaces": entries}
                manifest = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
                write_atomic(self.directory / MANIFEST, manifest)
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

    def search(self, space: str, vector: Any, k: int, split: bool = True,
               approximate: bool = False) -> list[tuple[int, float]]:
        """The about-`k` nearest keys of a space by cosine, as (key, similarity), best
        first; [] for a space without an index. Similarities are of the quantized vectors
        (8-bit codes) in a coded store. `split`: a coded store's scan may take a second
        thread (False where the caller's own thread works meanwhile), if no other search
        is under way: a server whose cores are busy with other searches gains nothing from
        handing work to another thread. `approximate`: a large coded store's nearest lists
        are scanned, not every code (a hybrid recall's search, engine/ivf.py)."""

        from engram_cli.engine import ivf

        q = unit(vector)[0].reshape(1, -1)
        with self._lock.read():
            sp = self._spaces.get(space)
            if sp is None or k <= 0:
                return []
            if q.shape[1] != sp.dim:
                raise InvalidArgument(dimension_error(q.shape[1], space, sp.dim, "cue"))
            alone = self._lock.readers == 1  # this search
            out = (ivf.search(sp.index, q, k, self.config.candidates, split and alone,
                              approximate) if sp.index.ntotal else [])
            if sp.fresh is not None and len(sp.fresh):
                # a key is in the index or the segment, never both
                out = sorted(out + sp.fresh.search(q[0], k), key=lambda kv: kv[1],
                             reverse=True)[:k]
        return out

    def scores(self, space: str, keys: list[int], vector: Any) -> dict[int, float]:
        """{key: similarity to `vector`} of those of `keys` the space's index holds, as a
        search would score them (8-bit codes in a coded store); {} for a space of another
        dimension or none."""
        import numpy as np

        from engram_cli.engine import ivf

        q = unit(vector)[0]
        with self._lock.read():
            sp = self._spaces.get(space)
            if sp is None or not keys or len(q) != sp.dim:
                return {}
            out = sp.fresh.scores(keys, q) if sp.fresh is not None else {}
            rest = np.array([k for k in keys if k not in out], dtype=np.int64)
            if len(rest) and sp.index.ntotal:
                out.update(ivf.held_scores(sp.index, rest, q))
        return out

    def set_candidates(self, candidates: int) -> None:
        """Fast-scan candidates re-scored per search of a trained space, from now on."""
        with self._lock.write():
            self.config = dataclasses.replace(self.config, candidates=candidates)

    def dim(self, space: str) -> int | None:
        """The dimension a space's index holds; None before its first vector. Read without
        the lock: a space's dimension never changes and a dict look-up is atomic, so a
        recall asking it does not queue behind the writers (the merger, while the index
        catches up, takes the lock once a chunk)."""
        sp = self._spaces.get(space)
        return sp.dim if sp else None

    def __len__(self) -> int:
        with self._lock.read():
            return sum(sp.count() for sp in self._spaces.values())

    def stats(self) -> VectorStats:
        from engram_cli.engine import ivf

        with self._lock.read():
            per = {name: SpaceStats(sp.dim, sp.count(), ivf.nbytes(sp.index) + (
                       sp.fresh.nbytes() if sp.fresh is not None else 0))
                   for name, sp in self._spaces.items()}
            fresh = sum(len(sp.fresh) for sp in self._spaces.values() if sp.fresh is not None)
        return VectorStats(count=sum(s.count for s in per.values()),
                           bytes=sum(s.bytes for s in per.values()), fresh=fresh,
                           watermark=self.watermark, unsaved=self._unsaved, spaces=per)

    def describe(self) -> dict[str, dict[str, int]]:
        """Each space's vectors and the vectors its codes were trained on (0: exact)."""
        with self._lock.read():
            return {name: {"count": int(sp.index.ntotal), "trained_on": sp.trained_on}
                    for name, sp in self._spaces.items()}


class _Unusable(Exception):
    """The saved index cannot be used; the caller rebuilds it."""


def _batch(space: str, keys: Any, vectors: Any) -> tuple[Any, Any]:
    """(int64 keys, unit float32 n x dim vectors) of an add, a later duplicate key winning,
    as if added one after another."""
    import numpy as np

    _check_space(space)
    keys = np.ascontiguousarray(keys, dtype=np.int64).reshape(-1)
    vecs = np.array(vectors, dtype=np.float32, copy=True)
    if vecs.ndim == 1:
        vecs = vecs.reshape(1, -1)
    if vecs.shape[0] != keys.shape[0]:
        raise ValueError(f"{keys.shape[0]} keys for {vecs.shape[0]} vectors")
    _, last = np.unique(keys[::-1], return_index=True)
    if len(last) != len(keys):
        pick = np.sort(len(keys) - 1 - last)
        keys, vecs = keys[pick], vecs[pick]
    return keys, np.ascontiguousarray(unit_rows(vecs))


def _check_space(space: str) -> None:
    if not _SPACE_FILE.fullmatch(space):
        raise InvalidArgument(f"space name {space!r} cannot name an index file")
