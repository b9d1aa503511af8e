"""`engram export`'s library: a space streamed out of our Export RPC, page by page, and
written as records `engram import` reads back.

The record format (JSONL; CSV has the same columns, lists and objects as JSON text):

    {"id": ..., "content": ..., "embedding": [...], "confidence": 0.9, "tags": [...],
     "metadata": {...}, "memory_type": "semantic", "created_at": 1717171717.25,
     "decay_rate": 0.0, "state": "consolidated",
     "associations": [{"target": ID, "strength": 0.5, "type": 1, "reason": "..."}]}

`embedding` is left out with --no-embeddings or when the memory has none, `memory_type`
when unspecified, `associations` when the memory is the source of none (each edge is
written once, on its source). `state` and `associations` are ours: the importer sends the
state in the reserved metadata key (contract.STATE_KEY) and, once every memory has
landed, the associations through PutAssociations. Values are the stored ones, so that
export -> import -> export gives the same bytes: float32 values (embedding, confidence,
decay_rate) in their shortest float32 form, created_at as epoch seconds (every bit of the
stored double), tags and metadata as stored (keys sorted).

Memory stays one page deep on both sides: the server walks one read snapshot with a cursor
(engine/export.py), gRPC's flow control holds it back while this side writes.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engram_cli.config import Connection, in_data_dir
from engram_cli.errors import EngramError, Unsupported, UsageError
from engram_cli.files import open_in_place, write_in_place

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("id", "content", "embedding", "confidence", "tags", "metadata", "memory_type",
               "created_at", "decay_rate", "state", "associations")
GZIP_LEVEL = 1  # an export is written once and read soon: speed over the last few percent


@dataclass(frozen=True)
class ExportOptions:
    fmt: str = "jsonl"
    since: float | None = None
    embeddings: bool = True
    page_size: int = 0  # 0: the server's default


@dataclass
class ExportSummary:
    exported: int = 0
    associations: int = 0
    total: int = 0
    seconds: float = 0.0
    records_per_second: float = 0.0
    space: str = ""
    output: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_pages(conn: Connection, options: ExportOptions) -> Iterator[Any]:
    """The server's ExportPage messages; raises Unsupported when it has no Export RPC."""
    import grpc

    from engram_cli.client.connection import call_metadata, open_channel, translate
    from engram_cli.rpc import ext, ext_svc

    channel = open_channel(conn.server)
    try:
        stub = ext_svc.ExtensionServiceStub(channel)
        request = ext.ExportRequest(memory_space_id=conn.space, since=options.since or 0.0,
                                    include_embeddings=options.embeddings,
                                    page_size=options.page_size)
        try:
            yield from stub.Export(request, metadata=call_metadata(conn))
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                raise Unsupported(
                    f"the server at {conn.server} has no Export RPC (it is not an engram-cli "
                    "server, or an older one)",
                    "export from an engram-cli server; engram.v1 alone has no lossless way "
                    "out (its Recall answers carry no embeddings), so nothing was written"
                ) from None
            raise translate(err, conn.server, "Export") from None
    finally:
        channel.close()


class JsonlWriter:
    def __init__(self, out: IO[bytes]) -> None:
        import numpy as np
        import orjson

        self._out = out
        self._np = np
        self._dumps = orjson.dumps
        self._fragment = orjson.Fragment
        self._option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
        self._names = _names()
        self._f32: dict[float, Any] = {}

    def write_page(self, memories: Any) -> int:
        frombuffer, fragment, f32 = self._np.frombuffer, self._fragment, self._f32
        dumps, option = self._dumps, self._option
        types, states = self._names
        lines = []
        edges = 0
        for m in memories:
            rec: dict[str, Any] = {"id": m.id, "content": m.content}
            if emb := m.embedding:
                rec["embedding"] = frombuffer(emb, dtype="<f4")
            c = m.confidence
            rec["confidence"] = f32[c] if c in f32 else self._float32(c)
            rec["tags"] = fragment(m.tags_json)
            rec["metadata"] = fragment(m.metadata_json)
            if mtype := m.memory_type:
                rec["memory_type"] = types.get(mtype, mtype)
            rec["created_at"] = m.created_at
            d = m.decay_rate
            rec["decay_rate"] = f32[d] if d in f32 else self._float32(d)
            rec["state"] = states.get(m.state, "recent")
            if assoc := m.associations:
                rec["associations"] = _associations(assoc)
                edges += len(assoc)
            lines.append(dumps(rec, option=option))
        self._out.write(b"".join(lines))
        return edges

    def _float32(self, value: float) -> Any:
        # float32 scalars print in their shortest form; the few distinct confidences and
        # decay rates of a store are made once (numpy scalars cost more than the JSON).
        if len(self._f32) > 65536:
            self._f32.clear()
        v = self._f32[value] = self._np.float32(value)
        return v

    def close(self) -> None:
        pass


