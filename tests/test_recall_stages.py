"""Recall's stages made cheaper must answer as before: the vector candidates' re-scoring
(one matrix product, not numpy calls per row) and the text seeds' scoring and ordering
(numpy, not Python loops) against the row-by-row computations they replaced, and one read
transaction per recall that is always closed again."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engram_cli.engine import forgetting, text
from engram_cli.engine.activation import neighbours, spread
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery, read_snapshot
from engram_cli.engine.rows import Lookup, similarities
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import DB_NAME, Store
from engram_cli.engine.text import DF_CAP, TextSeeder, best_first, summed
from tests.import_support import wait_for

TEXTS = [
    "We rented a chalet high in the Alps for the ski week",
    "The espresso machine leaks water onto the counter",
    "Tomatoes in the greenhouse are finally ripe",
    "Train timetable for the weekend trip to the coast",
    "A cottage in the Swiss mountains with a view of the lake",
    "The lighthouse keeper wrote down every passing ship",
]


def row_by_row(conn: sqlite3.Connection, space: str, rids: list[int], cue: np.ndarray,
               floor: float) -> dict[int, float]:
    """The re-scoring as it was: each candidate's vector decoded and compared alone."""
    out = {}
    for rid, own, computed in conn.execute(
            "SELECT m.rowid, m.embedding, v.vec FROM memories m LEFT JOIN vectors v "
            "ON v.rid = m.rowid WHERE m.space = ? AND m.suppressed = 0", (space,)):
        if rid not in rids:
            continue
        if own:
            vec = np.frombuffer(own, dtype=np.float32)
        elif computed:
            vec = np.frombuffer(computed, dtype="<f2").astype(np.float32)
        else:
            continue
        if len(vec) != len(cue):
            continue
        norm = float(np.linalg.norm(vec))
        sim = float(vec @ cue) / norm if norm else 0.0
        if sim > floor:
            out[rid] = sim
    return out


def rowids(conn: sqlite3.Connection, space: str) -> list[int]:
    return [r for (r,) in conn.execute(
        "SELECT rowid FROM memories WHERE space = ? ORDER BY rowid", (space,))]


def test_rescoring_matches_the_row_by_row_computation(store: Store) -> None:
    # The server's model's vectors (float16 in the vectors table) in one space...
    store.remember_many("default", [MemoryRecord(id="", content=t) for t in TEXTS])
    # ...the client's own float32 vectors in another, one of them all zeros.
    rng = np.random.default_rng(3)
    own = rng.standard_normal((40, 8)).astype(np.float32)
    own[7] = 0.0
    store.remember_many("mine", [MemoryRecord(id="", content=f"note {i}",
                                              embedding=v.tobytes())
                                 for i, v in enumerate(own)])
    wait_for(lambda: store.indexer.pending() == 0 and store.vector_stats()["indexed"]
             >= len(TEXTS) + len(own), timeout=60.0)
    suppressed = store.remember("mine", MemoryRecord(id="", content="gone",
                                                     embedding=own[3].tobytes())).memory_id
    store.forget("mine", [suppressed], "suppress")
    conn = store._reader()
    cue = store.indexer.embed_cue("a cottage in the Swiss mountains")
    rids = rowids(conn, "default")
    for floor in (-1.0, 0.0, 0.2):
        got = similarities(conn, "default", rids, cue, floor)
        want = row_by_row(conn, "default", rids, cue, floor)
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    rids = rowids(conn, "mine")
    assert len(rids) == len(own) + 1
    q = rng.standard_normal(8).astype(np.float32)
    q /= np.linalg.norm(q)
    for floor in (-1.0, 0.0, 0.3):
        got = similarities(conn, "mine", rids, q, floor)
        want = row_by_row(conn, "mine", rids, q, floor)
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # Not in this space, or of another size: left out.
    assert similarities(conn, "default", rids, cue, -1.0) == {}
    assert similarities(conn, "mine", rids, cue, -1.0) == {}


def test_a_recall_reads_one_snapshot_and_closes_it(store: Store) -> None:
    store.remember_many("default", [MemoryRecord(id="", content=t) for t in TEXTS])
    wait_for(lambda: store.indexer.pending() == 0, timeout=60.0)
    # A recall inside a lease runs on the leased connection.
    with store._readers.lease() as conn:
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        try:
            hybrid = store.recall("default", RecallQuery(text="cottage Swiss mountains", limit=3,
                                                         spread=True, max_hops=3))
        finally:
            conn.set_trace_callback(None)
        assert hybrid.memories
        assert not conn.in_transaction
        # Every statement of the recall inside one BEGIN ... COMMIT.
        assert seen[0] == "BEGIN" and seen[-1] == "COMMIT", seen
        assert seen.count("BEGIN") == 1
        # A recall inside a transaction of the caller's leaves it open, and answers the same.
        with read_snapshot(conn):
            again = store.recall("default", RecallQuery(text="cottage Swiss mountains", limit=3,
                                                        spread=True, max_hops=3))
            assert conn.in_transaction
        assert not conn.in_transaction
        assert [m.id for m in again.memories] == [m.id for m in hybrid.memories]


