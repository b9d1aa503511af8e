"""`engram import` end to end against a real server in this process: what is stored,
what is rejected (and where), exit codes, summaries, formats, options, fallback."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import orjson
import pytest

from engram_cli.engine.model import content_id
from engram_cli.server.app import EngramServer, ServeOptions
from tests.conftest import UpstreamServer
from tests.import_support import count_on, records, write_jsonl
from tests.upstream_fake import UPSTREAM_VECTOR


def stored(server: EngramServer, space: str = "default") -> int:
    return int(server.store.stats(space)["total_memories"])


def summary_of(result) -> dict:
    return orjson.loads(result.stdout.strip().splitlines()[-1])


def mixed_file(path: Path, good: list[dict]) -> tuple[Path, dict[int, str]]:
    """Good records with bad lines between them; answers {line number: what is wrong}."""
    bad = {
        3: b"{not json",
        6: b"[1, 2, 3]",
        9: b'{"content": "caf\xff au lait"}',
        12: b'{"tags": ["no content"]}',
        15: b'{"content": "sure?", "confidence": 7}',
        18: b'{"content": 42}',
    }
    lines = []
    it = iter(good)
    for n in range(1, len(good) + len(bad) + 1):
        lines.append(bad[n] if n in bad else orjson.dumps(next(it)))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, {n: "" for n in bad}


def test_mixed_file_stores_every_valid_record_and_rejects_the_rest_with_line_numbers(
        engram, server, tmp_path):
    good = records(60)
    path, bad_lines = mixed_file(tmp_path / "mixed.jsonl", good)
    result = engram("import", str(path), "--json", "--batch", "7")
    assert result.exit_code == 3, result.output
    s = summary_of(result)
    assert (s["imported"], s["rejected"]) == (60, 6)
    assert stored(server) == 60
    ids = [content_id(r["content"]) for r in good]
    assert len(server.store.get("default", ids)) == 60
    rejects = [orjson.loads(x) for x in (tmp_path / "mixed.jsonl.rejects.jsonl").read_bytes()
               .splitlines()]
    assert sorted(r["_reject"]["line"] for r in rejects) == sorted(bad_lines)
    by_line = {r["_reject"]["line"]: r for r in rejects}
    assert "malformed JSON" in by_line[3]["_reject"]["reason"]
    assert "not an object" in by_line[6]["_reject"]["reason"]
    assert "invalid UTF-8" in by_line[9]["_reject"]["reason"]
    assert "missing content" in by_line[12]["_reject"]["reason"]
    assert by_line[15]["confidence"] == 7 and "outside 0..1" in by_line[15]["_reject"]["reason"]
    assert all(r["_reject"]["source"] == str(path) for r in rejects)
    assert f"{path}:3: malformed JSON" in result.stderr


def test_an_input_s_name_is_shown_without_its_control_characters(engram, server, tmp_path):
    """A glob may match a file named by someone else: its name goes into each reject's
    message and the summary, and raw on a terminal its escape sequences drove it."""
    path = tmp_path / "notes\x1b[2J.jsonl"
    path.write_text('{"content": "kept"}\n{"confidence": 2, "content": "x"}\n')
    result = engram("import", str(tmp_path / "notes*.jsonl"))
    assert result.exit_code == 3, result.output
    shown = str(tmp_path / "notes\\x1b[2J.jsonl")
    assert f"{shown}:2: " in result.stderr, result.stderr
    assert f"rejects: {shown}.rejects.jsonl" in result.stdout, result.stdout
    assert "\x1b" not in result.stderr + result.stdout


def test_fixed_rejects_file_imports_again(engram, server, tmp_path):
    path, _ = mixed_file(tmp_path / "m.jsonl", records(20))
    assert engram("import", str(path)).exit_code == 3
    rejects = tmp_path / "m.jsonl.rejects.jsonl"
    fixed = []
    for line in rejects.read_bytes().splitlines():
        rec = orjson.loads(line)
        note = rec["_reject"]
        if "content" not in rec or not isinstance(rec["content"], str):
            rec["content"] = f"fixed line {note['line']}"
        rec.pop("confidence", None)
        fixed.append(rec)  # the _reject annotation stays: the reader ignores it
    write_jsonl(rejects, fixed)
    result = engram("import", str(rejects), "--json")
    assert result.exit_code == 0, result.output
    assert summary_of(result)["imported"] == 6
    assert stored(server) == 26


def test_running_the_same_import_again_adds_nothing(engram, server, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", records(300))
    first = engram("import", str(path), "--json")
    assert first.exit_code == 0, first.output
    again = engram("import", str(path), "--json")
    assert again.exit_code == 0, again.output
    s = summary_of(again)
    assert (s["imported"], s["created"], s["unchanged"]) == (300, 0, 300)
    assert stored(server) == 300


def test_json_summary_keys_and_exit_0(engram, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", records(10))
    result = engram("import", str(path), "--json")
    assert result.exit_code == 0, result.output
    s = summary_of(result)
    assert {"imported", "rejected", "retried", "seconds", "records_per_second"} <= set(s)
    assert s["imported"] == 10 and s["rejected"] == 0 and s["mode"] == "batch"


def test_human_summary_and_quiet(engram, tmp_path):
    path, _ = mixed_file(tmp_path / "m.jsonl", records(20))
    result = engram("import", str(path), "--quiet")
    assert result.exit_code == 3, result.output
    assert result.stdout.startswith("imported 20")
    assert "rejected 6" in result.stdout and "p99" in result.stdout
    assert "malformed JSON" not in result.stderr


def test_csv_tsv_gzip_json_and_glob(engram, server, tmp_path):
    rows = records(40)
    data = tmp_path / "in"
    data.mkdir()
    gz = data / "part1.jsonl.gz"
    gz.write_bytes(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in rows[:10])))
    (data / "part2.json").write_bytes(orjson.dumps(rows[10:20], option=orjson.OPT_INDENT_2))
    datagen_csv = tmp_path / "c.csv"
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["content", "tags", "confidence", "memory_type", "metadata.person", "embedding"])
    for r in rows[20:30]:
        w.writerow([r["content"], ";".join(r["tags"]), r["confidence"], r["memory_type"],
                    "ann", "[0.5, 0.25]"])
    datagen_csv.write_text(buf.getvalue())
    tsv = tmp_path / "t.tsv"
    tsv.write_text("content\ttags\n" + "".join(f"{r['content']}\t[\"t\"]\n" for r in rows[30:]))
    result = engram("import", str(data / "*"), str(datagen_csv), str(tsv), "--json")
    assert result.exit_code == 0, result.output
    assert summary_of(result)["imported"] == 40
    assert stored(server) == 40
    m = server.store.get("default", [content_id(rows[20]["content"])])[0]
    assert m.tags == rows[20]["tags"] and m.metadata == {"person": "ann"}
    assert len(m.embedding) == 8 and m.confidence == pytest.approx(rows[20]["confidence"])
    assert server.store.get("default", [content_id(rows[35]["content"])])[0].tags == ["t"]


def test_stdin_and_its_rejects_file(engram, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "".join(orjson.dumps(r).decode() + "\n" for r in records(25)) + "oops\n"
    result = engram("import", "-", "--json", input=text)
    assert result.exit_code == 3, result.output
    assert summary_of(result)["imported"] == 25 and stored(server) == 25
    note = orjson.loads((tmp_path / "stdin.rejects.jsonl").read_bytes())["_reject"]
    assert (note["source"], note["line"], note["raw"]) == ("stdin", 26, "oops")


def test_stdin_cannot_be_resumed(engram):
    result = engram("import", "-", "--resume", input="{}\n")
    assert result.exit_code == 2, result.output
    assert "stdin cannot be resumed" in result.output


def test_field_mapping_flags(engram, server, tmp_path):
    path = write_jsonl(tmp_path / "own.jsonl", [
        {"key": "doc-1", "body": {"text": "first"}, "who": "ann", "labels": ["x"]},
        {"key": "doc-2", "body": {"text": "second"}, "who": "bob", "labels": []},
    ])
    result = engram("import", str(path), "--id-field", "key", "--content-field", "body.text",
                    "--map", "metadata.author=who", "--map", "tags=labels", "--space",
                    "mapped")
    assert result.exit_code == 0, result.output
    got = {m.id: m for m in server.store.get("mapped", ["doc-1", "doc-2"])}
    assert got["doc-1"].content == "first" and got["doc-1"].metadata == {"author": "ann"}
    assert got["doc-1"].tags == ["x"] and got["doc-2"].content == "second"


def test_usage_errors_exit_2(engram, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", records(2))
    for args in (["--map", "contnet=x"], ["--batch", "0"], ["--max-errors", "many"],
                 ["--format", "xml"], ["--space", "Bad Space!"]):
        result = engram("import", str(path), *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_missing_file_exits_1_naming_it(engram, tmp_path):
    result = engram("import", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 1, result.output
    assert "nope.jsonl" in result.output


def test_dry_run_sends_nothing_and_reports(engram, server, tmp_path):
    path, _ = mixed_file(tmp_path / "m.jsonl", records(30))
    result = engram("import", str(path), "--dry-run", "--json")
    assert result.exit_code == 3, result.output
    s = summary_of(result)
    assert (s["imported"], s["rejected"], s["dry_run"]) == (30, 6, True)
    assert stored(server) == 0
    assert not (tmp_path / "m.jsonl.rejects.jsonl").exists()


def test_max_errors_stops_the_run_with_exit_1(engram, server, tmp_path):
    rows = [{"content": f"good {i}"} if i % 2 else {"content": ""} for i in range(400)]
    path = write_jsonl(tmp_path / "half.jsonl", rows)
    result = engram("import", str(path), "--max-errors", "5", "--batch", "10")
    assert result.exit_code == 1, result.output
    assert "over --max-errors 5" in result.output
    assert stored(server) < 200
    pct = engram("import", str(path), "--max-errors", "60%", "--json")
    assert pct.exit_code == 3, pct.output  # 50% rejected: under the limit
    assert stored(server) == 200
    over = engram("import", str(path), "--max-errors", "10%")
    assert over.exit_code == 1, over.output


def test_fixed_batch_size_and_byte_limited_batches(tmp_path, runner):
    from engram_cli.cli.main import app

    data = tmp_path / "srv"
    data.mkdir()
    (data / "engram.toml").write_text("[engine]\nmax_message_bytes = 1048576\n")
    srv = EngramServer(ServeOptions(data_dir=data, port=0))
    srv.start()
    try:
        big = [{"content": f"{i} " + "x" * 300_000} for i in range(6)]
        # Content within the memory limit (1 MiB), in a message over the server's 1 MiB.
        huge = {"content": "y" * 1_000_000, "metadata": {"pad": "z" * 100_000}}
        rows = [*big[:3], huge, *big[3:]]
        path = write_jsonl(tmp_path / "big.jsonl", rows)
        result = runner.invoke(app, ["--server", srv.address, "import", str(path), "--json",
                                     "--batch", "100"])
        assert result.exit_code == 3, result.output
        s = summary_of(result)
        assert (s["imported"], s["rejected"]) == (6, 1)
        assert s["batches"] >= 2  # 6 x 300 KB do not fit in one 1 MiB message
        note = orjson.loads((tmp_path / "big.jsonl.rejects.jsonl").read_bytes())["_reject"]
        assert note["line"] == 4 and "the largest message the server takes" in note["reason"]
        small = write_jsonl(tmp_path / "small.jsonl", records(50))
        result = runner.invoke(app, ["--server", srv.address, "import", str(small), "--json",
                                     "--batch", "7"])
        assert result.exit_code == 0, result.output
        assert summary_of(result)["batches"] == 8
    finally:
        srv.stop(1)


@pytest.mark.parametrize(("budget", "batch", "bound"), [
    ({"INFLIGHT_RECORDS": 120}, 20, (120, None)),  # 6 batches of 20 at most, not 2 x pool
    ({"INFLIGHT_RECORDS": 120}, 90, (180, None)),  # bigger batches: still two in flight
    ({"INFLIGHT_BYTES": 40_000}, 20, (None, 40_000)),  # the same by encoded bytes
])
def test_what_is_in_flight_is_bounded_by_records_and_bytes(engram, server, tmp_path,
                                                           monkeypatch, budget, batch, bound):
    """Besides the count of calls (2 x --pool), the records and bytes sent and not yet
    settled stay within a budget, or two batches when two batches are more."""
    from engram_cli.client import bulk

    for name, value in budget.items():
        monkeypatch.setattr(bulk, name, value)
    held: list[tuple[int, int]] = []
    dispatch = bulk.BulkSender._dispatch

    def spy(self, send):  # the real call, with what is held at that moment noted
        held.append((self._held_records, self._held_bytes))
        return dispatch(self, send)

    monkeypatch.setattr(bulk.BulkSender, "_dispatch", spy)
    path = write_jsonl(tmp_path / "w.jsonl", records(1500))
    result = engram("import", str(path), "--json", "--batch", str(batch), "--pool", "4")
    assert result.exit_code == 0, result.output
    assert summary_of(result)["imported"] == 1500 == stored(server)
    most_records, most_bytes = bound
    if most_records is not None:
        assert max(r for r, _ in held) <= most_records
    if most_bytes is not None:
        assert 20 * 300 < max(b for _, b in held) <= most_bytes  # a batch is ~20 x 330 B


def test_record_refused_by_the_server_goes_to_rejects(engram, server, tmp_path, monkeypatch):
    # The importer checks a record by the server's own rules, so what only the server can
    # refuse is an id whose 64-bit key another id of the space holds (forced here).
    from engram_cli.engine import rows, writes
    from engram_cli.engine.model import MemoryRecord, memory_key

    def colliding(space: str, mid: str) -> int:
        return 7 if mid in ("first", "second") else memory_key(space, mid)

    for module in (writes, rows):
        monkeypatch.setattr(module, "memory_key", colliding)
    server.store.remember("default", MemoryRecord(id="first", content="stored first"))
    lines = [*records(5), {"id": "second", "content": "zzz"}, *records(5, start=5)]
    path = write_jsonl(tmp_path / "r.jsonl", lines)
    result = engram("import", str(path), "--json")
    assert result.exit_code == 3, result.output
    assert stored(server) == 11
    rec = orjson.loads((tmp_path / "r.jsonl.rejects.jsonl").read_bytes())
    assert rec["_reject"]["line"] == 6 and "64-bit key" in rec["_reject"]["reason"]
    assert rec["content"] == "zzz"


def test_vectors_of_another_size_than_the_space_holds_stop_at_the_first_batch(
        engram, server, tmp_path):
    """Every record refused for its vector's size would be every record of the input
    (a million rejects, each embedded first with --embed): stop with one message naming
    the size the space holds. A file that has some of the right size is imported."""
    from engram_cli.engine.model import MemoryRecord, embedding_to_bytes

    server.store.remember("vecs", MemoryRecord(id="first", content="four floats",
                                               embedding=embedding_to_bytes([1, 0, 0, 0])))
    three = [{"content": f"three floats {i}", "embedding": [0.5, 0.5, 0.0]} for i in range(50)]
    result = engram("--space", "vecs", "import", str(write_jsonl(tmp_path / "3.jsonl", three)))
    assert result.exit_code == 1, result.output
    assert "keeps 4-dimensional vectors in space 'vecs'" in result.stderr
    assert "--embed-dim 4" in result.stderr
    assert stored(server, "vecs") == 1
    mixed = [{"content": "right size", "embedding": [0.0, 1.0, 0.0, 0.0]}, *three]
    result = engram("--space", "vecs", "import", str(write_jsonl(tmp_path / "m.jsonl", mixed)),
                    "--json")
    assert result.exit_code == 3, result.output
    assert (summary_of(result)["imported"], summary_of(result)["rejected"]) == (1, 50)


def test_overloaded_server_is_retried_until_it_takes_everything(tmp_path, runner):
    """A full write queue answers RESOURCE_EXHAUSTED with retry-after-ms; the importer
    waits and resends only what failed, and every record is stored once."""
    from engram_cli.cli.main import app

    data = tmp_path / "srv"
    data.mkdir()
    (data / "engram.toml").write_text("[engine]\nqueue_capacity = 1\n")
    srv = EngramServer(ServeOptions(data_dir=data, port=0))
    srv.start()
    writer = srv.store._writer
    release = threading.Event()
    refused = threading.Event()
    submit = writer.submit

    def counting_submit(fn, *args):
        try:
            return submit(fn, *args)
        except Exception:
            refused.set()
            raise

    writer.submit = counting_submit
    try:
        # Hold the writer (one operation running, one waiting: the queue of 1 is full).
        running = threading.Event()
        writer.submit(lambda conn: (running.set(), release.wait(30)))
        assert running.wait(10)
        writer.submit(lambda conn: None)
        threading.Thread(target=lambda: (refused.wait(30), release.set()), daemon=True).start()
        path = write_jsonl(tmp_path / "a.jsonl", records(2000))
        result = runner.invoke(app, ["--server", srv.address, "import", str(path), "--json",
                                     "--batch", "100", "--pool", "2"])
        assert result.exit_code == 0, result.output
        s = summary_of(result)
        assert refused.is_set()
        assert s["retried"] > 0 and s["imported"] == 2000
        assert stored(srv) == 2000
    finally:
        release.set()
        srv.stop(1)


def test_upstream_server_without_batch_rpc_gets_streaming_remember(upstream_server, runner,
                                                                    tmp_path):
    from engram_cli.cli.main import app

    rows = [*records(150), {"content": "w" * (1024 * 1024 + 1)}, *records(50, start=150)]
    for row in rows:  # upstream stores nothing without a 768-d vector
        row["embedding"] = UPSTREAM_VECTOR
    path = write_jsonl(tmp_path / "up.jsonl", rows)
    result = runner.invoke(app, ["--server", upstream_server.address, "import", str(path), "--json",
                                 "--batch", "40"])
    assert result.exit_code == 3, result.output
    assert result.stderr.count("StreamingRemember") == 1
    s = summary_of(result)
    assert (s["mode"], s["imported"], s["rejected"]) == ("stream", 200, 1)
    assert count_on(upstream_server.address) == 200
    note = orjson.loads((tmp_path / "up.jsonl.rejects.jsonl").read_bytes())["_reject"]
    assert note["line"] == 151
    no_stream = runner.invoke(app, ["--server", upstream_server.address, "import", str(path),
                                    "--no-stream"])
    assert no_stream.exit_code == 1, no_stream.output
    assert "no BatchRemember" in no_stream.output


def test_stream_can_be_forced_on_our_server(engram, server, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", records(120))
    result = engram("import", str(path), "--stream", "--json")
    assert result.exit_code == 0, result.output
    assert summary_of(result)["mode"] == "stream"
    assert stored(server) == 120
    assert "StreamingRemember" not in result.stderr  # chosen, not a fallback: nothing to say


def test_unreachable_server_exits_1(runner, tmp_path):
    from engram_cli.cli.main import app

    path = write_jsonl(tmp_path / "a.jsonl", records(3))
    result = runner.invoke(app, ["--server", "127.0.0.1:1", "import", str(path)])
    assert result.exit_code == 1, result.output
    assert "no Engram server answers at 127.0.0.1:1" in result.output


def test_help_documents_exit_codes_and_has_an_example(runner):
    from engram_cli.cli.main import app

    result = runner.invoke(app, ["import", "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: engram import" in result.output
    for code in ("0 done", "2 usage error", "3 finished but some records rejected",
                 "130 interrupted", "--resume"):
        assert code in " ".join(result.output.split()), code


def test_resume_after_max_errors_and_refusal_when_the_input_changed(engram, server, tmp_path,
                                                                    isolated_env):
    rows = [*records(300), {"content": ""}, *records(300, start=300)]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    stopped = engram("import", str(path), "--max-errors", "0", "--batch", "50")
    assert stopped.exit_code == 1, stopped.output
    assert list((isolated_env / "data" / "imports").glob("*.json"))  # a checkpoint is left
    resumed = engram("import", str(path), "--resume", "--json")
    assert resumed.exit_code == 3, resumed.output
    s = summary_of(resumed)
    assert s["resumed"] and stored(server) == 600
    assert (s["rejected"], s["rejected_before_resume"]) == (0, 1)
    rejects = (tmp_path / "a.jsonl.rejects.jsonl").read_bytes().splitlines()
    assert len(rejects) == 1  # the resumed run did not write line 301 a second time

    assert engram("import", str(path), "--max-errors", "0", "--batch", "50").exit_code == 1
    path.write_bytes(b'{"content": "a new first line"}\n' + path.read_bytes())
    changed = engram("import", str(path), "--resume")
    assert changed.exit_code == 2, changed.output
    assert "changed since the checkpoint" in changed.output


def test_an_import_invalidates_the_recall_cache_of_its_space(engram, server, tmp_path):
    from engram_cli.client.cache import Forgetting, RecallCache, cache_key

    answer = [{"id": "mem_1", "content": "old answer", "confidence": 0.97,
               "confidence_category": "high", "activation": 0.8, "state": "consolidated",
               "tags": [], "decay_rate": 0.0}]
    curve = Forgetting(exponent=0.1, floor=0.2, scale_s=86_400.0)
    keys = {}
    with RecallCache.default() as cache:
        for space in ("notes", "other"):
            keys[space] = cache_key(server.address, space, "coffee", {})
            assert cache.put(keys[space], server.address, space, "coffee", answer, curve)
    path = write_jsonl(tmp_path / "a.jsonl", records(5))
    result = engram("import", str(path), "--space", "notes")
    assert result.exit_code == 0, result.output
    with RecallCache.default() as cache:
        assert cache.get(keys["notes"]) is None
        assert cache.get(keys["other"]) is not None


def test_server_with_server_info_but_no_batch_rpc_switches_to_the_stream(runner, tmp_path):
    from engram_cli.cli.main import app
    from engram_cli.rpc import ext, ext_svc

    class InfoOnly(ext_svc.ExtensionServiceServicer):
        def ServerInfo(self, request, context):
            return ext.ServerInfoResponse(version="x", max_message_bytes=4 << 20,
                                          max_batch=1000)

    srv = UpstreamServer(tmp_path / "data", extra=[
        lambda server: ext_svc.add_ExtensionServiceServicer_to_server(InfoOnly(), server)])
    store = srv.store
    try:
        rows = [{**r, "embedding": UPSTREAM_VECTOR} for r in records(500)]
        path = write_jsonl(tmp_path / "a.jsonl", rows)
        result = runner.invoke(app, ["--server", srv.address, "import", str(path),
                                     "--json", "--batch", "50", "--pool", "3"])
        assert result.exit_code == 0, result.output
        assert result.stderr.count("StreamingRemember") == 1
        assert summary_of(result)["mode"] == "stream"
        assert int(store.stats("default")["total_memories"]) == 500
    finally:
        srv.close()


def test_a_pipe_by_name_is_read_once_whole_as_jsonl(server, tmp_path):
    """`engram import <(zcat notes.jsonl.gz)`: the resume fingerprint read the pipe's start
    and the import then found nothing ("imported 0", exit 0); and /dev/fd/N has no
    extension, so it needed --format. A FIFO is read as it is written."""
    import os
    import subprocess
    import sys

    from tests.import_support import cli_env

    rows = records(500)
    body = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "--server", server.address, "import",
         f"/dev/fd/{read_end}", "--space", "piped"],
        pass_fds=(read_end,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    os.close(read_end)
    os.write(write_end, body)
    os.close(write_end)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert count_on(server.address, "piped") == len(rows)

    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "--server", server.address, "import",
         str(fifo), "--space", "fifo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    with open(fifo, "wb") as writer:  # waits for the import to open it
        writer.write(body)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert count_on(server.address, "fifo") == len(rows)


@pytest.mark.parametrize("source", ["fifo", "stdin"])
def test_sigterm_stops_an_import_waiting_on_silent_input(server, tmp_path, source):
    """A signal handler that only sets a flag never stops a read that is waiting: the read
    is retried, and `timeout 60 engram import -` waited for ever."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.import_support import cli_env

    fifo = tmp_path / "silent"
    os.mkfifo(fifo)
    keep_open = os.open(fifo, os.O_RDWR)  # a writer that never writes
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engram_cli", "--server", server.address, "import",
             "-" if source == "stdin" else str(fifo)],
            stdin=keep_open if source == "stdin" else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
        time.sleep(3)  # well into the read
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        os.close(keep_open)
    assert proc.returncode == 130, err
    assert "Interrupted" in err and "Traceback" not in err


