"""Shared fixtures: an isolated environment, a real server on port 0 (in-process, and as a
subprocess for process behaviour), and the CLI runner."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store
from engram_cli.server.app import EngramServer, ServeOptions


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees the developer's config, cache, data, servers or settings."""
    # By prefix, not by list: a setting added later is dropped too.
    for key in [k for k in os.environ if k.startswith("ENGRAM_")]:
        monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("ENGRAM_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("ENGRAM_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("ENGRAM_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("ENGRAM_NO_AUTOSTART", "1")
    # The in-process CLI would lower the test process's own CPU priority (a local server).
    monkeypatch.setenv("ENGRAM_NICE", "0")
    return home


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EngramServer]:
    """A real server in this process on a free port, with its own data dir."""
    srv = EngramServer(ServeOptions(data_dir=tmp_path / "server-data", port=0))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop(grace=1.0)


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    address: str
    data_dir: Path

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_server_process(data_dir: Path, *extra: str, port: int = 0) -> ServerProcess:
    """`engram serve` as a real subprocess; returns once it prints its address."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "serve", "--port", str(port), "--data-dir",
         str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (\S+)", line)
        if m:
            return ServerProcess(proc, m.group(1), data_dir)
    proc.kill()
    _, err = proc.communicate(timeout=5)
    raise RuntimeError(f"engram serve did not start: {err}")


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start `engram serve` subprocesses; all are killed at teardown."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, *extra: str, port: int = 0) -> ServerProcess:
        sp = start_server_process(data_dir or tmp_path / "proc-data", *extra, port=port)
        started.append(sp)
        return sp

    try:
        yield start
    finally:
        for sp in started:
            if sp.proc.poll() is None:
                sp.proc.kill()
            sp.proc.wait(10)
            for stream in (sp.proc.stdout, sp.proc.stderr):
                if stream:
                    stream.close()


class UpstreamServer:
    """A real gRPC server with only engram.v1's EngramService (no ExtensionService, unless
    a test registers a partial one through `extra`), as an Engram deployment that is not
    ours would be: by default its servicer behaves as upstream's does on the wire
    (tests/upstream_fake.py: 768-d embeddings required, a refused item ends a stream).
    Not a mock: the servicer runs over a real Store, with no embedding model of its own."""

    def __init__(self, data_dir: Path, servicer_class: type | None = None,
                 interceptors: Sequence[Any] = (),
                 extra: Sequence[Callable[[Any], None]] = ()) -> None:
        from concurrent import futures

        import grpc

        from engram_cli.rpc import svc
        from tests.upstream_fake import UpstreamServicer

        # Upstream embeds nothing on the server; its answers are never partial.
        self.store = Store(data_dir, Settings().replace({"embedding_model": "none"}))
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                interceptors=list(interceptors))
        self.servicer = (servicer_class or UpstreamServicer)(self.store)
        svc.add_EngramServiceServicer_to_server(self.servicer, self.grpc)
        for register in extra:
            register(self.grpc)
        port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self.grpc.start()

    def close(self) -> None:
        self.grpc.stop(1).wait()
        self.store.close()


@pytest.fixture
def upstream_server(tmp_path: Path) -> Iterator[UpstreamServer]:
    """An upstream-shaped server (engram.v1 only) on a free port."""
    srv = UpstreamServer(tmp_path / "upstream-data")
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def engram(runner: CliRunner, server: EngramServer) -> Callable[..., object]:
    """Run the CLI against the fixture server: engram("recall", "x") -> click Result."""
    from engram_cli.cli.main import app

    def run(*args: str, input: str | None = None) -> object:
        return runner.invoke(app, ["--server", server.address, *args], input=input)

    return run


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An engine store in tmp_path with consolidation off (the engine-level tests' store)."""
    s = Store(tmp_path / "data", Settings().replace({"consolidation_interval_s": 0.0}))
    try:
        yield s
    finally:
        s.close()
