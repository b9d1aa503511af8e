"""The import job: inputs -> readers -> mapped records -> the bulk sender, which cuts and
sends the batches; here, the rejects file, the checkpoint, the counters and the progress,
from what the sender reports back about each record.

A record is *done* when the server has acknowledged it or it is in the rejects file.
Batches finish out of order, so the checkpoint of an input is the start of its earliest
batch not yet done, as the sender tells it (or, with none pending, the end of the last
record read): everything before it is done, whatever happens after. It is saved about
once a second, when the run stops (error, --max-errors, Ctrl-C) and removed when the run
completes.
"""

from __future__ import annotations

import gc
import glob
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram_cli.client.batching import Entry, SendOptions, frame
from engram_cli.client.bulk import BulkSender
from engram_cli.client.dry import DrySender
from engram_cli.client.embedder import EmbedSpec
from engram_cli.config import Connection, in_data_dir
from engram_cli.contract import as_text
from engram_cli.errors import (
    DamagedInput,
    EngramError,
    InputError,
    MaxErrorsExceeded,
    UnsafePath,
    UsageError,
)
from engram_cli.files import write_in_place
from engram_cli.ingest import checkpoint as ckpt
from engram_cli.ingest.edges import EdgeSpool
from engram_cli.ingest.mapping import FIELDS, REJECT_KEY, Encoder, FieldMap, RecordError
from engram_cli.ingest.readers import NOT_UTF8, Input, Item, Position, StopReading
from engram_cli.ingest.rejects import RejectsFile, default_path, prune, reject_line

if TYPE_CHECKING:
    from engram_cli.ingest.embedstage import EmbedStage