class CsvWriter:
    def __init__(self, out: IO[bytes]) -> None:
        import numpy as np
        import orjson

        self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        self._csv = csv.writer(self._text)
        self._csv.writerow(CSV_COLUMNS)
        self._np = np
        self._dumps = orjson.dumps
        self._numpy = orjson.OPT_SERIALIZE_NUMPY
        self._names = _names()

    def write_page(self, memories: Any) -> int:
        np, f32, dumps = self._np, self._np.float32, self._dumps
        types, states = self._names
        rows = []
        edges = 0
        for m in memories:
            emb = (dumps(np.frombuffer(m.embedding, dtype="<f4"), option=self._numpy).decode()
                   if m.embedding else "")
            assoc = ""
            if m.associations:
                assoc = dumps(_associations(m.associations)).decode()
                edges += len(m.associations)
            rows.append((m.id, m.content, emb, str(f32(m.confidence)), m.tags_json,
                         m.metadata_json, types.get(m.memory_type, "") if m.memory_type else "",
                         repr(m.created_at), str(f32(m.decay_rate)),
                         states.get(m.state, "recent"), assoc))
        self._csv.writerows(rows)
        return edges

    def close(self) -> None:
        self._text.flush()
        self._text.detach()


def _names() -> tuple[dict[int, str], dict[int, str]]:
    from engram_cli.engine.model import MemoryType, State

    return ({int(t): t.name.lower() for t in MemoryType if t},
            {int(s): s.name.lower() for s in State if s})


def _associations(edges: Any) -> list[dict[str, Any]]:
    out = []
    for a in edges:
        e: dict[str, Any] = {"target": a.target, "strength": a.strength}
        if a.type:
            e["type"] = a.type
        if a.reason:
            e["reason"] = a.reason
        out.append(e)
    return out


def check_output(path: Path) -> Path:
    """The directory `path` will be written in; UsageError when it cannot be (said before
    the export starts a server or asks one for anything)."""
    parent = path.parent if str(path.parent) else Path(".")
    if write_in_place(path):
        return parent  # /dev/null, a pipe (-o >(gzip > a.gz)): written into as it is
    if path.is_dir():
        raise UsageError(f"{path} is a directory", "name a file to write, e.g. -o export.jsonl")
    if path.exists() and not path.is_file():
        raise UsageError(f"{path} is not a regular file",
                         "name a file to write (or a pipe), e.g. -o export.jsonl")
    if in_data_dir(path):
        raise UsageError(f"{path} is in the engram data dir",
                         "export somewhere else: the files there are the store's own")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: {parent} "
                         + ("is not a directory" if parent.exists() else "does not exist"),
                         "create the directory first, or name a file in one that exists")
    return parent


@contextlib.contextmanager
def _compressed(path: Path, raw: IO[bytes]) -> Iterator[IO[bytes]]:
    """`raw`, through gzip when the name ends in .gz."""
    if not path.name.endswith(".gz"):
        yield raw
        return
    # No name and no time in the gzip header: the same records give the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL,
                       mtime=0) as gz:
        yield gz  # type: ignore[misc]


@contextlib.contextmanager
def open_output(path: Path | None, stdout: IO[bytes]) -> Iterator[IO[bytes]]:
    """stdout, or a private file (0600, never through a symlink) written under a temporary
    name beside `path` and renamed when complete: an export that fails or is interrupted
    never leaves a file that looks whole. Gzip when the name ends in .gz."""
    if path is None:
        yield stdout
        return
    parent = check_output(path)
    if write_in_place(path):
        with open_in_place(path) as sink, _compressed(path, sink) as out:
            yield out
        return
    tmp = parent / f".{path.name}.{os.getpid()}.part"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise EngramError(f"cannot write {path}: {exc.strerror}") from None
    raw = os.fdopen(fd, "wb", buffering=1 << 20)
    try:
        with _compressed(path, raw) as out:
            yield out
        raw.flush()
        os.fsync(raw.fileno())
        raw.close()
        if os.path.islink(path):
            raise UsageError(f"{path} is a symlink", "name a regular file")
        os.replace(tmp, path)
    except BaseException:
        raw.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def run_export(conn: Connection, options: ExportOptions, out: IO[bytes],
               progress: Callable[[ExportSummary], None] | None = None) -> ExportSummary:
    """Stream the space into `out`; answers what was written."""
    if options.fmt not in FORMATS:
        raise UsageError(f"--format {options.fmt!r} is not one of {', '.join(FORMATS)}")
    writer: JsonlWriter | CsvWriter = (JsonlWriter(out) if options.fmt == "jsonl"
                                       else CsvWriter(out))
    summary = ExportSummary(space=conn.space)
    started = time.monotonic()
    last = 0.0
    try:
        for page in export_pages(conn, options):
            if page.total:
                summary.total = page.total
            summary.associations += writer.write_page(page.memories)
            summary.exported += len(page.memories)
            if progress is not None and (now := time.monotonic()) - last > 0.2:
                last = now
                summary.seconds = now - started
                progress(summary)
    finally:
        writer.close()
    summary.seconds = round(time.monotonic() - started, 3)
    if summary.seconds > 0:
        summary.records_per_second = round(summary.exported / summary.seconds, 1)
    return summary
