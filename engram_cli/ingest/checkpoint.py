"""Import checkpoints: per input, the position before which every record is done (stored
by the server, or written to the rejects file), so `engram import --resume` can continue
after a crash, `kill -9` or Ctrl-C without losing or repeating a record.

A checkpoint lives in `<user data dir>/imports/<key>.json` (ENGRAM_DATA_DIR overrides
the data dir); the key is a hash of the resolved input paths, the server, the space and
the options that change what records are made (format, field mapping). It is written
atomically (temporary file, fsync, rename), so a crash leaves the old or the new one,
never half of one, and it is deleted when the import finishes. The directory is 0700, the
files 0600, and neither is ever written through a symlink (engram_cli/files.py).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engram_cli import config
from engram_cli.errors import UnsafePath
from engram_cli.files import is_stream, private_dir, read_private, write_atomic

DIR_NAME = "imports"
_HEAD_BYTES = 64 * 1024  # identifies an input: appending to it keeps the checkpoint valid
VERSION = 1


@dataclass
class InputMark:
    """How far one input is done."""

    name: str
    offset: int = 0  # byte offset (decompressed) of the first record not yet done
    line: int = 1  # its line number
    done: bool = False  # every record of this input is done
    head: str = ""  # hash of the input's first bytes, to notice a replaced file


@dataclass
class Checkpoint:
    key: str
    path: Path
    inputs: list[InputMark]
    describe: dict[str, Any] = field(default_factory=dict)

    @property
    def tmp_path(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def check(self) -> None:
        """Before an import sends anything: its private directory exists and no symlink
        waits at the checkpoint or its temporary file (UnsafePath; save() would refuse
        them too, but only after records were sent)."""
        private_dir(self.path.parent)
        for path in (self.path, self.tmp_path):
            if path.is_symlink():
                raise UnsafePath(f"{path} is a symbolic link",
                                 "refusing to write through it: remove it and run again")

    def save(self) -> None:
        private_dir(self.path.parent)
        body = {"version": VERSION, "key": self.key, "describe": self.describe,
                "inputs": [asdict(m) for m in self.inputs]}
        write_atomic(self.path, orjson.dumps(body, option=orjson.OPT_INDENT_2),
                     tmp=self.tmp_path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def checkpoint_dir() -> Path:
    return config.data_dir() / DIR_NAME


def key_of(inputs: list[str], server: str, space: str, options: dict[str, Any]) -> str:
    resolved = [str(Path(name).resolve()) if name != "-" else "-" for name in inputs]
    blob = orjson.dumps({"inputs": resolved, "server": server, "space": space,
                         "options": options}, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


def head_hash(path: Path | None) -> str:
    """A fingerprint of a file's start, to tell a resumed input from another file of the
    same name; "" for stdin and for pipes, whose start reading here would take away."""
    if path is None or is_stream(str(path)):
        return ""
    try:
        with open(path, "rb") as f:
            return hashlib.blake2b(f.read(_HEAD_BYTES), digest_size=12).hexdigest()
    except OSError:
        return ""


def load(key: str) -> Checkpoint | None:
    path = checkpoint_dir() / f"{key}.json"
    try:
        body = orjson.loads(read_private(path))
        if body.get("version") != VERSION or body.get("key") != key:
            return None
        marks = [InputMark(**m) for m in body["inputs"]]
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return Checkpoint(key, path, marks, body.get("describe", {}))


STALE_AFTER_S = 30 * 86_400  # a checkpoint untouched this long is for an import given up


def prune_stale(now: float | None = None) -> int:
    """Remove checkpoints not written for STALE_AFTER_S (an import nobody resumed);
    answers how many. Each new import does this, so they cannot pile up forever."""
    import time

    cutoff = (time.time() if now is None else now) - STALE_AFTER_S
    removed = 0
    with contextlib.suppress(OSError):
        for path in checkpoint_dir().glob("*.json"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
    return removed


def new(key: str, names: list[str], paths: list[Path | None],
        describe: dict[str, Any]) -> Checkpoint:
    prune_stale()
    marks = [InputMark(name, head=head_hash(p)) for name, p in zip(names, paths, strict=False)]
    return Checkpoint(key, checkpoint_dir() / f"{key}.json", marks, describe)
