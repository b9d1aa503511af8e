"""faiss inverted files, as the vector index (engine/vectors.py) uses them: the exact store
of a small space, the trained IVF-SQ8 of a larger one, and the few operations on them that
faiss's Python API leaves to the caller (finding lists before taking a lock, listing the
keys of a list, sizing). Not thread-safe: engine/vectors.py holds its lock around every
call that reads an index another thread may change.

Both kinds are faiss IndexIVF with a hash-table direct map (key -> list and offset): a key
is removed or reconstructed in O(1) (faiss's flat IDMap removes in O(n), a scan of the
whole store per call), and an id added twice would be held twice, so writers remove first.
Vectors are unit length and compared by inner product: cosine similarity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

# faiss's type stubs lack DirectMap and the search parameters' keyword constructor.
faiss: Any = _faiss

# Training points per list: faiss warns below 39, and more only trains slower.
TRAIN_PER_LIST = 40
# k-means passes: 10 cluster as well as faiss's default 25 here, 2.5x sooner.
TRAIN_ITERATIONS = 10


def nlist_for(n: int) -> int:
    """Inverted lists for an index trained on `n` vectors: the power of two at most
    4 * sqrt(n) (the usual rule), and at most n / 64 so that each list holds 64 vectors at
    training and ~256 once the space has grown four-fold and is retrained."""
    limit = min(4 * math.sqrt(n), n / 64)
    nlist = 1
    while nlist * 2 <= limit:
        nlist *= 2
    return nlist


def exact_store(dim: int) -> Any:
    """An untrained space: one inverted list of float32 vectors, every search an exact
    scan of all of them."""
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(np.zeros((1, dim), dtype=np.float32))
    index = faiss.IndexIVFFlat(quantizer, dim, 1, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def train(dim: int, sample: Any, nlist: int) -> Any:
    """An empty IVF of `nlist` lists and 8-bit vectors, trained on `sample`. Codes are of
    the vectors themselves, not of their residuals from a centroid (by_residual False): a
    vector decodes alike in any list, so copying it to a retrained index loses nothing
    more. One 8-bit range for every dimension (QT_8bit_uniform) scans 256-d codes ~25%
    faster here than a range per dimension (57 against 78 ns a vector), and neither loses
    recall@10 once the candidates are re-scored exactly."""
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist,
                                          faiss.ScalarQuantizer.QT_8bit_uniform,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.cp.niter = TRAIN_ITERATIONS
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def sample_size(nlist: int) -> int:
    return TRAIN_PER_LIST * nlist


def read(path: Path) -> Any:
    """The index in a file written by faiss.write_index; ValueError when it is not one of
    ours. (read_index keeps the direct map; it is restored if a file lacks it.)"""
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    if not isinstance(index, faiss.IndexIVF) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path.name} is not an inner-product inverted file")
    if index.direct_map.type != faiss.DirectMap.Hashtable:
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def write(index: Any, put: Callable[[bytes], Any]) -> None:
    """Serialize `index` through `put`, chunk by chunk (faiss.read_index reads it back)."""
    writer = faiss.PyCallbackIOWriter(put)
    faiss.write_index(index, writer)
    del writer  # flushes its last chunk


def assign(index: Any, vecs: Any) -> Any:
    """Each vector's list: reads only the index's fixed centroids, so it needs no lock
    while the index cannot be swapped."""
    if index.nlist == 1:
        return np.zeros(len(vecs), dtype=np.int64)
    _, lists = index.quantizer.search(vecs, 1)
    return np.ascontiguousarray(lists.reshape(-1))


def add_assigned(index: Any, keys: Any, vecs: Any, lists: Any) -> None:
    """Add `vecs` under `keys` (absent from the index) to the lists `assign` found."""
    index.add_core(len(keys), faiss.swig_ptr(vecs), faiss.swig_ptr(keys),
                   faiss.swig_ptr(lists))


def list_ids(index: Any, lst: int) -> Any:
    size = index.invlists.list_size(lst)
    if not size:
        return np.zeros(0, dtype=np.int64)
    return faiss.rev_swig_ptr(index.invlists.get_ids(lst), size).copy()


def all_ids(index: Any) -> Any:
    return np.concatenate([np.zeros(0, dtype=np.int64),
                           *(list_ids(index, lst) for lst in range(index.nlist))])


def replay(index: Any, ops: list[tuple[Any, Any]]) -> None:
    """Apply journaled changes in order: (keys, vectors) replaces, (keys, None) removes."""
    for keys, vecs in ops:
        index.remove_ids(keys)
        if vecs is not None:
            index.add_with_ids(vecs, keys)


def search(index: Any, q: Any, k: int, nprobe: int) -> list[tuple[int, float]]:
    """The `k` best (key, inner product) of the unit 1 x dim `q`, scanning `nprobe` lists."""
    params = faiss.SearchParametersIVF(nprobe=max(1, min(nprobe, int(index.nlist))))
    sims, keys = index.search(q, k, params=params)
    return [(int(key), float(sim)) for key, sim in zip(keys[0], sims[0], strict=True)
            if key >= 0]


def nbytes(index: Any) -> int:
    """RAM the index holds: codes and ids, ~32 bytes a key in the hash table, centroids."""
    return int(index.ntotal) * (int(index.code_size) + 8 + 32) + int(index.nlist) * index.d * 4
