"""Each shipped tuning profile, side by side, on one server with a realistic store.

Starts its own `engram serve` (free port, temp data dir), loads realistic memories
(benchmarks/datagen.py) with associations between them, then for each profile:
applies it with `engram tune --profile NAME` (the server half through the settings RPC,
the client half into a temp config dir), measures recall latency over realistic cues
(Recall RPCs, so the client's recall cache plays no part), and imports fresh records with
`engram import` under the profile's client settings.

    python benchmarks/tune_bench.py            # 20,000 memories, 1,000 recalls, 30,000 imported
    python benchmarks/tune_bench.py --quick    # a smoke run

Claims checked at the end: low-latency has the lowest recall p99; high-throughput the
highest import rate. The machine is shared while developing: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support  # noqa: E402
import datagen  # noqa: E402
import orjson  # noqa: E402

from engram_cli.client.api import EngramClient  # noqa: E402
from engram_cli.client.settings_rpc import RemoteSettings  # noqa: E402
from engram_cli.config import Connection  # noqa: E402
from engram_cli.engine.model import content_id  # noqa: E402
from engram_cli.engine.settings import SPEC_BY_KEY  # noqa: E402
from engram_cli.rpc import pb  # noqa: E402
from engram_cli.tuning import profiles as profile_lib  # noqa: E402


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "engram_cli", *args], capture_output=True,
                          text=True, env=env, timeout=3600)
    if done.returncode not in (0, 3):
        raise SystemExit(f"engram {' '.join(args)} failed ({done.returncode}): "
                         f"{done.stderr.strip()}")
    return done


def load_store(client: EngramClient, env: dict[str, str], path: Path, n: int, links: int
               ) -> None:
    """n realistic memories through `engram import` (its own defaults), then `links`
    associations each; group commit while loading (each profile sets its own later)."""
    RemoteSettings(client).apply({"durability": "group", "queue_capacity": 100_000})
    datagen.write_jsonl(path, n)
    cli(env, "--server", client.address, "import", str(path))
    # Ids are content ids (the shared contract), so they need no answer from the server.
    ids = [content_id(r["content"], b"") for r in datagen.generate_records(n)]

    def associate(pair: tuple[str, str, float]) -> None:
        src, dst, strength = pair
        client.call(client.stub.Associate, pb.AssociateRequest(
            source_memory=src, target_memory=dst, strength=strength), "Associate")

    with ThreadPoolExecutor(8) as pool:
        for _ in pool.map(associate, datagen.association_pairs(ids, links), chunksize=64):
            pass


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def recall_times(client: EngramClient, cues: list[str]) -> list[float]:
    """Milliseconds per Recall, spreading activation on: the server's max_hops, threshold
    and recall budget only come into play when activation spreads."""
    for cue in cues[:5]:  # warm the page cache and the server's readers
        client.recall_text("", cue, limit=10, spread_activation=True)
    times = []
    for cue in cues:
        started = time.perf_counter()
        client.recall_text("", cue, limit=10, spread_activation=True)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def import_seconds(env: dict[str, str], address: str, path: Path) -> tuple[int, float]:
    """(records imported, seconds) of one `engram import`, from its own summary when it
    gives one (so that the interpreter's start-up is not counted)."""
    started = time.perf_counter()
    done = cli(env, "--server", address, "import", str(path), "--json")
    wall = time.perf_counter() - started
    try:
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        return int(summary["imported"]), float(summary.get("seconds") or wall)
    except (ValueError, IndexError, KeyError, TypeError):
        return sum(1 for _ in open(path, "rb")), wall


def apply_profile(env: dict[str, str], address: str, name: str) -> None:
    cli(env, "--server", address, "tune", "--profile", name, "--json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="memories in the store")
    parser.add_argument("--links", type=int, default=2, help="associations per memory")
    parser.add_argument("--recalls", type=int, default=1_000,
                        help="recalls per profile (a p99 needs many)")
    parser.add_argument("--import-n", type=int, default=30_000,
                        help="fresh records imported per profile")
    parser.add_argument("--rounds", type=int, default=3,
                        help="passes over the profiles (noise spreads over all of them)")
    parser.add_argument("--profiles", nargs="*", help="default: every shipped profile")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.recalls, args.import_n, args.rounds = 2_000, 200, 4_000, 2
    names = args.profiles or list(profile_lib.available())

    with tempfile.TemporaryDirectory(prefix="tune-bench-") as tmp:
        tmpdir = Path(tmp)
        env = {**os.environ, "ENGRAM_CONFIG_DIR": str(tmpdir / "config"),
               "ENGRAM_CACHE_DIR": str(tmpdir / "cache"), "ENGRAM_NO_AUTOSTART": "1",
               "PYTHONPATH": os.pathsep.join(
                   p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        proc, address = _support.start_server(tmpdir / "data", env)
        try:
            client = EngramClient(Connection(server=address), autostart=False)
            started = time.perf_counter()
            load_env = {**env, "ENGRAM_CONFIG_DIR": str(tmpdir / "load-config")}
            load_store(client, load_env, tmpdir / "store.jsonl", args.records, args.links)
            print(f"store: {args.records:,} memories, ~{args.records * args.links:,} "
                  f"associations, loaded in {time.perf_counter() - started:.1f} s; "
                  f"server {address}", flush=True)
            cues = datagen.cue_texts(args.recalls, seed=1, n=args.records)
            results: dict[str, dict[str, Any]] = {
                name: {"times": [], "imported": 0, "seconds": 0.0}
                for name in names}
            # Rounds, each visiting every profile in a rotated order, so that noise from a
            # shared machine spreads over all profiles alike. All recalls come first, so
            # that every profile's recalls see the same store.
            for r in range(args.rounds):
                for name in names[r:] + names[:r]:
                    apply_profile(env, address, name)
                    results[name]["times"] += recall_times(client, cues[r::args.rounds])
            for name in names:
                times = results[name]["times"]
                results[name]["p50_ms"] = statistics.median(times)
                results[name]["p99_ms"] = percentile(times, 0.99)
                print(f"  {name}: recall p50 {results[name]['p50_ms']:.2f} ms, "
                      f"p99 {results[name]['p99_ms']:.2f} ms", flush=True)
            chunk = max(1, args.import_n // args.rounds)
            start = args.records
            for r in range(args.rounds):
                for name in names[r:] + names[:r]:
                    apply_profile(env, address, name)
                    path = tmpdir / "import.jsonl"
                    with open(path, "wb") as f:
                        for rec in datagen.generate_records(chunk, start=start):
                            f.write(orjson.dumps(rec) + b"\n")
                    start += chunk
                    n, seconds = import_seconds(env, address, path)
                    results[name]["imported"] += n
                    results[name]["seconds"] += seconds
            for name in names:
                r_ = results[name]
                r_["rate"] = r_["imported"] / r_["seconds"] if r_["seconds"] else 0.0
                print(f"  {name}: import {r_['rate']:,.0f} records/s", flush=True)
            client.close()
        finally:
            _support.stop_server(proc)

    base = results.get("balanced") or results[names[0]]
    base_name = "balanced" if "balanced" in results else names[0]
    print()
    print(f"{'profile':<16} {'recall p50':>11} {'recall p99':>11} {'p99 vs ' + base_name:>16}"
          f" {'import rec/s':>13} {'rate vs ' + base_name:>17}")
    for name in names:
        r = results[name]
        pending = [k for k in profile_lib.load(name).server if SPEC_BY_KEY[k].restart_required]
        note = f"  (not measured: {', '.join(pending)}, which needs a restart)" if pending \
            else ""
        print(f"{name:<16} {r['p50_ms']:>9.2f}ms {r['p99_ms']:>9.2f}ms "
              f"{r['p99_ms'] / base['p99_ms']:>15.2f}x {r['rate']:>13,.0f} "
              f"{r['rate'] / base['rate']:>16.2f}x{note}")
    print()
    verdicts = []
    if "low-latency" in results:
        best = min(results, key=lambda n: results[n]["p99_ms"])
        verdicts.append(("low-latency has the lowest recall p99", best == "low-latency"))
    if "high-throughput" in results:
        best = max(results, key=lambda n: results[n]["rate"])
        verdicts.append(("high-throughput has the highest import rate",
                         best == "high-throughput"))
    for claim, held in verdicts:
        print(f"{'OK' if held else 'NOT MET'}: {claim}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
