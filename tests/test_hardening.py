"""Hostile and unlucky clients against a real server: idle streams, malformed bytes, deeply
nested JSON, cancelled streams."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engram_cli.contract import ENGRAM_SERVICE, EXTENSION_SERVICE, HEALTH_SERVICE, method_path
from engram_cli.rpc import ext, pb, svc
from engram_cli.server.app import EngramServer, ServeOptions
from tests.rpc_helpers import recall, remember, stubs

# Wire type 7 does not exist: no protobuf message parses these bytes.
GARBAGE = b"\x0f" + os.urandom(64)


def _idle(stop: threading.Event) -> Iterator[Any]:
    stop.wait()
    return
    yield  # a generator that sends nothing until told to end


def _settled(calls: list[Any], open_at_most: int, timeout: float = 60.0) -> int:
    """Wait until no more than `open_at_most` calls are still open; answers how many are."""
    deadline = time.monotonic() + timeout
    while True:
        still = sum(1 for c in calls if not c.done())
        if still <= open_at_most or time.monotonic() > deadline:
            return still
        time.sleep(0.1)


def test_a_thousand_idle_streams_leave_health_and_recall_answering(server: EngramServer
                                                                   ) -> None:
    channels = [grpc.insecure_channel(server.address) for _ in range(10)]
    stop = threading.Event()
    calls: list[Any] = []
    try:
        with stubs(server.address) as (stub, _):
            remember(stub, "the lighthouse keeper logs the fog at dawn")
            for i in range(1000):
                s = svc.EngramServiceStub(channels[i % len(channels)])
                method = s.StreamingRecall if i % 2 else s.StreamingRemember
                calls.append(method(_idle(stop)))
            limit = server.config.settings.max_streams
            assert _settled(calls, limit) == limit
            refused = [c for c in calls if c.done()]
            assert {c.code() for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert dict(refused[0].trailing_metadata()).get("retry-after-ms")

            health = health_pb2_grpc.HealthStub(channels[0])
            for _ in range(5):
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
                found = stub.Recall(pb.RecallRequest(
                    cue=pb.Cue(semantic=pb.SemanticCue(query="lighthouse fog"))), timeout=1.0)
                assert found.memories[0].content.startswith("the lighthouse keeper")
    finally:
        stop.set()
        for c in calls:
            c.cancel()
        for ch in channels:
            ch.close()


def test_an_idle_stream_is_cancelled_after_stream_idle_timeout(server: EngramServer) -> None:
    with stubs(server.address) as (stub, ext_stub):
        ext_stub.ApplySettings(ext.ApplySettingsRequest(
            values_json={"stream_idle_timeout_s": "1"}))
        stop = threading.Event()
        call = stub.StreamingRecall(_idle(stop))
        try:
            assert _settled([call], 0, timeout=30) == 0
            assert call.code() == grpc.StatusCode.CANCELLED
        finally:
            stop.set()
        assert server.streams.in_use == 0
        assert recall(stub, "anything").memories == []


def _garbage_calls(channel: grpc.Channel) -> list[tuple[str, Any]]:
    """(method, error) of garbage sent to unary, streaming and health methods."""
    out = []
    for service, name, kind in ((ENGRAM_SERVICE, "Recall", "unary"),
                                (ENGRAM_SERVICE, "Remember", "unary"),
                                (EXTENSION_SERVICE, "BatchRemember", "unary"),
                                (HEALTH_SERVICE, "Check", "unary"),
                                (ENGRAM_SERVICE, "StreamingRecall", "stream"),
                                (ENGRAM_SERVICE, "StreamingRemember", "stream")):
        path = method_path(service, name)
        try:
            if kind == "unary":
                channel.unary_unary(path)(GARBAGE, timeout=10)
            else:
                list(channel.stream_stream(path)(iter([GARBAGE]), timeout=10))
        except grpc.RpcError as err:
            out.append((name, err))
        else:
            out.append((name, None))
    return out


def test_malformed_requests_get_invalid_argument_and_one_log_line(
        server: EngramServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(server.address) as channel:
        answers = [a for _ in range(5) for a in _garbage_calls(channel)]
    for name, err in answers:
        assert err is not None, f"{name} accepted garbage"
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err.details())
        assert "malformed request" in err.details()
    lines = [r.getMessage() for r in caplog.records]
    assert [m for m in lines if "malformed request" in m and "INVALID_ARGUMENT" in m] \
        == [m for m in lines if "malformed" in m]
    assert len([m for m in lines if "malformed" in m]) == 1, lines
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert server.guard.malformed == len(answers)
    with stubs(server.address) as (stub, _):  # and the server carries on
        remember(stub, "still taking memories after the garbage")
        assert recall(stub, "garbage").memories


def test_deeply_nested_json_in_apply_settings_is_invalid_argument(
        server: EngramServer, caplog: pytest.LogCaptureFixture) -> None:
    with stubs(server.address) as (_, ext_stub), pytest.raises(grpc.RpcError) as info:
        ext_stub.ApplySettings(ext.ApplySettingsRequest(
            values_json={"max_hops": "[" * 100_000 + "]" * 100_000}))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'max_hops'" in info.value.details()
    assert len(info.value.details()) < 300
    assert not [r for r in caplog.records if r.exc_info]


def test_nan_and_infinity_in_apply_settings_are_invalid_argument(server: EngramServer) -> None:
    """JSON as Python reads it spells NaN and Infinity, and NaN passed every range check:
    a server took `decay = NaN` live."""
    for value in ("NaN", "Infinity", "-Infinity"):
        with stubs(server.address) as (_, ext_stub), pytest.raises(grpc.RpcError) as info:
            ext_stub.ApplySettings(ext.ApplySettingsRequest(values_json={"decay": value}))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, value
        assert "'decay'" in info.value.details()
    assert server.store.settings.decay == 0.85


def test_cancelling_a_streaming_remember_logs_no_error(
        server: EngramServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    stop = threading.Event()

    def some_then_wait() -> Iterator[Any]:
        for i in range(50):
            yield pb.RememberRequest(memory=pb.Memory(content=f"streamed note {i}"))
        stop.wait(30)

    with stubs(server.address) as (stub, _):
        call = stub.StreamingRemember(some_then_wait())
        answers = [next(call) for _ in range(50)]
        assert all(a.memory_id for a in answers)
        call.cancel()
        stop.set()
        deadline = time.monotonic() + 10
        while server.streams.in_use and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.streams.in_use == 0
        remember(stub, "after the cancel")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records]


def test_streams_past_max_streams_are_refused_and_unary_calls_still_answer(
        tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "engram.toml").write_text("[engine]\nmax_streams = 2\n")
    srv = EngramServer(ServeOptions(data_dir=tmp_path / "data", port=0))
    srv.start()
    stop = threading.Event()
    try:
        with stubs(srv.address) as (stub, _):
            calls = [stub.StreamingRecall(_idle(stop)) for _ in range(5)]
            assert _settled(calls, 2) == 2
            assert srv.streams.refused == 3
            remember(stub, "a unary write with every stream slot taken")
            assert recall(stub, "unary write").memories
            stop.set()
            assert _settled(calls, 0) == 0
    finally:
        stop.set()
        srv.stop(grace=1.0)


_ROTATING = """
import logging, sys
from engram_cli.server.logfile import RotatingLog
logging.basicConfig(level=logging.INFO, handlers=[RotatingLog(sys.argv[1], 4096, 2)])
for i in range(500):
    logging.getLogger("engram.server").info("line %d %s", i, "x" * 40)
    if i % 50 == 0:
        print(f"raw stdout {i}", flush=True)
