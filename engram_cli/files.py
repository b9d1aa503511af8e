"""Private files: every file the server, the importer and the client write goes through here.

Memories, keys and settings are only this user's business, whatever the umask: files are
created 0600 and directories 0700. A path we write is never followed through a symbolic
link that someone else could have planted there (O_NOFOLLOW, and temporary files are
created exclusively): we refuse with UnsafePath instead, leaving the link's target alone.
Replacing a file is atomic: a fresh temporary file beside it, fsync, rename, fsync of the
directory, so a crash leaves the old file or the new one, never half of one.

Standard library only, and not even contextlib (try/except instead of suppress): a cached
recall imports this.
"""

from __future__ import annotations

import errno
import os
import stat

from engram_cli.errors import UnsafePath

# typing costs a cached recall several ms at import; annotations are strings here, and
# pathlib is imported by the functions that make paths (~8 ms: a cached recall needs none).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path
    from typing import IO, Any, BinaryIO, TypeVar

    PathT = TypeVar("PathT", str, Path)

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# What open(2) answers for a symlink under O_NOFOLLOW: ELOOP on Linux, EMLINK on the BSDs.
_LINK_ERRNOS = {errno.ELOOP, getattr(errno, "EMLINK", errno.ELOOP)}
_REFUSE_HINT = "refusing to write through it: remove it (or choose another path) and run again"


def _symlink_error(path: Path | str) -> UnsafePath:
    return UnsafePath(f"{path} is a symbolic link", _REFUSE_HINT)