CHECKPOINT_EVERY_S = 1.0
PROGRESS_EVERY_S = 0.2
SHOWN_REJECTS = 10  # reasons printed as they happen; the rest are in the rejects file
PERCENT_MIN_SAMPLE = 1000  # a percentage limit is judged on at least this many records
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class ErrorLimit:
    """--max-errors: a number of rejected records, or a percentage of those read."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> ErrorLimit:
        if text is None or text == "":
            return cls()
        t = text.strip()
        try:
            if t.endswith("%"):
                p = float(t[:-1])
                if 0 <= p <= 100:
                    return cls(percent=p)
            else:
                n = int(t)
                if n >= 0:
                    return cls(count=n)
        except ValueError:
            pass
        raise UsageError(f"--max-errors {text!r} is not valid",
                         "give a number of records (e.g. 100) or a percentage (e.g. 1%)")

    def exceeded(self, rejected: int, seen: int, final: bool = False) -> bool:
        if self.count is not None:
            return rejected > self.count
        if self.percent is not None:
            base = seen if final else max(seen, PERCENT_MIN_SAMPLE)
            return rejected > self.percent / 100.0 * base
        return False

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass
class ImportOptions:
    inputs: list[str]
    fmt: str | None = None
    fieldmap: FieldMap = field(default_factory=FieldMap)
    rejects: Path | None = None  # None: <input>.rejects.jsonl per input
    max_errors: ErrorLimit = field(default_factory=ErrorLimit)
    resume: bool = False
    dry_run: bool = False
    send: SendOptions = field(default_factory=SendOptions)
    delimiter: str | None = None  # CSV: None sniffs it from the first lines
    embed: EmbedOptions | None = None  # --embed: vectors made here for records without one


@dataclass(frozen=True)
class EmbedOptions:
    """--embed [MODEL], --embed-dim N, --embed-workers N."""

    spec: EmbedSpec
    workers: int = 1  # 0: in this process
    cache: bool = True


@dataclass
class Progress:
    read: int
    imported: int
    rejected: int
    bytes_done: int
    bytes_total: int | None  # None: unknown (stdin)
    seconds: float
    current: str
    embedded: int = 0  # texts embedded or taken from the embedding cache (--embed)


@dataclass
class Summary:
    imported: int = 0
    rejected: int = 0
    retried: int = 0
    seconds: float = 0.0
    records_per_second: float = 0.0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    read: int = 0
    batches: int = 0
    batch_p50_ms: float = 0.0
    batch_p99_ms: float = 0.0
    mode: str = ""
    dry_run: bool = False
    interrupted: bool = False
    resumed: list[dict[str, Any]] = field(default_factory=list)
    rejected_before_resume: int = 0  # in the rejects files from the runs this one resumes
    rejects_files: list[str] = field(default_factory=list)
    space: str = ""
    embedded: int = 0  # texts embedded here (--embed)
    embed_cache_hits: int = 0  # texts whose vector came from the embedding cache
    embed_model_seconds: float = 0.0  # the model's time, summed over the workers
    embedded_per_second: float = 0.0  # over the run
    associations: int = 0  # written from the records' `associations` (an export's)
    error: EngramError | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "error"}
        out["error"] = str(self.error) if self.error else None
        return out


def expand_inputs(args: list[str]) -> list[str]:
    """FILE|GLOB|- arguments -> input names; a glob expands to its sorted matches."""
    names: list[str] = []
    for arg in args:
        if not arg:  # Path('') is the current directory
            raise UsageError("an empty input name", "name files, globs, or - for stdin")
        if arg == "-" or Path(arg).exists() or not any(c in arg for c in _GLOB_CHARS):
            names.append(arg)
            continue
        matches = sorted(m for m in glob.glob(arg, recursive=True) if Path(m).is_file())
        if not matches:
            raise InputError(f"no file matches {arg}")
        for m in matches:
            if as_text(m) != m:
                raise InputError(f"{arg} matches {as_text(m)!r}, whose name is not UTF-8 "
                                 "text", "rename it, or read it from stdin: engram import - "
                                 "< FILE")
        names.extend(matches)
    if names.count("-") > 1:
        raise UsageError("stdin (-) is named more than once")
    for name in names:
        if name != "-" and not Path(name).exists():
            raise InputError(f"cannot read {name}: no such file")
        if name != "-" and Path(name).is_dir():
            raise InputError(f"cannot read {name}: it is a directory",
                             f"name its files, e.g. '{name.rstrip('/')}/*.jsonl'")
    if not names:
        raise UsageError("no input", "name files, globs, or - for stdin")
    return names


IGNORED_SAMPLE = 1000  # records in which fields no memory field takes are looked for


def _same_file(a: Path, b: Path) -> bool:
    """Do `a` and `b` name one file (through links or other spellings)?"""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is not there yet
        return a.resolve() == b.resolve()


def _inside_a_read(frame: Any) -> bool:
    """Was the main thread inside an input's read (Input.read's generator, or below it)
    when a signal came?"""
    while frame is not None:
        if frame.f_code is Input.read.__code__:
            return True
        frame = frame.f_back
    return False


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Importer:
    """One `engram import` run. Not reusable."""

    def __init__(self, options: ImportOptions, conn: Connection | None = None,
                 progress: Callable[[Progress], None] | None = None,
                 notice: Callable[[str], None] = lambda m: None,
                 warn: Callable[[str], None] = lambda m: None) -> None:
        self.options = options
        self.conn = conn
        self.on_progress = progress
        self._notice = notice
        self.warn = warn
        self.names = expand_inputs(options.inputs)
        known = frozenset(FIELDS) | {src for _, src in options.fieldmap.pairs}
        # Top-level fields a record's memory is made of: any other is left out, said once.
        self._used = known | {src.split(".", 1)[0] for _, src in options.fieldmap.pairs} | {
            REJECT_KEY}
        self._ignored_said = False
        content = options.fieldmap.source_of("content")
        self.inputs = [Input(n, options.fmt, options.delimiter, known, content)
                       for n in self.names]
        self.encoder = Encoder(options.fieldmap)
        self.summary = Summary(dry_run=options.dry_run,
                               space=conn.space if conn is not None else "")
        self._reading = -1  # index of the input being read
        self._read_done: set[int] = set()
        self._start_pos = Position()  # where reading of the current input began
        self._last_item: Item | None = None  # its last record read
        # Inputs that broke off part way (a truncated gzip): where their readable part ends.
        self._broken_at: dict[int, Position] = {}
        self._stop = False
        self._interrupted = False
        self._started = time.monotonic()
        self._last_checkpoint = self._started
        self._last_progress = 0.0
        self._bytes_done = 0
        self._sender: BulkSender | DrySender | None = None
        self._stage: EmbedStage | None = None
        self._settled = False  # the sender answered that every record is settled
        self._ck: ckpt.Checkpoint | None = None
        self._rejects: dict[int, RejectsFile] = {}
        self._not_utf8: set[int] = set()  # the inputs whose encoding was questioned
        self._edges = EdgeSpool()
        has_stdin = "-" in self.names
        if options.resume and has_stdin:
            raise UsageError("stdin cannot be resumed",
                             "save the input to a file and import that file")
        if not options.dry_run and conn is None:
            raise UsageError("an import needs a server connection")
        self._check_rejects_are_no_inputs()

    def _check_rejects_are_no_inputs(self) -> None:
        """A fresh run empties its rejects file first: one that is also an input (`import
        a.jsonl --rejects a.jsonl`) was deleted before a record of it was read."""
        files = [Path(n) for n in self.names if n != "-"]
        wanted = ([self.options.rejects] if self.options.rejects is not None
                  else [default_path(n) for n in self.names])
        for rejects in wanted:
            if in_data_dir(rejects) and not write_in_place(rejects):
                raise UsageError(f"the rejects file {rejects} is in the engram data dir",
                                 "name another file with --rejects FILE: the files there "
                                 "are the store's own")
            if any(_same_file(rejects, f) for f in files):
                raise UsageError(f"the rejects file {rejects} is an input of this import",
                                 "name another file with --rejects FILE: it would replace "
                                 "the input")

    # -- set-up ------------------------------------------------------------------------

    def _prepare_state(self) -> list[Position]:
        """Checkpoint and rejects files; answers where to start in each input."""
        starts = [Position() for _ in self.inputs]
        opts = self.options
        if opts.dry_run:
            if opts.rejects is not None:
                shared = RejectsFile(opts.rejects, fresh=True)
                shared.prepare()
                self._rejects = dict.fromkeys(range(len(self.inputs)), shared)
            return starts
        assert self.conn is not None
        if "-" not in self.names:
            key = ckpt.key_of(self.names, self.conn.server, self.conn.space,
                              {"format": opts.fmt, "map": list(opts.fieldmap.pairs)})
            found = ckpt.load(key) if opts.resume else None
            if opts.resume and found is None:
                self.notice("no checkpoint for this import: starting from the beginning")
            if found is not None:
                self._check_unchanged(found)
                self._ck = found
            else:
                self._ck = ckpt.new(key, self.names, [i.path for i in self.inputs],
                                    {"inputs": self.names, "server": self.conn.server,
                                     "space": self.conn.space})
            # A symlink planted at the checkpoint stops the import before anything is
            # sent; a data dir we cannot write means no resume, said once.
            try:
                self._ck.check()
            except OSError as exc:
                self.warn(f"cannot write the checkpoint {self._ck.path}: {exc.strerror} "
                          "(--resume cannot continue this import)")
                self._ck = None
        resuming = self._ck is not None and opts.resume and any(
            m.done or m.offset for m in self._ck.inputs)
        shared_file: RejectsFile | None = None
        for i, inp in enumerate(self.inputs):
            path = opts.rejects if opts.rejects is not None else default_path(inp.name)
            if shared_file is not None and path == shared_file.path:
                self._rejects[i] = shared_file
                continue
            rf = RejectsFile(path, fresh=not resuming)
            rf.prepare()
            if opts.rejects is not None:
                shared_file = rf
            self._rejects[i] = rf
        if resuming and self._ck is not None:
            for i, mark in enumerate(self._ck.inputs):
                if mark.done:
                    self._read_done.add(i)
                    _, kept = prune(self._rejects[i].path, self.inputs[i].display,
                                    sys.maxsize)
                    self.summary.rejected_before_resume += kept
                    continue
                starts[i] = Position(mark.offset, mark.line)
                _, kept = prune(self._rejects[i].path, self.inputs[i].display, mark.line)
                self.summary.rejected_before_resume += kept
                if mark.offset:
                    self.summary.resumed.append({"input": mark.name, "line": mark.line,
                                                 "offset": mark.offset})
            if self.summary.resumed or self._read_done:
                where = ", ".join(f"{r['input']} line {r['line']}" for r in self.summary.resumed)
                self.notice("resuming: " + (where or "earlier inputs are done"))
        return starts

    def _check_unchanged(self, found: ckpt.Checkpoint) -> None:
        for inp, mark in zip(self.inputs, found.inputs, strict=False):
            # A checkpoint's offset counts decompressed bytes: no bound from a gzip's size.
            size = None if inp.compressed() else inp.size()
            if ckpt.head_hash(inp.path) != mark.head or (size is not None and size < mark.offset
                                                          and not mark.done):
                raise UsageError(
                    f"{inp.display} changed since the checkpoint was written",
                    "run without --resume to import it from the start (nothing is stored "
                    "twice: ids are deterministic)")

    # -- the run -----------------------------------------------------------------------

    def run(self) -> Summary:
        starts = self._prepare_state()
        embed = self.options.embed
        if embed is not None:
            from engram_cli.client.embedder import EmbeddingCache
            from engram_cli.ingest.embedstage import EmbedStage

            self._stage = EmbedStage(embed.spec, embed.workers,
                                     EmbeddingCache.default() if embed.cache else None)
        restore = self._install_signal_handlers()
        pool = None
        # Records make no reference cycles, but millions of short-lived dicts would run
        # the cyclic collector thousands of times over the batches held in flight.
        gc_threshold = gc.get_threshold()
        gc.set_threshold(max(gc_threshold[0], 100_000), *gc_threshold[1:])
        try:
            if not self.options.dry_run:
                from engram_cli.client.connection import call_metadata
                from engram_cli.client.pool import ChannelPool

                assert self.conn is not None
                pool = ChannelPool(self.conn.server, self.options.send.pool, tls=self.conn.tls)
                self._sender = BulkSender(pool, self.conn.space, self.options.send, self,
                                          call_metadata(self.conn))
            else:
                self._sender = DrySender(self)
            self._sender.connect()
            self.summary.mode = self._sender.mode
            records = self._records(starts)
            embedded: Generator[Entry, None, None] | None = None
            try:
                if self._stage is not None:
                    embedded = self._stage.run(records)  # type: ignore[assignment]
                self._settled = self._sender.send(embedded or records)
                if (self._edges.count and self._settled and not self._interrupted
                        and self.summary.error is None and self.conn is not None
                        and not self.options.dry_run):
                    self.summary.associations = self._edges.apply(self.conn, self.warn)
            except EngramError as exc:
                self.summary.error = self.summary.error or exc
            finally:
                if embedded is not None:
                    embedded.close()
                records.close()
                self._edges.close()
            if (self.summary.error is None and not self._interrupted
                    and self.options.max_errors.exceeded(self.summary.rejected,
                                                         self.summary.read, final=True)):
                self.summary.error = self._max_errors_error()
        finally:
            gc.set_threshold(*gc_threshold)
            restore()
            self._finish_state()
            if self._sender is not None:
                self._sender.close()
            if self._stage is not None:
                self._stage.close(wait=self.summary.error is None and not self._stop)
            if pool is not None:
                pool.close()
        return self._finish_summary()

    def _records(self, starts: list[Position]) -> Generator[Entry, None, None]:
        """Every record of the inputs, read, mapped and framed, for the sender; a record
        that cannot be is rejected here. Ends early when the run stops."""
        encode = (self.encoder.encode_text if self.options.embed is not None
                  else self.encoder.encode_payload)
        summary = self.summary
        for idx, inp in enumerate(self.inputs):
            if idx in self._read_done:
                self._bytes_done += inp.size() or 0
                continue
            self._reading = idx
            self._start_pos, self._last_item = starts[idx], None
            text_columns = inp.is_csv
            try:
                for item in inp.read(starts[idx]):
                    summary.read += 1
                    if not self._ignored_said and item.record is not None and (
                            summary.read <= IGNORED_SAMPLE):
                        self._say_ignored(idx, item)
                    if item.error is not None:
                        self._reject_item(idx, item.line, item.error, item.raw, None)
                    else:
                        try:
                            mid, payload, text = encode(
                                item.record, text_columns)  # type: ignore[arg-type]
                        except RecordError as exc:
                            self._reject_item(idx, item.line, str(exc), item.raw, item.record)
                        else:
                            if self.encoder.associations:
                                self._edges.add(mid, self.encoder.associations)
                            # A text to embed: the bare Memory, which the embedding
                            # stage frames once, with the vector.
                            yield Entry(frame(payload) if text is None else payload, idx,
                                        item.line, item.start, item.raw, text, mid)
                    self._last_item = item  # a checkpoint makes the Position, not each record
                    if self._stop:
                        self.tick()
                        return
                    if summary.read & 1023 == 0:
                        self.tick()
            except StopReading:
                self.tick()
                return
            except DamagedInput as exc:
                # What came before the damage goes on to the server; the run ends with
                # exit 1 and a checkpoint at the damage, after the other inputs.
                last = self._last_item
                self._broken_at[idx] = (Position(last.end, last.next_line) if last is not None
                                        else self._start_pos)
                if summary.error is None:
                    summary.error = exc
                continue
            self._read_done.add(idx)
            self._bytes_done += inp.size() or 0

    def progress(self) -> Progress:
        total = None
        sizes = [i.size() for i in self.inputs]
        if all(s is not None for s in sizes):
            total = sum(s or 0 for s in sizes)
        current = 0
        if 0 <= self._reading < len(self.inputs) and self._reading not in self._read_done:
            current = self.inputs[self._reading].bytes_read() or 0
        name = self.inputs[self._reading].display if self._reading >= 0 else ""
        stage = self._stage
        return Progress(self.summary.read, self.summary.imported, self.summary.rejected,
                        self._bytes_done + current, total,
                        time.monotonic() - self._started, name,
                        stage.embedded + stage.cache_hits if stage is not None else 0)

    # -- what the sender reports (Listener) ----------------------------------------------

    def stored(self, n: int, outcomes: dict[str, int]) -> None:
        s = self.summary
        s.imported += n
        if outcomes:
            s.created += outcomes.get("created", 0)
            s.updated += outcomes.get("updated", 0)
            s.unchanged += outcomes.get("unchanged", 0)

    def rejected(self, entry: Entry, reason: str) -> None:
        inp = self.inputs[entry.source]
        self._reject_item(entry.source, entry.line, reason, entry.raw, inp.reparse(entry.raw))

    def tick(self) -> None:
        """Between records and while the sender waits: a stop (Ctrl-C, --max-errors)
        reaches the sender; the checkpoint and the progress are reported when due."""
        if self._stop and self._sender is not None:
            self._sender.stop()
        now = time.monotonic()
        if self._ck is not None and now - self._last_checkpoint >= CHECKPOINT_EVERY_S:
            self._save_checkpoint()
            self._last_checkpoint = now
        if self.on_progress is not None and now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            self.on_progress(self.progress())

    def notice(self, message: str) -> None:
        self._notice(message)

    def _say_ignored(self, idx: int, item: Item) -> None:
        """Once a run, the fields of a record that no memory field takes (`_id`, `title`):
        they are not stored, which a user of mongoimport or sqlite-utils would not guess."""
        assert item.record is not None
        left = [k for k in item.record if k not in self._used
                and not k.startswith("metadata.")]
        if not left:
            return
        self._ignored_said = True
        shown = ", ".join(repr(k) for k in left[:5]) + (", ..." if len(left) > 5 else "")
        self.notice(f"{self.inputs[idx].display}:{item.line}: fields that are no memory "
                    f"field are not stored: {shown}; keep one with --map "
                    f"metadata.NAME={left[0]} (or --id-field {left[0]} for ids)")

    # -- rejects -------------------------------------------------------------------------

    def _reject_item(self, idx: int, line: int, reason: str, raw: bytes,
                     record: dict[str, Any] | None) -> None:
        s = self.summary
        s.rejected += 1
        inp = self.inputs[idx]
        rf = self._rejects.get(idx)
        if rf is not None:
            rf.write(reject_line(inp.display, line, reason, raw, record,
                                 inp.format if inp.is_csv else ""))
        if s.rejected <= SHOWN_REJECTS:
            self.warn(f"{inp.display}:{line}: {reason}")
        if reason.startswith(NOT_UTF8) and idx not in self._not_utf8:
            # Once an input: a file in a legacy encoding has such lines all through it.
            self._not_utf8.add(idx)
            self.warn(f"{inp.display}: lines that are not UTF-8 are rejected; if it is "
                      f"Latin-1 or Windows-1252 text, {inp.conversion('CP1252')}")
        if not self._stop and self.options.max_errors.exceeded(s.rejected, s.read):
            self._stop = True
            self.summary.error = self._max_errors_error()

    def _max_errors_error(self) -> MaxErrorsExceeded:
        where = self._rejects_files()
        return MaxErrorsExceeded(
            f"{self.summary.rejected} records rejected, over --max-errors "
            f"{self.options.max_errors}" + (f" (see {', '.join(where)})" if where else ""),
            "fix the input, then run the same command with --resume")

    def _rejects_files(self) -> list[str]:
        seen: dict[str, None] = {}
        for rf in self._rejects.values():
            if rf.written:
                seen.setdefault(str(rf.path))
        return list(seen)

    # -- checkpoint --------------------------------------------------------------------

    def _marks_now(self) -> None:
        ck = self._ck
        assert ck is not None
        unsettled = self._sender.unsettled() if self._sender is not None else {}
        if self._stage is not None:  # what it holds comes after what the sender holds
            unsettled = {**self._stage.unsettled(), **unsettled}
        for i, mark in enumerate(ck.inputs):
            first = unsettled.get(i)
            if first is not None:
                mark.offset, mark.line, mark.done = first.offset, first.line, False
            elif i in self._broken_at:
                at = self._broken_at[i]
                mark.offset, mark.line, mark.done = at.offset, at.line, False
            elif i == self._reading and i not in self._read_done:
                last = self._last_item
                if last is None:
                    mark.offset, mark.line = self._start_pos.offset, self._start_pos.line
                else:
                    mark.offset, mark.line = last.end, last.next_line
                mark.done = False
            elif i in self._read_done:
                mark.done = True

    def _save_checkpoint(self) -> None:
        if self._ck is None:
            return
        self._marks_now()
        for rf in set(self._rejects.values()):
            rf.sync()
        self._ck.save()

    def _finish_state(self) -> None:
        complete = (self.summary.error is None and not self._interrupted and not self._stop
                    and len(self._read_done) == len(self.inputs)
                    and self._settled)
        if self._ck is not None:
            try:
                if complete:
                    self._ck.remove()
                else:
                    self._save_checkpoint()
            except (OSError, UnsafePath) as exc:
                why = exc.strerror if isinstance(exc, OSError) else f"{exc}: {exc.hint}"
                self.warn(f"cannot write the checkpoint {self._ck.path}: {why}")
        for rf in set(self._rejects.values()):
            rf.close()

    def _finish_summary(self) -> Summary:
        s = self.summary
        s.seconds = round(time.monotonic() - self._started, 3)
        s.records_per_second = round(s.imported / s.seconds, 1) if s.seconds > 0 else 0.0
        s.interrupted = self._interrupted
        s.rejects_files = self._rejects_files()
        if self._stage is not None:
            s.embedded, s.embed_cache_hits = self._stage.embedded, self._stage.cache_hits
            s.embed_model_seconds = round(self._stage.model_seconds, 3)
            s.embedded_per_second = round(s.embedded / s.seconds, 1) if s.seconds else 0.0
        if self._sender is not None:
            s.mode = self._sender.mode  # it may have fallen back to the stream mid-run
            s.batches = self._sender.batches
            s.retried = self._sender.retried
            lat = self._sender.latencies
            s.batch_p50_ms = round(_percentile(lat, 0.5) * 1000, 2)
            s.batch_p99_ms = round(_percentile(lat, 0.99) * 1000, 2)
        return s

    # -- Ctrl-C --------------------------------------------------------------------------

    def _install_signal_handlers(self) -> Callable[[], None]:
        """First Ctrl-C (or SIGTERM): stop reading, let what is in flight finish, save the
        checkpoint. A second one: stop at once (the last checkpoint still holds)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, frame: Any) -> None:
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = self._stop = True
            if _inside_a_read(frame):
                # Reading waits on a pipe or a FIFO that may stay silent (`timeout 60
                # engram import fifo`): the read would be retried and the stop never seen.
                raise StopReading

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for s, handler in old.items():
                signal.signal(s, handler)

        return restore
