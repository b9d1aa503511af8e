"""BatchRemember's vectors, as the server reads them: each memory's packed floats straight
as float32 bytes (ext.BatchRememberView), against a real server on port 0, with every
other encoding the wire allows still stored exactly as engram.v1.Memory reads it."""

from __future__ import annotations

import struct
from typing import Any

import grpc
import numpy as np
import pytest

from engram_cli.client.batching import varint
from engram_cli.contract import EXTENSION_SERVICE, method_path
from engram_cli.rpc import ext, pb
from tests.rpc_helpers import stubs

DIM = 8


@pytest.fixture
def rpc(server):
    channel = grpc.insecure_channel(server.address)
    try:
        # Bytes in, so that a test can send encodings protobuf's own serializer does not.
        raw = channel.unary_unary(method_path(EXTENSION_SERVICE, "BatchRemember"),
                                  request_serializer=None,
                                  response_deserializer=ext.BatchRememberResponse.FromString)
        with stubs(server.address) as (_, ext_stub):
            yield raw, ext_stub
    finally:
        channel.close()


def _vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def _packed(values: np.ndarray) -> bytes:
    data = values.astype("<f4").tobytes()
    return b"\x12" + varint(len(data)) + data


def _unpacked(values: np.ndarray) -> bytes:
    """Field 2 once per value (wire type 5): legal for a repeated float, never what
    protobuf's serializers write."""
    return b"".join(b"\x15" + struct.pack("<f", float(v)) for v in values)


def _request(*memories: bytes, space: str = "") -> bytes:
    head = ext.BatchRememberRequest(memory_space_id=space).SerializeToString()
    return head + b"".join(b"\x12" + varint(len(m)) + m for m in memories)


def _memory(content: str, embedding: bytes, **fields: Any) -> bytes:
    return pb.Memory(id=content, content=content, **fields).SerializeToString() + embedding


def _stored(ext_stub: Any, space: str = "") -> dict[str, bytes]:
    out = {}
    for page in ext_stub.Export(ext.ExportRequest(memory_space_id=space,
                                                  include_embeddings=True)):
        for m in page.memories:
            out[m.id] = m.embedding
    return out


def test_every_float_encoding_stores_the_same_vector(rpc) -> None:
    raw, ext_stub = rpc
    v = [_vector(i) for i in range(4)]
    # Packed only: what the view reads.
    resp = raw(_request(_memory("packed", _packed(v[0])),
                        _memory("two runs", _packed(v[2][:3]) + _packed(v[2][3:])),
                        _memory("no vector", b"")))
    assert (resp.stored, resp.rejected) == (3, 0), resp
    # Unpacked values in a request: read as engram.v1.Memory, in their wire order.
    resp = raw(_request(_memory("unpacked", _unpacked(v[1])),
                        _memory("unpacked then packed", _unpacked(v[3][:5]) + _packed(v[3][5:])),
                        _memory("packed too", _packed(v[0]))))
    assert (resp.stored, resp.rejected) == (3, 0), resp
    stored = _stored(ext_stub)
    assert stored["packed"] == stored["packed too"] == v[0].tobytes()
    assert stored["unpacked"] == v[1].tobytes()
    assert stored["two runs"] == v[2].tobytes()
    assert stored["unpacked then packed"] == v[3].tobytes()
    assert stored["no vector"] == b""


def test_the_generated_message_stores_what_the_view_reads(rpc) -> None:
    """The client's path (protobuf's own serializer, every other field set) and the
    same memories re-read from the store agree field for field."""
    _, ext_stub = rpc
    v = _vector(7)
    memory = pb.Memory(id="full", content="every field set", embedding=v.tolist(),
                       confidence=pb.Confidence(value=0.25), decay_rate=0.5,
                       memory_type=pb.MEMORY_TYPE_EPISODIC, tags=["a", "b"],
                       metadata={"k": "v"})
    memory.created_at.seconds = 1_700_000_000
    resp = ext_stub.BatchRemember(ext.BatchRememberRequest(memories=[memory]))
    assert (resp.stored, resp.rejected) == (1, 0), resp
    page = next(iter(ext_stub.Export(ext.ExportRequest(include_embeddings=True))))
    got = page.memories[0]
    assert got.embedding == v.tobytes()
    assert (got.content, got.confidence, got.decay_rate, got.memory_type) == (
        "every field set", 0.25, 0.5, pb.MEMORY_TYPE_EPISODIC)
    assert (got.tags_json, got.metadata_json, got.created_at) == (
        '["a","b"]', '{"k":"v"}', 1_700_000_000)


def test_a_bad_value_rejects_its_own_memory_only(rpc) -> None:
    raw, ext_stub = rpc
    bad = _vector(1)
    bad[3] = np.nan
    huge = _vector(2)
    huge[0] = np.inf
    resp = raw(_request(_memory("fine", _packed(_vector(0))), _memory("nan", _packed(bad)),
                        _memory("inf", _packed(huge)),
                        _memory("also fine", _packed(_vector(3)))))
    assert (resp.stored, resp.rejected) == (2, 2), resp
    refused = {r.memory_id: r.error for r in resp.results
               if r.outcome == ext.ITEM_OUTCOME_REJECTED}
    assert set(refused) == {"nan", "inf"}
    assert all("NaN" in why for why in refused.values())
    assert set(_stored(ext_stub)) == {"fine", "also fine"}


def test_packed_floats_cut_mid_value_are_invalid_argument(rpc) -> None:
    raw, ext_stub = rpc
    cut = b"\x12\x05" + b"\x00" * 5
    with pytest.raises(grpc.RpcError) as err:
        raw(_request(_memory("fine", _packed(_vector(0))), _memory("cut", cut)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "memory 1" in err.value.details()
    assert _stored(ext_stub) == {}


def test_wrong_dimension_is_refused_per_memory(rpc) -> None:
    raw, _ = rpc
    assert raw(_request(_memory("first", _packed(_vector(0))))).stored == 1
    resp = raw(_request(_memory("short", _packed(_vector(1)[:4])),
                        _memory("right", _packed(_vector(2)))))
    assert (resp.stored, resp.rejected) == (1, 1), resp
    assert "dimensions" in resp.results[0].error


def test_memory_view_mirrors_engram_v1_memory() -> None:
    """Field for field but the embedding: a field added to one and not the other would
    be lost (or misread) by BatchRemember."""
    def fields(descriptor: Any) -> dict[str, tuple[Any, ...]]:
        return {f.name: (f.number, f.type, f.message_type.name if f.message_type else "")
                for f in descriptor.fields}

    view, memory = fields(ext.MemoryView.DESCRIPTOR), fields(pb.Memory.DESCRIPTOR)
    assert view.pop("embedding")[0] == memory.pop("embedding")[0] == 2
    for d in (view, memory):  # each message has its own map entry type
        d["metadata"] = d["metadata"][:2]
    assert view == memory
    request, as_read = (fields(ext.BatchRememberRequest.DESCRIPTOR),
                        fields(ext.BatchRememberView.DESCRIPTOR))
    assert request.pop("memories")[0] == as_read.pop("memories")[0] == 2
    assert request == as_read
