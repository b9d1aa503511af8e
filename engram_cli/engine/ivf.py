"""faiss indexes, as the vector index (engine/vectors.py) uses them: the exact store of a
small space, the coded store of a larger one, and the few operations on them that faiss's
Python API leaves to the caller. Not thread-safe: engine/vectors.py holds its lock around
every call that reads an index another thread may change.

A coded store holds every vector twice. A 4-bit product-quantized code (32 bytes at 256-d)
is what a search scans, all of them, with faiss's fast-scan kernels (SIMD lookups of 16
entries; ~4 ms a million codes on one core here). An 8-bit code (one byte a dimension)
re-scores the scan's best `candidates` for the answer. At a million real text embeddings
this finds 0.98 of the exact ten nearest at 256 candidates, where an inverted file (IVF-SQ8)
found 0.92 while scanning 8-bit codes of an eighth of the space (~8 ms): neighbours of
these texts are spread over many k-means lists, so any list-based search must open a
large share of them (benchmarks/vector_index_bench.py).

Both halves are faiss IndexIVF of one list (the fast-scan half twice: whole, and dealt to
HALVES probes that a search of a large store scans on two threads when one is free). The
8-bit half keeps a hash-table direct map (key -> offset), so a key is removed or
reconstructed in O(1), and it is the truth of what the store holds. Nothing is ever
removed from the fast-scan half (faiss cannot keep a direct map over its packed blocks,
and a removal followed by an add of the same key lost the new code there): a removed key's
code stays as a stale entry, filtered out of every scan (`dead`), and a replaced key's old
code stays beside its new one, re-scored with the 8-bit code of its current vector. Stale
entries are counted (`stale()`), and the vector index retrains a store whose stale entries
pass an eighth of it, which writes it anew. In the 8-bit half an id added twice would be
held twice, so writers remove first. Vectors are unit length and compared by inner
product: cosine.

Re-scoring reads each candidate's 8-bit code where it lies in the list, found through a
look-up the vector index takes now and then off the search path (`lookup_keys`, then
`make_lookup` and `set_lookup`: a table by key, or the keys sorted with their positions).
Asking faiss for them instead (`reconstruct_batch`: a hash-table look-up and a decode a
key) cost ~0.6 ms of a 2.7 ms search at a million vectors and 256 candidates, most of it
cache misses. A removal moves the list's last code into the gap, so a look-up goes stale:
each position it gives is checked against the list's own key there, and a key it misses
or places wrongly (added or moved since) is reconstructed by faiss as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

# faiss's type stubs lack DirectMap and the search parameters' keyword constructor.
faiss: Any = _faiss


def one_thread() -> None:
    """faiss on one OpenMP thread in the calling thread (the setting is per thread). By
    default it starts a thread per core for each search and add: a server searches for one
    cue per RPC thread, and OpenMP threads spinning on a busy 2-core machine cost
    milliseconds a call. The other core is left to the RPC threads and the embedder."""
    faiss.omp_set_num_threads(1)


one_thread()

# Vectors a coded store is trained on at most: 16 centroids per sub-quantizer learn as
# well from 65,536 as from a million, in ~1 s.
TRAIN_SAMPLE = 65_536
# 4-bit sub-quantizers at most (a divisor of the dimension): 64 for 256-d, 4 dimensions
# each. 128 found 0.98 of the ten nearest from 64 candidates but scanned 1.6x longer.
PQ_M = 64
# ...unless that leaves a sub-quantizer more than this many dimensions: then as many as it
# takes (128 at 768-d, 256 at 1,536-d), and a scan reads more bytes. 16 codes cannot stand
# for 12 dimensions: at 768-d (upstream's size) 64 sub-quantizers found 0.914 of the ten
# nearest at a million vectors, 128 found 0.988 in 1.9x the time, 192 0.996 in 2.6x
# (benchmarks/coded_dims_bench.py).
SUB_DIMS = 6
# Fewer sub-quantizers than PQ_M (a store of fewer than 64 dimensions) tell fewer vectors
# apart, 16 cells each: such a store re-scores PQ_M // M times the candidates
# (`scan_candidates`). At a million vectors of 8 dimensions a search found 0.774 of the ten
# nearest from 256 candidates and 0.976 from 2,048 (1.9 ms); at 16, 0.978 and 0.997 from
# 1,024. Below CODED_MIN_DIM dimensions no number of candidates is enough (4-d clustered
# vectors: 0.107 from 256, 0.397 from 4,096): a space stays an exact store however large
# (an exact search of a million 4-d vectors takes ~8 ms here).
CODED_MIN_DIM = 8
FAST_SCAN_BLOCK = 32  # codes per SIMD block (faiss's bbs)
# The 8-bit codes a search re-scores are made float32 this many bytes at a time. Whole,
# 256 candidates at 256-d are a 256 KiB block, over the server's malloc mmap threshold
# (128 KiB, server/memory.py): mapped and unmapped each search, 64 page faults. In
# slices a hybrid recall at a million took ~12 page faults instead of ~110: p50 0.98x,
# p99 0.98x in one process, p50 0.99x, p99 0.95x over gRPC.
RESCORE_SLICE_BYTES = 64 * 1024
# A coded store keeps its fast-scan codes twice: in one probe, and dealt to HALVES probes
# (a batch's vectors in turn, the emptiest first). A search of a store of at least
# SPLIT_BYTES of codes, when its caller allows it (engine/vectors.py: no other search under
# way; engine/recall.py: no other recall, nor two at once for a second) and `_Beside`'s
# thread is free, scans the halves side by side, each for SPLIT_SHARE of the candidates
# (0.5: as many re-scored as from one probe; at a million, recall@10 0.978 against 0.979);
# any other search scans the whole probe, one call into faiss, as before. A scan reads
# every code, and past the caches this machine's memory sets its pace, which two cores
# reading at once nearly double: at a million vectors in one process, queries alternated,
# p50 0.60x (hot) and 0.66x (after a 300 MB read) of one thread's, 2.34 against 3.87 ms,
# p99 0.65x; on another day 1.41 against 1.90 ms (0.74x), at 600,000 0.79x, at 400,000
# (12.8 MB) 0.95x, at 200,000 0.92x but with twice the p99: handing half a small scan over
# costs what it saves. Only halves, scanned one after the other on a busy server, cost more
# than one probe: 1.03x in one process, and with four clients recalling at once 0.94-0.95x
# the recalls a second; hence the whole probe too (32 bytes a vector more at 256-d). The
# halves go to whichever thread is free first (`Shared`): also a hybrid recall's own
# thread, once its full-text seeds are read, while its search runs ahead (engine/ahead.py).
# Halves rather than quarters: at a million in one process, hybrid p50 0.80x and 0.78x the
# search ahead alone with halves and quarters, then 0.80x and 0.82x (p99 0.93x, 0.99x);
# eighths 0.81x, p99 0.96x; embedding cues 0.65-0.68x with each.
# Not taken, measured: a third copy of the fast-scan codes in k-means lists, of which a
# hybrid recall's search would read the nearest sixteenth (its proposals rarely make a
# hybrid answer at a million; in one process hybrid p50 0.65x, p99 0.75x, the answers the
# same for 500 held-out cues). Finding each vector's list and encoding it a third time
# cost 2.0-2.6 ms for 256 vectors beside 2.0 for the rest of an add: the catch-up fell to
# 0.83-0.86x the model's raw rate (1.03-1.06x without), and a retrain could not replay its
# journal while the merger added at the same cost. One index of lists standing for the
# whole probe and its halves too adds 256 vectors in 1.7-2.3 ms at 512 lists, 3.0 at
# 1,024, against 1.4-2.0 for both. Its scan of every list measured 0.83-0.94x the one
# list's p50 in benchmarks/list_layout_bench.py (three runs at a million; half of the
# lists on each of two threads 0.53-0.63x, the one list's halves 0.60-0.66x; the nearest
# 32 of 512 lists 0.09-0.14x), but 1.11-1.19x in two other comparisons in one process (a
# store's own 1,024 lists, and lists of 512 and 1,024 built like a server's, each beside a
# one-list copy of the same codes), and vector-mode recall over gRPC 1.11-1.26x at p50. In
# one process, the same million's stored vectors, the order drawn at random cue by cue,
# every list took 1.01x / 1.04x / 1.04-1.10x / 1.11-1.19x the one list's p50 at 128 / 256 / 512
# / 1,024 lists: about 0.3 microseconds more a list. Not taken.
HALVES = 2
SPLIT_SHARE = 0.5
SPLIT_BYTES = 16 << 20
# Codes added or removed since a store's look-up was taken before it is taken again (or a
# sixteenth of the store, if more): each re-take reads every key (~30 ms a million).
LOOKUP_SLACK = 4096
# A store's look-up is a table by key when its keys span at most this many times their
# number (8 bytes a key of the span: at most 32 a vector, beside the ~330 it holds).
DENSE_SPAN = 4


class Coded:
    """A trained space: the fast-scan codes that propose and the 8-bit codes that decide."""

    def __init__(self, probes: list[Any], codes: Any) -> None:
        # IndexIVFPQFastScan each, one list, no direct map, only appended to: the whole,
        # then HALVES halves (none in a store an earlier version wrote: `outdated`)
        self.probes = probes
        self.codes = codes  # IndexIVFScalarQuantizer 8-bit, one list, hash-table map
        self.d = int(codes.d)
        # Keys with a code in the probes and none in `codes`: removed, not added again.
        self.dead: set[int] = set()
        if self.stale():
            self.dead.update(np.setdiff1d(_ids(probes[0]), _ids(codes)).tolist())
        # QT_8bit_uniform decodes byte c of any dimension as vmin + vdiff * (c + 0.5) / 255.
        self._vmin, self._vdiff = (float(v) for v in faiss.vector_to_array(codes.sq.trained)[:2])
        # Where each key's code lay in the 8-bit list when taken: (lowest key, position by
        # key - lowest) or (keys sorted, their positions); None before the first. Replaced
        # whole, never changed in place.
        self._lookup: tuple[Any, Any] | None = None
        self._changed = 0  # codes added or removed since the look-up was taken

    @property
    def ntotal(self) -> int:
        return int(self.codes.ntotal)

    @property
    def scanned(self) -> int:
        """Fast-scan codes a search reads: the whole probe's."""
        return int(self.probes[0].ntotal)

    def stale(self) -> int:
        """Probe entries of removed or replaced vectors."""
        return self.scanned - int(self.codes.ntotal)

    def outdated(self) -> bool:
        """Whether the fast-scan codes are not those `train` makes now (an earlier
        version's: 64 sub-quantizers whatever the dimension, or no halves)."""
        return len(self.probes) != 1 + HALVES or any(int(probe.M) != pq_m(self.d)
                                                     for probe in self.probes)

    def add_with_ids(self, vecs: Any, keys: Any) -> None:
        """Add keys absent from the store (remove_ids first to replace)."""
        self.codes.add_with_ids(vecs, keys)
        self.probes[0].add_with_ids(vecs, keys)
        emptiest = sorted(self.probes[1:], key=lambda probe: int(probe.ntotal))
        for turn, probe in enumerate(emptiest):
            part = slice(turn, None, len(emptiest))
            if len(keys[part]):
                probe.add_with_ids(np.ascontiguousarray(vecs[part]),
                                   np.ascontiguousarray(keys[part]))
        self._changed += len(keys)
        if self.dead:
            self.dead.difference_update(keys.tolist())

    def remove_ids(self, keys: Any) -> int:
        gone = int(self.codes.remove_ids(keys))
        self._changed += gone
        if gone:
            # When only some were held, the others join `dead` too: filtering a key the
            # probe lacks costs nothing, and open() recomputes the set exactly.
            self.dead.update(keys.tolist())
        return gone

    def reconstruct_batch(self, keys: Any) -> Any:
        return self.codes.reconstruct_batch(keys)

    def scan(self, q: Any, n: int, split: bool = True, shared: Shared | None = None) -> Any:
        """The keys of about the `n` best fast-scan codes for the 1 x dim `q` (-1 where the
        store holds fewer). Of the whole probe, unless the store holds SPLIT_BYTES of codes
        or more and either `split` and `_BESIDE`'s thread is free, or `shared`: then of the
        halves (SPLIT_SHARE of `n` each), which this thread and that one, or whichever
        thread helps `shared`, take up one at a time until none is left."""
        whole, *halves = self.probes
        if len(halves) > 1 and self.scanned * int(whole.code_size) >= SPLIT_BYTES \
                and (split or shared is not None):
            beside = shared is None  # a helper of our own, if it is free
            shared = Shared() if shared is None else shared
            shared.offer(halves, q, max(1, int(np.ceil(n * SPLIT_SHARE))))
            if beside and _BESIDE.submit(shared.help) is None:
                return _scan(whole, q, n)
            return shared.finish()
        return _scan(whole, q, n)

    def lookup_due(self) -> bool:
        return self._lookup is None or self._changed > max(LOOKUP_SLACK, self.ntotal // 16)

    def lookup_keys(self) -> tuple[Any, int]:
        """A copy of the keys in list order, and the changes counted so far: take it with
        no writer running, make the look-up of it with none held (`make_lookup`)."""
        return _ids(self.codes), self._changed

    def set_lookup(self, lookup: tuple[Any, Any], changed: int) -> None:
        """Use `make_lookup(keys)` of the `lookup_keys()` that counted `changed` (with no
        writer running: the count is the writers')."""
        self._lookup = lookup
        self._changed -= changed  # what changed since the copy still counts

    def install_lookup(self, keys: Any, changed: int) -> None:
        """make_lookup and set_lookup at once, where no other thread writes."""
        self.set_lookup(make_lookup(keys), changed)

    def lookup_bytes(self) -> int:
        lookup = self._lookup
        return 0 if lookup is None else sum(getattr(a, "nbytes", 0) for a in lookup)

    def rescore(self, keys: Any, q: Any) -> Any:
        """The inner products of the unit `q` with the 8-bit codes of these keys (all held
        by the store)."""
        sims, ok = self._looked_up(keys, q)
        if not ok.all():
            sims[~ok] = self.codes.reconstruct_batch(keys[~ok]) @ q
        return sims

    def _looked_up(self, keys: Any, q: Any) -> tuple[Any, Any]:
        """(inner products, found): the keys the look-up places, scored from their codes
        where they lie; the others (added or moved since it was taken, or not held) are
        left to the caller."""
        sims = np.empty(len(keys), dtype=np.float32)
        ok = np.zeros(len(keys), dtype=bool)
        n, lookup = self.ntotal, self._lookup
        if lookup is not None and n and len(lookup[1]):
            if isinstance(lookup[0], int):
                low, table = lookup
                at = keys - low
                ok = (at >= 0) & (at < len(table))
                pos = table[np.where(ok, at, 0)]
                ok &= (pos >= 0) & (pos < n)
            else:
                held, where = lookup
                at = np.minimum(np.searchsorted(held, keys), len(held) - 1)
                pos = where[at]
                ok = (held[at] == keys) & (pos < n)
            ids = faiss.rev_swig_ptr(self.codes.invlists.get_ids(0), n)
            ok[ok] = ids[pos[ok]] == keys[ok]  # not moved since the look-up was taken
            if ok.any():
                d = self.d
                rows = faiss.rev_swig_ptr(self.codes.invlists.get_codes(0), n * d
                                          ).reshape(n, d)[pos[ok]]
                total = float(q.sum())
                dots = _dots(rows, q)
                sims[ok] = self._vmin * total + self._vdiff / 255.0 * (dots + 0.5 * total)
        return sims, ok


def _scan(probe: Any, q: Any, n: int) -> Any:
    return probe.search(q, n)[1][0]


class Shared:
    """One scan of a store's halves, taken up by more than one thread: each takes the next
    half not yet taken until none is left. The thread that offers them (a search, holding
    the vector index's read lock) waits in `finish` until every half taken is scanned, so
    a helper reads the store only under that lock, and one that comes later finds none
    left. A hybrid recall's search, started ahead on another thread while the recall's
    own reads the full-text seeds, offers its halves here; the recall's thread then scans
    what is left of them instead of waiting for it (engine/ahead.py)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._todo: list[Any] = []
        self._q: Any = None
        self._n = 0
        self._busy = 0
        self._found: list[Any] = []
        self._error: Exception | None = None
        self._open = True  # until the search is done with it (offered or not)

    def offer(self, parts: list[Any], q: Any, n: int) -> None:
        """Scan each of `parts` for the `n` best codes for `q` (once)."""
        with self._cond:
            self._todo, self._q, self._n = list(parts), q, n
            self._cond.notify_all()

    def help(self) -> None:
        """Scan parts not yet taken until none is left, from any thread: once they are
        offered, or at once when the search is done without (a failure is raised by
        `finish`)."""
        one_thread()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._q is not None or not self._open)
                if not self._todo:
                    return
                part = self._todo.pop()
                self._busy += 1
            found, error = None, None
            try:
                found = _scan(part, self._q, self._n)
            except Exception as exc:  # raised by `finish`, in the thread that offered
                error = exc
            with self._cond:
                if error is not None:
                    self._error = error
                else:
                    self._found.append(found)
                self._busy -= 1
                self._cond.notify_all()

    def finish(self) -> Any:
        """The keys every part's scan found, once each is scanned (this thread helps)."""
        self.help()
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)
            self.close()
            if self._error is not None:
                raise RuntimeError("a part of the scan failed") from self._error
            return np.concatenate(self._found)

    def close(self) -> None:
        """Nothing more will be offered: helpers waiting return."""
        with self._cond:
            self._open = False
            self._cond.notify_all()


