"""The server under test and the scratch memory space the benchmark works in.

Every write goes to a fresh `bench-<hex>` space; `cleanup()` removes it (DropSpace on
servers with our ExtensionService, else Forget(DELETE) of every id written) and is meant
to run in a `finally`, so an error or Ctrl-C still leaves the server as it was. Other
spaces are never named in any request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from engram_cli.client.connection import call_metadata, open_channel, translate
from engram_cli.config import Connection
from engram_cli.errors import EngramError, Unsupported
from engram_cli.rpc import ext, ext_svc, pb, svc

T = TypeVar("T")
CALL_TIMEOUT_S = 120.0
SCRATCH_PREFIX = "bench-"
FORGET_WINDOW = 64
CUT_WRITE_GRACE_S = 0.5


def scratch_space_id() -> str:
    """A space id nobody else uses: 'bench-' + 12 hex digits (valid: 3-64 of [a-z0-9_-])."""
    return SCRATCH_PREFIX + secrets.token_hex(6)


class Target:
    """One long-lived channel to the server, the stubs, and the ids this run wrote."""

    def __init__(self, conn: Connection, space: str | None = None) -> None:
        self.conn = conn
        self.address = conn.server
        self.metadata = call_metadata(conn)
        self.space = space or scratch_space_id()
        self.channel = open_channel(self.address, tls=conn.tls)
        self.stub = svc.EngramServiceStub(self.channel)
        self.ext = ext_svc.ExtensionServiceStub(self.channel)
        self.written: set[str] = set()
        # Contents of the write in flight: if it is cut short (Ctrl-C, an error), its ids
        # are computed from them so the fallback clean-up still finds those memories.
        self._pending: list[str] = []
        self.extensions = False
        self.server_version = ""
        self.max_batch = 0

    # -- set-up -------------------------------------------------------------------------

    def probe(self) -> None:
        """Find out whether the server has our ExtensionService (and its batch limit);
        this is also the first call, so an unreachable server fails here."""
        try:
            info = self.ext.ServerInfo(ext.ServerInfoRequest(), metadata=self.metadata,
                                       timeout=15.0)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                raise translate(err, self.address, "ServerInfo", self.conn.tls) from None
            # An upstream-shaped server: make sure something answers there (a server
            # without Introspect still answers, with UNIMPLEMENTED: good enough).
            try:
                self.call(self.stub.Introspect, pb.IntrospectRequest(
                    memory_space_id=self.space), "Introspect")
            except Unsupported:
                pass
            return
        self.extensions = True
        self.server_version = info.version
        self.max_batch = info.max_batch

    def call(self, method: Callable[..., T], request: Any, what: str) -> T:
        try:
            return method(request, metadata=self.metadata, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as err:
            raise translate(err, self.address, what, self.conn.tls) from None

    def wait_indexed(self, timeout_s: float = 120.0) -> None:
        """Wait until our server's vector index holds what was written (its answers are
        partial, and never cached, until then); at once for other servers."""
        from engram_cli.client.api import wait_indexed

        if self.extensions:
            wait_indexed(lambda: self.call(self.stub.Introspect, pb.IntrospectRequest(
                memory_space_id=self.space), "Introspect"), timeout_s)

    # -- the operations the rows time --------------------------------------------------

    def remember(self, memory: Any, stub: Any = None) -> None:
        self._pending = [memory.content]
        resp = self.call((stub or self.stub).Remember,
                         pb.RememberRequest(memory_space_id=self.space, memory=memory),
                         "Remember")
        self._wrote([resp.memory_id], 1)

    def batch(self, memories: Sequence[Any]) -> None:
        self._pending = [m.content for m in memories]
        resp = self.call(self.ext.BatchRemember, ext.BatchRememberRequest(
            memory_space_id=self.space, memories=memories), "BatchRemember")
        self._wrote([r.memory_id for r in resp.results
                     if r.outcome != ext.ITEM_OUTCOME_REJECTED], len(memories))

    def stream(self, requests: Sequence[Any]) -> None:
        self._pending = [r.memory.content for r in requests]
        try:
            ids = [r.memory_id for r in self.stub.StreamingRemember(
                iter(requests), metadata=self.metadata, timeout=CALL_TIMEOUT_S)]
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                self._pending = []  # nothing was written
            raise translate(err, self.address, "StreamingRemember", self.conn.tls) from None
        self._wrote(ids, len(requests))

    def _wrote(self, ids: Sequence[str], sent: int) -> None:
        stored = [i for i in ids if i]
        self.written.update(stored)
        self._pending = []
        if len(stored) != sent:
            # A rejected write would make the figure measure something else: stop.
            raise EngramError(f"the server stored {len(stored)} of {sent} benchmark "
                              f"memories in scratch space {self.space}",
                              "see the server's log; the benchmark needs writes to succeed")

    # -- tear-down ---------------------------------------------------------------------

    def cleanup(self) -> dict[str, Any]:
        """Remove the scratch space. Answers what was done; never raises for a server
        that went away (the caller is usually unwinding from another error)."""
        try:
            done = self._remove()
            if self._pending:
                # A write was cut short (Ctrl-C, an error): the server may still commit
                # what it had already received after the first pass. Give it a moment
                # and sweep again.
                time.sleep(CUT_WRITE_GRACE_S)
                again = self._remove()
                done["deleted"] += again["deleted"]
            return done
        except EngramError as exc:
            return {"space": self.space, "method": "failed", "error": str(exc)}
        finally:
            self.channel.close()

    def _remove(self) -> dict[str, Any]:
        if self.extensions:
            resp = self.call(self.ext.DropSpace,
                             ext.DropSpaceRequest(memory_space_id=self.space), "DropSpace")
            return {"space": self.space, "method": "DropSpace",
                    "deleted": int(resp.memories_deleted)}
        return self._forget_each()

    def _forget_each(self) -> dict[str, Any]:
        from engram_cli.engine.model import content_id

        # Ids the server answered with, plus the content ids of a write cut short (sent,
        # not answered): an Engram server names a memory sent without an id that way.
        ids = sorted(self.written.union(content_id(c) for c in self._pending if c))
        deleted = 0
        # engram.v1 deletes one id per call: keep a window of calls in flight so that a
        # run's worth of memories goes in seconds, not one round trip at a time.
        for start in range(0, len(ids), FORGET_WINDOW):
            futures = [self.stub.Forget.future(
                pb.ForgetRequest(memory_space_id=self.space, memory_id=memory_id,
                                 mode=pb.FORGET_MODE_DELETE),
                metadata=self.metadata, timeout=60.0)
                for memory_id in ids[start:start + FORGET_WINDOW]]
            for future in futures:
                try:
                    deleted += future.result().memories_affected
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                        raise translate(err, self.address, "Forget", self.conn.tls) from None
        return {"space": self.space, "method": "Forget(DELETE) per id", "deleted": deleted}