def test_a_rejects_file_that_is_an_input_is_refused_before_it_is_emptied(engram, server,
                                                                         tmp_path):
    """A fresh run empties its rejects file first: `import a.jsonl --rejects a.jsonl`
    deleted the input before reading it (exit 1, 'no such file', the data gone)."""
    data = write_jsonl(tmp_path / "a.jsonl", [*records(3), {"confidence": 2}])
    body = data.read_bytes()
    other = write_jsonl(tmp_path / "b.jsonl", records(2, seed=1))
    link = tmp_path / "link.jsonl"
    link.symlink_to(data)
    for args in (["--rejects", str(data)], ["--rejects", str(link)],
                 [str(other), "--rejects", str(tmp_path / "." / "a.jsonl")],
                 ["--rejects", str(data), "--dry-run"]):
        done = engram("import", str(data), *args)
        assert done.exit_code == 2, done.output
        assert "is an input of this import" in done.stderr
        assert data.read_bytes() == body
    assert count_on(server.address) == 0


def test_no_rejects_file_or_export_is_written_into_the_data_dir(engram, server, tmp_path):
    """`--rejects ~/.local/share/engram/engram.db` emptied the embedded store's database
    first; `export -o` there renamed an export over it."""
    from engram_cli import config

    store = config.data_dir()
    store.mkdir(parents=True, exist_ok=True)
    db = store / "engram.db"
    db.write_bytes(b"the store's own")
    data = write_jsonl(tmp_path / "a.jsonl", [{"confidence": 2}])
    done = engram("import", str(data), "--rejects", str(db))
    assert done.exit_code == 2 and "is in the engram data dir" in done.stderr
    done = engram("export", "-o", str(db))
    assert done.exit_code == 2 and "is in the engram data dir" in done.stderr
    assert db.read_bytes() == b"the store's own"


