"""A servicer that behaves on the wire as an upstream Engram node does (see the team's
wire notes, "How upstream Engram nodes behave"), over our real Store:

- Remember and StreamingRemember refuse a Memory (or Episode) whose embedding is not
  exactly 768 floats: INVALID_ARGUMENT "Embedding must be exactly 768 dimensions";
- the first refused item ends a StreamingRemember stream with that status; the items
  before it are answered, the ones after it are never processed;
- an absent confidence is 0.7; unary Remember drops tags and metadata;
- a space id is 3-64 characters of [a-z0-9_-] (the message says 4-64, as upstream's does);
- an embedding cue must have 768 floats; returned memories carry an all-zero embedding
  and no word on which index seeded them;
- no ExtensionService at all (UNIMPLEMENTED), unless a test registers one.

It is not a mock of our server: it is the other server we claim to serve, run for real.
`remembered` counts the memories each RPC stored, so tests can say what arrived.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from engram_cli.contract import SEED_KEY
from engram_cli.errors import InvalidArgument
from engram_cli.server.servicer import EngramServicer

UPSTREAM_DIM = 768
DIM_ERROR = f"Embedding must be exactly {UPSTREAM_DIM} dimensions"
UPSTREAM_CONFIDENCE = 0.7
UPSTREAM_VECTOR = [1.0] + [0.0] * (UPSTREAM_DIM - 1)  # what a test sends where any will do
_SPACE = re.compile(r"[a-z0-9_-]{3,64}")


class Refused(Exception):
    """One request upstream would refuse with INVALID_ARGUMENT."""


class UpstreamServicer(EngramServicer):
    """engram.v1 as an upstream node answers it."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self.remembered = 0
        self.streams = 0  # StreamingRemember calls opened
        self.embeddings_seen: list[int] = []  # the length of every embedding stored
        self.recall_cues: list[str] = []  # the cue type of every Recall

    def _checked(self, request: Any, unary: bool) -> Any:
        space = request.memory_space_id
        if space and not _SPACE.fullmatch(space):
            raise Refused(f"Invalid memory space ID '{space}': must be 4-64 characters, "
                          "lowercase alphanumeric, hyphens or underscores")
        kind = request.WhichOneof("memory_type")
        if kind is None:
            raise Refused("Memory or episode is required")
        item = request.memory if kind == "memory" else request.episode
        if len(item.embedding) != UPSTREAM_DIM:
            raise Refused(DIM_ERROR)
        copy = type(request)()
        copy.CopyFrom(request)
        item = copy.memory if kind == "memory" else copy.episode
        if kind == "memory":
            if not item.HasField("confidence"):
                item.confidence.value = UPSTREAM_CONFIDENCE
            if unary:
                del item.tags[:]
                item.metadata.clear()
        return copy

    def _stored(self, request: Any) -> None:
        kind = request.WhichOneof("memory_type")
        item = request.memory if kind == "memory" else request.episode
        with self._lock:
            self.remembered += 1
            self.embeddings_seen.append(len(item.embedding))

    def Remember(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            checked = self._checked(request, unary=True)
        except Refused as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        resp = super().Remember(checked, context)
        self._stored(checked)
        return resp

    def StreamingRemember(self, request_iterator: Any, context: grpc.ServicerContext
                          ) -> Iterator[Any]:
        with self._lock:
            self.streams += 1
        for request in request_iterator:
            try:
                checked = self._checked(request, unary=False)
            except Refused as exc:
                # tonic sends the error as the stream's end: nothing after it is read.
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            yield from self._remember_group([checked])
            self._stored(checked)

    def _recall(self, request: Any, knobs: dict[str, Any] | None = None) -> tuple[Any, str]:
        space = request.memory_space_id
        if space and not _SPACE.fullmatch(space):
            raise InvalidArgument(f"Invalid memory space ID '{space}'")
        kind = request.cue.WhichOneof("cue_type") if request.HasField("cue") else None
        with self._lock:
            self.recall_cues.append(kind or "")
        if kind == "embedding" and len(request.cue.embedding.vector) != UPSTREAM_DIM:
            raise InvalidArgument(
                f"Embedding cue must be exactly {UPSTREAM_DIM} dimensions, got "
                f"{len(request.cue.embedding.vector)}")
        resp, _ = super()._recall(request, knobs)
        for m in resp.memories:  # upstream answers a placeholder, never the stored vector
            del m.embedding[:]
            m.embedding.extend([0.0] * UPSTREAM_DIM)
            m.metadata.pop(SEED_KEY, None)  # nor says which index seeded a memory
        return resp, ""  # upstream never says an answer may be incomplete
