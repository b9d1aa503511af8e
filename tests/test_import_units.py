"""The rooms of `engram import` on their own, on real files: readers (positions, bad
records), mapping, request framing, options, batch sizing, error limits, rejects."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson
import pytest

from engram_cli.client.batching import BatchSizer, SendOptions, frame, space_header
from engram_cli.client.settings import resolve_client_settings
from engram_cli.engine.model import content_id
from engram_cli.errors import InputError, UsageError
from engram_cli.ingest.importer import ErrorLimit, expand_inputs
from engram_cli.ingest.mapping import Encoder, FieldMap, RecordError
from engram_cli.ingest.readers import Input, Position
from engram_cli.ingest.rejects import prune, reject_line
from engram_cli.rpc import ext, pb

JSONL = (b'{"content": "one"}\n'
         b"\n"
         b"{bad json\n"
         b"[1, 2]\n"
         b'{"content": "caf\xff"}\n'
         b'{"content": "two", "tags": ["a"]}')
JSON_ARRAY = b"""\xef\xbb\xbf[
  {"content": "brackets ] in } text", "note": "q\\"}"},
  {"content": "spans",
   "tags": ["x", "y"]},
  7,
  {"content": nope},
  {"content": "last"}
]
"""
CSV = (b"\xef\xbb\xbfcontent,tags,confidence,metadata.author\n"
       b'"multi\nline",a;b,0.5,ann\n'
       b"\n"
       b"short\n"
       b'"x\xff",,,\n'
       b'end,"[""p"", ""q""]",1,\n')


def read(path: Path, start: Position = Position(), fmt: str | None = None) -> list:
    return list(Input(str(path), fmt).read(start))


def summary(items: list) -> list[tuple[int, str]]:
    return [(i.line, i.record["content"] if i.record else f"ERR {i.error}") for i in items]


def test_jsonl_reports_each_bad_line_with_its_number_and_keeps_the_good(tmp_path):
    items = read(_write(tmp_path, "a.jsonl", JSONL))
    got = summary(items)
    assert [line for line, _ in got] == [1, 3, 4, 5, 6]
    assert got[0] == (1, "one") and got[4] == (6, "two")
    assert got[1][1].startswith("ERR malformed JSON")
    assert got[2][1].startswith("ERR not an object") and "array" in got[2][1]
    assert got[3][1].startswith("ERR invalid UTF-8")


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz"])
def test_jsonl_written_with_a_byte_order_mark_and_crlf_reads_as_without(tmp_path, name):
    """Windows tools (PowerShell's Out-File, Notepad) start UTF-8 with a BOM; JSON readers
    may ignore it (RFC 8259 8.1), and the first record must not be rejected for it."""
    data = b'\xef\xbb\xbf{"content": "one"}\r\n{bad\r\n{"content": "two"}\r\n'
    items = read(_write(tmp_path, name, data))
    assert summary(items)[::2] == [(1, "one"), (3, "two")]
    assert summary(items)[1][0] == 2 and "malformed JSON" in summary(items)[1][1]
    # Resuming after the first record starts past the mark, on record 2.
    assert [i.line for i in read(tmp_path / name, Position(items[1].start, 2))] == [2, 3]
    # A file of one record: not mistaken for one JSON document over many lines.
    assert summary(read(_write(tmp_path, "one.jsonl", data[:23]))) == [(1, "one")]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def test_json_array_is_split_element_by_element(tmp_path):
    items = read(_write(tmp_path, "a.json", JSON_ARRAY))
    got = summary(items)
    assert got[0] == (2, "brackets ] in } text")
    assert got[1] == (3, "spans")
    assert got[2][0] == 5 and "not an object" in got[2][1]
    assert got[3][0] == 6 and "malformed JSON" in got[3][1]
    assert got[4] == (7, "last")
    assert items[1].record["tags"] == ["x", "y"]


def test_json_without_array_is_a_sequence_of_objects(tmp_path):
    data = b'{\n  "content": "pretty"\n}\n{"content": "next"}\n'
    assert summary(read(_write(tmp_path, "one.json", data))) == [(1, "pretty"), (4, "next")]


def test_csv_rows_spanning_lines_bad_rows_and_typed_columns(tmp_path):
    items = read(_write(tmp_path, "a.csv", CSV))
    got = summary(items)
    assert got[0] == (2, "multi\nline")
    assert got[1][0] == 5 and "1 fields where the header has 4" in got[1][1]
    assert got[2] == (6, "ERR invalid UTF-8")
    assert got[3] == (7, "end")
    m = Encoder().memory(items[0].record, text_columns=True)
    assert list(m.tags) == ["a", "b"] and m.confidence.value == pytest.approx(0.5)
    assert dict(m.metadata) == {"author": "ann"}
    assert list(Encoder().memory(items[3].record, text_columns=True).tags) == ["p", "q"]


@pytest.mark.parametrize("name", ["a.csv", "a.csv.gz"])
def test_a_stray_quote_that_never_closes_costs_its_own_row_only(tmp_path, name):
    """A quote that opens a field and no later quote closes runs to the end of the input:
    csv reads every line after it as that one field. Its row is rejected; the rest are
    rows. (A quote that a later one closes still costs the rows in between: fields may
    span lines, so nothing tells them apart.)"""
    data = (b'content,confidence\n"multi\nline",0.5\n"stray,0.5\nafter,0.6\nlast,0.8')
    items = read(_write(tmp_path, name, data))
    assert summary(items) == [(2, "multi\nline"),
                              (4, 'ERR a quote (") opens a field here and never closes'),
                              (5, "after"), (6, "last")]
    assert items[1].raw == b'"stray,0.5\n' and items[1].next_line == 5
    # Resuming at any record gives the same records from there.
    for k in range(1, len(items)):
        assert summary(read(tmp_path / name, Position(items[k].start, items[k].line))) == \
            summary(items)[k:]
    # The last line alone.
    assert summary(read(_write(tmp_path, "b.csv", b"content\nfine\n\"open")))[1] == (
        3, 'ERR a quote (") opens a field here and never closes')


def test_tsv_and_format_override(tmp_path):
    path = _write(tmp_path, "data.txt", b"content\ttags\nhello, world\tx;y\n")
    with pytest.raises(UsageError):
        Input(str(path))
    items = read(path, fmt="tsv")
    assert items[0].record == {"content": "hello, world", "tags": "x;y"}


@pytest.mark.parametrize("name,data", [("a.jsonl", JSONL), ("a.jsonl.gz", JSONL),
                                       ("a.json", JSON_ARRAY), ("a.json.gz", JSON_ARRAY),
                                       ("a.csv", CSV), ("a.csv.gz", CSV)])
def test_reading_from_any_record_position_gives_the_same_tail(tmp_path, name, data):
    path = _write(tmp_path, name, data)
    items = read(path)
    for k, item in enumerate(items):
        tail = read(path, Position(item.start, item.line))
        assert [(i.line, i.raw, i.error) for i in tail] == \
               [(i.line, i.raw, i.error) for i in items[k:]], k
    last = items[-1]
    assert read(path, Position(last.end, last.next_line)) == []


def test_mapping_renames_nested_fields_and_metadata():
    fm = FieldMap.build(["content=body.text", "metadata.author=user"], id_field="key")
    m = Encoder(fm).memory({"body": {"text": "hi"}, "user": "ann", "key": 42,
                            "metadata": {"n": 1, "ok": True}})
    assert (m.content, m.id) == ("hi", "42")
    assert dict(m.metadata) == {"n": "1", "ok": "true", "author": "ann"}
    with pytest.raises(RecordError, match=r"from field 'body\.text'"):
        Encoder(fm).memory({"body": {}})


@pytest.mark.parametrize("spec", ["content", "=x", "contnet=x"])
def test_bad_map_is_a_usage_error(spec):
    with pytest.raises(UsageError):
        FieldMap.build([spec])


@pytest.mark.parametrize("record,reason", [
    ({"tags": ["x"]}, "missing content"),
    # Where other tools keep the text: named, with the flag that takes it from there.
    ({"text": "hi", "n": 1}, "its text may be in 'text': --content-field text"),
    ({"title": "t", "page_content": "hi"}, "may be in 'page_content'"),
    ({"headline": "hi"}, "may be in 'headline'"),
    ({"content": 5}, "content must be text"),
    ({"content": "x", "confidence": 1.5}, "outside 0..1"),
    ({"content": "z" * (1024 * 1024 + 1)}, "content is 1048577 bytes; the limit is 1048576"),
    ({"content": "x", "embedding": [0.5] * 8193}, "8193 dimensions; the limit is 8192"),
    ({"content": "x", "confidence": "high"}, "confidence must be a number"),
    ({"content": "x", "tags": "a,b"}, "tags must be a list"),
    ({"content": "x", "embedding": [1, "2"]}, "embedding must be a list of numbers"),
    ({"content": "x", "embedding": [1e39]}, "float32"),
    ({"content": "x", "embedding": [1.0, float("nan")]}, "NaN"),
    ({"content": "x", "metadata": [1]}, "metadata must be an object"),
    ({"content": "x", "memory_type": "dream"}, "memory_type"),
    ({"content": "x", "created_at": "yesterday"}, "created_at"),
    ({"content": "x", "created_at": "2024-01-01T00:00:00"}, "no time zone"),
    ({"content": "x", "decay_rate": -1}, "decay_rate"),
    ({"content": "x", "decay_rate": float("inf")}, "decay_rate"),
    ({"content": "x", "created_at": 1e300}, "outside the years 1 to 9999"),
    ({"content": "x", "created_at": "1e12"}, "outside the years 1 to 9999"),
    ({"content": "x", "id": [1]}, "id must be text"),
])
def test_invalid_records_name_the_field(record, reason):
    with pytest.raises(RecordError, match=reason):
        Encoder().memory(record)


def test_ids_are_deterministic_and_match_the_server_rule():
    enc = Encoder()
    a = enc.memory({"content": "same text", "created_at": "2024-05-01T10:00:00.5Z"})
    assert a.id == content_id("same text")
    assert a.created_at.seconds == 1714557600 and a.created_at.nanos == 500_000_000
    emb = [0.1, -2.5, 3.0]
    only_vector = enc.memory({"embedding": emb})
    assert only_vector.id == content_id("", np.asarray(emb, dtype=np.float32).tobytes())
    assert enc.memory({"content": "x", "id": "mine"}).id == "mine"


def test_a_rejects_line_reads_back_as_its_record():
    line = reject_line("in.csv", 7, "bad", b"x,a;b\n", {"content": "x", "tags": "a;b"}, "csv")
    record = orjson.loads(line)
    assert record["_reject"] == {"source": "in.csv", "line": 7, "reason": "bad", "raw": "x,a;b",
                                 "format": "csv"}
    m = Encoder().memory(record)  # the annotation says the fields are CSV text
    assert (m.content, list(m.tags)) == ("x", ["a", "b"])
    unparsed = orjson.loads(reject_line("in.jsonl", 3, "malformed", b"{oops\xff", None))
    assert unparsed["_reject"]["raw_base64"]
    with pytest.raises(RecordError, match="unfixed line of a rejects file"):
        Encoder().memory(unparsed)


def test_prune_drops_entries_at_or_after_a_line_of_one_source(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(reject_line(src, ln, "r", b"{}", None)
                              for src, ln in [("a", 1), ("b", 5), ("a", 5), ("a", 9)]))
    assert prune(path, "a", 5) == (2, 1)
    kept = [(orjson.loads(x)["_reject"]["source"], orjson.loads(x)["_reject"]["line"])
            for x in path.read_bytes().splitlines()]
    assert kept == [("a", 1), ("b", 5)]


def test_framed_memories_concatenate_into_valid_requests():
    mems = [pb.Memory(id=f"m{i}", content="x" * (i * 100)) for i in range(4)]
    body = space_header("proj") + b"".join(frame(m.SerializeToString()) for m in mems)
    req = ext.BatchRememberRequest.FromString(body)
    assert req.memory_space_id == "proj" and list(req.memories) == mems
    one = pb.RememberRequest.FromString(space_header("") + frame(mems[3].SerializeToString()))
    assert one.memory == mems[3] and one.memory_space_id == ""


def test_send_options_are_the_senders_share_of_the_client_settings(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[client]\nbatch = 300\npool = 3\nstream = true\nrate = 10\n")

    def options(flags=None, **env):
        return SendOptions.from_settings(resolve_client_settings(flags, env=env, path=path))

    assert options() == SendOptions(batch=300, pool=3, stream=True, rate=10.0)
    env = {"ENGRAM_BATCH": "auto", "ENGRAM_POOL": "5", "ENGRAM_RETRY_BUDGET": "2"}
    opts = options(**env)
    assert (opts.batch, opts.pool, opts.retry_budget_s) == (None, 5, 2.0)
    opts = options({"batch": "50", "pool": 1, "stream": False, "rate": 0}, **env)
    assert (opts.batch, opts.pool, opts.stream, opts.rate) == (50, 1, False, 0.0)
    path.write_text('[client]\nstream = "auto"\n')
    assert options().stream is None
    assert options(ENGRAM_STREAM="true").stream is True


def test_batch_sizer_adapts_within_bounds():
    s = BatchSizer(None, high=2000)
    assert s.size == 500
    for _ in range(30):
        s.observe(s.size, 0.05)
    assert s.size == 2000
    s.observe(2000, 0.05, pressure=0.9)
    assert s.size < 2000
    for _ in range(30):
        s.observe(s.size, 3.0)
    assert s.size == 50
    fixed = BatchSizer(123, high=2000)
    fixed.observe(123, 5.0, 1.0)
    fixed.overloaded()
    assert fixed.size == 123


def test_error_limit():
    assert ErrorLimit.parse("0").exceeded(1, 10)
    assert not ErrorLimit.parse("3").exceeded(3, 10)
    pct = ErrorLimit.parse("1%")
    assert not pct.exceeded(5, 100)  # judged on at least 1000 records while running
    assert pct.exceeded(5, 100, final=True)
    with pytest.raises(UsageError):
        ErrorLimit.parse("lots")


def test_globs_expand_sorted_and_missing_files_are_named(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "c.csv"):
        (tmp_path / name).write_text("")
    assert expand_inputs([str(tmp_path / "*.jsonl")]) == [str(tmp_path / "a.jsonl"),
                                                           str(tmp_path / "b.jsonl")]
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.tsv")])
    with pytest.raises(InputError, match=r"missing\.jsonl"):
        expand_inputs([str(tmp_path / "missing.jsonl")])


def test_batch_sizer_climbs_on_throughput_while_latency_is_middling():
    now = [0.0]
    s = BatchSizer(None, high=5000, start=1000, clock=lambda: now[0])

    def window(size_to_rate) -> None:
        for _ in range(BatchSizer.WINDOW):
            now[0] += s.size / size_to_rate(s.size)
            s.observe(s.size, 1.0)

    # Bigger batches keep paying off: the size climbs to the bound.
    for _ in range(12):
        window(lambda size: 10_000 + size)
    assert s.size == 5000
    # Past a sweet spot throughput falls: the climb turns back and settles around it.
    s = BatchSizer(None, high=5000, start=1000, clock=lambda: now[0])
    sizes = []
    for _ in range(20):
        window(lambda size: 30_000 - abs(size - 2000) * 5)
        sizes.append(s.size)
    assert all(1000 <= x <= 3200 for x in sizes[6:]), sizes
