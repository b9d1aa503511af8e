"""The full-text index's b-trees are merged once writes are quiet (engine/textmerge.py), not
while clients write fast, and the index stays whole and searchable."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from engram_cli.engine import textmerge
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import DB_NAME, Store
from tests.import_support import wait_for

SETTINGS = Settings().replace({"embedding_model": "none", "consolidation_interval_s": 0.0})


def write_in_transactions(store: Store, transactions: int, each: int = 20,
                          pause: float = 0.0) -> int:
    """`transactions` writes of `each` memories, one after the other: each commit adds a
    b-tree to the full-text index. Answers how many memories were written (each new)."""
    n = store.stats()["total_memories"]
    for t in range(transactions):
        store.remember_many("default", [
            MemoryRecord(id=f"m{n + i}", content=f"note {n + i} about topic{t} and more")
            for i in range(each)])
        n += each
        time.sleep(pause)
    return transactions * each


def merge_left(data: Path, tmp_path: Path) -> int:
    """Rows one more 'merge' step would change on a copy of the closed store's database:
    under 2 when no level holds two b-trees (FTS5's own test of a merge having worked)."""
    copy = tmp_path / "copy.db"
    shutil.copyfile(data / DB_NAME, copy)
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('integrity-check')")
        before = conn.total_changes
        conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('merge', 10000)")
        return conn.total_changes - before
    finally:
        conn.close()


def test_once_writes_stop_the_index_is_merged_and_still_finds_every_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textmerge, "CHECK_S", 0.1)
    data = tmp_path / "data"
    with Store(data, SETTINGS) as store:
        n = write_in_transactions(store, 60)
        merger = store.text_merger
        wait_for(lambda: merger.clean_at == store._writer.commits)
        assert merger.steps > 0
        assert store.stats()["text_index"] == {"merge_steps": merger.steps}
        for t in (0, 31, 59):
            found = store.recall("default", RecallQuery(text=f"topic{t}", limit=50,
                                                        max_hops=0))
            assert len(found.memories) == 20
        assert store.stats()["total_memories"] == n
    assert merge_left(data, tmp_path) < 2


def test_merged_after_deletes_and_updates_the_index_forgets_and_finds_as_the_store_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleting a memory and changing one's text write delete markers into the full-text
    index: merged with the postings they cancel, the index answers as the store holds."""
    monkeypatch.setattr(textmerge, "CHECK_S", 0.1)
    data = tmp_path / "data"
    with Store(data, SETTINGS) as store:
        write_in_transactions(store, 40)  # m0..m799, topic0..topic39, 20 each
        for t in range(0, 40, 2):  # half of every even topic deleted, a transaction each
            store.forget("default", [f"m{20 * t + i}" for i in range(10)], "delete")
        store.remember_many("default", [MemoryRecord(id=f"m{20 * 3 + i}",
                                                     content=f"renamed {i} about heron")
                                        for i in range(20)])
        merger = store.text_merger
        wait_for(lambda: merger.clean_at == store._writer.commits)
        assert merger.steps > 0

        def found(cue: str) -> set[str]:
            return {m.id for m in store.recall("default", RecallQuery(
                text=cue, limit=50, max_hops=0)).memories}

        assert found("topic4") == {f"m{80 + i}" for i in range(10, 20)}
        assert found("topic5") == {f"m{100 + i}" for i in range(20)}
        assert found("topic3") == set()
        assert found("heron") == {f"m{60 + i}" for i in range(20)}
    assert merge_left(data, tmp_path) < 2


def test_without_the_merger_the_same_writes_leave_b_trees_to_merge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: the same writes with the merger held back."""
    monkeypatch.setattr(textmerge, "CHECK_S", 3600.0)
    data = tmp_path / "data"
    with Store(data, SETTINGS) as store:
        write_in_transactions(store, 60)
        assert store.text_merger.steps == 0
    assert merge_left(data, tmp_path) >= 2


def test_the_merger_waits_while_clients_write_fast_then_merges(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # At most 15 memories a 0.3 s check count as quiet: a check that saw one write of the
    # 20 below sees writing, and only a stall of 0.3 s would look quiet.
    monkeypatch.setattr(textmerge, "CHECK_S", 0.3)
    monkeypatch.setattr(textmerge, "QUIET_RATE", 50)
    with Store(tmp_path / "data", SETTINGS) as store:
        write_in_transactions(store, 2)
        wait_for(lambda: store.text_merger.clean_at == store._writer.commits)
        write_in_transactions(store, 20, pause=0.02)  # past the check that saw none
        steps = store.text_merger.steps
        write_in_transactions(store, 60, pause=0.02)
        assert store.text_merger.steps == steps
        wait_for(lambda: store.text_merger.clean_at == store._writer.commits)
        assert store.text_merger.steps > steps
