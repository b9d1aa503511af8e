"""The vector index: real WordLlama vectors of the sample memories, real files, kill -9."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engram_cli.engine.embedding import DEFAULT_MODEL, load_model
from engram_cli.engine.vectors import MANIFEST, IndexConfig, VectorIndex
from engram_cli.errors import InvalidArgument, UnsafePath

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "memories.jsonl"
CONFIG = IndexConfig(model=DEFAULT_MODEL)


@pytest.fixture(scope="module")
def vecs() -> np.ndarray:
    """The 3,000 sample memories, embedded by the default model; key i+1 is row i."""
    texts = [json.loads(line)["content"] for line in EXAMPLES.read_text().splitlines()]
    model = load_model(DEFAULT_MODEL)
    assert model is not None
    return model.embed(texts)


def keys(a: int, b: int) -> np.ndarray:
    return np.arange(a + 1, b + 1, dtype=np.int64)


def exact(vecs: np.ndarray, q: np.ndarray, k: int, live: np.ndarray) -> set[int]:
    sims = vecs[live - 1] @ q
    return {int(x) for x in live[np.argsort(-sims)[:k]]}


def test_search_finds_the_nearest_memories(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", CONFIG)
    ix.add("default", keys(0, len(vecs)), vecs)
    assert len(ix) == len(vecs)
    live = keys(0, len(vecs))
    hits = 0
    for qi in range(0, len(vecs), 30):
        got = ix.search("default", vecs[qi], 10)
        assert got[0][0] == qi + 1 and got[0][1] > 0.98  # a memory is its own best match
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        hits += len({k for k, _ in got} & exact(vecs, vecs[qi], 10, live))
    assert hits / (10 * len(range(0, len(vecs), 30))) >= 0.95


@pytest.mark.parametrize("scale", [1e20, 1e-30])
def test_vectors_of_huge_or_tiny_values_are_searched_by_their_direction(tmp_path, vecs,
                                                                         scale):
    """float32 squares overflow past ~1e19 and vanish under ~1e-23: numpy's norm made such
    vectors NaN (found by nothing) or zero. Their direction is what counts."""
    from engram_cli.engine.unit import unit, unit_rows

    few = vecs[:300]
    scaled = (few.astype(np.float64) * scale).astype(np.float32)
    assert np.allclose(unit_rows(scaled), few, atol=1e-5)
    assert unit(scaled[7])[1] == pytest.approx(scale, rel=1e-3)
    ix = VectorIndex.open(tmp_path / "vec", CONFIG)
    ix.add("default", keys(0, 300), scaled)
    for qi in (0, 7, 150):
        got = ix.search("default", scaled[qi], 5)
        assert got[0][0] == qi + 1 and got[0][1] > 0.98
        assert [k for k, _ in got] == [k for k, _ in ix.search("default", few[qi], 5)]


def test_a_vector_whose_length_is_past_float32s_range_still_has_a_direction():
    from engram_cli.engine.rows import cosines
    from engram_cli.engine.unit import unit, unit_rows

    top = np.full(64, 3e38, dtype=np.float32)  # its length, 2.4e39, is no float32
    direction, length = unit(top)
    assert np.allclose(direction, 0.125) and length == pytest.approx(2.4e39, rel=1e-6)
    assert np.allclose(unit_rows(np.stack([top, -top])), [[0.125] * 64, [-0.125] * 64])
    sims = cosines([(1, top.tobytes(), None), (2, (-top).tobytes(), None)], direction, -2.0)
    assert sims == pytest.approx({1: 1.0, 2: -1.0})


def test_removed_and_replaced_vectors_never_come_back(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", CONFIG)
    ix.add("default", keys(0, 1000), vecs[:1000])
    assert ix.remove("default", [5, 6, 99_999]) == 2
    assert len(ix) == 998
    for q in (4, 5):
        assert {k for k, _ in ix.search("default", vecs[q], 50)}.isdisjoint({5, 6})
    # Key 7 now holds another memory's vector (an updated memory): found by the new one
    # only, and still one entry.
    ix.add("default", [7], vecs[2000:2001])
    assert len(ix) == 998
    assert ix.search("default", vecs[2000], 1)[0][0] == 7
    assert 7 not in {k for k, _ in ix.search("default", vecs[6], 5)}
    # Within one batch the last vector of a key wins.
    ix.add("default", [8, 8], vecs[2001:2003])
    assert ix.search("default", vecs[2002], 1)[0][0] == 8
    assert len(ix) == 998


def test_spaces_are_isolated_and_hold_one_dimension(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", CONFIG)
    ix.add("alpha", keys(0, 500), vecs[:500])
    ix.add("beta", keys(0, 500), vecs[500:1000])
    assert ix.search("alpha", vecs[10], 1)[0][0] == 11
    assert ix.search("beta", vecs[510], 1)[0][0] == 11
    assert ix.search("beta", vecs[10], 1)[0][1] < 0.98  # alpha's vector is not in beta
    assert ix.search("gamma", vecs[10], 5) == []
    with pytest.raises(InvalidArgument, match=r"768 dimensions; space 'alpha' holds 256"):
        ix.add("alpha", [9999], np.ones((1, 768), np.float32))
    with pytest.raises(InvalidArgument, match=r"cue has 768 dimensions.*holds 256"):
        ix.search("alpha", np.ones(768, np.float32), 5)
    ix.add("wide", [1], np.ones((1, 768), np.float32))  # another space, its own dimension
    assert ix.dim("wide") == 768 and ix.dim("alpha") == 256
    stats = ix.stats()
    assert stats.count == 1001 and set(stats.spaces) == {"alpha", "beta", "wide"}
    assert stats.bytes > 0 and stats.unsaved == 1001


def test_save_and_open_keep_everything_in_private_files(tmp_path, vecs):
    d = tmp_path / "vec"
    ix = VectorIndex.open(d, CONFIG)
    ix.add("alpha", keys(0, 1500), vecs[:1500])
    ix.add("beta", keys(0, 100), vecs[1500:1600])
    ix.save(41)
    before = ix.search("alpha", vecs[3], 10)
    ix.add("beta", [500], vecs[2500:2501])
    ix.save(42)  # alpha unchanged: its file is kept, not rewritten
    assert ix.stats().unsaved == 0
    again = VectorIndex.open(d, CONFIG)
    assert again.rebuild_reason == "" and again.watermark == 42
    assert len(again) == 1601
    assert again.search("alpha", vecs[3], 10) == before
    assert again.search("beta", vecs[2500], 1)[0][0] == 500
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    names = sorted(p.name for p in d.iterdir())
    assert names == sorted([MANIFEST, "alpha.1.faiss", "beta.2.faiss"]), names
    for p in d.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_a_symlinked_directory_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePath, match="is a symbolic link"):
        VectorIndex.open(tmp_path / "link", CONFIG)


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing", "manifest", "model"])
def test_unusable_files_mean_an_empty_index_and_a_reason(tmp_path, vecs, damage):
    d = tmp_path / "vec"
    ix = VectorIndex.open(d, CONFIG)
    ix.add("alpha", keys(0, 300), vecs[:300])
    ix.save(7)
    data = d / "alpha.1.faiss"
    config = CONFIG
    if damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        os.truncate(data, data.stat().st_size // 2)
    elif damage == "missing":
        data.unlink()
    elif damage == "manifest":
        (d / MANIFEST).write_text("{not json")
    else:
        config = IndexConfig(model="another-model")
    again = VectorIndex.open(d, config)
    assert again.watermark == 0 and len(again) == 0 and again.rebuild_reason
    # The caller rebuilds from SQLite; the next save replaces the damaged files.
    again.add("alpha", keys(0, 300), vecs[:300])
    again.save(8)
    assert VectorIndex.open(d, config).watermark == 8


def test_a_coded_file_of_another_layout_is_refused_when_read(tmp_path, vecs):
    # Whole (its checksum matches) but not our parts in order (the fast-scan lists, then
    # the 8-bit codes): here lists and no 8-bit codes, as a later version might lay them
    # out, an earlier version's fast-scan codes of one list, lists that lack codes the
    # 8-bit codes hold, codes of residuals, or another kind of 8-bit code. It must be
    # refused at open, where the caller rebuilds, not answer each search with faiss's "key
    # not found" (INTERNAL) or wrong scores.
    import faiss

    from engram_cli.engine import ivf

    dim = vecs.shape[1]
    coded = ivf.train(dim, vecs)
    coded.add_with_ids(vecs, keys(0, len(vecs)))
    path = tmp_path / "alpha.1.faiss"
    # An 8-bit half with a range per dimension: re-scoring decodes one range for all.
    per_dim = faiss.IndexIVFScalarQuantizer(ivf._one_list(dim), dim, 1,
                                            faiss.ScalarQuantizer.QT_8bit,
                                            faiss.METRIC_INNER_PRODUCT, False)
    per_dim.train(vecs)
    per_dim.add_with_ids(vecs, keys(0, len(vecs)))
    one_list = faiss.IndexIVFPQFastScan(ivf._one_list(dim), dim, 1, ivf.pq_m(dim), 4,
                                        faiss.METRIC_INNER_PRODUCT, ivf.FAST_SCAN_BLOCK)
    one_list.by_residual = False
    one_list.train(vecs)
    one_list.add_with_ids(vecs, keys(0, len(vecs)))
    empty_lists = ivf.train(dim, vecs).lists  # lists that lack the 8-bit codes' keys
    residual = faiss.deserialize_index(faiss.serialize_index(empty_lists))
    residual.by_residual = True
    lists = coded.lists
    for parts in ([lists, lists], [lists, per_dim], [one_list, coded.codes],
                  [empty_lists, coded.codes], [residual, coded.codes], [lists]):
        with path.open("wb") as f:
            writer = faiss.PyCallbackIOWriter(f.write)
            for part in parts:
                faiss.write_index(part, writer)
            del writer
        with pytest.raises(ValueError, match=r"not (a coded|one of this version's) vector"):
            ivf.read(path, coded=True)
    with path.open("wb") as f:
        ivf.write(coded, f.write)
    again = ivf.read(path, coded=True)
    assert again.ntotal == int(again.lists.ntotal) == len(vecs)


def test_a_coded_store_scans_half_its_lists_on_each_of_two_threads_or_all_on_one(
        tmp_path, vecs, monkeypatch):
    # A search of a large store scans the halves of its lists side by side when no other
    # search is under way and the other thread is free, else every list: near the same
    # answers either way (half the candidates from each half are not quite the whole's).
    # (Large: here from 0 bytes.) Whichever thread is free takes the next half; so that
    # each takes one here, each scans only once the other is scanning too (a thread
    # starts slower than it scans a small half, and scans one faster than the other
    # thread takes the lock for its own).
    from engram_cli.engine import ivf

    monkeypatch.setattr(ivf, "SPLIT_BYTES", 0)
    scanned_on: list[str] = []
    scan = ivf._scan
    here = threading.current_thread().name
    paired, pairing = threading.Barrier(2), {"on": False, "missed": False}

    def counted(*args: object) -> object:
        scanned_on.append(threading.current_thread().name)
        if pairing["on"] and not pairing["missed"]:
            try:
                paired.wait(5)
            except threading.BrokenBarrierError:  # the other never came: fails below
                pairing["missed"] = True
        return scan(*args)

    monkeypatch.setattr(ivf, "_scan", counted)
    coded = ivf.train(vecs.shape[1], vecs)
    coded.add_with_ids(vecs[:2001], keys(0, 2001))
    for i in range(2001, 2011):  # one at a time, as a trickle of writes adds them
        coded.add_with_ids(vecs[i:i + 1], keys(i, i + 1))
    # the halves: the lists dealt in turn
    assert ivf.HALVES == 2 and [len(h) for h in coded._halves] == [coded.lists.nlist // 2] * 2
    assert sorted(np.concatenate(coded._halves).tolist()) == list(range(coded.lists.nlist))
    coded.install_lookup(*coded.lookup_keys())
    cues = range(0, 2011, 40)
    pairing["on"] = True
    beside = [ivf.search(coded, vecs[i:i + 1], 10, 64) for i in cues]
    pairing["on"] = False
    assert not pairing["missed"]
    assert scanned_on.count(here) == len(cues) and all(
        name.startswith("engram-scan-beside") for name in scanned_on if name != here)
    scanned_on.clear()
    assert ivf._BESIDE._free.acquire(blocking=False)  # busy: every probe scanned inline
    try:
        inline = [ivf.search(coded, vecs[i:i + 1], 10, 64) for i in cues]
    finally:
        ivf._BESIDE._free.release()
    assert scanned_on == [here] * len(cues)  # the whole
    # Through the index: another search under way (here: this thread already inside the
    # index's read lock), and this one keeps to itself; alone, it splits.
    ix = VectorIndex.open(tmp_path / "vec", IndexConfig(model=DEFAULT_MODEL, train_at=500,
                                                        candidates=64))
    ix.add("default", keys(0, 2011), vecs[:2011])
    assert ix.rebuild("default")
    scanned_on.clear()
    with ix._lock.read():
        under_way = [ix.search("default", vecs[i], 10) for i in cues]
    assert scanned_on == [here] * len(cues)
    scanned_on.clear()
    pairing["on"] = True
    alone = [ix.search("default", vecs[i], 10) for i in cues]
    pairing["on"] = False
    assert not pairing["missed"]
    assert scanned_on.count(here) == len(cues) and len(scanned_on) == 2 * len(cues)
    live = keys(0, 2011)
    for answers in (beside, inline, under_way, alone):
        assert all(got[0][0] == i + 1 for i, got in zip(cues, answers, strict=True))
        hits = sum(len({k for k, _ in got} & exact(vecs, vecs[i], 10, live))
                   for i, got in zip(cues, answers, strict=True))
        assert hits / (10 * len(cues)) >= 0.9
    same = sum(len({k for k, _ in a} & {k for k, _ in b})
               for a, b in zip(beside, inline, strict=True))
    assert same / (10 * len(cues)) >= 0.95


_WRITER = r"""
import sys
import numpy as np
from engram_cli.engine.vectors import IndexConfig, VectorIndex
d, mode = sys.argv[1], sys.argv[2]
vecs = np.load(sys.argv[3])
ix = VectorIndex.open(__import__("pathlib").Path(d), IndexConfig(model="m"))
step = 100
if mode == "saves":  # save after every step: the watermark is the rows indexed
    for n in range(step, len(vecs) + 1, step):
        ix.add("default", np.arange(n - step + 1, n + 1), vecs[n - step:n])
        ix.save(n)
        print(n, flush=True)
    sys.stdin.read()
