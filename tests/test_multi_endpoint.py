"""Several servers behind one --server (`a:P,b:P` or `dns:///NAME:P`): gRPC's round_robin
spreads the calls (counted by each server's Introspect), a server killed mid-import is
routed around and nothing acknowledged is lost, and against several upstream endpoints the
importer sends unary Remember (a cluster proxies those, not streams)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest

from engram_cli.client.connection import channel_target, open_channel
from engram_cli.client.settings import resolve_client_settings
from engram_cli.engine.store import DB_NAME
from engram_cli.errors import SettingsError
from engram_cli.rpc import pb, svc
from tests.conftest import UpstreamServer
from tests.import_support import (
    count_on,
    records,
    run_import,
    start_import,
    wait_for,
    write_jsonl,
)


def last_json(text: str) -> dict:
    import orjson

    return orjson.loads(text.strip().splitlines()[-1])


def calls_on(address: str) -> dict[str, float]:
    """The calls a server received per method, from its Introspect metrics."""
    with grpc.insecure_channel(address) as channel:
        metrics = svc.EngramServiceStub(channel).Introspect(
            pb.IntrospectRequest(), timeout=10).metrics
    return {k.removeprefix("calls."): v for k, v in metrics.items() if k.startswith("calls.")}


def ids_in(data_dir: Path) -> set[str]:
    """The ids a stopped server's store holds (read from its file, as it was left)."""
    db = next(data_dir.rglob(DB_NAME))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM memories")}


def test_server_lists_and_dns_names_are_kept_and_checked() -> None:
    s = resolve_client_settings({"server": "localhost:7001, 127.0.0.1:7002"}, env={})
    assert s.server == "localhost:7001,127.0.0.1:7002"
    assert resolve_client_settings({"server": "dns:///engram.internal:7001"},
                                   env={}).server == "dns:///engram.internal:7001"
    assert resolve_client_settings({"server": "dns:///engram.internal"},
                                   env={}).server == "dns:///engram.internal:50051"
    with pytest.raises(SettingsError, match="--server"):
        resolve_client_settings({"server": "a:1,b:x"}, env={})
    target, options = channel_target("localhost:7001,127.0.0.1:7002")
    assert target == "ipv4:127.0.0.1:7001,127.0.0.1:7002"
    assert '"round_robin"' in dict(options)["grpc.service_config"]
    assert channel_target("dns:///engram.internal:7001")[0] == "dns:///engram.internal:7001"
    assert channel_target("localhost:7001") == ("localhost:7001", [])  # one server: as is


def test_import_and_recall_spread_over_two_servers(server_process, tmp_path: Path) -> None:
    a = server_process(tmp_path / "a")
    b = server_process(tmp_path / "b")
    both = f"{a.address},{b.address}"
    n = 3000
    path = write_jsonl(tmp_path / "in.jsonl", records(n))
    result = run_import(both, str(path), "--batch", "100", "--json")
    assert result.returncode == 0, result.stderr
    assert last_json(result.stdout)["imported"] == n
    counts = [count_on(a.address), count_on(b.address)]
    assert sum(counts) == n and min(counts) > 0, counts
    batches = [calls_on(s.address).get("BatchRemember", 0) for s in (a, b)]
    assert min(batches) > 0, batches
    # Recall: each cue is one call, and the calls go to both servers (the first ones
    # wait for the channel and go to the server that answered first).
    import subprocess
    import sys

    from tests.import_support import cli_env

    cues = "".join(f"topic {i}\n" for i in range(300))
    done = subprocess.run(
        [sys.executable, "-m", "engram_cli", "--server", both, "recall", "-", "--no-cache",
         "--format", "jsonl"], input=cues, capture_output=True, text=True, timeout=120,
        env=cli_env())
    assert done.returncode == 0, done.stderr
    recalls = [calls_on(s.address).get("Recall", 0) for s in (a, b)]
    assert sum(recalls) >= 300 and min(recalls) > 0, recalls


