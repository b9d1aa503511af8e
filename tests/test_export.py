"""`engram export` end to end against real servers: the record format, the round trip
through a second server (byte for byte), formats and options, and a server without the
Export RPC."""

from __future__ import annotations

import gzip
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from engram_cli.cli.main import app
from engram_cli.errors import UnsafePath
from engram_cli.server.app import EngramServer, ServeOptions
from tests.conftest import UpstreamServer

SPACE = "roundtrip"


def every_field_kind() -> list[dict]:
    """Records with every kind of value import reads, and what export adds."""
    return [
        {"id": "emb-1", "content": "coffee at the corner café ☕", "embedding":
         [0.1, -0.25, 1e-8, 3.5], "confidence": 0.8, "tags": ["coffee", "morning"],
         "metadata": {"place": "Zürich", "n": 3, "ok": True, "nested": {"a": [1, 2]},
          "none": None}, "memory_type": "episodic", "created_at": "2024-05-01T08:30:00.123456Z",
         "decay_rate": 0.05, "state": "consolidated",
         "associations": [{"target": "plain-2", "strength": 0.75, "type": 1,
                           "reason": "same morning"},
                          {"target": "later-9", "strength": 0.2}]},
        {"id": "plain-2", "content": "日本語のメモ\nwith a newline, \"quotes\" and, commas",
         "tags": [], "metadata": {}},
        {"id": "only-emb", "content": "", "embedding": [1.0, 0.0, 0.0, 0.0],
         "memory_type": "semantic", "created_at": 1714552200.5},
        {"content": "no id: the content id is used", "confidence": 1, "decay_rate": 0,
         "memory_type": "procedural", "state": "reconsolidating"},
        {"id": "later-9", "content": "points back", "created_at": 1714552200,
         "associations": [{"target": "emb-1", "strength": 1.0}]},
    ]


def run(address: str, *args: str, input: str | None = None):
    return CliRunner().invoke(app, ["--server", address, *args], input=input)


@pytest.fixture
def second_server(tmp_path: Path) -> Iterator[EngramServer]:
    srv = EngramServer(ServeOptions(data_dir=tmp_path / "second-data", port=0))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop(grace=1.0)


