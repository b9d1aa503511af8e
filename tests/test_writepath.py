"""The write path's statement shapes: a batch split into full and power-of-two chunks must
store exactly what one statement per record would, in order (a later duplicate wins)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time

import pytest

from engram_cli.engine import rows, writer, writes
from engram_cli.engine import store as st
from engram_cli.engine.model import MemoryRecord, memory_key
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # 8-row statements: a 29-record batch becomes chunks of 8, 8, 8, 4 and 1.
    monkeypatch.setattr(writes, "_MAX_ROWS_PER_UPSERT", 8)


def test_chunk_shapes_cover_every_row_once_in_order(small_chunks: None) -> None:
    seen: list[int] = []

    class Recorder:
        rowcount = 0

        def execute(self, sql: str, params: list) -> Recorder:
            seen.extend(params[1::writes._ROW_WIDTH])  # the id column of each row
            self.rowcount = len(params) // writes._ROW_WIDTH
            return self

    batch = [("s", i, i, "c", None, 0.5, 0.0, 0, 0, 1.0, 1.0, 1.0, "[]", "{}") for i in range(29)]
    assert all(len(row) == writes._ROW_WIDTH for row in batch)
    changed = writes._insert_rows(Recorder(), writes._UPSERT_HEAD,  # type: ignore[arg-type]
                                  writes._UPSERT_TAIL, [value for row in batch for value in row])
    assert seen == list(range(29))
    assert changed == 29


def test_duplicates_across_chunk_boundaries_keep_the_last_version(small_chunks: None,
                                                                    tmp_path) -> None:
    with Store(tmp_path / "data") as store:
        records = [MemoryRecord(id=f"m{i}", content=f"first text number{i}") for i in range(20)]
        # m3 again after the first chunk boundary and m5 as the very last (1-row) chunk.
        records += [MemoryRecord(id=f"n{i}", content=f"other text item{i}") for i in range(7)]
        records.append(MemoryRecord(id="m3", content="replaced zebra"))
        records.append(MemoryRecord(id="m5", content="replaced giraffe"))
        outcomes = store.remember_many("", records)
        assert [o.outcome for o in outcomes] == ["created"] * 27 + ["updated", "updated"]
        got = {m.id: m.content for m in store.get("", [r.id for r in records])}
        assert len(got) == 27
        assert got["m3"] == "replaced zebra"
        assert got["m5"] == "replaced giraffe"
        assert got["n6"] == "other text item6"
        hits = store.recall("", RecallQuery(text="giraffe"))
        assert [m.id for m in hits.memories] == ["m5"]
        # The same batch again changes nothing.
        again = store.remember_many("", records[20:])
        assert {o.outcome for o in again} == {"unchanged"}


def test_a_key_collision_refuses_the_newcomer_and_keeps_the_stored_memory(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two ids whose 64-bit keys collide (forced here; 2^-64 odds in life): the memory
    # stored first keeps the key, the other is refused by name, and neighbours are stored.
    def colliding(space: str, mid: str) -> int:
        return 7 if mid in ("alpha", "beta") else memory_key(space, mid)

    for module in (writes, rows, st):  # the rows written, the look-ups, SQL's engram_key
        monkeypatch.setattr(module, "memory_key", colliding)
    with Store(tmp_path / "data") as store:
        assert store.remember_many("", [MemoryRecord(id="alpha", content="first owner")]
                                   )[0].outcome == "created"
        out = store.remember_many("", [MemoryRecord(id="beta", content="second claimant"),
                                       MemoryRecord(id="gamma", content="a neighbour")])
        assert [o.outcome for o in out] == ["rejected", "created"]
        assert "'beta'" in out[0].error and "64-bit key" in out[0].error
        assert [m.content for m in store.get("", ["alpha", "beta", "gamma"])] == [
            "first owner", "a neighbour"]


def test_the_wal_is_checkpointed_in_128_mib_steps_and_gone_after_close(tmp_path) -> None:
    data = tmp_path / "data"
    with Store(data) as store:
        store.remember_many("default", [MemoryRecord(id=f"m{i}", content=f"memory {i}")
                                        for i in range(100)])
        conn = store._writer._conn  # idle now: read its settings
        pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        assert (pages * page_size, page_size) == (st.WAL_CHECKPOINT_BYTES, st.PAGE_SIZE)
        assert (data / f"{st.DB_NAME}-wal").exists()
    assert not (data / f"{st.DB_NAME}-wal").exists()
    with Store(data) as store:
        assert store.stats("default")["total_memories"] == 100


def test_a_writer_quiet_after_a_burst_copies_the_wal_into_the_database(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Far below WAL_CHECKPOINT_BYTES: without the idle checkpoint the database file alone
    # holds none of these memories until the server stops.
    monkeypatch.setattr(writer, "IDLE_CHECKPOINT_S", 0.3)
    data, alone = tmp_path / "data", tmp_path / "alone"
    alone.mkdir()
    quiet = Settings().replace({"embedding_model": "none", "consolidation_interval_s": 0.0})
    with Store(data, quiet) as store:
        store.remember_many("default", [MemoryRecord(id=f"m{i}", content=f"memory {i}")
                                        for i in range(writer.IDLE_CHECKPOINT_ROWS)])
        deadline = time.monotonic() + 10
        while store.stats()["idle_checkpoints"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.copyfile(data / st.DB_NAME, alone / st.DB_NAME)  # not its WAL
        with contextlib.closing(sqlite3.connect(alone / st.DB_NAME)) as conn:
            assert conn.execute("SELECT count(*) FROM memories").fetchone()[0] \
                == writer.IDLE_CHECKPOINT_ROWS
        # A trickle (the access times recalls write) waits for the WAL's own limit.
        time.sleep(1.0)  # the full-text index's merge steps, if any
        done = store.stats()["idle_checkpoints"]
        store.remember_many("default", [MemoryRecord(id="late", content="one more")])
        time.sleep(1.0)
        assert store.stats()["idle_checkpoints"] == done
