"""One function per row of the seed's table, plus the batch-size sweep.

Each row function builds its requests before the clock starts (so the figures measure
the transport and the server, not our request building), times the "before" and "after"
variants interleaved through runner.interleave, and answers a RowResult, or raises
RowSkipped when the server cannot run the row. Only engram.v1 is assumed; our
ExtensionService's BatchRemember is used where the server has it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engram_cli.benchsuite.runner import (
    WARMUP_ROUNDS,
    BenchPlan,
    Progress,
    RowResult,
    RowSkipped,
    Sweep,
    SweepPoint,
    interleave,
)
from engram_cli.benchsuite.target import Target
from engram_cli.benchsuite.workload import Workload, cue_sequence, hot_cues, to_memory

Row = Callable[[Target, Workload, BenchPlan, Progress], RowResult]


def _elapsed(fn: Callable[[], Any]) -> float:
    """Seconds fn takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _each(fn: Callable[[Any], Any], items: Sequence[Any]) -> Callable[[], None]:
    """A thunk that calls fn on every item in turn (what the clock times)."""

    def run() -> None:
        for item in items:
            fn(item)

    return run


def _write_many(t: Target, w: Workload, n: int) -> list[dict[str, Any]]:
    """Store n memories the fastest way the server offers (set-up, not timed)."""
    from engram_cli.errors import Unsupported

    records = w.records(n)
    step = min(1000, t.max_batch) if t.extensions and t.max_batch else 1000
    for i in range(0, n, step):
        chunk = [to_memory(r, w.embedding_dim) for r in records[i:i + step]]
        if t.extensions:
            t.batch(chunk)
            continue
        try:
            t.stream([_request(t, m) for m in chunk])
        except Unsupported:
            for m in chunk:
                t.remember(m)
    return records


def _request(t: Target, memory: Any) -> Any:
    from engram_cli.rpc import pb

    return pb.RememberRequest(memory_space_id=t.space, memory=memory)


def batching(t: Target, w: Workload, plan: BenchPlan, progress: Progress) -> RowResult:
    n = plan.batch_ops

    def before(_: int) -> float:
        memories = w.memories(n)
        return _elapsed(_each(t.remember, memories)) * 1000

    if t.extensions and t.max_batch and n > t.max_batch:
        raise RowSkipped(f"the server's max_batch {t.max_batch} is under {n}")
    if t.extensions:
        after_label, note = f"one BatchRemember of {n}", ""

        def after(_: int) -> float:
            memories = w.memories(n)
            return _elapsed(lambda: t.batch(memories)) * 1000
    else:
        after_label = f"one StreamingRemember of {n}"
        note = f"no BatchRemember on this server: the batch is one stream of {n} requests"

        def after(_: int) -> float:
            requests = w.requests(t.space, n)
            return _elapsed(lambda: t.stream(requests)) * 1000

    b, a = interleave(before, after, plan.rounds, progress=progress, label="batching")
    return RowResult("batching", f"batching ({n} ops)", "ms", False,
                     f"{n} unary Remember calls", after_label, b, a, note)


def pooling(t: Target, w: Workload, plan: BenchPlan, progress: Progress) -> RowResult:
    from engram_cli.client.connection import open_channel
    from engram_cli.rpc import svc

    n = plan.pool_ops

    def one_on_new_channel(memory: Any) -> None:
        # Dial, call, hang up: what a client that opens a connection per request pays.
        channel = open_channel(t.address, tls=t.conn.tls)
        try:
            t.remember(memory, stub=svc.EngramServiceStub(channel))
        finally:
            channel.close()

    def before(_: int) -> float:
        memories = w.memories(n)
        return _elapsed(_each(one_on_new_channel, memories)) * 1000 / n

    def after(_: int) -> float:
        memories = w.memories(n)
        return _elapsed(_each(t.remember, memories)) * 1000 / n

    b, a = interleave(before, after, plan.rounds, progress=progress, label="pooling")
    return RowResult("pooling", "connection pooling", "ms/op", False,
                     "new channel per Remember", "one pooled channel reused", b, a)


def streaming(t: Target, w: Workload, plan: BenchPlan, progress: Progress) -> RowResult:
    n = plan.stream_ops

    def before(_: int) -> float:
        memories = w.memories(n)
        return n / _elapsed(_each(t.remember, memories))

    def after(_: int) -> float:
        requests = w.requests(t.space, n)
        return n / _elapsed(lambda: t.stream(requests))

    b, a = interleave(before, after, plan.rounds, progress=progress, label="streaming")
    return RowResult("streaming", "streaming vs unary", "ops/s", True,
                     f"{n} unary Remember calls", f"one StreamingRemember of {n}", b, a)


