"""The coded store's fast-scan codes laid out as one list scanned whole, and dealt to two
halves scanned on two threads (the layout before k-means lists), against one index of
k-means lists standing for all three uses: every list (the whole), half of the lists on
each of two threads (the halves), and the lists nearest the cue (a cheaper search for a
hybrid recall). Side by side in one process, on one thread each (two for the halves), over
the vectors of a store.

    python benchmarks/semantic_bench.py --keep /tmp/million      # once: builds the store
    python benchmarks/list_layout_bench.py --store /tmp/million --lists 512

Every layout's codes are 4-bit product-quantized codes of the vectors themselves (no
residuals), so a scan of every list reads the same bytes as the scan of the one list; the
lists are filled as a server would add to them, 256 vectors at a time, each vector's nearest
list found with numpy and handed to faiss through a stand-in quantizer (faiss's fast-scan
add takes no list numbers of its own). Printed: the training time, the cost of adding 256
vectors to each layout, and for the store's held-out cues (its cues.json), the layouts
alternated cue by cue for --rounds: p50 and p99 of each search and how many of the exact
ten nearest (numpy over the stored vectors) its candidates hold. The layouts' order is drawn
at random for each cue.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from semantic_bench import say  # noqa: E402

from engram_cli.engine.unit import unit_rows  # noqa: E402

CANDIDATES = 256  # the fast-scan candidates a search re-scores (vector_candidates)
ADD_CHUNK = 256  # vectors a server adds under one hold of its lock


def stored_vectors(store: Path) -> tuple[Any, Any]:
    """(keys, unit float32 vectors) of every vector the store's SQLite holds."""
    db = sqlite3.connect(f"file:{store / 'engram.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT rid, vec FROM vectors ORDER BY rid").fetchall()
    finally:
        db.close()
    keys = np.array([rid for rid, _ in rows], dtype=np.int64)
    vecs = np.frombuffer(b"".join(v for _, v in rows), dtype="<f2").reshape(len(rows), -1)
    return keys, unit_rows(vecs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True,
                    help="a data dir semantic_bench.py --keep left (with its cues.json)")
    ap.add_argument("--lists", type=int, default=512, help="k-means lists (default 512)")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the cues")
    args = ap.parse_args(argv)
    if not (args.store / "cues.json").is_file():
        ap.error(f"--store {args.store}: no cues.json (made by semantic_bench.py --keep)")

    import faiss

    from engram_cli.engine import ivf
    from engram_cli.engine.embedding import DEFAULT_MODEL, load_model
    from engram_cli.server.cores import one_blas_thread

    one_blas_thread()
    faiss.omp_set_num_threads(1)
    cues = orjson.loads((args.store / "cues.json").read_bytes())
    keys, vecs = stored_vectors(args.store)
    dim = vecs.shape[1]
    sample = vecs[np.random.default_rng(0).choice(len(vecs), min(len(vecs), ivf.TRAIN_SAMPLE),
                                                   replace=False)]
    say(f"{len(keys):,} stored {dim}-d vectors; {len(cues)} held-out cues")

    started = time.perf_counter()
    # one list, trained once, and two copies of it for the halves (as the store was laid
    # out before the lists)
    whole = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim, 1, ivf.pq_m(dim), 4,
                                     faiss.METRIC_INNER_PRODUCT, ivf.FAST_SCAN_BLOCK)
    whole.by_residual = False
    whole.train(sample)
    probes = [whole] + [faiss.deserialize_index(faiss.serialize_index(whole))
                        for _ in range(2)]
    trained_now = time.perf_counter() - started
    started = time.perf_counter()
    lists = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim, args.lists, ivf.pq_m(dim), 4,
                                     faiss.METRIC_INNER_PRODUCT, ivf.FAST_SCAN_BLOCK)
    lists.by_residual = False
    lists.train(sample)
    trained_lists = time.perf_counter() - started
    centroids = lists.quantizer.reconstruct_n(0, args.lists)
    add_now: list[float] = []
    add_lists: list[float] = []
    for start in range(0, len(keys), ADD_CHUNK):
        x = np.ascontiguousarray(vecs[start:start + ADD_CHUNK])
        k = np.ascontiguousarray(keys[start:start + ADD_CHUNK])
        t = time.perf_counter()
        whole.add_with_ids(x, k)
        for turn, probe in enumerate(probes[1:]):
            part = slice(turn, None, len(probes) - 1)
            probe.add_with_ids(np.ascontiguousarray(x[part]), np.ascontiguousarray(k[part]))
        add_now.append(time.perf_counter() - t)
        t = time.perf_counter()
        nearest = np.argmax(x @ centroids.T, axis=1).astype(np.int64)
        ivf._add_assigned(lists, x, k, nearest)
        add_lists.append(time.perf_counter() - t)
    say(f"training: one list {trained_now:.1f} s, {args.lists} lists {trained_lists:.1f} s")
    say(f"adding {ADD_CHUNK} vectors (the fast-scan codes only): one list and its "
        f"halves {np.median(add_now) * 1e3:.2f} ms; the lists (their nearest found, "
        f"then added) {np.median(add_lists) * 1e3:.2f} ms")

    model = load_model(DEFAULT_MODEL)
    assert model is not None
    queries = model.embed(cues)  # unit float32 rows
    truth = keys[np.argsort(-(queries @ vecs.T), axis=1)[:, :10]]
    every = np.arange(args.lists, dtype=np.int64)
    even, odd = every[0::2].copy(), every[1::2].copy()

    def of_lists(q: Any, chosen: Any, k: int) -> Any:
        return ivf._scan(ivf._Part(lists, chosen), q, k)  # as the server scans them

    pool = ThreadPoolExecutor(1)

    def two_threads(a: Callable[[], Any], b: Callable[[], Any]) -> Any:
        other = pool.submit(lambda: (faiss.omp_set_num_threads(1), b())[1])
        return np.concatenate([a(), other.result()])

    halves = probes[1:]
    half = CANDIDATES // 2  # the one list's halves: dealt vector by vector
    share = max(1, int(np.ceil(CANDIDATES * ivf.SPLIT_SHARE)))  # the lists' halves
    nprobe = max(1, args.lists // 16)
    variants: dict[str, Callable[[Any], Any]] = {
        "one list, every code": lambda q: whole.search(q, CANDIDATES)[1][0],
        "one list's halves, two threads": lambda q: two_threads(
            lambda: halves[0].search(q, half)[1][0], lambda: halves[1].search(q, half)[1][0]),
        "lists: every list": lambda q: of_lists(q, every, CANDIDATES),
        "lists: half each, two threads": lambda q: two_threads(
            lambda: of_lists(q, even, share), lambda: of_lists(q, odd, share)),
        f"lists: the nearest {nprobe}": lambda q: lists.search(
            q, CANDIDATES, params=faiss.SearchParametersIVF(nprobe=nprobe))[1][0],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    held = dict.fromkeys(variants, 0)
    order = random.Random(1)
    for r in range(args.rounds):
        for i in range(len(queries)):
            q = np.ascontiguousarray(queries[i:i + 1])
            names = list(variants)
            order.shuffle(names)
            for name in names:
                search = variants[name]
                t = time.perf_counter()
                found = search(q)
                times[name].append(time.perf_counter() - t)
                if r == 0:
                    held[name] += len(set(found.tolist()) & set(truth[i].tolist()))
    pool.shutdown()
    base = times["one list, every code"]
    say(f"\n{CANDIDATES} candidates a search, {len(queries)} cues x {args.rounds}, "
        "alternated:")
    for name, took in times.items():
        say(f"  {name:32s} p50 {np.median(took) * 1e3:5.2f} ms "
            f"({np.median(took) / np.median(base):.2f}x)  p99 "
            f"{np.percentile(took, 99) * 1e3:5.2f} ms "
            f"({np.percentile(took, 99) / np.percentile(base, 99):.2f}x);  "
            f"{held[name] / (10 * len(queries)):.3f} of the exact ten")


if __name__ == "__main__":
    main()
