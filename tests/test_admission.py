"""Admission control on a real server: a bounded write queue that pushes back with
RESOURCE_EXHAUSTED and a retry-after-ms hint, reads served meanwhile, and an import that
still lands every record."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from engram_cli.client.connection import retry_after_ms
from engram_cli.rpc import ext, pb
from engram_cli.server.app import EngramServer, ServeOptions
from tests.rpc_helpers import recall, remember, stubs, total

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., EngramServer]]:
    """Factory: an in-process server whose engram.toml sets the given [engine] values."""
    started: list[EngramServer] = []

    def start(max_workers: int = 32, **engine: object) -> EngramServer:
        data_dir = tmp_path / f"data{len(started)}"
        data_dir.mkdir()
        lines = ["[engine]", "consolidation_interval_s = 0.0"]
        lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in engine.items()]
        (data_dir / "engram.toml").write_text("\n".join(lines) + "\n")
        srv = EngramServer(ServeOptions(data_dir=data_dir, port=0, max_workers=max_workers))
        srv.start()
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop(grace=1.0)


class BlockedWriter:
    """Holds the store's writer thread busy until released: a deterministic full queue."""

    def __init__(self, server: EngramServer) -> None:
        self.release = threading.Event()
        running = threading.Event()

        def hold(conn: Any) -> None:
            running.set()
            self.release.wait(30)

        self.thread = threading.Thread(target=server.store.write, args=(hold,), daemon=True)
        self.thread.start()
        assert running.wait(10)

    def __enter__(self) -> BlockedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


def batch(i: int, n: int = 10, space: str = "") -> Any:
    return ext.BatchRememberRequest(memory_space_id=space, memories=[
        pb.Memory(content=f"Flood memory {i}.{j} about the weir") for j in range(n)])


def wait_for(predicate: Callable[[], bool]) -> None:
    import time

    deadline = time.monotonic() + 15
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_write_flood_is_pushed_back_while_reads_are_served(
        start_server: Callable[..., EngramServer]) -> None:
    server = start_server(queue_capacity=1)
    store = server.store
    with stubs(server.address) as (stub, ext_stub):
        remember(stub, "A memory about the weir that reads can find")
        answers: list[Any] = []
        with BlockedWriter(server):
            queued = threading.Thread(target=lambda: answers.append(
                ext_stub.BatchRemember(batch(0))))
            queued.start()
            wait_for(lambda: store.queue_depth == 1)
            pushed_back = []
            for i in range(1, 9):
                with pytest.raises(grpc.RpcError) as err:
                    ext_stub.BatchRemember(batch(i))
                pushed_back.append(err.value)
                with pytest.raises(grpc.RpcError) as err:
                    remember(stub, f"Unary flood memory {i}")
                pushed_back.append(err.value)
                assert store.queue_depth <= 1  # bounded: rejected writes never queue
            # Reads keep being served while every write is pushed back.
            assert [m.content for m in recall(stub, "weir reads").memories] == [
                "A memory about the weir that reads can find"]
            metrics = stub.Introspect(pb.IntrospectRequest()).metrics
            assert metrics["write_queue.pressure"] == 1.0
            assert metrics["write_queue.depth"] == 1
        queued.join(10)
        for err in pushed_back:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
            hint = retry_after_ms(err)
            assert isinstance(hint, int) and hint > 0, err.trailing_metadata()
        assert len(answers) == 1 and answers[0].stored == 10
        assert 0.0 <= answers[0].pressure <= 1.0
        # Once the writer drains, the same write goes through; nothing rejected was kept.
        assert ext_stub.BatchRemember(batch(1)).stored == 10
        assert total(stub) == 21


def test_writes_cannot_take_the_workers_reads_need(
        start_server: Callable[..., EngramServer]) -> None:
    # 4 workers: writes may hold 2, the rest stay free for reads. No embedding model: the
    # test counts the writer's queue, and the indexer would queue writes of its own.
    server = start_server(max_workers=4, queue_capacity=100, embedding_model="none")
    with stubs(server.address) as (stub, ext_stub):
        remember(stub, "Otters hold hands while they sleep")
        with BlockedWriter(server):
            waiting = [threading.Thread(target=lambda i=i: ext_stub.BatchRemember(batch(i)))
                       for i in range(2)]
            for t in waiting:
                t.start()
            wait_for(lambda: server.store.queue_depth == 2)
            with pytest.raises(grpc.RpcError) as err:
                ext_stub.BatchRemember(batch(9))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert retry_after_ms(err.value) is not None
            for _ in range(3):
                assert len(recall(stub, "otters").memories) == 1
        for t in waiting:
            t.join(10)
        assert total(stub) == 21


def test_import_under_a_write_flood_lands_every_record(
        start_server: Callable[..., EngramServer], tmp_path: Path) -> None:
    # Needs the retrying importer (issue 3): the first-version importer gives up on the
    # first RESOURCE_EXHAUSTED.
    spec = importlib.util.spec_from_file_location("datagen", ROOT / "benchmarks/datagen.py")
    assert spec and spec.loader
    datagen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(datagen)
    n = 3_000
    source = datagen.write_jsonl(tmp_path / "memories.jsonl", n)
    server = start_server(queue_capacity=2)
    stop = threading.Event()
    rejected = [0]

    def flood(k: int) -> None:
        with stubs(server.address) as (_, ext_stub):
            i = 0
            while not stop.is_set():
                try:
                    ext_stub.BatchRemember(batch(k * 1_000_000 + i, 50, space="flood"))
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    rejected[0] += 1
                i += 1

    flooders = [threading.Thread(target=flood, args=(k,), daemon=True) for k in range(6)]
    for t in flooders:
        t.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "engram_cli", "--server", server.address, "import",
             str(source), "--json"],
            capture_output=True, text=True, timeout=120, env={**os.environ})
    finally:
        stop.set()
        for t in flooders:
            t.join(10)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert rejected[0] > 0  # the flood really was pushed back meanwhile
    summary = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["imported"] == n
    with stubs(server.address) as (stub, _):
        assert total(stub, "default") == n  # the flood wrote to its own space
