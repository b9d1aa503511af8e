"""The full-text index's word counts taken in one pass (engine/vocab.py): a cue word's
count from the snapshot is its count in the index, whatever the stemmer makes of it, and
the memories written since the snapshot are counted too."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram_cli.engine import vocab
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.rows import Lookup
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store
from engram_cli.engine.text import DF_CAP, TextSeeder, cue_terms, quote
from engram_cli.engine.vocab import Vocabulary
from tests.import_support import wait_for

# Forms the porter stemmer folds together (and some it does not), accents, capitals,
# digits, scripts without spaces: each is a cue word whose count must come out right.
WORDS = [
    "run", "running", "runs", "runner", "generalization", "generalizations", "general",
    "caresses", "caress", "ponies", "pony", "relational", "relate", "Café", "cafe",
    "naïve", "naive", "Élan", "ÉTÉ", "x86", "2026", "ﬁle", "file", "Ωmega", "日本語",
    "straße", "strasse", "don", "t", "o'clock", "connected", "connection", "connects",
]


def exact(conn: sqlite3.Connection, word: str) -> int:
    return conn.execute("SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?",
                        (quote(word),)).fetchone()[0]


def lexical_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data", Settings().replace({"embedding_model": "none",
                                                        "consolidation_interval_s": 0.0}))


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(WORDS))]
    return [" ".join([*rng.choices(WORDS, weights, k=rng.randint(1, 8)), f"n{seed}x{i}"])
            for i in range(n)]


@contextlib.contextmanager
def vocabulary_of(tmp_path: Path, n: int, seed: int
                  ) -> Iterator[tuple[Store, Vocabulary, sqlite3.Connection]]:
    """A store of `n` texts and a vocabulary of its own over it (any size counts)."""
    store = lexical_store(tmp_path)
    v = Vocabulary(lambda: sqlite3.connect(store.path), lambda: 0, store._top_rowid)
    try:
        store.remember_many("default", [MemoryRecord(id="", content=t)
                                        for t in texts(n, seed)])
        yield store, v, store._reader()
    finally:
        v.close()
        store.close()


def snapshot_of(v: Vocabulary, conn: sqlite3.Connection) -> vocab.Snapshot:
    top = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0]
    wait_for(lambda: (s := v.current(top)) is not None and s.top == top, timeout=30)
    snap = v.current(top)
    assert snap is not None
    return snap


def test_a_cue_word_counted_from_the_snapshot_is_its_count_in_the_index(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(vocab, "SMALL", 0)
    with vocabulary_of(tmp_path, 3_000, 1) as (_, v, conn):
        snap = snapshot_of(v, conn)
        n_docs = snap.top
        cue_words = cue_terms(" ".join(WORDS), limit=len(WORDS) * 2)
        stems = v.stems(cue_words)
        assert stems["running"] == stems["runs"] == "run"
        assert stems["café"] == stems["cafe"]
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        try:
            seeder = TextSeeder(lambda: 0, v)
            for w in cue_words:
                want = exact(conn, w)
                assert want > 0, w  # every word is in the corpus
                got = seeder.doc_freq(conn, w, DF_CAP, n_docs, snap, stems.get(w))
                assert got == want, w
            # All of them from the snapshot: nothing written since, nothing counted.
            assert not [sql for sql in seen if "count(*) FROM (SELECT" in sql], seen
        finally:
            conn.set_trace_callback(None)
        # Seeds by the snapshot's counts are the seeds by counting each word (a store
        # this small is counted exactly).
        for cue in ["running caresses", "Café naïve 2026", "generalization pony x86",
                    "connected strasse", "日本語 file", "o'clock"]:
            look = Lookup(conn, "default")
            by_count = TextSeeder(lambda: 0).seeds(look, cue, 32, float("inf"), 10)
            by_snap = TextSeeder(lambda: 0, v).seeds(Lookup(conn, "default"), cue, 32,
                                                     float("inf"), 10)
            assert by_snap == by_count, cue
            assert list(by_snap[0]) == list(by_count[0]), cue


def test_memories_written_after_the_snapshot_are_counted_and_growth_takes_another(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(vocab, "SMALL", 0)
    with vocabulary_of(tmp_path, 2_000, 2) as (store, v, conn):
        snap = snapshot_of(v, conn)
        # 40 more (2% growth: no new snapshot), with a word the snapshot never saw.
        later = [f"zeppelin {t}" for t in texts(40, 3)]
        store.remember_many("default", [MemoryRecord(id="", content=t) for t in later])
        n_docs = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0]
        assert v.current(n_docs) is snap
        for w in ["zeppelin", "running", "t", "ponies", "n3x7"]:
            stem = v.stems([w]).get(w)
            got = TextSeeder(lambda: 0, v).doc_freq(conn, w, DF_CAP, n_docs, snap, stem)
            if snap.tail_counted(n_docs, snap.count(stem or "")):
                assert got == exact(conn, w), w
            else:  # a common word: 40 more move it by less than a twentieth
                assert exact(conn, w) - 40 <= got <= exact(conn, w), w
        assert TextSeeder(lambda: 0, v).doc_freq(conn, "zeppelin", DF_CAP, n_docs, snap,
                                                 "zeppelin") == 40
        # Past a tenth more memories, the next look starts a new snapshot.
        store.remember_many("default", [MemoryRecord(id="", content=t)
                                        for t in texts(300, 4)])
        newer = snapshot_of(v, conn)
        assert newer.top > snap.top
        assert newer.count("zeppelin") == 40


def test_the_store_takes_a_snapshot_once_quiet_past_a_small_size(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(vocab, "SMALL", 500)
    store = lexical_store(tmp_path)
    try:
        v = store._recaller._text._vocab
        assert v is not None
        store.remember_many("default", [MemoryRecord(id="", content=t)
                                        for t in texts(400, 5)])
        store.recall("default", RecallQuery(text="running pony", limit=5))
        assert v._snapshot is None  # small: every word counted
        store.remember_many("default", [MemoryRecord(id="", content=t)
                                        for t in texts(400, 6)])
        # Taken once writes are quiet (the full-text index merged down), before any recall.
        wait_for(lambda: v._snapshot is not None, timeout=30)
        assert v._snapshot is not None and v._snapshot.top == 800
        by_snapshot = store.recall("default", RecallQuery(text="running pony", limit=5))
        store._recaller._text.clear()
        store._recaller._text._vocab = None
        by_count = store.recall("default", RecallQuery(text="running pony", limit=5))
        store._recaller._text._vocab = v
        assert [m.id for m in by_snapshot.memories] == [m.id for m in by_count.memories]
    finally:
        store.close()


@pytest.mark.parametrize("when", ["idle", "taking"])
def test_closing_stops_a_snapshot(tmp_path: Path, monkeypatch, when: str) -> None:
    monkeypatch.setattr(vocab, "SMALL", 0)
    store = lexical_store(tmp_path)
    try:
        store.remember_many("default", [MemoryRecord(id="", content=t)
                                        for t in texts(2_000, 7)])
        v = Vocabulary(lambda: sqlite3.connect(store.path), lambda: 0, store._top_rowid)
        if when == "taking":
            v.current(2_000)
        v.close()
        taking = v._taking.thread
        assert taking is None or not taking.is_alive()
        v.current(2_000)  # closed: no more snapshots
        assert v._taking.thread is taking
        assert v.stems(["running"]) == {}
    finally:
        store.close()
