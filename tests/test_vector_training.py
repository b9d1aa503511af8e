"""The vector index's coded stores: a space trained at a (here small) `train_at` finds the
nearest memories, retrains on growth without losing or resurrecting a key (also when a
change lands in the middle of a retrain), survives save and open, and an older version's
files are rebuilt. Real WordLlama vectors of the sample memories, real files."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from engram_cli.engine import indexer as indexer_module
from engram_cli.engine.embedding import DEFAULT_MODEL, load_model
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store
from engram_cli.engine.unit import unit_rows
from engram_cli.engine.vectors import MANIFEST, IndexConfig, VectorIndex
from tests import import_support
from tests.test_vectors import exact, keys

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "memories.jsonl"
SMALL = IndexConfig(model=DEFAULT_MODEL, train_at=500, candidates=20)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [json.loads(line)["content"] for line in EXAMPLES.read_text().splitlines()]


@pytest.fixture(scope="module")
def vecs(texts: list[str]) -> np.ndarray:
    """The 3,000 sample memories, embedded by the default model; key i+1 is row i."""
    model = load_model(DEFAULT_MODEL)
    assert model is not None
    return model.embed(texts)



def found(ix: VectorIndex, vecs: np.ndarray, key: int, k: int = 5) -> bool:
    """Whether `key` is among the nearest to its own vector (near-duplicate sample texts
    may outrank it by a hair)."""
    return key in {kk for kk, _ in ix.search("default", vecs[key - 1], k)}


def all_lists(ix: VectorIndex) -> None:
    """Re-score 512 candidates from now on: what a test checks is then the index's content."""
    ix.set_candidates(512)


