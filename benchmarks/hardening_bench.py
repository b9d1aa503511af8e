"""The server under hostile and heavy load: RSS before and after a fuzz of malformed and
random requests and after a write flood, and health/Recall latency with idle streams open.

It starts its own `engram serve` (port 0, fresh data dir) and runs, in order:
  1. baseline: health and Recall latency, RSS;
  2. idle streams: --streams StreamingRecall/StreamingRemember streams opened over 10
     connections that send nothing, then health and Recall latency again (and how many
     streams the server refused RESOURCE_EXHAUSTED);
  3. fuzz: --fuzz requests (garbage bytes to every method, random and oversized fields,
     invalid spaces, nested JSON settings, streams cancelled half way) from 8 threads;
  4. write flood: 4 threads of BatchRemember (500 memories each) for --flood-seconds.
RSS (VmRSS of the server process) is printed after each phase and after a settle pause,
split into anonymous memory (the heaps: what a leak or an unreturned free list holds) and
file pages (shared libraries, SQLite's -shm: the kernel can drop them). --engine sets the
server's [engine] settings, to compare variants (embedding_model, hot_max_bytes, ...).

    python benchmarks/hardening_bench.py                    # 20,000 fuzz, 60 s flood
    python benchmarks/hardening_bench.py --fuzz 2000 --flood-seconds 5   # a quick run
    python benchmarks/hardening_bench.py --fuzz 3000 --engine 'embedding_model="none"'
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks._support import start_server, stop_server
from engram_cli.contract import ENGRAM_SERVICE, EXTENSION_SERVICE, method_path
from engram_cli.rpc import ext, ext_svc, pb, svc

WORDS = ("lighthouse fog keeper harbour ledger kettle studio garden weather orbit comet "
         "violin archive river lantern pepper quartz meadow signal engine").split()
METHODS = [(ENGRAM_SERVICE, m) for m in ("Remember", "Recall", "Forget", "Recognize",
                                         "Associate", "Consolidate", "Introspect")] + [
    (EXTENSION_SERVICE, m) for m in ("BatchRemember", "ApplySettings", "GetSettings",
                                     "DropSpace")]


def rss_mb(pid: int) -> tuple[float, float, float]:
    """(VmRSS, RssAnon, RssFile) in MB. Anonymous pages are the heap's (what a leak or
    an unreturned free list holds); file pages are mapped files (the shared libraries,
    SQLite's -shm), which the kernel can drop."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0]) / 1024
    return (fields.get("VmRSS", 0.0), fields.get("RssAnon", 0.0),
            fields.get("RssFile", 0.0) + fields.get("RssShmem", 0.0))


def smaps(pid: int) -> dict[str, float]:
    """RSS in MB by kind of mapping (/proc/<pid>/smaps), to say what holds the memory:
    [heap] (the main malloc arena), 64 MiB-aligned anonymous mappings (glibc's thread
    arenas), other anonymous mappings (large mallocs, Python's pymalloc arenas, thread
    stacks), SQLite's -shm, the database/WAL and the shared libraries (file pages)."""
    out: Counter = Counter()
    kind = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(None, 5)
        if "-" in first[0] and not first[0].endswith(":"):
            start, end = (int(x, 16) for x in first[0].split("-"))
            name = first[5] if len(first) > 5 else ""
            if name == "[heap]":
                kind = "anon [heap]"
            elif name.endswith("-shm"):
                kind = "file sqlite -shm"
            elif name.endswith((".db", "-wal")) or "/vectors/" in name:
                kind = "file store (db, wal, vectors)"
            elif name.startswith("/"):
                kind = "file libraries"
            elif name:
                kind = f"other {name}"
            elif end - start == 64 << 20 or (start % (64 << 20) == 0 and end - start < 64 << 20
                                              and end - start >= 128 << 10):
                kind = "anon thread arenas (64 MiB)"
            else:
                kind = "anon other mmap"
        elif first[0] == "Rss:":
            out[kind] += int(first[1]) / 1024
    return dict(out.most_common())


def counted(address: str) -> dict[str, float]:
    """The server's own counts (Introspect): SQLite's bytes, the hot tier's, the vector
    index's, the read connections open."""
    with grpc.insecure_channel(address) as channel:
        return dict(svc.EngramServiceStub(channel).Introspect(
            pb.IntrospectRequest(), timeout=30).metrics)


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(words))


def space(rng: random.Random) -> str:
    return rng.choice(["", "default", "fuzz", f"sp-{rng.randrange(50)}", "sec\n", "A!",
                       "x" * rng.randrange(1, 200)])


