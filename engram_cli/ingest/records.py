"""Record (a dict from any reader) -> engram.v1 Memory, with errors that say what's wrong."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from engram_cli.errors import EngramError

MEMORY_TYPES = {"episodic": 1, "semantic": 2, "procedural": 3, "working": 4}


class RecordError(EngramError):
    """One record cannot become a memory (the reason names the field)."""


def parse_time(value: Any) -> float:
    """RFC 3339 text or epoch seconds -> epoch seconds."""
    if isinstance(value, bool):
        raise RecordError(f"created_at {value!r} is not a time")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"created_at {value!r} is not RFC 3339 or epoch seconds") from None
        if dt.tzinfo is None:
            raise RecordError(f"created_at {value!r} has no time zone")
        return dt.timestamp()
    raise RecordError(f"created_at {value!r} is not a time")


def to_memory(record: Any) -> Any:
    """Build an engram.v1 Memory from one record; raises RecordError."""
    from engram_cli.rpc import pb

    if not isinstance(record, dict):
        raise RecordError(f"a record must be an object, not {type(record).__name__}")
    content = record.get("content", "")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise RecordError(f"content must be text, not {type(content).__name__}")
    m = pb.Memory(content=content)
    if "id" in record and record["id"] not in (None, ""):
        if not isinstance(record["id"], (str, int)) or isinstance(record["id"], bool):
            raise RecordError("id must be text or an integer")
        m.id = str(record["id"])
    emb = record.get("embedding")
    if emb is not None:
        if not isinstance(emb, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in emb):
            raise RecordError("embedding must be a list of numbers")
        if not all(math.isfinite(x) for x in emb):
            raise RecordError("embedding contains NaN or infinity")
        m.embedding.extend(emb)
    if not content and not len(m.embedding):
        raise RecordError("missing content (and no embedding)")
    conf = record.get("confidence")
    if conf is not None:
        if isinstance(conf, bool) or not isinstance(conf, (int, float)):
            raise RecordError(f"confidence must be a number, not {conf!r}")
        if not 0.0 <= conf <= 1.0:
            raise RecordError(f"confidence {conf} is outside 0..1")
        m.confidence.value = float(conf)
    tags = record.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise RecordError("tags must be a list of strings")
        m.tags.extend(tags)
    meta = record.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise RecordError("metadata must be an object")
        for k, v in meta.items():
            m.metadata[str(k)] = v if isinstance(v, str) else _to_text(v)
    mtype = record.get("memory_type")
    if mtype not in (None, ""):
        if not isinstance(mtype, str) or mtype.lower() not in MEMORY_TYPES:
            raise RecordError(f"memory_type {mtype!r} is not one of "
                              + "|".join(MEMORY_TYPES))
        m.memory_type = MEMORY_TYPES[mtype.lower()]
    if record.get("created_at") not in (None, ""):
        t = parse_time(record["created_at"])
        m.created_at.seconds = int(t)
        m.created_at.nanos = int((t - int(t)) * 1e9)
    decay = record.get("decay_rate")
    if decay is not None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay < 0:
            raise RecordError(f"decay_rate must be a number >= 0, not {decay!r}")
        m.decay_rate = float(decay)
    return m


def _to_text(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()