def test_a_server_killed_mid_import_is_routed_around(server_process, tmp_path: Path) -> None:
    a = server_process(tmp_path / "a")
    b = server_process(tmp_path / "b")
    n = 6000
    path = write_jsonl(tmp_path / "in.jsonl", records(n))
    # Small batches at a steady rate: batches are on their way to b when it dies.
    proc = start_import(f"{a.address},{b.address}", str(path), "--rate", "3000",
                        "--batch", "100", "--json")
    wait_for(lambda: count_on(b.address) >= 1000)
    b.kill9()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    summary = last_json(out)
    assert summary["imported"] == n and summary["rejected"] == 0, summary
    # (Whether a batch was in flight to b when it died, and so whether the importer said
    # "is unavailable: sending to the others", depends on timing: the counts below do not.)
    assert a.terminate() == 0
    on_a, on_b = ids_in(a.data_dir), ids_in(b.data_dir)
    # Every record is on one of them: acknowledged by b before it died, or by a (sent
    # there first, or again after b died: the same ids, so a retry never makes a copy).
    assert len(on_a | on_b) == n, (len(on_a), len(on_b))
    # Both took part; only a batch b stored without getting to answer is on both.
    assert len(on_b) >= 1000 and len(on_a) > 0
    assert len(on_a & on_b) <= 1000, len(on_a & on_b)


def test_several_upstream_endpoints_get_unary_remember(tmp_path: Path) -> None:
    """Upstream nodes have no BatchRemember; a cluster proxies unary Remember to the
    space's owner but not StreamingRemember, so the importer sends unary calls."""
    nodes = [UpstreamServer(tmp_path / f"node{i}") for i in range(2)]
    try:
        n = 400
        path = write_jsonl(tmp_path / "in.jsonl", records(n))
        # Upstream stores only 768-d vectors: the client embeds (and pads) the text.
        embed = ("--embed", "--embed-dim", "768")
        result = run_import(",".join(s.address for s in nodes), str(path), "--json", *embed)
        assert result.returncode == 0, result.stderr
        assert "sending with unary Remember" in result.stderr
        assert last_json(result.stdout)["imported"] == n
        counts = [count_on(s.address) for s in nodes]
        assert sum(counts) == n and min(counts) > 0, counts
        # One endpoint alone still streams, as before.
        single = run_import(nodes[0].address, str(path), "--json", *embed)
        assert single.returncode == 0 and "StreamingRemember" in single.stderr
    finally:
        for s in nodes:
            s.close()


def test_a_server_that_is_down_from_the_start_is_skipped(server, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    channel = open_channel(f"{dead},{server.address}")
    try:
        stub = svc.EngramServiceStub(channel)
        for i in range(10):
            assert stub.Remember(pb.RememberRequest(memory=pb.Memory(content=f"m{i}")),
                                 timeout=10).memory_id
    finally:
        channel.close()
    assert count_on(server.address) == 10


def test_a_dns_name_with_several_addresses_spreads_over_them(tmp_path: Path) -> None:
    """`dns:///localhost:P` resolves to 127.0.0.1 and ::1: a server on each, one port."""
    from engram_cli.server.app import EngramServer, ServeOptions

    v4 = EngramServer(ServeOptions(data_dir=tmp_path / "v4", port=0))
    v4.start()
    v6 = EngramServer(ServeOptions(data_dir=tmp_path / "v6", host="::1", port=v4.port))
    try:
        v6.start()
        channel = open_channel(f"dns:///localhost:{v4.port}")
        try:
            stub = svc.EngramServiceStub(channel)
            for i in range(40):
                stub.Remember(pb.RememberRequest(memory=pb.Memory(content=f"m{i}")), timeout=10)
        finally:
            channel.close()
        counts = [count_on(v4.address), count_on(v6.address)]
        assert sum(counts) == 40 and min(counts) > 0, counts
    finally:
        v6.stop(grace=1)
        v4.stop(grace=1)
