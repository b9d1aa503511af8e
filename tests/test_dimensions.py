"""A space holds one dimension, decided by the first vector committed to it (the client's
own embedding, or the vector the server computed for a text-only memory): a vector of
another dimension is refused on the write path, alone, naming both numbers and the space,
through every write RPC, after a restart, and in a store made before the rule."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from engram_cli.contract import RECALL_MODE_KEY
from engram_cli.engine import migrations
from engram_cli.engine.model import MemoryRecord, memory_key
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import DB_NAME, Store
from engram_cli.errors import InvalidArgument
from engram_cli.rpc import ext, pb
from tests import import_support
from tests.rpc_helpers import recall, stubs


def vec(dim: int, seed: int = 0) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return [float(x) for x in v / np.linalg.norm(v)]


def memory(content: str, dim: int = 0, seed: int = 0, **fields: Any) -> Any:
    return pb.Memory(content=content, embedding=vec(dim, seed) if dim else [],
                     confidence=pb.Confidence(value=0.9), **fields)


def remember(stub: Any, space: str, m: Any) -> Any:
    return stub.Remember(pb.RememberRequest(memory_space_id=space, memory=m))


def refused(call: Callable[[], Any]) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return str(err.value.details())


wait_for = functools.partial(import_support.wait_for, timeout=30.0)


def test_unary_remember_refuses_another_dimension_naming_both(server: Any) -> None:
    with stubs(server.address) as (stub, _):
        remember(stub, "small", memory("first", 256, id="first"))
        why = refused(lambda: remember(stub, "small", memory("second", 768)))
        assert "embedding has 768 dimensions; space 'small' holds 256" in why
        # Updating a stored memory to another dimension is refused as well.
        why = refused(lambda: remember(stub, "small", memory("first", 768, id="first")))
        assert "768" in why and "256" in why
        # A text-only memory has no vector to compare: stored (the server embeds it).
        assert remember(stub, "small", memory("a note without a vector")).memory_id
        # Another space decides its own dimension; the default space too.
        assert remember(stub, "wide", memory("wide one", 768)).memory_id
        assert remember(stub, "", memory("default one", 768, seed=1)).memory_id
        # A cue of another dimension is refused the same way, before the index is asked.
        cue = pb.Cue(embedding=pb.EmbeddingCue(vector=vec(768)))
        why = refused(lambda: stub.Recall(pb.RecallRequest(memory_space_id="small", cue=cue)))
        assert "768 dimensions; space 'small' holds 256" in why
        # A text cue in a space of the client's 768-d vectors seeds by words (the server's
        # 256-d model cannot compare with them), never fails.
        assert [m.content for m in recall(stub, "wide one", space="wide").memories] == [
            "wide one"]
        # Asked to seed by vector alone, it says why it cannot, rather than answer nothing.
        wait_for(server.store.indexer.ready.is_set)  # the model loaded
        why = refused(lambda: stub.Recall(pb.RecallRequest(
            memory_space_id="wide", cue=pb.Cue(semantic=pb.SemanticCue(query="wide one"))),
            metadata=[(RECALL_MODE_KEY, "vector")]))
        assert "space 'wide' holds 768-dimensional vectors" in why and "gives 256" in why


def test_a_batch_refuses_the_item_alone_and_stores_its_neighbours(server: Any) -> None:
    with stubs(server.address) as (_, extension):
        # In a new space the batch's first vector decides: 256.
        resp = extension.BatchRemember(ext.BatchRememberRequest(
            memory_space_id="mixed",
            memories=[memory("a", 256, 1), memory("b", 768, 2), memory("c", 256, 3),
                      memory("text only"), memory("d", 128, 4)]))
        assert (resp.stored, resp.rejected) == (3, 2)
        by_index = {r.index: r for r in resp.results}
        for i, dim in ((1, 768), (4, 128)):
            assert by_index[i].outcome == ext.ITEM_OUTCOME_REJECTED
            assert by_index[i].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert by_index[i].error == (f"embedding has {dim} dimensions; space 'mixed' "
                                         "holds 256")
            assert by_index[i].memory_id  # the id it would have had, for the rejects file
        assert [by_index[i].outcome for i in (0, 2, 3)] == [ext.ITEM_OUTCOME_CREATED] * 3
        # compact answers: the same refusals.
        resp = extension.BatchRemember(ext.BatchRememberRequest(
            memory_space_id="mixed", compact=True,
            memories=[memory("e", 256, 5), memory("f", 768, 6)]))
        assert list(resp.outcomes) == [ext.ITEM_OUTCOME_CREATED, ext.ITEM_OUTCOME_REJECTED]
        assert "768 dimensions" in resp.results[0].error
    assert server.store.stats("mixed")["total_memories"] == 4


def test_a_stream_answers_the_refusal_in_place_and_goes_on(server: Any) -> None:
    items = [memory("s1", 64, 1), memory("s2", 32, 2), memory("s3", 64, 3)]
    with stubs(server.address) as (stub, _):
        answers = list(stub.StreamingRemember(
            pb.RememberRequest(memory_space_id="streamed", memory=m) for m in items))
    assert [bool(a.memory_id) for a in answers] == [True, False, True]
    assert answers[1].storage_confidence.reasoning == (
        "rejected: embedding has 32 dimensions; space 'streamed' holds 64")
    assert server.store.stats("streamed")["total_memories"] == 2


def test_the_dimension_survives_a_restart_and_kill9(tmp_path: Path,
                                                    server_process: Callable[..., Any]
                                                    ) -> None:
    data = tmp_path / "data"
    first = server_process(data, "--idle-timeout", "0")
    with stubs(first.address) as (stub, _):
        remember(stub, "kept", memory("first", 48))
    first.kill9()
    second = server_process(data, "--idle-timeout", "0")
    with stubs(second.address) as (stub, _):
        why = refused(lambda: remember(stub, "kept", memory("second", 96)))
        assert "embedding has 96 dimensions; space 'kept' holds 48" in why
        assert remember(stub, "kept", memory("third", 48, seed=3)).memory_id
    assert second.terminate() == 0


def test_a_space_embedded_by_the_server_holds_the_models_dimension(server: Any) -> None:
    store = server.store
    with stubs(server.address) as (stub, extension):
        remember(stub, "texts", memory("The kettle whistles when the water boils"))
        wait_for(lambda: store.vector_stats()["embedded"] >= 1)
        why = refused(lambda: remember(stub, "texts", memory("mine", 768)))
        assert "embedding has 768 dimensions; space 'texts' holds 256" in why
        assert remember(stub, "texts", memory("mine", 256)).memory_id
        # Dropping the space forgets its dimension: it may come back as another.
        extension.DropSpace(ext.DropSpaceRequest(memory_space_id="texts"))
        assert remember(stub, "texts", memory("wide now", 768)).memory_id
        wait_for(lambda: store.vector_stats()["pending"] == 0)
    top = store.recall("texts", RecallQuery(embedding=np.asarray(
        vec(768), np.float32).tobytes(), limit=1)).memories
    assert [m.content for m in top] == ["wide now"]


def test_text_only_memories_beside_a_client_s_own_vectors_leave_the_dimension_alone(
        server: Any) -> None:
    """An upstream client's 768-d vectors and, in the same space, a memory sent as text:
    the server embedded the text (256-d) and stored the vector with INSERT OR REPLACE,
    which made the dimension trigger's INSERT OR IGNORE a REPLACE. The space then held
    256, and the client's next 768-d memory was refused."""
    store = server.store
    with stubs(server.address) as (stub, _):
        remember(stub, "mixed", memory("the client's own vector", 768))
        remember(stub, "mixed", memory("The kettle whistles when the water boils"))
        wait_for(lambda: store.vector_stats()["pending"] == 0)
        time.sleep(0.5)  # the indexer's write, if it made one, has landed
        assert remember(stub, "mixed", memory("another of the client's", 768, seed=1)
                        ).memory_id
        found = recall(stub, "kettle whistles", space="mixed").memories
        assert [m.content for m in found] == ["The kettle whistles when the water boils"]
    conn = store._reader()
    assert conn.execute("SELECT dim FROM space_dims WHERE space = 'mixed'").fetchall() == [
        (768,)]
    assert conn.execute("SELECT count(*) FROM vectors").fetchone() == (0,)


