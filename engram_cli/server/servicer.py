"""engram.v1.EngramService over the engine."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from engram_cli.contract import (
    MAX_HOPS_KEY,
    RECALL_MODE_KEY,
    RECALL_PARTIAL_KEY,
    SEED_KEY,
    THRESHOLD_KEY,
    partial_reasons,
)
from engram_cli.engine.model import MemoryRecord, State, resolve_space
from engram_cli.engine.recall import MODES
from engram_cli.engine.store import Store
from engram_cli.errors import EngramError, InvalidArgument
from engram_cli.rpc import pb, svc
from engram_cli.server.convert import (
    confidence_pb,
    float_to_ts,
    fraction,
    memory_to_pb,
    query_from_cue,
    record_from_remember,
    ts_to_float,
)
from engram_cli.server.cores import blas_threads
from engram_cli.server.errors import streaming, unary

_FORGET_MODES = {0: "suppress", 1: "suppress", 2: "delete", 3: "overwrite"}
_STREAM_GROUP = 1000  # StreamingRemember requests taken into one write


def _stored_response(memory_id: str, initial_state: int = State.RECENT) -> Any:
    return pb.RememberResponse(
        memory_id=memory_id,
        storage_confidence=confidence_pb(1.0, "committed to disk"),
        initial_state=initial_state,
    )


def _rejected_response(error: str) -> Any:
    # In a stream one bad memory must not end the stream for its neighbours: it is
    # answered in place with no id and a zero storage confidence that says why.
    return pb.RememberResponse(
        memory_id="",
        storage_confidence=pb.Confidence(value=0.0, category=1, reasoning=f"rejected: {error}"),
        initial_state=0,
    )


# Per-request recall knobs, sent as gRPC request metadata (engram.v1's cue has no field
# for them): metadata key -> (RecallQuery field, type, min, max).
RECALL_KNOBS: dict[str, tuple[str, type, float, float]] = {
    MAX_HOPS_KEY: ("max_hops", int, 0, 10),
    THRESHOLD_KEY: ("threshold", float, 0.0, 1.0),
}


def recall_knobs(metadata: Any) -> dict[str, Any]:
    """Request metadata -> {RecallQuery field: value}; a bad value names its key."""
    out: dict[str, Any] = {}
    for key, value in metadata or ():
        if key == RECALL_MODE_KEY:
            if value not in MODES:
                raise InvalidArgument(f"request metadata {key}: {value!r} is not valid",
                                      f"expected one of {', '.join(MODES)}")
            out["mode"] = value
            continue
        spec = RECALL_KNOBS.get(key)
        if spec is None:
            continue
        name, kind, lo, hi = spec
        try:
            parsed = kind(value)
        except (TypeError, ValueError):
            parsed = None
        if parsed is None or parsed != parsed or not (lo <= parsed <= hi):
            raise InvalidArgument(f"request metadata {key}: {value!r} is not valid",
                                  f"expected a{'n integer' if kind is int else ' number'} "
                                  f"from {lo:g} to {hi:g}")
        out[name] = parsed
    return out


def _initial_state(outcome: str) -> int:
    return int(State.RECENT if outcome == "created" else State.UNSPECIFIED)


class EngramServicer(svc.EngramServiceServicer):
    def __init__(self, store: Store, calls: Callable[[], dict[str, int]] = dict) -> None:
        self.store = store
        self.calls = calls  # calls received per method (counted at the server's gate)

    @unary
    def Remember(self, request: Any, context: grpc.ServicerContext) -> Any:
        rec = record_from_remember(request)
        link_threshold = fraction("link_threshold", request.link_threshold) or 0.5
        outcome = self.store.remember(request.memory_space_id, rec)
        linked = []
        if request.auto_link:
            linked = self.store.auto_link(request.memory_space_id, rec, link_threshold)
        resp = _stored_response(outcome.memory_id, _initial_state(outcome.outcome))
        resp.linked_memories.extend(linked)
        return resp

    @streaming
    def StreamingRemember(self, request_iterator: Any, context: grpc.ServicerContext
                          ) -> Iterator[Any]:
        # A reader thread keeps pulling requests while the previous group commits, so a
        # stream is written in groups (one commit per group), answered one by one in order.
        inbox: queue.Queue = queue.Queue(maxsize=_STREAM_GROUP * 2)
        done = object()

        def put(item: Any) -> bool:
            # Once the call is over nobody takes from the inbox: do not wait for room.
            while True:
                try:
                    inbox.put(item, timeout=1.0)
                    return True
                except queue.Full:
                    if not context.is_active():
                        return False

        def pump() -> None:
            try:
                for req in request_iterator:
                    if not put(req):
                        return
            except Exception as exc:  # the client went away, or a malformed request
                put(exc)
                return
            put(done)

        threading.Thread(target=pump, daemon=True, name="stream-pump").start()
        finished = False
        refused: EngramError | None = None
        while not finished:
            group: list[Any] = []
            item = inbox.get()
            while True:
                # The end, or an error reading the stream: the client went away, a request
                # did not parse, or the gate refused one. A refusal ends the stream with
                # its status once the requests before it are answered.
                if item is done or isinstance(item, Exception):
                    finished = True
                    if isinstance(item, EngramError):
                        refused = item
                    break
                group.append(item)
                if len(group) >= _STREAM_GROUP:
                    break
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    break
            yield from self._remember_group(group)
        if refused is not None:
            raise refused

    def _remember_group(self, group: list[Any]) -> Iterator[Any]:
        # Requests may name different spaces; keep order, write per space.
        answers: list[Any] = [None] * len(group)
        by_space: dict[str, list[tuple[int, MemoryRecord]]] = {}
        for i, req in enumerate(group):
            try:
                space = resolve_space(req.memory_space_id)
                by_space.setdefault(space, []).append((i, record_from_remember(req)))
            except EngramError as exc:
                answers[i] = _rejected_response(str(exc))
        for space, items in by_space.items():
            outcomes = self.store.remember_many(space, [rec for _, rec in items])
            for (i, _), out in zip(items, outcomes, strict=False):
                if out.outcome == "rejected":
                    answers[i] = _rejected_response(out.error)
                else:
                    answers[i] = _stored_response(out.memory_id, _initial_state(out.outcome))
        yield from answers

    def _recall(self, request: Any, knobs: dict[str, Any] | None = None) -> tuple[Any, str]:
        """The answer, and why it may be incomplete (RECALL_PARTIAL_KEY's value, or "")."""
        if not request.HasField("cue"):
            raise InvalidArgument("RecallRequest has no cue")
        q = query_from_cue(request.cue, request.max_results)
        q.trace = request.trace_activation
        # The counts travel in the metadata only: unasked for, the spread may skip edges
        # that cannot change the answer.
        q.counts = request.include_metadata or request.trace_activation
        if knobs:
            q.max_hops = knobs.get("max_hops", q.max_hops)
            q.threshold = knobs.get("threshold", q.threshold)
            q.mode = knobs.get("mode", q.mode)
        result = self.store.recall(request.memory_space_id, q)
        partial = partial_reasons(result.budget_exhausted, result.index_behind)
        resp = pb.RecallResponse(
            memories=[memory_to_pb(r) for r in result.memories],
            recall_confidence=confidence_pb(
                max((r.confidence * r.activation for r in result.memories), default=0.0)),
        )
        if request.include_metadata or request.trace_activation:
            resp.metadata.CopyFrom(pb.RecallMetadata(
                total_activated=result.total_activated,
                above_threshold=result.above_threshold,
                avg_activation=result.avg_activation,
                recall_time_ms=round(result.elapsed_ms),
                activation_path=result.activation_path,
            ))
        now = float_to_ts(time.time())
        for m, t in zip(resp.memories, result.traces, strict=False):
            resp.traces.add(memory_id=t.memory_id, activation_level=t.activation,
                            activation_path=t.path, timestamp=now)
            m.metadata[SEED_KEY] = t.seed
        return resp, partial

    @unary
    def Recall(self, request: Any, context: grpc.ServicerContext) -> Any:
        resp, partial = self._recall(request, recall_knobs(context.invocation_metadata()))
        if partial:
            context.set_trailing_metadata(((RECALL_PARTIAL_KEY, partial),))
        return resp

    @streaming
    def StreamingRecall(self, request_iterator: Any, context: grpc.ServicerContext
                        ) -> Iterator[Any]:
        knobs = recall_knobs(context.invocation_metadata())
        for request in request_iterator:
            yield self._recall(request, knobs)[0]

    @unary
    def Forget(self, request: Any, context: grpc.ServicerContext) -> Any:
        mode = _FORGET_MODES.get(request.mode)
        if mode is None:
            raise InvalidArgument(f"unknown forget mode {request.mode}")
        target = request.WhichOneof("target")
        if target == "memory_id":
            ids = [request.memory_id]
        elif target == "pattern":
            ids = self.store.matching_ids(request.memory_space_id,
                                          query_from_cue(request.pattern, 0))
        else:
            raise InvalidArgument("ForgetRequest names neither a memory_id nor a pattern")
        affected = self.store.forget(request.memory_space_id, ids, mode)
        return pb.ForgetResponse(
            memories_affected=affected,
            forget_confidence=confidence_pb(1.0 if affected else 0.0),
            reversible=mode == "suppress",
        )

    @unary
    def Recognize(self, request: Any, context: grpc.ServicerContext) -> Any:
        from engram_cli.engine.model import embedding_to_bytes

        kind = request.WhichOneof("input")
        content, embedding = "", b""
        if kind == "content":
            content = request.content
        elif kind == "embedding":
            embedding = embedding_to_bytes(request.embedding.values)
        elif kind == "memory":  # its text and its vector both count
            content = request.memory.content
            if len(request.memory.embedding):
                embedding = embedding_to_bytes(request.memory.embedding)
        familiarity, similar = self.store.recognize(request.memory_space_id, content, embedding)
        threshold = fraction("recognition_threshold", request.recognition_threshold) or 0.7
        return pb.RecognizeResponse(
            recognized=familiarity >= threshold,
            recognition_confidence=confidence_pb(familiarity),
            similar_memories=[memory_to_pb(r, include_embedding=False) for r in similar],
            familiarity_score=familiarity,
        )

    @unary
    def Associate(self, request: Any, context: grpc.ServicerContext) -> Any:
        created, final = self.store.associate(
            request.memory_space_id, request.source_memory, request.target_memory,
            int(request.association_type), request.strength, request.reason)
        return pb.AssociateResponse(
            created=created, final_strength=final,
            affected_paths=[f"{request.source_memory}->{request.target_memory}"])

    @unary
    def Consolidate(self, request: Any, context: grpc.ServicerContext) -> Any:
        target = request.WhichOneof("target")
        kwargs: dict[str, Any] = {}
        if target == "memory_ids":
            kwargs["ids"] = list(request.memory_ids.ids)
        elif target == "criteria":
            c = request.criteria
            kwargs["older_than"] = ts_to_float(c.older_than)
            kwargs["types"] = [int(t) for t in c.types]
            kwargs["min_confidence"] = fraction("importance_threshold", c.importance_threshold)
        report = self.store.consolidate(request.memory_space_id, **kwargs)
        resp = pb.ConsolidateResponse(memories_consolidated=report.consolidated,
                                      new_associations=report.new_associations)
        # Bounded so that consolidating a million memories answers in one message.
        for mid, state in list(report.changes.items())[:10_000]:
            resp.state_changes[mid] = state
        next_at = self.store.consolidator.stats.next_pass_at
        if next_at > 0:
            resp.next_consolidation.CopyFrom(float_to_ts(next_at))
        return resp

    @unary
    def Introspect(self, request: Any, context: grpc.ServicerContext) -> Any:
        space = resolve_space(request.memory_space_id) if request.memory_space_id else None
        stats = self.store.stats(space)
        metrics = {
            "memories.total": float(stats["total_memories"]),
            "memories.suppressed": float(stats["suppressed"]),
            "associations.total": float(stats["total_associations"]),
            "spaces.count": float(len(stats["spaces"])),
            "write_queue.depth": float(stats["queue_depth"]),
            "write_queue.capacity": float(stats["queue_capacity"]),
            "write_queue.pressure": float(stats["pressure"]),
            "writer.commits": float(stats["commits"]),
            "writer.idle_checkpoints": float(stats["idle_checkpoints"]),
        }
        tiers = stats["tiers"]
        metrics.update({
            "tier.hot.size": float(tiers["hot_size"]),
            "tier.hot.capacity": float(tiers["hot_capacity"]),
            "tier.hot.bytes": float(tiers["hot_bytes"]),
            "tier.hot.max_bytes": float(tiers["hot_max_bytes"]),
            "tier.hot.hit_rate": float(tiers["hot_hit_rate"]),
            "tier.hot.hits": float(tiers["hot_hits"]),
            "tier.hot.misses": float(tiers["hot_misses"]),
            "tier.warm.size": float(stats["total_memories"] + stats["suppressed"]),
            "tier.warm.bytes": float(tiers["warm_bytes"]),
        })
        vectors = stats["vector_index"]
        metrics.update({f"vector_index.{k}": float(vectors[k])
                        for k in ("dim", "indexed", "pending", "fresh", "bytes", "embedded")})
        metrics[f"vector_index.model.{vectors['model']}"] = 1.0
        metrics["text_index.merge_steps"] = float(stats["text_index"]["merge_steps"])
        readers = stats["readers"]
        metrics.update({f"readers.{k}": float(readers[k])
                        for k in ("size", "open", "background", "waits")})
        metrics["server.blas_threads"] = float(blas_threads())
        metrics["sqlite.bytes"] = float(readers["sqlite_bytes"])
        metrics["sqlite.peak_bytes"] = float(readers["sqlite_peak_bytes"])
        for key, value in stats["consolidation"].items():
            metrics[f"consolidation.{key}"] = float(value)
        for name, n in stats["spaces"].items():
            metrics[f"space.{name}.memories"] = float(n)
        for name, n in stats["by_state"].items():
            metrics[f"state.{name}"] = float(n)
        for name, n in self.calls().items():
            metrics[f"calls.{name}"] = float(n)
        if request.metrics:
            wanted = set(request.metrics)
            metrics = {k: v for k, v in metrics.items() if k in wanted}
        resp = pb.IntrospectResponse(metrics=metrics, active_processes=[
            "writer", "consolidation-scheduler", "fsync" if self.store.settings.durability
            == "fsync" else "group-fsync"])
        resp.statistics.CopyFrom(pb.MemoryStatistics(
            total_memories=stats["total_memories"],
            by_type=stats["by_type"],
            avg_activation=stats["avg_activation"],
            avg_confidence=stats["avg_confidence"],
            total_associations=stats["total_associations"],
            oldest_memory=float_to_ts(stats["oldest_memory"]),
            newest_memory=float_to_ts(stats["newest_memory"]),
        ))
        components = self.store.health()
        health = resp.health
        health.healthy = all(ok for ok, _ in components.values())
        for name, (ok, message) in components.items():
            health.components[name].operational = ok
            health.components[name].performance = 1.0 - stats["pressure"] if ok else 0.0
            health.components[name].status_message = message
        health.summary = "healthy" if health.healthy else "degraded: " + ", ".join(
            n for n, (ok, _) in components.items() if not ok)
        import orjson

        resp.metrics_snapshot_json = orjson.dumps(stats).decode()
        return resp

