"""Semantic memory in our server: the background indexer, vector and hybrid recall, what the
index must never return, dimensions, recovery after kill -9, and how it shows (--mode,
stats). Real stores and servers, the real default model (loaded offline from its wheel)."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from engram_cli.engine import indexer as indexer_module
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import DB_NAME, Store
from engram_cli.errors import InvalidArgument
from tests import import_support

CHALET = "We rented a chalet high in the Alps for the ski week"
NOTES = [
    CHALET,
    "The espresso machine leaks water onto the counter",
    "Tomatoes in the greenhouse are finally ripe",
    "Train timetable for the weekend trip to the coast",
]
# No word in common with CHALET (the full-text index drops none of "the", "in").
COTTAGE = "cottage Swiss mountains"


wait_for = functools.partial(import_support.wait_for, timeout=30.0)


def indexed(store: Store, n: int) -> bool:
    st = store.vector_stats()
    return st["indexed"] >= n and st["pending"] == 0


def put(store: Store, *texts: str, space: str = "default") -> list[str]:
    out = store.remember_many(space, [MemoryRecord(id="", content=t, confidence=0.9)
                                      for t in texts])
    return [o.memory_id for o in out]


def contents(store: Store, q: RecallQuery) -> list[str]:
    return [m.content for m in store.recall("default", q).memories]


def test_a_paraphrase_is_found_by_vector_and_hybrid_recall_not_by_words(store: Store) -> None:
    put(store, *NOTES)
    wait_for(lambda: indexed(store, len(NOTES)))
    assert store.vector_stats()["embedded"] == len(NOTES)
    assert contents(store, RecallQuery(text=COTTAGE, mode="vector", limit=1)) == [CHALET]
    assert contents(store, RecallQuery(text=COTTAGE, mode="hybrid", limit=1)) == [CHALET]
    assert CHALET not in contents(store, RecallQuery(text=COTTAGE, mode="lexical"))
    # A strong word match stays on top in hybrid mode.
    hybrid = contents(store, RecallQuery(text="espresso machine leaks water", limit=2))
    assert hybrid[0] == NOTES[1]


def test_long_texts_are_read_in_batches_bounded_in_characters(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log batch stops reading once its texts reach BATCH_CHARS (a memory may hold a
    megabyte, and batches are read ahead): here 5,000 characters, read 4 rows at a time,
    so 30 memories of about 1,100 characters take several batches, each cut within a text
    of the bound. Every memory is still embedded once, though this write logs each one
    twice and the second lands in a batch read before the first batch's vectors are
    stored; and each is found by its own text."""
    monkeypatch.setattr(indexer_module, "BATCH_CHARS", 5_000)
    monkeypatch.setattr(indexer_module, "_READ_CHUNK", 4)
    batches: list[tuple[int, int]] = []  # (characters, texts) of each batch read
    read = indexer_module.Indexer._read

    def spy(self: indexer_module.Indexer) -> object:
        batch = read(self)
        if batch is not None and batch.parts:
            batches.append((batch.chars, sum(len(part) for part, _ in batch.parts)))
        return batch

    monkeypatch.setattr(indexer_module.Indexer, "_read", spy)
    words = " ".join(NOTES).split()
    texts = [f"note {i}: " + " ".join(words[(i + j) % len(words)] for j in range(200))
             for i in range(30)]
    assert all(1_000 < len(t) < 1_300 for t in texts)
    ids = put(store, *texts)
    wait_for(lambda: indexed(store, len(texts)))
    assert store.vector_stats()["embedded"] == len(texts)
    assert sum(n for _, n in batches) == len(texts), batches
    assert len(batches) >= 5 and all(chars < 5_000 + 1_300 for chars, _ in batches)
    for i in (0, 17, 29):
        got = store.recall("default", RecallQuery(text=texts[i], mode="vector", limit=1))
        assert [m.id for m in got.memories] == [ids[i]]