def test_an_older_store_gets_each_spaces_dimension_from_its_oldest_vector(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / DB_NAME, isolation_level=None)
    conn.create_function("engram_key", 2, memory_key, deterministic=True)
    saved = migrations.MIGRATIONS
    migrations.MIGRATIONS = saved[:6]  # as the release before the rule left a store
    try:
        migrations.migrate(conn)
    finally:
        migrations.MIGRATIONS = saved
    now = time.time()

    def put(space: str, mid: str, embedding: bytes | None) -> int:
        return int(conn.execute(
            "INSERT INTO memories (space, id, key, content, embedding, confidence, "
            "created_at, last_access, updated_at) VALUES (?, ?, ?, ?, ?, 0.9, ?, ?, ?)",
            (space, mid, memory_key(space, mid), "" if embedding else "words only",
             embedding, now, now, now)).lastrowid)

    # Before the rule a space could take vectors of several sizes: the oldest decides.
    for i, dim in enumerate((16, 8, 16)):
        put("old", f"m{i}", np.ones(dim, np.float32).tobytes())
    # A vector the server had computed (float16) decides a text-only space.
    rid = put("text", "t", None)
    conn.execute("INSERT INTO vectors (rid, model, vec) VALUES (?, 'm', ?)",
                 (rid, np.ones(32, "<f2").tobytes()))
    conn.close()
    with Store(data, Settings().replace({"embedding_model": "none"})) as store:
        assert store.applied_migrations == ["007_space_dims", "008_fts_usermerge",
                                            "009_space_dims_taken_over",
                                            "010_visible_index",
                                            "011_own_vectors_supersede",
                                            "012_visible_index_ranks",
                                            "013_store_identity"]
        out = store.remember_many("old", [
            MemoryRecord(id="n16", content="", embedding=np.ones(16, np.float32).tobytes()),
            MemoryRecord(id="n8", content="", embedding=np.ones(8, np.float32).tobytes())])
        assert [o.outcome for o in out] == ["created", "rejected"]
        assert out[1].error == "embedding has 8 dimensions; space 'old' holds 16"
        out = store.remember_many("text", [MemoryRecord(
            id="n", content="", embedding=np.ones(16, np.float32).tobytes())])
        assert out[0].error == "embedding has 16 dimensions; space 'text' holds 32"
    with sqlite3.connect(data / DB_NAME) as conn:
        assert dict(conn.execute("SELECT space, dim FROM space_dims")) == {"old": 16,
                                                                            "text": 32}