def test_text_scores_are_the_sums_and_the_order_of_the_python_loops() -> None:
    rng = np.random.default_rng(5)
    # Weights as IDFs are: a few distinct values, so many memories tie.
    weights = [float(np.log(1 + 100_000 / df)) for df in (3, 40, 40, 700, 1_400)]
    postings = [np.unique(rng.integers(1, 5_000, size=n)) for n in (3, 40, 40, 700, 1_400)]
    looped: dict[int, float] = {}
    for rows, w in zip(postings, weights, strict=True):
        for rowid in rows.tolist():
            looped[rowid] = looped.get(rowid, 0.0) + w
    got = summed(postings, weights)
    assert got == looped  # the same floats, not only close ones
    assert best_first(got) == sorted(looped.items(), key=lambda kv: (-kv[1], -kv[0]))
    assert summed([], []) == {} and best_first({}) == []
    assert summed([np.zeros(0, dtype=np.int64)], [1.0]) == {}


def test_postings_read_as_one_string_are_the_rowids_row_by_row(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "p.db")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(c, detail=none)")
    # Rowids past 2**53 too: parsed as integers, not through floats.
    big = [1, 7, 2**53 + 1, 2**62 + 3, 9_223_372_036_854_775_807]
    conn.executemany("INSERT INTO f (rowid, c) VALUES (?, ?)",
                     [(r, "alpha beta" if r % 3 else "alpha") for r in big])
    for word in ("alpha", "beta", "gamma"):
        got = text.rowids(conn, "SELECT group_concat(rowid) FROM f WHERE f MATCH ?", (word,))
        assert got.dtype == np.int64
        assert sorted(got.tolist()) == sorted(
            r for (r,) in conn.execute("SELECT rowid FROM f WHERE f MATCH ?", (word,)))
    assert text.rowids(conn, "SELECT group_concat(rowid) FROM f WHERE f MATCH ?",
                       ("gamma",)).tolist() == []
    conn.close()


def test_the_head_of_the_text_order_is_the_start_of_the_whole_order() -> None:
    rng = np.random.default_rng(11)
    for n, distinct in ((50, 3), (2_000, 4), (2_000, 400), (5_000, 2)):
        keys = rng.choice(1_000_000, n, replace=False).tolist()
        scores = dict(zip(keys, rng.choice(distinct, n).astype(float).tolist(), strict=True))
        whole = best_first(scores)
        for most in (1, 7, 40, 368, n - 1, n, n + 5):
            assert best_first(scores, most) == whole[:most], (n, distinct, most)


def in_space_as_before(conn: sqlite3.Connection, space: str, scores: dict[int, float],
                       want: int) -> dict[int, float]:
    """The seed cut over the whole order, sorted at once, from the memories' rows."""
    ranked = best_first(scores)
    found: list[tuple[float, float, int, int]] = []
    cut: float | None = None
    step = want + max(8, want // 4)
    for i in range(0, len(ranked), step):
        chunk = ranked[i : i + step]
        if cut is not None and (chunk[0][1] < cut or len(found) >= want + text.TIE_BREAK_EXTRA):
            break
        visible = {r: (c, m) for r, c, m in conn.execute(
            f"SELECT rowid, confidence, key FROM memories WHERE rowid IN "
            f"({','.join('?' * len(chunk))}) AND space = ? AND suppressed = 0",
            (*[r for r, _ in chunk], space))}
        for rowid, sc in chunk:
            if cut is not None and sc < cut:
                break
            if rowid in visible:
                found.append((sc, *visible[rowid], rowid))
                if cut is None and len(found) >= want:
                    cut = sc
    found.sort(key=lambda f: (-f[0], -f[1], f[2]))
    return {rowid: sc for sc, _, _, rowid in found[:want]}


@pytest.fixture
def two_spaces(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, list[int]]]:
    """A reader of 3,000 memories, and their rowids: 500 of "other", then 2,500 of
    "default" of which two thirds are suppressed, here and there; confidences all differ."""
    store = lexical_store(tmp_path)
    try:
        rng = np.random.default_rng(3)
        confidence = rng.uniform(0.05, 1.0, 3_000).tolist()
        for space, numbers in (("other", range(500)), ("default", range(500, 3_000))):
            store.remember_many(space, [MemoryRecord(id=f"m{i}", content=f"w{i}",
                                                     confidence=confidence[i])
                                        for i in numbers])
        gone = [f"m{i}" for i in range(500, 3_000) if rng.random() < 2 / 3]
        assert store.forget("default", gone, "suppress") == len(gone)
        conn = store._reader()
        rowids = [r for (r,) in conn.execute("SELECT rowid FROM memories")]
        assert len(rowids) == 3_000
        yield conn, rowids
    finally:
        store.close()


def test_the_seed_cut_reads_past_the_head_of_the_order_when_most_of_it_is_hidden(
        two_spaces: tuple[sqlite3.Connection, list[int]]) -> None:
    # The best scored are hidden far past the head of the order the cut reads first, and
    # a tied memory the cut failed to read would change its answer.
    conn, rowids = two_spaces
    rng = np.random.default_rng(3)
    for distinct in (1, 3, 12, 3_000):  # ties everywhere .. none
        scores = dict(zip(rowids, rng.integers(0, distinct, len(rowids)).astype(float)
                          .tolist(), strict=True))
        for want in (10, 32, 100):
            got = TextSeeder._in_space(Lookup(conn, "default"), scores, want)
            assert got == in_space_as_before(conn, "default", scores, want), (distinct, want)
            assert len(got) == want


