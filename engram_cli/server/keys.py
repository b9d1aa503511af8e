"""API keys and the spaces each may use: the key file's format, reading it, and looking a
presented key up in constant time.

The key file (`engram serve --key-file FILE`) has one key per line, then the spaces it
grants, comma-separated, or `*` for every space:

    # comments and blank lines are ignored
    engram_key_ops_...      *
    engram_key_team_a_...   notes,journal
    engram_key_reader_...   default

`default` is the space a request with an empty space id uses. The file must be private
(no permission bits for group or others, e.g. 0600): a key file others can read is a key
others have, so the server refuses to start with one and, on a SIGHUP reload, keeps the
keys it has.
"""

from __future__ import annotations

import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from engram_cli.contract import key_error
from engram_cli.engine.model import SPACE_RE
from engram_cli.errors import SettingsError
from engram_cli.files import NotARegularFile, read_regular

EVERY_SPACE = "*"
MAX_KEY_FILE_BYTES = 1 << 20  # thousands of keys
_ALL: frozenset[str] = frozenset({EVERY_SPACE})


@dataclass(frozen=True)
class KeyRing:
    """Keys and what each grants. `grants` compares the presented key with every stored
    key, each in constant time, so the answer's timing says nothing about how much of a
    key was right or which key came close."""

    entries: tuple[tuple[bytes, frozenset[str]], ...] = ()
    # A key file, even one with no keys left in it, means every call needs a key: emptying
    # the file revokes every key; it does not open the server.
    required: bool = False

    @classmethod
    def build(cls, all_spaces: tuple[str, ...] = (),
              scoped: tuple[tuple[str, frozenset[str]], ...] | None = None) -> KeyRing:
        """Keys for every space (--require-key) and, with a key file, its keys."""
        merged: dict[str, frozenset[str]] = {k: _ALL for k in all_spaces if k}
        for key, spaces in scoped or ():
            merged[key] = _ALL if EVERY_SPACE in spaces or merged.get(key) == _ALL else (
                merged.get(key, frozenset()) | spaces)
        return cls(tuple((k.encode(), v) for k, v in merged.items()),
                   required=scoped is not None)

    def __bool__(self) -> bool:
        """Does a call need a key?"""
        return self.required or bool(self.entries)

    def grants(self, key: str) -> frozenset[str] | None:
        """The spaces `key` may use (`{"*"}`: every one), or None for an unknown key."""
        given = key.encode()
        found: frozenset[str] | None = None
        for known, spaces in self.entries:
            if hmac.compare_digest(given, known):
                found = spaces
        return found if key else None


def allows(spaces: frozenset[str], space: str) -> bool:
    return EVERY_SPACE in spaces or space in spaces


def read_key_file(path: Path) -> tuple[tuple[str, frozenset[str]], ...]:
    """The (key, spaces) lines of a key file; SettingsError naming the file (and line) for
    a file that cannot be read, is open to group or others, or has a bad line."""
    def private(st: os.stat_result) -> None:  # of the file opened: the one read
        if st.st_mode & 0o077:
            raise SettingsError(
                f"key file {path} is readable or writable by others "
                f"(mode {stat.S_IMODE(st.st_mode):04o})", f"make it private: chmod 600 {path}")

    try:
        raw = read_regular(path, MAX_KEY_FILE_BYTES, private)
    except NotARegularFile as exc:
        raise SettingsError(f"key file {exc}", "name a file of keys") from None
    except OSError as exc:
        raise SettingsError(f"cannot read key file {path}: {exc.strerror}",
                            "check the path and its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"key file {path} is not UTF-8 text",
                            "write one `KEY space1,space2` (or `KEY *`) per line") from None
    out: dict[str, frozenset[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise SettingsError(f"{where}: a key without spaces",
                                "write `KEY space1,space2`, or `KEY *` for every space")
        key, listed = parts
        if key_error(key):
            raise SettingsError(f"{where}: {key_error(key)}",
                                "write `KEY space1,space2`, or `KEY *` for every space")
        spaces = frozenset(s.strip() for s in listed.replace(" ", "").split(",") if s.strip())
        for space in spaces:
            if space != EVERY_SPACE and not SPACE_RE.match(space):
                raise SettingsError(
                    f"{where}: {space!r} is not a space id",
                    "use 3 to 64 characters of [a-z0-9_-], `default`, or `*`")
        if key in out:
            raise SettingsError(f"{where}: this key is listed twice",
                                "list each key once, with all its spaces")
        out[key] = spaces
    return tuple(out.items())

