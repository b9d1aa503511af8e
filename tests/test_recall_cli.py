"""`engram recall` and `engram cache` against real servers: output shape, stdin mode (order,
error lines, bounded read-ahead), the cache end to end (what is stored, served with the
server stopped, TTL through ENGRAM_NOW, invalidation), the fast path's imports, exit codes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf.empty_pb2 import Empty

from engram_cli.cli.main import app
from engram_cli.client.cache import Forgetting, RecallCache, cache_key, invalidate_space
from engram_cli.client.recall import Recaller, RecallOptions
from engram_cli.config import Connection
from engram_cli.rpc import pb
from tests.conftest import UpstreamServer
from tests.rpc_helpers import stubs
from tests.upstream_fake import UPSTREAM_VECTOR, UpstreamServicer

N = 40  # memories per loaded space


def word(i: int) -> str:
    """A token that only memory i carries, so cue word(i) hits exactly it."""
    return f"zq{i}kx"


def load(address: str, space: str = "", n: int = N, confidence: float = 0.97,
         consolidate: bool = True, first: int = 0, embedding: list[float] | None = None
         ) -> list[str]:
    ids = []
    with stubs(address) as (stub, _):
        for i in range(first, first + n):
            resp = stub.Remember(pb.RememberRequest(memory_space_id=space, memory=pb.Memory(
                content=f"note {word(i)} about the lighthouse keeper number {i}",
                confidence=pb.Confidence(value=confidence), tags=["lighthouse", f"n{i}"],
                embedding=embedding)))
            ids.append(resp.memory_id)
        if consolidate:
            stub.Consolidate(pb.ConsolidateRequest(memory_space_id=space, all=Empty()))
    return ids


def engram_proc(*args: str, input: str | None = None, env: dict | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engram_cli", *args], capture_output=True,
                          text=True, input=input, timeout=timeout,
                          env={**os.environ, **(env or {})})


def lines(output: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in output.splitlines() if line.strip()]


def cache_stats() -> dict[str, Any]:
    with RecallCache.default() as cache:
        return cache.stats().as_dict()


def lexical_data_dir(data: Path) -> Path:
    """A data dir whose server runs without an embedding model (see `server` below), and
    with time for its recalls: on a loaded CI machine a 50 ms budget can run out, and an
    answer cut short is rightly never cached, which these tests are not about."""
    data.mkdir(mode=0o700)
    (data / "engram.toml").write_text(
        '[engine]\nembedding_model = "none"\nrecall_budget_ms = 5000\n')
    return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    """Our server without an embedding model: these tests are about output and the cache,
    and their premise (cue word(i) finds memory i and nothing else) is lexical. With the
    model on, a hybrid answer also holds the notes most like the cue, and changes while
    the index catches up (tests/test_semantic.py covers that)."""
    from engram_cli.server.app import EngramServer, ServeOptions

    srv = EngramServer(ServeOptions(data_dir=lexical_data_dir(tmp_path / "server-data"),
                                    port=0))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop(grace=1.0)


@pytest.fixture
def loaded(server) -> Any:
    load(server.address)
    return server


# -- one cue ------------------------------------------------------------------------------

def test_json_answer_shape_then_served_from_the_cache(engram, loaded) -> None:
    first = engram("recall", word(3), "--format", "json")
    assert first.exit_code == 0, first.output
    data = orjson.loads(first.stdout)
    assert data["cue"] == word(3) and data["cached"] is False
    (r,) = data["results"]
    assert {"id", "content", "confidence", "confidence_category", "activation", "state",
            "tags"} <= set(r)
    assert word(3) in r["content"] and r["state"] == "consolidated"
    assert r["confidence_category"] == "high" and r["tags"] == ["lighthouse", "n3"]
    assert "engram.state" not in r["metadata"]

    second = engram("recall", word(3))  # not a terminal: JSON by default
    assert second.exit_code == 0, second.output
    again = orjson.loads(second.stdout)
    assert again["cached"] is True
    assert [x["id"] for x in again["results"]] == [r["id"]]
    assert again["results"][0]["confidence"] == pytest.approx(r["confidence"], abs=1e-3)
    st = cache_stats()
    assert (st["entries"], st["hits"], st["misses"]) == (1, 1, 1)


def test_only_qualifying_answers_are_cached(engram, server) -> None:
    load(server.address, n=5, first=0)  # confident and consolidated
    load(server.address, n=5, first=100, confidence=0.6)  # not confident enough
    load(server.address, n=5, first=200, consolidate=False)  # still RECENT
    # A batch consolidate above would have consolidated the RECENT ones too: ask the
    # server what it reports, so the test states what it relies on.
    recent = orjson.loads(engram("recall", word(200), "--no-cache").stdout)["results"][0]
    assert recent["state"] == "recent", recent
    for cue in (word(1), word(101), word(201), "nothing matches this xyzzy"):
        assert engram("recall", cue).exit_code == 0
    for cue, cached in ((word(1), True), (word(101), False), (word(201), False)):
        assert orjson.loads(engram("recall", cue).stdout)["cached"] is cached, cue
    assert cache_stats()["entries"] == 1


def test_a_memory_sent_at_a_bar_is_at_it_though_the_wire_rounds_it(engram, server) -> None:
    """Confidences travel as float32, so 0.7 arrives as 0.699999988: a memory sent at a
    category's lower bound is in that category, and one at the cache's bar is cached."""
    bounds = {0.05: "low", 0.3: "medium", 0.7: "high", 0.9: "high", 0.99: "certain"}
    for i, confidence in enumerate(bounds):
        load(server.address, n=1, first=i, confidence=confidence)
    for i, (confidence, category) in enumerate(bounds.items()):
        (r,) = orjson.loads(engram("recall", word(i), "--no-cache").stdout)["results"]
        assert (r["confidence"], r["confidence_category"]) == (confidence, category)
    table = engram("recall", word(2), "--no-cache", "--format", "table").output
    assert "0.7 high" in table, table
    assert orjson.loads(engram("recall", word(3)).stdout)["cached"] is False  # stored now
    again = orjson.loads(engram("recall", word(3)).stdout)
    # Served from the cache, the category is worked out on this side: the same one.
    assert again["cached"] is True and again["results"][0]["confidence_category"] == "high"


def test_table_format(engram, loaded) -> None:
    result = engram("--server", loaded.address, "recall", word(5), "--format", "table")
    assert result.exit_code == 0, result.output
    assert "recall: " + word(5) in result.output and "consolidated" in result.output
    assert "0.97 high" in result.output


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_table_shows_every_memory_s_content_and_whole_id_at_any_width(
        engram, loaded, monkeypatch, columns) -> None:
    """At 80 columns the table's other columns took the whole width and the content
    column got none: every memory's text was missing. Narrower than the table needs, each
    memory is a line of figures and its id, with its text below."""
    monkeypatch.setenv("COLUMNS", str(columns))
    result = engram("recall", "lighthouse keeper", "--limit", "3", "--format", "table",
                    "--no-cache")
    assert result.exit_code == 0, result.output
    ids = [r["id"] for r in orjson.loads(engram("recall", "lighthouse keeper", "--limit", "3",
                                                "--no-cache").stdout)["results"]]
    assert len(ids) == 3
    for mid in ids:
        assert mid in result.output, result.output  # whole, to be copied
    words = " ".join(result.output.split())  # the text wraps at the width
    assert words.count("about the lighthouse keeper number") == 3, result.output
    assert ("┃ content" in result.output) is (columns == 200)


def test_tags_and_spreading_flags_change_the_key_and_are_sent(engram, loaded) -> None:
    assert engram("recall", "lighthouse", "--limit", "3").exit_code == 0
    tagged = engram("recall", "lighthouse", "--tag", "n7", "--limit", "3")
    assert tagged.exit_code == 0, tagged.output
    assert [r["tags"] for r in orjson.loads(tagged.stdout)["results"]] == [["lighthouse",
                                                                            "n7"]]
    assert engram("recall", "lighthouse", "--limit", "3", "--max-hops", "1").exit_code == 0
    assert engram("recall", "lighthouse", "--limit", "3", "--threshold", "0.2").exit_code == 0
    assert engram("recall", "lighthouse", "--limit", "3", "--no-spread").exit_code == 0
    assert cache_stats()["entries"] == 5


class _Recorder(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        if details.method.endswith("/Recall"):
            self.seen.append(dict(details.invocation_metadata))
        return continuation(details)


def test_max_hops_and_threshold_travel_as_request_metadata(runner, tmp_path: Path) -> None:
    recorder = _Recorder()
    server = UpstreamServer(tmp_path / "d", interceptors=[recorder])
    try:
        address = server.address
        load(address, n=3, embedding=UPSTREAM_VECTOR)
        ok = runner.invoke(app, ["--server", address, "--api-key", "k1", "recall", word(1),
                                 "--max-hops", "2", "--threshold", "0.25"])
        assert ok.exit_code == 0, ok.output
        plain = runner.invoke(app, ["--server", address, "recall", word(1), "--no-cache"])
        assert plain.exit_code == 0, plain.output
    finally:
        server.close()
    sent, without = recorder.seen
    assert sent["engram-max-hops"] == "2"
    assert float(sent["engram-activation-threshold"]) == 0.25
    assert sent["authorization"] == "Bearer k1"
    assert "engram-max-hops" not in without and "engram-activation-threshold" not in without


def test_no_cache_and_refresh(engram, loaded) -> None:
    assert orjson.loads(engram("recall", word(9), "--no-cache").stdout)["cached"] is False
    assert cache_stats()["entries"] == 0
    assert engram("recall", word(9)).exit_code == 0
    with stubs(loaded.address) as (stub, _):
        stub.Forget(pb.ForgetRequest(memory_id=loaded_id(engram, word(9)), mode=2))
    stale = orjson.loads(engram("recall", word(9)).stdout)
    assert stale["cached"] is True and len(stale["results"]) == 1
    fresh = engram("recall", word(9), "--refresh")
    assert fresh.exit_code == 0, fresh.output
    assert orjson.loads(fresh.stdout) == {
        "cue": word(9), "cached": False, "results": [],
        "cache": {"stored": False, "reason": "an empty answer is never cached"}}
    # The empty answer does not qualify, so --refresh dropped the stale entry.
    assert cache_stats()["entries"] == 0


def loaded_id(engram: Any, cue: str) -> str:
    return str(orjson.loads(engram("recall", cue).stdout)["results"][0]["id"])


def test_invalidate_space_makes_the_next_recall_fetch(engram, server) -> None:
    load(server.address, n=3)
    load(server.address, space="notes", n=3)
    for space in ("default", "notes"):
        assert engram("--space", space, "recall", word(1)).exit_code == 0
    assert invalidate_space(server.address, "") == 1  # '' is the default space
    assert orjson.loads(engram("recall", word(1)).stdout)["cached"] is False
    notes = orjson.loads(engram("--space", "notes", "recall", word(1)).stdout)
    assert notes["cached"] is True


# -- stdin mode ---------------------------------------------------------------------------

def test_stdin_mode_keeps_input_order_with_error_lines(engram, loaded) -> None:
    # Some cues are cache hits (answered locally at once), most go to the server: the
    # output must still follow the input. The cues are made-up words, one per memory:
    # lexical mode, as the vector index would add their look-alikes.
    for i in range(0, N, 4):
        assert engram("recall", word(i), "--mode", "lexical").exit_code == 0
    cues = [word(i % N) for i in range(300)]
    cues[7] = ""
    cues[150] = "   "
    cues[299] = "nothing matches this xyzzy"
    result = engram("recall", "-", "--mode", "lexical", input="\n".join(cues) + "\n")
    assert result.exit_code == 3, result.output
    out = lines(result.stdout)
    assert len(out) == 300
    assert [o["cue"] for o in out] == [c.strip() for c in cues]
    assert out[7] == {"cue": "", "error": "empty cue", "line": 8}
    assert out[150]["line"] == 151 and "error" in out[150]
    assert out[299]["results"] == [] and out[299]["cached"] is False
    for cue, o in zip(cues, out, strict=True):
        if cue.strip() and o is not out[299]:
            assert [word(int(r["tags"][1][1:])) for r in o["results"]] == [cue]
    assert any(o.get("cached") for o in out) and not all(o.get("cached") for o in out)
    assert "2 cue(s) failed" in result.stderr


def test_no_cue_with_piped_stdin_reads_lines_and_exits_0(engram, loaded) -> None:
    result = engram("recall", "--format", "jsonl", input=f"{word(1)}\n{word(2)}")
    assert result.exit_code == 0, result.output
    assert [o["cue"] for o in lines(result.stdout)] == [word(1), word(2)]


def test_stdin_reads_ahead_only_a_window_and_streams(loaded) -> None:
    """Answers come out while input is still arriving, and the reader never runs more
    than the window ahead of the writer: memory stays flat for any number of cues."""
    consumed = 0
    first_answer = threading.Event()

    def cues() -> Iterator[str]:
        nonlocal consumed
        for i in range(200):
            if i == 20:
                # Blocks until the first answer is out: no answer before the input
                # ends would deadlock here (and time out).
                assert first_answer.wait(20)
            consumed += 1
            yield word(i % N)

    conn = Connection(server=loaded.address, autostart=False)
    ahead = []
    with Recaller(conn, RecallOptions(), None, window=8) as recaller:
        for n, answer in enumerate(recaller.recall_lines(cues()), 1):
            first_answer.set()
            ahead.append(consumed - n)
            assert answer.line == n and answer.error is None
    assert n == 200
    assert max(ahead) <= 8 + 2


def test_stdin_mode_with_the_server_down(runner, tmp_path: Path) -> None:
    from tests.test_cli_foundation import free_port

    address = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["--server", address, "recall", "-"], input="a\nb\n")
    assert result.exit_code == 1, result.output
    out = lines(result.stdout)
    assert [o["cue"] for o in out] == ["a", "b"] and all("error" in o for o in out)
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"Error: no Engram server answers at {address}")


def test_closing_the_pipe_early_is_not_an_error(loaded) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "--server", loaded.address, "recall", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ})
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(("\n".join(word(i % N) for i in range(5000)) + "\n").encode())
    proc.stdin.close()
    assert b"cue" in proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    assert proc.wait(30) == 0
    assert b"Traceback" not in proc.stderr.read()
    proc.stderr.close()


@pytest.mark.parametrize("args", [["recall", "-", "--format", "table"], ["stats"],
                                  ["tune", "--show"]])
def test_closing_the_pipe_before_a_table_is_not_an_error(loaded, args) -> None:
    """Tables go through rich, which exits 1 on a closed pipe by itself: ours end as the
    JSON lines do (exit 0, nothing on stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "--server", loaded.address, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120"})
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdout.close()  # `| head -0`: gone before the first line
    with contextlib.suppress(BrokenPipeError):  # stats and tune read no input
        proc.stdin.write(("\n".join(word(i % N) for i in range(200)) + "\n").encode())
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    assert proc.wait(30) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


# -- exit codes and errors ----------------------------------------------------------------

def test_exit_codes(engram, loaded) -> None:
    empty = engram("recall", "")
    assert empty.exit_code == 2, empty.output
    assert "the cue is empty" in empty.stderr
    assert engram("recall", "   ").exit_code == 2
    assert engram("recall", "x", "--format", "yaml").exit_code == 2
    assert engram("recall", "x", "--limit", "0").exit_code == 2
    none = engram("recall", "nothing matches this xyzzy")
    assert none.exit_code == 0, none.output
    assert orjson.loads(none.stdout)["results"] == []


def test_server_unreachable_without_a_cache_entry(runner) -> None:
    from tests.test_cli_foundation import free_port

    address = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["--server", address, "recall", "coffee"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        f"Error: no Engram server answers at {address}: start one with `engram serve`, "
        "or point --server / ENGRAM_SERVER at one")


# -- processes: the cache without a server, TTL, and the fast path's imports --------------

_PROBE = """
import sys
from engram_cli.cli.entry import main
sys.argv = ["engram", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("grpc", "numpy", "engram_cli.engine.store", "engram_cli.server",
                     "rich", "pydantic", "typer",
                     "orjson", "typing", "difflib", "tomllib",
                     # each costs a cached recall milliseconds (issue 12's start-up goal)
                     "dataclasses", "inspect", "pathlib", "platformdirs", "hashlib",
                     "threading", "contextlib") if m in sys.modules]
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def probe(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})
    heavy = proc.stderr.strip().splitlines()[-1]
    assert heavy.startswith("HEAVY="), proc.stderr
    return proc, heavy.removeprefix("HEAVY=")


def test_cached_answer_is_served_with_the_server_stopped_and_without_grpc(
        server_process, tmp_path: Path) -> None:
    sp = server_process(lexical_data_dir(tmp_path / "data"))
    load(sp.address, n=3)
    miss, heavy = probe("--server", sp.address, "recall", word(1), "--limit", "2")
    assert miss.returncode == 0, miss.stderr
    assert orjson.loads(miss.stdout)["cached"] is False
    assert "grpc" in heavy  # the probe can see grpc when it is there
    sp.kill9()

    hit, heavy = probe("--server", sp.address, "recall", word(1), "--limit", "2")
    assert hit.returncode == 0, hit.stderr
    data = orjson.loads(hit.stdout)
    assert data["cached"] is True and word(1) in data["results"][0]["content"]
    assert heavy == ""  # no grpc, numpy, engine, server, rich, pydantic, Typer, orjson, typing...

    # The Typer path (what CliRunner runs) prints the same answer.
    from typer.testing import CliRunner

    typer_run = CliRunner().invoke(app, ["--server", sp.address, "recall", word(1),
                                         "--limit", "2"])
    assert typer_run.exit_code == 0, typer_run.output
    assert orjson.loads(typer_run.stdout) == data

    other = engram_proc("--server", sp.address, "recall", word(2), "--limit", "2")
    assert other.returncode == 1
    assert other.stderr.strip().splitlines() == [
        f"Error: no Engram server answers at {sp.address}: start one with `engram serve`, "
        "or point --server / ENGRAM_SERVER at one"]
    # The fast path counts the hit; the failed lookup's miss is counted once.
    st = cache_stats()
    assert (st["hits"], st["misses"]) == (2, 2)


def test_a_hit_in_the_xdg_dirs_needs_no_platformdirs(tmp_path: Path, monkeypatch) -> None:
    # Without ENGRAM_CACHE_DIR / ENGRAM_CONFIG_DIR the user dirs are platformdirs'; the fast
    # path computes them on Linux (tests/test_entry.py checks that the two agree).
    for name in ("ENGRAM_CACHE_DIR", "ENGRAM_CONFIG_DIR"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    address = "127.0.0.1:9"  # nothing listens there: only the cache can answer
    result = {"id": "m1", "content": f"{word(1)} kept", "confidence": 0.97,
              "confidence_category": "high", "activation": 0.8, "state": "consolidated",
              "tags": [], "decay_rate": 0.0}
    key = cache_key(address, "", word(1), RecallOptions().key_params(None))
    with RecallCache.default() as cache:
        assert cache.put(key, address, "", word(1), [result], Forgetting(0.1, 0.2, 86400.0))
    assert (tmp_path / "xdg-cache" / "engram" / "recall-cache.sqlite3").exists()

    hit, heavy = probe("--server", address, "recall", word(1))
    assert hit.returncode == 0, hit.stderr
    assert orjson.loads(hit.stdout)["cached"] is True
    assert heavy == ""

    # A config file in the XDG config dir is read (with tomllib, which imports typing):
    # the TTL it shortens ends the hit.
    (tmp_path / "xdg-config" / "engram").mkdir(parents=True)
    (tmp_path / "xdg-config" / "engram" / "config.toml").write_text(
        "[client]\ncache_ttl_s = 600\n")
    hit, heavy = probe("--server", address, "recall", word(1))
    assert orjson.loads(hit.stdout)["cached"] is True
    assert set(heavy.split(",")) <= {"tomllib", "typing", "contextlib"}, heavy
    later = engram_proc("--server", address, "recall", word(1),
                        env={"ENGRAM_NOW": str(time.time() + 1200)})
    assert later.returncode == 1 and "no Engram server answers" in later.stderr


def test_ttl_expiry_across_processes_with_ENGRAM_NOW(server_process, tmp_path: Path) -> None:
    sp = server_process(lexical_data_dir(tmp_path / "data"))
    load(sp.address, n=2)
    now = time.time()
    args = ("--server", sp.address, "recall", word(0))
    assert orjson.loads(engram_proc(*args).stdout)["cached"] is False
    later = engram_proc(*args, env={"ENGRAM_NOW": str(now + 1800)})
    assert orjson.loads(later.stdout)["cached"] is True
    expired = engram_proc(*args, env={"ENGRAM_NOW": str(now + 3700)})
    assert expired.returncode == 0, expired.stderr
    assert orjson.loads(expired.stdout)["cached"] is False  # dropped and fetched again


def test_a_bad_ENGRAM_NOW_is_a_usage_error_not_a_traceback() -> None:
    """The cached recall's fast path read the clock outside the command's error handling."""
    bad = engram_proc("--server", "127.0.0.1:1", "--no-autostart", "recall", "x",
                      env={"ENGRAM_NOW": "soon"})
    assert bad.returncode == 2, bad.stderr
    assert "ENGRAM_NOW='soon' is not a number" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- engram cache -------------------------------------------------------------------------

def test_cache_stats_and_clear(engram, runner, server) -> None:
    load(server.address, n=3)
    load(server.address, space="notes", n=3)
    empty = runner.invoke(app, ["cache", "stats", "--json"])
    assert empty.exit_code == 0, empty.output
    assert orjson.loads(empty.stdout)["entries"] == 0
    for space in ("default", "notes"):
        for i in range(3):
            assert engram("--space", space, "recall", word(i)).exit_code == 0
    assert engram("recall", word(0)).exit_code == 0
    st = orjson.loads(runner.invoke(app, ["cache", "stats", "--json"]).stdout)
    assert (st["entries"], st["hits"], st["misses"]) == (6, 1, 6)
    assert st["bytes"] > 0 and st["spaces"] == {f"{server.address}/default": 3,
                                               f"{server.address}/notes": 3}
    text = runner.invoke(app, ["cache", "stats"])
    assert text.exit_code == 0 and "entries    6" in text.output
    one = runner.invoke(app, ["--server", server.address, "cache", "clear", "--space",
                              "notes"])
    assert one.exit_code == 0 and "cleared 3" in one.output
    everything = runner.invoke(app, ["cache", "clear"])
    assert everything.exit_code == 0 and "cleared 3" in everything.output
    st = orjson.loads(runner.invoke(app, ["cache", "stats", "--json"]).stdout)
    assert (st["entries"], st["bytes"], st["hits"]) == (0, 0, 0)


def test_cache_help_has_examples(runner) -> None:
    for args in (["cache", "--help"], ["cache", "stats", "--help"],
                 ["cache", "clear", "--help"], ["recall", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Example:" in result.output, args


def test_pipeline_waits_out_an_overloaded_server(runner, tmp_path: Path) -> None:
    """A server that takes 8 calls at a time answers the 9th with RESOURCE_EXHAUSTED; the
    pipeline keeps 64 in flight, so it must wait and resend rather than print errors."""
    from engram_cli.server.app import EngramServer, ServeOptions

    srv = EngramServer(ServeOptions(data_dir=tmp_path / "d", port=0, max_workers=1))
    try:
        srv.start()
        load(srv.address, n=10)
        cues = "".join(f"{word(i % 10)}\n" for i in range(300))
        result = runner.invoke(app, ["--server", srv.address, "recall", "--no-cache", "-"],
                               input=cues)
    finally:
        srv.stop(grace=1)
    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert len(out) == 300 and not [o for o in out if "error" in o]


def test_no_cue_with_stdin_a_terminal_is_a_usage_error() -> None:
    import pty

    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "engram_cli", "recall"],
                              stdin=secondary, capture_output=True, text=True, timeout=60,
                              env={**os.environ})
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 2, proc.stderr
    assert "no cue given" in proc.stderr


def test_a_cue_that_is_not_utf8_is_that_cues_error_not_a_traceback(loaded) -> None:
    """Python reads such bytes from argv and stdin as lone surrogates, which the cache key
    could not encode: a traceback, and the cues after it unanswered."""
    run = [sys.executable, "-m", "engram_cli", "--server", loaded.address, "recall"]
    lines = b"\n".join([word(1).encode(), b"caf\xe9 au lait", word(2).encode()]) + b"\n"
    for env in ({}, {"PYTHONUTF8": "0", "LC_ALL": "C.UTF-8"}):
        proc = subprocess.run([*run, "-"], input=lines, capture_output=True, timeout=60,
                              env={**os.environ, **env})
        assert b"Traceback" not in proc.stderr, proc.stderr
        out = [orjson.loads(line) for line in proc.stdout.splitlines()]
        assert [o.get("error") for o in out] == [None, "the cue is not UTF-8 text", None]
        assert out[1]["cue"] == "caf\ufffd au lait" and out[1]["line"] == 2
        assert proc.returncode == 3, proc.stderr
    one = subprocess.run([*run, b"caf\xe9"], capture_output=True, timeout=60)
    assert one.returncode == 2 and b"Traceback" not in one.stderr, one.stderr
    assert b"the argument 'caf\xef\xbf\xbd' is not UTF-8 text" in one.stderr


def test_a_cue_line_over_a_mebibyte_is_that_lines_error_read_no_further(loaded) -> None:
    """A 100 MB line took 740 MB of RSS and came back whole in its error line."""
    from engram_cli.client.recall import MAX_CUE_BYTES

    lines = word(1).encode() + b"\n" + b"a" * (MAX_CUE_BYTES + 10) + b"\n" + \
        word(2).encode() + b"\n"
    proc = subprocess.run([sys.executable, "-m", "engram_cli", "--server", loaded.address,
                           "recall", "-"], input=lines, capture_output=True, timeout=60)
    out = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [o.get("error") for o in out] == [None, "the cue is over 1 MiB (not read further)",
                                             None], proc.stderr
    assert len(out[1]["cue"]) < 100 and out[1]["line"] == 2
    assert proc.returncode == 3


# -- what a terminal is shown -------------------------------------------------------------

HOSTILE = ("see \x1b]0;pwned\x07 the \x1b[2Jscreen, \x9b31m and "
           "[link=https://evil.example]click[/link], [/] there, [bold]here")


def _squeezed(text: str) -> str:
    return "".join(text.split())  # wrapped lines and padding aside


@pytest.mark.parametrize("columns", [60, 200])
def test_a_table_shows_stored_control_characters_and_markup_literally(
        engram, server, monkeypatch, columns) -> None:
    """A memory's text and id are anyone's. Printed raw on a terminal, the escape
    sequences in them set the window's title and cleared the screen, and Rich took
    "[link=...]" in them for its markup (a hidden hyperlink) and failed on a "[/]" with a
    traceback."""
    monkeypatch.setenv("COLUMNS", str(columns))
    with stubs(server.address) as (stub, _):
        stub.Remember(pb.RememberRequest(memory=pb.Memory(id="evil\x1b[2Jid", content=HOSTILE)))
    result = engram("recall", "pwned", "--format", "table", "--no-cache", "--trace")
    assert result.exit_code == 0, result.output
    assert not {"\x1b", "\x07", "\x9b"} & set(result.output), repr(result.output)
    shown = ("see \\x1b]0;pwned\\x07 the \\x1b[2Jscreen, \\x9b31m and "
             "[link=https://evil.example]click[/link], [/] there, [bold]here")
    assert _squeezed(shown) in _squeezed(result.output), result.output
    assert "evil\\x1b[2Jid" in result.output


def test_forget_shows_an_id_s_control_characters_literally(engram, server) -> None:
    with stubs(server.address) as (stub, _):
        stub.Remember(pb.RememberRequest(memory=pb.Memory(id="evil\x1b[2Jid\nforged",
                                                          content="gone soon")))
    result = engram("forget", "evil\x1b[2Jid\nforged")
    assert result.exit_code == 0, result.output
    assert result.stdout == "evil\\x1b[2Jid\\nforged\tsuppressed\n"


class _HostileServicer(UpstreamServicer):
    """A server whose error details carry an escape sequence."""

    def Recall(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such cue\x1b[2J\x1b]0;pwned\x07")


def test_a_server_s_error_message_is_shown_literally(engram, tmp_path) -> None:
    srv = UpstreamServer(tmp_path / "hostile", _HostileServicer)
    try:
        result = engram("--server", srv.address, "recall", "anything", "--no-cache")
    finally:
        srv.close()
    assert result.exit_code == 2, result.stderr  # the server refused the cue
    assert "no such cue\\x1b[2J\\x1b]0;pwned\\x07" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr


class _ImpossibleValuesServicer(UpstreamServicer):
    """A server whose answers carry numbers no memory has: NaN and infinite confidence,
    activation and decay, times outside the years 1-9999 (a Timestamp's range, which only
    its sender checks)."""

    def Recall(self, request: Any, context: grpc.ServicerContext) -> Any:
        nan, inf = float("nan"), float("inf")
        memories = []
        for i, (value, seconds) in enumerate([(nan, 10**12), (inf, -10**12), (0.75, 0)]):
            m = pb.Memory(id=f"m{i}", content="impossible", activation=value,
                          confidence=pb.Confidence(value=value), decay_rate=value)
            m.created_at.seconds = seconds
            memories.append(m)
        return pb.RecallResponse(
            memories=memories,
            traces=[pb.ActivationTrace(memory_id="m0", activation_level=nan)])

    def Introspect(self, request: Any, context: grpc.ServicerContext) -> Any:
        resp = pb.IntrospectResponse(metrics={"last_at": float("nan"), "rate": float("inf")})
        resp.statistics.total_memories = 3
        resp.statistics.oldest_memory.seconds = 10**12
        resp.statistics.newest_memory.seconds = 1_700_000_000
        return resp


@pytest.fixture
def impossible(tmp_path) -> Iterator[UpstreamServer]:
    srv = UpstreamServer(tmp_path / "impossible", _ImpossibleValuesServicer)
    try:
        yield srv
    finally:
        srv.close()


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_impossible_numbers_and_times_from_a_server_are_shown_not_a_traceback(
        engram, impossible, fmt) -> None:
    """`engram recall` ended in a traceback ("year 33658 is out of range") and its JSON
    said `NaN`, which no JSON reader takes."""
    result = engram("--server", impossible.address, "recall", "impossible", "--no-cache",
                    "--trace", "--format", fmt)
    assert result.exit_code == 0, result.output
    if fmt == "table":
        assert "m2" in result.stdout and "0.75" in result.stdout
        return
    results = orjson.loads(result.stdout)["results"]  # strict: no NaN, no Infinity
    assert [(r["confidence"], r["confidence_category"], r["activation"], r["decay_rate"],
             r["created_at"]) for r in results] == [
        (0.0, "none", 0.0, None, None), (0.0, "none", 0.0, None, None),
        (0.75, "high", 0.75, 0.75, None)]
    assert results[0]["trace"]["activation"] == 0.0


def test_stats_of_a_server_with_impossible_times(engram, impossible) -> None:
    data = orjson.loads(engram("--server", impossible.address, "stats", "--json").stdout)
    assert data["oldest_memory"] is None
    assert data["newest_memory"] == "2023-11-14T22:13:20Z"
    assert data["metrics"] == {"last_at": None, "rate": None}
    table = engram("--server", impossible.address, "stats")
    assert table.exit_code == 0, table.output
    assert "nan (not a time)" in table.stdout