sys.stderr.write("raw stderr at the end\\n")
"""


def test_the_server_log_rotates_and_stdout_stderr_follow_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    log = tmp_path / "server.log"
    subprocess.run([sys.executable, "-c", _ROTATING, str(log)], check=True, timeout=60)
    files = {p.name: p.stat().st_size for p in tmp_path.glob("server.log*")}
    assert set(files) == {"server.log", "server.log.1", "server.log.2"}
    assert max(files.values()) <= 4096 + 200, files
    text = log.read_text()
    assert "line 499" in text
    assert text.endswith("raw stderr at the end\n")
    assert "raw stdout 450" in text + (tmp_path / "server.log.1").read_text()


def test_the_hot_tier_is_bounded_in_bytes_as_well_as_rows() -> None:
    from engram_cli.engine.hot import HotTier, row_bytes

    hot = HotTier(capacity=1000, max_bytes=100_000)
    big = [(i, f"big-{i}", "x" * 10_000, b"\0" * 1024) for i in range(50)]
    hot.put_many("default", big, hot.epoch())
    assert hot.bytes <= 100_000 < sum(row_bytes(r) for r in big)
    kept = len(hot)
    assert 0 < kept < 50
    found, missing = hot.get_many("default", ["big-49", "big-0"])
    assert list(found) == ["big-49"] and missing == ["big-0"]  # the oldest went first

    small = [(100 + i, f"small-{i}", "tiny") for i in range(200)]
    hot.put_many("default", small, hot.epoch())
    assert len(hot) > kept and hot.bytes <= 100_000
    before = hot.bytes
    hot.invalidate("default", ["small-199"])
    assert hot.bytes < before
    hot.resize(1000, 0)
    assert len(hot) == 0 and hot.bytes == 0
    hot.clear()
    assert hot.bytes == 0


def test_a_store_keeps_its_hot_tier_within_hot_max_bytes(tmp_path: Path) -> None:
    from engram_cli.engine.model import MemoryRecord
    from engram_cli.engine.recall import RecallQuery
    from engram_cli.engine.settings import Settings
    from engram_cli.engine.store import Store

    settings = Settings().replace({"hot_max_bytes": 200_000, "embedding_model": "none"})
    with Store(tmp_path / "data", settings) as store:
        store.remember_many("default", [
            MemoryRecord(id=f"m{i}", content=f"harbour ledger entry {i} " + "word " * 4000)
            for i in range(100)])
        found = store.recall("default", RecallQuery(text="harbour ledger", limit=100))
        assert len(found.memories) > 10
        tiers = store.tier_stats()
        assert 0 < tiers["hot_bytes"] <= 200_000
        assert tiers["hot_size"] < 100


def test_an_idle_connection_is_closed_after_connection_idle_timeout(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "engram.toml").write_text(
        "[engine]\nconnection_idle_timeout_s = 1.0\n")
    srv = EngramServer(ServeOptions(data_dir=tmp_path / "data", port=0))
    srv.start()
    states: list[grpc.ChannelConnectivity] = []
    channel = grpc.insecure_channel(srv.address)
    try:
        channel.subscribe(states.append, try_to_connect=False)
        assert recall(svc.EngramServiceStub(channel), "anything").memories == []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                grpc.ChannelConnectivity.READY in states
                and states[-1] == grpc.ChannelConnectivity.IDLE):
            time.sleep(0.1)
        # the server closed the connection: the channel fell back to IDLE by itself
        assert states[-1] == grpc.ChannelConnectivity.IDLE, states
        assert recall(svc.EngramServiceStub(channel), "anything").memories == []
    finally:
        channel.close()
        srv.stop(grace=1.0)