def test_a_trained_space_finds_the_nearest_memories(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", SMALL)
    ix.add("default", keys(0, 400), vecs[:400])
    assert ix.due() is None  # below train_at: the exact store
    ix.add("default", keys(400, len(vecs)), vecs[400:])
    assert ix.due() == "default"
    assert ix.rebuild("default")
    shape = ix.describe()["default"]
    assert shape == {"count": len(vecs), "trained_on": len(vecs)}, shape
    assert ix.due() is None and len(ix) == len(vecs)
    live = keys(0, len(vecs))
    hits, probes = 0, range(0, len(vecs), 30)
    for qi in probes:
        got = ix.search("default", vecs[qi], 10)
        assert qi + 1 in {k for k, _ in got[:3]}, qi
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        hits += len({k for k, _ in got} & exact(vecs, vecs[qi], 10, live))
    # the 4-bit codes' best 20 re-scored: most of the true 10 nearest, not all
    assert hits / (10 * len(probes)) >= 0.8
    all_lists(ix)
    hits = sum(len({k for k, _ in ix.search("default", vecs[qi], 10)}
                   & exact(vecs, vecs[qi], 10, live)) for qi in probes)
    assert hits / (10 * len(probes)) >= 0.95


@pytest.mark.parametrize("spread", [1, 10], ids=["table", "sorted"])
def test_candidates_are_re_scored_as_faiss_decodes_them_through_a_stale_look_up(vecs, spread):
    # Re-scoring reads each candidate's 8-bit code at the position a look-up taken earlier
    # gives (a table by key for keys close together, else the keys sorted). Since then:
    # removals (faiss moves the list's last codes into the gaps), keys replaced with other
    # vectors (removed, then appended), new keys. Every key's score must still be that of
    # its own current code.
    from engram_cli.engine import ivf

    def ks(a: int, b: int) -> np.ndarray:
        return keys(a, b) * spread

    coded = ivf.train(vecs.shape[1], vecs)
    coded.add_with_ids(vecs[:2000], ks(0, 2000))
    assert coded.lookup_due()
    coded.install_lookup(*coded.lookup_keys())
    assert not coded.lookup_due()
    coded.remove_ids(ks(0, 100))
    coded.remove_ids(ks(500, 510))
    coded.add_with_ids(vecs[2000:2010], ks(500, 510))
    coded.add_with_ids(vecs[2010:2500], ks(2010, 2500))
    held = ivf.all_ids(coded)
    for q in (vecs[2999], vecs[505]):
        want = coded.reconstruct_batch(held) @ q
        np.testing.assert_allclose(coded.rescore(held, q), want, rtol=0, atol=1e-5)
    coded.install_lookup(*coded.lookup_keys())
    np.testing.assert_allclose(coded.rescore(held, vecs[7]),
                               coded.reconstruct_batch(held) @ vecs[7], rtol=0, atol=1e-5)


def test_a_trained_space_re_takes_its_look_up_and_never_resurrects_a_key(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", SMALL)
    all_lists(ix)
    ix.add("default", keys(0, 1500), vecs[:1500])
    assert ix.refresh_lookups() == 0  # an exact store has none
    assert ix.rebuild("default")
    assert ix.refresh_lookups() == 1 and ix.refresh_lookups() == 0
    assert ix.remove("default", keys(0, 50)) == 50
    ix.add("default", keys(100, 110), vecs[2000:2010])  # keys 101-110: other memories now
    for k in range(1, 51):
        assert k not in {kk for kk, _ in ix.search("default", vecs[k - 1], 20)}
    for i, k in enumerate(range(101, 111)):
        assert k in {kk for kk, _ in ix.search("default", vecs[2000 + i], 3)}
        assert k not in {kk for kk, _ in ix.search("default", vecs[k - 1], 20)}
    assert all(found(ix, vecs, k) for k in range(200, 1500, 37))
    ix.add("default", keys(1500, 1500 + 4097), np.tile(vecs, (2, 1))[1500:1500 + 4097])
    assert ix.refresh_lookups() == 1  # past LOOKUP_SLACK changes


def test_retraining_on_growth_keeps_every_key_and_no_removed_one(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", SMALL)
    all_lists(ix)
    ix.add("default", keys(0, 600), vecs[:600])
    assert ix.rebuild("default")
    first = ix.describe()["default"]
    assert first["trained_on"] == 600
    ix.add_fresh("default", keys(600, 3000), vecs[600:3000], since=1)
    while ix.merge():
        pass
    gone = keys(0, 3000)[::11]
    assert ix.remove("default", gone) == len(gone)
    assert ix.due() == "default"  # 4x the vectors it was trained on
    assert ix.rebuild("default")
    second = ix.describe()["default"]
    assert second["trained_on"] == 3000 - len(gone)
    assert len(ix) == 3000 - len(gone)
    live = np.setdiff1d(keys(0, 3000), gone)
    assert all(found(ix, vecs, int(k)) for k in live)
    for k in gone[:60]:
        assert int(k) not in {kk for kk, _ in ix.search("default", vecs[k - 1], 50)}


def test_changes_during_a_retrain_are_replayed_not_lost_or_resurrected(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", SMALL)
    all_lists(ix)
    ix.add("default", keys(0, 2000), vecs[:2000])
    copied, go_on = threading.Event(), threading.Event()
    result: list[bool] = []

    def pause() -> None:  # between the copy and the swap
        copied.set()
        assert go_on.wait(30)

    builder = threading.Thread(target=lambda: result.append(
        ix.rebuild("default", before_swap=pause)))
    builder.start()
    try:
        assert copied.wait(60)
        # The copy is done: these land in the old index and in the rebuild's journal.
        ix.remove("default", keys(0, 100))
        ix.add("default", keys(2000, 2500), vecs[2000:2500])
        ix.add("default", [500], vecs[2999:3000])  # key 500 gets another vector
        ix.add_fresh("default", [501], vecs[2998:2999], since=5)  # and 501, fresh
        ix.remove("default", [2001])  # added during the retrain, then removed
        assert ix.search("default", vecs[50], 5)  # searches go on meanwhile
    finally:
        go_on.set()
        builder.join(60)
    assert result == [True] and ix.describe()["default"]["trained_on"] == 2000
    assert len(ix) == 2500 - 100 - 1
    for k in [*range(1, 101), 2001]:
        assert k not in {kk for kk, _ in ix.search("default", vecs[k - 1], 50)}, k
    assert all(found(ix, vecs, k) for k in [*range(101, 500), *range(502, 2001),
                                            *range(2002, 2501)])
    assert ix.search("default", vecs[2999], 1)[0][0] == 500
    assert 500 not in {kk for kk, _ in ix.search("default", vecs[499], 50)}
    assert ix.search("default", vecs[2998], 1)[0][0] == 501
    while ix.merge():
        pass
    assert ix.search("default", vecs[2998], 1)[0][0] == 501 and len(ix) == 2399


def test_a_cancelled_retrain_leaves_the_old_index_working(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", SMALL)
    ix.add("default", keys(0, 800), vecs[:800])
    assert not ix.rebuild("default", cancelled=lambda: True)
    assert ix.describe()["default"]["trained_on"] == 0 and ix.due() == "default"
    ix.remove("default", [3])
    assert ix.rebuild("default")
    assert len(ix) == 799 and not found(ix, vecs, 3, 50) and found(ix, vecs, 4)


def test_a_trained_space_survives_save_and_open(tmp_path, vecs):
    d = tmp_path / "vec"
    ix = VectorIndex.open(d, SMALL)
    ix.add("default", keys(0, 1500), vecs[:1500])
    assert ix.rebuild("default")
    ix.add("small", keys(0, 10), vecs[:10])  # still an exact store
    ix.remove("default", [7])
    ix.save(9)
    before = [ix.search("default", vecs[q], 10) for q in (0, 6, 700, 1499)]
    again = VectorIndex.open(d, SMALL)
    assert again.rebuild_reason == "" and again.watermark == 9
    assert again.describe() == ix.describe()
    assert [again.search("default", vecs[q], 10) for q in (0, 6, 700, 1499)] == before
    # the reloaded index removes and replaces by key (its hash table came back)
    assert again.remove("default", [8, 7]) == 1
    again.add("default", [9], vecs[2000:2001])
    assert again.search("default", vecs[2000], 1)[0][0] == 9
    assert len(again) == 1498 + 10
    manifest = orjson.loads((d / MANIFEST).read_bytes())
    assert manifest["spaces"]["default"]["trained_on"] == 1500


def test_an_older_versions_hnsw_files_are_rebuilt(tmp_path, vecs):
    d = tmp_path / "vec"
    d.mkdir(mode=0o700)
    old = d / "default.1.usearch"
    old.write_bytes(b"\0" * 4096)
    (d / MANIFEST).write_bytes(orjson.dumps({
        "format": 1, "model": DEFAULT_MODEL, "dtype": "i8", "connectivity": 16,
        "watermark": 77, "generation": 1, "spaces": {"default": {
            "file": old.name, "dim": 256, "size": 4096, "blake2b": "0" * 32, "count": 9}}}))
    ix = VectorIndex.open(d, SMALL)
    assert ix.watermark == 0 and len(ix) == 0
    assert "format 1" in ix.rebuild_reason, ix.rebuild_reason
    assert not old.exists()
    ix.add("default", keys(0, 100), vecs[:100])
    ix.save(3)
    assert VectorIndex.open(d, SMALL).watermark == 3


# ------------------------------------------------------------------ through the store


@pytest.fixture
def small_train_at() -> Iterator[None]:
    before = indexer_module.TRAIN_AT
    indexer_module.TRAIN_AT = 300
    try:
        yield
    finally:
        indexer_module.TRAIN_AT = before


def test_the_indexer_trains_a_growing_space_and_recall_uses_it(tmp_path, texts,
                                                               small_train_at):
    store = Store(tmp_path / "data", Settings().replace({"consolidation_interval_s": 0.0}))
    try:
        store.remember_many("default", [MemoryRecord(id=f"m{i}", content=t, confidence=0.9)
                                        for i, t in enumerate(texts[:2000])])

        def trained() -> bool:
            st, ix = store.vector_stats(), store.indexer.index
            shape = ix.describe().get("default") if ix is not None else None
            return bool(st["indexed"] == 2000 and st["pending"] == 0 and shape
                        and shape["trained_on"] >= 300 and ix is not None and not ix.fresh()
                        and ix.due() is None)

        import_support.wait_for(trained, timeout=120)
        ix = store.indexer.index
        assert ix is not None and ix.describe()["default"]["trained_on"] >= 300
        got = store.recall("default", RecallQuery(text=texts[1234], mode="vector", limit=3))
        assert "m1234" in [m.id for m in got.memories]
        store.update_settings(store.settings.replace({"vector_candidates": 12}))
        assert ix.config.candidates == 12
    finally:
        store.close()


def test_a_search_by_vector_alone_scores_its_best_from_the_stored_vectors(tmp_path,
                                                                          small_train_at):
    """In a coded space a search's scores are of 8-bit codes, which misplace some of the
    ten nearest; an embedding cue's best are scored again from their stored vectors, so a
    stored memory's own vector finds it at similarity 1 and the order is the exact one."""
    rng = np.random.default_rng(5)
    own = rng.standard_normal((1000, 32)).astype(np.float32)
    store = Store(tmp_path / "data", Settings().replace({"embedding_model": "none",
                                                         "consolidation_interval_s": 0.0}))
    try:
        store.remember_many("vecs", [MemoryRecord(id=f"v{i}", content="", confidence=0.9,
                                                  embedding=v.tobytes())
                                     for i, v in enumerate(own)])

        def trained() -> bool:
            ix = store.indexer.index
            shape = ix.describe().get("vecs") if ix is not None else None
            return bool(shape and shape["trained_on"] >= 300 and not ix.fresh()
                        and store.vector_stats()["pending"] == 0)

        import_support.wait_for(trained, timeout=120)
        ix = store.indexer.index
        rowid = dict(store._reader().execute("SELECT id, rowid FROM memories"))
        for k in (3, 321, 777):
            coded = dict(ix.search("vecs", own[k], 5))[rowid[f"v{k}"]]
            assert abs(coded - 1.0) > 1e-5  # what the index alone would have answered
            got = store.recall("vecs", RecallQuery(embedding=own[k].tobytes(), limit=5))
            top = got.memories[0]
            assert top.id == f"v{k}" and abs(top.activation - 1.0) < 1e-5
            cue = own[k] + 0.3 * rng.standard_normal(32).astype(np.float32)
            got = store.recall("vecs", RecallQuery(embedding=cue.tobytes(), limit=5))
            sims = own @ cue / (np.linalg.norm(own, axis=1) * np.linalg.norm(cue))
            want = [f"v{i}" for i in np.argsort(-sims)[:5]]
            assert [m.id for m in got.memories] == want
            np.testing.assert_allclose([m.activation for m in got.memories],
                                       np.sort(sims)[::-1][:5], atol=1e-5)
    finally:
        store.close()


def test_removed_and_replaced_vectors_never_answer_and_a_retrain_clears_them(tmp_path, vecs):
    d = tmp_path / "vec"
    ix = VectorIndex.open(d, SMALL)
    ix.add("default", keys(0, 1200), vecs[:1200])
    assert ix.rebuild("default")
    all_lists(ix)
    ix.add("default", keys(0, 100), vecs[2000:2100])  # keys 1-100 get other vectors
    ix.remove("default", keys(100, 200))

    def check(ix: VectorIndex) -> None:
        for i in range(100):
            assert ix.search("default", vecs[2000 + i], 1)[0][0] == i + 1
            old = {kk for kk, _ in ix.search("default", vecs[i], 5)}
            assert i + 1 not in old or vecs[i] @ vecs[2000 + i] > 0.7, i
        for k in range(101, 201):
            assert k not in {kk for kk, _ in ix.search("default", vecs[k - 1], 50)}, k
        assert len(ix) == 1100

    check(ix)
    # 200 stale codes in a store of 1,100: more than an eighth, so it is due
    assert ix.due() == "default"
    ix.save(4)
    again = VectorIndex.open(d, SMALL)
    all_lists(again)
    check(again)
    assert again.due() == "default" and again.rebuild("default")
    assert again.describe()["default"] == {"count": 1100, "trained_on": 1100}
    assert again.due() is None
    check(again)


def coded_recall(points: np.ndarray, n_cues: int = 200) -> float:
    """Recall@10 of a coded store of all but the last `n_cues` unit vectors, for those as
    cues, at the default candidates, re-scored exactly as recall does."""
    from engram_cli.engine import ivf

    base, cues = points[:-n_cues], points[-n_cues:]
    coded = ivf.train(base.shape[1], base[:ivf.TRAIN_SAMPLE])
    coded.add_with_ids(base, np.arange(len(base), dtype=np.int64))
    truth = np.argsort(-(cues @ base.T), axis=1)[:, :10]
    hits = 0
    for cue, want in zip(cues, truth, strict=True):
        found = np.array([k for k, _ in ivf.search(coded, cue[None, :], 40,
                                                   Settings().vector_candidates)])
        best = found[np.argsort(-(base[found] @ cue))[:10]]
        hits += len(set(best.tolist()) & set(want.tolist()))
    return hits / truth.size


def test_a_768_d_space_finds_its_nearest_as_a_256_d_one_does():
    # Upstream Engram's clients send 768-d embeddings. With the 64 sub-quantizers that suit
    # 256-d, each 4-bit code stood for 12 dimensions and the scan's candidates missed a
    # sixth of the ten nearest here (0.835); ivf.SUB_DIMS caps a code at 6.
    from engram_cli.engine import ivf

    assert [ivf.pq_m(d) for d in (16, 256, 257, 384, 768, 1536)] == [16, 64, 257, 64, 128, 256]
    rng = np.random.default_rng(3)
    # 256 dimensions of signal with falling variances, turned into 768, and a little noise
    signal = rng.standard_normal((20_200, 256)) * np.arange(1, 257) ** -0.25
    turn = np.linalg.qr(rng.standard_normal((768, 256)))[0].T
    assert coded_recall(unit_rows(signal @ turn + 0.02 * rng.standard_normal((20_200, 768)))
                        ) >= 0.95


def test_a_store_of_few_dimensions_re_scores_more_candidates():
    # 8 sub-quantizers of 16 cells each tell few of 100,000 clustered 8-d vectors apart:
    # the search re-scores PQ_M // 8 times the candidates (with 256, 0.970 of the ten
    # nearest here; at a million 0.745).
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((1000, 8))
    points = centres[rng.integers(0, 1000, 100_200)] + 0.5 * rng.standard_normal((100_200, 8))
    assert coded_recall(unit_rows(points)) >= 0.99


def test_a_space_of_fewer_than_8_dimensions_stays_exact(tmp_path):
    # 4-bit codes of a few dimensions cannot tell many vectors apart whatever the
    # candidates: such a space is never trained, and its searches stay exact.
    rng = np.random.default_rng(2)
    ix = VectorIndex.open(tmp_path / "vec", SMALL)
    ix.add("narrow", keys(0, 1000), unit_rows(rng.standard_normal((1000, 7))))
    assert ix.due() is None
    ix.add("eight", keys(0, 1000), unit_rows(rng.standard_normal((1000, 8))))
    assert ix.due() == "eight"


def test_a_store_coded_by_the_earlier_rule_is_retrained_after_a_restart(tmp_path, monkeypatch):
    # A 768-d space an earlier version trained (64 sub-quantizers) keeps its codes through
    # save and open, and the merger then retrains it to today's codes.
    from engram_cli.engine import ivf

    rng = np.random.default_rng(5)
    wide = rng.standard_normal((1200, 768)).astype(np.float32)
    wide /= np.linalg.norm(wide, axis=1, keepdims=True)
    d = tmp_path / "vec"
    ix = VectorIndex.open(d, SMALL)
    ix.add("default", keys(0, 1200), wide)
    with monkeypatch.context() as m:
        m.setattr(ivf, "pq_m", lambda dim: 64)
        assert ix.rebuild("default")
    ix.save(3)
    again = VectorIndex.open(d, SMALL)
    assert again.due() == "default"
    assert again.rebuild("default") and again.due() is None
    assert again.describe()["default"] == {"count": 1200, "trained_on": 1200}
    assert {k for k, _ in again.search("default", wide[10], 3)} >= {11}


def test_a_coded_store_keeps_its_codes_in_k_means_lists_through_write_and_read(tmp_path,
                                                                              vecs):
    # The lists hold every code the whole probe holds (appended alike), and a store read
    # back has the same lists, the same share of them searched.
    from engram_cli.engine import ivf

    assert [ivf.nlist_for(n, ivf.sample_size(n)) for n in (500, 3000, 20_000, 80_000,
                                                            320_000, 4_000_000)] \
        == [8, 64, 128, 256, 256, 256]
    coded = ivf.train(vecs.shape[1], vecs, len(vecs))
    assert coded.lists is not None
    plain = ivf.faiss.deserialize_index(ivf.faiss.serialize_index(coded.lists))
    coded.add_with_ids(vecs[:2000], keys(0, 2000))
    coded.add_with_ids(vecs[2000:], keys(2000, 3000))
    assert not coded.outdated()
    # each vector in the list faiss's own add puts it in (found here with numpy)
    plain.add_with_ids(vecs, keys(0, 3000))
    for no in range(int(plain.nlist)):
        size = plain.invlists.list_size(no)
        assert coded.lists.invlists.list_size(no) == size
        assert sorted(ivf.faiss.rev_swig_ptr(coded.lists.invlists.get_ids(no), size)) \
            == sorted(ivf.faiss.rev_swig_ptr(plain.invlists.get_ids(no), size))
    q = vecs[5:25]
    assert np.array_equal(plain.search(q, 10)[1], coded.lists.search(q, 10)[1])
    assert (int(coded.lists.nlist), coded.nprobe) == (64, 4)
    assert int(coded.lists.ntotal) == coded.scanned == 3000
    path = tmp_path / "alpha.1.faiss"
    with path.open("wb") as f:
        ivf.write(coded, f.write)
    again = ivf.read(path, coded=True)
    assert not again.outdated()
    assert (int(again.lists.nlist), again.nprobe, int(again.lists.ntotal)) == (64, 4, 3000)
    q = vecs[17].reshape(1, -1)
    assert np.array_equal(again.lists.search(q, 20)[1], coded.lists.search(q, 20)[1])
    assert ivf.nbytes(again) == ivf.nbytes(coded) > 3000 * (32 + 256)


def test_an_approximate_search_of_a_large_store_reads_only_its_nearest_lists(monkeypatch,
                                                                            vecs):
    # A hybrid recall's search (`approximate`) of a store of LISTS_BYTES of codes or more
    # proposes only keys of the lists nearest the cue, and never a removed key; below
    # LISTS_BYTES it scans every code, as other searches always do.
    from engram_cli.engine import ivf

    coded = ivf.train(vecs.shape[1], vecs, len(vecs))
    coded.add_with_ids(vecs, keys(0, 3000))
    assert coded.lists is not None
    assert coded.remove_ids(keys(0, 100)) == 100
    lists = coded.lists

    def held_by(list_nos: np.ndarray) -> set[int]:
        out: set[int] = set()
        for no in list_nos.tolist():
            size = lists.invlists.list_size(no)
            out.update(ivf.faiss.rev_swig_ptr(lists.invlists.get_ids(no), size).tolist())
        return out

    rng = np.random.default_rng(7)
    beyond = 0
    for row in rng.choice(3000, 40, replace=False).tolist():
        q = vecs[row].reshape(1, -1)
        probed = lists.quantizer.search(q, coded.nprobe)[1][0]
        whole = {k for k, _ in ivf.search(coded, q, 10, 64)}
        assert {k for k, _ in ivf.search(coded, q, 10, 64, approximate=True)} == whole
        monkeypatch.setattr(ivf, "LISTS_BYTES", 0)
        near = {k for k, _ in ivf.search(coded, q, 10, 64, approximate=True)}
        monkeypatch.setattr(ivf, "LISTS_BYTES", 16 << 20)
        assert near and near <= held_by(probed) and not near & set(range(1, 101))
        if row >= 100:
            assert row + 1 in near  # its own code's list is the nearest to it
        beyond += len(whole - held_by(probed))
    assert beyond  # the scan of every code finds some the nearest lists do not hold
