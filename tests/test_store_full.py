"""A store that fills up mid-import (max_store_bytes caps the database through SQLite's
max_page_count, as a full disk would stop it), then gets room: the writes are answered
RESOURCE_EXHAUSTED with retry-after-ms meanwhile, health says so, and the import waits
and finishes with the exact count."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from engram_cli.contract import RETRY_AFTER_KEY, STORE_FULL_DETAIL
from engram_cli.rpc import pb, svc
from tests.import_support import cli_env, count_on, records, start_import, wait_for, write_jsonl

N = 4000


def space_component(address: str) -> pb.ComponentHealth:
    with grpc.insecure_channel(address) as channel:
        resp = svc.EngramServiceStub(channel).Introspect(pb.IntrospectRequest(), timeout=10)
    return resp.health.components["space"]


def test_a_full_store_makes_the_import_wait_then_finish_exactly(server_process, tmp_path
                                                                ) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "engram.toml").write_text(
        '[engine]\nmax_store_bytes = 2000000\nembedding_model = "none"\n')
    sp = server_process(data)
    path = write_jsonl(tmp_path / "in.jsonl", records(N))
    proc = start_import(sp.address, str(path), "--batch", "200")
    try:
        wait_for(lambda: not space_component(sp.address).operational, timeout=60)
        assert "full since" in space_component(sp.address).status_message
        stuck = count_on(sp.address)
        assert 0 < stuck < N

        with grpc.insecure_channel(sp.address) as channel, \
                pytest.raises(grpc.RpcError) as info:
            svc.EngramServiceStub(channel).Remember(pb.RememberRequest(
                # larger than the whole cap: this one cannot slip into a free page
                memory=pb.Memory(content="full " * 200_000)), timeout=10)
        err = info.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.details().startswith(STORE_FULL_DETAIL)
        assert int(dict(err.trailing_metadata())[RETRY_AFTER_KEY]) > 0

        raised = subprocess.run(
            [sys.executable, "-m", "engram_cli", "--server", sp.address, "tune", "--set",
             "max_store_bytes=0"], capture_output=True, text=True, env=cli_env(), timeout=60)
        assert raised.returncode == 0, raised.stderr
        _, err_text = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err_text
    assert "store is full: waiting for room" in err_text
    assert count_on(sp.address) == N
    wait_for(lambda: space_component(sp.address).operational, timeout=30)
    sp.terminate()
    _, log = sp.proc.communicate(timeout=20)
    assert log.count("the store is full") == 1, log
    assert "room again" in log
    assert "Traceback" not in log