def test_without_the_index_an_embedding_cue_scans_the_computed_vectors_within_budget(
        store: Store) -> None:
    """While the index opens (or when it cannot be used) an embedding cue is answered by a
    scan of the stored vectors: also those the server computed (the scan once read only
    memories' own vectors, and found nothing in a store of text), and within the deadline
    (it once read a whole million-memory space before looking at the clock)."""
    import sqlite3

    from engram_cli.engine.embedding import DEFAULT_MODEL, load_model
    from engram_cli.engine.recall import embedding_scan
    from engram_cli.engine.rows import Lookup

    put(store, *NOTES)
    wait_for(lambda: indexed(store, len(NOTES)))
    model = load_model(DEFAULT_MODEL)
    assert model is not None
    cue = RecallQuery(embedding=model.embed([COTTAGE])[0].tobytes(), limit=1)
    conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        content = dict(conn.execute("SELECT rowid, content FROM memories"))
        found, cut = embedding_scan(Lookup(conn, "default"), cue, 4, 1, time.perf_counter() + 30)
        assert not cut and found  # (those more than 0 similar)
        assert content[max(found, key=found.__getitem__)] == CHALET
        # A space of 12,000 memories' own vectors: a deadline already past stops the
        # statement inside its first steps.
        rng = np.random.default_rng(5)
        own = rng.normal(size=(12_000, 256)).astype(np.float32)
        store.remember_many("big", [MemoryRecord(id=f"v{i}", content=f"vector {i}",
                                                 confidence=0.9, embedding=v.tobytes())
                                    for i, v in enumerate(own)])
        near = RecallQuery(embedding=(own[777] + 0.1 * own[5]).tobytes(), limit=1)
        found, cut = embedding_scan(Lookup(conn, "big"), near, 4, 1, time.perf_counter() + 30)
        ids = dict(conn.execute("SELECT rowid, id FROM memories WHERE space = 'big'"))
        assert not cut and ids[max(found, key=found.__getitem__)] == "v777"
        started = time.perf_counter()
        found, cut = embedding_scan(Lookup(conn, "big"), near, 4, 1, started - 1.0)
        assert cut and not found and time.perf_counter() - started < 0.5
        # The deadline's check is gone with the scan: a long statement runs to its end.
        n = conn.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
                         "WHERE i < 200000) SELECT count(*) FROM c").fetchone()[0]
        assert n == 200_000
    finally:
        conn.close()


def test_forgotten_and_changed_memories_never_come_back_from_the_index(store: Store) -> None:
    chalet, espresso, tomatoes, _ = put(store, *NOTES)
    wait_for(lambda: indexed(store, len(NOTES)))
    cue = RecallQuery(text=COTTAGE, mode="vector", limit=10)
    store.forget("default", [chalet], "suppress")
    store.forget("default", [espresso], "delete")
    # Asked at once, before the indexer has seen the changes: SQLite decides.
    got = contents(store, cue)
    assert CHALET not in got and NOTES[1] not in got
    store.remember("default", MemoryRecord(id=tomatoes, content="Invoices are due on Friday",
                                           confidence=0.9))
    wait_for(lambda: store.vector_stats()["pending"] == 0)
    assert store.vector_stats()["indexed"] == 2
    greenhouse = contents(store, RecallQuery(text="ripe tomatoes greenhouse", mode="vector"))
    assert NOTES[2] not in greenhouse
    assert "Invoices are due on Friday" in contents(
        store, RecallQuery(text="bills to pay this week", mode="vector", limit=1))
    # Storing it again brings a suppressed memory back, into the index too.
    put(store, CHALET)
    wait_for(lambda: indexed(store, 3))
    assert contents(store, RecallQuery(text=COTTAGE, mode="vector", limit=1)) == [CHALET]


