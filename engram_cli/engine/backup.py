"""Online backup of a store and its restore into a stopped data directory.

A backup is SQLite's online backup API run inside one read transaction of a connection of
its own: the copy is the snapshot that transaction sees, and in WAL mode the writer and
the readers go on meanwhile. It is written into a hidden directory beside the destination
(`.NAME.partial-<pid>-<random>`), switched to a single-file journal, checked (SQLite's
integrity_check, and the copy's counter tables against its rows), described in
`backup.json` and only then renamed to its final name: a backup interrupted at any point
(kill -9 of the server included) leaves at most a hidden partial directory, never a
directory at the destination that looks finished.

The vector index is not copied: it is a cache of SQLite (engine/indexer.py) that a server
rebuilds from the memories and the stored vectors when its directory is missing, so a
restore removes it rather than pair a copy taken at another moment with the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import sqlite3
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from engram_cli.errors import EngramError, InvalidArgument

DB_NAME = "engram.db"
MANIFEST = "backup.json"
LOCK_NAME = "LOCK"
SERVER_FILE = "server.json"
INDEX_DIR = "vectors"
FORMAT = 1


class BackupError(EngramError):
    """A backup or a restore could not be made or failed its verification."""


@dataclass
class BackupReport:
    path: str
    memories: int
    associations: int
    bytes: int
    seconds: float
    schema_version: int = 0
    created_at: float = 0.0
    format: int = FORMAT
    integrity: str = "ok"


def backup(source: sqlite3.Connection, dest: Path) -> BackupReport:
    """Copy the database `source` is connected to into the new directory `dest` (its parent
    must exist; `dest` must not). `source` must be a connection of the caller's own, in
    autocommit mode, used by nothing else meanwhile."""
    started = time.monotonic()
    if not dest.is_absolute():
        raise InvalidArgument(f"backup destination {str(dest)!r} is not an absolute path")
    parent = dest.parent
    if not parent.is_dir():
        raise InvalidArgument(
            f"{parent} " + ("is not a directory" if parent.exists() else "does not exist"),
            "create it first")
    if os.path.lexists(dest):
        raise InvalidArgument(f"{dest} already exists",
                              "name a new directory: a backup never overwrites one")
    tmp = parent / f".{dest.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    os.mkdir(tmp, 0o700)
    try:
        db = tmp / DB_NAME
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        copy = sqlite3.connect(db, isolation_level=None)
        try:
            source.execute("BEGIN")  # the snapshot: counted and copied in one transaction
            try:
                memories, associations = _counts(source)
                source.backup(copy)
            finally:
                source.execute("COMMIT")
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            _verify(copy, memories, associations)
            schema = copy.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        finally:
            copy.close()
        _fsync(db)
        report = BackupReport(str(dest), memories, associations, db.stat().st_size,
                              0.0, int(schema or 0), time.time())
        report.seconds = round(time.monotonic() - started, 3)
        _write_private(tmp / MANIFEST, orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2))
        _fsync(tmp)
        os.rename(tmp, dest)
        _fsync(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _counts(conn: sqlite3.Connection) -> tuple[int, int]:
    memories = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
    associations = conn.execute("SELECT count(*) FROM associations").fetchone()[0]
    return int(memories), int(associations)


def _verify(conn: sqlite3.Connection, memories: int, associations: int) -> None:
    """integrity_check, the rows against the source's counts, and the copy's counter
    tables (what `stats` reads) against its own rows."""
    result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    if result != ["ok"]:
        raise BackupError("the copy failed SQLite's integrity check: " + "; ".join(result[:3]))
    got = _counts(conn)
    if got != (memories, associations):
        raise BackupError(f"the copy holds {got[0]} memories and {got[1]} associations, "
                          f"the store {memories} and {associations}")
    counted = conn.execute("SELECT total(n) FROM memory_counts").fetchone()[0]
    if int(counted) != memories:
        raise BackupError(f"the copy's counters say {int(counted)} memories, its rows "
                          f"{memories}")


def read_manifest(src: Path) -> dict[str, Any]:
    """A finished backup's manifest; raises BackupError for anything else."""
    if not (src / MANIFEST).is_file() or not (src / DB_NAME).is_file():
        raise BackupError(f"{src} is not a finished engram backup (no {MANIFEST} or {DB_NAME})",
                          "name a directory written by `engram backup`")
    try:
        manifest: dict[str, Any] = orjson.loads((src / MANIFEST).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BackupError(f"{src / MANIFEST} is damaged: {exc}") from None
    return manifest


def verify_backup(src: Path) -> dict[str, Any]:
    """Check a backup directory against its manifest; answers the manifest."""
    manifest = read_manifest(src)
    conn = sqlite3.connect(f"file:{src / DB_NAME}?mode=ro", uri=True, isolation_level=None)
    try:
        _verify(conn, int(manifest.get("memories", -1)), int(manifest.get("associations", -1)))
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{src / DB_NAME} is not a readable database: {exc}") from None
    finally:
        conn.close()
    return manifest


def restore(src: Path, data_dir: Path, force: bool = False) -> dict[str, Any]:
    """Put the backup `src` in place as `data_dir`'s store; the data directory must not be
    in use. An existing store is replaced only with `force`, and is then moved aside into
    `data_dir/pre-restore-<time>/`. Answers the backup's manifest."""
    manifest = verify_backup(src)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = data_dir.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise BackupError(f"{data_dir} is a symlink", "name the real directory")
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BackupError(f"{data_dir} is in use by a running engram server",
                              "stop it first (`engram stop`), then restore") from None
        pid = _server_pid(data_dir / SERVER_FILE)
        if pid is not None:
            raise BackupError(
                f"{data_dir} is in use by a running engram server (pid {pid})",
                "stop it first (`engram stop`), then restore")
        existing = [p for p in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", INDEX_DIR)
                    if os.path.lexists(data_dir / p)]
        if DB_NAME in existing and not force:
            raise BackupError(f"{data_dir} already holds a store",
                              "restore into an empty --data-dir, or pass --force to move the "
                              "current store aside and replace it")
        tmp = data_dir / f".{DB_NAME}.restore-{secrets.token_hex(4)}"
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        try:
            with open(src / DB_NAME, "rb") as f_in, open(tmp, "r+b") as f_out:
                shutil.copyfileobj(f_in, f_out, 1 << 20)
            _fsync(tmp)
            if existing:
                aside = _new_dir(data_dir / f"pre-restore-{time.strftime('%Y%m%dT%H%M%S')}")
                for name in existing:
                    os.rename(data_dir / name, aside / name)
                manifest["moved_aside"] = str(aside)
            os.rename(tmp, data_dir / DB_NAME)
            _fsync(data_dir)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    finally:
        os.close(fd)
    return manifest


def _new_dir(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`... (two restores in one second), created 0700."""
    n = 1
    while True:
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            os.mkdir(candidate, 0o700)
            return candidate
        except FileExistsError:
            n += 1


def _server_pid(path: Path) -> int | None:
    """The pid a server.json names, when that process is alive (a server killed with -9
    leaves its file behind; the LOCK, released by the kernel, is the real test)."""
    try:
        pid = int(orjson.loads(path.read_bytes())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
