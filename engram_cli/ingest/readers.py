"""Readers: one input (a file, gzip or not, or stdin) -> a stream of records with where
each came from.

Every reader yields `Item`s in file order: the record's first line number, its byte span
in the (decompressed) stream, its raw bytes, and either the parsed record or the reason it
could not be parsed. One bad record never stops a reader: its neighbours still come
through. Nothing is read whole: JSONL and CSV go line by line, a JSON array element by
element, so memory stays flat whatever the input size. A `Position` (byte offset + line
number of a record start) lets a reader start in the middle, for `--resume`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from engram_cli.errors import DamagedInput, InputError, UsageError
from engram_cli.files import is_stream, skip_line

FORMATS = ("jsonl", "json", "csv", "tsv")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
               ".tsv": "tsv"}
_GZIP_MAGIC = b"\x1f\x8b"
_READ_BUFFER = 1 << 20
# A JSON element whose end cannot be found within this many bytes has unbalanced brackets
# (or is far over any message size): the rest of that file cannot be split into records.
MAX_ELEMENT_BYTES = 256 * 1024 * 1024
# A JSONL line longer than this is rejected unread (content is at most 1 MiB, 6 MiB as
# \u escapes; a vector of 8,192 numbers ~200 KB); its first bytes go to the rejects file.
MAX_LINE_BYTES = 16 * 1024 * 1024
_KEPT_OF_OVERSIZED = 4096
_HEAD_CHECK = 64 * 1024  # how much of an input's start is checked against its format
_HEAD_LINES = 5
_DELIMITERS = ",;\t|"  # a CSV input's delimiter is one of these unless --delimiter
_BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark: skipped where an input starts
NOT_UTF8 = "invalid UTF-8"  # how a line's reason begins when its bytes are not UTF-8


def _wide_encoding(head: bytes) -> str:
    """The encoding's name for iconv when an input starts as UTF-16 or UTF-32 text does
    (Windows tools write it: PowerShell's Out-File, Notepad's "Unicode"): by its byte order
    mark, or without one by the zero byte beside every character of ASCII text; ""
    otherwise."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    pairs = head[:64]
    if len(pairs) < 8 or len(pairs) % 2:
        return ""
    if not any(pairs[1::2]) and all(pairs[0::2]):
        return "UTF-16LE"
    if not any(pairs[0::2]) and all(pairs[1::2]):
        return "UTF-16BE"
    return ""


@dataclass(slots=True)
class Item:
    """One record as read: where it is, its bytes, and the record or what is wrong."""

    line: int  # line number of the record's first line (1-based)
    start: int  # byte offset of the record in the decompressed stream
    end: int  # byte offset just past the record
    next_line: int  # line number where the next record can start
    raw: bytes
    record: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Position:
    """Where to start reading: a record start, as a byte offset and its line number."""

    offset: int = 0
    line: int = 1


def format_of(name: str) -> str | None:
    """The format from a file name (`x.jsonl`, `x.csv.gz`, ...), or None if unknown."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return _EXTENSIONS.get(suffixes[-1]) if suffixes else None


class StopReading(Exception):
    """Raised by the importer's signal handler into a read that is waiting for input."""


