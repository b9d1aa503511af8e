"""One embedding worker against two (setting `embedding_workers`), side by side in one run:
how fast the server's indexer catches up after an import, and what hybrid recall costs
meanwhile.

    python benchmarks/embedding_workers_bench.py --n 200000 --rounds 2

The corpus is semantic_bench.py's (Debian package descriptions; run
`apt-get update -o Acquire::Languages=en` once). Each round imports it text-only into a
fresh server per setting (the order alternates round by round), then times the catch-up
until Introspect's vector_index.pending is 0, with a hybrid recall (max_hops 3) between
polls; it prints each round, then the medians and the ratio of two workers to one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from semantic_bench import Server, corpus, load, say, write_jsonl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="memories (default 200,000)")
    ap.add_argument("--rounds", type=int, default=2, help="imports of each setting")
    ap.add_argument("--queries", type=int, default=500, help="hybrid cues, cycled")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="engram-workers-bench-"))
    try:
        base, queries, _ = corpus(args.n, args.queries)
        path = work / "memories.jsonl"
        write_jsonl(path, base, "m")
        rates: dict[int, list[float]] = {1: [], 2: []}
        lat: dict[int, list[float]] = {1: [], 2: []}
        say(f"{len(base):,} memories, {load()} at the start")
        for r in range(args.rounds):
            for workers in (1, 2) if r % 2 == 0 else (2, 1):
                data = work / f"w{workers}-{r}"
                data.mkdir()
                (data / "engram.toml").write_text(
                    f"[engine]\nembedding_workers = {workers}\n")
                srv = Server(data)
                try:
                    srv.import_file(path)
                    mine: list[float] = []
                    secs, pending, _ = srv.wait_pending(3600, queries, mine)
                finally:
                    srv.stop()
                shutil.rmtree(data, ignore_errors=True)
                rates[workers].append(pending / secs)
                lat[workers] += mine
                say(f"  round {r + 1}, {workers} worker(s): {pending:,.0f} caught up in "
                    f"{secs:.1f} s = {pending / secs:,.0f}/s; hybrid p50 "
                    f"{np.percentile(mine, 50) * 1e3:.1f} p99 {np.percentile(mine, 99) * 1e3:.1f}"
                    f" ms over {len(mine)} recalls  ({load()})")
        say("")
        for workers in (1, 2):
            say(f"{workers} worker(s): catch-up {np.median(rates[workers]):,.0f}/s (median); "
                f"hybrid during it p50 {np.percentile(lat[workers], 50) * 1e3:.1f} p99 "
                f"{np.percentile(lat[workers], 99) * 1e3:.1f} ms")
        say(f"two workers / one: catch-up {np.median(rates[2]) / np.median(rates[1]):.2f}x, "
            f"hybrid p99 {np.percentile(lat[2], 99) / np.percentile(lat[1], 99):.2f}x")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
