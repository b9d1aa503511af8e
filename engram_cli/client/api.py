"""A small synchronous client over one channel: the calls the CLI commands make."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from engram_cli.client.autostart import ensure_server
from engram_cli.client.connection import call_metadata, open_channel, translate
from engram_cli.config import Connection
from engram_cli.rpc import ext, ext_svc, pb, svc

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 60.0


class EngramClient:
    def __init__(self, conn: Connection, autostart: bool = True) -> None:
        if autostart:
            ensure_server(conn)
        self.conn = conn
        self.address = conn.server
        self.channel = open_channel(conn.server, tls=conn.tls)
        self.metadata = call_metadata(conn)
        self.stub = svc.EngramServiceStub(self.channel)
        self.ext = ext_svc.ExtensionServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> EngramClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: Callable[..., T], request: Any, what: str,
             timeout: float = DEFAULT_TIMEOUT_S, extra: tuple[tuple[str, str], ...] = ()
             ) -> T:
        """`method(request)` with this connection's metadata (and `extra`)."""
        try:
            return method(request, metadata=(*self.metadata, *extra), timeout=timeout)
        except grpc.RpcError as err:
            raise translate(err, self.address, what, self.conn.tls) from None

    def introspect(self, space: str | None = None) -> Any:
        return self.call(self.stub.Introspect, pb.IntrospectRequest(
            memory_space_id=space or "", include_health=True, include_statistics=True),
            "Introspect")

    def wait_indexed(self, space: str | None, timeout_s: float) -> int:
        """See `wait_indexed` below, over this client's channel."""
        return wait_indexed(lambda: self.introspect(space), timeout_s)

    def server_info(self) -> Any:
        return self.call(self.ext.ServerInfo, ext.ServerInfoRequest(), "ServerInfo")

    def recall_text(self, space: str, cue: str, limit: int = 10, **cue_fields: Any) -> Any:
        request = pb.RecallRequest(
            memory_space_id=space,
            cue=pb.Cue(semantic=pb.SemanticCue(query=cue), **cue_fields),
            max_results=limit, include_metadata=True)
        return self.call(self.stub.Recall, request, "Recall")


INDEX_PENDING_METRIC = "vector_index.pending"


def wait_indexed(introspect: Callable[[], Any], timeout_s: float,
                 poll_s: float = 0.25) -> int:
    """Wait until our server's vector index has taken in every change (embedding
    included), as Elasticsearch's `refresh=wait_for` waits for a write to be searchable:
    the changes still pending when `timeout_s` ran out (0: all in). `introspect` makes an
    Introspect call; a server whose answer has no such metric (upstream Engram indexes as
    it writes) has nothing to wait for."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        pending = int(introspect().metrics.get(INDEX_PENDING_METRIC, 0))
        if pending == 0 or time.monotonic() >= deadline:
            return pending
        time.sleep(poll_s)
