"""What the embedder costs an import: `engram import` of the same texts into fresh servers
with the embedder on and with `embedding_model = "none"`, in pairs (the order alternating
pair by pair), with the CPU each side spent.

    python benchmarks/import_cost_bench.py --n 1000000 --rounds 5

semantic_bench.py measures the same ratio among its other measures, whose heavy passes (the
catch-ups, the model's raw rate, the scale measures) come between its imports; here nothing
runs between them. For each import: its wall time, the server's CPU (its own threads), its
children's CPU (the embedder's worker processes), the importer's CPU, and how many memories
the index held at the import's end (the embedder yields to an import: it still takes a
batch every ten seconds). Printed at the end: each pair's ratio (the embedder-on import's
rate over the other's) and their median, which is the result; the machine's speed drifts
between pairs, not within one.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _support import proc_cpu  # noqa: E402
from semantic_bench import Server, load, say, write_jsonl  # noqa: E402
from vector_index_bench import corpus  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a live process (all its threads)."""
    return proc_cpu(f"/proc/{pid}/stat")[1]


def children_seconds(pid: int) -> float:
    """CPU of the live processes whose parent is `pid`."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat")
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += proc_cpu(stat)[1]
        except OSError:  # gone meanwhile
            continue
    return total


def importer_seconds() -> float:
    """CPU of this process's waited-for children so far (the importers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_import(work: Path, path: Path, variant: str, n: int) -> float:
    """Seconds of one import into a fresh server of `variant`; prints what it cost."""
    srv = Server(work / variant, None if variant == "on" else "none")
    try:
        pid = srv.proc.pid
        server, workers, importer = cpu_seconds(pid), children_seconds(pid), importer_seconds()
        secs = srv.import_file(path)
        server = cpu_seconds(pid) - server
        workers = children_seconds(pid) - workers
        importer = importer_seconds() - importer
        indexed = srv.metrics().get("vector_index.indexed", 0)
    finally:
        srv.stop()
        shutil.rmtree(work / variant, ignore_errors=True)
    say(f"  embedder {variant:>4}: {secs:6.1f} s {n / secs:9,.0f}/s;  CPU: server {server:5.1f} s, "
        f"its workers {workers:4.1f} s, importer {importer:4.1f} s;  indexed at the end "
        f"{indexed:,.0f}  ({load()})")
    return secs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="memories (default 1,000,000)")
    ap.add_argument("--rounds", type=int, default=5, help="pairs of imports (default 5)")
    args = ap.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        ap.error("--n and --rounds must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="import-cost-"))
    try:
        texts, _, _ = corpus(args.n, 0)
        path = work / "memories.jsonl"
        write_jsonl(path, texts, "m")
        say(f"{len(texts):,} text-only memories, {os.cpu_count()} cores, {load()}")
        ratios = []
        for r in range(args.rounds):
            say(f"pair {r + 1}:")
            secs = {}
            for variant in ("on", "none") if r % 2 == 0 else ("none", "on"):
                secs[variant] = one_import(work, path, variant, len(texts))
            ratios.append(secs["none"] / secs["on"])
        say(f"\nimport rate, embedder on / none, each pair: "
            f"{', '.join(f'{x:.2f}x' for x in ratios)};  median {np.median(ratios):.2f}x "
            "(goal >= 0.9x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
