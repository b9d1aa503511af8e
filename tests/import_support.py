"""Helpers shared by the tests of `engram import`: realistic data from
engram_cli.benchsuite.datagen, counting what a server holds, running the CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import orjson

from engram_cli.benchsuite import datagen
from engram_cli.rpc import pb, svc

ROOT = Path(__file__).resolve().parent.parent




def records(n: int, seed: int = 0, start: int = 0) -> list[dict[str, Any]]:
    return list(datagen.generate_records(n, seed=seed, start=start))


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def count_on(address: str, space: str = "") -> int:
    """Memories the server at `address` holds in `space`, through engram.v1 Introspect."""
    with grpc.insecure_channel(address) as channel:
        resp = svc.EngramServiceStub(channel).Introspect(
            pb.IntrospectRequest(memory_space_id=space, include_statistics=True), timeout=10)
    return int(resp.statistics.total_memories)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except grpc.RpcError:
            pass  # the server is restarting
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def start_import(address: str, *args: str, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """`engram import` as a real process (its own signals, its own exit code)."""
    return subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "--server", address, "import", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env=env or cli_env())


def run_import(address: str, *args: str, cwd: Path | None = None,
               env: dict[str, str] | None = None, timeout: float = 120
               ) -> subprocess.CompletedProcess:
    proc = start_import(address, *args, cwd=cwd, env=env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
