"""`engram import` against its peers, side by side in one run.

Generates realistic memories (benchmarks/datagen.py), then loads the same JSONL file:

1. `engram import` into a fresh `engram serve` (its own subprocess, free port, temp data
   dir, default settings: durability "fsync", FTS5 index), end to end: process start to
   exit, every record acknowledged as committed.
2. sqlite-utils: `insert --nl` then `enable-fts` on the content column, a local loader
   into an indexed SQLite file (the peer a user might pick).
3. The naive client: one `Remember` call per record, over the first --naive-n records.

Prints records/s of each, the ratios, the importer's peak RSS and the CPU each side spent
per record. Goals (2-core machine): >= 50,000 records/s end to end, >= 1.5x sqlite-utils,
importer RSS < 200 MB at 1,000,000 records.

    python benchmarks/import_bench.py                 # 200,000 records
    python benchmarks/import_bench.py --n 1000000
    python benchmarks/import_bench.py --quick         # 20,000 records, a smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _support  # noqa: E402
import datagen  # noqa: E402
import orjson  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "ENGRAM_NO_AUTOSTART": "1", "PYTHONUNBUFFERED": "1"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, from /proc (Linux)."""
    try:
        return _support.proc_cpu(f"/proc/{pid}/stat")[1]
    except (OSError, IndexError, ValueError):
        return float("nan")


def start_server(data_dir: Path, durability: str = "fsync") -> tuple[subprocess.Popen, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    if durability != "fsync":
        (data_dir / "engram.toml").write_text(f'[engine]\ndurability = "{durability}"\n')
    return _support.start_server(data_dir, ENV)


def count_on(address: str) -> int:
    import grpc

    from engram_cli.rpc import pb, svc

    with grpc.insecure_channel(address) as ch:
        resp = svc.EngramServiceStub(ch).Introspect(
            pb.IntrospectRequest(include_statistics=True), timeout=30)
    return int(resp.statistics.total_memories)


def run_engram_import(path: Path, n: int, work: Path, extra: list[str],
                      durability: str) -> dict[str, Any]:
    server, address = start_server(work / "engram-data", durability)
    try:
        server_cpu0 = cpu_seconds(server.pid)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "engram_cli", "--server", address, "import", str(path),
             "--json", "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out = proc.stdout.read() if proc.stdout else b""
        err = proc.stderr.read() if proc.stderr else b""
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"engram import failed: {err.decode()}")
        server_cpu = cpu_seconds(server.pid) - server_cpu0
        summary = orjson.loads(out.strip().splitlines()[-1])
        stored = count_on(address)
        if stored != n:
            raise SystemExit(f"engram import: the server holds {stored}, expected {n}")
        return {
            "wall": wall, "summary": summary, "rss_mb": usage.ru_maxrss / 1024,
            "client_cpu": usage.ru_utime + usage.ru_stime, "server_cpu": server_cpu,
        }
    finally:
        _support.stop_server(server)


