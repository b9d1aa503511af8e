"""The rejects file: every record that could not be stored, in a form `engram import`
takes back once fixed.

One JSON line per rejected record: the record's own fields as they were read (before any
`--map` renaming, so re-import with the same flags), plus the annotation
`"_reject": {"source", "line", "reason", "raw"}` (and `"format": "csv"` when the fields
are CSV text). Readers ignore `_reject` when the file is imported again. A line that did
not parse at all has only the annotation: rewrite it from `raw`. The file is 0600 (the
records are the user's data) and never written through a symlink.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from engram_cli.errors import InputError, UnsafePath
from engram_cli.files import (
    append_private,
    open_in_place,
    private_dir,
    read_private,
    write_atomic,
    write_in_place,
)
from engram_cli.ingest.mapping import REJECT_KEY

STDIN_REJECTS = "stdin.rejects.jsonl"
_MAX_RAW_WITH_FIELDS = 1 << 20  # the fields carry the record; a huge raw copy adds nothing


def default_path(input_name: str) -> Path:
    """`<input>.rejects.jsonl` next to the input; `stdin.rejects.jsonl` in the cwd."""
    if input_name == "-":
        return Path(STDIN_REJECTS)
    return Path(input_name + ".rejects.jsonl")


def reject_line(source: str, line: int, reason: str, raw: bytes,
                record: dict[str, Any] | None, fmt: str = "") -> bytes:
    note: dict[str, Any] = {"source": source, "line": line, "reason": reason}
    text = raw.rstrip(b"\r\n")
    if record is not None and len(text) > _MAX_RAW_WITH_FIELDS:
        note["raw"] = text[:4096].decode("utf-8", "replace")
        note["raw_truncated"] = True
    else:
        try:
            note["raw"] = text.decode("utf-8")
        except UnicodeDecodeError:
            note["raw"] = text.decode("utf-8", "replace")
            note["raw_base64"] = base64.b64encode(text).decode()
    if fmt in ("csv", "tsv"):
        note["format"] = fmt
    body = {k: v for k, v in (record or {}).items() if k != REJECT_KEY}
    body[REJECT_KEY] = note
    return orjson.dumps(body) + b"\n"


@dataclass(eq=False)
class RejectsFile:
    """One rejects file, opened on the first reject (none is created for a clean run)."""

    path: Path
    fresh: bool  # True: this run replaces the file; False (--resume): it appends
    written: int = 0
    _f: IO[bytes] | None = field(default=None, repr=False)
    _in_place: bool = field(default=False, repr=False)

    def prepare(self) -> None:
        """A fresh run starts without the previous run's rejects. A symlink at the path
        is refused before anything is read or sent (someone may have planted it there to
        have us append to its target)."""
        if write_in_place(self.path):
            return  # /dev/null, a pipe: written into as it is, never unlinked
        if self.path.exists() and not self.path.is_file():
            raise InputError(f"the rejects file {self.path} is not a regular file",
                             "pass --rejects FILE (or /dev/null to keep none)")
        if self.path.is_symlink():
            raise UnsafePath(f"the rejects file {self.path} is a symbolic link",
                             "refusing to write through it: remove it or pass --rejects "
                             "FILE")
        if self.fresh:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise InputError(f"cannot replace rejects file {self.path}: {exc.strerror}"
                                 ) from None

    def write(self, line: bytes) -> None:
        if self._f is None:
            try:
                self._in_place = write_in_place(self.path)
                if self._in_place:
                    self._f = open_in_place(self.path)
                else:
                    private_dir(self.path.parent, own=False)  # missing ones 0700, as ours
                    self._f = append_private(self.path)
            except OSError as exc:
                raise InputError(f"cannot write rejects file {self.path}: {exc.strerror}",
                                 "pass --rejects FILE somewhere writable") from None
        self._f.write(line)
        self.written += 1

    def sync(self) -> None:
        """On disk before a checkpoint says these records are done."""
        if self._f is not None:
            self._f.flush()
            if not self._in_place:  # a pipe or a device has no disk to sync
                os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self.sync()
            self._f.close()
            self._f = None


def prune(path: Path, source: str, from_line: int) -> tuple[int, int]:
    """Drop the entries of `source` at or after `from_line` (a resumed run writes them
    again); answers (dropped, kept) counts for `source`. Other sources' entries stay."""
    if write_in_place(path):
        return 0, 0  # /dev/null or a pipe: nothing kept there to read back
    try:
        data = read_private(path)
    except FileNotFoundError:
        return 0, 0
    keep: list[bytes] = []
    dropped = kept = 0
    for line in data.splitlines(keepends=True):
        try:
            note = orjson.loads(line).get(REJECT_KEY) or {}
        except (orjson.JSONDecodeError, AttributeError):
            note = {}
        if note.get("source") == source:
            if int(note.get("line", 0)) >= from_line:
                dropped += 1
                continue
            kept += 1
        keep.append(line)
    if dropped:
        write_atomic(path, b"".join(keep), tmp=path.with_name(path.name + ".tmp"))
    return dropped, kept