def test_fields_no_memory_field_takes_are_named_once(engram, server, tmp_path):
    """Other fields are not stored (the README says so); a mongoexport dump's `_id` or a
    `title` went without a word. Said once a run, with the flag that keeps one."""
    rows = [{"_id": f"m{i}", "content": f"note {i}", "title": f"t{i}"} for i in range(50)]
    data = write_jsonl(tmp_path / "dump.jsonl", rows)
    done = engram("import", str(data))
    assert done.exit_code == 0, done.output
    assert done.stderr.count("are not stored") == 1
    assert "dump.jsonl:1: fields that are no memory field are not stored: '_id', 'title'" in (
        " ".join(done.stderr.split()))
    kept = engram("import", str(data), "--id-field", "_id", "--map", "metadata.title=title")
    assert kept.exit_code == 0 and "are not stored" not in kept.stderr
    clean = engram("import", str(write_jsonl(tmp_path / "clean.jsonl", records(20))))
    assert "are not stored" not in clean.stderr


def test_a_line_far_past_any_record_is_rejected_unread(engram, server, tmp_path):
    """A 200 MB line cost the importer a gigabyte (read whole, parsed, copied into the
    rejects file). It is skipped to its end; its first 4 KiB are kept; its neighbours
    and their line numbers are as they were."""
    from engram_cli.ingest.readers import MAX_LINE_BYTES

    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"content": "before"}\n')
        f.write(b'{"content": "' + b"x" * (MAX_LINE_BYTES + 4096) + b'"}\n')
        f.write(b'{"content": "after"}\n{"confidence": 7}\n')
    done = engram("import", str(path))
    assert done.exit_code == 3, done.output
    assert "huge.jsonl:2: the line is over 16 MiB" in done.stderr
    assert "huge.jsonl:4: missing content" in done.stderr  # the count goes on after it
    assert count_on(server.address) == 2
    rejects = (tmp_path / "huge.jsonl.rejects.jsonl").read_bytes()
    assert len(rejects) < 64 * 1024