class _Beside:
    """One thread that scans halves beside the caller, when it is free (else the caller
    scans the whole probe itself, as before). The answers differ a little
    (half the candidates from each half are not quite the whole's best: recall@10 0.978
    against 0.979 at a million)."""

    def __init__(self) -> None:
        self._free = threading.Semaphore(1)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future | None:
        """`fn(*args)` under way on the thread, or None when it is busy."""
        if not self._free.acquire(blocking=False):
            return None
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, "engram-scan-beside")
                return self._pool.submit(self._run, fn, *args)
        except BaseException:
            self._free.release()
            raise

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)  # Shared.help, which sets faiss's threads
        finally:
            self._free.release()


_BESIDE = _Beside()


def _dots(rows: Any, q: Any) -> Any:
    """`rows @ q` for 8-bit codes `rows`, RESCORE_SLICE_BYTES of them as float32 at a time."""
    step = max(1, RESCORE_SLICE_BYTES // (4 * rows.shape[1]))
    dots = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), step):
        np.matmul(rows[start:start + step], q, out=dots[start:start + step])
    return dots


def make_lookup(keys: Any) -> tuple[Any, Any]:
    """Where each of these keys lies, by its position in `keys`. Keys in a range at most
    DENSE_SPAN times their number (rowids of a space written mostly on its own) get a table
    by key, one read a key; others the keys sorted, with their positions, a binary search
    a key (~10 cache misses each)."""
    if len(keys) and int(keys.max()) - int(keys.min()) < DENSE_SPAN * len(keys):
        low = int(keys.min())
        table = np.full(int(keys.max()) - low + 1, -1, dtype=np.int64)
        table[keys - low] = np.arange(len(keys), dtype=np.int64)
        return low, table
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _ids(index: Any) -> Any:
    """The keys in an index of one list, in list order."""
    size = index.invlists.list_size(0)
    if not size:
        return np.zeros(0, dtype=np.int64)
    return faiss.rev_swig_ptr(index.invlists.get_ids(0), size).copy()