def private_dir(path: PathT, *, own: bool = True) -> PathT:
    """Make sure `path` is a directory, creating it 0700 (missing parents too); answers
    `path`.

    own=True: a directory only we use (imports/, vectors/): a symlink there is refused and
    an existing one is tightened to 0700. own=False: a directory the user names (a data
    dir, the config dir): a symlink to a directory is the user's choice and is followed,
    and an existing directory keeps its mode (see exposure_warning)."""
    parent = os.path.dirname(os.path.normpath(path)) or "."
    if not os.path.exists(parent):
        private_dir(parent, own=False)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    else:
        os.chmod(path, DIR_MODE)  # the umask may have taken bits away; 0700 exactly
        return path
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        if own:
            raise _symlink_error(path)
        st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{path} is not a directory", "remove it or choose another path")
    if own and stat.S_IMODE(st.st_mode) != DIR_MODE and st.st_uid == os.geteuid():
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: Path | str, flags: int, single_link: bool = False) -> int:
    """os.open(path, flags) never through a symlink, creating the file 0600; an existing
    file of ours that others may read is tightened to 0600. Answers the descriptor.

    single_link: also refuse a file with other hard links (for paths in a directory others
    may write, such as a rejects file beside its input; a store's own files may have
    them, from a `cp -al` backup)."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS and os.path.islink(path):
            raise _symlink_error(path) from None
        raise
    try:
        st = os.fstat(fd)
        if single_link and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            # A second name for some other file of ours, planted where we write.
            raise UnsafePath(f"{path} has other hard links", _REFUSE_HINT)
        if (stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != FILE_MODE
                and st.st_uid == os.geteuid()):
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: Path | str) -> None:
    """Make sure `path` exists as a file of ours, 0600 when new (SQLite gives a database's
    -wal and -shm files the database file's mode: create it first, and they are private)."""
    os.close(open_private(path, os.O_RDWR | os.O_CREAT))


def append_private(path: Path | str) -> BinaryIO:
    """A binary file opened for appending (created 0600), never through a symlink or
    into a file with other hard links."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                  single_link=True), "ab")


# Certificates and keys in PEM, bundles included (a system's CA bundle is ~220 KB).
MAX_PEM_BYTES = 4 << 20


class NotARegularFile(OSError):
    """A file the user named to be read is a device, a FIFO, a directory or too big: an
    OSError whose reason (`strerror`) says which, for callers that say an OSError's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.strerror = message


def read_regular(path: Path | str, most: int,
                 check: Callable[[os.stat_result], None] | None = None) -> bytes:
    """The bytes of a regular file of at most `most` bytes that the user named (settings,
    keys, certificates), with `check` given the stat of the file opened; NotARegularFile
    (an OSError) for anything else, OSError as opening raises it. Read whole, /dev/zero
    named by mistake took a process to the kernel's out-of-memory killer, and a FIFO
    waited for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"{path} is not a regular file")
        if check is not None:
            check(st)
        raw = f.read(most + 1)
    if len(raw) > most:
        raise NotARegularFile(f"{path} is over {most >> 20} MiB")
    return raw


def read_private(path: Path | str) -> bytes:
    """The bytes of a file we wrote, never read through a symlink (FileNotFoundError when
    there is none)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS and os.path.islink(path):
            raise UnsafePath(f"{path} is a symbolic link",
                             "refusing to read through it: remove it and run again") from None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()


def create_exclusive(tmp: Path) -> int:
    """A new 0600 file at `tmp`; a regular file of ours left there by a crash is replaced,
    anything else (a planted symlink) is refused."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(tmp, flags, FILE_MODE)
    except FileExistsError:
        st = os.lstat(tmp)
        if stat.S_ISLNK(st.st_mode):
            raise _symlink_error(tmp) from None
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise UnsafePath(f"{tmp} is in the way and is not a file of ours",
                             "remove it and run again") from None
        os.unlink(tmp)
        try:
            fd = os.open(tmp, flags, FILE_MODE)
        except FileExistsError:  # planted again in between: someone is at work there
            raise UnsafePath(f"{tmp} keeps reappearing", "remove it and run again") from None
    os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away; 0600 exactly
    return fd


def write_atomic(path: Path | str, data: bytes | Callable[[BinaryIO], object],
                 tmp: Path | str | None = None) -> None:
    """Replace `path` with `data` (bytes, or a function writing to the open file): a fresh
    0600 temporary file (`tmp`, default `.<name>.<pid>.tmp` beside it), fsync, rename,
    fsync of the directory. A symlink at `path` or at `tmp` is refused, untouched, and so
    is anything but a regular file there (the rename would replace a device such as
    /dev/null, or a FIFO, with our file)."""
    from pathlib import Path

    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISLNK(mode):
            raise _symlink_error(path)
        if not stat.S_ISREG(mode):
            raise UnsafePath(f"{path} is not a regular file",
                             "name a file to write, not a device, a pipe or a directory")
    tmp = Path(tmp) if tmp is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = create_exclusive(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path | str) -> None:
    """Make a rename in `directory` durable (not every platform can fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def exposed(directory: Path, names: Iterable[str] = ()) -> list[Path]:
    """Of `directory` and its files `names`, those that exist and that the group or other
    users may read, write or enter."""
    out = []
    for path in (directory, *(directory / n for n in names)):
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & 0o077:
            out.append(path)
    return out


def exposure_warning(directory: Path, names: Iterable[str] = ()) -> str | None:
    """One line naming the exposed paths of a store and the fix, or None when private. A
    directory owned by another user comes first: its owner may rename or replace any
    file in it (the database among them) whatever the files' own modes."""
    try:
        owner = os.stat(directory).st_uid
    except OSError:
        owner = os.geteuid()
    if owner != os.geteuid():
        return (f"the store's directory {directory} belongs to another user (uid {owner}), "
                "who can replace or read any file in it: use a directory of your own")
    found = exposed(directory, names)
    if not found:
        return None
    shown = ", ".join(str(p) for p in found[:4]) + (", ..." if len(found) > 4 else "")
    return (f"the store in {directory} is readable by other users ({shown}): "
            f"make it private with `chmod -R go-rwx {directory}`")


def digest_file(path: Path | str) -> tuple[int, str]:
    """(size, blake2b-128 hex) of a file, read in chunks, never through a symlink."""
    import hashlib  # not at the top: a cached recall's start-up reads this module

    h = hashlib.blake2b(digest_size=16)
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def write_hashed(path: Path | str,
                 fill: Callable[[Callable[[bytes], Any]], None]) -> tuple[int, str]:
    """Replace `path` privately and atomically (write_atomic) with what `fill` hands
    its callback, chunk by chunk; answers the file's (size, digest)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    size = 0

    def through(f: BinaryIO) -> None:
        def put(chunk: bytes) -> None:
            nonlocal size
            h.update(chunk)
            size += len(chunk)
            f.write(chunk)

        fill(put)

    write_atomic(path, through)
    return size, h.hexdigest()


def is_stream(name: str) -> bool:
    """`name` is a pipe, FIFO or device, not a regular file: it can be read once only, so
    nothing may read ahead of the import (a look at its start would take those records),
    and reading it may wait for a writer."""
    try:
        mode = os.stat(name).st_mode
    except (OSError, ValueError):
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def skip_line(stream: IO[bytes], chunk: int = 1 << 20) -> int:
    """Read past the rest of the current line of a binary stream (to its newline or the
    end), `chunk` bytes at a time, never holding it whole; answers the bytes read. For a
    line over a reader's limit: its start was read, the rest is not wanted."""
    skipped = 0
    while True:
        part = stream.readline(chunk)
        skipped += len(part)
        if not part or part.endswith(b"\n"):
            return skipped


_OWN_DESCRIPTORS = ("/dev/fd/", "/proc/self/fd/", "/dev/stdout", "/dev/stderr")
_SPECIAL = (stat.S_ISFIFO, stat.S_ISSOCK, stat.S_ISCHR)


def write_in_place(path: Path | str) -> bool:
    """`path` names a pipe, a socket or a character device that output goes into as it is
    (`-o >(gzip > a.gz)`, a FIFO, `--rejects /dev/null`): nothing of ours is created beside
    it, renamed over it or unlinked (as root, that replaced /dev/null with a file).
    Only one of this process's own descriptors (/dev/fd/N, what `>(...)` passes) is
    followed through its link; anything else must be the special file itself, owned by
    this user or root: a FIFO another user planted at an output path, or a link aiming it
    at /dev/mem, is not written into. A block device never is."""
    name = os.fspath(path)
    try:
        if name.startswith(_OWN_DESCRIPTORS):
            mode = os.stat(name).st_mode
            return any(kind(mode) for kind in _SPECIAL)
        st = os.lstat(name)
    except (OSError, ValueError):
        return False
    return any(kind(st.st_mode) for kind in _SPECIAL) and st.st_uid in (os.geteuid(), 0)


def open_in_place(path: Path | str) -> BinaryIO:
    """A write_in_place() path opened for writing: never created, never truncated."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | _CLOEXEC), "ab")