def caching(t: Target, w: Workload, plan: BenchPlan, progress: Progress) -> RowResult:
    from engram_cli.benchsuite.caching import recallers

    progress(f"caching: storing {plan.cache_corpus} memories to recall from")
    records = _write_many(t, w, plan.cache_corpus)
    t.wait_indexed()  # as a user's cache would see it: after the index caught up
    with tempfile.TemporaryDirectory(prefix="engram-bench-") as tmp:
        plain, cached = recallers(t.conn, t.space, Path(tmp))
        try:
            candidates = hot_cues(records, plan.hot_cues)
            for cue in candidates:
                cached.recall(cue)  # fills the cache with every answer that qualifies
            hot = [cue for cue in candidates if cached.recall(cue).cached]
            if not hot:
                raise RowSkipped("no recall answer from the scratch space could be cached")
            hits = [0, 0]  # hits, lookups (counted rounds only)
            sequences: dict[int, list[str]] = {}

            def sequence(i: int) -> list[str]:
                # Both variants of a round ask the same cues; each round has new misses.
                if i not in sequences:
                    sequences.clear()
                    sequences[i] = cue_sequence(hot, records, plan.cache_ops,
                                                plan.cache_hit_rate, seed=i)
                return sequences[i]

            def before(i: int) -> float:
                cues = sequence(i)
                return _elapsed(_each(plain.recall, cues)) * 1000 / len(cues)

            def ask(cue: str, counted: bool) -> None:
                answer = cached.recall(cue)
                if counted:
                    hits[0] += answer.cached
                    hits[1] += 1

            def after(i: int) -> float:
                cues = sequence(i)
                counted = i >= WARMUP_ROUNDS
                return _elapsed(_each(lambda c: ask(c, counted), cues)) * 1000 / len(cues)

            b, a = interleave(before, after, plan.rounds, progress=progress, label="caching")
        finally:
            plain.close()
            cached.close()
    hit_rate = hits[0] / hits[1] if hits[1] else 0.0
    return RowResult("caching", f"caching ({plan.cache_hit_rate:.0%} hits)",
                     "ms", False, "every recall sent to the server (ms per recall)",
                     "the recall cache in front", b, a,
                     f"measured hit rate {hit_rate:.0%} over {len(hot)} hot cues",
                     {"hit_rate": round(hit_rate, 4), "hot_cues": len(hot),
                      "recalls_per_round": plan.cache_ops})


ROWS: dict[str, Row] = {
    "batching": batching,
    "pooling": pooling,
    "caching": caching,
    "streaming": streaming,
}
SWEEP = "sweep"
NAMES = (*ROWS, SWEEP)


def sweep(t: Target, w: Workload, plan: BenchPlan, progress: Progress) -> Sweep:
    """Per batch size: memories per second over a round's calls (median over rounds)
    and per-call latency percentiles over every counted call."""
    sizes = list(plan.sweep_sizes)
    note = ""
    if t.extensions:
        method = "BatchRemember"
        if t.max_batch:
            over = [s for s in sizes if s > t.max_batch]
            sizes = [s for s in sizes if s <= t.max_batch]
            if over:
                note = (f"sizes {', '.join(map(str, over))} are over the server's max_batch "
                        f"{t.max_batch}: not run")
    else:
        method = "StreamingRemember"
        note = "no BatchRemember on this server: each batch is one stream of N requests"
    if not sizes:
        raise RowSkipped(f"every batch size is over the server's max_batch {t.max_batch}")
    points = {s: SweepPoint(s, plan.calls_for(s), [], []) for s in sizes}

    def one_call(size: int) -> float:
        if t.extensions:
            memories = w.memories(size)
            return _elapsed(lambda: t.batch(memories))
        requests = w.requests(t.space, size)
        return _elapsed(lambda: t.stream(requests))

    # Warm-up: one call per size (first connection, cold pages) rather than a whole
    # round, which at the large sizes would write more than the counted rounds of the
    # small ones.
    for size in sizes:
        one_call(size)
    for i in range(plan.rounds):
        progress(f"sweep: round {i + 1}/{plan.rounds}")
        # Alternate the order of sizes so that drift over a round does not favour one end.
        for size in sizes if i % 2 == 0 else reversed(sizes):
            point = points[size]
            times = [one_call(size) for _ in range(point.calls)]
            point.latencies_ms.extend(x * 1000 for x in times)
            point.ops_per_s_samples.append(size * point.calls / sum(times))
    return Sweep(method, [points[s] for s in sizes], note)