def latencies(channel: grpc.Channel, rounds: int = 20) -> tuple[float, float, str]:
    """(p50 ms, max ms, failures) of health Check + Recall pairs."""
    health = health_pb2_grpc.HealthStub(channel)
    stub = svc.EngramServiceStub(channel)
    took, failed = [], Counter()
    for _ in range(rounds):
        t = time.perf_counter()
        try:
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            stub.Recall(pb.RecallRequest(cue=pb.Cue(semantic=pb.SemanticCue(
                query="lighthouse fog"))), timeout=5)
        except grpc.RpcError as err:
            failed[err.code().name] += 1
        took.append((time.perf_counter() - t) * 1000)
    return statistics.median(took), max(took), ", ".join(f"{k} {v}" for k, v in
                                                          failed.items()) or "none"


def idle_streams(address: str, n: int) -> tuple[float, float, str, Counter]:
    channels = [grpc.insecure_channel(address) for _ in range(10)]
    stop = threading.Event()

    def nothing() -> Any:
        stop.wait()
        return
        yield

    calls = []
    for i in range(n):
        stub = svc.EngramServiceStub(channels[i % 10])
        calls.append((stub.StreamingRecall if i % 2 else stub.StreamingRemember)(nothing()))
    time.sleep(3)
    with grpc.insecure_channel(address) as probe:
        p50, worst, failed = latencies(probe)
    codes = Counter(c.code().name if c.done() else "open" for c in calls)
    stop.set()
    for c in calls:
        c.cancel()
    for ch in channels:
        ch.close()
    return p50, worst, failed, codes


def fuzz_one(rng: random.Random, channel: grpc.Channel, kinds: tuple[int, ...] = tuple(range(9))
             ) -> str:
    stub, ext_stub = svc.EngramServiceStub(channel), ext_svc.ExtensionServiceStub(channel)
    kind = rng.choice(kinds)
    try:
        if kind == 0:
            service, method = rng.choice(METHODS)
            channel.unary_unary(method_path(service, method))(
                rng.randbytes(rng.randrange(1, 4096)), timeout=10)
        elif kind == 1:
            stub.Remember(pb.RememberRequest(memory_space_id=space(rng), memory=pb.Memory(
                content=text(rng, rng.choice([0, 5, 50, 3000])),
                tags=[text(rng, 1) for _ in range(rng.randrange(5))],
                metadata={text(rng, 1): text(rng, rng.randrange(30)) for _ in range(3)})),
                timeout=10)
        elif kind == 2:
            stub.Recall(pb.RecallRequest(memory_space_id=space(rng), max_results=rng.choice(
                [0, 1, 10, 10_000, 2**31 - 1]), cue=pb.Cue(semantic=pb.SemanticCue(
                    query=text(rng, rng.choice([1, 5, 500]))))), timeout=10)
        elif kind == 3:
            ext_stub.ApplySettings(ext.ApplySettingsRequest(values_json=rng.choice([
                {"max_hops": "[" * 50_000}, {"max_hops": "99"}, {"nope": "1"},
                {"threshold": '"x"'}]), dry_run=rng.random() < 0.5), timeout=10)
        elif kind == 4:
            ext_stub.BatchRemember(ext.BatchRememberRequest(memory_space_id=space(rng),
                                   memories=[pb.Memory(content=text(rng, 20))
                                             for _ in range(rng.randrange(1, 50))]),
                                   timeout=10)
        elif kind == 5:
            stub.Recognize(pb.RecognizeRequest(memory_space_id=space(rng),
                                               content=text(rng, 10)), timeout=10)
        elif kind == 6:
            call = stub.StreamingRecall(iter([pb.RecallRequest(cue=pb.Cue(
                semantic=pb.SemanticCue(query=text(rng, 3))))] * rng.randrange(1, 5)),
                timeout=10)
            next(call, None)
            call.cancel()
        elif kind == 7:
            stub.Associate(pb.AssociateRequest(memory_space_id=space(rng),
                                               source_memory=text(rng, 1),
                                               target_memory=text(rng, 1), strength=rng.random()),
                           timeout=10)
        else:
            stub.Introspect(pb.IntrospectRequest(memory_space_id=space(rng)), timeout=10)
        return "OK"
    except grpc.RpcError as err:
        return err.code().name