def run_sqlite_utils(path: Path, work: Path) -> float:
    db = work / "sqlite-utils.db"
    started = time.perf_counter()
    for args in (["insert", str(db), "memories", str(path), "--nl"],
                 ["enable-fts", str(db), "memories", "content"]):
        subprocess.run([sys.executable, "-m", "sqlite_utils", *args], check=True, env=ENV,
                       stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_naive(path: Path, n: int, work: Path) -> float:
    """The seed's slow pattern: one Remember call per record, one after another."""
    import grpc

    from engram_cli.ingest.mapping import Encoder
    from engram_cli.rpc import pb, svc

    server, address = start_server(work / "naive-data")
    try:
        enc = Encoder()
        with open(path, "rb") as f:
            rows = [orjson.loads(next(f)) for _ in range(n)]
        with grpc.insecure_channel(address) as ch:
            stub = svc.EngramServiceStub(ch)
            stub.Introspect(pb.IntrospectRequest(), timeout=30)
            started = time.perf_counter()
            for row in rows:
                stub.Remember(pb.RememberRequest(memory=enc.memory(row)), timeout=30)
            return time.perf_counter() - started
    finally:
        _support.stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="records (default 200,000)")
    parser.add_argument("--naive-n", type=int, default=2_000,
                        help="records for the one-call-per-record loop (default 2,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 records, 500 naive")
    parser.add_argument("--skip-sqlite-utils", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the import and of sqlite-utils, interleaved; the median "
                             "is reported (default 3)")
    parser.add_argument("--durability", choices=("fsync", "group"), default="fsync",
                        help="the server's durability setting (default fsync, the default)")
    parser.add_argument("--import-args", default="",
                        help="extra `engram import` flags, e.g. '--pool 2 --batch 2000'")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.naive_n, args.repeat = 20_000, 500, 1
    args.repeat = max(1, args.repeat)
    work = Path(tempfile.mkdtemp(prefix="engram-import-bench-"))
    try:
        path = work / "memories.jsonl"
        t = time.perf_counter()
        datagen.write_jsonl(path, args.n)
        size_mb = path.stat().st_size / 1e6
        print(f"data: {args.n:,} records, {size_mb:.1f} MB (generated in "
              f"{time.perf_counter() - t:.1f} s); {os.cpu_count()} cores; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)

        # This machine's speed drifts by +-20% from one run to the next: each variant runs
        # --repeat times, interleaved, and the median run is the one reported.
        engs, sqs = [], []
        for i in range(args.repeat):
            eng = run_engram_import(path, args.n, work / f"run{i}", args.import_args.split(),
                                    args.durability)
            engs.append(eng)
            s = eng["summary"]
            print(f"engram import run {i + 1} (durability {args.durability}): "
                  f"{eng['wall']:.2f} s wall ({s['records_per_second']:,.0f}/s inside the run), "
                  f"batch p50 {s['batch_p50_ms']:.0f} ms p99 {s['batch_p99_ms']:.0f} ms, "
                  f"{s['batches']} batches, RSS {eng['rss_mb']:.0f} MB; CPU per record: "
                  f"importer {eng['client_cpu'] / args.n * 1e6:.1f} us, server "
                  f"{eng['server_cpu'] / args.n * 1e6:.1f} us", flush=True)
            if not args.skip_sqlite_utils:
                sqs.append(run_sqlite_utils(path, work / f"run{i}"))
                print(f"sqlite-utils run {i + 1}: {sqs[-1]:.2f} s", flush=True)
            shutil.rmtree(work / f"run{i}", ignore_errors=True)
        eng = sorted(engs, key=lambda e: e["wall"])[len(engs) // 2]
        eng_rate = args.n / eng["wall"]
        rss_mb = max(e["rss_mb"] for e in engs)
        rows = [("engram import (end to end)", args.n, eng["wall"], eng_rate)]
        sqlite_rate = None
        if sqs:
            sq = sorted(sqs)[len(sqs) // 2]
            sqlite_rate = args.n / sq
            rows.append(("sqlite-utils insert + enable-fts", args.n, sq, sqlite_rate))
        nv = run_naive(path, args.naive_n, work)
        naive_rate = args.naive_n / nv
        rows.append(("one Remember per record", args.naive_n, nv, naive_rate))

        print()
        print(f"{'variant (median of ' + str(args.repeat) + ')':<34} {'records':>10} "
              f"{'seconds':>9} {'records/s':>11}")
        for name, n, secs, rate in rows:
            print(f"{name:<34} {n:>10,} {secs:>9.2f} {rate:>11,.0f}")
        print()
        if sqlite_rate:
            print(f"engram import / sqlite-utils: {eng_rate / sqlite_rate:.2f}x (goal >= 1.5x)")
        print(f"engram import / one Remember per record: {eng_rate / naive_rate:.1f}x")
        print(f"engram import: {eng_rate:,.0f} records/s end to end (goal >= 50,000); "
              f"importer peak RSS {rss_mb:.0f} MB (goal < 200 MB at 1,000,000)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
