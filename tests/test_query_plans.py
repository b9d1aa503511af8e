"""Recall looks memories up by rowid, never by walking a whole space: a lookup of a few
candidates that SQLite plans as a scan of the space's index costs time in proportion to
the space (265 ms a recall at a million memories)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store
from tests.import_support import wait_for


def _plans(conn: sqlite3.Connection, statements: list[str]) -> dict[str, str]:
    """Each lookup by a list of rowids, with how SQLite plans it."""
    out = {}
    for sql in statements:
        if "rowid IN (" not in sql or "memories" not in sql:
            continue
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        out[sql] = " | ".join(str(row[-1]) for row in plan)
    return out


def test_recall_looks_candidates_up_by_rowid_not_by_space(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", Settings().replace({"embedding_model": "none"}))
    try:
        rng = np.random.default_rng(7)
        vecs = rng.standard_normal((60, 8)).astype(np.float32)
        for i, vec in enumerate(vecs):
            store.remember("", MemoryRecord(id="", content=f"lighthouse keeper note {i}",
                                            embedding=vec.tobytes()))
        wait_for(lambda: store.indexer.pending() == 0, timeout=30.0)
        seen: list[str] = []
        # A recall inside a lease runs on the leased connection.
        with store._readers.lease() as conn:
            conn.set_trace_callback(seen.append)
            try:
                by_vector = store.recall("", RecallQuery(embedding=vecs[3].tobytes(),
                                                         limit=5))
                by_words = store.recall("", RecallQuery(text="lighthouse keeper", limit=5,
                                                        mode="lexical"))
            finally:
                conn.set_trace_callback(None)
        assert by_vector.memories and by_words.memories
        plans = _plans(conn, seen)
        # Both the candidates' visibility (the index has taken in every change, so its
        # scores stand) and the rows' loading were traced.
        assert any("memories_visible" in sql for sql in plans), seen
        assert any(sql.startswith("SELECT rowid, id, content") for sql in plans), seen
        for sql, plan in plans.items():
            assert "memories_space_state" not in plan, (sql, plan)
            if "memories_visible" in plan:  # sought rowid by rowid, not walked
                assert "rowid=?" in plan, (sql, plan)
    finally:
        store.close()
