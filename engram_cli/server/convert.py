"""engram.v1 messages <-> engine values, with the validation a wire value needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from engram_cli.contract import STATE_KEY
from engram_cli.engine.confidence import category_of
from engram_cli.engine.model import (
    DEFAULT_CONFIDENCE,
    MemoryRecord,
    MemoryType,
    State,
    embedding_to_bytes,
)
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.rules import embedding_error, split_seconds
from engram_cli.engine.writes import WriteBatch
from engram_cli.errors import InvalidArgument, Unsupported
from engram_cli.rpc import ext, pb


def ts_to_float(ts: Timestamp) -> float | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.seconds + ts.nanos / 1e9


def float_to_ts(value: float | None) -> Timestamp:
    ts = Timestamp()
    if value:
        ts.seconds, ts.nanos = split_seconds(value)
    return ts


def confidence_pb(value: float, reasoning: str = "") -> Any:
    return pb.Confidence(value=value, category=int(category_of(value)), reasoning=reasoning)


def memory_from_pb(m: Any) -> MemoryRecord:
    confidence = m.confidence.value if m.HasField("confidence") else DEFAULT_CONFIDENCE
    rec = MemoryRecord(
        id=m.id,
        content=m.content,
        embedding=embedding_to_bytes(m.embedding) if len(m.embedding) else b"",
        confidence=confidence,
        tags=list(m.tags),
        # Not dict(m.metadata): that goes through the generic Mapping.keys(), several
        # times slower than iterating the map, and this runs once per stored memory.
        metadata={k: md[k] for k in md} if (md := m.metadata) else {},
        memory_type=int(m.memory_type),
        decay_rate=m.decay_rate,
        created_at=ts_to_float(m.created_at),
    )
    if STATE_KEY in rec.metadata:  # our reserved key: the state an exported memory had
        rec.state = state_number(rec.metadata.pop(STATE_KEY))
    return rec


def add_memory_pb(batch: WriteBatch, position: int, m: Any) -> None:
    """memory_from_pb straight into a WriteBatch: the bulk path, with no record object."""
    _add(batch, position, m, embedding_to_bytes(m.embedding) if len(m.embedding) else b"")


def _add(batch: WriteBatch, position: int, m: Any, embedding: bytes,
         finite: bool = False) -> None:
    ts = m.created_at
    md = m.metadata
    meta = {k: md[k] for k in md} if md else {}
    state = int(State.RECENT)
    if STATE_KEY in meta:  # our reserved key: the state an exported memory had
        state = state_number(meta.pop(STATE_KEY))
    batch.add(position, m.id, m.content, embedding,
              m.confidence.value if m.HasField("confidence") else DEFAULT_CONFIDENCE,
              m.decay_rate, m.memory_type,
              ts.seconds + ts.nanos / 1e9 if ts.seconds or ts.nanos else None,
              list(m.tags), meta, state, finite)


def read_batch_remember(data: bytes) -> Any:
    """BatchRemember's request bytes as a BatchRememberView (ext.proto), whose memories
    carry each vector as the float32 bytes the store keeps (no Python float per
    dimension); as the BatchRememberRequest it is when a memory does not fit the view:
    fields the view does not know there, such as floats sent unpacked (one field per
    value, which it cannot read as bytes)."""
    from google.protobuf.unknown_fields import UnknownFieldSet

    view = ext.BatchRememberView.FromString(data)
    for m in view.memories:
        if len(UnknownFieldSet(m)):
            return ext.BatchRememberRequest.FromString(data)
    return view


def add_memory_views(batch: WriteBatch, memories: Sequence[Any]) -> None:
    """The memories of a BatchRememberView into a WriteBatch, in order, as add_memory_pb
    would add them: the whole batch's vectors are checked finite at once. Packed floats
    that are not whole float32s fail the request, as the real message's parse does."""
    import numpy as np

    vectors: list[bytes] = []
    for i, m in enumerate(memories):
        runs = m.embedding  # each packed run of floats, as bytes
        n = len(runs)
        vector = b"" if not n else runs[0] if n == 1 else b"".join(runs)
        if len(vector) & 3:
            raise InvalidArgument(f"memory {i}: its packed embedding is {len(vector)} bytes, "
                                  "not a whole number of 32-bit floats",
                                  "send the method's protobuf message")
        vectors.append(vector)
    given = [v for v in vectors if v]
    finite = bool(given) and bool(np.isfinite(np.frombuffer(b"".join(given),
                                                            dtype=np.float32)).all())
    for i, (m, vector) in enumerate(zip(memories, vectors, strict=True)):
        _add(batch, i, m, vector, finite)


def state_number(name: str) -> int:
    """A consolidation state's lower-case name -> its number; 0 (refused by the write
    path) when it names none."""
    try:
        return int(State[name.upper()]) if name else 0
    except KeyError:
        return 0