def test_a_change_the_index_has_not_taken_in_is_scored_from_sqlite(store: Store) -> None:
    """Recall takes the index's scores as they are only for memories whose changes it has
    taken in: with the indexer stopped behind an edit, the edited memory is scored from
    what SQLite holds (no vector yet), not from the vector of its old text."""
    chalet, *_ = put(store, *NOTES)
    wait_for(lambda: indexed(store, len(NOTES)))
    assert contents(store, RecallQuery(text=COTTAGE, mode="vector", limit=1)) == [CHALET]
    store.indexer.stop()
    store.remember("default", MemoryRecord(id=chalet, content="Invoices are due on Friday",
                                           confidence=0.9))
    conn = store._reader()
    rowid = conn.execute("SELECT rowid FROM memories WHERE id = ?", (chalet,)).fetchone()[0]
    assert store.indexer.unsettled(conn) == {rowid}
    for mode in ("vector", "hybrid"):
        got = store.recall("default", RecallQuery(text=COTTAGE, mode=mode, limit=10))
        assert chalet not in [m.id for m in got.memories], mode


def test_a_text_the_model_embeds_to_nothing_takes_its_old_vector_out_of_the_index(
        store: Store) -> None:
    """A model may give a text no vector (all zeros: no word it knows). A memory edited to
    such a text has none in SQLite, and the index must not keep the one of its old text,
    since recall takes the index's scores as they are once it has taken the edit in."""
    chalet, *_ = put(store, *NOTES)
    wait_for(lambda: indexed(store, len(NOTES)))
    model = store.indexer.model
    real = model.embed

    def embed(texts: list[str]) -> np.ndarray:
        vecs = np.array(real(texts), dtype=np.float32)
        vecs[["zzqx" in t for t in texts]] = 0.0
        return vecs

    model.embed = embed  # the model the indexer embeds with, as loaded
    store.remember("default", MemoryRecord(id=chalet, content="zzqx", confidence=0.9))
    wait_for(lambda: store.vector_stats()["pending"] == 0)
    assert store.vector_stats()["indexed"] == len(NOTES) - 1
    got = store.recall("default", RecallQuery(text=COTTAGE, mode="vector", limit=10))
    assert chalet not in [m.id for m in got.memories]


@pytest.mark.parametrize("its_log", ["ahead", "behind"])
def test_an_index_saved_with_another_database_is_rebuilt(tmp_path: Path, its_log: str
                                                         ) -> None:
    """The vector index is a cache of one database. Put beside another (another store's
    copied in, a store restored from another machine), its keys name other memories, and
    the log's next changes could be taken for ones it holds. The database's id, recorded
    where the index is saved, tells; so does a watermark past the store's log (an index
    saved before ids). Either way it is rebuilt from SQLite."""
    first, second = tmp_path / "first", tmp_path / "second"
    hut = "A wooden hut high in the Swiss Alps"
    # The copied index's log ahead of this store's, or behind it (the id alone tells).
    theirs, ours = ((NOTES, ["Invoices are due on Friday", hut]) if its_log == "ahead" else
                    (NOTES[1:3], ["Invoices are due on Friday", *NOTES[1:], hut]))
    with Store(first) as store:
        put(store, *theirs)
        wait_for(lambda: indexed(store, len(theirs)))
    with Store(second) as store:
        put(store, *ours)
        wait_for(lambda: indexed(store, len(ours)))
    shutil.rmtree(second / indexer_module.INDEX_DIR)
    shutil.copytree(first / indexer_module.INDEX_DIR, second / indexer_module.INDEX_DIR)
    with Store(second) as store:
        wait_for(lambda: store.indexer.ready.is_set() and store.vector_stats()["pending"] == 0)
        assert store.vector_stats()["indexed"] == len(ours)
        assert contents(store, RecallQuery(text=COTTAGE, mode="vector", limit=1)) == [hut]
        put(store, CHALET)  # the log's next change is taken in, not taken for one held
        wait_for(lambda: indexed(store, len(ours) + 1))
        assert contents(store, RecallQuery(text=CHALET, mode="vector", limit=1)) == [CHALET]
    # Its own index, saved and opened again: kept, not rebuilt.
    with Store(second) as store:
        wait_for(lambda: store.indexer.ready.is_set())
        assert store.indexer.index is not None and not store.indexer.index.rebuild_reason
        assert store.vector_stats()["indexed"] == len(ours) + 1


