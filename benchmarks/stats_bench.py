"""Times `engram stats` (whole store and one space) on stores of 1 and 3 million memories,
against the scan the counters replaced, side by side.

For each size it builds a store in-process (Store.remember_many, 20,000 per commit, 4
spaces), starts `engram serve` on it and measures, interleaved over --rounds rounds:
  - `engram stats --json` as a process (what a user waits for), whole store and one space;
  - the Introspect RPC alone (the server's part);
  - in-process: the counters' query (engine.rows.counts) against the old full scan.

    python benchmarks/stats_bench.py                 # 1M and 3M (builds take minutes)
    python benchmarks/stats_bench.py --sizes 100000  # a quick run
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._support import start_server, stop_server

SPACES = ("alpha", "beta", "gamma", "delta")
BATCH = 20_000


def build(data_dir: Path, n: int) -> float:
    from engram_cli.engine.model import MemoryRecord
    from engram_cli.engine.settings import Settings
    from engram_cli.engine.store import Store

    t0 = time.perf_counter()
    store = Store(data_dir, Settings().replace({"consolidation_interval_s": 0.0,
                                                 "durability": "group"}))
    try:
        for start in range(0, n, BATCH):
            space = SPACES[(start // BATCH) % len(SPACES)]
            store.remember_many(space, [
                MemoryRecord(id=f"m{i}", content=f"memory {i} of the benchmark, item {i % 997}",
                             confidence=0.5 + (i % 50) / 100, memory_type=i % 4,
                             created_at=1_600_000_000.0 + i)
                for i in range(start, min(n, start + BATCH))])
    finally:
        store.close()
    return time.perf_counter() - t0


def old_scan(conn: sqlite3.Connection, space: str | None) -> None:
    """The queries stats ran before the counters (one full pass each)."""
    where, args = "WHERE suppressed = 0", []
    if space is not None:
        where, args = where + " AND space = ?", [space]
    conn.execute(f"SELECT count(*), avg(activation), avg(confidence), min(created_at), "
                 f"max(created_at) FROM memories {where}", args).fetchone()
    for col in ("memory_type", "state", "space"):
        conn.execute(f"SELECT {col}, count(*) FROM memories {where} GROUP BY {col}",
                     args).fetchall()
    conn.execute("SELECT count(*) FROM associations").fetchone()
    conn.execute("SELECT count(*) FROM memories WHERE suppressed = 1").fetchone()


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def measure(data_dir: Path, rounds: int) -> dict[str, list[float]]:
    import grpc

    from engram_cli.engine import rows
    from engram_cli.engine.store import DB_NAME
    from engram_cli.rpc import pb, svc

    proc, address = start_server(data_dir)
    env = {**os.environ, "ENGRAM_NO_AUTOSTART": "1"}
    cli = [sys.executable, "-m", "engram_cli", "--server", address, "stats", "--json"]
    out: dict[str, list[float]] = {}
    try:
        channel = grpc.insecure_channel(address)
        stub = svc.EngramServiceStub(channel)
        conn = sqlite3.connect(data_dir / DB_NAME)
        for _ in range(rounds):
            for label, space in (("store", None), ("space", SPACES[0])):
                args = cli + (["--space", space] if space else [])
                out.setdefault(f"cli {label}", []).append(timed(lambda a=args: subprocess.run(
                    a, env=env, check=True, capture_output=True)))
                req = pb.IntrospectRequest(memory_space_id=space or "",
                                           include_statistics=True)
                out.setdefault(f"rpc {label}", []).append(
                    timed(lambda r=req: stub.Introspect(r, timeout=120)))
                out.setdefault(f"counters {label}", []).append(
                    timed(lambda s=space: rows.counts(conn, s)))
                out.setdefault(f"old scan {label}", []).append(
                    timed(lambda s=space: old_scan(conn, s)))
        conn.close()
        channel.close()
    finally:
        stop_server(proc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,3000000")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stats-bench-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            data = Path(tmp) / f"n{n}"
            secs = build(data, n)
            print(f"\n{n:,} memories in {len(SPACES)} spaces (built in {secs:.0f} s, "
                  f"{n / secs:,.0f}/s); medians of {args.rounds} interleaved rounds, ms:")
            res = measure(data, args.rounds)
            for label in ("store", "space"):
                new, old = (statistics.median(res[f"counters {label}"]),
                            statistics.median(res[f"old scan {label}"]))
                cli, rpc = (statistics.median(res[f"cli {label}"]),
                            statistics.median(res[f"rpc {label}"]))
                print(f"  {label:5}  engram stats (process) {cli:8.1f}"
                      f"   Introspect RPC {rpc:7.2f}"
                      f"   counters {new:7.2f}   old scan {old:8.1f}   ({old / new:,.0f}x)")


if __name__ == "__main__":
    main()
