"""The background indexer: keeps the vector index (engine/vectors.py) in step with SQLite and
embeds the memories that arrived without a vector, off the write path.

A write is acknowledged when it commits, as always; its rowid is then in `vector_log`
(migration 006's triggers, in the writing transaction). This thread follows the log: for
each logged memory still visible it indexes the memory's own embedding, or the vector the
server computed for it (`vectors`), or embeds its text (in batches, storing the vectors
through the writer like any write); a memory deleted or suppressed is removed. A backlog
is embedded in worker processes (engine/embedworker.py, one per core), DEPTH log batches
ahead (and their texts at most AHEAD_CHARS characters): the workers embed the next batches
while this thread stores and indexes one, and the model holds no core and no GIL the RPC
threads need. A memory logged again while its text is out is not embedded twice. A new
vector goes into the index's fresh segment, searchable at once, and a second thread, the
merger, moves fresh vectors into the index behind it, and trains or retrains a space's
inverted file on a builder thread of its own when the space has grown (VectorIndex.due and
rebuild; searches and merges go on meanwhile). A memory is searchable once it is embedded
and stored. The fresh segment is bounded (FRESH_MAX): when it is full the indexer waits for
the merger before embedding more, so a search's exact scan of it stays short. Every few
seconds (while a backlog lasts: once SAVE_SHARE of the index is unsaved) the index is saved
with the last log sequence it holds in the index (fresh vectors are not saved), and the log
up to there is dropped. After kill -9 the index opens at its saved
watermark and the log replays the rest (vectors already stored are not embedded again); an
index that cannot be used is rebuilt from every memory.

All three threads lower their own CPU priority: on a small machine embedding and training
compete with the writer and the RPC threads, which matter more than how soon a vector is
searchable. For the same reason the indexer reads no further into the log while clients
write faster than FLOOD_RATE (an import), and catches up when they stop. Recall checks
every candidate against SQLite and re-reads those whose changes the index has yet to take
in (`unsettled`), so a lagging index can miss a new memory but never return one that was
deleted, suppressed or changed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from engram_cli.engine import rows, vectors
from engram_cli.engine.embedding import MAX_CHARS, NONE, load_model
from engram_cli.engine.embedworker import EmbedWorker, WorkerDied
from engram_cli.engine.vectors import FRESH_MAX, IndexConfig, VectorIndex
from engram_cli.errors import Overloaded

log = logging.getLogger("engram.indexer")

INDEX_DIR = "vectors"
LOG_BATCH = 2048  # log rows handled per step
# Changes behind at most which a recall still reads which memories they are, and takes the
# index's scores of all the others as they are (Indexer.unsettled): about a batch.
UNSETTLED_MOST = LOG_BATCH
EMBED_BATCH = 512  # texts embedded and stored per write
# A log batch with this many texts to embed starts the worker processes (engine/embedworker.py),
# which then embed every batch; fewer are embedded in the indexer's own thread.
WORKER_AT = EMBED_BATCH
# Log batches read ahead of the one being applied: their texts wait in the worker's queue,
# so that it embeds while this thread stores and indexes, and goes on embedding while this
# thread saves the index (at 2, two workers ran dry in each save of a million-vector
# catch-up; 4 is half a second of their work).
DEPTH = 4
# Characters of text the batches read ahead may hold at most, whatever the memories hold
# (a memory's content may be a megabyte): a log batch stops early once its texts reach
# BATCH_CHARS, and no batch is read ahead while those out reach AHEAD_CHARS. Short notes
# never reach either (2,048 of 100 words are about 1.3 M characters).
BATCH_CHARS = 16 << 20
AHEAD_CHARS = 48 << 20
SAVE_EVERY_S = 5.0
# While the log keeps the indexer busy, a save waits until the unsaved changes are this
# share of the index: a save writes the whole index, and after kill -9 replaying the log
# since the last save costs no embedding (the vectors are stored), only adds (half of a
# million: seconds). With DEPTH 4 and half rather than a quarter, a million memories
# caught up faster on 2 cores (four pairs of runs, interleaved: 1.10x, 1.11x, 1.07x, 1.01x).
SAVE_SHARE = 0.5
# ... and at least this many times as long as the last save took: a save writes and
# checksums the whole index (~280 MB at a million vectors), which must not eat the catch-up.
SAVE_SPACING = 10
# The merger leaves this many vectors fresh (0: it merges everything). Only tests raise it,
# in their own process, to hold vectors in the fresh segment.
MERGE_ABOVE = 0
# Vectors a space holds before its inverted file is trained (engine/vectors.py): only tests
# lower it, in their own process, to train and retrain on a few hundred memories.
TRAIN_AT = vectors.TRAIN_AT
NICENESS = 10
# While clients write faster than this (memories logged a second over the last
# FLOOD_SPAN_S: an import), the indexer reads no further into the log, so that embedding,
# training and indexing leave the machine to the write path; it finishes the batches
# already out and catches up once the flood is over. The span is seconds, not one check's
# interval: the writer commits an import in groups of many batches, with quiet gaps between.
# Writes at an interactive pace never come near. Under a flood that never ends the
# indexer still reads a batch every FLOOD_MAX_S (about 200 memories a second: the index
# falls behind, but visibly moves; an import of a million memories sees two or three).
FLOOD_RATE = 2_000
FLOOD_CHECK_S = 0.5
FLOOD_SPAN_S = 2.0
FLOOD_MAX_S = 10.0
BUILD_RETRY_S = 60.0  # after a failed (re)training, before the next try
_DTYPE = "<f2"  # server-computed vectors are kept as float16: half the bytes, same ranking


class Indexer(threading.Thread):
    """One per store. `index` is None until the thread has opened it."""

    def __init__(self, directory: Path, model_name: str,
                 reader: Callable[[], sqlite3.Connection],
                 submit: Callable[..., Future], candidates: int, workers: int = 0) -> None:
        super().__init__(name="engram-indexer", daemon=True)
        self.directory = directory
        self.model_name = model_name
        self._reader = reader
        self._submit = submit  # a write on the writer thread; its future answers the result
        self._candidates = candidates
        self._workers = workers  # embedding worker processes (0: EmbedWorker's default)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._merge_wake = threading.Event()
        self._merger: threading.Thread | None = None
        self._builder: threading.Thread | None = None
        self.ready = threading.Event()  # the index is open (recall may use it)
        self.index: VectorIndex | None = None
        self.model: Any = None
        self.applied = 0  # last log sequence whose effect is in the index
        # Indexer.unsettled's last answer: (applied, the log's top, the rowids between)
        self._unsettled: tuple[int, int, frozenset[int]] = (-1, -1, frozenset())
        self._read_to = 0  # last log sequence read (ahead of `applied`)
        self._ahead: deque[_Batch] = deque()
        # Texts of the batches out, by rowid: a memory logged again (a write logs some
        # twice) is not embedded again while its first embedding is on the way.
        self._embedding: dict[int, str] = {}
        self._worker: EmbedWorker | None = None
        self.embedded = 0
        self.error = ""
        # (when, the log's top then), one every FLOOD_CHECK_S, over the last FLOOD_SPAN_S
        self._flood_seen: deque[tuple[float, int]] = deque([(0.0, 0)])
        self._flooded = False
        self._flood_since: float | None = None  # the flood's start, or the last batch in it

    def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._submit(fn, *args).result()

    # -- what others ask -----------------------------------------------------------------

    def pending(self) -> int:
        """Logged changes not yet in the index: the log's sequence numbers past `applied`
        have no gaps (only those up to a saved watermark are ever deleted, and a rolled-back
        write takes its numbers back), so this is one index lookup, not a count of a
        backlog that runs to a million rows after an import."""
        return self._behind(self._reader()) or 0

    def _behind(self, conn: sqlite3.Connection) -> int | None:
        """`pending` read on `conn`; None when the log cannot be read."""
        try:
            row = conn.execute("SELECT max(seq) FROM vector_log").fetchone()
        except sqlite3.Error:
            return None
        return max(0, int(row[0] or 0) - self.applied)

    def unsettled(self, conn: sqlite3.Connection) -> frozenset[int] | None:
        """The rowids whose logged changes the index has yet to take in, as `conn`'s read
        transaction sees the log: the index's vectors of every other memory are those
        SQLite holds, so a recall may take its scores as they are. None while the index
        is opening, or when it is more than UNSETTLED_MOST changes behind (an import's
        backlog): then none of its scores are taken as they are. The log's committed rows
        between `applied` and its top never change, so the last answer read is kept for
        the next recall that sees the same two (a hybrid recall asks twice)."""
        if not self.ready.is_set() or self.index is None:
            return None
        applied = self.applied
        try:
            top = conn.execute("SELECT max(seq) FROM vector_log").fetchone()[0] or 0
            if top <= applied:
                return frozenset()
            if top - applied > UNSETTLED_MOST:
                return None
            last = self._unsettled
            if last[0] == applied and last[1] == top:
                return last[2]
            rids = frozenset(rid for (rid,) in conn.execute(
                "SELECT rid FROM vector_log WHERE seq > ? AND seq <= ?", (applied, top)))
        except sqlite3.Error:
            return None
        self._unsettled = (applied, top, rids)
        return rids

    def lag(self, conn: sqlite3.Connection | None = None) -> int:
        """About how many logged changes the index has yet to take in (cheap: one index
        lookup, for every recall); at least 1 while the index is still opening; 0 when the
        thread is not running, since then the index will not catch up and an answer is as
        complete as it gets. `conn`: a recall's own connection, in its read transaction
        (a statement of its own would open one more)."""
        if not self.is_alive():
            return 0
        behind = self._behind(conn or self._reader())
        if behind is None:
            return 0
        return behind if self.ready.is_set() else max(1, behind)

    def embed_cue(self, text: str) -> Any:
        """The cue's vector (float32, unit), or None without a model."""
        model = self.model
        if model is None or not text.strip():
            return None
        return self._cue_vector(text)

    @functools.lru_cache(maxsize=256)  # noqa: B019 (one Indexer per store, for its life)
    def _cue_vector(self, text: str) -> Any:
        # A hybrid recall asks twice (the vector seeds, then the full-text seeds' own
        # similarities), and a stream of cues often repeats one: embed each once. The
        # model is fixed for the indexer's life (embedding_model needs a restart).
        vec = self.model.embed([text])[0]
        if float((vec * vec).sum()) <= 0:
            return None
        vec.flags.writeable = False  # shared by every caller
        return vec

    def set_candidates(self, candidates: int) -> None:
        self._candidates = candidates
        if self.index is not None:
            self.index.set_candidates(candidates)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._merge_wake.set()
        for thread in (self._merger, self._builder):
            if thread is not None and thread.is_alive():
                thread.join(timeout=30)
        if self.is_alive():
            self.join(timeout=30)

    def poke(self) -> None:
        self._wake.set()

    # -- the thread ------------------------------------------------------------------------

    def run(self) -> None:
        _lower_priority()
        try:
            _one_faiss_thread()
            self._open()
        except Exception as exc:  # the server keeps serving lexical recall
            self.error = f"vector index unavailable: {exc}"
            log.exception("vector index unavailable")
            return
        self._merger = threading.Thread(target=self._merge_loop, name="engram-merger",
                                        daemon=True)
        self._merger.start()
        last_save, save_s = time.monotonic(), 0.0
        while not self._stopping.is_set():
            try:
                did = self._step()
                now = time.monotonic()
                assert self.index is not None
                st = self.index.stats()
                if st.unsaved and now - last_save > save_s * SAVE_SPACING and (
                        (not did and not st.fresh)
                        or (now - last_save > SAVE_EVERY_S
                            and st.unsaved >= SAVE_SHARE * st.count)):
                    self._save()
                    last_save, save_s = time.monotonic(), time.monotonic() - now
            except Overloaded:
                # The writer's queue is full (an import): the log keeps what is not done.
                self._forget_ahead()
                did = False
                self._stopping.wait(0.5)
            except Exception as exc:
                # A bad step must not end indexing: log it, wait, try again.
                self.error = str(exc)
                log.exception("indexer step failed")
                self._forget_ahead()
                did = False
                self._stopping.wait(1.0)
            if not did:
                self._wake.wait(0.5)
                self._wake.clear()
        self._forget_ahead()
        if self._worker is not None:
            self._worker.close()
        if self.index is not None:
            with contextlib.suppress(Exception):
                self._save()

    def _open(self) -> None:
        if self.model_name != NONE:
            self.model = load_model(self.model_name)
            self._worker = EmbedWorker(self.model_name, NICENESS, self._workers)
        config = IndexConfig(model=self.model_name, candidates=self._candidates,
                             train_at=TRAIN_AT, database=rows.store_identity(self._reader()))
        index = VectorIndex.open(self.directory, config)
        top = self._log_top(self._reader())
        if index.watermark > top:
            # Saved with another database (one put back from a copy, or another data dir's
            # warm_path): its keys may name other memories, and the log's next changes
            # would be taken for ones it holds already.
            index.clear(f"it was saved at change {index.watermark} of the log, and this "
                        f"store's log has reached only {top}: another database")
        self.applied = index.watermark
        if index.watermark == 0:
            if index.rebuild_reason:
                log.warning("rebuilding the vector index: %s", index.rebuild_reason)
            # Whatever the log still holds, index every memory once.
            self._write(_op_log_all)
        self._flood_seen = deque([(time.monotonic(), self._log_top(self._reader()))])
        self.index = index
        self.ready.set()

    def _merge_loop(self) -> None:
        """The merger: fresh vectors into the index, oldest first, while there are any; a
        builder started when a space is due for (re)training; and the trained spaces'
        look-ups of their codes re-taken when due (engine/ivf.py)."""
        _lower_priority()
        _one_faiss_thread()
        assert self.index is not None
        while not self._stopping.is_set():
            try:
                if self._builder is None or not self._builder.is_alive():
                    space = self.index.due()
                    if space is not None:
                        self._builder = threading.Thread(
                            target=self._build, args=(space,), name="engram-index-builder",
                            daemon=True)
                        self._builder.start()
                moved = self.index.merge() if self.index.fresh() > MERGE_ABOVE else 0
                self.index.refresh_lookups()
            except Exception as exc:
                self.error = str(exc)
                log.exception("merging fresh vectors failed")
                moved = 0
                self._stopping.wait(1.0)
            if not moved:
                self._merge_wake.wait(0.5)
                self._merge_wake.clear()

    def _build(self, space: str) -> None:
        """Train a space's new inverted file off-lock (engine/vectors.py rebuild)."""
        _lower_priority()
        _one_faiss_thread()
        assert self.index is not None
        try:
            self.index.rebuild(space, self._stopping.is_set)
        except Exception as exc:
            self.error = f"training the vector index failed: {exc}"
            log.exception("training the vector index failed")
            # The old index keeps serving; the merger starts no other builder meanwhile.
            self._stopping.wait(BUILD_RETRY_S)

    def _save(self) -> None:
        assert self.index is not None
        self.index.save(self.applied)
        # what the saved files hold: before the oldest fresh vector, when there is one
        self._write(_op_trim_log, self.index.watermark)

    def _step(self) -> bool:
        """Read the next batch of the log (its texts go to the embedder at once) and apply
        the oldest batch read; False when there was nothing to do. With DEPTH batches out,
        the worker processes embed the next batch while this thread stores and indexes one."""
        batch = self._read() if len(self._ahead) < DEPTH and sum(
            b.chars for b in self._ahead) < AHEAD_CHARS and not self._flood() else None
        if batch is not None:
            self._ahead.append(batch)
        if not self._ahead:
            return False
        if (batch is None or len(self._ahead) >= DEPTH) and self._apply(self._ahead[0]):
            self._ahead.popleft()
        return True

    def _flood(self) -> bool:
        """Whether clients are writing faster than FLOOD_RATE (looked at every
        FLOOD_CHECK_S), and it is not yet time for the flood's next batch."""
        now = time.monotonic()
        seen = self._flood_seen
        if now - seen[-1][0] >= FLOOD_CHECK_S:
            top = self._log_top(self._reader())
            seen.append((now, top))
            while len(seen) > 2 and now - seen[1][0] >= FLOOD_SPAN_S:
                seen.popleft()
            since, top_then = seen[0]
            self._flooded = top - top_then > FLOOD_RATE * (now - since)
        if not self._flooded:
            self._flood_since = None
            return False
        if self._flood_since is None:
            self._flood_since = now
        elif now - self._flood_since >= FLOOD_MAX_S:
            self._flood_since = now
            return False
        return True

    @staticmethod
    def _log_top(conn: sqlite3.Connection) -> int:
        """The log's last sequence number ever given (its rows may all be trimmed)."""
        row = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'").fetchone()
        return int(row[0]) if row else 0

    def _forget_ahead(self) -> None:
        """After a failed step: what was read ahead is read again from `applied`."""
        for batch in self._ahead:
            for _, future in batch.parts:
                if future is not None:
                    future.cancel()
        self._ahead.clear()
        self._embedding.clear()
        self._read_to = self.applied

    def _read(self) -> _Batch | None:
        """The log's next batch after what was read: what to remove, what to add, and the
        texts to embed, already handed to the worker processes when they run."""
        conn = self._reader()
        log_rows = conn.execute(
            "SELECT seq, rid, space FROM vector_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (max(self._read_to, self.applied), LOG_BATCH)).fetchall()
        if not log_rows:
            return None
        spaces = {rid: space for _, rid, space in log_rows}
        rids = list(spaces)
        found: dict[int, tuple[Any, ...]] = {}
        chars, i, step = 0, 0, _READ_CHUNK
        while i < len(rids):
            if chars >= BATCH_CHARS:  # the rest of the log waits for the next batch
                rids = rids[:i]
                done = set(rids)  # the first log row's among them: the cut keeps one
                log_rows = log_rows[:next(j for j, r in enumerate(log_rows)
                                          if r[1] not in done)]
                break
            part = rids[i:i + step]
            marks = ",".join("?" * len(part))
            for row in conn.execute(
                    f"SELECT m.rowid, m.space, m.content, m.embedding, m.suppressed, v.vec "
                    f"FROM memories m LEFT JOIN vectors v ON v.rid = m.rowid "
                    f"WHERE m.rowid IN ({marks})", part):
                found[row[0]] = row
                if row[2] and row[3] is None and row[5] is None:
                    chars += len(row[2])
            i += len(part)
            if chars:  # the next chunk: as many rows as fill the rest at the mean so far
                step = max(1, min(_READ_CHUNK, (BATCH_CHARS - chars) * i // chars))
        import numpy as np

        batch = _Batch(log_rows[-1][0], spaces)
        to_embed: list[tuple[int, str]] = []
        # A space of another dimension than the model's (its memories' own vectors, an
        # upstream client's 768) keeps its text-only memories without a vector.
        held = batch.dims = dict(conn.execute("SELECT space, dim FROM space_dims"))
        # vectors read, by (space, dtype, bytes): one conversion per group, not per vector
        blobs: dict[tuple[str, str, int], tuple[list[int], list[bytes]]] = {}
        for rid in rids:
            row = found.get(rid)
            if row is None or row[4]:
                batch.gone.setdefault(spaces[rid], []).append(rid)
                continue
            _, space, content, own, _, computed = row
            if own or computed:
                blob, dtype = (own, "<f4") if own else (computed, _DTYPE)
                keys, data = blobs.setdefault((space, dtype, len(blob)), ([], []))
                keys.append(rid)
                data.append(blob)
            elif content and self.model is not None and \
                    held.get(space, self.model.dim) == self.model.dim:
                if self._embedding.get(rid) != content:  # else an earlier batch stores it
                    to_embed.append((rid, content))
            else:
                batch.gone.setdefault(space, []).append(rid)
        for (space, dtype, _), (keys, data) in blobs.items():
            vecs = np.frombuffer(b"".join(data), dtype=dtype).reshape(len(keys), -1)
            batch.add.setdefault(space, []).append(
                (np.array(keys, dtype=np.int64), vecs.astype(np.float32)))
        # A backlog starts the worker processes; a few texts at a time are embedded here.
        worker = self._worker if self._worker is not None and (
            self._worker.pids() or len(to_embed) >= WORKER_AT) else None
        self._embedding.update(to_embed)
        batch.chars = sum(len(c) for _, c in to_embed)
        for i in range(0, len(to_embed), EMBED_BATCH):
            part = to_embed[i:i + EMBED_BATCH]
            future = None
            if worker is not None:
                try:
                    # the model reads no further than MAX_CHARS of a text
                    future = worker.submit([c[:MAX_CHARS] for _, c in part])
                except WorkerDied as exc:
                    self.error = str(exc)  # embedded here; the next submit starts another
            batch.parts.append((part, future))
        self._read_to = batch.last
        return batch

    def _apply(self, batch: _Batch) -> bool:
        """Embed (or collect the worker's vectors), store and index a batch read; False
        when stopping cut it short (the log replays it: stored vectors are read back)."""
        assert self.index is not None
        # A full fresh segment: let the merger catch up before adding more.
        while self.index.fresh() >= FRESH_MAX and not self._stopping.is_set():
            self._merge_wake.set()
            self._stopping.wait(0.05)
        before = self.applied
        for space, keys in batch.gone.items():
            self.index.remove(space, keys)
        import numpy as np

        add = batch.add
        # Each part's vectors are stored while the next part is embedded: waiting for the
        # writer's commit took a quarter of the embedder's time at a million memories.
        storing: tuple[Future, Any, Any] | None = None
        for part, future in batch.parts:
            vecs = self._vectors(part, future)
            if vecs is None:
                return False
            rids = np.fromiter((rid for rid, _ in part), dtype=np.int64, count=len(part))
            keep = (vecs != 0).any(axis=1)  # a text with nothing to embed has no vector
            if not keep.all():
                # nor keeps the one its earlier text had (recall takes the index's scores
                # of the memories it holds as they are: Indexer.unsettled)
                emptied: dict[str, list[int]] = {}
                for rid in rids[~keep].tolist():
                    emptied.setdefault(batch.spaces[rid], []).append(rid)
                for space, gone in emptied.items():
                    self.index.remove(space, np.array(gone, dtype=np.int64))
                part = [p for p, k in zip(part, keep, strict=True) if k]
                rids, vecs = rids[keep], vecs[keep]
            if storing is not None:
                self._stored(*storing, batch.spaces, add)
            storing = (self._store(part, vecs), rids, vecs)
            if self._stopping.is_set():
                return False
        if storing is not None:
            self._stored(*storing, batch.spaces, add)
        for space, items in add.items():
            by_dim: dict[int, list[tuple[Any, Any]]] = {}
            for keys, vecs in items:
                by_dim.setdefault(vecs.shape[1], []).append((keys, vecs))
            held = self.index.dim(space)
            if held is not None and batch.dims.get(space, held) != held:
                # The index took another dimension for the space than SQLite records (a
                # store repaired by migration 009, which logged each of its memories): the
                # space's index starts again, at the recorded one.
                log.info("space %r: the vector index held %d-d vectors, the store records "
                         "%d: indexing it again", space, held, batch.dims[space])
                self.index.drop_space(space)
                held = None
            for dim, group in by_dim.items():
                if held is not None and dim != held:
                    continue  # refused on the write path since the space got its dimension
                self.index.add_fresh(space, np.concatenate([k for k, _ in group]),
                                     np.concatenate([v for _, v in group]), since=before)
                held = dim
        for part, _ in batch.parts:
            for rid, content in part:
                if self._embedding.get(rid) is content:  # not a later batch's text
                    del self._embedding[rid]
        self.applied = batch.last
        self._merge_wake.set()
        return True

    def _vectors(self, part: list[tuple[int, str]], future: Future | None) -> Any:
        """The vectors of a part's texts: the worker's answer, or this thread's model when
        there is no worker or it died (the next batch starts another); None: stopping."""
        if future is not None and self._worker is not None:
            try:
                return self._worker.result(future, self._stopping)
            except WorkerDied as exc:
                self.error = str(exc)
                log.warning("%s; embedding its batch in the server", exc)
        return self.model.embed([c for _, c in part])

    def _store(self, part: list[tuple[int, str]], vecs: Any) -> Future:
        """Hand a part's computed vectors to the writer, waiting while its queue is full
        (an import): the vectors are not thrown away."""
        data = vecs.astype(_DTYPE).tobytes()  # one conversion, then a slice per vector
        size = len(data) // len(part) if len(part) else 0
        payload = [(rid, content, data[j * size:(j + 1) * size])
                   for j, (rid, content) in enumerate(part)]
        while True:
            try:
                return self._submit(_op_store_vectors, self.model_name, payload)
            except Overloaded:
                if self._stopping.wait(0.2):
                    raise

    def _stored(self, stored: Future, keys: Any, vecs: Any, spaces: dict[int, str],
                add: dict[str, list[tuple[Any, Any]]]) -> None:
        """Wait for a part's vectors to be stored; those stored go to the index, by space."""
        import numpy as np

        done = stored.result()
        self.embedded += len(done)
        if len(done) < len(keys):  # changed, forgotten or given a vector meanwhile
            kept = np.isin(keys, np.array(done, dtype=np.int64))
            keys, vecs = keys[kept], vecs[kept]
        if not len(keys):
            return
        names = [spaces[int(k)] for k in keys]
        if names.count(names[0]) == len(names):
            add.setdefault(names[0], []).append((keys, vecs))
            return
        for space in set(names):
            mine = np.array([n == space for n in names])
            add.setdefault(space, []).append((keys[mine], vecs[mine]))


_READ_CHUNK = 450  # rowids read at once, under SQLite's parameter limit


class _Batch:
    """A batch of the log, read: keys to remove and vectors to add per space, and the
    texts still to embed, in parts of EMBED_BATCH, each with the worker's future (None:
    embedded in the indexer's thread)."""

    __slots__ = ("add", "chars", "dims", "gone", "last", "parts", "spaces")

    def __init__(self, last: int, spaces: dict[int, str]) -> None:
        self.last = last  # its last log sequence
        self.spaces = spaces
        self.dims: dict[str, int] = {}  # each space's dimension, as SQLite records it
        self.chars = 0  # of the texts it holds to embed
        self.gone: dict[str, list[int]] = {}
        self.add: dict[str, list[tuple[Any, Any]]] = {}  # per space: (keys, vectors) arrays
        self.parts: list[tuple[list[tuple[int, str]], Future | None]] = []


def _one_faiss_thread() -> None:
    from engram_cli.engine import ivf

    ivf.one_thread()  # per thread: with the default each add left an OpenMP thread spinning


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


def _op_log_all(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO vector_log (rid, space) SELECT rowid, space FROM memories")


def _op_trim_log(conn: sqlite3.Connection, upto: int) -> None:
    conn.execute("DELETE FROM vector_log WHERE seq <= ?", (upto,))


# Not INSERT OR REPLACE: a trigger's statements take the conflict policy of the statement
# that fired them, so vectors_dim_ai's INSERT OR IGNORE into space_dims became a REPLACE,
# and a text-only memory's computed 256-d vector took over a space of its memories' own
# 768-d vectors, whose next 768-d memory was then refused. A vector is stored only where
# the space holds its dimension (or none yet): the space's may have been decided since the
# text was read.
_STORE_VECTOR = (
    "INSERT INTO vectors (rid, model, vec) SELECT ?1, ?2, ?3 FROM memories m "
    "WHERE m.rowid = ?4 AND m.content = ?5 AND m.embedding IS NULL AND m.suppressed = 0 "
    "AND NOT EXISTS (SELECT 1 FROM space_dims d WHERE d.space = m.space "
    "AND d.dim != length(?3) / 2) "
    "ON CONFLICT (rid) DO UPDATE SET model = excluded.model, vec = excluded.vec")


def _op_store_vectors(conn: sqlite3.Connection, model: str,
                      rows: list[tuple[int, str, bytes]]) -> list[int]:
    """Store computed vectors of memories whose text is still the one embedded and that
    still have no vector of their own; answers the rowids stored."""
    params = [(rid, model, vec, rid, content) for rid, content, vec in rows]
    # One statement for the part (rowcount: rows inserted, not the trigger's); when some
    # were not stored, row by row again to learn which (storing the same vector twice is
    # harmless).
    if conn.executemany(_STORE_VECTOR, params).rowcount == len(rows):
        return [rid for rid, _, _ in rows]
    return [p[0] for p in params if conn.execute(_STORE_VECTOR, p).rowcount]