def test_a_memory_s_own_embedding_supersedes_the_vector_computed_for_its_text(
        tmp_path: Path) -> None:
    """A memory stored as text gets a computed vector; sent again with its own embedding
    (the same text), the computed one goes (the trigger, and migration 011 for a store
    that kept both), and a search by its own vector finds it at similarity 1."""
    data = tmp_path / "data"
    rng = np.random.default_rng(3)
    own = rng.standard_normal(256).astype(np.float32)
    with Store(data) as store:
        mid, other = put(store, CHALET, NOTES[1])
        wait_for(lambda: indexed(store, 2))
        conn = store._reader()
        rid = conn.execute("SELECT rowid FROM memories WHERE id = ?", (mid,)).fetchone()[0]
        assert conn.execute("SELECT count(*) FROM vectors WHERE rid = ?", (rid,)
                            ).fetchone()[0] == 1
        store.remember("default", MemoryRecord(id=mid, content=CHALET, confidence=0.9,
                                               embedding=own.tobytes()))
        assert conn.execute("SELECT count(*) FROM vectors WHERE rid = ?", (rid,)
                            ).fetchone()[0] == 0
        wait_for(lambda: store.vector_stats()["pending"] == 0)
        top = store.recall("default", RecallQuery(embedding=own.tobytes(), limit=1)).memories
        assert [m.id for m in top] == [mid] and abs(top[0].activation - 1.0) < 1e-5
    # A store an earlier version left with both: the migration drops the computed one.
    with sqlite3.connect(data / DB_NAME, isolation_level=None) as conn:
        orid = conn.execute("SELECT rowid FROM memories WHERE id = ?", (other,)).fetchone()[0]
        conn.execute("UPDATE memories SET embedding = ? WHERE rowid = ?",
                      (rng.standard_normal(256).astype(np.float32).tobytes(), orid))
        conn.execute("INSERT INTO vectors (rid, model, vec) VALUES (?, 'm', ?)",
                     (orid, np.ones(256, "<f2").tobytes()))
        conn.execute("DELETE FROM schema_migrations WHERE version = 11")
    with Store(data) as store:
        assert store.applied_migrations == ["011_own_vectors_supersede"]
        assert store._reader().execute("SELECT count(*) FROM vectors WHERE rid = ?",
                                       (orid,)).fetchone()[0] == 0


def test_an_embedding_cue_goes_through_the_index_and_its_dimension_is_checked(
        store: Store) -> None:
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((50, 8)).astype(np.float32)
    store.remember_many("vecs", [MemoryRecord(id=f"v{i}", content="", confidence=0.9,
                                              embedding=vecs[i].tobytes())
                                 for i in range(50)])
    wait_for(lambda: store.vector_stats()["indexed"] >= 50)
    cue = vecs[17] + 0.01 * rng.standard_normal(8).astype(np.float32)
    top = store.recall("vecs", RecallQuery(embedding=cue.tobytes(), limit=1)).memories
    assert [m.id for m in top] == ["v17"]
    with pytest.raises(InvalidArgument) as err:
        store.recall("vecs", RecallQuery(embedding=np.ones(3, np.float32).tobytes()))
    assert "3" in str(err.value) and "8" in str(err.value)


def test_an_unknown_mode_is_refused(store: Store) -> None:
    with pytest.raises(InvalidArgument):
        store.recall("default", RecallQuery(text="x", mode="fuzzy"))


_WRITER = textwrap.dedent("""
    import sys, time
    from engram_cli.engine.model import MemoryRecord
    from engram_cli.engine.store import Store
    store = Store(sys.argv[1])
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    for b in range(40):
        store.remember_many("default", [MemoryRecord(
            id=f"m{b}-{i}", content=f"note {b} {i} " + " ".join(words[(b + i) % 12:]),
            confidence=0.9) for i in range(100)])
    print("written", flush=True)
    time.sleep(60)
""")


