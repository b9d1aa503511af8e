"""`engram export` against `engram import` of the same data, and recall latency while an
export or a backup runs, side by side in one run.

1. Generates realistic memories (benchmarks/datagen.py) and imports them with
   `engram import` into a fresh `engram serve` (subprocess, free port, temp data dir).
2. Exports them with `engram export -o FILE` (records/s end to end, the exporter's peak
   RSS, the server's RSS sampled meanwhile) and checks every record came out.
3. Recall p50/p99 (engram.v1 Recall, text cues, one client in a loop): idle, during an
   export, during a backup.

Goals: export records/s >= 1x import's; recall p99 during export and backup <= 2x idle.

    python benchmarks/export_bench.py                 # 200,000 records
    python benchmarks/export_bench.py --n 1000000
    python benchmarks/export_bench.py --quick         # 20,000 records, a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _support  # noqa: E402
import datagen  # noqa: E402
import orjson  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "ENGRAM_NO_AUTOSTART": "1", "PYTHONUNBUFFERED": "1", "ENGRAM_NICE": "0"}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def timed(args: list[str], server_pid: int) -> dict[str, Any]:
    """Run an `engram` command; wall time, its peak RSS, the server's largest RSS seen."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "engram_cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    server_peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal server_peak
        while not done.wait(0.1):
            server_peak = max(server_peak, rss_mb(server_pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    # Read the pipes while waiting (a full pipe would stall the child); wait4 gives this
    # child's own peak RSS, where RUSAGE_CHILDREN would give the largest of them all.
    reader = threading.Thread(target=lambda: outputs.extend(
        (proc.stdout.read(), proc.stderr.read())))  # type: ignore[union-attr]
    outputs: list[bytes] = []
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"engram {args[2]} failed ({proc.returncode}): {outputs[1].decode()}")
    return {"wall": wall, "out": outputs[0], "rss_mb": usage.ru_maxrss / 1024,
            "server_rss_mb": server_peak}


def recall_latencies(address: str, cues: list[str], until: Callable[[], bool],
                     at_least: int) -> list[float]:
    import grpc

    from engram_cli.rpc import pb, svc

    lat: list[float] = []
    with grpc.insecure_channel(address) as ch:
        stub = svc.EngramServiceStub(ch)
        i = 0
        while len(lat) < at_least or not until():
            cue = cues[i % len(cues)]
            i += 1
            t = time.perf_counter()
            stub.Recall(pb.RecallRequest(cue=pb.Cue(semantic=pb.SemanticCue(query=cue)),
                                         max_results=10), timeout=60)
            lat.append(time.perf_counter() - t)
            if until() and len(lat) >= at_least:
                break
    return lat


def wait_for_indexer(address: str, timeout: float = 600.0) -> None:
    """Until the vector index holds every memory: its embedding work is not idle."""
    import grpc

    from engram_cli.rpc import pb, svc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
        stub = svc.EngramServiceStub(ch)
        while time.monotonic() < deadline:
            resp = stub.Introspect(pb.IntrospectRequest(), timeout=60)
            if resp.metrics.get("vector_index.pending", 0.0) == 0.0:
                return
            time.sleep(0.5)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def during(address: str, cues: list[str], args: list[str]) -> tuple[list[float], float]:
    """Recall in a loop while `engram ARGS` runs; (latencies, its wall seconds)."""
    proc = subprocess.Popen([sys.executable, "-m", "engram_cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    started = time.perf_counter()
    lat = recall_latencies(address, cues, lambda: proc.poll() is not None, 20)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"engram {args[2]} failed: {err.decode()}")
    return lat, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.n
    with tempfile.TemporaryDirectory(prefix="engram-export-bench-") as tmp:
        work = Path(tmp)
        path = work / "memories.jsonl"
        datagen.write_jsonl(path, n)
        server, address = _support.start_server(work / "data", ENV)
        try:
            imp = timed(["--server", address, "import", str(path), "--quiet", "--json"],
                        server.pid)
            out = work / "export.jsonl"
            exp = timed(["--server", address, "export", "-o", str(out), "--quiet"],
                        server.pid)
            with open(out, "rb") as f:
                first = orjson.loads(f.readline())
                exported = 1 + sum(1 for _ in f)
            if exported != n:
                raise SystemExit(f"export wrote {exported} records, expected {n}")
            cues = datagen.cue_texts(200)
            wait_for_indexer(address)
            # Rounds of idle, export, idle, backup, so that the machine's other load falls
            # on both sides alike; the same number of calls idle as under load.
            idle: list[float] = []
            exp_lat: list[float] = []
            bk_lat: list[float] = []
            exp_wall = bk_wall = 0.0
            for r in range(args.rounds):
                lat, wall = during(address, cues, ["--server", address, "export", "-o",
                                                   str(work / f"again{r}.jsonl"), "--quiet"])
                exp_lat += lat
                exp_wall += wall
                idle += recall_latencies(address, cues, lambda: True, len(lat))
                lat, wall = during(address, cues, ["--server", address, "backup",
                                                   str(work / f"backup{r}")])
                bk_lat += lat
                bk_wall += wall
                idle += recall_latencies(address, cues, lambda: True, len(lat))
        finally:
            _support.stop_server(server)
    imp_rate, exp_rate = n / imp["wall"], n / exp["wall"]
    print(f"records: {n:,} (fields of the first exported: {', '.join(first)})")
    print(f"{'':34}{'wall s':>9}{'records/s':>12}{'client RSS MB':>15}{'server RSS MB':>15}")
    print(f"{'engram import':34}{imp['wall']:>9.2f}{imp_rate:>12,.0f}{imp['rss_mb']:>15.0f}"
          f"{imp['server_rss_mb']:>15.0f}")
    print(f"{'engram export -o FILE':34}{exp['wall']:>9.2f}{exp_rate:>12,.0f}"
          f"{exp['rss_mb']:>15.0f}{exp['server_rss_mb']:>15.0f}")
    print(f"export / import: {exp_rate / imp_rate:.2f}x (goal >= 1x)")
    print()
    print(f"{'recall':34}{'calls':>9}{'p50 ms':>12}{'p99 ms':>15}{'p99 / idle':>15}")
    base = pct(idle, 0.99)
    for label, lat, wall in (("idle", idle, 0.0), ("during export", exp_lat, exp_wall),
                             ("during backup", bk_lat, bk_wall)):
        extra = f" ({wall:.1f} s in all)" if wall else ""
        print(f"{label + extra:34}{len(lat):>9}{pct(lat, 0.5):>12.2f}{pct(lat, 0.99):>15.2f}"
              f"{pct(lat, 0.99) / base:>14.2f}x")
    print("goal: p99 during export and backup <= 2x idle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
