"""Plain values the engine works with, and the identity rules.

Enum values match engram.v1's numbers so the server can copy them across, but nothing
here imports protobuf.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from engram_cli.errors import InvalidArgument

DEFAULT_SPACE = "default"
# Matched with fullmatch: `$` would let a trailing newline through ("sec\n").
SPACE_RE = re.compile(r"[a-z0-9_-]{3,64}")
DEFAULT_CONFIDENCE = 0.9


class MemoryType(IntEnum):
    UNSPECIFIED = 0
    EPISODIC = 1
    SEMANTIC = 2
    PROCEDURAL = 3
    WORKING = 4


class State(IntEnum):
    UNSPECIFIED = 0
    RECENT = 1
    CONSOLIDATING = 2
    CONSOLIDATED = 3
    RECONSOLIDATING = 4


def resolve_space(space_id: str) -> str:
    """'' -> 'default'; anything else must be 3-64 characters of [a-z0-9_-]."""
    if not space_id:
        return DEFAULT_SPACE
    if not SPACE_RE.fullmatch(space_id):
        raise InvalidArgument(
            f"invalid memory space id {space_id!r}",
            "use 3 to 64 characters of lowercase letters, digits, '_' and '-'",
        )
    return space_id


def content_id(content: str, embedding_bytes: bytes = b"") -> str:
    """The id of a memory sent without one: a hash of its content (or, for a memory with
    no content, of its embedding). Sending the same memory twice stores it once."""
    h = hashlib.blake2b(digest_size=16)
    if content:
        h.update(content.encode("utf-8"))
    else:
        h.update(b"\x00embedding\x00")
        h.update(embedding_bytes)
    return "mem_" + h.hexdigest()


def embedding_to_bytes(values: Iterable[float]) -> bytes:
    """An embedding as the engine keeps it: float32 bytes."""
    import numpy as np  # here, not above: the importer uses this module without numpy

    # A protobuf repeated field is a sequence numpy reads directly, four times faster than
    # through a list; this runs once per stored memory with a vector.
    arr = np.asarray(values if hasattr(values, "__len__") else list(values), dtype=np.float32)
    return arr.tobytes()


def memory_key(space: str, mid: str) -> int:
    """The 64-bit key the store finds a memory by: 8 bytes of blake2b over (space, id).
    An index of the ids themselves (long, random text) made every bulk insert rewrite
    three to four times as many index pages. (A space id has no NUL, so the pair is
    unambiguous.)"""
    digest = hashlib.blake2b(f"{space}\x00{mid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass(slots=True)
class MemoryRecord:
    """One memory as the engine stores it. `embedding` is float32 bytes (or b'')."""

    id: str
    content: str
    embedding: bytes = b""
    confidence: float = DEFAULT_CONFIDENCE
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    memory_type: int = MemoryType.UNSPECIFIED
    decay_rate: float = 0.0
    created_at: float | None = None  # unix seconds; None: now
    # Filled in on the way out of the store:
    activation: float = 0.0
    state: int = State.RECENT
    last_access: float = 0.0


# What a write did to each memory (the same numbers as ext.v1's ItemOutcome). The writer
# refuses a memory only when its key (memory_key) is taken by another (space, id).
CREATED, UPDATED, UNCHANGED, REFUSED = 1, 2, 3, 4
OUTCOME_NAMES = {CREATED: "created", UPDATED: "updated", UNCHANGED: "unchanged",
                 REFUSED: "rejected"}


@dataclass(slots=True)
class WriteOutcome:
    index: int
    memory_id: str
    outcome: str  # created | updated | unchanged | rejected
    error: str = ""