def test_a_space_whose_dimension_the_server_took_over_gets_it_back(tmp_path: Path) -> None:
    """A store an earlier version left with a space of a client's own 768-d vectors whose
    recorded dimension the server's computed 256-d vector had replaced (see above), and a
    saved index that held the space at 256: migration 009 gives the space 768 back, drops
    the computed vector, and the indexer indexes the space again at 768."""
    data = tmp_path / "data"
    with Store(data) as store:
        store.remember_many("mixed", [MemoryRecord(id="t", content="The kettle whistles")])
        wait_for(lambda: store.vector_stats()["pending"] == 0)
        assert store.indexer.index.dim("mixed") == 256
    with sqlite3.connect(data / DB_NAME, isolation_level=None) as conn:
        conn.create_function("engram_key", 2, memory_key, deterministic=True)
        now = time.time()
        conn.execute(  # accepted while the space held 768, before the takeover
            "INSERT INTO memories (space, id, key, content, embedding, confidence, "
            "created_at, last_access, updated_at) VALUES ('mixed', 'own', ?, 'own vector', "
            "?, 0.9, ?, ?, ?)", (memory_key("mixed", "own"),
                                 np.asarray(vec(768), np.float32).tobytes(), now, now, now))
        conn.execute("DELETE FROM schema_migrations WHERE version = 9")
    with Store(data) as store:
        assert store.applied_migrations == ["009_space_dims_taken_over"]
        wait_for(lambda: store.indexer.ready.is_set())
        wait_for(lambda: store.indexer.index.dim("mixed") == 768)
        wait_for(lambda: store.vector_stats()["pending"] == 0)
        cue = np.asarray(vec(768), np.float32).tobytes()
        top = store.recall("mixed", RecallQuery(embedding=cue, limit=1)).memories
        assert [m.id for m in top] == ["own"]
        out = store.remember_many("mixed", [MemoryRecord(
            id="own2", content="", embedding=np.asarray(vec(768, 2), np.float32).tobytes())])
        assert out[0].outcome == "created", out[0].error
        conn = store._reader()
        assert conn.execute("SELECT count(*) FROM vectors").fetchone() == (0,)


def test_engram_import_writes_the_refused_vector_to_its_rejects_file(
        engram: Callable[..., Any], server: Any, tmp_path: Path) -> None:
    import orjson

    path = tmp_path / "vectors.jsonl"
    rows = [{"id": "a", "content": "first", "embedding": vec(16, 1)},
            {"id": "b", "content": "second", "embedding": vec(24, 2)},
            {"id": "c", "content": "third", "embedding": vec(16, 3)}]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    result = engram("--space", "imported", "import", str(path), "--json")
    assert result.exit_code == 3, result.output  # finished, some records rejected
    rejects = [orjson.loads(x) for x in (tmp_path / "vectors.jsonl.rejects.jsonl")
               .read_bytes().splitlines()]
    assert [(r["id"], r["_reject"]["line"]) for r in rejects] == [("b", 2)]
    assert rejects[0]["_reject"]["reason"].endswith(
        "embedding has 24 dimensions; space 'imported' holds 16")
    assert [m.id for m in server.store.get("imported", ["a", "b", "c"])] == ["a", "c"]


def test_a_text_cue_by_vector_alone_on_a_server_that_embeds_nothing_says_so(
        tmp_path: Path) -> None:
    with Store(tmp_path / "data", Settings().replace({"embedding_model": "none"})) as store:
        wait_for(store.indexer.ready.is_set)
        store.remember_many("default", [MemoryRecord(id="a", content="a chalet in the Alps")])
        assert [r.id for r in store.recall("default", RecallQuery(text="chalet")).memories
                ] == ["a"]
        with pytest.raises(InvalidArgument, match='embedding_model is "none"'):
            store.recall("default", RecallQuery(text="chalet", mode="vector"))
