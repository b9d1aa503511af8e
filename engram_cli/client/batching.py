"""What the bulk sender works with, apart from the sending itself: records framed for the
wire (a serialized Memory is the same bytes inside a `BatchRememberRequest` and a
`RememberRequest`, so requests are built by concatenation), the sender's options and
bounds, the adaptive batch sizer, the `Entry` a record travels as and the `Listener` its
caller implements. No gRPC here: the sizer and the framing are tested on their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engram_cli.client.settings import AUTO, DEFAULT_RETRY_BUDGET_S, ClientSettings
from engram_cli.errors import EmbeddingRequired

START_BATCH = 500
MIN_BATCH = 50
MAX_AUTO_BATCH = 20_000
SOFT_BATCH_BYTES = 16 * 1024 * 1024  # bigger requests only add latency
# What may be sent and not yet settled, besides the count of calls: at most this many
# records and bytes (or two batches, when two batches are more). It bounds the importer's
# memory whatever the batch size, and lets big batches (whose server commits are cheaper
# per record) go with fewer calls in flight.
INFLIGHT_RECORDS = 40_000
INFLIGHT_BYTES = 64 * 1024 * 1024
HEADROOM_BYTES = 64 * 1024  # request header and framing around the memories
UPSTREAM_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # gRPC's default, what an unknown server takes
CALL_TIMEOUT_S = 120.0


def varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:  # most memories: one shortcut instead of the loop
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(memory: bytes) -> bytes:
    """A serialized Memory as field 2 of BatchRememberRequest / RememberRequest."""
    return b"\x12" + varint(len(memory)) + memory


def space_header(space: str) -> bytes:
    """Field 1 (memory_space_id) of both request types; empty for the default space."""
    if not space:
        return b""
    data = space.encode()
    return b"\x0a" + varint(len(data)) + data


# Upstream's refusal: "Embedding must be exactly 768 dimensions".
_DIMENSION_REFUSAL = re.compile(r"embedding.*exactly (\d+) dimensions", re.IGNORECASE)


def embedding_refusal(address: str, details: str) -> EmbeddingRequired | None:
    """The error to stop with when a server refuses a record for its embedding's
    dimension (the number taken from the server's message); None for any other refusal."""
    m = _DIMENSION_REFUSAL.search(details or "")
    if m is None:
        return None
    dim = m.group(1)
    return EmbeddingRequired(
        f"the server at {address} stores only memories with a {dim}-dimensional embedding "
        f"and refused the first records (\"{details}\")",
        f"embed the text on this machine: run the same command with --embed --embed-dim {dim}")


# Our server's refusal (engine/rules.py dimension_error): "embedding has 768 dimensions;
# space 'notes' holds 256".
_SPACE_DIMENSION = re.compile(r"embedding has (\d+) dimensions; space (.+) holds (\d+)$")


def space_dimension_refusal(address: str, reasons: list[str]) -> EmbeddingRequired | None:
    """The error to stop with when a server refused every record of a batch because its
    space holds vectors of another dimension; None when any was refused for another
    reason."""
    found: set[tuple[str, str]] = set()
    for reason in reasons:
        m = _SPACE_DIMENSION.search(reason or "")
        if m is None:
            return None
        found.add((m.group(2), m.group(3)))
    if len(found) != 1:
        return None
    ((space, held),) = found
    return EmbeddingRequired(
        f"the server at {address} keeps {held}-dimensional vectors in space {space} and "
        f"refused every record of the first batch (\"{reasons[0]}\")",
        f"send {held}-dimensional vectors (with --embed: --embed-dim {held}), or import "
        "into a space of their own (--space NAME)")


# BatchRememberRequest.compact = true (field 12, varint): outcomes answered as one packed
# list instead of a BatchItemResult per memory. Only BatchRemember requests carry it.
COMPACT = b"\x60\x01"


@dataclass(frozen=True)
class SendOptions:
    batch: int | None = None  # None: adaptive
    pool: int = 4
    stream: bool | None = None  # None: batch RPC when served; True: always stream; False: never
    rate: float = 0.0  # records/s; 0: unlimited
    retry_budget_s: float = DEFAULT_RETRY_BUDGET_S
    window: int = 0  # calls in flight (or waiting to retry); 0: twice the pool
    timeout_s: float = CALL_TIMEOUT_S

    @property
    def max_outstanding(self) -> int:
        return self.window or 2 * self.pool

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> SendOptions:
        """The sender's share of the client settings ("auto" batch and stream: None)."""
        return cls(batch=None if settings.batch == AUTO else int(settings.batch),
                   pool=settings.pool,
                   stream=None if settings.stream == AUTO else bool(settings.stream),
                   rate=settings.rate, retry_budget_s=settings.retry_budget_s)


class BatchSizer:
    """Records per batch. Fixed, or adaptive: grows fast while batches come back quickly and
    the server's write queue is calm, shrinks when they are slow or the server pushes back,
    and in between climbs on measured throughput.

    With several batches in flight a batch's latency is mostly time spent queued behind the
    others, so latency alone stops growth early; bigger batches still pay off on the server
    (its commits amortize index writes), and records/s over a few batches shows it."""

    WINDOW = 3  # batches per throughput measurement

    def __init__(self, fixed: int | None, high: int, start: int = START_BATCH,
                 low: int = MIN_BATCH, fast_s: float = 1.0, slow_s: float = 2.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fixed = fixed
        self.high = max(1, high)
        self.low = min(low, self.high)
        self.size = min(fixed, self.high) if fixed else max(self.low, min(start, self.high))
        self.fast_s = fast_s
        self.slow_s = slow_s
        self._clock = clock
        self._window_start = clock()
        self._window_records = 0
        self._window_batches = 0
        self._last_rate = 0.0
        self._direction = 1  # +1 growing, -1 shrinking

    def _resize(self, size: int) -> None:
        self.size = max(self.low, min(self.high, size))
        self._window_start = self._clock()
        self._window_records = self._window_batches = 0

    def observe(self, n: int, latency_s: float, pressure: float = 0.0) -> None:
        if self.fixed:
            return
        if pressure >= 0.75 or latency_s > self.slow_s:
            self._last_rate = 0.0
            self._direction = -1
            self._resize(int(self.size * 0.7))
            return
        if pressure < 0.5 and latency_s < self.fast_s:
            # Any batch back quickly grows the size, even one sent before the last growth:
            # with a window of batches in flight, waiting for one of the new size first
            # took most of a 200,000-record import to reach the bound.
            self._direction = 1
            self._resize(int(self.size * 1.5) + 1)
            return
        self._window_records += n
        self._window_batches += 1
        if self._window_batches < self.WINDOW:
            return
        elapsed = self._clock() - self._window_start
        rate = self._window_records / elapsed if elapsed > 0 else 0.0
        if self._last_rate and rate < self._last_rate * 0.97:
            self._direction = -self._direction  # the last step made things worse
        self._last_rate = rate
        step = 1.25 if self._direction > 0 else 0.8
        self._resize(int(self.size * step) + (1 if self._direction > 0 else 0))

    def overloaded(self) -> None:
        if not self.fixed:
            self._direction = -1
            self._resize(self.size // 2)


class Entry:
    """One record on its way. `framed` is what goes on the wire (see `frame`); `source`
    says which input it came from: a batch holds records of one source, so that what is
    settled can be told per source (`BulkSender.unsettled`). `line`, `offset` and `raw`
    are the caller's, handed back with the record's outcome. `text` is what an embedding
    stage is to embed for it before it is sent (None: nothing); until then `framed` holds
    the bare Memory, which the stage frames with the vector. `key`, the memory's id, keeps
    two records of one memory in their input's order (BulkSender)."""

    __slots__ = ("framed", "key", "line", "offset", "raw", "source", "text")

    def __init__(self, framed: bytes, source: int, line: int, offset: int,
                 raw: bytes, text: str | None = None, key: str | None = None) -> None:
        self.framed = framed
        self.source = source
        self.line = line
        self.offset = offset
        self.raw = raw
        self.text = text
        self.key = key  # the memory's id: a later record of it waits for the earlier


class Listener(Protocol):
    """What a sender tells its caller, always on the caller's thread."""

    def stored(self, n: int, outcomes: dict[str, int]) -> None:
        """`n` records were stored; `outcomes` counts them as created, updated and
        unchanged (or "stored" where the server does not say)."""

    def rejected(self, entry: Entry, reason: str) -> None:
        """`entry` will not be stored: the server refused it, or it is too large for any
        request."""

    def notice(self, message: str) -> None:
        """Something the user should know (a fallback, a limit applied)."""

    def tick(self) -> None:
        """The caller's turn while the sender waits (about every 0.1 s): report progress,
        save a checkpoint, call `stop`."""
