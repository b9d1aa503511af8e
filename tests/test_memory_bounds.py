"""What the server holds after a burst is bounded in bytes: SQLite's prepared statements
(IN lists padded to a few lengths) and the helpers that pad them."""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
from pathlib import Path

from engram_cli.engine import rows
from engram_cli.engine.inlist import in_list
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store


def test_in_list_pads_to_a_power_of_two_with_the_last_value() -> None:
    assert in_list([], 900) == ("", [])
    assert in_list([7], 900) == ("?", [7])
    assert in_list([1, 2, 3], 900) == ("?,?,?,?", [1, 2, 3, 3])
    marks, values = in_list(list(range(300)), 900)
    assert marks.count("?") == len(values) == 512 and set(values) == set(range(300))
    # Never past the caller's chunk size; a list longer than it is left alone.
    assert len(in_list(list(range(600)), 900)[1]) == 900
    assert len(in_list(list(range(1000)), 900)[1]) == 1000
    # Ten lengths or so, whatever the list: the statement cache reuses them.
    assert len({len(in_list(list(range(n)), 900)[1]) for n in range(1, 901)}) == 11


def test_padded_in_lists_answer_the_same_rows(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(100)])
    for want in ([5], [1, 2, 3], list(range(0, 100, 7)), [99, 98, 97, 200]):
        marks, values = in_list(want, 900)
        got = conn.execute(f"SELECT k FROM t WHERE k IN ({marks}) ORDER BY k", values)
        assert [k for (k,) in got] == sorted(k for k in set(want) if k < 100)
    conn.close()


def _sqlite_memory_used() -> int:
    """SQLite's own count of the bytes it has allocated, process-wide (the library that
    Python's sqlite3 module is linked with)."""
    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def test_lookups_of_every_length_keep_few_statements_prepared(tmp_path: Path) -> None:
    # Unpadded, a reader connection kept 128 statements of up to 900 placeholders each
    # (~8 MB); a server has one reader connection per thread.
    store = Store(tmp_path / "data", Settings().replace({"embedding_model": "none"}))
    try:
        for i in range(50):
            store.remember("", MemoryRecord(id="", content=f"memory number {i}"))
        conn = store._reader()
        before = _sqlite_memory_used()
        # The measurement itself works: one unpadded statement of 900 values registers.
        conn.execute(f"SELECT k FROM (SELECT 1 AS k) WHERE k IN ({','.join('?' * 900)})",
                     list(range(900))).fetchall()
        assert _sqlite_memory_used() - before > 30_000
        before = _sqlite_memory_used()
        for n in range(1, 451):
            rows.ids_of(conn, {}, set(range(1, n + 1)))
            rows.rows_by_rowid(conn, store.hot, "default", list(range(1, n + 1)), 0)
        grown = _sqlite_memory_used() - before
        assert grown < 3 * 1024 * 1024, f"prepared statements hold {grown / 2**20:.1f} MB"
    finally:
        store.close()


def test_the_hot_tiers_byte_count_is_not_below_what_python_holds() -> None:
    # Counted as the memory the rows and the tier's entries take (tracemalloc), the tier's
    # own count must not be lower: hot_max_bytes is then a real bound.
    import random
    import tracemalloc

    from engram_cli.engine.hot import HotTier

    rng = random.Random(3)
    for words in (3, 40, 2000):
        n = 2000 if words < 2000 else 100
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            rows_ = [(i, f"mem_{i:032x}", " ".join(f"w{rng.randrange(10**6)}"
                                                    for _ in range(words)),
                      None, rng.random(), rng.random(), 0.01, "episodic", "active",
                      1.7e9 + rng.random(), 1.7e9 + rng.random(), '["a"]', '{"k": "v"}')
                     for i in range(n)]
            hot = HotTier(capacity=10**9, max_bytes=10**12)
            hot.put_many("default", rows_, hot.epoch())
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert held <= hot.bytes <= held * 1.5, (words, held, hot.bytes)
    # What recall looked up of other memories, kept beside the rows, counts too.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        hot = HotTier(capacity=10**9, max_bytes=10**12)
        hot.put_standing("default", {
            rid: (rid, rng.random(), rng.getrandbits(63), rng.random(), 1.7e9 + rng.random())
            for rid in (rng.randrange(1 << 40) for _ in range(20_000))}, hot.epoch())
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= hot.bytes <= held * 1.5, (held, hot.bytes)
    hot = HotTier(capacity=10**9, max_bytes=100_000)
    for _ in range(5):
        hot.put_standing("default", {rid: (rid, 0.5, rng.getrandbits(63), 0.0, 1.7e9)
                                     for rid in (rng.randrange(1 << 40) for _ in range(1_000))},
                         hot.epoch())
        assert 0 < hot.bytes <= 100_000