def test_ties_at_the_seed_cut_go_to_the_memories_closest_to_the_cues_vector(
        two_spaces: tuple[sqlite3.Connection, list[int]]) -> None:
    conn, rowids = two_spaces
    # The cue's vector scores most memories (the others are not in the index yet), a few
    # of them alike.
    rng = np.random.default_rng(7)
    held = [r for r in rowids if rng.random() < 0.9]
    near = dict(zip(held, rng.integers(-50, 50, len(held)).astype(float) / 50, strict=True))
    asked: list[int] = []

    def similarity(rids: list[int]) -> dict[int, float]:
        asked.extend(rids)
        return {r: near[r] for r in rids if r in near}

    for space in ("default", "other"):  # "other": the newest 2,500 are not its own
        standing = {r: (c, k) for r, c, k in conn.execute(
            "SELECT rowid, confidence, key FROM memories WHERE space = ? "
            "AND suppressed = 0", (space,))}
        for distinct in (1, 3, 12, 3_000):  # ties everywhere .. none
            scores = dict(zip(rowids, rng.integers(0, distinct, len(rowids))
                              .astype(float).tolist(), strict=True))
            for want in (10, 32, 100):
                case = (space, distinct, want)
                look = Lookup(conn, space)
                look.similarity = similarity
                asked.clear()
                got = TextSeeder._in_space(look, scores, want)
                # What the rule says: every visible memory above the want-th's score;
                # of those tied with it, the closest to the cue's vector among the
                # newest TIE_SCORED, by confidence and key where equally close; then
                # the others by confidence and key, of at most TIE_BREAK_EXTRA of
                # them past the cut, the newest.
                ranked = sorted(standing, key=scores.__getitem__, reverse=True)
                cut = scores[ranked[want - 1]]
                above = [r for r in ranked if scores[r] > cut]
                need = want - len(above)
                tied = sorted((r for r in scores if scores[r] == cut), reverse=True)
                newest = tied[:text.TIE_SCORED]
                sim = {r: near[r] for r in newest if r in near}
                closest = sorted((r for r in tied if r in standing and r in sim),
                                 key=lambda r: (-sim[r], -standing[r][0], standing[r][1]))
                rest = [r for r in tied if r in standing and r not in sim]
                assert len(got) == want and set(above) <= set(got), case
                assert set(got) <= set(above + closest + rest), case
                if len(closest) >= need or len(rest) <= text.TIE_BREAK_EXTRA:
                    rest.sort(key=lambda r: (-standing[r][0], standing[r][1]))
                    expected = above + (closest + rest)[:need]
                    assert got == {r: scores[r] for r in expected}, case
                else:  # the closest, then the newest of the rest as they stand
                    assert set(closest) <= set(got), case
                # Only the newest tied memories' vectors were asked for, and only when
                # some of them had to be left out.
                assert set(asked) <= set(newest), case
                assert bool(asked) == (len(tied) > need), case
                if space == "default":  # no more looked up than the cut by confidence
                    plain = Lookup(conn, space)
                    TextSeeder._in_space(plain, scores, want)
                    assert len(look._known) <= len(plain._known), case
                    if distinct == 1 and want == 10:  # that read 256 past the cut
                        assert len(look._known) < len(plain._known) / 3, case


def test_of_many_equal_word_matches_a_hybrid_recall_seeds_the_closest_in_meaning(
        store: Store) -> None:
    # 300 memories share the cue's one word. The oldest three are about a cat, a little less
    # confident than the rest; the cue's other word is in none of them. The cut takes 32
    # of the 300 as word matches: by confidence alone, none of the cat's.
    cat = ["zebra log: the cat naps on the warm sofa", "zebra log: our kitty chased a mouse",
           "zebra log: fed the cats their tuna"]
    rest = [f"zebra log: invoice {i} for the quarterly tax filing" for i in range(297)]
    store.remember_many("default", [MemoryRecord(id=f"cat{i}", content=t, confidence=0.85)
                                    for i, t in enumerate(cat)])
    store.remember_many("default", [MemoryRecord(id=f"tax{i}", content=t, confidence=0.9)
                                    for i, t in enumerate(rest)])
    wait_for(lambda: store.indexer.pending() == 0
             and store.vector_stats()["indexed"] == 300, timeout=60.0)
    got = store.recall("default", RecallQuery(text="zebra kitten", limit=3, spread=False,
                                              trace=True))
    # Both indexes proposed them: first in the answer, a word match close in meaning.
    assert {t.memory_id: t.seed for t in got.traces} == {f"cat{i}": "both" for i in range(3)}
    lexical = store.recall("default", RecallQuery(text="zebra kitten", limit=32, spread=False,
                                                  mode="lexical"))
    assert len(lexical.memories) == 32
    assert not {m.id for m in lexical.memories} & {f"cat{i}" for i in range(3)}


