"""`stats` totals come from counters kept by the writes (migration 005): after every kind
of write they equal what a scan of the memories says."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from engram_cli.engine import rows
from engram_cli.engine.model import MemoryRecord, MemoryType, State
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store


def scanned(conn: sqlite3.Connection, space: str | None) -> dict[str, Any]:
    """The figures the old scan computed, for comparison."""
    where, args = "WHERE suppressed = 0", []
    if space is not None:
        where, args = where + " AND space = ?", [space]
    n, act, conf, lo, hi = conn.execute(
        f"SELECT count(*), avg(activation), avg(confidence), min(created_at), "
        f"max(created_at) FROM memories {where}", args).fetchone()
    return {
        "total_memories": n, "avg_activation": round(act or 0.0, 9),
        "avg_confidence": round(conf or 0.0, 9), "oldest_memory": lo, "newest_memory": hi,
        "by_type": {MemoryType(t).name.lower(): c for t, c in conn.execute(
            f"SELECT memory_type, count(*) FROM memories {where} GROUP BY 1", args)},
        "by_state": {State(t).name.lower(): c for t, c in conn.execute(
            f"SELECT state, count(*) FROM memories {where} GROUP BY 1", args)},
        "spaces": dict(conn.execute(f"SELECT space, count(*) FROM memories {where} GROUP BY 1",
                                    args).fetchall()),
        "total_associations": conn.execute(
            "SELECT count(*) FROM associations" + (" WHERE space = ?" if space else ""),
            args).fetchone()[0],
        "suppressed": conn.execute(
            "SELECT count(*) FROM memories WHERE suppressed = 1"
            + (" AND space = ?" if space else ""), args).fetchone()[0],
    }


def counted(conn: sqlite3.Connection, space: str | None) -> dict[str, Any]:
    out = rows.counts(conn, space)
    out["avg_activation"] = round(out["avg_activation"], 9)
    out["avg_confidence"] = round(out["avg_confidence"], 9)
    return out


def test_counters_match_a_scan_after_every_kind_of_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", Settings().replace({"consolidation_interval_s": 0.0}))
    try:
        def rec(i: int, **kw: Any) -> MemoryRecord:
            return MemoryRecord(id=f"m{i}", content=f"memory {i} about item {i % 7}",
                                confidence=0.5 + (i % 5) / 10, memory_type=i % 4,
                                created_at=1_700_000_000.0 + i * 60, **kw)

        store.remember_many("notes", [rec(i) for i in range(60)])
        store.remember_many("work", [rec(i) for i in range(100, 140)])
        store.remember_many("notes", [rec(i, tags=["changed"]) for i in range(10)])  # upsert
        store.remember("notes", MemoryRecord(id="m11", content="changed", confidence=0.99,
                                             memory_type=2, created_at=1_600_000_000.0))
        store.consolidate("notes", ids=[f"m{i}" for i in range(20, 40)])
        store.forget("notes", ["m0", "m11"], "suppress")  # the oldest goes: bounds stale
        store.forget("notes", ["m59", "m5"], "delete")  # the newest goes too
        store.forget("work", ["m100"], "delete")
        store.associate("notes", "m20", "m21", 0, 0.5, "test")
        store.associate_many("work", [("m101", "m102", 0.4), ("m103", "m104", 0.4)])
        store.write(lambda conn: None)
        conn = sqlite3.connect(store.path)
        for space in (None, "notes", "work"):
            assert counted(conn, space) == scanned(conn, space), space
        assert counted(conn, None)["suppressed"] == 2
        conn.close()
    finally:
        store.close()