def test_after_kill9_the_index_catches_up_and_counts_match(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(data)],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        time.sleep(1.0)  # the indexer is somewhere in the middle, or done
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    store = Store(data)
    try:
        wait_for(lambda: indexed(store, 4000), timeout=60)
        assert store.vector_stats()["indexed"] == store.stats()["total_memories"] == 4000
    finally:
        store.close()


_FRESH_WRITER = textwrap.dedent("""
    import sys, time
    from engram_cli.engine import indexer
    from engram_cli.engine.model import MemoryRecord
    from engram_cli.engine.store import Store
    store = Store(sys.argv[1])
    def put(a, b):
        store.remember_many("default", [MemoryRecord(id=f"m{i}", content=f"note {i} about " + (
            "ski chalets" if i == 207 else "garden tomatoes"), confidence=0.9)
            for i in range(a, b)])
    def until(done):
        while not done(store.vector_stats()):
            time.sleep(0.05)
    put(0, 150)  # indexed, merged into the index and saved
    until(lambda st: st["indexed"] == 150 and not st["pending"] and not st["fresh"])
    store.indexer._save()
    indexer.MERGE_ABOVE = 10**9  # from now on the merger leaves everything fresh
    put(150, 300)
    until(lambda st: not st["pending"] and st["fresh"] == 150)
    store.indexer._save()  # what the indexer does every few seconds
    print(store.vector_stats()["fresh"], store.indexer.index.watermark, flush=True)
    time.sleep(60)
""")


def test_kill9_with_vectors_in_the_fresh_segment_recovers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", _FRESH_WRITER, str(data)],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        fresh, watermark = map(int, proc.stdout.readline().split())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert fresh == 150 and watermark > 0  # the save stopped before the fresh vectors
    store = Store(data, Settings().replace({"consolidation_interval_s": 0.0}))
    try:
        wait_for(lambda: indexed(store, 300) and store.vector_stats()["fresh"] == 0,
                 timeout=60)
        ix = store.indexer.index
        assert ix is not None and ix.rebuild_reason == ""
        assert store.vector_stats()["indexed"] == 300
        got = store.recall("default", RecallQuery(text="alpine ski chalet", mode="vector",
                                                  limit=1)).memories
        assert [m.id for m in got] == ["m207"]
    finally:
        store.close()


def test_recall_mode_and_stats_through_the_cli(engram: Callable[..., object],
                                               server: object) -> None:
    from engram_cli.client.api import EngramClient  # noqa: F401  (server is ours)

    records = "\n".join(orjson.dumps({"content": t, "confidence": 0.95}).decode()
                        for t in NOTES)
    imported = engram("import", "-", "--format", "jsonl", "--quiet", input=records)
    assert imported.exit_code == 0, imported.output

    def stats() -> dict:
        result = engram("stats", "--json")
        assert result.exit_code == 0, result.output
        return orjson.loads(result.stdout)

    wait_for(lambda: stats()["vector_index"]["indexed"] == len(NOTES))
    vi = stats()["vector_index"]
    assert vi["model"] == "wordllama-l2-supercat-256" and vi["dim"] == 256
    assert vi["pending"] == 0 and vi["bytes"] > 0

    def top(mode: str) -> list[str]:
        result = engram("recall", COTTAGE, "--mode", mode, "--format", "json", "--no-cache")
        assert result.exit_code == 0, result.output
        return [r["content"] for r in orjson.loads(result.stdout)["results"]]

    assert top("vector")[0] == CHALET
    assert CHALET not in top("lexical")
    bad = engram("recall", COTTAGE, "--mode", "fuzzy")
    assert bad.exit_code == 2 and "--mode" in bad.output


