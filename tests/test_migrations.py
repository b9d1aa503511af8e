"""Schema migrations run on a store made by an older version, keeping its memories."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from engram_cli.engine import migrations
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.store import DB_NAME, Store


def _old_store(data: Path) -> None:
    """A data dir as version 0.1.0 left it: migrations 001 and 002, two memories and an
    association, written with that schema's own SQL."""
    data.mkdir(parents=True)
    conn = sqlite3.connect(data / DB_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    saved = migrations.MIGRATIONS
    migrations.MIGRATIONS = saved[:2]
    try:
        migrations.migrate(conn)
    finally:
        migrations.MIGRATIONS = saved
    now = time.time()
    conn.executemany(
        "INSERT INTO memories (space, id, content, confidence, created_at, last_access, "
        "updated_at) VALUES ('default', ?, ?, 0.9, ?, ?, ?)",
        [("k", "The kettle whistles loudly", now, now, now),
         ("p", "Printer jammed on tray_two", now, now, now)])
    conn.execute("INSERT INTO associations (space, source, target, strength, created_at, "
                 "updated_at) VALUES ('default', 'k', 'p', 0.8, ?, ?)", (now, now))
    assert conn.execute("SELECT count(*) FROM edges").fetchone()[0] == 2
    conn.close()


def _schema(data: Path, name: str) -> str:
    with sqlite3.connect(data / DB_NAME) as conn:
        return str(conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)
                                ).fetchone()[0])


def test_an_old_store_is_migrated_and_keeps_its_memories_index_and_edges(tmp_path: Path
                                                                          ) -> None:
    data = tmp_path / "data"
    _old_store(data)
    assert "detail=none" not in _schema(data, "memories_fts")
    assert "UNIQUE (space, id)" in _schema(data, "memories")

    with Store(data) as store:
        assert store.applied_migrations == ["003_fts_postings_only", "004_memory_keys",
                                            "005_stat_counters", "006_vector_log",
                                            "007_space_dims", "008_fts_usermerge",
                                            "009_space_dims_taken_over", "010_visible_index",
                                            "011_own_vectors_supersede",
                                            "012_visible_index_ranks",
                                            "013_store_identity"]
        assert [m.id for m in store.get("", ["p", "k"])] == ["p", "k"]
        assert [m.id for m in store.recall("", RecallQuery(text="whistling kettle")).memories
                ][:1] == ["k"]
        # A cue word the tokenizer splits ("tray_two") is matched word by word: the index
        # keeps no positions, so it must never become a phrase query.
        assert "p" in [m.id for m in store.recall("", RecallQuery(text="tray_two")).memories]
        # Re-sending a stored memory is recognised by its key: nothing written.
        again = store.remember_many("", [MemoryRecord(id="k", content="The kettle whistles "
                                                                      "loudly")])
        assert again[0].outcome == "unchanged"
        # The triggers still keep the index and the edges in step: update, then delete.
        store.remember_many("", [MemoryRecord(id="k", content="The kettle is silent now")])
        assert store.recall("", RecallQuery(text="whistles")).memories == []
        assert store.forget("", ["p"], "delete") == 1
        assert store.recall("", RecallQuery(text="printer")).memories == []
    assert "detail=none" in _schema(data, "memories_fts")
    assert "UNIQUE" not in _schema(data, "memories")
    with sqlite3.connect(data / DB_NAME) as conn:
        # Raises "database disk image is malformed" if index and table disagree.
        conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('integrity-check')")
        assert conn.execute("SELECT count(*) FROM edges").fetchone()[0] == 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_associations_after_the_migration_make_edges_by_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _old_store(data)

    def edges() -> set[tuple[str, str]]:
        with sqlite3.connect(data / DB_NAME) as conn:
            return set(conn.execute(
                "SELECT s.id, d.id FROM edges JOIN memories s ON s.rowid = src "
                "JOIN memories d ON d.rowid = dst"))

    with Store(data) as store:
        store.remember_many("", [MemoryRecord(id="n", content="A new note on the kettle")])
        store.associate("", "n", "k", 0, 0.7, "")
        store.associate("", "n", "p", 0, 0.6, "")
        assert edges() == {("k", "p"), ("p", "k"), ("n", "k"), ("k", "n"), ("n", "p"),
                           ("p", "n")}
        # Deleting a memory deletes its associations, whose trigger finds edges by key.
        assert store.forget("", ["n"], "delete") == 1
        assert edges() == {("k", "p"), ("p", "k")}
