"""A hybrid recall's vector search started ahead (engine/ahead.py): the answer is the one a
search made now gives, a search started ahead is used once and only for the same
arguments, nothing starts when no thread is free, and recall answers alike either way.
A real vector index of random unit vectors; the store's recalls on the sample memories."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engram_cli.engine.ahead import SearchAhead
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store
from engram_cli.engine.vectors import IndexConfig, VectorIndex
from tests import import_support
from tests.test_vectors import keys

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "memories.jsonl"


class Counted(VectorIndex):
    """The real index, counting its searches, on which thread they ran and whether they
    could take another thread for a scan."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.threads: list[str] = []
        self.splits: list[bool] = []
        self.approximate: list[bool] = []

    def search(self, space: str, vector: Any, k: int, split: bool = True,
               approximate: bool = False) -> list[tuple[int, float]]:
        self.threads.append(threading.current_thread().name)
        self.splits.append(split)
        self.approximate.append(approximate)
        return super().search(space, vector, k, split, approximate)


def index(tmp_path: Path) -> tuple[Counted, np.ndarray]:
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((500, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ix = Counted(tmp_path / "vec", IndexConfig(model="test"))
    ix.add("default", keys(0, 500), vecs)
    return ix, vecs


def test_a_search_started_ahead_answers_as_one_made_now(tmp_path):
    ix, vecs = index(tmp_path)
    ahead = SearchAhead()
    try:
        cue = vecs[7]
        ahead.start(ix, "default", cue, 5)
        got = ahead.search(ix, "default", cue, 5)
        assert got == ix.search("default", cue, 5) and got[0][0] == 8
        assert ix.threads[0].startswith("engram-search-ahead") and len(ix.threads) == 2
        # ahead, beside this thread's work: its scan takes no third thread; here it may
        assert ix.splits == [False, True]
        # used once: the next search runs here
        assert ahead.search(ix, "default", cue, 5) == got
        assert ix.threads[2] == threading.current_thread().name
        # other arguments than those started: searched here, with those arguments
        ix.threads.clear()
        ahead.start(ix, "default", cue, 5)
        assert ahead.search(ix, "default", cue, 9) == ix.search("default", cue, 9)
        assert ahead.search(ix, "default", vecs[3].copy(), 5)[0][0] == 4
        assert ix.threads.count(threading.current_thread().name) == 3
    finally:
        ahead.close()


def test_a_search_takes_a_second_thread_only_when_its_recall_has_been_alone(tmp_path,
                                                                            monkeypatch):
    # Alone: no other recall under way, and none two at once for QUIET_S.
    from engram_cli.engine import recall

    monkeypatch.setattr(recall, "QUIET_S", 0.3)
    import_support.wait_for(recall.RUNNING.quiet, timeout=10)  # other tests' recalls
    ix, vecs = index(tmp_path)
    with recall.RUNNING.one():
        recall._search(ix, "default", vecs[1], 5)
        with recall.RUNNING.one():  # another recall under way
            recall._search(ix, "default", vecs[1], 5)
        recall._search(ix, "default", vecs[1], 5)  # alone again, but two were just now
    recall._search(ix, "default", vecs[1], 5)  # no recall (a caller of its own), as just after
    assert ix.splits == [True, False, False, False]
    import_support.wait_for(recall.RUNNING.quiet, timeout=10)
    with recall.RUNNING.one():
        recall._search(ix, "default", vecs[1], 5)
    assert ix.splits[-1] is True and recall.RUNNING.count == 0


def test_nothing_starts_ahead_when_no_thread_is_free(tmp_path):
    ix, vecs = index(tmp_path)
    ahead = SearchAhead(threads=1)
    release = threading.Event()
    started = threading.Event()

    class Slow(Counted):
        def search(self, space: str, vector: Any, k: int, split: bool = True,
                   approximate: bool = False) -> list[tuple[int, float]]:
            started.set()
            assert release.wait(30)
            return super().search(space, vector, k, split, approximate)

    slow = Slow(tmp_path / "slow", IndexConfig(model="test"))
    slow.add("default", keys(0, 500), vecs)
    try:
        ahead.start(slow, "default", vecs[1], 5)  # takes the one thread
        assert started.wait(30)
        other = threading.Thread(target=lambda: (ahead.start(ix, "default", vecs[2], 5),
                                                 ix.threads.append("asked")))
        other.start()
        other.join(30)
        assert ix.threads == ["asked"]  # it did not start a search
        release.set()
        assert ahead.search(slow, "default", vecs[1], 5)[0][0] == 2
    finally:
        release.set()
        ahead.close()


def test_hybrid_recalls_answer_alike_with_and_without_searches_ahead(tmp_path):
    texts = [json.loads(line)["content"] for line in EXAMPLES.read_text().splitlines()]
    # A budget no recall here reaches, so that only the search ahead could make answers
    # differ: a recall cut short by the default 50 ms answers with what it had by then.
    store = Store(tmp_path / "data", Settings().replace({"consolidation_interval_s": 0.0,
                                                         "recall_budget_ms": 60_000}))
    try:
        store.remember_many("default", [MemoryRecord(id=f"m{i}", content=t, confidence=0.9)
                                        for i, t in enumerate(texts[:1500])])
        import_support.wait_for(lambda: store.vector_stats()["pending"] == 0
                                and store.vector_stats()["indexed"] == 1500, timeout=120)
        cues = [texts[i][:60] for i in range(0, 1500, 75)] + ["a leaking coffee maker"]

        def answers() -> list[list[tuple[str, float]]]:
            out = []
            for c in cues:
                got = store.recall("default", RecallQuery(text=c, limit=10))
                assert not got.budget_exhausted
                out.append([(m.id, round(m.activation, 6)) for m in got.memories])
            return out

        with_ahead = answers()
        store._recaller._ahead = SearchAhead(threads=0)  # every search inline
        assert answers() == with_ahead
        assert all(with_ahead)
    finally:
        store.close()


def test_only_a_hybrid_recalls_vector_search_may_read_the_nearest_lists(tmp_path,
                                                                        monkeypatch):
    # A hybrid recall's vector search asks for the nearest lists of a large store
    # (engine/ivf.py), whether it was started ahead or not: its proposals rarely make the
    # answer. A text cue recalled by vector alone and an embedding cue scan every code.
    texts = [json.loads(line)["content"] for line in EXAMPLES.read_text().splitlines()]
    store = Store(tmp_path / "data", Settings().replace({"consolidation_interval_s": 0.0}))
    try:
        store.remember_many("default", [MemoryRecord(id=f"m{i}", content=t, confidence=0.9)
                                        for i, t in enumerate(texts[:200])])
        import_support.wait_for(lambda: store.vector_stats()["pending"] == 0, timeout=120)
        index = store.indexer.index
        asked: list[tuple[str, bool]] = []
        search = index.search

        def recorded(*args: Any, approximate: bool = False, **kw: Any) -> Any:
            asked.append((threading.current_thread().name, approximate))
            return search(*args, approximate=approximate, **kw)

        monkeypatch.setattr(index, "search", recorded)
        cue = texts[3][:40]
        assert store.recall("default", RecallQuery(text=cue, limit=5)).memories
        assert [a for _, a in asked] == [True]
        assert asked[0][0].startswith("engram-search-ahead")
        store._recaller._ahead = SearchAhead(threads=0)  # no thread free: inline
        assert store.recall("default", RecallQuery(text=cue, limit=5)).memories
        assert asked[1] == (threading.current_thread().name, True)
        del asked[:]
        assert store.recall("default", RecallQuery(text=cue, limit=5, mode="vector")).memories
        vector = store.indexer.model.embed([texts[3]])[0]
        assert store.recall("default", RecallQuery(embedding=vector.tobytes(), limit=5)
                            ).memories
        assert store.recall("default", RecallQuery(text=cue, limit=5, mode="lexical")
                            ).memories
        assert [a for _, a in asked] == [False, False]
    finally:
        store.close()
