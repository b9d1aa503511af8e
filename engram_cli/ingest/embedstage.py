"""`import --embed`: a stage on the record iterator, between the reader and the sender,
that gives each record without an embedding the vector of its text.

Records come in and go out in the same order (a checkpoint relies on it), in chunks of
CHUNK records: the texts of a chunk that the cache does not hold, each once, go to a
worker process (or, with 0 workers, a thread of this one); while workers embed, this
process keeps reading, and the sender keeps sending what came before. At most
`2 x workers + 1` chunks are out at a time (more while the workers start), so memory
stays flat however large the input.
A text is embedded at most once per run (a repeat waiting on an earlier chunk takes that
chunk's vector) and, with the cache, once ever.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from engram_cli.client.batching import Entry, varint
from engram_cli.client.embedder import (
    EmbeddingCache,
    EmbedSpec,
    embedding_field_head,
    text_key,
)
from engram_cli.compat import usable_cores
from engram_cli.errors import EngramError

if TYPE_CHECKING:
    import numpy as np

CHUNK = 256  # records per chunk: a few batches of the model's own, one IPC round trip
# While the workers start (a second or so: a new interpreter, numpy, the model), reading
# and mapping go on up to this many chunks ahead instead of `2 x workers + 1`: that work is
# then done when the first vectors come back (a few MB held, once per run).
STARTING_CHUNKS = 64

_worker_model: Any = None


# A worker is one core's worth (there is one per core): thread pools of its own (the
# tokenizer's spreads every batch over all cores) would only fight the other workers, the
# importer and a local server for the same cores. Set before the model's libraries load;
# a value the user set is kept.
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1",
              "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _init_worker(model: str) -> None:
    """In each worker process: load the model once; leave Ctrl-C to the importer, which
    stops reading and lets what is in flight finish."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name, value in WORKER_ENV.items():
        os.environ.setdefault(name, value)
    global _worker_model
    from engram_cli.engine.embedding import load_model

    _worker_model = load_model(model)
    _profile_worker()


def _profile_worker() -> None:
    """Debugging only: with ENGRAM_EMBED_PROFILE=DIR, a worker profiles itself (cProfile)
    and writes DIR/worker-<pid>.prof when it exits."""
    folder = os.environ.get("ENGRAM_EMBED_PROFILE")
    if not folder:
        return
    import atexit
    import cProfile

    profiler = cProfile.Profile(time.process_time)
    atexit.register(lambda: profiler.dump_stats(f"{folder}/worker-{os.getpid()}.prof"))
    profiler.enable()


def _embed(texts: list[str]) -> tuple[np.ndarray, float]:
    """In a worker: the model's vectors of `texts`, and the seconds they took."""
    started = time.perf_counter()
    vectors = _worker_model.embed(texts)
    return vectors, time.perf_counter() - started


def default_workers() -> int:
    """One embedding worker per usable core."""
    return usable_cores()


class _Chunk:
    __slots__ = ("borrowed", "entries", "future", "index", "keys", "known", "plain", "texts",
                 "vectors")

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.keys: list[bytes | None] = []  # per entry: its text's key, None: no text
        self.known: dict[bytes, np.ndarray] = {}  # cache hits
        self.texts: list[str] = []  # sent to the model, each once
        self.index: dict[bytes, int] = {}  # key -> its row in `vectors`, for each of `texts`
        self.borrowed: dict[bytes, _Chunk] = {}  # keys an earlier chunk out is embedding
        # Each text's row is the next row of `vectors` (no cache hit, nothing borrowed, no
        # text twice): the chunk's vectors go out as they came, no row looked up.
        self.plain = False
        self.future: Future | None = None
        self.vectors: np.ndarray | None = None  # what the model made, once back