def lexical_store(tmp_path: Path) -> Store:
    """A store without an embedding model or background consolidation."""
    return Store(tmp_path / "data", Settings().replace({"embedding_model": "none",
                                                        "consolidation_interval_s": 0.0}))


class Uncapped(TextSeeder):
    """Every word counted to the end, as before words were counted up to the stop line."""

    def doc_freq(self, conn: sqlite3.Connection, term: str, most: int = DF_CAP,
                 n_docs: int = 0, *args: object) -> int:
        return super().doc_freq(conn, term)


def test_words_counted_only_up_to_the_stop_line_seed_as_fully_counted_ones(
        tmp_path: Path) -> None:
    store = lexical_store(tmp_path)
    try:
        # 2,500 memories: "alpha" in 1,100 and "beta" in 1,110 (both above the stop line
        # of 1,000; ten hold both), "gamma" in 500, "delta" in 68; confidences vary. Which
        # of alpha and beta weighs more decides which memories follow the ten.
        recs = []
        for i in range(2_500):
            words = [f"w{i}"]
            words += ["alpha"] if i < 1_100 else []
            words += ["beta"] if 1_090 <= i < 2_200 else []
            words += ["gamma"] if i % 5 == 0 else []
            words += ["delta"] if i % 37 == 0 else []
            recs.append(MemoryRecord(id="", content=" ".join(words),
                                     confidence=0.5 + (i % 7) / 20))
        store.remember_many("default", recs)
        conn = store._reader()
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        try:
            capped = TextSeeder(lambda: 0)
            assert capped.doc_freq(conn, "alpha", 1_000) == 1_001  # "more than 1,000"
            assert capped.doc_freq(conn, "alpha") == 1_100  # counted again, to the end
            counts = [sql for sql in seen if sql.startswith("SELECT count(*)")]
            assert len(counts) == 2
            assert capped.doc_freq(conn, "alpha", 1_000) == 1_001  # from the cache
            assert capped.doc_freq(conn, "delta", 1_000) == 68
            assert capped.doc_freq(conn, "delta") == 68  # exact already: not counted again
            assert len([sql for sql in seen if sql.startswith("SELECT count(*)")]) == 3
        finally:
            conn.set_trace_callback(None)
        cues = ["alpha beta", "alpha", "beta gamma", "alpha beta gamma delta", "gamma",
                "alpha delta", "beta w7", "nothing here"]
        for cue in cues:
            full = Uncapped(lambda: 0)
            fresh = TextSeeder(lambda: 0)
            want = fresh.seeds(Lookup(conn, "default"), cue, 32, float("inf"), 10)
            got = full.seeds(Lookup(conn, "default"), cue, 32, float("inf"), 10)
            assert want == got, cue
            assert list(want[0]) == list(got[0]), cue
    finally:
        store.close()


def test_in_a_large_store_common_words_are_counted_from_the_newest_memories(
        tmp_path: Path, monkeypatch) -> None:
    # The sample lowered to 1,000 of 6,000 memories, as 16,384 of a million.
    monkeypatch.setattr(text, "SAMPLE_SPAN", 1_000)
    store = lexical_store(tmp_path)
    try:
        # "even" in every 4th memory (1,500), "old" in the first 2,000 only, "rare" in
        # every 100th (60), "often" in every 2nd (3,000). Counted up to 2,000 below.
        recs = []
        for i in range(6_000):
            words = [f"w{i}"]
            words += ["even"] if i % 4 == 0 else []
            words += ["old"] if i < 2_000 else []
            words += ["rare"] if i % 100 == 0 else []
            words += ["often"] if i % 2 == 0 else []
            recs.append(MemoryRecord(id="", content=" ".join(words)))
        store.remember_many("default", recs)
        conn = store._reader()
        n_docs = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0]
        assert n_docs == 6_000
        seen: list[str] = []
        conn.set_trace_callback(
            lambda sql: seen.append(sql) if sql.startswith("SELECT count(*)") else None)
        try:
            seeder = TextSeeder(lambda: 0)
            # 250 of the newest 1,000 hold it: an estimate, read from those alone.
            assert seeder.doc_freq(conn, "even", 2_000, n_docs) == 1_500
            assert len(seen) == 1 and "rowid > 5000" in seen[0], seen
            # More than 2,000 x 1,000 / 6,000 in the sample: "more than 2,000", having
            # read at most 334 of its postings.
            assert seeder.doc_freq(conn, "often", 2_000, n_docs) == 2_001
            assert "LIMIT 334" in seen[-1], seen[-1]
            # Too few in the sample to stand for the whole: counted, exactly.
            assert seeder.doc_freq(conn, "rare", 2_000, n_docs) == 60
            assert seeder.doc_freq(conn, "old", 2_000, n_docs) == 2_000
            assert "rowid >" not in seen[-1] and len(seen) == 6
            # Without the store's size (or at most SAMPLE_SPAN memories): counted.
            assert TextSeeder(lambda: 0).doc_freq(conn, "even", 2_000) == 1_500
            assert "rowid >" not in seen[-1]
        finally:
            conn.set_trace_callback(None)
        # Seeds by the estimates: "even" (1,500) is past this store's stop line (1,000) and
        # left out beside a rarer word, so the 60 holding "rare" are all the seeds.
        seeds, _ = TextSeeder(lambda: 0).seeds(Lookup(conn, "default"), "rare even", 64,
                                               float("inf"), 10)
        number = {rid: int(content.split()[0][1:]) for rid, content in conn.execute(
            "SELECT rowid, content FROM memories")}
        assert {number[r] for r in seeds} == set(range(0, 6_000, 100))
    finally:
        store.close()


