"""`engram bench` against real servers: ours (engram.v1 + extensions) and an
upstream_server-shaped one that serves engram.v1 only, started here on port 0."""

from __future__ import annotations

import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engram_cli.client.connection import open_channel
from engram_cli.engine.store import Store
from engram_cli.rpc import pb, svc
from engram_cli.server.servicer import EngramServicer
from tests.conftest import UpstreamServer
from tests.import_support import wait_for
from tests.upstream_fake import UPSTREAM_VECTOR

ROWS = ["batching", "pooling", "caching", "streaming"]
SWEEP_SIZES = [1, 10, 100, 500, 1000]
OTHER_SPACE = "keep-me"


class NoStreamingServicer(EngramServicer):
    """engram.v1 without StreamingRemember: the generated base answers UNIMPLEMENTED."""

    StreamingRemember = svc.EngramServiceServicer.StreamingRemember


@pytest.fixture
def upstream_no_streaming(tmp_path: Path) -> Iterator[UpstreamServer]:
    srv = UpstreamServer(tmp_path / "upstream_server-nostream-data", NoStreamingServicer)
    try:
        yield srv
    finally:
        srv.close()


def remember_elsewhere(address: str) -> str:
    """A memory in another space, which the benchmark must leave alone."""
    channel = open_channel(address)
    try:
        resp = svc.EngramServiceStub(channel).Remember(pb.RememberRequest(
            memory_space_id=OTHER_SPACE,
            memory=pb.Memory(content="The spare key to the garage is under the blue pot.",
                             embedding=UPSTREAM_VECTOR)),
            timeout=10)
    finally:
        channel.close()
    return str(resp.memory_id)


def rows_by_space(store: Store) -> dict[str, int]:
    """Every row in the memories table per space, suppressed ones included."""
    conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT space, count(*) FROM memories GROUP BY space"))
    finally:
        conn.close()


def run_bench(runner: Any, address: str, *args: str) -> dict[str, Any]:
    from engram_cli.cli.main import app

    result = runner.invoke(app, ["--server", address, "bench", "--json", *args])
    assert result.exit_code == 0, result.output
    return dict(orjson.loads(result.stdout))


def assert_measured(x: Any) -> None:
    assert isinstance(x, float) and math.isfinite(x) and x > 0, x


def test_quick_json_against_our_server(runner: Any, server: Any) -> None:
    kept_id = remember_elsewhere(server.address)
    before = rows_by_space(server.store)

    data = run_bench(runner, server.address, "--quick")

    assert data["server"] == server.address
    assert data["extensions"] is True
    assert data["quick"] is True and data["rounds"] == 3
    assert data["skipped"] == []
    assert [r["name"] for r in data["rows"]] == ROWS
    for row in data["rows"]:
        for key in ("before", "after", "improvement"):
            assert_measured(row[key])
        assert row["rounds"] == 3
        assert len(row["samples"]["before"]) == len(row["samples"]["after"]) == 3
        assert row["unit"] and row["before_label"] and row["after_label"]
        assert set(row["seed"]) == {"before", "after", "unit", "improvement"}
        expected = (row["after"] / row["before"] if row["better"] == "higher"
                    else row["before"] / row["after"])
        assert row["improvement"] == pytest.approx(expected, rel=1e-2)
    by_name = {r["name"]: r for r in data["rows"]}
    assert by_name["batching"]["after_label"] == "one BatchRemember of 100"
    assert by_name["caching"]["hit_rate"] == pytest.approx(0.9, abs=0.05)
    sweep = data["sweep"]
    assert sweep["method"] == "BatchRemember"
    assert [p["batch"] for p in sweep["points"]] == SWEEP_SIZES
    for p in sweep["points"]:
        assert_measured(p["ops_per_s"])
        assert 0 < p["p50_ms"] <= p["p99_ms"]
    assert {p["batch"]: p["seed"]["ops_per_s"] for p in sweep["points"] if p["seed"]} == {
        1: 80.0, 10: 280.0, 100: 520.0, 1000: 680.0}

    space = data["space"]
    assert space.startswith("bench-")
    assert data["cleanup"]["method"] == "DropSpace"
    assert data["cleanup"]["deleted"] > 1000
    after = rows_by_space(server.store)
    assert space not in after
    assert after == before == {OTHER_SPACE: 1}
    assert [r.id for r in server.store.get(OTHER_SPACE, [kept_id])] == [kept_id]