class EmbedStage:
    """Embeds the records it is handed (`run`), in order; counts what it did."""

    def __init__(self, spec: EmbedSpec, workers: int = 0,
                 cache: EmbeddingCache | None = None, chunk: int = CHUNK) -> None:
        self.spec = spec
        self.workers = workers
        self.cache = cache
        self.chunk = chunk
        self.embedded = 0  # texts the model embedded
        self.cache_hits = 0  # texts the cache answered
        self.model_seconds = 0.0  # summed over the workers
        self._executor: Executor | None = None
        self._out: dict[bytes, _Chunk] = {}  # key -> the chunk out that embeds it
        self._held: deque[_Chunk] = deque()  # chunks out, in input order
        self._part: list[Entry] = []  # the chunk being filled

    def start(self) -> None:
        """Start the workers (at the first text the cache does not hold: an import the
        cache answers whole loads no model)."""
        if self._executor is not None:
            return
        if self.workers > 0:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a fork would copy gRPC's threads and locks in whatever state.
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(self.spec.model,))
            for _ in range(self.workers):
                self._executor.submit(len, "")  # start them now, not at the first chunk
        else:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix="engram-embed",
                                                initializer=_init_worker_thread,
                                                initargs=(self.spec.model,))

    def run(self, entries: Iterable[Entry]) -> Iterator[Entry]:
        steady = 2 * max(1, self.workers) + 1
        most = STARTING_CHUNKS
        out = self._held
        for entry in entries:
            self._part.append(entry)
            if len(self._part) >= self.chunk:
                out.append(self._submit(self._part))
                self._part = []
                while out and (len(out) >= most or _ready(out[0])):
                    if out[0].future is not None:
                        most = steady  # a chunk came back: the workers are up
                    yield from self._finish(out[0])
                    out.popleft()
        if self._part:
            out.append(self._submit(self._part))
            self._part = []
        while out:
            yield from self._finish(out[0])
            out.popleft()

    def unsettled(self) -> dict[int, Entry]:
        """Per source, the first record held here (read, not yet all handed on): a
        checkpoint must start no later than it."""
        firsts: dict[int, Entry] = {}
        for entries in [*(c.entries for c in self._held), self._part]:
            for e in entries:
                firsts.setdefault(e.source, e)
        return firsts

    def _submit(self, entries: list[Entry]) -> _Chunk:
        chunk = _Chunk(entries)
        model = self.spec.model
        keys = chunk.keys
        wanted: dict[bytes, str] = {}
        for e in entries:
            text = e.text
            if text is None:
                keys.append(None)
            else:
                key = text_key(model, text)
                keys.append(key)
                wanted[key] = text  # a repeat keeps the first's place
        with_text = len(keys) - keys.count(None)
        out = self._out
        if out:
            for key in [k for k in wanted if k in out]:
                chunk.borrowed[key] = out[key]
                del wanted[key]
        if self.cache is not None and wanted:
            chunk.known = self.cache.get_many(model, self.spec.native, list(wanted))
            if chunk.known:
                known = chunk.known
                for key in known:
                    del wanted[key]
                self.cache_hits += sum(1 for k in keys if k is not None and k in known)
        chunk.plain = len(wanted) == with_text
        if wanted:
            chunk.texts = list(wanted.values())
            chunk.index = {key: i for i, key in enumerate(wanted)}
            self.start()
            assert self._executor is not None
            chunk.future = self._executor.submit(_embed, chunk.texts)
            for key in wanted:
                out[key] = chunk
        return chunk

    def _finish(self, chunk: _Chunk) -> Iterator[Entry]:
        import numpy as np

        if chunk.future is not None:
            try:
                vectors, seconds = chunk.future.result()
            except EngramError:
                raise
            except Exception as exc:
                raise EngramError(f"embedding failed in a worker: {exc}",
                                  "run again with --embed-workers 0 to embed in this "
                                  "process") from None
            chunk.future = None
            self.model_seconds += seconds
            self.embedded += len(chunk.texts)
            chunk.vectors = vectors
            out = self._out
            for key in chunk.index:
                if out.get(key) is chunk:
                    del out[key]
            if self.cache is not None:
                self.cache.put_later(list(chunk.index), vectors)
        rows: Any = None
        if chunk.plain:
            rows = chunk.vectors
        elif len(chunk.keys) > chunk.keys.count(None):
            rows = np.stack([_vector_of(chunk, k) for k in chunk.keys if k is not None])
        # One conversion to little-endian float32 bytes for the chunk, then a view per
        # record, framed with the packed `repeated float embedding` field as it is sent.
        data = (memoryview(self.spec.fit(rows).astype("<f4", copy=False).tobytes())
                if rows is not None else memoryview(b""))
        size = 4 * self.spec.dim
        head = embedding_field_head(self.spec.dim)
        extra = len(head) + size
        at = 0
        join = b"".join
        for entry, has in zip(chunk.entries, chunk.keys, strict=True):
            if has is not None:
                # A record with a text to embed comes bare (not framed): framed here once,
                # with its vector.
                memory = entry.framed
                entry.framed = join((b"\x12", varint(len(memory) + extra), memory, head,
                                     data[at:at + size]))
                entry.text = None
                at += size
            yield entry
        # A later chunk may still read this one's vectors, never what it borrowed: a chain
        # of chunks each holding the one before would outgrow the window.
        chunk.borrowed, chunk.known = {}, {}

    def close(self, wait: bool = True) -> None:
        """Stop the workers: at once (`wait` False) after an error or an interruption."""
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None
        if self.cache is not None:
            self.cache.close()


def _init_worker_thread(model: str) -> None:
    global _worker_model
    from engram_cli.engine.embedding import load_model

    _worker_model = load_model(model)


def _vector_of(chunk: _Chunk, key: bytes) -> np.ndarray:
    """The model's vector of the text `key` in `chunk`: from the cache, from the chunk's
    own vectors, or from the earlier chunk that was embedding it."""
    found = chunk.known.get(key)
    if found is not None:
        return found
    source = chunk if key in chunk.index else chunk.borrowed[key]
    assert source.vectors is not None
    return source.vectors[source.index[key]]  # type: ignore[no-any-return]


def _ready(chunk: _Chunk) -> bool:
    return chunk.future is None or chunk.future.done()


def with_field(framed: bytes, head: bytes, value: bytes) -> bytes:
    """A framed Memory (see batching.frame) with the field `head` + `value` appended to the
    Memory."""
    size, start = framed[1], 2
    if size & 0x80 and not framed[2] & 0x80:  # most: 128 bytes to 16 KB, 2 length bytes
        size, start = (size & 0x7F) | framed[2] << 7, 3
    elif size & 0x80:
        size, shift = size & 0x7F, 7
        while True:
            byte = framed[start]
            start += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    assert framed[0] == 0x12 and len(framed) - start == size, "not a framed Memory"
    return b"".join((b"\x12", varint(size + len(head) + len(value)),
                     memoryview(framed)[start:], head, value))
