"""Recall from many threads on a pool of `readers` SQLite connections: throughput and
latency, and the bytes SQLite holds, side by side for pool sizes 1, 2, 6 (the default)
and 48 (one per thread, as before the pool: a server has 48 RPC threads by default).

Builds a store in-process (--memories generated memories with chains of associations,
no embedding model: lexical seeds and spreading activation), then for each pool size
opens it, warms it and runs --seconds of recalls from each of --threads threads, in
rounds (every size once per round, --rounds rounds; the median round is reported) so
that the machine's other load falls on every size alike.

    python benchmarks/reader_pool_bench.py                       # 50,000 memories
    python benchmarks/reader_pool_bench.py --memories 5000 --seconds 2 --rounds 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.readers import sqlite_memory
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store

WORDS = ("lighthouse fog keeper harbour ledger kettle studio garden weather orbit comet "
         "violin archive river lantern pepper quartz meadow signal engine").split()
SIZES = (1, 2, 6, 48)


def settings(readers: int) -> Settings:
    return Settings().replace({"embedding_model": "none", "readers": readers,
                               "consolidation_interval_s": 0})


def build(data: Path, n: int) -> None:
    rng = random.Random(7)
    store = Store(data, settings(1))
    try:
        for start in range(0, n, 5000):
            store.remember_many("", [MemoryRecord(id=f"m{i}", content=" ".join(
                rng.choice(WORDS) + str(rng.randrange(200)) for _ in range(12)))
                for i in range(start, min(n, start + 5000))])
            store.associate_many("", [(f"m{i}", f"m{rng.randrange(n)}", 0.7)
                                      for i in range(start, min(n, start + 5000))])
    finally:
        store.close()


def run(data: Path, readers: int, threads: int, seconds: float) -> tuple[float, float, float,
                                                                        int, int]:
    """(recalls/s, p50 ms, p99 ms, SQLite bytes after, pool waits)."""
    store = Store(data, settings(readers))
    try:
        rng = random.Random(1)
        cues = [f"{rng.choice(WORDS)}{rng.randrange(200)} {rng.choice(WORDS)}"
                for _ in range(500)]
        for cue in cues[:50]:  # warm the caches
            store.recall("", RecallQuery(text=cue, limit=10, mode="lexical"))
        took: list[float] = []
        lock = threading.Lock()
        start = threading.Barrier(threads + 1)
        stop = [0.0]

        def worker(k: int) -> None:
            mine = []
            start.wait()
            i = k
            while time.perf_counter() < stop[0]:
                t = time.perf_counter()
                store.recall("", RecallQuery(text=cues[i % len(cues)], limit=10,
                                             mode="lexical"))
                mine.append(time.perf_counter() - t)
                i += threads
            with lock:
                took.extend(mine)

        pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        stop[0] = time.perf_counter() + seconds
        start.wait()
        for t in pool:
            t.join()
        took.sort()
        used = sqlite_memory()[0]
        return (len(took) / seconds, statistics.median(took) * 1000,
                took[int(len(took) * 0.99)] * 1000, used, store._readers.waits)
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memories", type=int, default=50_000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=4.0, help="per size and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        build(data, args.memories)
        results: dict[int, list[tuple[float, float, float, int, int]]] = {s: [] for s in SIZES}
        for _ in range(args.rounds):
            for size in SIZES:
                results[size].append(run(data, size, args.threads, args.seconds))
    base = statistics.median(r[0] for r in results[48])
    base_p50 = statistics.median(r[1] for r in results[48])
    print(f"{args.memories:,} memories, {args.threads} threads recalling, median of "
          f"{args.rounds} rounds of {args.seconds:g} s")
    print(f"{'readers':>8} {'recalls/s':>10} {'x 48':>6} {'p50 ms':>7} {'x 48':>6} "
          f"{'p99 ms':>7} {'SQLite MB':>10} {'waits':>7}")
    for size, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        p50 = statistics.median(r[1] for r in rows)
        p99 = statistics.median(r[2] for r in rows)
        used = statistics.median(r[3] for r in rows) / 2**20
        waits = statistics.median(r[4] for r in rows)
        print(f"{size:>8} {rate:>10,.0f} {rate / base:>6.2f} {p50:>7.2f} {p50 / base_p50:>6.2f} "
              f"{p99:>7.2f} {used:>10.1f} {waits:>7,.0f}")


if __name__ == "__main__":
    main()