def test_common_words_are_read_together_only_the_rarest_few(tmp_path: Path,
                                                             monkeypatch) -> None:
    # At this size no word is common (more than RARE_DF memories, fewer than the stop
    # line): lowered, the six words below are, as such words are at a million.
    monkeypatch.setattr(text, "RARE_DF", 50)
    store = lexical_store(tmp_path)
    try:
        # word ck is in the memories whose number i has i % (k + 1) == 0: c6 is the rarest
        # (357 memories), c1 (1,250) is past the stop line; every 420th holds c2 to c6.
        words = [f"c{k}" for k in range(1, 7)]
        recs = [MemoryRecord(id=f"m{i}", content=" ".join(
            [f"w{i}"] + [w for k, w in enumerate(words, 1) if i % (k + 1) == 0]))
            for i in range(2_500)]
        store.remember_many("default", recs)
        conn = store._reader()
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        try:
            seeds, cut = TextSeeder(lambda: 0).seeds(Lookup(conn, "default"), " ".join(words),
                                                     32, float("inf"), 10)
        finally:
            conn.set_trace_callback(None)
        anded = [sql for sql in seen if " AND " in sql and "MATCH" in sql]
        assert anded, seen
        # Five common words (c2 to c6); the rarest four are read together, never all five.
        assert text.COMMON_AND == 4
        assert max(sql.count('"c') for sql in anded) == 4, anded
        assert not cut and len(seeds) >= 10
        number = {rid: int(mid[1:]) for rid, mid in conn.execute("SELECT rowid, id FROM memories")}
        # The best seeds hold the four rarest (c3 to c6), the others the two rarest.
        assert {number[r] for r, sc in seeds.items() if sc == 1.0} == set(range(0, 2_500, 420))
        assert all(number[r] % 42 == 0 for r in seeds), sorted(number[r] for r in seeds)
    finally:
        store.close()


def spread_as_before(conn: sqlite3.Connection, activations: dict[int, float], max_hops: int,
                     decay: float, threshold: float) -> tuple[dict[int, float], dict[int, int]]:
    """Spreading activation as it was, every frontier memory's edges read."""
    act = dict(activations)
    parent: dict[int, int] = {}
    frontier = [m for m, a in act.items() if a >= threshold]
    for _ in range(max_hops):
        if not frontier:
            break
        nxt: dict[int, float] = {}
        frontier.sort(key=act.__getitem__, reverse=True)
        for src, dst, strength in neighbours(conn, frontier):
            a = act[src] * strength * decay
            if a < threshold or a <= act.get(dst, 0.0) or a <= nxt.get(dst, 0.0):
                continue
            nxt[dst] = a
            parent[dst] = src
        act.update(nxt)
        frontier = list(nxt)
    return act, parent


def test_spreading_skips_only_memories_too_weak_to_activate_anything() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE edges (src INTEGER NOT NULL, dst INTEGER NOT NULL, "
                 "strength REAL NOT NULL, PRIMARY KEY (src, dst)) WITHOUT ROWID")
    rng = np.random.default_rng(11)
    edges: dict[tuple[int, int], float] = {}
    for src in range(1, 3_001):
        for dst in rng.integers(1, 3_001, size=4).tolist():
            if dst != src:
                # strengths of a few values (ties), 1.0 among them
                s = float(rng.choice([0.2, 0.5, 0.5, 0.8, 1.0]))
                edges[(src, dst)] = edges[(dst, src)] = s
    conn.executemany("INSERT INTO edges VALUES (?, ?, ?)",
                     [(a, b, s) for (a, b), s in edges.items()])
    for seed_n, hops, decay, threshold in ((32, 3, 0.85, 0.1), (10, 4, 0.5, 0.05),
                                           (50, 2, 0.9, 0.3), (5, 3, 1.0, 0.0)):
        seeds = {int(r): float(a) for r, a in zip(rng.choice(3_000, seed_n, replace=False) + 1,
                                                  rng.uniform(0.05, 1.0, seed_n),
                                                  strict=True)}
        before = spread_as_before(conn, seeds, hops, decay, threshold)
        act, parent, cut = spread(conn, seeds, hops, decay, threshold, float("inf"))
        assert not cut
        assert list(act.items()) == list(before[0].items())  # the same floats, same order
        assert parent == before[1]
    conn.close()


