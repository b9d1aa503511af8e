"""A coded store's re-scoring step, two ways, side by side: each candidate's 8-bit code read
where the store's look-up places it (engine/ivf.py `Coded.rescore`, what a search does),
and the same codes asked of faiss key by key (`reconstruct_batch`: a hash-table look-up and
a decode each, what a search did before, and still does for a key added since the look-up).

    python benchmarks/rescore_bench.py                   # 1,000,000 vectors
    python benchmarks/rescore_bench.py --n 200000 --candidates 512

The store is built as the server builds it (ivf.train, then add), over random unit vectors:
this step's cost is reading codes out of memory, whatever they encode, and both ways give
the same scores (checked). Each query first scans all the fast-scan codes, as a search does
(so the 8-bit codes are as cold as in a search), then re-scores the scan's candidates one
way; the ways alternate from query to query, first one then the other. Printed: the median
and p99 of each, their ratio, and the scan for scale. Also the look-up's own cost: the
time to take it and the bytes it holds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from engram_cli.engine import ivf


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the store")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--candidates", type=int, default=256, help="re-scored per query")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--spread", type=int, default=1,
                    help="keys this far apart (past 4 the look-up is the keys sorted, not a "
                         "table by key: a space whose rowids interleave with others')")
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        v = rng.standard_normal((n, args.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    t = time.perf_counter()
    coded = ivf.train(args.dim, unit(min(args.n, ivf.TRAIN_SAMPLE)))
    for start in range(0, args.n, 100_000):
        count = min(100_000, args.n - start)
        coded.add_with_ids(unit(count), np.arange(start + 1, start + count + 1,
                                                  dtype=np.int64) * args.spread)
    print(f"store: {args.n:,} vectors of {args.dim} dimensions, built in "
          f"{time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    coded.install_lookup(*coded.lookup_keys())
    lookup = coded._lookup
    kind = "a table by key" if isinstance(coded._lookup[0], int) else "the keys sorted"
    print(f"look-up ({kind}): taken in {(time.perf_counter() - t) * 1e3:.0f} ms, "
          f"{coded.lookup_bytes() / 2**20:.1f} MiB")

    queries = unit(args.queries)
    times: dict[str, list[float]] = {"look-up": [], "faiss": [], "scan": []}
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found = coded.scan(q.reshape(1, -1), args.candidates)
        times["scan"].append(time.perf_counter() - t)
        found = np.unique(found[found >= 0])
        way = ("look-up", "faiss")[i % 2]
        coded._lookup = lookup if way == "look-up" else None
        t = time.perf_counter()
        sims = coded.rescore(found, q)
        times[way].append(time.perf_counter() - t)
        if i < 20:  # the same scores either way
            other = lookup if way == "faiss" else None
            coded._lookup = other
            assert np.allclose(sims, coded.rescore(found, q), atol=1e-5)
    coded._lookup = lookup
    for way, xs in times.items():
        print(f"{way:8} p50 {pct(xs, .5):.3f} ms  p99 {pct(xs, .99):.3f} ms  ({len(xs)} queries)")
    ratio = pct(times["faiss"], .5) / pct(times["look-up"], .5)
    print(f"re-scoring {args.candidates} candidates: faiss / look-up at p50 = {ratio:.1f}x; "
          f"a search (scan + re-score) {pct(times['scan'], .5) + pct(times['faiss'], .5):.2f}"
          f" -> {pct(times['scan'], .5) + pct(times['look-up'], .5):.2f} ms at p50")


if __name__ == "__main__":
    main()
