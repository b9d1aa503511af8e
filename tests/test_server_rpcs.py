"""Every RPC we serve, against a real server on port 0."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engram_cli.engine.model import content_id
from engram_cli.rpc import ext, pb
from tests.rpc_helpers import PHONES, recall, remember, stubs, total


@pytest.fixture
def rpc(server):
    with stubs(server.address) as pair:
        yield pair


def test_remember_assigns_content_id_and_stores_once(rpc) -> None:
    stub, _ = rpc
    first = remember(stub, "The kettle in the studio whistles off key")
    again = remember(stub, "The kettle in the studio whistles off key")
    assert first.memory_id == again.memory_id == content_id(
        "The kettle in the studio whistles off key")
    assert first.initial_state == pb.CONSOLIDATION_STATE_RECENT
    assert first.storage_confidence.value == 1.0
    assert total(stub) == 1


def test_existing_id_is_replaced(rpc) -> None:
    stub, _ = rpc
    remember(stub, "old wording about the lighthouse", id="note-1")
    remember(stub, "new wording about the observatory", id="note-1")
    assert total(stub) == 1
    assert [m.id for m in recall(stub, "observatory").memories] == ["note-1"]
    assert recall(stub, "lighthouse").memories == []


def test_recall_ranks_the_only_match_first_and_honours_limits(rpc) -> None:
    stub, _ = rpc
    for i in range(30):
        remember(stub, f"Routine note {i} about the garden and the weather")
    remember(stub, "Zanzibar postcards arrived for Quentin", tags=["mail"],
             confidence=pb.Confidence(value=0.4))
    resp = recall(stub, "zanzibar postcards")
    assert resp.memories[0].content == "Zanzibar postcards arrived for Quentin"
    assert resp.metadata.total_activated >= 1
    assert resp.memories[0].metadata["engram.state"] == "recent"
    assert len(recall(stub, "garden weather", limit=5).memories) == 5
    # The cue's confidence threshold is the minimum confidence of a result.
    assert recall(stub, "zanzibar", threshold=pb.Confidence(value=0.5)).memories == []
    tagged = stub.Recall(pb.RecallRequest(cue=pb.Cue(semantic=pb.SemanticCue(
        query="zanzibar garden", required_tags=["mail"]))))
    assert [m.content for m in tagged.memories] == ["Zanzibar postcards arrived for Quentin"]


def test_embedding_cue_ranks_by_cosine(rpc) -> None:
    stub, _ = rpc
    remember(stub, "north", embedding=[1.0, 0.0, 0.0])
    remember(stub, "north-east", embedding=[0.7, 0.7, 0.0])
    remember(stub, "up", embedding=[0.0, 0.0, 1.0])
    resp = stub.Recall(pb.RecallRequest(cue=pb.Cue(embedding=pb.EmbeddingCue(
        vector=[0.9, 0.1, 0.0], similarity_threshold=0.5))))
    assert [m.content for m in resp.memories] == ["north", "north-east"]
    assert resp.memories[0].activation > resp.memories[1].activation


@pytest.mark.parametrize("scale", [1e20, 1e-30])
def test_embeddings_of_huge_or_tiny_values_rank_by_direction(rpc, scale) -> None:
    """Finite float32 values whose squares overflow or vanish in float32: the cue matched
    nothing (1e20) or was called all zeros (1e-30)."""
    stub, _ = rpc
    space = f"scale_{'big' if scale > 1 else 'tiny'}"
    for content, vec in (("north", [1.0, 0.0, 0.0]), ("north-east", [0.7, 0.7, 0.0]),
                         ("up", [0.0, 0.0, 1.0])):
        remember(stub, content, space, embedding=[x * scale for x in vec])
    cue = [0.9 * scale, 0.1 * scale, 0.0]
    resp = stub.Recall(pb.RecallRequest(memory_space_id=space, cue=pb.Cue(
        embedding=pb.EmbeddingCue(vector=cue, similarity_threshold=0.5))))
    assert [m.content for m in resp.memories] == ["north", "north-east"]
    known = stub.Recognize(pb.RecognizeRequest(memory_space_id=space,
                                               embedding=pb.Embedding(values=cue)))
    assert known.recognized and known.similar_memories[0].content == "north"
    # A whole memory is known by its vector too, whatever its text: its text alone was
    # weighed before, and an upstream client's memory went unrecognized.
    whole = stub.Recognize(pb.RecognizeRequest(memory_space_id=space, memory=pb.Memory(
        content="a heading", embedding=cue)))
    assert whole.recognized and whole.similar_memories[0].content == "north"
    # ... and by its text alone when its vector cannot speak: all zeros, as upstream's
    # Recall answers carry them, or of another size.
    remember(stub, "south by the sea", space, embedding=[-scale, 0.0, 0.0], id="s1")
    for vector in ([0.0, 0.0, 0.0], [1.0, 0.0]):
        known = stub.Recognize(pb.RecognizeRequest(memory_space_id=space, memory=pb.Memory(
            content="south by the sea", embedding=vector)))
        assert known.recognized and known.similar_memories[0].id == "s1"


def test_recognizing_an_unusable_embedding_alone_says_what_is_wrong_with_it(rpc) -> None:
    """An embedding to recognize, without content, of another size than its space's or all
    zeros: INVALID_ARGUMENT naming the embedding and both sizes, not an "embedding cue"."""
    stub, _ = rpc
    remember(stub, "north", "recognize_sizes", embedding=[1.0, 0.0, 0.0])
    for vector, said in (([1.0, 0.0], "embedding has 2 dimensions; space 'recognize_sizes' "
                                      "holds 3"),
                         ([0.0, 0.0, 0.0], "embedding is all zeros")):
        with pytest.raises(grpc.RpcError) as err:
            stub.Recognize(pb.RecognizeRequest(memory_space_id="recognize_sizes",
                                               embedding=pb.Embedding(values=vector)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert said in err.value.details() and "cue" not in err.value.details()


def test_memory_with_only_an_embedding_is_accepted(rpc) -> None:
    stub, _ = rpc
    resp = remember(stub, "", embedding=[0.1, 0.2])
    assert resp.memory_id.startswith("mem_")


def test_forget_suppress_is_reversible_delete_is_not(rpc) -> None:
    stub, _ = rpc
    a = remember(stub, "Suppressed memory about the pier").memory_id
    b = remember(stub, "Deleted memory about the hangar").memory_id
    r = stub.Forget(pb.ForgetRequest(memory_id=a, mode=pb.FORGET_MODE_SUPPRESS))
    assert (r.memories_affected, r.reversible) == (1, True)
    assert recall(stub, "pier").memories == []
    remember(stub, "Suppressed memory about the pier")  # storing it again brings it back
    assert [m.id for m in recall(stub, "pier").memories] == [a]
    r = stub.Forget(pb.ForgetRequest(memory_id=b, mode=pb.FORGET_MODE_DELETE))
    assert (r.memories_affected, r.reversible) == (1, False)
    assert recall(stub, "hangar").memories == []
    assert total(stub) == 1


def test_forget_by_pattern(rpc) -> None:
    stub, _ = rpc
    for i in range(3):
        remember(stub, f"Temporary scratch entry {i}")
    remember(stub, "Permanent record of the harbour")
    r = stub.Forget(pb.ForgetRequest(pattern=pb.Cue(semantic=pb.SemanticCue(query="scratch")),
                                     mode=pb.FORGET_MODE_DELETE))
    assert r.memories_affected == 3
    assert total(stub) == 1


def test_forget_by_a_text_pattern_hits_its_words_not_its_neighbours(rpc, server) -> None:
    """Forget by pattern selected as recall does, in hybrid mode: forgetting "old phone
    number" deleted every phone number the vector index found near it."""
    from tests.import_support import wait_for

    stub, _ = rpc
    for content in PHONES:
        remember(stub, content, "phones")
    wait_for(lambda: server.store.vector_stats()["pending"] == 0, timeout=30)
    near = stub.Recall(pb.RecallRequest(memory_space_id="phones", cue=pb.Cue(
        semantic=pb.SemanticCue(query="old phone number"),
        threshold=pb.Confidence(value=0.0)), max_results=10))
    assert len(near.memories) >= 2  # the neighbours a hybrid recall finds
    r = stub.Forget(pb.ForgetRequest(memory_space_id="phones", mode=pb.FORGET_MODE_DELETE,
                                     pattern=pb.Cue(semantic=pb.SemanticCue(
                                         query="old phone number"))))
    assert r.memories_affected == 1
    assert total(stub, "phones") == 3