def test_a_spread_without_counts_answers_the_same_memories(tmp_path: Path) -> None:
    # One fixed clock: a recall's access times must not move the next one's recency boost.
    # A budget no recall reaches on a busy machine: a cut spread answers differently.
    store = Store(tmp_path / "data", Settings().replace({"embedding_model": "none",
                                                         "consolidation_interval_s": 0.0,
                                                         "recall_budget_ms": 60_000}),
                  clock=lambda: 1_800_000_000.0)
    try:
        rng = np.random.default_rng(17)
        words = [f"topic{i}" for i in range(60)]
        recs = [MemoryRecord(id=f"n{i}", content=" ".join(rng.choice(words, 3).tolist()),
                             confidence=float(rng.choice([0.3, 0.6, 0.6, 0.9, 1.0])),
                             tags=["odd"] if i % 2 else [])
                for i in range(2_000)]
        store.remember_many("default", recs)
        edges = [(f"n{a}", f"n{b}", float(rng.choice([0.3, 0.5, 0.7, 0.9, 1.0])))
                 for a, b in rng.integers(0, 2_000, size=(8_000, 2)).tolist() if a != b]
        store.associate_many("default", edges)
        pruned = 0
        for i, cue in enumerate(words[:30]):
            knobs = {"text": f"{cue} {words[(i * 7) % 60]}", "spread": True,
                     "max_hops": 1 + i % 4, "limit": (3, 10, 25)[i % 3],
                     "min_confidence": (0.0, 0.5)[i % 2],
                     "required_tags": ["odd"] if i % 5 == 0 else []}
            full = store.recall("default", RecallQuery(**knobs))
            quick = store.recall("default", RecallQuery(**knobs, counts=False))
            assert full.memories and not full.budget_exhausted, knobs
            assert [(m.id, m.activation, m.confidence) for m in quick.memories] == [
                (m.id, m.activation, m.confidence) for m in full.memories], knobs
            assert quick.activation_path == full.activation_path, knobs
            pruned += quick.total_activated < full.total_activated
        assert pruned  # the edges that could not change the answer were skipped
    finally:
        store.close()


def test_pending_is_the_count_of_log_rows_the_index_has_not_taken_in(tmp_path):
    """pending() reads the log's last sequence number instead of counting the backlog; with
    the indexer stopped mid-way the two agree, through writes, updates and deletes."""
    store = Store(tmp_path / "data", Settings().replace({"consolidation_interval_s": 0.0}))
    try:
        store.remember_many("default", [MemoryRecord(id=f"a{i}", content=f"first text {i}")
                                        for i in range(300)])
        wait_for(lambda: store.indexer.pending() == 0, timeout=60.0)
        store.indexer.stop()
        store.remember_many("default", [MemoryRecord(id=f"b{i}", content=f"second text {i}")
                                        for i in range(200)])
        store.remember_many("default", [MemoryRecord(id=f"a{i}", content=f"changed {i}")
                                        for i in range(50)])
        store.forget("default", [f"a{i}" for i in range(100, 115)], "delete")
        store.forget("default", [f"a{i}" for i in range(115, 130)], "suppress")
        counted = store._reader().execute(
            "SELECT count(*) FROM vector_log WHERE seq > ?", (store.indexer.applied,)
        ).fetchone()[0]
        assert counted >= 280 and store.indexer.pending() == counted
    finally:
        store.close()


