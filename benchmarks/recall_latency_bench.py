"""Recall latency over gRPC on one store, this checkout's server against another's, side by
side in one run (issue 13's latency goals: embedding-cue and hybrid recall p99 < 10 ms).

    python benchmarks/recall_latency_bench.py --n 100000 --edges 3 --baseline-root ../main
    python benchmarks/recall_latency_bench.py --data saved-data-dir --baseline-root ../main

The store is built once (semantic_bench.py's corpus, imported text-only and embedded by the
server, until the vector index has caught up), or copied from --data; then each round
starts each variant's server on its own copy of it, waits for the index, and times
embedding cues (max_hops 0), hybrid text cues with max_hops 3 as semantic_bench.py sends
them (which asks for no spreading), and the same with spreading activation asked for, as
`engram recall` does (over random associations with --edges): p50/p99 at the client, and the
server process's CPU time per recall (user + system, all its threads), which a machine
shared with other busy processes disturbs far less than wall-clock latency, and how many
answers came back partial (cut by the recall budget: less work, and a worse answer). Variants
alternate between rounds, and the machine's load is printed beside each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _support  # noqa: E402
import numpy as np  # noqa: E402
from semantic_bench import K, Server, corpus, load, pct, say, write_jsonl  # noqa: E402

MEASURES = ("embedding", "hybrid", "hybrid+spread")


def build(work: Path, n: int, nq: int) -> tuple[Path, list[str]]:
    base, queries, _ = corpus(n, nq)
    path = work / "memories.jsonl"
    write_jsonl(path, base, "m")
    data = work / "store"
    srv = Server(data)
    try:
        secs = srv.import_file(path)
        wait = srv.wait_pending(7200)[0]
        say(f"built {n:,} memories: import {secs:.1f} s, index caught up {wait:.1f} s later")
    finally:
        srv.stop()
    return data, queries


def add_edges(data: Path, per_memory: int) -> None:
    """Random associations between the store's memories (m0, m1, ...), `per_memory` from
    each, strengths 0.3-0.9, through PutAssociations: a graph for spreading to walk."""
    from engram_cli.rpc import ext, ext_svc

    srv = Server(data)
    try:
        n = int(srv.metrics().get("space.default.memories", 0))
        stub = ext_svc.ExtensionServiceStub(srv.channel)
        rnd = np.random.default_rng(13)
        for start in range(0, n, 10_000):
            src = np.repeat(np.arange(start, min(n, start + 10_000)), per_memory)
            dst = rnd.integers(0, n, len(src))
            strength = rnd.uniform(0.3, 0.9, len(src))
            stub.PutAssociations(ext.PutAssociationsRequest(
                memory_space_id="default", associations=[
                    ext.Association(source=f"m{a}", target=f"m{b}", strength=float(w))
                    for a, b, w in zip(src.tolist(), dst.tolist(), strength.tolist(),
                                       strict=True) if a != b]), timeout=600)
        say(f"added about {n * per_memory:,} associations")
    finally:
        srv.stop()


def timed(srv: Server, measure: str, cue: Any) -> tuple[float, bool]:
    """(seconds, whether the answer came back partial: cut by the recall budget, say)."""
    from engram_cli.contract import MAX_HOPS_KEY, RECALL_PARTIAL_KEY

    pb = srv.pb
    if measure == "embedding":
        c = pb.Cue(embedding=pb.EmbeddingCue(vector=cue.tolist()), max_results=K)
    else:
        c = pb.Cue(semantic=pb.SemanticCue(query=cue), max_results=K,
                   spread_activation=measure == "hybrid+spread")
    hops = "0" if measure == "embedding" else "3"
    t = time.perf_counter()
    _, call = srv.stub.Recall.with_call(
        pb.RecallRequest(memory_space_id="default", cue=c, max_results=K),
        metadata=[(MAX_HOPS_KEY, hops)], timeout=30)
    secs = time.perf_counter() - t
    return secs, any(k == RECALL_PARTIAL_KEY for k, _ in call.trailing_metadata() or ())


def cpu_s(pid: int) -> float:
    """A process's user + system CPU seconds so far."""
    return _support.proc_cpu(f"/proc/{pid}/stat")[1]


