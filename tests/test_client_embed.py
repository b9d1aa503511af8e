"""Embedding on the client (`import --embed`, `recall --embed`) against the faithful
upstream fake (tests/upstream_fake.py) and our own server: a text-only import stops at
once naming --embed, embedded records arrive with 768 floats, a stream cut by one bad item
loses and doubles nothing, the embedding cache survives --resume."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from engram_cli.cli.main import app
from engram_cli.client.batching import frame
from tests.conftest import UpstreamServer
from tests.import_support import count_on, records, run_import, write_jsonl
from tests.upstream_fake import UPSTREAM_DIM, UPSTREAM_VECTOR


def summary_of(result: Any) -> dict[str, Any]:
    return dict(orjson.loads(result.stdout.strip().splitlines()[-1]))


def test_text_only_import_into_upstream_stops_at_once_naming_embed(
        runner: Any, upstream_server: UpstreamServer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", records(2000))
    result = runner.invoke(app, ["--server", upstream_server.address, "import", str(path),
                                 "--batch", "100"])
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert "768-dimensional" in err and "--embed --embed-dim 768" in err, err
    assert err.count("Error:") == 1
    assert not (tmp_path / "t.jsonl.rejects.jsonl").exists()  # nothing rejected one by one
    assert upstream_server.servicer.remembered == 0


def test_import_embed_sends_768_floats_to_upstream(
        runner: Any, upstream_server: UpstreamServer, tmp_path: Path) -> None:
    rows = records(300)
    rows[5]["embedding"] = UPSTREAM_VECTOR  # a record with its own vector keeps it
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    result = runner.invoke(app, ["--server", upstream_server.address, "import", str(path),
                                 "--embed", "--embed-dim", "768", "--embed-workers", "1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    s = summary_of(result)
    assert (s["imported"], s["embedded"], s["embed_cache_hits"]) == (300, 299, 0)
    assert s["mode"] == "stream"
    fake = upstream_server.servicer
    assert fake.remembered == 300 == count_on(upstream_server.address)
    assert fake.embeddings_seen == [UPSTREAM_DIM] * 300


def test_padding_keeps_the_models_vector_and_its_cosines(tmp_path: Path) -> None:
    from engram_cli.client.embedder import EmbedSpec
    from engram_cli.engine.embedding import load_model

    model = load_model("wordllama-l2-supercat-256")
    assert model is not None
    v = model.embed(["a cottage in the mountains", "a chalet in the Alps", "tax forms"])
    padded = EmbedSpec.resolve(None, 768).fit(v)
    assert padded.shape == (3, 768) and not padded[:, 256:].any()
    assert np.allclose(padded @ padded.T, v @ v.T, atol=1e-6)
    short = EmbedSpec.resolve(None, 64).fit(v)  # Matryoshka: truncated, unit length again
    assert short.shape == (3, 64) and np.allclose(np.linalg.norm(short, axis=1), 1, atol=1e-5)


def test_a_stream_cut_by_one_bad_item_stores_every_other_record_once(
        runner: Any, upstream_server: UpstreamServer, tmp_path: Path) -> None:
    rows = [{**r, "embedding": UPSTREAM_VECTOR} for r in records(120)]
    rows[40]["embedding"] = [0.5] * 10  # upstream refuses it and ends the stream there
    rows[90]["embedding"] = [0.5] * 12
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    result = runner.invoke(app, ["--server", upstream_server.address, "import", str(path),
                                 "--batch", "50", "--json"])
    assert result.exit_code == 3, result.output
    s = summary_of(result)
    assert (s["imported"], s["rejected"]) == (118, 2)
    fake = upstream_server.servicer
    assert fake.remembered == 118 == count_on(upstream_server.address)  # none twice
    rejects = [orjson.loads(line)["_reject"] for line in
               (tmp_path / "t.jsonl.rejects.jsonl").read_bytes().splitlines()]
    assert sorted(r["line"] for r in rejects) == [41, 91]  # in the order refused
    assert all("Embedding must be exactly 768 dimensions" in r["reason"] for r in rejects)
    assert fake.streams >= 4  # each refusal ended a stream; the rest went on new ones


def test_embedding_cache_survives_resume_and_nothing_is_embedded_twice(
        server_process: Any, tmp_path: Path, isolated_env: Path) -> None:
    sp = server_process()
    rows = [*records(400), {"content": ""}, *records(400, start=400)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    args = (str(path), "--embed", "--embed-workers", "0", "--batch", "50", "--json")
    first = run_import(sp.address, *args, "--max-errors", "0")
    assert first.returncode == 1, first.stderr
    s1 = orjson.loads(first.stdout.strip().splitlines()[-1])
    resumed = run_import(sp.address, *args, "--resume")
    assert resumed.returncode == 3, resumed.stderr
    s2 = orjson.loads(resumed.stdout.strip().splitlines()[-1])
    # Every distinct text embedded once over both runs; what the resumed run sends again
    # (from its checkpoint) comes from the cache.
    assert s1["embedded"] + s2["embedded"] == 800
    assert s2["embed_cache_hits"] > 0
    assert count_on(sp.address) == 800
    again = run_import(sp.address, *args)
    s3 = orjson.loads(again.stdout.strip().splitlines()[-1])
    assert (s3["embedded"], s3["embed_cache_hits"]) == (0, 800)
    folder = isolated_env / "cache" / "embeddings"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for f in folder.iterdir():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f


def test_recall_embed_sends_an_embedding_cue_and_a_cache_hit_loads_no_model(
        runner: Any, upstream_server: UpstreamServer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"content": "a small wooden cottage high in the Swiss mountains", "confidence": 0.97},
        {"content": "quarterly tax forms for the accountant", "confidence": 0.97}])
    imported = runner.invoke(app, ["--server", upstream_server.address, "import", str(path),
                                   "--embed", "--embed-dim", "768", "--embed-workers", "0"])
    assert imported.exit_code == 0, imported.output
    ask = ["--server", upstream_server.address, "recall", "--embed", "--embed-dim", "768",
           "a chalet in the Alps", "--format", "json", "--limit", "1"]
    result = runner.invoke(app, ask)
    assert result.exit_code == 0, result.output
    assert upstream_server.servicer.recall_cues == ["embedding"]
    assert "cottage" in orjson.loads(result.stdout)["results"][0]["content"]
    text = runner.invoke(app, ["--server", upstream_server.address, "recall",
                               "a chalet in the Alps", "--format", "json", "--no-cache"])
    assert text.exit_code == 0, text.output
    assert upstream_server.servicer.recall_cues == ["embedding", "semantic"]
    wrong = runner.invoke(app, [*ask[:4], "--embed-dim", "300", *ask[6:]])
    assert wrong.exit_code == 2 and "768" in wrong.output, wrong.output


def test_a_cached_embedding_cue_loads_no_model_and_the_key_holds_the_model() -> None:
    from engram_cli.client.cache import Forgetting, RecallCache, cache_key
    from engram_cli.client.recall import Recaller, RecallOptions
    from engram_cli.config import Connection

    conn = Connection(server="127.0.0.1:1", space="")
    embed = RecallOptions(embed="wordllama-l2-supercat-256", embed_dim=768)
    assert embed.key_params(None) != RecallOptions().key_params(None)
    assert embed.key_params(None) != RecallOptions(
        embed="wordllama-l2-supercat-256").key_params(None)
    answer = [{"id": "mem_1", "content": "cottage", "confidence": 0.97,
               "confidence_category": "high", "activation": 0.8, "state": "consolidated",
               "tags": [], "decay_rate": 0.0}]
    with RecallCache.default() as cache:
        key = cache_key(conn.server, conn.space, "chalet", embed.key_params(None))
        assert cache.put(key, conn.server, conn.space, "chalet", answer,
                         Forgetting(exponent=0.1, floor=0.2, scale_s=86_400.0))
    with Recaller(conn, embed, RecallCache.default()) as recaller:
        got = recaller.recall("chalet")  # the server at :1 is never asked
        assert got.cached and got.results[0]["content"] == "cottage"
        assert recaller._embedder is None


@pytest.mark.parametrize("args, message", [
    (["--embed=no-such-model"], "unknown model"),
    # Written with a space, a name that is no input file is a model's, mistyped: it was
    # read as a missing input ("cannot read all-mpnet: no such file").
    (["--embed", "all-mpnet"], "unknown model 'all-mpnet'"),
    (["--embed-dim", "768"], "need --embed"),
    (["--embed", "--embed-dim", "0"], "--embed-dim 0 is not valid"),
])
def test_bad_embed_flags_are_usage_errors(runner: Any, tmp_path: Path, args: list[str],
                                          message: str) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", records(2))
    result = runner.invoke(app, ["import", str(path), "--dry-run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_missing_input_after_embed_is_still_a_missing_input(runner: Any, tmp_path: Path
                                                              ) -> None:
    result = runner.invoke(app, ["import", "--dry-run", "--embed", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1, result.output
    assert "x.jsonl: no such file" in result.output


def test_the_cache_written_behind_answers_at_once_and_keeps_every_row(tmp_path: Path) -> None:
    from engram_cli.client.embedder import EmbeddingCache, text_key

    path = tmp_path / "c" / "vectors.sqlite"
    cache = EmbeddingCache(path)
    keys = [text_key("m", f"text {i}") for i in range(1000)]
    vectors = np.random.default_rng(1).random((1000, 4), dtype=np.float32)
    for start in range(0, 1000, 100):
        cache.put_later(keys[start:start + 100], vectors[start:start + 100])
        # A text asked for again at once is answered, written yet or not.
        got = cache.get_many("m", 4, keys[start:start + 100])
        assert np.array_equal(np.stack([got[k] for k in keys[start:start + 100]]),
                              vectors[start:start + 100])
    cache.close()  # waits for the writer thread
    again = EmbeddingCache(path)
    got = again.get_many("m", 4, keys)
    again.close()
    assert len(got) == 1000 and np.array_equal(np.stack([got[k] for k in keys]), vectors)


def test_a_new_cache_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    """16 KB pages for a new cache (a vector a row); a cache made with 4 KB pages by an
    earlier version is read and written as it is."""
    import sqlite3

    from engram_cli.client.embedder import PAGE_SIZE, EmbeddingCache, text_key

    vectors = np.random.default_rng(4).random((20, 256), dtype=np.float32)
    keys = [text_key("m", f"text {i}") for i in range(20)]
    for name, made_with in (("new", None), ("old", 4096)):
        path = tmp_path / name / "vectors.sqlite"
        if made_with:
            path.parent.mkdir(mode=0o700)
            old = sqlite3.connect(path)
            old.execute(f"PRAGMA page_size = {made_with}")
            old.execute("PRAGMA journal_mode = WAL")
            old.execute("CREATE TABLE vectors (n INTEGER PRIMARY KEY, key BLOB NOT NULL "
                        "UNIQUE, vec BLOB NOT NULL)")
            old.close()
        cache = EmbeddingCache(path)
        cache.put_many(keys[:10], vectors[:10])
        cache.put_later(keys[10:], vectors[10:])
        cache.close()
        again = EmbeddingCache(path)
        got = again.get_many("m", 256, keys)
        conn = again._db()
        assert conn is not None
        assert conn.execute("PRAGMA page_size").fetchone()[0] == (made_with or PAGE_SIZE)
        again.close()
        assert np.array_equal(np.stack([got[k] for k in keys]), vectors), name


@pytest.mark.parametrize("content", ["x", "y" * 200, "z" * 20_000])
def test_a_vector_appended_to_a_framed_memory_is_that_memory_with_it(content: str) -> None:
    from engram_cli.client.batching import frame
    from engram_cli.client.embedder import embedding_field, embedding_field_head
    from engram_cli.ingest.embedstage import with_field
    from engram_cli.rpc import pb

    vector = np.random.default_rng(2).random(256, dtype=np.float32)
    memory = pb.Memory(id="a", content=content, tags=["t"]).SerializeToString()
    framed = with_field(frame(memory), embedding_field_head(256), vector.tobytes())
    sent = pb.RememberRequest.FromString(framed).memory
    assert (sent.id, sent.content, list(sent.tags)) == ("a", content, ["t"])
    assert np.array_equal(np.array(sent.embedding, dtype=np.float32), vector)
    assert embedding_field(vector) == embedding_field_head(256) + vector.tobytes()


def test_a_worker_process_runs_the_model_on_one_thread() -> None:
    from engram_cli.client.embedder import EmbedSpec
    from engram_cli.ingest.embedstage import EmbedStage

    stage = EmbedStage(EmbedSpec.resolve(None, None), workers=1)
    stage.start()
    try:
        assert stage._executor is not None
        got = stage._executor.submit(os.getenv, "TOKENIZERS_PARALLELISM").result(60)
    finally:
        stage.close()
    assert got == "false"


def test_the_cache_stays_within_its_bound_and_drops_the_oldest_first(tmp_path: Path) -> None:
    from engram_cli.client.embedder import EmbeddingCache, text_key

    path = tmp_path / "c" / "vectors.sqlite"
    cache = EmbeddingCache(path, max_mb=0.25)
    keys = [text_key("m", f"text {i}") for i in range(3000)]
    vectors = np.random.default_rng(3).random((3000, 64), dtype=np.float32)
    for start in range(0, 3000, 100):
        cache.put_later(keys[start:start + 100], vectors[start:start + 100])
    cache.close()
    again = EmbeddingCache(path)
    got = again.get_many("m", 64, keys)
    conn = again._db()
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute(
        "PRAGMA freelist_count").fetchone()[0]
    used = pages * conn.execute("PRAGMA page_size").fetchone()[0]
    again.close()
    assert used <= 0.25 * 1024 * 1024 + 64 * 1024  # the bound, and what one write adds
    assert keys[-1] in got and keys[0] not in got and 200 < len(got) < 3000
    kept = [i for i, k in enumerate(keys) if k in got]
    assert kept == list(range(kept[0], 3000))  # the newest, in one run


def test_the_stage_gives_each_record_its_texts_vector_wherever_it_comes_from(
        tmp_path: Path) -> None:
    """Cache hits, a text twice in one chunk, a text an earlier chunk still out is
    embedding, a record without text: each record goes out in order, framed, with the
    model's vector of its own text, and no text is embedded twice."""
    from engram_cli.client.batching import Entry
    from engram_cli.client.embedder import EmbeddingCache, EmbedSpec, text_key
    from engram_cli.engine.embedding import load_model
    from engram_cli.ingest.embedstage import EmbedStage
    from engram_cli.rpc import pb

    spec = EmbedSpec.resolve(None, None)
    model = load_model(spec.model)
    assert model is not None
    cache = EmbeddingCache(tmp_path / "c" / "vectors.sqlite")
    cached = ["cached one", "cached two"]
    cache.put_many([text_key(spec.model, t) for t in cached], model.embed(cached))
    texts = ["a", "b", "a", "cached one", None, "c", "b", "d", "cached two", "c", None, "e"]
    entries = []
    for i, text in enumerate(texts):
        memory = pb.Memory(id=f"m{i}", content=text or "").SerializeToString()
        entries.append(Entry(memory if text else frame(memory), 0, i + 1, i, b"", text))
    stage = EmbedStage(spec, workers=0, cache=cache, chunk=4)
    gate = threading.Event()

    def feed() -> Any:  # every chunk is out before the first comes back
        yield from entries
        gate.set()

    try:
        stage.start()
        assert stage._executor is not None
        stage._executor.submit(gate.wait, 60)
        out = list(stage.run(feed()))
    finally:
        stage.close()
    assert [e.line for e in out] == list(range(1, len(texts) + 1))
    for entry, text in zip(out, texts, strict=True):
        sent = pb.RememberRequest.FromString(entry.framed).memory
        assert sent.content == (text or "") and entry.text is None
        if text is None:
            assert len(sent.embedding) == 0
        else:
            want = model.embed([text])[0]
            assert np.allclose(np.array(sent.embedding, dtype=np.float32), want, atol=1e-6)
    assert (stage.embedded, stage.cache_hits) == (5, 2)  # a b c d e; the two cached


def test_a_cache_opened_while_another_process_writes_it_waits_its_turn(tmp_path: Path) -> None:
    # Two imports starting at once: the other one is creating the new cache file (a write
    # transaction, rollback mode still). Our switch to WAL is refused "database is locked"
    # at once, without the busy timeout's wait; the opening is tried again until it can be.
    from engram_cli.client.embedder import EmbeddingCache, text_key
    from tests.locks import being_created

    path = tmp_path / "c" / "vectors.sqlite"
    path.parent.mkdir(mode=0o700)
    with being_created(path):
        cache = EmbeddingCache(path)
        keys = [text_key("m", "a text")]
        cache.put_many(keys, np.ones((1, 4), dtype=np.float32))
        assert cache.error is None, cache.error
        assert list(cache.get_many("m", 4, keys)) == keys
        cache.close()