def test_ranking_from_the_index_of_visible_memories_is_ranking_from_the_rows(
        tmp_path: Path) -> None:
    """_rank scores candidates from the index (confidence, decay rate, last access) and
    reads the rows of its answer only: the answer is the one every candidate's row gives,
    with suppressed memories and other spaces' left out, min_confidence and tags applied."""
    clock = [1_800_000_000.0]
    store = Store(tmp_path / "data", Settings().replace({"embedding_model": "none",
                                                         "consolidation_interval_s": 0.0}),
                  clock=lambda: clock[0])
    try:
        rng = np.random.default_rng(5)
        for space in ("default", "other"):
            store.remember_many(space, [MemoryRecord(
                id=f"n{i}", content=f"memory {i} w{i % 37}",
                confidence=float(rng.choice([0.2, 0.5, 0.7, 0.9, 1.0])),
                decay_rate=float(rng.choice([0.0, 0.0, 0.05, 0.3])),
                tags=[t for t in ("red", "blue") if rng.random() < 0.4])
                for i in range(1_200)])
            clock[0] += 3 * 86_400.0
        store.forget("default", [f"n{i}" for i in range(0, 1_200, 7)], "suppress")
        # Access times apart: some memories recalled days later than others.
        clock[0] += 86_400.0
        store.recall("default", RecallQuery(text="w3", limit=20))
        store._accesses.flush()
        conn = store._reader()
        wait_for(lambda: conn.execute("SELECT count(DISTINCT last_access) FROM memories"
                                      ).fetchone()[0] > 2)
        clock[0] += 2 * 86_400.0
        s = store.settings
        exponent, floor, scale = s.forgetting_exponent, s.forgetting_floor, s.forgetting_scale_s
        every = {r: (sp, conf, rate, last, tags, supp) for r, sp, conf, rate, last, tags, supp
                 in conn.execute("SELECT rowid, space, confidence, decay_rate, last_access, "
                                 "tags, suppressed FROM memories")}
        assert len({v[3] for v in every.values()}) > 2  # access times differ

        def by_rows(above: dict[int, float], q: RecallQuery, limit: int
                    ) -> list[tuple[float, int, float]]:
            out = []
            for rid, a in above.items():
                sp, conf, rate, last, tags, supp = every[rid]
                if sp != "default" or supp:
                    continue
                elapsed = clock[0] - last
                conf = forgetting.decayed(conf, elapsed, rate, exponent, floor, scale)
                have = set(json.loads(tags))
                if conf < q.min_confidence or not set(q.required_tags) <= have or (
                        set(q.excluded_tags) & have):
                    continue
                recency = 1.0 + 0.05 / (1.0 + max(0.0, elapsed) / 86_400.0)
                out.append((min(1.0, a) * conf * recency, rid, min(1.0, a)))
            return sorted(out, reverse=True)[:limit]

        reads: list[str] = []
        conn.set_trace_callback(
            lambda sql: reads.append(sql) if sql.startswith("SELECT rowid, id, content")
            else None)
        known = Lookup(conn, "default")  # one for every trial, as for a recall's rankings
        try:
            for trial in range(60):
                above = {int(r): float(a) for r, a in zip(
                    rng.choice(list(every), size=int(rng.integers(5, 400)), replace=False),
                    rng.choice([0.2, 0.4, 0.5, 0.8, 1.0, 1.3], size=400), strict=False)}
                q = RecallQuery(text="x", min_confidence=(0.0, 0.4)[trial % 2],
                                required_tags=["red"] if trial % 5 == 1 else [],
                                excluded_tags=["blue"] if trial % 5 == 2 else [])
                limit = (1, 10, 25)[trial % 3]
                store.hot.clear()
                reads.clear()
                top, found = store._recaller._rank(
                    Lookup(conn, "default", store.hot, store.hot.epoch()), above, q, limit,
                    clock[0], s)
                assert top == by_rows(above, q, limit), trial
                assert {rid for _, rid, _ in top} <= set(found)
                if not (q.required_tags or q.excluded_tags):  # the answer's rows alone
                    read = {int(r) for sql in reads
                            for r in sql.split("rowid IN (")[1].split(")")[0].split(",")}
                    assert read == {rid for _, rid, _ in top}, (trial, reads)
                # What one ranking looked up, kept for the next ones of a recall.
                assert store._recaller._rank(known, above, q, limit, clock[0], s)[0] == top
        finally:
            conn.set_trace_callback(None)
    finally:
        store.close()


def test_a_common_word_finds_a_space_whose_memories_are_older_than_another_s(
        tmp_path: Path) -> None:
    """The newest matches of a common word are read first; when they are all another
    space's, this space's own are found further back, not nothing."""
    store = lexical_store(tmp_path)
    try:
        store.remember_many("old", [MemoryRecord(id=f"o{i}", content=f"meeting notes o{i}")
                                    for i in range(300)])
        store.remember_many("new", [MemoryRecord(id=f"n{i}", content=f"meeting notes n{i}")
                                    for i in range(3_000)])
        for cue in ("meeting", "notes meeting"):
            got = store.recall("old", RecallQuery(text=cue, limit=10, mode="lexical"))
            assert len(got.memories) == 10, cue
            assert all(m.id.startswith("o") for m in got.memories)
            assert all(m.id.startswith("n") for m in store.recall(
                "new", RecallQuery(text=cue, limit=10, mode="lexical")).memories)
    finally:
        store.close()