def episode_from_pb(e: Any) -> MemoryRecord:
    """An Episode is stored as an episodic memory; its who/where/why/how become metadata."""
    metadata = {}
    if e.where_location:
        metadata["location"] = e.where_location
    if len(e.who):
        metadata["who"] = ",".join(e.who)
    for key in ("why", "how"):
        if getattr(e, key):
            metadata[key] = getattr(e, key)
    if e.importance:
        metadata["importance"] = f"{e.importance:g}"
    if e.emotional_valence:
        metadata["emotional_valence"] = f"{e.emotional_valence:g}"
    confidence = (e.encoding_confidence.value if e.HasField("encoding_confidence")
                  else DEFAULT_CONFIDENCE)
    return MemoryRecord(
        id=e.id,
        content=e.what,
        embedding=embedding_to_bytes(e.embedding) if len(e.embedding) else b"",
        confidence=confidence,
        tags=list(e.who),
        metadata=metadata,
        memory_type=int(MemoryType.EPISODIC),
        decay_rate=e.decay_rate,
        created_at=ts_to_float(e.when),
    )


def record_from_remember(req: Any) -> MemoryRecord:
    kind = req.WhichOneof("memory_type")
    if kind == "memory":
        return memory_from_pb(req.memory)
    if kind == "episode":
        return episode_from_pb(req.episode)
    raise InvalidArgument("RememberRequest carries neither a memory nor an episode")


_TEMPORAL_CUE, _PATTERN_CUE = 4, 6  # Cue field numbers upstream has and we don't serve


def memory_to_pb(rec: MemoryRecord, include_embedding: bool = True) -> Any:
    import numpy as np

    m = pb.Memory(
        id=rec.id,
        content=rec.content,
        activation=rec.activation,
        confidence=confidence_pb(rec.confidence),
        decay_rate=rec.decay_rate,
        tags=rec.tags,
        metadata=rec.metadata,
        memory_type=rec.memory_type,
    )
    m.metadata[STATE_KEY] = State(rec.state).name.lower()
    if include_embedding and rec.embedding:
        m.embedding.extend(np.frombuffer(rec.embedding, dtype=np.float32).tolist())
    m.created_at.CopyFrom(float_to_ts(rec.created_at))
    m.last_access.CopyFrom(float_to_ts(rec.last_access))
    return m


def fraction(name: str, value: float) -> float:
    """`value` of the request's field `name`, which must be in 0..1 (NaN is not)."""
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument(f"{name} {value:g} is outside 0..1")
    return value


def query_from_cue(cue: Any, max_results: int) -> RecallQuery:
    kind = cue.WhichOneof("cue_type")
    limit = max_results or cue.max_results or 10
    if limit < 0:
        raise InvalidArgument(f"max_results {limit} is negative")
    threshold = fraction("the cue's threshold",
                         cue.threshold.value if cue.HasField("threshold") else 0.0)
    decay = cue.activation_decay
    if decay and not 0.0 < decay <= 1.0:  # 0: not given
        raise InvalidArgument(f"the cue's activation_decay {decay:g} is outside 0..1")
    q = RecallQuery(
        limit=limit,
        min_confidence=threshold,
        spread=cue.spread_activation,
        decay=decay or None,
    )
    if kind == "semantic":
        if not cue.semantic.query.strip():
            raise InvalidArgument("the semantic cue's query is empty")
        q.text = cue.semantic.query
        q.required_tags = list(cue.semantic.required_tags)
        q.excluded_tags = list(cue.semantic.excluded_tags)
    elif kind == "embedding":
        if not len(cue.embedding.vector):
            raise InvalidArgument("the embedding cue's vector is empty")
        error = embedding_error(cue.embedding.vector)
        if error:
            raise InvalidArgument(f"the embedding cue's vector {error}")
        similarity = cue.embedding.similarity_threshold
        if not -1.0 <= similarity <= 1.0:
            raise InvalidArgument(f"the embedding cue's similarity_threshold {similarity:g} "
                                  "is outside -1..1")
        q.embedding = embedding_to_bytes(cue.embedding.vector)
        q.similarity_threshold = similarity
    elif kind == "context":
        c = cue.context
        q.time_start = ts_to_float(c.time_start)
        q.time_end = ts_to_float(c.time_end)
        q.location = c.location
        q.participants = list(c.participants)
        if q.time_start is None and q.time_end is None and not q.location and not q.participants:
            raise InvalidArgument("the context cue is empty")
    else:
        from google.protobuf import unknown_fields

        # Upstream cues also have `temporal` (4) and `pattern` (6); we don't declare them,
        # so they arrive as unknown fields. The wire contract answers those UNIMPLEMENTED.
        unknown = {f.field_number for f in unknown_fields.UnknownFieldSet(cue)}
        if unknown & {_TEMPORAL_CUE, _PATTERN_CUE}:
            raise Unsupported("temporal and pattern cues are not served",
                              "use a semantic, embedding or context cue")
        raise InvalidArgument("the cue has no type",
                              "set semantic, embedding or context (temporal and pattern cues "
                              "are not served)")
    return q
