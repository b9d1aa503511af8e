"""What makes a memory storable: the limits and value rules, in one place.

The server's write path checks every memory with `memory_error` before it reaches the
writer; the importer's mapping (engram_cli/ingest/mapping.py) calls the same function on
each record once it has typed the record's fields, so a record the server would refuse is
rejected before it is sent, with the same reason. Each message names the field (the
importer passes a `name` that also says which of the user's fields it came from).

Light on purpose: the importer imports this, so numpy is imported only when a float32
embedding (the server's form) is checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from engram_cli.engine.model import MemoryType

MAX_CONTENT_BYTES = 1024 * 1024
MAX_EMBEDDING_DIMS = 8192
FLOAT32_MAX = 3.4028234663852886e38
MEMORY_TYPES = frozenset(int(t) for t in MemoryType)  # the numbers, 0 (unspecified) too
MEMORY_TYPE_NAMES = {t.name.lower(): int(t) for t in MemoryType if t}
_CONTENT_CHARS_SAFE = MAX_CONTENT_BYTES // 4  # a str this long is within the byte limit


def _field(name: str) -> str:
    return name


def memory_type_number(value: Any) -> int | None:
    """A memory type given by name (any case) or number -> its number; None if unknown."""
    if type(value) is str:
        return MEMORY_TYPE_NAMES.get(value.lower())
    if type(value) is int and value in MEMORY_TYPES:
        return value
    return None


def memory_type_error(value: Any, name: str = "memory_type") -> str:
    return f"{name} {value!r} is not one of " + "|".join(MEMORY_TYPE_NAMES)


def memory_error(content: str, embedding: bytes | Sequence[float], confidence: float,
                 decay_rate: float, memory_type: int,
                 name: Callable[[str], str] = _field, finite: bool = False) -> str:
    """Why a memory with these values cannot be stored, or '' when it can. `embedding` is
    float32 bytes (the server's form) or a sequence of numbers (the importer's). NaN fails
    every comparison, so it is refused wherever a number is. `finite`: the caller has
    checked the embedding's values already (a whole batch's at once)."""
    if not content and not embedding:
        return f"missing {name('content')} (and no embedding)"
    if len(content) > _CONTENT_CHARS_SAFE and len(content.encode()) > MAX_CONTENT_BYTES:
        return (f"{name('content')} is {len(content.encode())} bytes; the limit is "
                f"{MAX_CONTENT_BYTES}")
    if not 0.0 <= confidence <= 1.0:
        return f"{name('confidence')} {confidence} is outside 0..1"
    if embedding:
        error = embedding_error(embedding, finite)
        if error:
            return f"{name('embedding')} {error}"
    if not 0 <= decay_rate <= FLOAT32_MAX:  # NaN and infinity too
        return f"{name('decay_rate')} must be a number >= 0, not {decay_rate!r}"
    if memory_type not in MEMORY_TYPES:
        return memory_type_error(memory_type, name("memory_type"))
    return ""


# Epoch seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of a protobuf
# Timestamp, which carries created_at.
FIRST_SECOND, LAST_SECOND = -62_135_596_800, 253_402_300_799


def split_seconds(t: float) -> tuple[int, int]:
    """Epoch seconds -> a Timestamp's (seconds, nanos), nanos in 0..999,999,999 (also before
    1970) and rounded: truncated, a time read back from its float lost a nanosecond now
    and then (0.130881237 s is 130,881,236.99999... ns), and an exported space imported
    again was not the same."""
    seconds = math.floor(t)
    nanos = round((t - seconds) * 1e9)
    if nanos < 1_000_000_000:
        return seconds, nanos
    if seconds < LAST_SECOND:
        return seconds + 1, 0
    return seconds, 999_999_999  # the last nanosecond a Timestamp holds


def created_at_error(seconds: float, name: Callable[[str], str] = _field) -> str:
    """Why `seconds` cannot be a memory's created_at, or '' when it can."""
    if FIRST_SECOND <= seconds < LAST_SECOND + 1:  # NaN fails
        return ""
    return f"{name('created_at')} {seconds:g} is outside the years 1 to 9999"


def embedding_error(embedding: bytes | Sequence[float], finite: bool = False) -> str:
    dims = len(embedding) // 4 if isinstance(embedding, bytes) else len(embedding)
    if dims > MAX_EMBEDDING_DIMS:
        return f"has {dims} dimensions; the limit is {MAX_EMBEDDING_DIMS}"
    if finite:
        return ""
    if isinstance(embedding, bytes):
        import numpy as np

        finite = bool(np.isfinite(np.frombuffer(embedding, dtype=np.float32)).all())
    else:
        # One cheap pass for the common case: magnitudes that sum to within float32's
        # range bound every value (NaN and infinity fail the comparison); only a vector
        # that fails it is checked value by value.
        finite = (sum(map(abs, embedding)) <= FLOAT32_MAX
                  or all(-FLOAT32_MAX <= x <= FLOAT32_MAX for x in embedding))
    return "" if finite else "contains NaN, infinity or a value out of float32 range"


def dimension_error(dim: int, space: str, held: int, what: str = "embedding") -> str:
    """Why a vector (`what`: an embedding, a cue) cannot join or be compared with a space's:
    a space holds the dimension of its first vector."""
    return f"{what} has {dim} dimensions; space {space!r} holds {held}"
