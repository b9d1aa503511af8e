"""The server's maths libraries run on one thread per calling thread (server/cores.py):
numpy's BLAS, left at a thread per core, kept threads spinning that took the cores from
the RPC threads, the indexer and the embedding workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engram_cli.rpc import pb
from tests.rpc_helpers import stubs


def test_the_server_runs_numpys_blas_on_one_thread(tmp_path: Path,
                                                  server_process: Callable[..., Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Two threads asked for outright, so the test means the same on a 1-core machine.
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    srv = server_process(tmp_path / "data", "--idle-timeout", "0")
    with stubs(srv.address) as (stub, _):
        metrics = stub.Introspect(pb.IntrospectRequest(include_statistics=True),
                                  timeout=30).metrics
    assert metrics["server.blas_threads"] == 1.0
    assert srv.terminate() == 0
