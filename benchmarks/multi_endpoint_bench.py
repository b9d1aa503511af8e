"""Two local servers behind one `--server a,b` against one server, side by side.

Each round starts fresh servers (own data dirs, free ports), then, interleaved (one
server, then two, the order swapped every round):

1. `engram import` of the same JSONL file, end to end (process start to exit, every
   record acknowledged as committed): records/s;
2. `engram recall -` of the same cues piped in (`--no-cache`), over the data imported:
   cues/s.

Prints each round's numbers, the medians and the two-over-one ratios. On a machine with
few cores the servers and the client share them, so two servers can only win where one
server leaves cores idle (the importer's commit wait, recall's per-cue latency); the
ratio says how much of that there is here, not what two machines would give.

    python benchmarks/multi_endpoint_bench.py              # 60,000 records, 3 rounds
    python benchmarks/multi_endpoint_bench.py --quick      # 10,000 records, 2 rounds
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _support  # noqa: E402
import datagen  # noqa: E402
import orjson  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "ENGRAM_NO_AUTOSTART": "1", "PYTHONUNBUFFERED": "1"}


def engram(server: str, *args: str, stdin: bytes | None = None) -> float:
    """Run one `engram` command to completion; answers its wall time in seconds."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engram_cli", "--server", server, *args],
                          input=stdin, capture_output=True, env=ENV, timeout=1800)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"engram {' '.join(args)} failed ({proc.returncode}): "
                         f"{proc.stderr.decode()[-2000:]}")
    return elapsed


def one_setup(n_servers: int, path: Path, n: int, cues: bytes, n_cues: int, work: Path
              ) -> tuple[float, float]:
    """(records/s imported, cues/s recalled) with `n_servers` fresh servers."""
    servers = [_support.start_server(work / f"data{i}", ENV) for i in range(n_servers)]
    try:
        target = ",".join(address for _, address in servers)
        import_s = engram(target, "import", str(path), "--quiet", "--json")
        recall_s = engram(target, "recall", "-", "--no-cache", "--format", "jsonl",
                          "--limit", "5", stdin=cues)
        return n / import_s, n_cues / recall_s
    finally:
        for proc, _ in servers:
            _support.stop_server(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60_000, help="records to import")
    parser.add_argument("--cues", type=int, default=2_000, help="cues to recall")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10,000 records, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.n, args.cues, args.rounds = 10_000, 500, 2
    with tempfile.TemporaryDirectory(prefix="multi-endpoint-bench-") as tmp:
        work = Path(tmp)
        path = work / "memories.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n"
                                  for r in datagen.generate_records(args.n, seed=7)))
        words = [r["content"].split()[:3] for r in datagen.generate_records(args.cues, seed=8)]
        cues = "".join(" ".join(w) + "\n" for w in words).encode()
        print(f"{args.n:,} records, {args.cues:,} cues, {args.rounds} rounds, "
              f"{os.cpu_count()} cores")
        results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for k in order:
                run = work / f"r{r}-{k}"
                results[k].append(one_setup(k, path, args.n, cues, args.cues, run))
                imp, rec = results[k][-1]
                print(f"round {r + 1}: {k} server{'s' if k > 1 else ' '}  "
                      f"import {imp:9,.0f} records/s   recall {rec:7,.0f} cues/s")
            one, two = results[1][-1], results[2][-1]
            print(f"round {r + 1}: two/one  import {two[0] / one[0]:.2f}x   "
                  f"recall {two[1] / one[1]:.2f}x")
        med = {k: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v))
               for k, v in results.items()}
        print()
        print(f"{'setup':<12}{'import records/s':>18}{'recall cues/s':>16}")
        for k in (1, 2):
            print(f"{k} server{'s' if k > 1 else '':<4}{med[k][0]:>17,.0f}{med[k][1]:>16,.0f}")
        import_ratios = [b[0] / a[0] for a, b in zip(results[1], results[2], strict=True)]
        recall_ratios = [b[1] / a[1] for a, b in zip(results[1], results[2], strict=True)]
        print(f"two/one, round by round: import "
              f"{', '.join(f'{x:.2f}x' for x in import_ratios)}; recall "
              f"{', '.join(f'{x:.2f}x' for x in recall_ratios)}")


if __name__ == "__main__":
    main()
