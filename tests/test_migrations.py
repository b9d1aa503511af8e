"""Schema migrations run on a store made by an older version, keeping its memories."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engram_cli.engine import migrations
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.store import DB_NAME, RecallQuery, Store


def test_a_store_from_before_migration_3_is_reindexed_and_still_recalled(tmp_path: Path,
                                                                         monkeypatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
    with Store(data) as old:
        old.remember_many("", [MemoryRecord(id="k", content="The kettle whistles loudly"),
                               MemoryRecord(id="p", content="Printer jammed on tray_two")])
    monkeypatch.undo()
    with sqlite3.connect(data / DB_NAME) as conn:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'memories_fts'"
                           ).fetchone()[0]
    assert "detail=none" not in sql

    with Store(data) as store:
        assert store.applied_migrations == ["003_fts_postings_only"]
        assert [m.id for m in store.recall("", RecallQuery(text="whistling kettle")).memories
                ][:1] == ["k"]
        # A cue word the tokenizer splits ("tray_two") is matched word by word: the index
        # keeps no positions, so it must never become a phrase query.
        assert [m.id for m in store.recall("", RecallQuery(text="tray_two")).memories] == ["p"]
        # The triggers still keep the index in step: update, then delete.
        store.remember_many("", [MemoryRecord(id="k", content="The kettle is silent now")])
        assert store.recall("", RecallQuery(text="whistles")).memories == []
        assert store.forget("", ["p"], "delete") == 1
        assert store.recall("", RecallQuery(text="printer")).memories == []
    with sqlite3.connect(data / DB_NAME) as conn:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'memories_fts'"
                           ).fetchone()[0]
        assert "detail=none" in sql
        # Raises "database disk image is malformed" if index and table disagree.
        conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('integrity-check')")