def test_recognize(rpc) -> None:
    stub, _ = rpc
    remember(stub, "Maya keeps the spare key under the blue flowerpot")
    seen = stub.Recognize(pb.RecognizeRequest(
        content="Maya keeps the spare key under the blue flowerpot"))
    assert seen.recognized and seen.familiarity_score == pytest.approx(1.0)
    unseen = stub.Recognize(pb.RecognizeRequest(content="Penguins migrate across Antarctica"))
    assert not unseen.recognized and unseen.familiarity_score < 0.7


def test_associate_creates_then_strengthens_durable_edge(rpc, server) -> None:
    stub, _ = rpc
    a = remember(stub, "Felix plays the violin").memory_id
    b = remember(stub, "Concert at the theatre on Friday").memory_id
    r1 = stub.Associate(pb.AssociateRequest(source_memory=a, target_memory=b, strength=0.5,
                                            association_type=pb.ASSOCIATION_TYPE_SEMANTIC))
    assert r1.created and r1.final_strength == pytest.approx(0.5)
    r2 = stub.Associate(pb.AssociateRequest(source_memory=a, target_memory=b, strength=0.5))
    assert not r2.created and r2.final_strength == pytest.approx(0.75)
    with pytest.raises(grpc.RpcError) as err:
        stub.Associate(pb.AssociateRequest(source_memory=a, target_memory="mem_missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    spread = recall(stub, "violin", spread_activation=True)
    assert [m.id for m in spread.memories] == [a, b]
    stats = stub.Introspect(pb.IntrospectRequest(include_statistics=True))
    assert stats.statistics.total_associations == 1


def test_consolidate_all_ids_and_criteria(rpc) -> None:
    stub, _ = rpc
    ids = [remember(stub, f"Consolidation candidate {i}",
                    memory_type=pb.MEMORY_TYPE_SEMANTIC if i == 0 else 0).memory_id
           for i in range(4)]
    by_id = stub.Consolidate(pb.ConsolidateRequest(memory_ids=pb.MemoryIdList(ids=[ids[1]])))
    assert by_id.memories_consolidated == 1
    assert dict(by_id.state_changes) == {ids[1]: pb.CONSOLIDATION_STATE_CONSOLIDATED}
    by_type = stub.Consolidate(pb.ConsolidateRequest(
        criteria=pb.ConsolidationCriteria(types=[pb.MEMORY_TYPE_SEMANTIC])))
    assert list(by_type.state_changes) == [ids[0]]
    rest = stub.Consolidate(pb.ConsolidateRequest(all=Empty()))
    assert sorted(rest.state_changes) == sorted(ids[2:])
    states = {m.id: m.metadata["engram.state"]
              for m in recall(stub, "consolidation candidate").memories}
    assert set(states.values()) == {"consolidated"}


def test_introspect_counts_per_space_and_health(rpc) -> None:
    stub, _ = rpc
    for i in range(3):
        remember(stub, f"alpha {i}", space="alpha")
    remember(stub, "beta 0", space="beta")
    assert total(stub, "alpha") == 3
    assert total(stub, "beta") == 1
    everything = stub.Introspect(pb.IntrospectRequest(include_health=True,
                                                      include_statistics=True))
    assert everything.statistics.total_memories == 4
    assert everything.metrics["space.alpha.memories"] == 3
    assert "text_index.merge_steps" in everything.metrics  # the full-text index's merger
    assert everything.health.healthy
    assert everything.health.components["storage"].operational


def test_spaces_are_isolated_and_ids_validated(rpc) -> None:
    stub, _ = rpc
    remember(stub, "only in the red space", space="red")
    assert recall(stub, "red space", space="blue").memories == []
    assert len(recall(stub, "red space", space="red").memories) == 1
    for bad in ("ab", "Upper", "has space", "x" * 65, "semi;colon"):
        with pytest.raises(grpc.RpcError) as err:
            remember(stub, "anything", space=bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "memory space id" in err.value.details()


def test_invalid_memories_are_rejected_clearly(rpc) -> None:
    stub, _ = rpc
    cases = [pb.Memory(content=""), pb.Memory(content="x", confidence=pb.Confidence(value=1.5)),
             pb.Memory(content="x", embedding=[float("nan")]),
             pb.Memory(content="x", decay_rate=float("inf")),
             pb.Memory(content="x", created_at=Timestamp(seconds=10**15))]
    for memory in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.Remember(pb.RememberRequest(memory=memory))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        stub.Recall(pb.RecallRequest(cue=pb.Cue()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cues_with_numbers_out_of_range_are_invalid_argument(rpc) -> None:
    """NaN passed every comparison: a NaN threshold returned everything, a NaN vector
    nothing, both as if asked for."""
    stub, _ = rpc
    stub.Remember(pb.RememberRequest(memory=pb.Memory(content="a note", embedding=[1.0, 0.0])))
    nan, inf = float("nan"), float("inf")
    text = pb.SemanticCue(query="note")
    cases = {
        "threshold": pb.Cue(semantic=text, threshold=pb.Confidence(value=nan)),
        "threshold ": pb.Cue(semantic=text, threshold=pb.Confidence(value=1.5)),
        "activation_decay": pb.Cue(semantic=text, activation_decay=inf),
        "activation_decay ": pb.Cue(semantic=text, activation_decay=-0.5),
        "vector": pb.Cue(embedding=pb.EmbeddingCue(vector=[nan, 0.0])),
        "similarity_threshold": pb.Cue(embedding=pb.EmbeddingCue(
            vector=[1.0, 0.0], similarity_threshold=nan)),
    }
    for field, cue in cases.items():
        for rpc_call in (lambda c: stub.Recall(pb.RecallRequest(cue=c)),
                         lambda c: list(stub.StreamingRecall(iter([pb.RecallRequest(cue=c)])))):
            with pytest.raises(grpc.RpcError) as err:
                rpc_call(cue)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert field.strip() in err.value.details(), err.value.details()
    others = {
        "link_threshold": lambda: stub.Remember(pb.RememberRequest(
            memory=pb.Memory(content="another note"), auto_link=True, link_threshold=nan)),
        "recognition_threshold": lambda: stub.Recognize(pb.RecognizeRequest(
            content="a note", recognition_threshold=inf)),
        "importance_threshold": lambda: stub.Consolidate(pb.ConsolidateRequest(
            criteria=pb.ConsolidationCriteria(importance_threshold=-1.0))),
    }
    for field, call in others.items():
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in err.value.details(), err.value.details()
    assert total(stub) == 1  # refused before anything was stored
    # In range they answer.
    assert stub.Recall(pb.RecallRequest(cue=pb.Cue(
        semantic=text, threshold=pb.Confidence(value=0.5), activation_decay=0.5))).memories
    assert stub.Recall(pb.RecallRequest(cue=pb.Cue(embedding=pb.EmbeddingCue(
        vector=[1.0, 0.0], similarity_threshold=-1.0)))).memories


def test_episode_is_stored_as_episodic_memory(rpc) -> None:
    stub, _ = rpc
    stub.Remember(pb.RememberRequest(episode=pb.Episode(
        what="Picnic by the lake with Omar", where_location="lake", who=["Omar"])))
    m = recall(stub, "picnic lake").memories[0]
    assert m.memory_type == pb.MEMORY_TYPE_EPISODIC
    assert m.metadata["location"] == "lake"


def test_streaming_remember_answers_in_order_and_isolates_bad_items(rpc) -> None:
    stub, _ = rpc
    contents = [f"Streamed memory number {i}" for i in range(250)]
    requests = [pb.RememberRequest(memory=pb.Memory(content=c)) for c in contents]
    requests.insert(100, pb.RememberRequest(memory=pb.Memory(content="")))  # bad one
    answers = list(stub.StreamingRemember(iter(requests)))
    assert len(answers) == 251
    assert answers[100].memory_id == "" and "rejected" in answers[100].storage_confidence.reasoning
    good = [a.memory_id for i, a in enumerate(answers) if i != 100]
    assert good == [content_id(c) for c in contents]
    assert total(stub) == 250


def test_streaming_recall_answers_in_order(rpc) -> None:
    stub, _ = rpc
    for word in ("apple", "banana", "cherry"):
        remember(stub, f"A basket of {word}")
    cues = ["cherry", "apple", "banana", "cherry"]
    answers = list(stub.StreamingRecall(iter(
        pb.RecallRequest(cue=pb.Cue(semantic=pb.SemanticCue(query=c))) for c in cues)))
    assert [a.memories[0].content.split()[-1] for a in answers] == cues


def test_batch_remember_answers_per_item(rpc) -> None:
    stub, ext_stub = rpc
    remember(stub, "already here")
    memories = [pb.Memory(content="already here"), pb.Memory(content="brand new"),
                pb.Memory(content=""), pb.Memory(content="fine", confidence=pb.Confidence(
                    value=-1)), pb.Memory(content="another new one", id="custom-id")]
    resp = ext_stub.BatchRemember(ext.BatchRememberRequest(memories=memories))
    outcomes = [r.outcome for r in resp.results]
    assert outcomes == [ext.ITEM_OUTCOME_UNCHANGED, ext.ITEM_OUTCOME_CREATED,
                        ext.ITEM_OUTCOME_REJECTED, ext.ITEM_OUTCOME_REJECTED,
                        ext.ITEM_OUTCOME_CREATED]
    assert [r.index for r in resp.results] == list(range(5))
    assert resp.results[2].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "content" in resp.results[2].error
    assert (resp.stored, resp.rejected) == (3, 2)
    assert 0.0 <= resp.pressure <= 1.0
    assert resp.results[4].memory_id == "custom-id"
    assert total(stub) == 3


def test_engine_outcome_codes_are_the_wire_numbers() -> None:
    # BatchRemember puts the engine's codes on the wire as they are.
    from engram_cli.engine import model

    assert (model.CREATED, model.UPDATED, model.UNCHANGED) == (
        ext.ITEM_OUTCOME_CREATED, ext.ITEM_OUTCOME_UPDATED, ext.ITEM_OUTCOME_UNCHANGED)


def test_batch_remember_compact_answers_outcomes_in_order(rpc) -> None:
    stub, ext_stub = rpc
    remember(stub, "already here")
    stub.Remember(pb.RememberRequest(memory=pb.Memory(id="old", content="old text")))
    memories = [pb.Memory(content="already here"), pb.Memory(content="brand new"),
                pb.Memory(content=""), pb.Memory(id="old", content="new text"),
                pb.Memory(id="twice", content="first"), pb.Memory(id="twice", content="second"),
                pb.Memory(content="brand new")]
    resp = ext_stub.BatchRemember(ext.BatchRememberRequest(memories=memories, compact=True))
    created, updated = ext.ITEM_OUTCOME_CREATED, ext.ITEM_OUTCOME_UPDATED
    unchanged, rejected = ext.ITEM_OUTCOME_UNCHANGED, ext.ITEM_OUTCOME_REJECTED
    assert list(resp.outcomes) == [unchanged, created, rejected, updated, created, updated,
                                   unchanged]
    # Only the rejected item has a result, with its position and reason.
    assert [(r.index, r.outcome) for r in resp.results] == [(2, rejected)]
    assert "content" in resp.results[0].error
    assert (resp.stored, resp.rejected) == (6, 1)
    got = {m.id: m.content for m in stub.Recall(pb.RecallRequest(cue=pb.Cue(
        semantic=pb.SemanticCue(query="second new text")), max_results=10)).memories}
    assert got.get("twice") == "second" and got.get("old") == "new text"
    assert total(stub) == 4


def test_health_and_reflection(server) -> None:
    channel = grpc.insecure_channel(server.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "engram.v1.EngramService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]))
        names = {s.name for a in answers for s in a.list_services_response.service}
        assert {"engram.v1.EngramService", "engram_cli.ext.v1.ExtensionService",
                "grpc.health.v1.Health"} <= names
    finally:
        channel.close()


def test_api_key_is_required_when_configured(tmp_path) -> None:
    from engram_cli.server.app import EngramServer, ServeOptions

    key = "engram_key_" + "a" * 24 + "_" + "b" * 32
    srv = EngramServer(ServeOptions(data_dir=tmp_path / "d", port=0, api_keys=(key,)))
    try:
        srv.start()
        with stubs(srv.address) as (stub, _):
            for metadata in ((), (("authorization", "Bearer wrong"),),
                             (("authorization", f"Basic {key}"),),
                             (("authorization", f"Bearer {key}x"),),
                             (("authorization", "Bearer "),)):
                with pytest.raises(grpc.RpcError) as err:
                    stub.Remember(pb.RememberRequest(memory=pb.Memory(content="x")),
                                  metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = stub.Remember(pb.RememberRequest(memory=pb.Memory(content="x")),
                               metadata=(("authorization", f"Bearer {key}"),))
            assert ok.memory_id
            # The scheme is case-insensitive, as HTTP auth schemes are.
            ok = stub.Remember(pb.RememberRequest(memory=pb.Memory(content="y")),
                               metadata=(("authorization", f"bearer {key}"),))
            assert ok.memory_id
            # Health probes stay open.
            channel = grpc.insecure_channel(srv.address)
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()).status
            channel.close()
            assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        srv.stop(grace=1)


def test_temporal_and_pattern_cues_are_unimplemented(rpc) -> None:
    """Upstream Cue fields 4 (temporal) and 6 (pattern) are not in our protos: an upstream
    client's cue of those kinds reaches us as an unknown field and gets UNIMPLEMENTED."""
    stub, _ = rpc
    for tag in (b"\x22\x00", b"\x32\x00"):  # field 4 / field 6, length-delimited, empty
        request = pb.RecallRequest(cue=pb.Cue.FromString(tag))
        with pytest.raises(grpc.RpcError) as err:
            stub.Recall(request)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, err.value.details()
        assert "not served" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # a cue with no kind at all is the client's error
        stub.Recall(pb.RecallRequest(cue=pb.Cue()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
