"""What makes a memory storable: the limits and value rules the write path checks."""

from __future__ import annotations

import numpy as np

from engram_cli.engine.model import MemoryType

MAX_CONTENT_BYTES = 1024 * 1024
MAX_EMBEDDING_DIMS = 8192
_MEMORY_TYPES = frozenset(int(t) for t in MemoryType)
_CONTENT_CHARS_SAFE = MAX_CONTENT_BYTES // 4  # a str this long is within the byte limit


def memory_error(content: str, embedding: bytes, confidence: float, decay_rate: float,
                 memory_type: int) -> str:
    """Why a memory with these values cannot be stored, or '' when it can: the engine's
    rules every stored memory satisfies (NaN fails every comparison, so it is refused)."""
    if not content and not embedding:
        return "memory has neither content nor embedding"
    if len(content) > _CONTENT_CHARS_SAFE and len(content.encode()) > MAX_CONTENT_BYTES:
        return f"content is {len(content.encode())} bytes; the limit is {MAX_CONTENT_BYTES}"
    if not 0.0 <= confidence <= 1.0:
        return f"confidence {confidence} is outside 0..1"
    if embedding:
        dims = len(embedding) // 4
        if dims > MAX_EMBEDDING_DIMS:
            return f"embedding has {dims} dimensions; the limit is {MAX_EMBEDDING_DIMS}"
        if not np.isfinite(np.frombuffer(embedding, dtype=np.float32)).all():
            return "embedding contains NaN or infinity"
    if not decay_rate >= 0:
        return f"decay_rate {decay_rate} is negative"
    if memory_type not in _MEMORY_TYPES:
        return f"unknown memory_type {memory_type}"
    return ""