else:  # one save at 1000, then more adds that are never saved
    ix.add("default", np.arange(1, 1001), vecs[:1000])
    ix.save(1000)
    ix.add("default", np.arange(1001, 2001), vecs[1000:2000])
    ix.remove("default", np.arange(1, 101))
    print("ready", flush=True)
    sys.stdin.read()
"""


def _kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe:
            pipe.close()


def _writer(tmp_path: Path, vecs: np.ndarray, mode: str) -> subprocess.Popen:
    np.save(tmp_path / "v.npy", vecs)
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "vec"), mode,
                             str(tmp_path / "v.npy")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_kill9_after_unsaved_changes_then_replay(tmp_path, vecs):
    proc = _writer(tmp_path, vecs, "unsaved")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    _kill9(proc)
    ix = VectorIndex.open(tmp_path / "vec", IndexConfig(model="m"))
    assert ix.rebuild_reason == "" and ix.watermark == 1000 and len(ix) == 1000
    # Replay what came after the watermark (twice: replaying is idempotent).
    for _ in range(2):
        ix.add("default", np.arange(1001, 2001), vecs[1000:2000])
        ix.remove("default", np.arange(1, 101))
    assert len(ix) == 1900
    assert ix.search("default", vecs[1500], 1)[0][0] == 1501
    assert 50 not in {k for k, _ in ix.search("default", vecs[49], 20)}


def test_kill9_in_the_middle_of_saves_leaves_a_whole_save(tmp_path, vecs):
    proc = _writer(tmp_path, vecs, "saves")
    assert proc.stdout is not None
    # Kill it somewhere inside a save: after some saves were reported, at once.
    for _ in range(7):
        proc.stdout.readline()
    _kill9(proc)
    ix = VectorIndex.open(tmp_path / "vec", IndexConfig(model="m"))
    assert ix.rebuild_reason == ""
    assert ix.watermark >= 700 and len(ix) == ix.watermark  # the files match their watermark
    assert not [p for p in (tmp_path / "vec").iterdir() if p.name.endswith(".tmp")]


def test_searches_run_while_one_writer_adds(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", CONFIG)
    ix.add("default", keys(0, 1000), vecs[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                q = int(rng.integers(0, 1000))
                got = ix.search("default", vecs[q], 5)
                assert got and all(1 <= k <= len(vecs) for k, _ in got)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for start in range(1000, len(vecs), 250):
            ix.add("default", keys(start, start + 250), vecs[start:start + 250])
            ix.remove("default", keys(start - 1000, start - 990))
        ix.save(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(ix) == len(vecs) - 80


# ------------------------------------------------------------------ the fresh segment


def test_a_fresh_vector_is_found_at_once_and_after_its_merge(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", CONFIG)
    ix.add("default", keys(0, 1000), vecs[:1000])
    ix.add_fresh("default", keys(1000, 1500), vecs[1000:1500], since=10)
    assert ix.fresh() == 500 and len(ix) == 1500 and ix.stats().fresh == 500
    assert ix.search("default", vecs[1200], 1)[0][0] == 1201  # fresh, found exactly
    assert ix.search("default", vecs[10], 1)[0][0] == 11  # the index, beside it
    live = keys(0, 1500)
    for q in (5, 1100, 1499):  # the index may order near-ties otherwise
        got = {k for k, _ in ix.search("default", vecs[q], 10)}
        assert len(got & exact(vecs, vecs[q], 10, live)) >= 8
    while ix.merge():
        pass
    assert ix.fresh() == 0 and len(ix) == 1500
    assert ix.search("default", vecs[1200], 1)[0][0] == 1201  # in the index now


def test_a_removed_or_replaced_fresh_vector_never_comes_back(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", CONFIG)
    ix.add("default", keys(0, 500), vecs[:500])
    ix.add_fresh("default", keys(500, 600), vecs[500:600], since=1)
    ix.remove("default", [551, 7])  # one fresh, one in the index
    # key 20 (in the index) and key 560 (fresh) get new vectors: the old ones must go
    ix.add_fresh("default", [20, 560], vecs[2000:2002], since=2)
    assert ix.fresh() == 100 and len(ix) == 598
    for q, gone in ((550, 551), (6, 7), (19, 20), (559, 560)):
        assert gone not in {k for k, _ in ix.search("default", vecs[q], 50)}
    assert ix.search("default", vecs[2000], 1)[0][0] == 20
    assert ix.search("default", vecs[2001], 1)[0][0] == 560
    while ix.merge(7):  # small moves: the segment's head passes removed rows
        for q, gone in ((550, 551), (559, 560)):
            assert gone not in {k for k, _ in ix.search("default", vecs[q], 50)}
    assert ix.fresh() == 0 and len(ix) == 598
    assert ix.search("default", vecs[2001], 1)[0][0] == 560
    with pytest.raises(InvalidArgument):
        ix.add_fresh("default", [9999], np.ones((1, 768), np.float32), since=3)


def test_a_save_with_fresh_vectors_records_a_watermark_before_them(tmp_path, vecs):
    ix = VectorIndex.open(tmp_path / "vec", CONFIG)
    ix.add_fresh("default", keys(0, 300), vecs[:300], since=0)
    ix.merge(10_000)
    ix.add_fresh("default", keys(300, 400), vecs[300:400], since=30)
    ix.add_fresh("default", keys(400, 500), vecs[400:500], since=40)
    ix.save(50)
    assert ix.watermark == 30  # the vectors of changes 31..50 are not in the files
    again = VectorIndex.open(tmp_path / "vec", CONFIG)
    assert again.watermark == 30 and len(again) == 300 and again.fresh() == 0
    while ix.merge():
        pass
    ix.save(50)
    assert VectorIndex.open(tmp_path / "vec", CONFIG).watermark == 50
