"""Small helpers for tests that speak gRPC to a real server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from engram_cli.rpc import ext_svc, pb, svc

# One lexical match of "old phone number" and two neighbours a hybrid recall finds.
PHONES = ["my old phone number was 555-0100", "call me on my mobile, it is 555-0199",
          "her telephone is 555-0142", "the garden needs watering"]


@contextmanager
def stubs(address: str) -> Iterator[tuple[Any, Any]]:
    channel = grpc.insecure_channel(address)
    try:
        yield svc.EngramServiceStub(channel), ext_svc.ExtensionServiceStub(channel)
    finally:
        channel.close()


def remember(stub: Any, content: str, space: str = "", **fields: Any) -> Any:
    return stub.Remember(pb.RememberRequest(memory_space_id=space,
                                            memory=pb.Memory(content=content, **fields)))


def recall(stub: Any, query: str, space: str = "", limit: int = 10, **cue: Any) -> Any:
    return stub.Recall(pb.RecallRequest(
        memory_space_id=space, cue=pb.Cue(semantic=pb.SemanticCue(query=query), **cue),
        max_results=limit, include_metadata=True))


def total(stub: Any, space: str = "") -> int:
    resp = stub.Introspect(pb.IntrospectRequest(memory_space_id=space, include_statistics=True))
    return int(resp.statistics.total_memories)
