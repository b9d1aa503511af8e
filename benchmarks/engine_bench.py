"""Recall latency of the engine at scale, with spreading activation, side by side.

Drives the engine in-process (engram_cli.engine.store.Store, no gRPC): the figures are
the engine's own, not the transport's. For each size it loads realistic memories
(benchmarks/datagen.py) and association edges (2 per memory), then measures recall
p50/p99 for max_hops 1, 3 and 5 (threshold 0.2, limit 10), the growth of p99 from the
smallest to the largest size, and recall p99 while a concurrent import writes at full
speed.

    python benchmarks/engine_bench.py --sizes 100000,1000000
    python benchmarks/engine_bench.py --quick          # 20,000 memories, a smoke run
    python benchmarks/engine_bench.py --keep /tmp/eb   # reuse the loaded stores next time

Goal (issue 5): p99 < 10 ms at 1,000,000 memories with max_hops 3, p99 growing at most
2x from 100K to 1M, and recall p99 < 50 ms under a concurrent import.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datagen

from engram_cli.engine.model import MemoryRecord, MemoryType
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store

SPACE = "default"
IMPORT_SPACE = "import"  # the concurrent import's space: a kept store stays reusable
BATCH = 5_000


def to_record(r: dict) -> MemoryRecord:
    return MemoryRecord(
        id="", content=r["content"], confidence=r["confidence"], tags=r["tags"],
        metadata=r["metadata"], memory_type=int(MemoryType[r["memory_type"].upper()]),
        created_at=datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")).timestamp())


def load(store: Store, start: int, n: int) -> list[str]:
    ids: list[str] = []
    batch: list[MemoryRecord] = []
    for r in datagen.generate_records(n, start=start):
        batch.append(to_record(r))
        if len(batch) >= BATCH:
            ids.extend(o.memory_id for o in store.remember_many(SPACE, batch))
            batch = []
    if batch:
        ids.extend(o.memory_id for o in store.remember_many(SPACE, batch))
    return ids


def build(path: Path, n: int, settings: Settings) -> Store:
    store = Store(path, settings)
    have = store.stats(SPACE)["total_memories"]
    if have == n:
        print(f"  reusing {n:,} memories in {path}")
        store.drop_space(IMPORT_SPACE)  # what an earlier run's concurrent import left
        return store
    if have:
        raise SystemExit(f"{path} holds {have:,} memories, not {n:,}: remove it")
    t0 = time.perf_counter()
    ids = load(store, 0, n)
    t1 = time.perf_counter()
    edges = list(datagen.association_pairs(ids, per_memory=2))
    for i in range(0, len(edges), 50_000):
        store.associate_many(SPACE, edges[i:i + 50_000], reason="bench")
    t2 = time.perf_counter()
    print(f"  loaded {n:,} memories in {t1 - t0:.1f} s ({n / (t1 - t0):,.0f}/s), "
          f"{len(edges):,} edges in {t2 - t1:.1f} s")
    return store


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def measure(store: Store, cues: list[str], hops: int, threshold: float) -> list[float]:
    out = []
    for cue in cues:
        t0 = time.perf_counter()
        store.recall(SPACE, RecallQuery(text=cue, limit=10, spread=True, max_hops=hops,
                                        threshold=threshold))
        out.append((time.perf_counter() - t0) * 1000)
    return out


def under_import(store: Store, n: int, cues: list[str], threshold: float, records: int
                 ) -> tuple[list[float], float]:
    """Recall p99 (max_hops 3) while another thread imports at full speed. The records
    are made beforehand, as a client process would, so the importing thread spends its
    time in the engine's write path (as a server's would), not in generating text."""
    pending = [to_record(r) for r in datagen.generate_records(records, start=n)]
    stop = threading.Event()
    imported = [0]

    def importer() -> None:
        for i in range(0, len(pending), 2_000):
            if stop.is_set():
                return
            imported[0] += len(store.remember_many(IMPORT_SPACE, pending[i:i + 2_000]))

    t = threading.Thread(target=importer, daemon=True)
    t0 = time.perf_counter()
    t.start()
    time.sleep(0.2)
    lat = measure(store, cues, 3, threshold)
    stop.set()
    still_importing = t.is_alive()
    t.join()
    if not still_importing:
        print(f"  note: the import ({records:,} records) ended before the recalls did")
    return lat, imported[0] / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--hops", default="1,3,5")
    ap.add_argument("--threshold", type=float, default=0.2)
    ap.add_argument("--keep", metavar="DIR", help="keep the loaded stores here and reuse them")
    ap.add_argument("--quick", action="store_true", help="20,000 memories, 100 queries")
    args = ap.parse_args(argv)
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    queries = 100 if args.quick else args.queries
    hops_list = [int(h) for h in args.hops.split(",")]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="engine-bench-"))
    settings = Settings(threshold=args.threshold, consolidation_interval_s=0.0)
    p99s: dict[tuple[int, int], float] = {}
    rows = []
    try:
        for n in sizes:
            print(f"size {n:,}:")
            store = build(root / f"n{n}", n, settings)
            try:
                cues = datagen.cue_texts(queries, seed=1, n=n)
                measure(store, cues[: max(10, queries // 5)], 3, args.threshold)  # warm-up
                for hops in hops_list:
                    lat = measure(store, cues, hops, args.threshold)
                    p50, p99 = statistics.median(lat), percentile(lat, 99)
                    p99s[(n, hops)] = p99
                    rows.append((n, f"max_hops {hops}", p50, p99))
                lat, rate = under_import(store, n, cues, args.threshold,
                                         20_000 if args.quick else 200_000)
                rows.append((n, f"max_hops 3 + import {rate:,.0f}/s", statistics.median(lat),
                             percentile(lat, 99)))
                tiers = store.tier_stats()
                print(f"  hot tier {tiers['hot_size']:,}/{tiers['hot_capacity']:,}, "
                      f"hit rate {tiers['hot_hit_rate']:.2f}")
            finally:
                store.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{'memories':>10}  {'variant':<32} {'p50 ms':>8} {'p99 ms':>8}")
    for n, variant, p50, p99 in rows:
        print(f"{n:>10,}  {variant:<32} {p50:>8.2f} {p99:>8.2f}")
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        print()
        for hops in hops_list:
            ratio = p99s[(hi, hops)] / p99s[(lo, hops)]
            print(f"p99 growth {lo:,} -> {hi:,}, max_hops {hops}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