def test_upstream_server_uses_engram_v1_only(runner: Any, upstream_server: UpstreamServer) -> None:
    kept_id = remember_elsewhere(upstream_server.address)

    data = run_bench(runner, upstream_server.address, "--quick", "--rounds", "1")

    assert data["extensions"] is False
    assert data["skipped"] == []
    assert [r["name"] for r in data["rows"]] == ROWS
    by_name = {r["name"]: r for r in data["rows"]}
    assert by_name["batching"]["after_label"] == "one StreamingRemember of 100"
    assert "no BatchRemember" in by_name["batching"]["note"]
    for row in data["rows"]:
        assert_measured(row["improvement"])
    assert data["sweep"]["method"] == "StreamingRemember"
    assert [p["batch"] for p in data["sweep"]["points"]] == SWEEP_SIZES
    # Without DropSpace every memory the run wrote is deleted one by one.
    assert data["cleanup"]["method"] == "Forget(DELETE) per id"
    assert data["cleanup"]["deleted"] > 1000
    assert rows_by_space(upstream_server.store) == {OTHER_SPACE: 1}
    assert [r.id for r in upstream_server.store.get(OTHER_SPACE, [kept_id])] == [kept_id]


def test_rows_the_server_cannot_run_are_reported(
        runner: Any, upstream_no_streaming: UpstreamServer) -> None:
    srv = upstream_no_streaming
    data = run_bench(runner, srv.address, "--quick", "--rounds", "1",
                     "--only", "streaming", "--only", "pooling", "--only", "batching")

    assert [r["name"] for r in data["rows"]] == ["pooling"]
    assert_measured(data["rows"][0]["improvement"])
    skipped = {s["name"]: s["reason"] for s in data["skipped"]}
    assert set(skipped) == {"batching", "streaming"}
    assert all("does not serve" in reason for reason in skipped.values()), skipped
    assert rows_by_space(srv.store) == {}


