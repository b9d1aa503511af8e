"""engram_cli.ext.v1.ExtensionService: our batch, settings and admin RPCs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from engram_cli import __version__
from engram_cli.contract import EXTENSION_SERVICE, method_path
from engram_cli.engine.model import resolve_space
from engram_cli.engine.rules import created_at_error
from engram_cli.engine.settings import SPECS
from engram_cli.engine.store import Store
from engram_cli.engine.writes import WriteBatch
from engram_cli.errors import InvalidArgument
from engram_cli.rpc import ext, ext_svc
from engram_cli.server.convert import add_memory_pb, add_memory_views, read_batch_remember
from engram_cli.server.errors import streaming, unary
from engram_cli.tuning.server_config import ServerConfig

# BatchRemember's bytes are read as a BatchRememberView (same wire shape) where they fit
# it: each vector arrives as the float32 bytes the store keeps. The guard
# (server/guard.py) deserializes with these in place of the generated parsers.
REQUEST_PARSERS = {
    method_path(EXTENSION_SERVICE, "BatchRemember"): read_batch_remember,
}


class ExtensionServicer(ext_svc.ExtensionServiceServicer):
    def __init__(self, store: Store, config: ServerConfig, info: dict[str, Any]) -> None:
        self.store = store
        self.config = config
        self.info = info

    @unary
    def BatchRemember(self, request: Any, context: grpc.ServicerContext) -> Any:
        store = self.store
        max_batch = store.settings.max_batch
        memories = request.memories
        n = len(memories)
        if n > max_batch:
            raise InvalidArgument(f"batch of {n} memories is over max_batch {max_batch}",
                                  "send smaller batches")
        batch = WriteBatch(resolve_space(request.memory_space_id), store.clock())
        if isinstance(request, ext.BatchRememberView):
            add_memory_views(batch, memories)
        else:
            for i, m in enumerate(memories):
                add_memory_pb(batch, i, m)
        codes = store.write_batch(batch)
        # (write_batch adds to batch.rejected what the writer refused.)
        resp = ext.BatchRememberResponse(pressure=store.pressure, max_batch=max_batch,
                                         stored=n - len(batch.rejected),
                                         rejected=len(batch.rejected))
        # results.add() with only the non-default fields: a third of the cost of building
        # BatchItemResult objects, which showed at tens of thousands of items per second.
        add = resp.results.add
        invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
        # One outcome per memory, in request order. Rows are the valid memories in order,
        # and the engine's outcome codes are ItemOutcome's numbers (tests/test_server_rpcs.py
        # checks they stay so).
        outcomes: list[int] = codes
        if batch.rejected:
            outcomes = [ext.ITEM_OUTCOME_REJECTED] * n
            for i, code in zip(batch.positions, codes, strict=True):
                outcomes[i] = code
        refused = {i: (mid, why) for i, mid, why in batch.rejected}
        if request.compact:
            resp.outcomes.extend(outcomes)
            for i, (mid, why) in refused.items():
                add(index=i, memory_id=mid, outcome=ext.ITEM_OUTCOME_REJECTED, code=invalid,
                    error=why)
            return resp
        ids = [""] * n
        for i, row in zip(batch.positions, batch.rows, strict=True):
            ids[i] = row[1]
        for i, code in enumerate(outcomes):
            if i in refused:
                mid, why = refused[i]
                add(index=i, memory_id=mid, outcome=ext.ITEM_OUTCOME_REJECTED, code=invalid,
                    error=why)
            else:
                add(index=i, memory_id=ids[i], outcome=code)
        return resp

    @unary
    def ServerInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return ext.ServerInfoResponse(
            version=__version__, pid=os.getpid(), data_dir=str(self.store.data_dir),
            max_message_bytes=self.store.settings.max_message_bytes,
            max_batch=self.store.settings.max_batch,
            started_at=self.info["started_at"],
            idle_timeout_s=self.info.get("idle_timeout_s", 0.0))

    @unary
    def GetSettings(self, request: Any, context: grpc.ServicerContext) -> Any:
        settings, sources = self.config.snapshot()
        values = settings.as_dict()
        return ext.GetSettingsResponse(
            settings=[
                ext.Setting(key=s.key, value_json=json.dumps(values[s.key]),
                            default_json=json.dumps(s.default), source=sources[s.key],
                            restart_required=s.restart_required, description=s.description)
                for s in SPECS
            ],
            config_path=str(self.config.path))

    @unary
    def ApplySettings(self, request: Any, context: grpc.ServicerContext) -> Any:
        values = {}
        for key, raw in request.values_json.items():
            try:
                values[key] = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                # RecursionError: nesting deeper than the parser's stack (`[[[[...`).
                shown = raw if len(raw) <= 60 else raw[:60] + "..."
                raise InvalidArgument(f"setting {key!r}: {shown!r} is not a JSON value") \
                    from exc
        # The engine gets the new settings inside the config's lock, so that concurrent
        # applies reach the engine in the order they reach the file.
        _, changes = self.config.apply(values, reset=request.reset, dry_run=request.dry_run,
                                       on_change=self.store.update_settings)
        return ext.ApplySettingsResponse(
            changes=[ext.SettingChange(key=c.key, before_json=json.dumps(c.before),
                                       after_json=json.dumps(c.after),
                                       restart_required=c.restart_required) for c in changes],
            restart_required=[c.key for c in changes if c.restart_required],
            applied=not request.dry_run)

    @unary
    def DropSpace(self, request: Any, context: grpc.ServicerContext) -> Any:
        return ext.DropSpaceResponse(memories_deleted=self.store.drop_space(
            request.memory_space_id))

    @streaming
    def Export(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        since = request.since
        # Memories may be from before 1970 (years 1-9999), so may a since: 0 is "none".
        error = created_at_error(since, lambda _: "since")
        if error:
            raise InvalidArgument(error, "give unix seconds within the years 1 to 9999")
        yield from _behind(self._export_pages(request, since or None))

    def _export_pages(self, request: Any, since: float | None) -> Iterator[Any]:
        page_pb, assoc_pb = ext.ExportPage, ext.ExportedAssociation
        for total, rows, edges in self.store.export(request.memory_space_id, since,
                                                    request.include_embeddings,
                                                    request.page_size):
            page = page_pb(total=total)
            add = page.memories.add
            for mid, content, emb, conf, tags, meta, mtype, created, decay, state in rows:
                m = add(id=mid, content=content, embedding=emb, confidence=conf,
                        tags_json=tags, metadata_json=meta, memory_type=mtype,
                        created_at=created, decay_rate=decay, state=state)
                if mid in edges:
                    m.associations.extend(assoc_pb(target=t, strength=st, type=k, reason=why)
                                          for t, st, k, why in edges[mid])
            yield page

    @unary
    def PutAssociations(self, request: Any, context: grpc.ServicerContext) -> Any:
        edges = [(a.source, a.target, a.strength, a.type, a.reason)
                 for a in request.associations]
        return ext.PutAssociationsResponse(
            written=self.store.put_associations(request.memory_space_id, edges))

    @unary
    def ListSpaces(self, request: Any, context: grpc.ServicerContext) -> Any:
        return ext.ListSpacesResponse(spaces=[ext.SpaceInfo(**s) for s in self.store.spaces()])

    @unary
    def Backup(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.destination:
            raise InvalidArgument("the backup destination is empty")
        report = self.store.backup(Path(request.destination))
        return ext.BackupResponse(path=report.path, memories=report.memories,
                                  associations=report.associations, bytes=report.bytes,
                                  seconds=report.seconds)


EXPORT_NICENESS = 10  # as the indexer's: recall and writes come first on a busy machine
_AHEAD = 2  # pages made ahead of the client


def _behind(pages: Iterator[Any]) -> Iterator[Any]:
    """The pages, made on a thread of their own at a lowered CPU priority, at most _AHEAD
    ahead of the client: an export reads and encodes the whole space, and on a small
    machine recall should not wait behind it. (A gRPC worker thread cannot be niced for
    one call: an unprivileged process cannot raise its priority back.) Stops the thread
    when the client goes away."""
    import contextlib
    import queue
    import threading

    out: queue.Queue[tuple[str, Any]] = queue.Queue(_AHEAD)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EXPORT_NICENESS)
        try:
            for page in pages:
                if not put(("page", page)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the RPC's thread, which reports it
            put(("error", exc))
        finally:
            pages.close()  # type: ignore[attr-defined]  # a generator: ends the snapshot

    thread = threading.Thread(target=produce, name="engram-export", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = out.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def started_info(idle_timeout_s: float) -> dict[str, Any]:
    return {"started_at": time.time(), "idle_timeout_s": idle_timeout_s}
