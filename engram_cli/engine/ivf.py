"""faiss indexes, as the vector index (engine/vectors.py) uses them: the exact store of a
small space, the coded store of a larger one, and the few operations on them that faiss's
Python API leaves to the caller. Not thread-safe: engine/vectors.py holds its lock around
every call that reads an index another thread may change.

A coded store holds every vector twice. A 4-bit product-quantized code (32 bytes at 256-d)
is what a search scans, all of them, with faiss's fast-scan kernels (SIMD lookups of 16
entries; ~2-4 ms a million codes on one core here). An 8-bit code (one byte a dimension)
re-scores the scan's best `candidates` for the answer. At a million real text embeddings
this finds 0.98 of the exact ten nearest at 256 candidates, where an inverted file (IVF-SQ8)
found 0.92 while scanning 8-bit codes of an eighth of the space (~8 ms): neighbours of
these texts are spread over many k-means lists, so a search that must find them opens
every list (benchmarks/vector_index_bench.py).

The 4-bit codes lie in k-means lists (a faiss IndexIVFPQFastScan of codes of the vectors
themselves, not of residuals): a search scans every list, or half of them on each of two
threads, or (a hybrid recall's, engine/recall.py) only the lists nearest the cue. The
8-bit codes are a faiss IndexIVF of one list with a hash-table direct map (key -> offset),
so a key is removed or reconstructed in O(1), and they are the truth of what the store
holds. Nothing is ever removed from the lists (faiss cannot keep a direct map over their
packed blocks, and a removal followed by an add of the same key lost the new code there):
a removed key's code stays as a stale entry, filtered out of every scan (`dead`), and a
replaced key's old code stays beside its new one, re-scored with the 8-bit code of its
current vector. Stale entries are counted (`stale()`), and the vector index retrains a
store whose stale entries pass an eighth of it, which writes it anew. In the 8-bit codes
an id added twice would be held twice, so writers remove first. Vectors are unit length
and compared by inner product: cosine.

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

import math
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
# A search of a store of at least SPLIT_BYTES of codes, when its caller allows it
# (engine/vectors.py: no other search under way; engine/recall.py: no other recall, nor two
# at once for a second) and `_Beside`'s thread is free, scans the lists in HALVES halves
# (the lists dealt in turn) side by side, each for SPLIT_SHARE of the candidates; any other
# search scans every list, one call into faiss. A scan reads every code, and past the
# caches this machine's memory sets its pace, which two cores reading at once nearly
# double; handing half a small scan over costs what it saves (at 400,000 vectors, 12.8 MB,
# 0.95x). Each thread takes the next half not yet taken (`Shared`). Halves rather than
# quarters (measured when a hybrid recall's search, which scanned every code then, shared
# them with the recall's own thread: at a million in one process, hybrid p50 0.80x and
# 0.78x the search ahead alone with halves and quarters, then 0.80x and 0.82x, p99 0.93x,
# 0.99x; eighths 0.81x, p99 0.96x).
#
# The lists stand for what were three copies of the codes (one list scanned whole, the
# same codes dealt to two halves, and k-means lists for hybrid recall): at a million
# stored vectors, 500 held-out cues alternated, one thread each (two for the halves),
# every list of 512 took p50 0.83x, p99 0.99x the one list's scan (0.985 of the exact ten
# among 256 candidates either way); half of the lists on each of two threads p50 0.53x,
# p99 0.60x (0.979), where the halves of one list took 0.63x, 0.65x (0.985); the nearest 32
# lists 0.09x (0.855) (benchmarks/list_layout_bench.py, on the version before). Adding 256
# vectors' 4-bit codes cost 2.3 ms against 1.9 for the whole and its halves. A third copy
# beside the two (tried first) cost 2.0-2.6 ms more for 256 vectors: the catch-up fell to
# 0.83-0.86x the model's raw rate (1.03-1.06x without), and a retrain could not replay its
# journal while the merger added at the same cost.
HALVES = 2
# A vector's near neighbours lie in a few lists, so most lie in one half: that half's best
# half of the candidates held fewer of them than the whole's best (at a million, 256
# lists, 0.978-0.979 of the exact ten against 0.985; the one list's halves, dealt vector
# by vector, held 0.985). 160 of 256 from each half held 0.983-0.984, scanned in the same
# time (1.00x); dealing the lists by their nearness to the cue instead held 0.979.
SPLIT_SHARE = 0.625
SPLIT_BYTES = 16 << 20
# A hybrid recall's search (`approximate`) of a store of at least LISTS_BYTES of codes
# scans the nlist // PROBE_SHARE lists nearest its cue. Its proposals rarely make a hybrid
# answer at a million (the word matches, scored by the cue's vector, do): in one process,
# 500 held-out cues, hybrid p50 0.65x, p99 0.75x the scan of every code, the answers the
# same for all 500 (for 498 with no vector search at all); a description found from its
# package's synopsis, 0.411 either way. Alone the nearest lists find 0.85-0.86 of the ten
# nearest (the scan of every code 0.96-0.98): embedding cues and `--mode vector` scan
# every list.
LISTS_BYTES = 16 << 20
PROBE_SHARE = 16
# At most 256 lists: a scan of every list costs ~0.3 microseconds a list more than the scan
# of one list's codes (1.01x / 1.04x / 1.04-1.10x / 1.11-1.19x at 128 / 256 / 512 / 1,024
# lists at a million, in one process; vector-mode recall over gRPC 1.03-1.06x the one
# list's at p50 with 256 lists, 1.11-1.26x with 1,024), while a hybrid recall over the
# nearest sixteenth answered alike at 256 lists (500 of 500 held-out cues; p50 0.67x, p99
# 0.83x every list's) as at 128 (p99 0.92x).
MAX_LISTS = 256
# k-means wants this many sample vectors a list at least (faiss warns below 39).
PER_LIST = 39
# A vector's list is found with numpy (`nearest_lists`: 1.1 ms for 256 vectors at 1,024
# lists, 0.6 at 512; faiss's own search of the centroids took 4.4 ms, its bundled BLAS
# slower here), off the lock, and handed to faiss, which takes no list numbers for a
# fast-scan add, through a stand-in for the centroids: the vectors themselves,
# ASSIGN_CHUNK at a time, each under its list's number (`_add_assigned`). The lists are
# the same either way.
ASSIGN_CHUNK = 64
# Codes added or removed since a store's look-up was taken before it is taken again (or a
# sixteenth of the store, if more): each re-take reads every key (~30 ms a million).
LOOKUP_SLACK = 4096
# A store's look-up is a table by key when its keys span at most this many times their
# number (8 bytes a key of the span: at most 32 a vector, beside the ~330 it holds).
DENSE_SPAN = 4


class Coded:
    """A trained space: the fast-scan codes that propose and the 8-bit codes that decide."""

    def __init__(self, lists: Any, codes: Any) -> None:
        # IndexIVFPQFastScan of nlist_for(n) k-means lists (codes of the vectors themselves,
        # not of residuals), no direct map, only appended to
        self.lists = lists
        nlist = int(lists.nlist)
        self.nprobe = max(1, nlist // PROBE_SHARE)  # lists an approximate search reads
        self._every = np.arange(nlist, dtype=np.int64)
        self._halves = [self._every[i::HALVES].copy() for i in range(HALVES)]
        # the lists' centroids, by list number (read, never changed, by any thread)
        self._centroids = lists.quantizer.reconstruct_n(0, nlist)
        self.codes = codes  # IndexIVFScalarQuantizer 8-bit, one list, hash-table map
        self.d = int(codes.d)
        # Keys with a code in the lists and none in `codes`: removed, not added again.
        self.dead: set[int] = set()
        if self.stale():
            self.dead.update(np.setdiff1d(_list_ids(lists), _ids(codes)).tolist())
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
        """Fast-scan codes a scan of every list reads."""
        return int(self.lists.ntotal)

    def stale(self) -> int:
        """List entries of removed or replaced vectors."""
        return self.scanned - int(self.codes.ntotal)

    def outdated(self) -> bool:
        """Whether the fast-scan codes are not those `train` makes now (an earlier
        version's: 64 sub-quantizers whatever the dimension)."""
        return int(self.lists.M) != pq_m(self.d)

    def nearest_lists(self, vecs: Any) -> Any:
        """Each vector's nearest list (int64): what faiss would find, computed without
        touching the store (any thread, no lock)."""
        return np.argmax(vecs @ self._centroids.T, axis=1).astype(np.int64)

    def add_with_ids(self, vecs: Any, keys: Any, nearest: Any = None) -> None:
        """Add keys absent from the store (remove_ids first to replace); `nearest`: each
        vector's nearest list, if found already (`nearest_lists`)."""
        self.codes.add_with_ids(vecs, keys)
        _add_assigned(self.lists, vecs, keys,
                      self.nearest_lists(vecs) if nearest is None else nearest)
        self._changed += len(keys)
        if self.dead:
            self.dead.difference_update(keys.tolist())

    def remove_ids(self, keys: Any) -> int:
        gone = int(self.codes.remove_ids(keys))
        self._changed += gone
        if gone:
            # When only some were held, the others join `dead` too: filtering a key the
            # lists lack costs nothing, and open() recomputes the set exactly.
            self.dead.update(keys.tolist())
        return gone

    def reconstruct_batch(self, keys: Any) -> Any:
        return self.codes.reconstruct_batch(keys)

    def scan(self, q: Any, n: int, split: bool = True, approximate: bool = False) -> Any:
        """The keys of about the `n` best fast-scan codes for the 1 x dim `q` (-1 where the
        store holds fewer). Of the `nprobe` lists nearest `q` when `approximate` and the
        store holds LISTS_BYTES of codes or more. Else of every list, unless the store
        holds SPLIT_BYTES of codes or more, `split` and `_BESIDE`'s thread is free: then
        of the HALVES halves of the lists (SPLIT_SHARE of `n` each), which this thread and
        that one take up one at a time until none is left."""
        size = self.scanned * int(self.lists.code_size)
        if approximate and size >= LISTS_BYTES:
            return _scan(_Part(self.lists, None, self.nprobe), q, n)
        whole = _Part(self.lists, self._every)
        if size >= SPLIT_BYTES and split:
            shared = Shared([_Part(self.lists, half) for half in self._halves], q,
                            max(1, int(np.ceil(n * SPLIT_SHARE))))
            if _BESIDE.submit(shared.help) is None:
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


def _add_assigned(lists: Any, vecs: Any, keys: Any, nearest: Any) -> None:
    """Add to an IndexIVFPQFastScan each vector in the list `nearest` gives it. faiss finds
    a vector's list through the index's quantizer, whatever it is: here, for ASSIGN_CHUNK
    vectors at a time, an exact index of those vectors themselves under their lists'
    numbers, so that each one finds its own (at distance 0)."""
    centroids = lists.quantizer
    for start in range(0, len(keys), ASSIGN_CHUNK):
        part = slice(start, start + ASSIGN_CHUNK)
        x = np.ascontiguousarray(vecs[part], dtype=np.float32)
        given = faiss.IndexIDMap(faiss.IndexFlatL2(lists.d))
        given.add_with_ids(x, np.ascontiguousarray(nearest[part], dtype=np.int64))
        lists.quantizer = given
        try:
            lists.add_with_ids(x, np.ascontiguousarray(keys[part]))
        finally:
            lists.quantizer = centroids


class _Part:
    """What one call into faiss scans: the lists `chosen` of a coded store, or (None) the
    `nprobe` lists nearest the cue."""

    __slots__ = ("chosen", "lists", "nprobe")

    def __init__(self, lists: Any, chosen: Any, nprobe: int = 0) -> None:
        self.lists, self.chosen, self.nprobe = lists, chosen, nprobe


def _scan(part: _Part, q: Any, n: int) -> Any:
    """The keys of the `n` best codes of `part` for the 1 x dim `q` (-1 where it holds
    fewer). faiss's Python search of chosen lists takes no parameters of its own (it would
    read the index's `nprobe`, which another thread may be using): the call beneath it."""
    lists = part.lists
    params = faiss.SearchParametersIVF(nprobe=part.nprobe or len(part.chosen))
    if part.chosen is None:
        return lists.search(q, n, params=params)[1][0]
    assign = part.chosen.reshape(1, -1)
    near = np.zeros(assign.shape, dtype=np.float32)  # unused: codes are not residuals
    sims = np.empty((1, n), dtype=np.float32)
    keys = np.empty((1, n), dtype=np.int64)
    lists.search_preassigned_c(1, faiss.swig_ptr(q), n, faiss.swig_ptr(assign),
                               faiss.swig_ptr(near), faiss.swig_ptr(sims),
                               faiss.swig_ptr(keys), False, params)
    return keys[0]


class Shared:
    """One scan of a store's halves, taken up by more than one thread: each takes the next
    half not yet taken until none is left. The thread that offers them (a search, holding
    the vector index's read lock) waits in `finish` until every half taken is scanned, so
    a helper reads the store only under that lock, and one that comes later finds none
    left."""

    def __init__(self, parts: list[Any], q: Any, n: int) -> None:
        """Scan each of `parts` for the `n` best codes for `q` (once)."""
        self._cond = threading.Condition()
        self._todo = list(parts)
        self._q, self._n = q, n
        self._busy = 0
        self._found: list[Any] = []
        self._error: Exception | None = None

    def help(self) -> None:
        """Scan parts not yet taken until none is left, from any thread (a failure is
        raised by `finish`)."""
        one_thread()
        while True:
            with self._cond:
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
            if self._error is not None:
                raise RuntimeError("a part of the scan failed") from self._error
            return np.concatenate(self._found)


class _Beside:
    """One thread that scans halves beside the caller, when it is free (else the caller
    scans every list itself). The answers differ a little: SPLIT_SHARE of the candidates
    from each half are not quite the whole's best."""

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


def _list_ids(index: Any) -> Any:
    """Every key in an index's lists (a key held twice, twice)."""
    invlists = index.invlists
    parts = [faiss.rev_swig_ptr(invlists.get_ids(no), invlists.list_size(no)).copy()
             for no in range(int(index.nlist)) if invlists.list_size(no)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


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


def nlist_for(n: int, sample: int) -> int:
    """The k-means lists of a store trained on `n` vectors (`sample` of them): a power of
    two near the square root of n (it holds up to 4n before it is retrained, vectors.py's
    growth), at most MAX_LISTS, at most one a PER_LIST of the sample, and at least HALVES.
    At a million (benchmarks/list_layout_bench.py) the nearest sixteenth of 128 / 256 / 512
    / 1,024 lists held 0.817 / 0.841 / 0.855 / 0.867 of the exact ten among 256
    candidates; fewer lists train faster (256 in ~3 s, 1,024 in 12 s) and a vector's list
    is found sooner."""
    lists = 1 << max(0, round(math.log2(math.sqrt(max(1, n)))))
    lists = max(HALVES, min(lists, MAX_LISTS))
    while lists > HALVES and lists * PER_LIST > sample:
        lists //= 2
    return lists


def train(dim: int, sample: Any, n: int = 0) -> Coded:
    """An empty coded store trained on `sample` of the `n` vectors it is for (0: as many
    as the sample). Codes are of the vectors themselves, not of their residuals from their
    lists' centroids (a scan of every list reads every code alike), and one 8-bit range
    serves every dimension (QT_8bit_uniform scans ~25% faster than a range per dimension
    and re-scores as well)."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    lists = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim,
                                     nlist_for(n or len(sample), len(sample)), pq_m(dim), 4,
                                     faiss.METRIC_INNER_PRODUCT, FAST_SCAN_BLOCK)
    lists.by_residual = False
    lists.train(sample)
    codes = faiss.IndexIVFScalarQuantizer(_one_list(dim), dim, 1,
                                          faiss.ScalarQuantizer.QT_8bit_uniform,
                                          faiss.METRIC_INNER_PRODUCT, False)
    codes.train(sample)
    codes.set_direct_map_type(faiss.DirectMap.Hashtable)
    return Coded(lists, codes)


def sample_size(n: int) -> int:
    return min(n, TRAIN_SAMPLE)


def read(path: Path, coded: bool) -> Any:
    """The index in a file `write` wrote (a coded store when `coded`: its lists, then its
    8-bit codes); ValueError when it is not one of ours. (read_index keeps the direct
    map; it is restored if lacking.)"""
    try:
        reader = faiss.FileIOReader(str(path))
        parts = [faiss.read_index(reader)]
        if coded:
            parts.append(faiss.read_index(reader))
    except RuntimeError as exc:
        raise ValueError(f"{path.name} is not {'a coded' if coded else 'an exact'} vector "
                         f"store ({exc})") from None
    finally:
        del reader
    for index in parts:
        if not isinstance(index, faiss.IndexIVF) or index.metric_type != \
                faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"{path.name} is not one of this version's vector stores")
    if coded:
        lists, codes = parts
        if not isinstance(lists, faiss.IndexIVFPQFastScan) or lists.d != codes.d \
                or lists.by_residual or lists.nlist < HALVES \
                or not isinstance(codes, faiss.IndexIVFScalarQuantizer) or codes.nlist != 1 \
                or codes.sq.qtype != faiss.ScalarQuantizer.QT_8bit_uniform \
                or lists.ntotal < codes.ntotal:
            raise ValueError(f"{path.name} is not a coded vector store")
        index = Coded(lists, codes)
    else:
        index = codes = parts[0]
        if index.nlist != 1:
            raise ValueError(f"{path.name} is not an exact vector store")
    if codes.direct_map.type != faiss.DirectMap.Hashtable:
        codes.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def write(index: Any, put: Callable[[bytes], Any]) -> None:
    """Serialize `index` through `put`, chunk by chunk (`read` reads it back)."""
    writer = faiss.PyCallbackIOWriter(put)
    for part in (index.lists, index.codes) if isinstance(index, Coded) else (index,):
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
    return candidates * max(1, PQ_M // int(index.lists.M))


def search(index: Any, q: Any, k: int, candidates: int, split: bool = True,
           approximate: bool = False) -> list[tuple[int, float]]:
    """The `k` best (key, inner product) of the unit 1 x dim `q`: of all vectors (the exact
    store), or of the coded store's `candidates` best fast-scan codes re-scored with their
    8-bit codes (more of them for a store of fewer than PQ_M sub-quantizers). `split`: its
    halves may be scanned on two threads; `approximate`: of a large store's nearest lists
    only (`Coded.scan`)."""
    one_thread()  # an RPC thread's first search, or a search-ahead thread's
    if not isinstance(index, Coded):
        sims, keys = index.search(q, k)
        return [(int(key), float(sim)) for key, sim in zip(keys[0], sims[0], strict=True)
                if key >= 0]
    candidates = scan_candidates(index, candidates)
    # Stale entries take places among the scan's best: ask for that many more, about.
    extra = candidates * index.stale() // max(1, index.scanned)
    found = index.scan(q, max(k, candidates + extra), split, approximate)
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
    """RAM the index holds: codes and ids (twice in a coded store: its lists, with their
    centroids, and its 8-bit codes), ~32 bytes a key in the hash table, and a coded
    store's look-up."""
    if isinstance(index, Coded):
        lists = index.lists
        return (int(lists.ntotal) * (int(lists.code_size) + 8) + int(lists.nlist) * index.d * 4
                + index.ntotal * (int(index.codes.code_size) + 40) + 64 * len(index.dead)
                + index.lookup_bytes())
    return int(index.ntotal) * (int(index.code_size) + 8 + 32)