def test_table_shows_our_figures_beside_the_seed(runner: Any, server: Any) -> None:
    from engram_cli.cli.main import app

    result = runner.invoke(app, ["--server", server.address, "bench", "--quick",
                                 "--rounds", "1", "--only", "batching", "--only", "sweep"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "batching (100 ops)" in out
    assert "1200 -> 180 (6.7x)" in out
    assert "Batch-size sweep (BatchRemember)" in out
    for size in SWEEP_SIZES:
        assert re.search(rf"^ *{size} [█▏▎▍▌▋▊▉]+ +[\d,.]+/s ", out, re.M), out
    assert "removed (DropSpace" in out
    assert rows_by_space(server.store) == {}


def test_command_level_server_option_overrides_the_global_one(runner: Any, server: Any
                                                              ) -> None:
    from engram_cli.cli.main import app

    result = runner.invoke(app, ["--server", "127.0.0.1:1", "bench", "--server",
                                 server.address, "--json", "--quick", "--rounds", "1",
                                 "--only", "pooling"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["server"] == server.address


def test_unknown_row_is_a_usage_error(runner: Any, server: Any) -> None:
    from engram_cli.cli.main import app

    result = runner.invoke(app, ["--server", server.address, "bench", "--only", "bogus"])
    assert result.exit_code == 2, result.output
    assert "--only 'bogus' is not a benchmark row" in result.output
    assert "Traceback" not in result.output


def test_unreachable_server_fails_in_one_line(runner: Any) -> None:
    from engram_cli.cli.main import app

    result = runner.invoke(app, ["bench", "--server", "127.0.0.1:1", "--quick"])
    assert result.exit_code == 1, result.output
    assert "no Engram server answers at 127.0.0.1:1" in result.output
    assert "Traceback" not in result.output


def test_help_has_an_example(runner: Any) -> None:
    from engram_cli.cli.main import app

    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: engram bench --quick" in result.output


def _sigint_default() -> None:
    """Run by the child: a shell starts a background job with SIGINT ignored and children
    inherit that, so the suite run as one would never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_bench(address: str, until: Callable[[], bool]) -> tuple[int | None, str]:
    """`engram bench` (the sweep) as a process, sent SIGINT once `until` holds; answers its
    exit code and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "bench", "--server", address,
         "--only", "sweep", "--rounds", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
        preexec_fn=_sigint_default)
    try:
        wait_for(until, timeout=30.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err.decode()


def test_ctrl_c_still_removes_the_scratch_space(server: Any) -> None:
    remember_elsewhere(server.address)
    code, err = interrupt_bench(
        server.address,
        lambda: any(s.startswith("bench-") for s in rows_by_space(server.store)))
    assert code == 130, err
    assert rows_by_space(server.store) == {OTHER_SPACE: 1}


def test_ctrl_c_against_upstream_still_deletes_what_was_written(
        upstream_server: UpstreamServer) -> None:
    remember_elsewhere(upstream_server.address)
    code, err = interrupt_bench(
        upstream_server.address,
        lambda: sum(n for s, n in rows_by_space(upstream_server.store).items()
                    if s.startswith("bench-")) > 500)
    assert code == 130, err
    assert rows_by_space(upstream_server.store) == {OTHER_SPACE: 1}


def test_a_small_max_batch_limits_the_rows_that_need_big_batches(
        runner: Any, tmp_path: Path) -> None:
    from engram_cli.server.app import EngramServer, ServeOptions

    data_dir = tmp_path / "small-batch"
    data_dir.mkdir()
    (data_dir / "engram.toml").write_text("[engine]\nmax_batch = 50\n")
    srv = EngramServer(ServeOptions(data_dir=data_dir, port=0))
    srv.start()
    try:
        data = run_bench(runner, srv.address, "--quick", "--rounds", "1",
                         "--only", "batching", "--only", "sweep")
        assert data["rows"] == []
        assert data["skipped"] == [{"name": "batching",
                                    "reason": "the server's max_batch 50 is under 100"}]
        assert [p["batch"] for p in data["sweep"]["points"]] == [1, 10]
        assert "sizes 100, 500, 1000 are over the server's max_batch 50" in \
            data["sweep"]["note"]
        assert rows_by_space(srv.store) == {}
    finally:
        srv.stop(grace=1.0)


class NoForgetServicer(EngramServicer):
    """engram.v1 without Forget: the scratch space cannot be removed."""

    Forget = svc.EngramServiceServicer.Forget


def test_a_scratch_space_left_behind_is_a_failure(runner: Any, tmp_path: Path) -> None:
    from engram_cli.cli.main import app

    srv = UpstreamServer(tmp_path / "no-forget", NoForgetServicer)
    try:
        result = runner.invoke(app, ["bench", "--server", srv.address, "--quick",
                                     "--rounds", "1", "--only", "pooling"])
        left = rows_by_space(srv.store)
    finally:
        srv.close()
    assert result.exit_code == 1, result.output
    [space] = left
    assert f"Error: could not remove scratch space {space}" in result.output
    assert "Traceback" not in result.output


def test_every_benchmark_write_has_content_of_its_own() -> None:
    from engram_cli.benchsuite.workload import Workload

    workload = Workload()
    contents = [m.content for m in workload.memories(3000)]
    contents += [r.memory.content for r in workload.requests("bench-x", 3000)]
    assert len(set(contents)) == 6000, workload.source_name
    assert workload.source_name == "engram_cli.benchsuite.datagen"