def test_looked_up_values_kept_for_a_cue_asked_again_follow_every_write(tmp_path: Path
                                                                       ) -> None:
    """What a recall looked up in the index of visible memories (its seeds' checks and
    ranking) is kept in the hot tier, so a cue asked again looks nothing up; a write (an
    update, a suppression, an access time refreshed) drops its own memories' alone, and
    what is kept is what is on disk."""
    clock = [1_800_000_000.0]
    store = Store(tmp_path / "data", Settings().replace({"embedding_model": "none",
                                                         "consolidation_interval_s": 0.0,
                                                         "hot_capacity": 25}),
                  clock=lambda: clock[0])
    try:
        store.remember_many("default", [MemoryRecord(id=f"n{i}", content=f"river stone {i}",
                                                     confidence=0.5, decay_rate=0.2)
                                        for i in range(40)])
        looked: list[set[int]] = []

        def answer() -> list[tuple[str, float]]:
            got = store.recall("default", RecallQuery(text="river stone", limit=3,
                                                      mode="lexical"))
            return [(m.id, round(m.confidence, 6)) for m in got.memories]

        def rowid(mid: str) -> int:
            return int(conn.execute("SELECT rowid FROM memories WHERE id = ?",
                                    (mid,)).fetchone()[0])

        def kept_is_disk(some: bool = True) -> None:
            rids = [r for (r,) in conn.execute("SELECT rowid FROM memories")]
            kept, _ = store.hot.get_standing("default", rids)
            assert kept or not some
            disk = {row[0]: row for row in conn.execute(
                "SELECT rowid, confidence, key, decay_rate, last_access FROM memories "
                "WHERE suppressed = 0")}
            assert kept == {r: disk[r] for r in kept}

        with store._readers.lease() as conn:  # the recalls below read on this one
            conn.set_trace_callback(
                lambda sql: looked.append({int(r) for r in sql.split("rowid IN (")[1].split(
                    ")")[0].split(",")}) if "decay_rate, last_access FROM" in sql else None)
            first = answer()
            assert len(set().union(*looked)) > 30  # every candidate was looked up
            looked.clear()
            assert answer() == first and not looked  # kept: nothing looked up again
            kept_is_disk()
            # A candidate outside the answer gains confidence: the next answer has it,
            # and only it was looked up again.
            outside = next(f"n{i}" for i in range(40) if f"n{i}" not in dict(first))
            store.remember("default", MemoryRecord(id=outside, content=f"river stone "
                                                   f"{outside[1:]}", confidence=1.0,
                                                   decay_rate=0.2))
            assert answer()[0] == (outside, 1.0)
            assert set().union(*looked) == {rowid(outside)}
            kept_is_disk()
            looked.clear()
            store.forget("default", [outside], "suppress")
            assert outside not in dict(answer())
            assert set().union(*looked) == {rowid(outside)}
            kept_is_disk()
            # Days later: the answer's access times are refreshed, kept ones at once.
            clock[0] += 5 * 86_400.0
            answered = [mid for mid, _ in answer()]
            kept, _ = store.hot.get_standing("default", [rowid(m) for m in answered])
            assert kept and all(v[4] == clock[0] for v in kept.values())
            store._accesses.flush()
            wait_for(lambda: conn.execute(
                "SELECT min(last_access) FROM memories WHERE id IN (?, ?, ?)", answered
            ).fetchone()[0] == clock[0])
            kept_is_disk()
            looked.clear()
            assert [mid for mid, _ in answer()] == answered
            # Still kept: only the suppressed memory, not a visible one, is looked up.
            assert set().union(*looked) <= {rowid(outside)}
            # A reader that looked up in the index before an access time was written keeps
            # nothing after: its old access time would otherwise stand in for the new one.
            early = sqlite3.connect(tmp_path / "data" / DB_NAME)
            early.execute("BEGIN")
            early.execute("SELECT count(*) FROM memories").fetchone()  # its snapshot
            before = Lookup(early, "default", store.hot, store.hot.epoch())
            clock[0] += 5 * 86_400.0
            answered = [mid for mid, _ in answer()]
            store._accesses.flush()
            wait_for(lambda: conn.execute(
                "SELECT min(last_access) FROM memories WHERE id IN (?, ?, ?)", answered
            ).fetchone()[0] == clock[0])
            store.hot.resize(0)  # nothing kept: the look-up reads the index
            store.hot.resize(25)
            assert before.visible([rowid(m) for m in answered])
            early.close()
            kept_is_disk(some=False)
            conn.set_trace_callback(None)
    finally:
        store.close()


def test_kept_look_ups_are_what_is_on_disk_after_recalls_and_writes_side_by_side(
        tmp_path: Path) -> None:
    """Readers recall while a writer updates, suppresses and restores memories and days
    pass (so recalls write access times): once all is written, every value the hot tier
    kept is the memory's row on disk, whatever the interleaving."""
    import random
    import threading

    clock = [1_800_000_000.0]
    store = Store(tmp_path / "data", Settings().replace({"embedding_model": "none",
                                                         "consolidation_interval_s": 0.0,
                                                         "hot_capacity": 100}),
                  clock=lambda: clock[0])

    def memory(i: int, confidence: float) -> MemoryRecord:
        return MemoryRecord(id=f"n{i}", content=f"river stone {i} w{i % 7}",
                            confidence=confidence, decay_rate=0.1)

    try:
        store.remember_many("default", [memory(i, 0.5) for i in range(300)])
        stop = threading.Event()
        errors: list[BaseException] = []

        def read(seed: int) -> None:
            rng = random.Random(seed)
            try:
                while not stop.is_set():
                    store.recall("default", RecallQuery(text=f"river w{rng.randrange(7)}",
                                                        limit=5, mode="lexical"))
            except BaseException as exc:  # reported below
                errors.append(exc)

        readers = [threading.Thread(target=read, args=(k,)) for k in range(3)]
        for t in readers:
            t.start()
        rng = random.Random(9)
        try:
            for step in range(800):
                i = rng.randrange(300)
                if step % 5 == 0:
                    store.forget("default", [f"n{i}"], "suppress")
                else:  # an update, or a suppressed memory stored again
                    store.remember("default", memory(i, rng.choice([0.2, 0.6, 0.9])))
                if step % 50 == 0:
                    clock[0] += 3 * 86_400.0
        finally:
            stop.set()
            for t in readers:
                t.join()
        assert not errors
        store._accesses.flush()
        store.write(lambda conn: None)  # the writer commits in order: access times written
        with store._readers.lease() as conn:
            disk = {row[0]: row for row in conn.execute(
                "SELECT rowid, confidence, key, decay_rate, last_access FROM memories "
                "WHERE suppressed = 0")}
        kept, _ = store.hot.get_standing("default", list(range(1, 400)))
        assert len(kept) > 50
        assert kept == {r: disk[r] for r in kept}
    finally:
        store.close()
