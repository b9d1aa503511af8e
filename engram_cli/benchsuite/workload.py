"""What the benchmark writes and asks: realistic memories, each with content no other
write in the run has, and cues that hit them.

Unique content matters: a memory sent without an id gets a content-derived id, so
writing the same text twice is an "unchanged" no-op on the second write and would make
a write benchmark measure lookups instead of writes.

The records come from engram_cli.benchsuite.datagen: the same sentences every other
benchmark uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from engram_cli.benchsuite import datagen
from engram_cli.rpc import pb

_TYPES = {"episodic", "semantic", "procedural", "working"}


class Workload:
    """Hands out never-repeating memories for one run."""

    def __init__(self, seed: int = 0, source: Callable[[int, int], dict[str, Any]] | None
                 = None) -> None:
        if source is None:
            source = datagen.record
            self.source_name = "engram_cli.benchsuite.datagen"
        else:
            self.source_name = getattr(source, "__name__", "custom")
        self._source = source
        self._seed = seed
        self._next = 0
        # Upstream refuses a memory without a vector of its dimension: against a server
        # without our extensions every memory carries one (`embedding_dim`).
        self.embedding_dim = 0

    def records(self, n: int) -> list[dict[str, Any]]:
        start = self._next
        self._next += n
        return [self._source(i, self._seed) for i in range(start, start + n)]

    def memories(self, n: int) -> list[Any]:
        return [to_memory(r, self.embedding_dim) for r in self.records(n)]

    def requests(self, space: str, n: int) -> list[Any]:
        return [pb.RememberRequest(memory_space_id=space, memory=m) for m in self.memories(n)]


def to_memory(record: dict[str, Any], embedding_dim: int = 0) -> Any:
    """The engram.v1 Memory of a record; with `embedding_dim`, carrying a placeholder unit
    vector of that length (the write costs what a real one would; recall is by text)."""
    kind = str(record.get("memory_type", ""))
    m = pb.Memory(
        content=record["content"], tags=record.get("tags", []),
        metadata=record.get("metadata", {}),
        memory_type=f"MEMORY_TYPE_{kind.upper()}" if kind in _TYPES else None)
    if "confidence" in record:
        m.confidence.value = float(record["confidence"])
    if record.get("created_at"):
        m.created_at.FromJsonString(record["created_at"])
    if embedding_dim:
        m.embedding.extend(_placeholder(embedding_dim))
    return m


_PLACEHOLDERS: dict[int, list[float]] = {}


def _placeholder(dim: int) -> list[float]:
    vector = _PLACEHOLDERS.get(dim)
    if vector is None:
        vector = _PLACEHOLDERS[dim] = [1.0] + [0.0] * (dim - 1)
    return vector


def cue_for(record: dict[str, Any], rng: random.Random) -> str:
    """A few distinctive words of one record: a cue that finds it."""
    meta = record.get("metadata", {})
    words = [w for w in (meta.get("person"), meta.get("location")) if w]
    candidates = [w.strip(".,;:()") for w in record["content"].split()]
    candidates = [w for w in candidates if len(w) > 5 and w.islower()]
    words += rng.sample(candidates, min(2, len(candidates)))
    return " ".join(words)


def hot_cues(records: list[dict[str, Any]], k: int, seed: int = 0) -> list[str]:
    """k distinct cues, each finding one of the records: the cues asked again and again."""
    rng = random.Random(seed + 101)
    picked = rng.sample(records, min(k, len(records)))
    return list(dict.fromkeys(cue_for(r, rng) for r in picked))


def cue_sequence(hot: list[str], records: list[dict[str, Any]], ops: int, hit_rate: float,
                 seed: int) -> list[str]:
    """`ops` cues: a share `hit_rate` repeats a hot cue; the rest are cues never asked
    before (each unique, so each is a cache miss), built from the same records so they
    cost the server a real recall. A new seed gives new never-asked cues."""
    rng = random.Random(seed * 7919 + 17)
    n_hot = round(ops * hit_rate)
    sequence = [rng.choice(hot) for _ in range(n_hot)]
    for j in range(ops - n_hot):
        # The trailing token keeps the cue (and so its cache key) new; the words before
        # it still match, so the server does the work of a real recall.
        sequence.append(f"{cue_for(rng.choice(records), rng)} q{seed}x{j}")
    rng.shuffle(sequence)
    return sequence
