"""The indexer's embedding worker process (engine/embedworker.py): a backlog is embedded in a
child process, which dies with the server (kill -9 included), and a child that dies is
replaced without losing a memory. Real servers, real child processes, the real model."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from engram_cli.engine.embedworker import PROCESSES, EmbedWorker, WorkerDied
from engram_cli.engine.indexer import WORKER_AT
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store
from tests import import_support
from tests.conftest import ServerProcess

wait_for = functools.partial(import_support.wait_for, timeout=60.0)
MODEL = "wordllama-l2-supercat-256"
WORDS = ("garden tomatoes ripen slowly in the greenhouse while the espresso machine leaks "
         "water and the train to the coast leaves at noon").split()


def texts(n: int, start: int = 0) -> list[str]:
    return [f"note {i} " + " ".join(WORDS[i % 7:i % 7 + 8]) for i in range(start, start + n)]


def alive(pid: int) -> bool:
    """A process that runs (a zombie left to a parent that does not reap is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def workers_of(pid: int) -> list[int]:
    return [p for p in descendants(pid) if alive(p)
            and b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def cli(address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engram_cli", "--server", address, *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ENGRAM_NO_AUTOSTART": "1"})


def test_kill9_of_the_server_leaves_no_embedding_worker_behind(
        server_process: Callable[..., ServerProcess], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = data / "engram.toml"
    # Imported with no model, then served with one: the whole store is a backlog, which
    # the worker process embeds.
    config.write_text('[engine]\nembedding_model = "none"\n')
    sp = server_process(data)
    records = tmp_path / "notes.jsonl"
    records.write_bytes(b"\n".join(orjson.dumps({"content": t})
                                   for t in texts(3 * WORKER_AT)) + b"\n")
    done = cli(sp.address, "import", str(records), "--quiet")
    assert done.returncode == 0, done.stderr
    assert sp.terminate() == 0
    config.write_text("")
    sp = server_process(data)

    def vector_index() -> dict:
        return orjson.loads(cli(sp.address, "stats", "--json").stdout)["vector_index"]

    wait_for(lambda: vector_index()["indexed"] == 3 * WORKER_AT)
    workers = workers_of(sp.proc.pid)
    assert 1 <= len(workers) <= PROCESSES, "a backlog is embedded in worker processes"
    below = descendants(sp.proc.pid)  # the workers and multiprocessing's resource tracker
    sp.kill9()
    wait_for(lambda: not any(alive(p) for p in below), timeout=20)


def put(store: Store, batch: list[str], start: int) -> None:
    store.remember_many("default", [MemoryRecord(id=f"m{start + i}", content=t,
                                                 confidence=0.9)
                                    for i, t in enumerate(batch)])


def indexed(store: Store, n: int) -> bool:
    st = store.vector_stats()
    return st["indexed"] == n and st["pending"] == 0


def test_a_killed_worker_is_replaced_and_no_memory_is_lost(store: Store) -> None:
    n = 2 * WORKER_AT
    put(store, texts(n), 0)
    wait_for(lambda: indexed(store, n))
    worker = store.indexer._worker
    assert worker is not None
    first = worker.pids()
    assert 1 <= len(first) <= PROCESSES
    # One child killed (the pool breaks and is replaced whole) while (or before) it
    # embeds the next backlog: that backlog is embedded all the same, by the server or by
    # the next workers.
    put(store, texts(n, n), n)
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: indexed(store, 2 * n))
    assert store.stats()["total_memories"] == 2 * n
    put(store, texts(n, 2 * n), 2 * n)
    wait_for(lambda: indexed(store, 3 * n))
    now = worker.pids()
    assert now and not set(now) & set(first) and worker.restarts >= 1
    store.close()
    wait_for(lambda: not any(alive(p) for p in now + first), timeout=20)


def test_a_dead_worker_is_reported_never_waited_for(tmp_path: Path) -> None:
    worker = EmbedWorker(MODEL, 10)
    stopping = threading.Event()
    try:
        vecs = worker.result(worker.submit(["a chalet in the Alps"]), stopping)
        assert vecs is not None and vecs.shape == (1, 256)
        pid = worker.pids()[0]
        pending = worker.submit(["one more text"] * 20_000)
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(WorkerDied):
            worker.result(pending, stopping)
        assert time.monotonic() - started < 30
        again = worker.result(worker.submit(["a cottage in the Swiss mountains"]), stopping)
        assert again is not None and again.shape == (1, 256)
        assert worker.pids() and pid not in worker.pids()
    finally:
        worker.close()


def test_a_worker_that_keeps_dying_gives_up_and_the_caller_is_told(tmp_path: Path) -> None:
    from engram_cli.engine.embedworker import GIVE_UP_AFTER

    worker = EmbedWorker(MODEL, 10)
    stopping = threading.Event()
    try:
        for _ in range(GIVE_UP_AFTER):
            future = worker.submit(["a chalet in the Alps"] * 20_000)
            wait_for(lambda: bool(worker.pids()), timeout=30)
            os.kill(worker.pids()[0], signal.SIGKILL)
            with pytest.raises(WorkerDied):
                worker.result(future, stopping)
        with pytest.raises(WorkerDied, match="times in a row"):
            worker.submit(["one more"])
        assert worker.pids() == []
    finally:
        worker.close()


def test_embedding_workers_sets_how_many_processes_embed(tmp_path: Path) -> None:
    # Two batches are read ahead, so with more processes allowed the executor starts a
    # second child for the second batch (one per core by default); with the setting at 1
    # every batch goes to the one.
    store = Store(tmp_path / "data", Settings().replace({"consolidation_interval_s": 0.0,
                                                          "embedding_workers": 1}))
    try:
        n = 3 * WORKER_AT
        put(store, texts(n), 0)
        wait_for(lambda: indexed(store, n))
        worker = store.indexer._worker
        assert worker is not None and worker.processes == 1
        assert len(worker.pids()) == 1
    finally:
        store.close()