def measure(root: str, data: Path, copy: Path, queries: list[str], qv: np.ndarray
            ) -> dict[str, list[float]]:
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data, copy)
    srv = Server(copy, root=root)
    try:
        srv.wait_pending(600)
        for q, text in zip(qv[:20], queries[:20], strict=True):  # warm up
            srv.recall(q, 0)
            srv.recall(text, 3)
        out: dict[str, list[float]] = {}
        for m in MEASURES:
            cues: list[Any] = list(qv) if m == "embedding" else queries
            before = cpu_s(srv.proc.pid)
            got = [timed(srv, m, c) for c in cues]
            out[m + " cpu"] = [(cpu_s(srv.proc.pid) - before) / len(cues)]
            out[m] = [secs for secs, _ in got]
            out[m + " partial"] = [float(sum(partial for _, partial in got))]
        return out
    finally:
        srv.stop()
        shutil.rmtree(copy, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="memories to build (default 100,000)")
    ap.add_argument("--data", default="", help="copy this data dir instead of building one")
    ap.add_argument("--queries", type=int, default=500, help="cues per measure")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of every variant")
    ap.add_argument("--baseline-root", default="", help="another checkout's root to compare")
    ap.add_argument("--edges", type=int, default=0,
                    help="random associations added from each memory (default 0: none)")
    args = ap.parse_args(argv)
    from engram_cli.engine.embedding import DEFAULT_MODEL, load_model

    work = Path(tempfile.mkdtemp(prefix="engram-latency-bench-"))
    data = Path(args.data).resolve() if args.data else work
    # `python -m` puts the working directory first on the server's path: from a checkout
    # the baseline server would import this checkout's engram_cli, not --baseline-root's.
    os.chdir(work)
    try:
        if args.data:
            queries = corpus(0, args.queries)[1]
        else:
            data, queries = build(work, args.n, args.queries)
        if args.edges:
            if args.data:  # a copy: the given store stays as it was
                shutil.copytree(data, work / "store")
                data = work / "store"
            add_edges(data, args.edges)
        qv = load_model(DEFAULT_MODEL).embed(queries)
        variants = {"this": ""} | ({"baseline": args.baseline_root} if args.baseline_root
                                   else {})
        res: dict[str, dict[str, list[float]]] = {
            v: {k: [] for m in MEASURES for k in (m, m + " cpu", m + " partial")}
            for v in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(variants)[::-1]
            for v in order:
                got = measure(variants[v], data, work / "copy", queries, qv)
                say(f"  round {r + 1} {v:>8}: " + "  ".join(
                    f"{m} p50 {pct(got[m], 0.5):.1f} p99 {pct(got[m], 0.99):.1f} "
                    f"cpu {got[m + ' cpu'][0] * 1000:.1f} ms, {got[m + ' partial'][0]:.0f} "
                    "partial" for m in MEASURES)
                    + f"  ({load()})")
                for k, xs in got.items():
                    res[v][k].extend(xs)
        say(f"summary over {args.rounds} rounds of {len(queries)} cues ({load()} at the end):")
        for m in MEASURES:
            cpu = {v: float(np.median(res[v][m + " cpu"])) * 1000 for v in variants}
            line = f"  {m:>14}: " + "  ".join(
                f"{v} p50 {pct(res[v][m], 0.5):.1f} p99 {pct(res[v][m], 0.99):.1f} "
                f"server cpu {cpu[v]:.1f} ms/recall, {sum(res[v][m + ' partial']):.0f} partial"
                for v in variants)
            if "baseline" in variants:
                line += "  (this / baseline: p50 {:.2f}x p99 {:.2f}x cpu {:.2f}x)".format(
                    pct(res["this"][m], 0.5) / pct(res["baseline"][m], 0.5),
                    pct(res["this"][m], 0.99) / pct(res["baseline"][m], 0.99),
                    cpu["this"] / cpu["baseline"])
            say(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