def write_jsonl(path: Path, recs: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return path


@pytest.mark.parametrize("ext", ["jsonl", "csv", "jsonl.gz"])
def test_export_import_export_is_byte_identical(server, second_server, tmp_path, ext):
    src = write_jsonl(tmp_path / "in.jsonl", every_field_kind())
    r = run(server.address, "import", str(src), "--space", SPACE)
    assert r.exit_code == 0, r.output
    first = tmp_path / f"first.{ext}"
    r = run(server.address, "export", "--space", SPACE, "-o", str(first))
    assert r.exit_code == 0, r.output
    assert "exported 5 memories (3 associations)" in r.output
    r = run(second_server.address, "import", str(first), "--space", SPACE)
    assert r.exit_code == 0, r.output
    assert "associations 3" in r.output
    second = tmp_path / f"second.{ext}"
    r = run(second_server.address, "export", "--space", SPACE, "-o", str(second))
    assert r.exit_code == 0, r.output
    assert first.read_bytes() == second.read_bytes()
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    # The second store holds the same associations, usable by spreading.
    assert second_server.store.stats(SPACE)["total_associations"] == 3
    # ... and spreading's index of them: each pair of memories both ways, although the
    # first record points at a memory further on in the file.
    edges = second_server.store._reader().execute("SELECT count(*) FROM edges").fetchone()[0]
    assert edges == 4


def test_exported_records_carry_every_field(server, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", every_field_kind())
    assert run(server.address, "import", str(src), "--space", SPACE).exit_code == 0
    r = run(server.address, "export", "--space", SPACE)
    assert r.exit_code == 0, r.output
    recs = {x["id"]: x for x in map(orjson.loads, r.stdout_bytes.splitlines())}
    first = recs["emb-1"]
    assert first["embedding"] == [0.1, -0.25, 1e-8, 3.5]  # shortest float32 forms
    assert first["confidence"] == 0.8
    assert first["metadata"] == {"n": "3", "nested": '{"a":[1,2]}', "none": "null",
                                 "ok": "true", "place": "Zürich"}
    assert first["memory_type"] == "episodic" and first["state"] == "consolidated"
    assert first["created_at"] == pytest.approx(1714552200.123456)
    assert first["associations"] == [
        {"target": "later-9", "strength": 0.2},
        {"target": "plain-2", "strength": 0.75, "type": 1, "reason": "same morning"}]
    assert recs["plain-2"]["tags"] == [] and "embedding" not in recs["plain-2"]
    assert recs["plain-2"]["state"] == "recent"
    assert "memory_type" not in recs["plain-2"]
    assert recs["only-emb"]["content"] == ""
    # The summary went to stderr: stdout holds nothing but records.
    assert len(recs) == 5


def test_times_come_back_to_the_nanosecond_and_before_1970_as_valid_timestamps(
        server, second_server, tmp_path):
    """Seconds were split into a Timestamp's nanoseconds by truncating: 62933.130881237
    came back as ...236, so an exported space imported again was not the same file. And
    a time before 1970 with a fraction went out with negative nanos, which is no valid
    Timestamp (other languages' clients refuse it)."""
    from engram_cli.rpc import pb
    from tests.rpc_helpers import stubs

    times = {"early": 62933.130881237, "moon": -14182939.5, "now": 1714552200.987654321}
    src = write_jsonl(tmp_path / "t.jsonl", [{"id": k, "content": f"{k} time",
                                             "created_at": t} for k, t in times.items()])
    assert run(server.address, "import", str(src), "--space", SPACE).exit_code == 0
    first = tmp_path / "first.jsonl"
    assert run(server.address, "export", "--space", SPACE, "-o", str(first)).exit_code == 0
    got = {r["id"]: r["created_at"] for r in map(orjson.loads, first.read_bytes().splitlines())}
    assert got == {"early": 62933.130881237, "moon": -14182939.5, "now": 1714552200.9876542}
    assert run(second_server.address, "import", str(first), "--space", SPACE).exit_code == 0
    second = tmp_path / "second.jsonl"
    assert run(second_server.address, "export", "--space", SPACE, "-o",
               str(second)).exit_code == 0
    assert first.read_bytes() == second.read_bytes()
    with stubs(server.address) as (stub, _):
        resp = stub.Recall(pb.RecallRequest(memory_space_id=SPACE, cue=pb.Cue(
            semantic=pb.SemanticCue(query="moon time")), max_results=1))
    ts = resp.memories[0].created_at
    assert (ts.seconds, ts.nanos) == (-14182940, 500_000_000)


def test_a_csv_export_of_text_with_nul_characters_imports_again(server, second_server,
                                                                tmp_path):
    """CSV has no escapes: a memory's NUL character is written as it is, and the importer
    took the first such byte for binary data and refused its own export."""
    src = write_jsonl(tmp_path / "n.jsonl", [{"id": "n1", "content": "before\u0000after"},
                                             {"id": "n2", "content": "plain"}])
    assert run(server.address, "import", str(src), "--space", SPACE).exit_code == 0
    first = tmp_path / "first.csv"
    assert run(server.address, "export", "--space", SPACE, "-o", str(first)).exit_code == 0
    assert b"before\x00after" in first.read_bytes()
    r = run(second_server.address, "import", str(first), "--space", SPACE)
    assert r.exit_code == 0, r.output
    second = tmp_path / "second.csv"
    assert run(second_server.address, "export", "--space", SPACE, "-o",
               str(second)).exit_code == 0
    assert first.read_bytes() == second.read_bytes()


def test_no_embeddings_since_and_gzip(server, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", every_field_kind())
    assert run(server.address, "import", str(src), "--space", SPACE).exit_code == 0
    out = tmp_path / "x.jsonl.gz"
    r = run(server.address, "export", "--space", SPACE, "--no-embeddings",
            "--since", "2024-05-01T08:30:00.2Z", "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    # emb-1 (08:30:00.123) and later-9 (08:30:00) are older
    assert orjson.loads(r.stdout)["exported"] == 3
    recs = [orjson.loads(x) for x in gzip.decompress(out.read_bytes()).splitlines()]
    assert {x["id"] for x in recs} >= {"only-emb", "plain-2"} and len(recs) == 3
    assert all("embedding" not in x for x in recs)


def test_since_a_time_before_1970(server, tmp_path):
    """Memories may be from the years 1 to 9999; the server refused any since before 1970
    as "not a time"."""
    src = write_jsonl(tmp_path / "old.jsonl", [
        {"id": "1900", "content": "a turn of the century", "created_at": "1900-01-01T00:00:00Z"},
        {"id": "1969", "content": "the moon landing", "created_at": "1969-07-20T20:17:40Z"},
        {"id": "2024", "content": "last spring", "created_at": "2024-05-01T00:00:00Z"}])
    assert run(server.address, "import", str(src), "--space", SPACE).exit_code == 0
    r = run(server.address, "export", "--space", SPACE, "--since", "1950-01-01T00:00:00Z")
    assert r.exit_code == 0, r.output
    assert [orjson.loads(x)["id"] for x in r.stdout_bytes.splitlines()] == ["1969", "2024"]


def test_export_of_an_empty_space_writes_an_empty_file(server, tmp_path):
    out = tmp_path / "empty.jsonl"
    r = run(server.address, "export", "--space", "nothing-here", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == b""


def test_export_pages_come_from_one_snapshot(server):
    """Memories written while an export is half read are not in it."""
    from engram_cli.engine.model import MemoryRecord

    store = server.store
    store.remember_many(SPACE, [MemoryRecord(id=f"m{i}", content=f"memory {i}")
                                for i in range(25)])
    pages = store.export(SPACE, page_size=10)
    total, first, _ = next(pages)
    assert total == 25 and len(first) == 10
    store.remember_many(SPACE, [MemoryRecord(id=f"late{i}", content=f"late {i}")
                                for i in range(5)])
    store.forget(SPACE, ["m20"], "delete")
    rest = [r[0] for _, page, _ in pages for r in page]
    assert rest == [f"m{i}" for i in range(10, 25)]


def test_bad_flags_are_usage_errors(server, tmp_path):
    for since, why in (("last tuesday", "is not RFC 3339 or epoch seconds"),
                       ("-5m", "is not RFC 3339 or epoch seconds"),  # an age to come
                       ("nand", "is not RFC 3339 or epoch seconds"),  # float('nan') days
                       ("2024-05-01", "has no time zone (add Z or +HH:MM)")):
        r = run(server.address, "export", "--since", since)
        assert r.exit_code == 2, r.output
        assert f"Error: --since {since!r} {why}: give RFC 3339" in r.output
    r = run(server.address, "export", "--format", "xml")
    assert r.exit_code == 2, r.output
    r = run(server.address, "export", "-o", str(tmp_path))
    assert r.exit_code == 2 and "is a directory" in r.output


def test_a_server_without_export_is_refused_and_nothing_is_written(tmp_path):
    upstream = UpstreamServer(tmp_path / "up")
    try:
        out = tmp_path / "out.jsonl"
        r = run(upstream.address, "export", "-o", str(out))
    finally:
        upstream.close()
    assert r.exit_code == 1, r.output
    assert "has no Export RPC" in r.output and "no lossless way" in r.output
    assert "Traceback" not in r.output
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out.jsonl")]


def test_import_rejects_bad_state_and_associations(server, tmp_path):
    src = write_jsonl(tmp_path / "bad.jsonl", [
        {"id": "a", "content": "x", "state": "asleep"},
        {"id": "b", "content": "y", "associations": [{"strength": 0.5}]},
        {"id": "c", "content": "z", "associations": [{"target": "a", "strength": 7}]},
        {"id": "d", "content": "fine", "associations": [{"target": "d2"}]},
    ])
    r = run(server.address, "import", str(src), "--space", SPACE)
    assert r.exit_code == 3, r.output
    assert "state 'asleep' is not one of" in r.output
    assert "each must be an object with a target id" in r.output
    assert "strength 7 is not a number in 0..1" in r.output


def test_remember_and_batch_remember_keep_the_reserved_state(server):
    import grpc

    from engram_cli.engine.model import State
    from engram_cli.rpc import ext, pb
    from tests.rpc_helpers import remember, stubs

    with stubs(server.address) as (stub, ext_stub):
        remember(stub, "settled", space=SPACE, id="s1",
                 metadata={"engram.state": "consolidated", "kept": "yes"})
        with pytest.raises(grpc.RpcError) as err:
            remember(stub, "bad", space=SPACE, id="s2", metadata={"engram.state": "asleep"})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        resp = ext_stub.BatchRemember(ext.BatchRememberRequest(memory_space_id=SPACE, memories=[
            pb.Memory(id="b1", content="one", metadata={"engram.state": "reconsolidating"}),
            pb.Memory(id="b2", content="two", metadata={"engram.state": "nope"})]))
    assert (resp.stored, resp.rejected) == (1, 1)
    assert "consolidation state" in resp.results[-1].error
    got = {r.id: r for r in server.store.get(SPACE, ["s1", "b1"])}
    assert got["s1"].state == State.CONSOLIDATED and got["s1"].metadata == {"kept": "yes"}
    assert got["b1"].state == State.RECONSOLIDATING


def _drain(path: Path) -> tuple[threading.Thread, list[bytes]]:
    """A reader at the other end of the FIFO `path` (what `>(gzip > a.gz)` is)."""
    got: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


def test_export_into_a_pipe_or_a_device_writes_it_as_it_is(server, tmp_path):
    """`-o >(gzip > a.gz)`, a FIFO, `-o /dev/null`: the temporary file beside the target
    and the rename over it failed in /dev/fd, and as root replaced /dev/null with a file.
    (FIFOs stand in for devices here: a test must not risk a machine's /dev/null.)"""
    from engram_cli.client.export import check_output
    from engram_cli.files import write_in_place

    assert run(server.address, "import", str(write_jsonl(tmp_path / "in.jsonl",
                                                              every_field_kind()))).exit_code == 0
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader, got = _drain(fifo)
    done = run(server.address, "export", "-o", str(fifo))
    reader.join(10)
    assert done.exit_code == 0, done.output
    assert len(got[0].splitlines()) == len(every_field_kind())
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and not list(tmp_path.glob(".out.fifo*"))
    # `-o -` and `-o /dev/stdout` are stdout.
    for name in ("-", "/dev/stdout"):
        out = run(server.address, "export", "-o", name)
        assert out.exit_code == 0 and len(out.stdout.splitlines()) == len(every_field_kind())
    assert not (Path.cwd() / "-").exists()
    # /dev/null is written as it is (checked without writing to it); a symlink to a
    # character device is not (a link planted at an output path).
    assert write_in_place("/dev/null") and check_output(Path("/dev/null"))
    link = tmp_path / "planted"
    link.symlink_to("/dev/null")
    assert not write_in_place(link)


def test_rejects_into_a_pipe_or_a_device_are_written_as_they_are(server, tmp_path):
    """`--rejects /dev/null` unlinked the target first (a fresh run's old rejects): as
    root, /dev/null itself. A FIFO stands in for it; --resume reads nothing back from it."""
    from engram_cli.files import write_atomic

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"content": "fine"}, {"confidence": 2}])
    fifo = tmp_path / "rejects.fifo"
    os.mkfifo(fifo)
    for extra in ((), ("--resume",)):
        reader, got = _drain(fifo)
        done = run(server.address, "import", str(bad), "--rejects", str(fifo), *extra)
        reader.join(10)
        assert done.exit_code == 3, done.output
        assert b'"line":2' in got[0] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(UnsafePath, match="is not a regular file"):
        write_atomic(fifo, b"config")  # tune --write-config /dev/null, and the like
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant another user's FIFO")
def test_a_fifo_another_user_planted_at_the_rejects_path_is_not_written_into(server,
                                                                            tmp_path):
    """The default rejects file sits beside its input, often in a shared directory: a FIFO
    planted there by another user would hand them every rejected record."""
    from engram_cli.files import write_in_place

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"content": "fine"}, {"confidence": 2}])
    planted = tmp_path / "bad.jsonl.rejects.jsonl"
    os.mkfifo(planted)
    os.chown(planted, 65534, 65534)
    assert not write_in_place(planted)
    done = run(server.address, "import", str(bad))  # would block on the FIFO if opened
    assert done.exit_code == 1, done.output
    assert "is not a regular file" in done.output