class Input:
    """One input named on the command line: a path, or `-` for stdin."""

    def __init__(self, name: str, fmt: str | None = None, delimiter: str | None = None,
                 known_fields: frozenset[str] = frozenset(), content_field: str = "content"
                 ) -> None:
        self.name = name
        self.is_stdin = name == "-"
        self.path = None if self.is_stdin else Path(name)
        # A pipe by name (`engram import <(zcat a.jsonl.gz)`, a FIFO) is read as stdin is.
        detected = "jsonl" if self.is_stdin or is_stream(name) else format_of(name)
        chosen = fmt or detected
        if chosen is None:
            raise UsageError(f"cannot tell the format of {name} from its extension",
                             "name it .jsonl/.ndjson/.json/.csv/.tsv (optionally .gz) or "
                             "pass --format")
        if chosen not in FORMATS:
            raise UsageError(f"unknown format {chosen!r}", "use " + "|".join(FORMATS))
        self.format: str = chosen
        if delimiter is not None and len(delimiter) != 1:
            raise UsageError(f"--delimiter {delimiter!r} is not one character",
                             "e.g. --delimiter ';' (\\t for tab)")
        self.delimiter = delimiter
        # A CSV header is told from a first data row by these (see _check_header).
        self._known = known_fields
        self._content_field = content_field
        self._header: list[str] | None = None
        self._used_delimiter = "\t" if self.format == "tsv" else ","
        self._raw: Any = None

    @property
    def display(self) -> str:
        return "stdin" if self.is_stdin else self.name

    def size(self) -> int | None:
        """Bytes on disk (compressed size for gzip), for progress; None for stdin."""
        if self.path is None:
            return None
        try:
            return self.path.stat().st_size
        except OSError:
            return None

    def compressed(self) -> bool:
        """Whether the file is gzip (by its magic bytes); False for stdin."""
        if self.path is None:
            return False
        try:
            with open(self.path, "rb") as f:
                return f.read(2) == _GZIP_MAGIC
        except OSError:
            return False

    def bytes_read(self) -> int | None:
        """How far into the file (on disk, so compressed bytes for gzip) reading got."""
        raw = self._raw
        if raw is None or self.is_stdin:
            return None
        try:
            return int(raw.tell())
        except (OSError, ValueError):
            return None

    def _open(self) -> tuple[IO[bytes], bool]:
        if self.path is None:
            if sys.stdin is None:
                raise InputError("cannot read stdin: it is closed",
                                 "pipe the records in, or name a file")
            raw: Any = sys.stdin.buffer
        else:
            try:
                raw = open(self.path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115
            except IsADirectoryError:
                raise InputError(f"cannot read {self.name}: it is a directory") from None
            except OSError as exc:
                raise InputError(f"cannot read {self.name}: {exc.strerror}") from None
        self._raw = raw
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        if head == _GZIP_MAGIC:
            return _Gzip(raw, self.display), True  # type: ignore[return-value]
        return raw, False

    def close(self) -> None:
        if self._raw is not None and not self.is_stdin:
            self._raw.close()
        self._raw = None

    def read(self, start: Position = Position()) -> Iterator[Item]:
        """Items from `start` (a record start from a checkpoint) to the end."""
        stream, compressed = self._open()
        try:
            if start.offset <= 0:
                self._check_head(stream)
            if self.format in ("csv", "tsv"):
                yield from self._read_csv(stream, compressed, start)
                return
            if self.format == "json":
                # An array of records, or else a sequence of top-level values (one
                # pretty-printed object, or NDJSON named .json).
                array = _first_byte(stream) == b"["
                yield from _read_json(self._seek(stream, compressed, start), start, array,
                                      self.display)
                return
            yield from _read_jsonl(self._seek(stream, compressed, start), start)
        finally:
            self.close()

    def _seek(self, stream: IO[bytes], compressed: bool, start: Position) -> IO[bytes]:
        if start.offset <= 0:
            return stream
        if not compressed and stream.seekable():
            stream.seek(start.offset)
            return stream
        if compressed:
            # A gzip stream has no random access: decompress up to the position.
            left = start.offset - stream.tell()
            while left > 0:
                chunk = stream.read(min(left, _READ_BUFFER))
                if not chunk:
                    break
                left -= len(chunk)
            return stream
        raise InputError(f"cannot resume {self.display}: it cannot seek")

    def conversion(self, encoding: str) -> str:
        """How to turn this input from `encoding` into UTF-8 (a hint to show)."""
        iconv = f"iconv -f {encoding} -t UTF-8"
        if self.is_stdin:
            return f"pipe it through {iconv}"
        name = Path(self.name)
        return (f"convert it first, e.g. {iconv} {name} > "
                f"{name.with_name(f'{name.stem}.utf8{name.suffix}')}")

    def _check_head(self, stream: IO[bytes]) -> None:
        """Stop with one message, before any record, when the start of the input is not
        the format it claims: UTF-16 or UTF-32 text, binary data, or a JSON document named
        JSONL."""
        head = stream.peek(_HEAD_CHECK)[:_HEAD_CHECK] if hasattr(stream, "peek") else b""
        wide = _wide_encoding(head)
        if wide:
            raise InputError(f"{self.display} is {wide} text; engram reads UTF-8",
                             self.conversion(wide))
        nul = head.find(b"\x00")
        if nul >= 0 and _binary(head, nul):
            raise InputError(f"{self.display} is not {self.format.upper()} text: it holds "
                             f"binary data (a NUL byte at byte {nul})",
                             "check that this is the file you meant")
        if self.format != "jsonl":
            return
        lines = [ln for ln in head.removeprefix(_BOM).split(b"\n")[:-1]
                 if ln.strip()][:_HEAD_LINES]
        first = head.lstrip(_BOM + b" \t\r\n")[:1]
        if not lines:
            return
        parsed = 0
        for ln in lines:
            try:
                orjson.loads(ln)
                parsed += 1
            except orjson.JSONDecodeError:
                pass
        if parsed:
            return
        if first in (b"[", b"{"):
            what = "a JSON array" if first == b"[" else "one JSON document over many lines"
            raise InputError(f"{self.display} is {what}, not JSONL (one record per line)",
                             "use --format json (or name it .json)")
        if len(lines) >= 3:
            raise InputError(f"{self.display} is not JSONL: none of its first {len(lines)} "
                             "lines is JSON",
                             "check the file, or name its format with --format")

    def _delimiter(self, stream: IO[bytes]) -> str:
        """--delimiter, a tab for TSV, else the one that splits the header into the most
        names of fields, else the one csv.Sniffer finds in the first lines (`;` and `|`
        files are common), else a comma."""
        if self.delimiter is not None:
            return self.delimiter
        if self.format == "tsv":
            return "\t"
        head = stream.peek(_HEAD_CHECK)[:_HEAD_CHECK] if hasattr(stream, "peek") else b""
        lines = head.removeprefix(_BOM).split(b"\n")
        by_header = self._header_delimiter(lines[0].decode("utf-8", "replace"))
        if by_header is not None:
            return by_header
        sample = b"\n".join(lines[:_HEAD_LINES]).decode("utf-8", "replace")
        try:
            return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
        except csv.Error:
            return ","

    def _header_delimiter(self, line: str) -> str | None:
        """The one delimiter that splits a header line into more names of fields than any
        other, or None. The sniffer judges by how regularly a character recurs in the first
        lines, and JSON lists and `a;b` tags in the cells outvoted the delimiter of a header
        as plain as `content|tags|id`: every row was then refused as a headerless file."""
        if not self._known:
            return None
        names = {}
        for d in _DELIMITERS:
            cells = next(csv.reader([line.rstrip("\r")], delimiter=d), [])
            names[d] = sum(1 for c in cells if c == self._content_field or c in self._known
                           or c.startswith("metadata."))
        best = max(names.values())
        winners = [d for d, n in names.items() if n == best]
        return winners[0] if best > 1 and len(winners) == 1 else None

    def _check_header(self, header: list[str]) -> None:
        """A first row whose cells name none of the fields a record can have, and not the
        content field, is data: without a header its first row would be lost."""
        if not self._known or self._content_field in header:
            return
        if any(h in self._known or h.startswith("metadata.") for h in header):
            return
        shown = ", ".join(repr(h[:20]) for h in header[:3])
        raise InputError(f"{self.display}:1: the first row ({shown}) is not a header: it "
                         f"names no known field and no {self._content_field!r} column",
                         f"add a header row naming the columns (e.g. {self._content_field},"
                         "tags), or pass --content-field / --delimiter")

    def _read_csv(self, stream: IO[bytes], compressed: bool, start: Position) -> Iterator[Item]:
        csv.field_size_limit(max(csv.field_size_limit(), MAX_ELEMENT_BYTES))
        delimiter = self._delimiter(stream)
        self._used_delimiter = delimiter
        feed = _LineFeed(stream)
        reader = csv.reader(feed, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{self.display}:1: cannot read the CSV header: {exc}") from None
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        header = [h.strip() for h in header]
        if not any(header):
            raise InputError(f"{self.display}:1: the header row is empty",
                             "the first row must name the columns (content, tags, ...)")
        self._check_header(header)
        self._header = header
        feed.take()
        if start.offset > feed.pos:
            stream = self._seek(stream, compressed, start)
            feed = _LineFeed(stream, start.offset, start.line)
            reader = csv.reader(feed, delimiter=delimiter)
        width = len(header)
        while True:
            line = feed.line
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                begin, raw, bad = feed.take()
                yield Item(line, begin, feed.pos, feed.line, raw, None, f"bad CSV row: {exc}")
                continue
            begin, raw, bad = feed.take()
            if feed.ended and raw.count(b'"') % 2:
                # The input ended inside a quoted field: a stray quote took every line after
                # it. Reject its own line and read the others again as rows.
                first = raw.find(b"\n") + 1 or len(raw)
                yield Item(line, begin, begin + first, line + 1, raw[:first], None,
                           'a quote (") opens a field here and never closes')
                feed = _LineFeed(io.BytesIO(raw[first:]), begin + first, line + 1)
                reader = csv.reader(feed, delimiter=delimiter)
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if bad:
                yield Item(line, begin, feed.pos, feed.line, raw, None, NOT_UTF8)
            elif len(row) != width:
                yield Item(line, begin, feed.pos, feed.line, raw, None,
                           f"{len(row)} fields where the header has {width}")
            else:
                record = dict(zip(header, row, strict=True))
                yield Item(line, begin, feed.pos, feed.line, raw, record)

    def reparse(self, raw: bytes) -> dict[str, Any] | None:
        """The record in `raw` again (for a rejects line), or None if it does not parse."""
        try:
            if self.format in ("csv", "tsv") and self._header is not None:
                rows = list(csv.reader(io.StringIO(raw.decode("utf-8")),
                                       delimiter=self._used_delimiter))
                if len(rows) == 1 and len(rows[0]) == len(self._header):
                    return dict(zip(self._header, rows[0], strict=False))
                return None
            value = orjson.loads(raw)
        except (ValueError, csv.Error):
            return None
        return value if isinstance(value, dict) else None

    @property
    def is_csv(self) -> bool:
        return self.format in ("csv", "tsv")


class _Gzip(gzip.GzipFile):
    """A gzip stream whose damage (a truncated file, corrupt data) is a DamagedInput naming
    the file and the compressed offset, not an EOFError: the command-line framework takes
    an escaping EOFError for Ctrl-D and prints only "Aborted."."""

    def __init__(self, raw: Any, display: str) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw_file = raw
        self._display = display

    def _damaged(self, exc: Exception) -> DamagedInput:
        try:
            at = int(self._raw_file.tell())
        except (OSError, ValueError):
            at = -1
        where = f" at compressed byte {at:,}" if at >= 0 else ""
        if isinstance(exc, EOFError):
            what = f"{self._display}: the gzip data ends early{where} (the file is truncated)"
        else:
            what = f"{self._display}: damaged gzip data{where}: {exc}"
        return DamagedInput(what, "every record before that point was read; replace the "
                            "file and run the same command with --resume")

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(size)
        except (EOFError, OSError, zlib.error) as exc:
            raise self._damaged(exc) from None

    def read1(self, size: int = -1) -> bytes:
        try:
            return super().read1(size)
        except (EOFError, OSError, zlib.error) as exc:
            raise self._damaged(exc) from None

    def peek(self, n: int) -> bytes:
        try:
            return super().peek(n)
        except (EOFError, OSError, zlib.error) as exc:
            raise self._damaged(exc) from None

    def readline(self, size: int | None = -1) -> bytes:
        try:
            return super().readline(size)
        except (EOFError, OSError, zlib.error) as exc:
            raise self._damaged(exc) from None


def _binary(head: bytes, nul: int) -> bool:
    """Whether an input whose first bytes are `head` (a NUL at `nul`) is binary data: a NUL
    in its first line (where binary formats keep their headers: a tar archive, an SQLite
    file, a program), or NULs past one in a hundred bytes in text that is not UTF-8.
    Anything less is text with a stray NUL: a corrupt line of a JSONL file is rejected
    alone, not the whole file, and a memory's text may hold NUL characters, which a CSV
    export writes as they are (import reads its own exports)."""
    if b"\n" not in head[:nul]:
        return True
    if head.count(b"\x00") * 100 <= len(head):
        return False
    try:
        head[:head.rfind(b"\n") + 1].decode("utf-8")  # whole lines: none cut in two
    except UnicodeDecodeError:
        return True
    return False


def _first_byte(stream: IO[bytes]) -> bytes:
    """The first non-blank byte (a BOM counts as blank), without consuming it."""
    if hasattr(stream, "peek"):
        head = stream.peek(4096)[:4096]
        stripped = head.lstrip(_BOM + b" \t\r\n")
        if stripped or len(head) < 4096:
            return stripped[:1]
    return b""


class _LineFeed:
    """Lines of a binary stream as text for csv.reader, remembering the bytes each CSV row
    took (a quoted field may span lines) and whether any of them was not UTF-8."""

    def __init__(self, stream: IO[bytes], pos: int = 0, line: int = 1) -> None:
        self._stream = stream
        self.pos = pos
        self.line = line
        self._begin = pos
        self._parts: list[bytes] = []
        self._bad = False
        self.ended = False  # the stream's end was reached (csv.reader asked for more)

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        raw = self._stream.readline()
        if not raw:
            self.ended = True
            raise StopIteration
        self.pos += len(raw)
        self.line += 1
        self._parts.append(raw)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self._bad = True
            return raw.decode("utf-8", "replace")

    def take(self) -> tuple[int, bytes, bool]:
        """(start offset, raw bytes, had invalid UTF-8) of the lines since the last take."""
        begin, raw, bad = self._begin, b"".join(self._parts), self._bad
        self._begin, self._parts, self._bad = self.pos, [], False
        return begin, raw, bad


def json_error(raw: bytes, exc: Exception) -> str:
    """A short reason for a line orjson refused, telling bad UTF-8 from bad JSON."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return f"{NOT_UTF8} at byte {uexc.start}"
    return f"malformed JSON: {exc}"


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number",
            bool: "a boolean"}.get(type(value), "null")


def _read_jsonl(stream: IO[bytes], start: Position) -> Iterator[Item]:
    offset, line = start.offset, start.line
    loads = orjson.loads
    for raw in iter(functools.partial(stream.readline, MAX_LINE_BYTES), b""):
        begin = offset
        offset += len(raw)
        line += 1
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            # Far past any record the server takes: skipped to its end, never held whole
            # (a 200 MB line cost the importer a gigabyte), its start kept for the rejects.
            offset += skip_line(stream, _READ_BUFFER)
            yield Item(line - 1, begin, offset, line, raw[:_KEPT_OF_OVERSIZED], None,
                       f"the line is over {MAX_LINE_BYTES >> 20} MiB, more than any memory "
                       "can be (its first 4 KiB are in the rejects file)")
            continue
        if begin == 0 and raw.startswith(_BOM):  # as Windows tools write UTF-8 (RFC 8259 8.1)
            raw = raw[len(_BOM):]
        if raw.isspace():
            continue
        try:
            record = loads(raw)
        except orjson.JSONDecodeError as exc:
            yield Item(line - 1, begin, offset, line, raw, None, json_error(raw, exc))
            continue
        if type(record) is dict:
            yield Item(line - 1, begin, offset, line, raw, record)
        else:
            yield Item(line - 1, begin, offset, line, raw, None,
                       f"not an object (a JSON record must be {{...}}, this is "
                       f"{_kind(record)})")


# Strings are matched whole so that brackets inside them do not count; a lone quote is an
# unterminated string (the buffer ends inside it, or the file is broken).
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|["\[\]{}]')
_BLANK = re.compile(rb"[ \t\r\n,]*")  # between elements: blanks and the comma
_SCALAR = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[^,\]\s]+')


def _read_json(stream: IO[bytes], start: Position, array: bool, display: str = ""
               ) -> Iterator[Item]:
    """Elements of a top-level JSON array (or top-level values one after another), one at
    a time, each parsed by orjson. An array the file ends inside (no closing `]`: a copy
    cut short) is DamagedInput once its whole elements are read."""
    buf = b""
    base = start.offset  # stream offset of buf[0]
    line = start.line  # line number at buf[0]
    eof = False
    i = 0
    if start.offset == 0:
        buf = stream.read(_READ_BUFFER)
        head = len(buf) - len(buf.lstrip(_BOM + b" \t\r\n"))
        i = head + 1 if array else head  # past the '['
    while True:
        m = _BLANK.match(buf, i)
        i = m.end() if m else i
        if i >= len(buf):
            if eof:
                if array:
                    raise DamagedInput(
                        f"{display}: the JSON array never closes: the file ends without "
                        "its ']' (it may be truncated)",
                        "every record before that point was read; replace the file and "
                        "run the same command with --resume")
                return
            more = stream.read(_READ_BUFFER)
            line += buf.count(b"\n", 0, i)
            base += i
            buf, i = buf[i:] + more, 0
            eof = not more
            continue
        if array and buf[i : i + 1] == b"]":
            _after_array(stream, buf[i + 1:], line + buf.count(b"\n", 0, i), display)
            return
        s = i
        line += buf.count(b"\n", 0, s)
        base += s
        buf, i, s = buf[s:], 0, 0
        end = _element_end(buf, s)
        while end is None and not eof:
            if len(buf) > MAX_ELEMENT_BYTES:
                break
            more = stream.read(_READ_BUFFER)
            eof = not more
            buf += more
            end = _element_end(buf, s)
        if end is None:
            rest = buf[: min(len(buf), 4096)]
            why = ("unexpected end of file inside this element" if eof else
                   "cannot find the end of this element (unbalanced brackets?); "
                   "the rest of the file is skipped")
            yield Item(line, base, base + len(buf), line + buf.count(b"\n"), rest, None,
                       f"malformed JSON: {why}")
            return
        raw = buf[s:end]
        next_line = line + raw.count(b"\n")
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield Item(line, base, base + end, next_line, raw, None, json_error(raw, exc))
        else:
            if type(record) is dict:
                yield Item(line, base, base + end, next_line, raw, record)
            else:
                yield Item(line, base, base + end, next_line, raw, None,
                           f"not an object (an element must be {{...}}, this is "
                           f"{_kind(record)})")
        i = end


def _after_array(stream: IO[bytes], rest: bytes, line: int, display: str) -> None:
    """Past a top-level array's `]` (on `line`) only blanks may follow: DamagedInput when
    something else does. It was ignored, so that a file of an empty array and then
    records, or of two arrays, imported what came first and exited 0."""
    while True:
        stripped = rest.lstrip(b" \t\r\n")
        if stripped:
            line += rest.count(b"\n", 0, len(rest) - len(stripped))
            raise DamagedInput(
                f"{display}:{line}: data after the end of the JSON array",
                "every record of the array was read; a .json file is one array of records "
                "or objects one after another: split it, or write it as JSONL")
        line += rest.count(b"\n")
        rest = stream.read(_READ_BUFFER)
        if not rest:
            return


def _element_end(buf: bytes, s: int) -> int | None:
    """End offset of the JSON value starting at buf[s], or None if the buffer ends first."""
    if buf[s : s + 1] not in (b"{", b"["):
        m = _SCALAR.match(buf, s)
        if m is None or m.end() >= len(buf):
            return None
        return m.end()
    depth = 0
    for m in _JSON_TOKEN.finditer(buf, s):
        c = buf[m.start()]
        if c == 0x22:  # '"'
            if m.end() - m.start() == 1:
                return None  # an unterminated string
        elif c in (0x7B, 0x5B):  # '{' '['
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return m.end()
    return None