def fuzz(address: str, n: int, seed: int) -> Counter:
    channels = [grpc.insecure_channel(address) for _ in range(4)]
    codes: Counter = Counter()
    lock = threading.Lock()

    def worker(k: int) -> None:
        rng = random.Random(seed * 100 + k)
        for i in range(n // 8):
            code = fuzz_one(rng, channels[(k + i) % 4])
            with lock:
                codes[code] += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    for ch in channels:
        ch.close()
    return codes


def flood(address: str, seconds: float) -> tuple[int, Counter]:
    stored, codes = [0], Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(k: int) -> None:
        rng = random.Random(k)
        with grpc.insecure_channel(address) as channel:
            ext_stub = ext_svc.ExtensionServiceStub(channel)
            while time.monotonic() < deadline:
                try:
                    resp = ext_stub.BatchRemember(ext.BatchRememberRequest(
                        memories=[pb.Memory(content=text(rng, 40)) for _ in range(500)],
                        compact=True), timeout=30)
                    with lock:
                        stored[0] += resp.stored
                except grpc.RpcError as err:
                    with lock:
                        codes[err.code().name] += 1

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    return stored[0], codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fuzz", type=int, default=20_000, help="fuzz requests (default 20000)")
    ap.add_argument("--flood-seconds", type=float, default=60.0,
                    help="length of the write flood (default 60)")
    ap.add_argument("--streams", type=int, default=1000, help="idle streams (default 1000)")
    ap.add_argument("--settle", type=float, default=5.0, help="pause before each RSS reading")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE",
                    help="an [engine] setting for the server's engram.toml, as TOML "
                         '(e.g. --engine embedding_model=\'"none"\'); repeatable')
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir(mode=0o700)
        if args.engine:
            config = data / "engram.toml"
            config.write_text("[engine]\n" + "\n".join(args.engine) + "\n")
            config.chmod(0o600)
        proc, address = start_server(data)
        pid = proc.pid
        rows: list[tuple[str, tuple[float, float, float], str]] = []
        try:
            with grpc.insecure_channel(address) as channel:
                stub = svc.EngramServiceStub(channel)
                stub.Remember(pb.RememberRequest(memory=pb.Memory(
                    content="the lighthouse keeper logs the fog at dawn")))
                # The embedding model loads with the first memory: start after it.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not stub.Introspect(
                        pb.IntrospectRequest()).metrics.get("vector_index.embedded"):
                    time.sleep(0.2)
                time.sleep(args.settle)
                p50, worst, failed = latencies(channel)
            start_rss = rss_mb(pid)[0]
            kinds0, metrics0 = smaps(pid), counted(address)
            rows.append(("start", rss_mb(pid), f"health+Recall p50 {p50:.1f} ms, max "
                         f"{worst:.1f} ms, failed: {failed}"))
            p50, worst, failed, codes = idle_streams(address, args.streams)
            time.sleep(args.settle)
            rows.append((f"{args.streams} idle streams", rss_mb(pid),
                         f"health+Recall p50 {p50:.1f} ms, max {worst:.1f} ms, failed: "
                         f"{failed}; streams: {dict(codes)}"))
            t = time.perf_counter()
            codes = fuzz(address, args.fuzz, args.seed)
            took = time.perf_counter() - t
            rows.append((f"fuzz peak ({args.fuzz:,} in {took:.0f} s)", rss_mb(pid),
                         ", ".join(f"{k} {v}" for k, v in codes.most_common())))
            time.sleep(args.settle)
            rows.append(("after fuzz, settled", rss_mb(pid), ""))
            stored, errors = flood(address, args.flood_seconds)
            rows.append((f"flood peak ({args.flood_seconds:g} s)", rss_mb(pid),
                         f"{stored:,} memories, {stored / args.flood_seconds:,.0f}/s; "
                         f"errors: {dict(errors) or 'none'}"))
            time.sleep(args.settle)
            rows.append(("after flood, settled", rss_mb(pid), ""))
            with grpc.insecure_channel(address) as channel:
                p50, worst, failed = latencies(channel)
            rows.append(("end", rss_mb(pid), f"health+Recall p50 {p50:.1f} ms, max "
                         f"{worst:.1f} ms, failed: {failed}"))
            kinds, metrics = smaps(pid), counted(address)
        finally:
            stop_server(proc)
    print(f"{'phase':<32} {'RSS MB':>8} {'anon':>6} {'file':>6} {'x start':>8}  notes")
    for name, (rss, anon, file), notes in rows:
        print(f"{name:<32} {rss:8.0f} {anon:6.0f} {file:6.0f} {rss / start_rss:8.2f}  {notes}")
    print("RSS MB by mapping, start -> end: " + ", ".join(
        f"{k} {kinds0.get(k, 0):.0f} -> {v:.0f}" for k, v in kinds.items() if v >= 1))
    print("what the server counts, MB, start -> end: " + ", ".join(
        f"{k} {metrics0.get(k, 0) / 2**20:.0f} -> {metrics.get(k, 0) / 2**20:.0f}"
        for k in ("sqlite.bytes", "tier.hot.bytes", "vector_index.bytes"))
          + f"; readers open {metrics.get('readers.open', 0):.0f}")
    print(f"(server pid {pid}; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