def test_an_answer_from_a_lagging_index_says_so_and_is_not_cached(
        engram: Callable[..., object], server: object) -> None:
    indexer = server.store.indexer  # type: ignore[attr-defined]
    wait_for(indexer.ready.is_set)
    # Only the index's lag may make these answers partial: a 50 ms budget can run out on
    # a loaded CI machine.
    assert engram("tune", "--set", "recall_budget_ms=5000").exit_code == 0
    indexer._step = lambda: False  # the index stops taking in changes: it lags
    records = "\n".join(orjson.dumps({"content": t, "confidence": 0.95}).decode()
                        for t in NOTES)
    assert engram("import", "-", "--format", "jsonl", "--quiet", input=records).exit_code == 0
    assert engram("consolidate").exit_code == 0

    def recall(*extra: str) -> dict:
        result = engram("recall", "espresso machine", "--format", "json", *extra)
        assert result.exit_code == 0, result.output
        return orjson.loads(result.stdout)

    lagging = recall()
    assert "vector index is still taking in about 4 changes" in lagging["partial"]
    assert lagging["cache"]["stored"] is False
    assert "may be incomplete" in lagging["cache"]["reason"]
    assert recall()["cached"] is False
    # Lexical recall does not use the index: complete, and cached.
    assert "partial" not in recall("--mode", "lexical")
    assert recall("--mode", "lexical")["cached"] is True

    del indexer._step  # the index catches up; --wait-indexed waits for it
    again = engram("import", "-", "--format", "jsonl", "--quiet", "--wait-indexed", "30",
                   input=records)
    assert again.exit_code == 0, again.output
    assert server.store.vector_stats()["pending"] == 0  # type: ignore[attr-defined]
    complete = recall()
    assert "partial" not in complete and complete["cache"] == {"stored": True}
    assert recall()["cached"] is True


def _flood(store: Store, seconds: float) -> tuple[float, float, int]:
    """Write 25 memories (own 8-d vectors) every 20 ms for `seconds`: about 1,250 a
    second, far above the FLOOD_RATE the caller set. Answers when it began and ended, and
    how many it wrote."""
    rng = np.random.default_rng(7)
    began, i = time.monotonic(), 0
    while time.monotonic() - began < seconds:
        vecs = rng.standard_normal((25, 8)).astype(np.float32)
        store.remember_many("default", [
            MemoryRecord(id=f"m{i + j}", content=f"note {i + j}",
                         embedding=v.tobytes()) for j, v in enumerate(vecs)])
        i += 25
        time.sleep(0.02)
    return began, time.monotonic(), i


@pytest.fixture
def batches_read(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When the indexer read each batch of the log (only tests lower FLOOD_RATE)."""
    monkeypatch.setattr(indexer_module, "FLOOD_RATE", 200)
    read, times = indexer_module.Indexer._read, []

    def spy(self: indexer_module.Indexer) -> object:
        batch = read(self)
        if batch is not None:
            times.append(time.monotonic())
        return batch

    monkeypatch.setattr(indexer_module.Indexer, "_read", spy)
    return times


def test_the_indexer_waits_out_a_flood_of_writes_then_catches_up(
        tmp_path: Path, batches_read: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    """While clients write faster than FLOOD_RATE (an import), the indexer reads no further
    into the log: embedding, training and indexing leave the machine to the write path.
    Once the writes stop it catches up with all of them."""
    monkeypatch.setattr(indexer_module, "FLOOD_MAX_S", 60.0)  # no batch now and then here
    settings = Settings().replace({"embedding_model": "none"})
    with Store(tmp_path / "data", settings) as store:
        wait_for(store.indexer.ready.is_set)
        began, ended, n = _flood(store, 4.0)
        during = [t for t in batches_read if began + 1.5 < t < ended]
        assert not during, f"{len(during)} batches read during the flood"
        assert store.vector_stats()["pending"] > 0
        wait_for(lambda: indexed(store, n))
        assert batches_read[-1] > ended


def test_under_a_flood_that_does_not_end_the_indexer_still_reads_now_and_then(
        tmp_path: Path, batches_read: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexer_module, "FLOOD_MAX_S", 1.0)
    settings = Settings().replace({"embedding_model": "none"})
    with Store(tmp_path / "data", settings) as store:
        wait_for(store.indexer.ready.is_set)
        began, ended, _ = _flood(store, 5.0)
        during = [t for t in batches_read if began + 1.5 < t < ended]
        assert 2 <= len(during) <= 5, during  # one a second, give or take a check
