"""Recall's index of visible memories is read back into the OS file cache, whole, when a
store opens and when a recall comes after an idle (engine/warmth.py). Real stores, real
files; the file cache is read with mincore(2) and emptied with posix_fadvise(2)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engram_cli.engine import warmth
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import DB_NAME, Store
from engram_cli.engine.warmth import IndexWarmer
from tests.import_support import wait_for

TEXT_ONLY = Settings().replace({"embedding_model": "none", "consolidation_interval_s": 0.0})
OS_PAGE = os.sysconf("SC_PAGE_SIZE")


def cached(path: Path) -> np.ndarray:
    """Per OS page of the file, whether it is in the file cache (mincore of a mapping)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = (ctypes.c_ubyte * ((size + OS_PAGE - 1) // OS_PAGE))()
            assert libc.mincore(ctypes.c_void_p(addr), size, vec) == 0, ctypes.get_errno()
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)
    return np.frombuffer(vec, dtype=np.uint8) & 1


def drop_from_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def pages_of(conn: sqlite3.Connection, btree: str) -> list[int]:
    """The first OS page of each SQLite page of a b-tree (dbstat)."""
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return [(n - 1) * size // OS_PAGE
            for (n,) in conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (btree,))]


def test_a_pass_reads_every_page_of_the_index_of_visible_memories(tmp_path):
    data = tmp_path / "data"
    with Store(data, TEXT_ONLY) as store:
        store.remember_many("default", [
            MemoryRecord(id=f"m{i}", content=f"note {i} about the harbour", confidence=0.9)
            for i in range(20_000)])
    db = data / DB_NAME
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        visible, table = pages_of(conn, "memories_visible"), pages_of(conn, "memories")
    finally:
        conn.close()
    assert len(visible) >= 20, len(visible)
    drop_from_cache(db)
    before = cached(db)
    assert before[visible].sum() == 0, "this file system keeps the pages whatever we ask"

    warmer = IndexWarmer(lambda: sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                                 check_same_thread=False))
    warmer.start()
    wait_for(lambda: warmer.passes == 1, timeout=30)
    warmer.close()
    after = cached(db)
    assert after[visible].all()
    # the index, not the table: its rows were not read
    assert after[table].mean() < 0.1, after[table].mean()


def test_a_recall_after_an_idle_starts_a_pass_and_closing_ends_it(tmp_path, monkeypatch):
    monkeypatch.setattr(warmth, "IDLE_S", 1.0)
    store = Store(tmp_path / "data", TEXT_ONLY)
    try:
        store.remember_many("default", [MemoryRecord(id=f"m{i}", content=f"pier {i}")
                                        for i in range(50)])
        wait_for(lambda: store.warmth.passes == 1, timeout=30)  # the pass at open
        q = RecallQuery(text="pier", limit=3)
        assert store.recall("default", q).memories
        time.sleep(0.3)
        assert store.warmth.passes == 1  # within IDLE_S of the pass: none
        time.sleep(1.2)
        store.recall("default", q)
        wait_for(lambda: store.warmth.passes == 2, timeout=30)
        store.recall("default", q)
        time.sleep(0.3)
        assert store.warmth.passes == 2
    finally:
        store.close()
    assert not [t for t in threading.enumerate() if t.name == "engram-index-warmth"]


def test_closing_interrupts_a_running_pass(tmp_path):
    db = tmp_path / "slow.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE memories (space TEXT, suppressed INT, last_access REAL)")
    conn.execute("CREATE INDEX memories_visible ON memories (space, suppressed, last_access)")
    conn.executemany("INSERT INTO memories VALUES ('default', 0, ?)",
                     [(float(i),) for i in range(2000)])
    conn.commit()
    conn.close()
    started = threading.Event()

    def connect() -> sqlite3.Connection:
        c = sqlite3.connect(db, check_same_thread=False)
        # every step of the pass sleeps: it would take minutes
        c.set_progress_handler(lambda: (started.set(), time.sleep(0.05))[1], 1)
        return c

    warmer = IndexWarmer(connect)
    warmer.start()
    assert started.wait(10)
    t = time.monotonic()
    warmer.close()
    assert time.monotonic() - t < 5
    assert warmer.passes == 0


if __name__ == "__main__":
    pytest.main([__file__])
