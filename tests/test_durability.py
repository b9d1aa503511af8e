"""Process-level behaviour of `engram serve`: an independent engram.v1 client, kill -9
durability, graceful SIGTERM, idle stop, one server per data dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

from engram_cli.rpc import pb
from tests.rpc_helpers import stubs, total

ROOT = Path(__file__).resolve().parent.parent

UPSTREAM_CLIENT = r'''
import json, sys
import grpc
from engram.v1 import memory_pb2 as m, service_pb2 as s, service_pb2_grpc as g

mode, address = sys.argv[1], sys.argv[2]
stub = g.EngramServiceStub(grpc.insecure_channel(address))
out = {}
if mode == "load":
    for i in range(100):
        stub.Remember(s.RememberRequest(memory=m.Memory(content=f"Unary note {i} on gardening")))
    answers = list(stub.StreamingRemember(
        s.RememberRequest(memory=m.Memory(content=f"Streamed log line {i} about the harbour"))
        for i in range(1000)))
    out["streamed_acks"] = sum(1 for a in answers if a.memory_id)
    stub.Remember(s.RememberRequest(memory=m.Memory(
        content="Unary note about quokkas photographed on Rottnest")))
    out["total_before_forget"] = stub.Introspect(s.IntrospectRequest(
        include_statistics=True)).statistics.total_memories
    # Back to exactly 1,100: forget the extra one for good.
    stub.Forget(s.ForgetRequest(memory_id=stub.Recall(s.RecallRequest(cue=m.Cue(
        semantic=m.SemanticCue(query="quokkas")))).memories[0].id, mode=s.FORGET_MODE_DELETE))
    stub.Remember(s.RememberRequest(memory=m.Memory(content="Unary note 7 on gardening, "
                                                    "with the word xylophone")))
    stub.Forget(s.ForgetRequest(memory_id=stub.Recall(s.RecallRequest(cue=m.Cue(
        semantic=m.SemanticCue(query="xylophone")))).memories[0].id, mode=s.FORGET_MODE_DELETE))
    stub.Remember(s.RememberRequest(memory=m.Memory(
        id="unique-1", content="Streamed log line 500 about the harbour and a zeppelin")))
    stub.Forget(s.ForgetRequest(memory_id="unique-1", mode=s.FORGET_MODE_DELETE))
recall = stub.Recall(s.RecallRequest(cue=m.Cue(semantic=m.SemanticCue(
    query="log line 737 harbour")), max_results=3))
out["first"] = recall.memories[0].content
out["first_id"] = recall.memories[0].id
out["total"] = stub.Introspect(s.IntrospectRequest(
    include_statistics=True)).statistics.total_memories
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def upstream_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """engram.v1 stubs compiled the way an upstream client would (engram/v1/*.proto),
    plus a client script that uses only them."""
    import grpc_tools
    from grpc_tools import protoc

    root = tmp_path_factory.mktemp("upstream")
    proto_dir = root / "proto" / "engram" / "v1"
    proto_dir.mkdir(parents=True)
    for name in ("memory.proto", "service.proto"):
        text = (ROOT / "proto/engram_cli/rpc/engram/v1" / name).read_text()
        (proto_dir / name).write_text(text.replace("engram_cli/rpc/engram/v1/", "engram/v1/"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{root / 'proto'}", f"-I{include}", f"--python_out={root}",
                      f"--grpc_python_out={root}", "engram/v1/memory.proto",
                      "engram/v1/service.proto"])
    assert rc == 0
    (root / "client.py").write_text(UPSTREAM_CLIENT)
    return root


def run_upstream(client_dir: Path, mode: str, address: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "client.py", mode, address], cwd=client_dir,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_upstream_client_data_survives_kill_9(server_process, upstream_client, tmp_path
                                               ) -> None:
    data = tmp_path / "store"
    sp = server_process(data)
    loaded = run_upstream(upstream_client, "load", sp.address)
    assert loaded["streamed_acks"] == 1000
    assert loaded["total"] == 1100
    assert loaded["first"] == "Streamed log line 737 about the harbour"
    sp.kill9()
    again = server_process(data)
    after = run_upstream(upstream_client, "check", again.address)
    assert after["total"] == 1100
    assert (after["first"], after["first_id"]) == (loaded["first"], loaded["first_id"])


def test_sigterm_lets_in_flight_stream_finish_then_exits_0(server_process, tmp_path
                                                          ) -> None:
    data = tmp_path / "store"
    sp = server_process(data)
    first_half_acked = threading.Event()
    send_rest = threading.Event()

    def requests():
        for i in range(200):
            if i == 100:
                first_half_acked.wait(30)
                send_rest.wait(30)
            yield pb.RememberRequest(memory=pb.Memory(content=f"in flight {i}"))

    answers: list = []
    with stubs(sp.address) as (stub, _):
        def consume() -> None:
            for a in stub.StreamingRemember(requests()):
                answers.append(a)
                if len(answers) == 100:
                    first_half_acked.set()

        t = threading.Thread(target=consume)
        t.start()
        assert first_half_acked.wait(30)
        sp.proc.send_signal(signal.SIGTERM)
        send_rest.set()
        t.join(30)
    assert sp.proc.wait(30) == 0
    assert len(answers) == 200 and all(a.memory_id for a in answers)
    restarted = server_process(data)
    with stubs(restarted.address) as (stub, _):
        assert total(stub) == 200


def test_sigint_exits_0_and_releases_the_data_dir(server_process, tmp_path
                                                  ) -> None:
    sp = server_process(tmp_path / "d")
    assert (tmp_path / "d" / "server.json").exists()
    assert sp.terminate(signal.SIGINT) == 0
    assert not (tmp_path / "d" / "server.json").exists()
    second = server_process(tmp_path / "d")
    assert second.terminate() == 0


def test_idle_timeout_stops_the_server(server_process, tmp_path) -> None:
    sp = server_process(tmp_path / "d", "--idle-timeout", "1")
    assert sp.proc.wait(30) == 0


def test_second_server_on_same_data_dir_fails_clearly(server_process, tmp_path
                                                      ) -> None:
    server_process(tmp_path / "shared")
    proc = subprocess.run(
        [sys.executable, "-m", "engram_cli", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "shared")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "in use by another engram server" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_durable_write_acknowledged_before_kill_is_kept(server_process, tmp_path
                                                        ) -> None:
    data = tmp_path / "store"
    sp = server_process(data)
    with stubs(sp.address) as (_, ext_stub):
        from engram_cli.rpc import ext

        resp = ext_stub.BatchRemember(ext.BatchRememberRequest(memories=[
            pb.Memory(content=f"batch item {i}") for i in range(5000)]))
        assert resp.stored == 5000
    sp.kill9()  # no clean shutdown: the WAL must already hold the acknowledged batch
    again = server_process(data)
    with stubs(again.address) as (stub, _):
        assert total(stub) == 5000


def test_port_in_use_is_a_clear_error(server_process, tmp_path) -> None:
    sp = server_process(tmp_path / "a")
    port = sp.address.rsplit(":", 1)[1]
    proc = subprocess.run(
        [sys.executable, "-m", "engram_cli", "serve", "--port", port, "--data-dir",
         str(tmp_path / "b")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert "cannot listen on" in proc.stderr and "Traceback" not in proc.stderr
    with grpc.insecure_channel(sp.address) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
