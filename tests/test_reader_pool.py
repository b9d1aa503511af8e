"""Reads share a fixed number of SQLite connections (engine/readers.py), however many
threads read: never more than `readers` are opened, a reader comes back when the call
that held it raised, and recall answers what it answered on a connection per thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store
from engram_cli.errors import InvalidArgument, StoreClosed
from engram_cli.rpc import pb, svc
from tests.import_support import wait_for

WORDS = "lighthouse keeper fog harbour ledger kettle garden comet violin river".split()
CUES = ["lighthouse fog", "garden kettle", "comet violin river", "harbour", "ledger keeper"]


def _db_connections(pid: int | str, db: Path) -> int:
    """SQLite connections a process has open on `db`: each holds the file open."""
    target, n = os.path.realpath(db), 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                n += 1
        except OSError:
            pass  # closed meanwhile
    return n


def _store(tmp_path: Path, readers: int) -> Store:
    # A fixed clock: a recall refreshes the access times it ranks by.
    store = Store(tmp_path / "data", Settings().replace(
        {"embedding_model": "none", "readers": readers, "consolidation_interval_s": 0}),
        clock=lambda: 1_750_000_000.0)
    for i in range(120):
        store.remember("", MemoryRecord(id=f"m{i}", content=" ".join(
            WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)) + f" note {i}"))
    store.associate_many("", [(f"m{i}", f"m{i + 1}", 0.8) for i in range(119)])
    store.indexer.ready.wait(30)
    return store


def _answer(store: Store, cue: str) -> list[tuple[str, float]]:
    result = store.recall("", RecallQuery(text=cue, limit=10, mode="lexical"))
    return [(m.id, m.activation) for m in result.memories]


def test_many_threads_share_at_most_readers_connections(tmp_path: Path) -> None:
    store = _store(tmp_path, readers=3)
    try:
        wait_for(lambda: store.indexer.pending() == 0, timeout=30.0)
        before = _db_connections("self", store.path)  # the writer's, the indexer's...
        expected = {cue: _answer(store, cue) for cue in CUES}
        start = threading.Barrier(24)

        def reads(_: int) -> dict[str, list[tuple[str, float]]]:
            start.wait()
            got = {}
            for _ in range(5):
                for cue in CUES:
                    got[cue] = _answer(store, cue)
                    assert store.get("", ["m1", "m2"])
                    store.recognize("", content=cue)
                store.stats()
                store.spaces()
            return got

        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(reads, range(24)))
        assert all(a == expected for a in answers)
        assert store._readers.opened <= 3
        # Counted apart from the pool's own count: the files the process holds open.
        assert _db_connections("self", store.path) - before <= 3
    finally:
        store.close()


def test_a_read_waits_for_a_free_reader_and_gets_it_when_one_is_returned(
        tmp_path: Path) -> None:
    store = _store(tmp_path, readers=2)
    release = threading.Event()
    holding = threading.Barrier(3)

    def hold() -> None:
        with store._readers.lease():
            holding.wait()
            release.wait(60)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    try:
        for t in holders:
            t.start()
        holding.wait()
        assert store._readers.opened == 2
        answers: list[Any] = []
        reader = threading.Thread(target=lambda: answers.append(_answer(store, "fog")))
        reader.start()
        wait_for(lambda: store._readers.waits == 1, timeout=30.0)
        assert not answers  # still waiting: both readers are held
        release.set()
        reader.join(60)
        assert answers and answers[0]
        assert store._readers.opened == 2
    finally:
        release.set()
        for t in holders:
            t.join(60)
        store.close()


def test_a_reader_is_returned_when_the_call_raises(tmp_path: Path) -> None:
    store = _store(tmp_path, readers=1)
    try:
        expected = _answer(store, "lighthouse")
        for _ in range(3):
            with pytest.raises(InvalidArgument):
                store.recall("", RecallQuery(text="fog", mode="nonsense"))
        with pytest.raises(ZeroDivisionError), store._readers.lease() as conn:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM memories").fetchone()
            raise ZeroDivisionError
        assert not conn.in_transaction  # rolled back when it came back
        answers: list[Any] = []
        other = threading.Thread(target=lambda: answers.append(_answer(store, "lighthouse")))
        other.start()
        other.join(60)
        assert answers == [expected]
        assert store._readers.opened == 1 and store._readers.waits == 0
    finally:
        store.close()


def test_a_read_waiting_for_a_reader_gets_store_closed_when_the_store_closes(
        tmp_path: Path) -> None:
    store = _store(tmp_path, readers=1)
    release = threading.Event()
    held = threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        with store._readers.lease():
            held.set()
            release.wait(60)

    def read() -> None:
        try:
            _answer(store, "fog")
        except StoreClosed as exc:
            errors.append(exc)

    holder, reader = threading.Thread(target=hold), threading.Thread(target=read)
    holder.start()
    held.wait(30)
    reader.start()
    wait_for(lambda: store._readers.waits == 1, timeout=30.0)
    store._readers.close()  # what Store.close does after the writer has finished
    reader.join(60)
    release.set()
    holder.join(60)
    store.close()
    assert len(errors) == 1


def test_the_server_reads_on_at_most_its_readers_connections(
        tmp_path: Path, server_process: Callable[..., Any]) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "engram.toml").write_text('[engine]\nreaders = 2\nembedding_model = "none"\n')
    sp = server_process(data)
    with grpc.insecure_channel(sp.address) as channel:
        stub = svc.EngramServiceStub(channel)
        for i in range(50):
            stub.Remember(pb.RememberRequest(memory=pb.Memory(
                content=f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} note {i}")))
        db = data / "engram.db"
        before = _db_connections(sp.proc.pid, db)

        def recalls(k: int) -> int:
            n = 0
            for i in range(10):
                resp = stub.Recall(pb.RecallRequest(cue=pb.Cue(semantic=pb.SemanticCue(
                    query=CUES[(k + i) % len(CUES)]))), timeout=30)
                n += len(resp.memories)
            return n

        with ThreadPoolExecutor(16) as pool:
            assert all(list(pool.map(recalls, range(16))))
        metrics = stub.Introspect(pb.IntrospectRequest()).metrics
        assert metrics["readers.size"] == 2
        assert 1 <= metrics["readers.open"] <= 2
        assert metrics["sqlite.bytes"] > 0
        assert _db_connections(sp.proc.pid, db) - before <= 2


def test_release_memory_frees_the_page_caches_and_reads_go_on(tmp_path: Path) -> None:
    from engram_cli.engine.readers import sqlite_memory

    store = _store(tmp_path, readers=2)
    try:
        expected = {cue: _answer(store, cue) for cue in CUES}
        store.remember_many("", [MemoryRecord(id=f"x{i}", content=f"filler {i} " * 40)
                                 for i in range(3000)])  # fills the writer's cache
        before = sqlite_memory()[0]
        store.release_memory()
        after = sqlite_memory()[0]
        assert after < before - 1024 * 1024, (before, after)
        assert {cue: _answer(store, cue) for cue in CUES} == expected
    finally:
        store.close()


def test_an_idle_server_releases_its_caches_when_it_becomes_idle() -> None:
    from engram_cli.server.memory import trim_periodically

    stopped = threading.Event()
    idle = [100.0]
    asked: list[float] = []
    released: list[float] = []

    def idle_s() -> float:
        asked.append(idle[0])
        return idle[0]

    trim_periodically(stopped, every_s=3600, idle_s=idle_s,
                      release=lambda: released.append(idle[0]), idle_release_s=0.1)
    try:
        wait_for(lambda: len(released) == 1, timeout=30.0)
        seen = len(asked)
        wait_for(lambda: len(asked) >= seen + 3, timeout=30.0)
        assert len(released) == 1  # still idle: not again before the next trim
        idle[0] = 0.0  # a call came
        seen = len(asked)
        wait_for(lambda: len(asked) >= seen + 2, timeout=30.0)
        idle[0] = 50.0  # idle again
        wait_for(lambda: len(released) == 2, timeout=30.0)
    finally:
        stopped.set()
