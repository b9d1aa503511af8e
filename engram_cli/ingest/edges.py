"""The associations of imported records (what `engram export` writes on each source
memory), kept aside while the memories are sent and written once they have all landed:
an edge is only usable when both its memories exist (the spreading index, migration 002,
is filled as an association is written), and a record may point at one further on.

They wait in an unnamed temporary file, not in memory, so an import of millions of
exported memories stays flat. A resumed import (--resume) writes only the associations of
the records it reads itself: import the file again without --resume to restore them all
(nothing is stored twice, and writing an edge again changes nothing).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import IO

import orjson

from engram_cli.config import Connection
from engram_cli.errors import Unsupported

EDGES_PER_CALL = 5000


class EdgeSpool:
    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self.count = 0

    def add(self, source: str, edges: list[tuple[str, float, int, str]]) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="engram-edges-")  # noqa: SIM115
        self._file.write(orjson.dumps([source, edges]) + b"\n")
        self.count += len(edges)

    def _chunks(self) -> Iterator[list[tuple[str, str, float, int, str]]]:
        assert self._file is not None
        self._file.flush()
        self._file.seek(0)
        chunk: list[tuple[str, str, float, int, str]] = []
        for line in self._file:
            source, edges = orjson.loads(line)
            chunk.extend((source, t, s, k, r) for t, s, k, r in edges)
            if len(chunk) >= EDGES_PER_CALL:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def apply(self, conn: Connection, warn: Callable[[str], None]) -> int:
        """Write every spooled edge through PutAssociations; answers edges written. A server
        without that RPC gets a warning (its memories are stored; their edges are not)."""
        from engram_cli.client.api import EngramClient
        from engram_cli.rpc import ext

        written = 0
        with EngramClient(conn, autostart=False) as client:
            for chunk in self._chunks():
                request = ext.PutAssociationsRequest(memory_space_id=conn.space, associations=[
                    ext.Association(source=s, target=t, strength=st, type=k, reason=r)
                    for s, t, st, k, r in chunk])
                try:
                    written += client.call(client.ext.PutAssociations, request,
                                           "PutAssociations").written
                except Unsupported:
                    warn(f"{self.count:,} associations not written: the server at "
                         f"{conn.server} has no PutAssociations RPC")
                    return written
        return written

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