def _one_list(dim: int) -> Any:
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(np.zeros((1, dim), dtype=np.float32))
    return quantizer


def exact_store(dim: int) -> Any:
    """An untrained space: one inverted list of float32 vectors, every search an exact
    scan of all of them."""
    index = faiss.IndexIVFFlat(_one_list(dim), dim, 1, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def pq_m(dim: int) -> int:
    """Sub-quantizers of a `dim`-dimensional store's fast-scan codes: a divisor of `dim`,
    the largest up to PQ_M, or the fewest that cover at most SUB_DIMS dimensions each when
    that is more (a prime dimension gets one a dimension, not one for all)."""
    most = max(m for m in range(1, min(PQ_M, dim) + 1) if dim % m == 0)
    fine = min(m for m in range(1, dim + 1) if dim % m == 0 and dim <= SUB_DIMS * m)
    return max(most, fine)


def train(dim: int, sample: Any) -> Coded:
    """An empty coded store trained on `sample`. Codes are of the vectors themselves (no
    residuals: there is one list), and one 8-bit range serves every dimension
    (QT_8bit_uniform scans ~25% faster than a range per dimension and re-scores as well)."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    probe = faiss.IndexIVFPQFastScan(_one_list(dim), dim, 1, pq_m(dim), 4,
                                     faiss.METRIC_INNER_PRODUCT, FAST_SCAN_BLOCK)
    probe.by_residual = False
    probe.train(sample)
    # the halves trained alike: copies of the empty trained whole
    probes = [probe] + [faiss.deserialize_index(faiss.serialize_index(probe))
                        for _ in range(HALVES)]
    codes = faiss.IndexIVFScalarQuantizer(_one_list(dim), dim, 1,
                                          faiss.ScalarQuantizer.QT_8bit_uniform,
                                          faiss.METRIC_INNER_PRODUCT, False)
    codes.train(sample)
    codes.set_direct_map_type(faiss.DirectMap.Hashtable)
    return Coded(probes, codes)


def sample_size(n: int) -> int:
    return min(n, TRAIN_SAMPLE)


def read(path: Path, coded: bool) -> Any:
    """The index in a file `write` wrote (a coded store when `coded`: its whole probe, its
    HALVES halves if it has them, then its 8-bit codes); ValueError when it is not one of
    ours. (read_index keeps the direct map; it is restored if lacking.)"""
    try:
        reader = faiss.FileIOReader(str(path))
        parts = [faiss.read_index(reader)]
    except RuntimeError as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    try:
        while coded and isinstance(parts[-1], faiss.IndexIVFPQFastScan) \
                and len(parts) <= 1 + HALVES:
            parts.append(faiss.read_index(reader))
    except RuntimeError as exc:  # the end of the file where the 8-bit codes belong
        raise ValueError(f"{path.name} is not a coded vector store ({exc})") from None
    finally:
        del reader
    for index in parts:
        if not isinstance(index, faiss.IndexIVF) or index.metric_type != \
                faiss.METRIC_INNER_PRODUCT or index.nlist != 1:
            raise ValueError(f"{path.name} is not one of this version's vector stores")
    if coded:
        *probes, codes = parts
        if len(probes) not in (1, 1 + HALVES) \
                or any(not isinstance(probe, faiss.IndexIVFPQFastScan) or probe.d != codes.d
                       for probe in probes) \
                or not isinstance(codes, faiss.IndexIVFScalarQuantizer) \
                or codes.sq.qtype != faiss.ScalarQuantizer.QT_8bit_uniform \
                or probes[0].ntotal < codes.ntotal \
                or (len(probes) > 1
                    and sum(int(p.ntotal) for p in probes[1:]) != probes[0].ntotal):
            raise ValueError(f"{path.name} is not a coded vector store")
        index = Coded(probes, codes)
    else:
        index = codes = parts[0]
    if codes.direct_map.type != faiss.DirectMap.Hashtable:
        codes.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def write(index: Any, put: Callable[[bytes], Any]) -> None:
    """Serialize `index` through `put`, chunk by chunk (`read` reads it back)."""
    writer = faiss.PyCallbackIOWriter(put)
    for part in (*index.probes, index.codes) if isinstance(index, Coded) else (index,):
        faiss.write_index(part, writer)
    del writer  # flushes its last chunk


def all_ids(index: Any) -> Any:
    """Every key the index holds."""
    return _ids(index.codes if isinstance(index, Coded) else index)


def replay(index: Any, ops: list[tuple[Any, Any]]) -> None:
    """Apply journaled changes in order: (keys, vectors) replaces, (keys, None) removes."""
    for keys, vecs in ops:
        index.remove_ids(keys)
        if vecs is not None:
            index.add_with_ids(vecs, keys)


def scan_candidates(index: Coded, candidates: int) -> int:
    """The fast-scan candidates a search of this store re-scores for `candidates`: as many,
    or PQ_M // M times as many for a store of M < PQ_M sub-quantizers."""
    return candidates * max(1, PQ_M // int(index.probes[0].M))


def search(index: Any, q: Any, k: int, candidates: int, split: bool = True,
           shared: Shared | None = None) -> list[tuple[int, float]]:
    """The `k` best (key, inner product) of the unit 1 x dim `q`: of all vectors (the exact
    store), or of the coded store's `candidates` best fast-scan codes re-scored with their
    8-bit codes (more of them for a store of fewer than PQ_M sub-quantizers). `split`: its
    halves may be scanned on two threads; `shared`: with whichever thread helps it
    (`Coded.scan`)."""
    one_thread()  # an RPC thread's first search, or a search-ahead thread's
    if not isinstance(index, Coded):
        sims, keys = index.search(q, k)
        return [(int(key), float(sim)) for key, sim in zip(keys[0], sims[0], strict=True)
                if key >= 0]
    candidates = scan_candidates(index, candidates)
    # Stale entries take places among the scan's best: ask for that many more, about.
    extra = candidates * index.stale() // max(1, index.scanned)
    found = index.scan(q, max(k, candidates + extra), split, shared)
    found = found[found >= 0]
    if index.dead:
        found = found[[key not in index.dead for key in found.tolist()]]
    found = np.unique(found)  # a replaced key's old and new codes
    if not len(found):
        return []
    sims = index.rescore(found, q[0])
    best = np.argsort(-sims, kind="stable")[:k]
    return [(int(key), float(sim)) for key, sim in zip(found[best], sims[best], strict=True)]


def held_scores(index: Any, keys: Any, q: Any) -> dict[int, float]:
    """{key: inner product with the unit `q`} of those of `keys` (int64) the store holds,
    of their 8-bit codes in a coded store: what a search would have scored them."""
    if isinstance(index, Coded):
        sims, ok = index._looked_up(keys, q)
        out = dict(zip(keys[ok].tolist(), sims[ok].tolist(), strict=True))
        rest, store = keys[~ok].tolist(), index.codes
    else:
        out, rest, store = {}, keys.tolist(), index
    for key in rest:  # a few: added since the look-up was taken, or not held at all
        try:
            out[key] = float(store.reconstruct(key) @ q)
        except RuntimeError:  # faiss: not in the store's map
            continue
    return out


def nbytes(index: Any) -> int:
    """RAM the index holds: codes and ids (twice in a coded store), ~32 bytes a key in the
    hash table, and a coded store's look-up."""
    if isinstance(index, Coded):
        return (sum(int(probe.ntotal) * (int(probe.code_size) + 8) for probe in index.probes)
                + index.ntotal * (int(index.codes.code_size) + 40) + 64 * len(index.dead)
                + index.lookup_bytes())
    return int(index.ntotal) * (int(index.code_size) + 8 + 32)
