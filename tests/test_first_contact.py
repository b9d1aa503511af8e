"""What a new user trips over first (issue 18): each item, kept fixed by a real test."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.import_support import cli_env, count_on, records, run_import


def _truncated_gzip(path: Path, n: int) -> tuple[Path, int]:
    """A gzip of n JSONL records cut off part way; answers the file and how many whole
    records its readable part holds."""
    rows = records(n)
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    whole = gzip.compress(data, mtime=0)
    path.write_bytes(whole[: len(whole) * 2 // 3])
    got = zlib.decompressobj(wbits=31).decompress(path.read_bytes())
    return path, got.count(b"\n")


def test_truncated_gzip_stores_what_precedes_the_damage_and_names_file_and_offset(
        server, tmp_path):
    path, readable = _truncated_gzip(tmp_path / "cut.jsonl.gz", 3000)
    assert 100 < readable < 3000
    size = path.stat().st_size
    done = run_import(server.address, str(path), "--json")
    assert done.returncode == 1, done.stderr
    assert "Aborted" not in done.stderr and "Traceback" not in done.stderr
    assert f"cut.jsonl.gz: the gzip data ends early at compressed byte {size:,}" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["imported"] == readable and "truncated" in summary["error"]
    assert count_on(server.address) == readable

    dry = run_import(server.address, str(path), "--dry-run", "--json")
    assert dry.returncode == 1 and json.loads(dry.stdout)["imported"] == readable

    # The whole file arrives later: --resume carries on from the damage.
    path.write_bytes(gzip.compress(b"".join(json.dumps(r).encode() + b"\n"
                                            for r in records(3000)), mtime=0))
    resumed = run_import(server.address, str(path), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert json.loads(resumed.stdout)["read"] == 3000 - readable
    assert count_on(server.address) == 3000


def test_a_json_array_cut_short_stores_its_records_and_says_so(server, tmp_path):
    """A `.json` array the file ends inside (no closing ']') imported its records and
    exited 0, as if whole; it is damage, said as a truncated gzip is, and --resume carries
    on once the whole file is there."""
    rows = records(1000)  # past the 64 KiB a checkpoint knows a file by
    whole = json.dumps(rows, indent=1)
    path = tmp_path / "cut.json"
    path.write_text(whole[: whole.rindex("}") + 1] + "\n")  # every element, no ']'
    done = run_import(server.address, str(path), "--json")
    assert done.returncode == 1, done.stderr
    assert "cut.json: the JSON array never closes" in done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout)["imported"] == len(rows)
    assert count_on(server.address) == len(rows)
    path.write_text(whole)
    resumed = run_import(server.address, str(path), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert count_on(server.address) == len(rows)


def test_data_after_a_json_array_is_said_not_ignored(server, tmp_path):
    """What followed a top-level array's ']' was ignored: a file of an empty array and then
    records one after another imported nothing and exited 0."""
    path = tmp_path / "two.json"
    path.write_text('[{"content": "in the array"}]\n'
                    + "".join(json.dumps(r) + "\n" for r in records(3)))
    done = run_import(server.address, str(path), "--json")
    assert done.returncode == 1, done.stderr
    assert "two.json:2: data after the end of the JSON array" in done.stderr
    assert json.loads(done.stdout)["imported"] == 1
    blank = tmp_path / "blank.json"
    blank.write_text('[{"content": "alone"}]\n\n   \n')
    assert run_import(server.address, str(blank)).returncode == 0


def _fill_cache(spaces: list[str]) -> None:
    from engram_cli.client.cache import RecallCache, cache_key
    from tests.test_cache import CURVE, result

    with RecallCache.default() as cache:
        for space in spaces:
            key = cache_key("localhost:50051", space, "cue", {"limit": 10})
            assert cache.put(key, "localhost:50051", space, "cue", [result(1)], CURVE)


def _entries() -> dict[str, int]:
    from engram_cli.client.cache import RecallCache

    with RecallCache.default() as cache:
        return dict(cache.stats().spaces)


def test_global_space_env_and_config_choose_what_cache_clear_clears(runner, isolated_env,
                                                                      monkeypatch):
    from engram_cli.cli.main import app

    _fill_cache(["notes", "work", "other", "default"])
    done = runner.invoke(app, ["--space", "notes", "cache", "clear"])
    assert done.exit_code == 0, done.output
    assert "space 'notes'" in done.output and len(_entries()) == 3
    monkeypatch.setenv("ENGRAM_SPACE", "work")
    assert runner.invoke(app, ["cache", "clear"]).exit_code == 0
    assert len(_entries()) == 2
    monkeypatch.delenv("ENGRAM_SPACE")
    config = isolated_env / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text('[client]\nspace = "other"\n')
    assert runner.invoke(app, ["cache", "clear"]).exit_code == 0
    assert len(_entries()) == 1
    (config / "config.toml").write_text("")
    bad = runner.invoke(app, ["cache", "clear", "--space", "BAD!"])
    assert bad.exit_code == 2 and "invalid memory space" in bad.output
    assert runner.invoke(app, ["cache", "clear"]).exit_code == 0
    assert _entries() == {}


def test_stats_answers_for_the_global_space(engram, server, tmp_path, monkeypatch):
    from tests.import_support import write_jsonl

    write_jsonl(tmp_path / "a.jsonl", records(30))
    write_jsonl(tmp_path / "b.jsonl", records(20, start=100))
    assert engram("import", str(tmp_path / "a.jsonl"), "--space", "notes").exit_code == 0
    assert engram("import", str(tmp_path / "b.jsonl"), "--space", "work").exit_code == 0
    whole = json.loads(engram("stats", "--json").stdout)
    assert whole["total_memories"] == 50 and whole["space"] == "(all)"
    monkeypatch.setenv("ENGRAM_SPACE", "notes")
    one = json.loads(engram("stats", "--json").stdout)
    assert one["total_memories"] == 30 and one["space"] == "notes"
    work = json.loads(engram("--space", "work", "stats", "--json").stdout)
    assert work["total_memories"] == 20


def _engram(*args: str, stdin: object = subprocess.DEVNULL, close_stdin: bool = False
            ) -> subprocess.CompletedProcess:
    """`engram ...` as a real process; with close_stdin its fd 0 is closed (`<&-`)."""
    import os

    pre = (lambda: os.close(0)) if close_stdin else None
    return subprocess.run([sys.executable, "-m", "engram_cli", *args], stdin=None if
                          close_stdin else stdin, capture_output=True, text=True,
                          env=cli_env(), timeout=60, preexec_fn=pre)


def test_an_embedded_server_that_cannot_have_a_data_dir_is_one_line(tmp_path):
    """HOME unset or read-only: the autostart's lock in the data dir was a traceback."""
    from tests.test_cli_foundation import free_port

    done = subprocess.run(
        [sys.executable, "-m", "engram_cli", "recall", "kettle"], capture_output=True,
        text=True, timeout=60,
        env=cli_env(ENGRAM_DATA_DIR="/proc/nope/engram", ENGRAM_DEFAULT_PORT=str(free_port()),
                    ENGRAM_NO_AUTOSTART="",
                    ENGRAM_CACHE_DIR=str(tmp_path / "cache")))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "the data dir /proc/nope/engram cannot be created" in done.stderr
    assert "ENGRAM_DATA_DIR" in done.stderr


def test_closed_stdin_and_unusable_data_dirs_get_one_line_not_a_traceback(tmp_path):
    cases = [
        (_engram("recall", "-", close_stdin=True), 1, "stdin: it is closed"),
        (_engram("import", "-", "--dry-run", close_stdin=True), 1, "stdin: it is closed"),
        (_engram("serve", "--port", "0", "--data-dir", "/proc/nope"), 2,
         "/proc/nope cannot be created"),
    ]
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases.append((_engram("serve", "--port", "0", "--data-dir", str(afile)), 2,
                  "is not a directory"))
    for done, code, said in cases:
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr and said in done.stderr, done.stderr
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1, done.stderr


def test_readme_cache_demo_runs_as_written_and_hits(server_process, tmp_path):
    import os
    import re

    from tests.import_support import ROOT

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- cache-demo -->\n```sh\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [c for c in block.group(1).splitlines() if c.strip()]
    data = tmp_path / "demo-data"
    data.mkdir(mode=0o700)
    # On a loaded CI machine a 50 ms recall budget can run out, and an answer cut short is
    # rightly never cached ("partial"): the demo is about the cache, so give it time.
    (data / "engram.toml").write_text("[engine]\nrecall_budget_ms = 5000\n")
    sp = server_process(data)
    env = cli_env(ENGRAM_SERVER=sp.address,
                  PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    outputs = []
    for command in commands:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout.strip())
    assert outputs[-2] == '"cached":false', outputs
    assert outputs[-1] == '"cached":true', outputs


def test_json_answer_says_why_it_was_not_cached(engram, tmp_path):
    from tests.import_support import write_jsonl

    # On a loaded CI machine a 50 ms recall budget can run out, and an answer cut short is
    # rightly never cached ("partial", which this test is not about): give it time.
    assert engram("tune", "--set", "recall_budget_ms=5000").exit_code == 0
    write_jsonl(tmp_path / "m.jsonl", [
        {"content": "the blue kettle whistles", "confidence": 0.95},
        {"content": "the red teapot cracked", "confidence": 0.5}])
    assert engram("import", str(tmp_path / "m.jsonl"), "--wait-indexed", "30").exit_code == 0
    fresh = json.loads(engram("recall", "blue kettle", "--format", "json").stdout)
    assert fresh["cache"]["stored"] is False and "not consolidated" in fresh["cache"]["reason"]
    assert engram("consolidate").exit_code == 0
    settled = json.loads(engram("recall", "blue kettle", "--format", "json").stdout)
    assert settled["cache"] == {"stored": True}
    low = json.loads(engram("recall", "red teapot", "--format", "json").stdout)
    assert "confidence 0.5, under the cache's 0.9" in low["cache"]["reason"]
    empty = json.loads(engram("recall", "zebra", "--format", "json").stdout)
    assert empty["cache"] == {"stored": False, "reason": "an empty answer is never cached"}
    off = json.loads(engram("recall", "blue kettle", "--no-cache", "--format", "json").stdout)
    assert off["cache"] == {"stored": False, "reason": "--no-cache"}


def test_readme_profile_table_lists_every_setting_each_profile_changes():
    import dataclasses
    import re

    from engram_cli.client.settings import DEFAULT_CLIENT_SETTINGS
    from engram_cli.engine.settings import DEFAULT_SETTINGS
    from engram_cli.tuning import profiles
    from tests.import_support import ROOT

    readme = (ROOT / "README.md").read_text()
    server_defaults = dataclasses.asdict(DEFAULT_SETTINGS)
    client_defaults = DEFAULT_CLIENT_SETTINGS.as_dict()
    for name in ("low-latency", "high-throughput", "balanced", "memory-limited"):
        row = re.search(rf"^\| `{name}` \|.*$", readme, re.M)
        assert row is not None, name
        profile = profiles.load(name)
        assert not {"batch", "pool"} & set(profile.client), name
        changed = [k for k, v in profile.server.items() if server_defaults[k] != v]
        changed += [k for k, v in profile.client.items() if client_defaults[k] != v]
        for key in changed:
            assert f"`{key} = " in row.group(0), (name, key)
        if not changed:
            assert "the defaults" in row.group(0)


def test_import_after_low_latency_profile_keeps_its_default_batches(engram, server,
                                                                     tmp_path):
    from tests.import_support import write_jsonl

    assert engram("tune", "--profile", "low-latency").exit_code == 0
    write_jsonl(tmp_path / "m.jsonl", records(3000))
    done = engram("import", str(tmp_path / "m.jsonl"), "--json")
    assert done.exit_code == 0, done.output
    # Batches capped by this server's max_batch (1,000), not 50 a call as before.
    assert json.loads(done.stdout)["batches"] <= 6


def test_csv_delimiter_is_detected_or_given(engram, server, tmp_path):
    semi = tmp_path / "semi.csv"
    semi.write_text("content;tags\nthe kettle whistles;kitchen\nthe door creaks;house\n")
    done = engram("import", str(semi), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["imported"] == 2
    # One column only: nothing to sniff; --delimiter says it.
    pipe = tmp_path / "pipe.csv"
    pipe.write_text("content|confidence\nred teapot|0.5\n")
    given = engram("import", str(pipe), "--delimiter", "|", "--json")
    assert given.exit_code == 0, given.output
    assert count_on(server.address) == 3


def test_a_header_s_delimiter_wins_over_commas_and_semicolons_in_the_cells(engram, server,
                                                                          tmp_path):
    """The sniffer judged by how regularly a character recurs in the first lines: cells
    with commas, `a;b` tags and JSON lists outvoted the `|` of this header, and the whole
    file was refused as headerless."""
    path = tmp_path / "piped.csv"
    path.write_text("content|tags|id\n"
                    "the kettle whistles, loudly; twice, then stops|[\"kitchen\",\"tea\"]|k1\n"
                    "the door creaks, again; and again, at night|hall;house|d1\n"
                    "the cat sleeps, curled up; purring, warm|[\"home\",\"cat\"]|c1\n")
    done = engram("import", str(path), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["imported"] == 3
    (door,) = server.store.get("default", ["d1"])
    assert door.tags == ["hall", "house"]


def test_headerless_csv_binary_file_json_named_jsonl_and_directory_stop_early(engram,
                                                                                tmp_path):
    headerless = tmp_path / "nohead.csv"
    headerless.write_text("the kettle whistles,kitchen\nthe door creaks,house\n")
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(bytes(range(256)) * 800)
    array = tmp_path / "array.jsonl"
    array.write_text(json.dumps([{"content": "a"}, {"content": "b"}], indent=2))
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [(headerless, "is not a header"), (binary, "binary data"),
             (array, "is a JSON array, not JSONL"), (folder, "it is a directory")]
    for path, said in cases:
        done = engram("import", str(path))
        assert done.exit_code == 1, done.output
        assert said in done.output and "Traceback" not in done.output, done.output
        assert not Path(f"{path}.rejects.jsonl").exists()


def test_a_stray_nul_byte_rejects_its_line_not_the_whole_file(engram, server, tmp_path):
    """A NUL in the first 64 KB made the whole input "binary data": one corrupt line of a
    JSONL file kept all its good records out."""
    lines = [json.dumps({"content": f"the lamp number {i} flickers"}) for i in range(300)]
    lines[100] = '{"content": "torn \x00 line"}'
    path = tmp_path / "torn.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = engram("import", str(path), "--json")
    assert done.exit_code == 3, done.output
    summary = json.loads(done.stdout)
    assert (summary["imported"], summary["rejected"]) == (299, 1)
    (reject,) = Path(f"{path}.rejects.jsonl").read_text().splitlines()
    assert json.loads(reject)["_reject"]["line"] == 101


def test_utf16_and_utf32_inputs_are_named_with_the_conversion(engram, server, tmp_path):
    """As PowerShell's Out-File and Notepad's "Unicode" write text: with a byte order mark,
    or UTF-16 without one. Said before any record, with the iconv line that converts it;
    the converted file then imports."""
    lines = '{"content": "the kettle whistles"}\n{"content": "the door creaks"}\n'
    csv_text = "content\nthe kettle whistles\n"
    cases = [("bom16.jsonl", lines, "utf-16", "UTF-16"),
             ("le.jsonl", lines, "utf-16-le", "UTF-16LE"),
             ("be.csv", csv_text, "utf-16-be", "UTF-16BE"),
             ("bom32.csv", csv_text, "utf-32", "UTF-32")]
    for name, text, codec, said in cases:
        path = tmp_path / name
        path.write_bytes(text.encode(codec))
        done = engram("import", str(path))
        assert done.exit_code == 1, done.output
        assert f"is {said} text; engram reads UTF-8" in done.stderr, done.output
        assert f"iconv -f {said} -t UTF-8 {path} >" in done.stderr
        converted = tmp_path / f"{path.stem}.utf8{path.suffix}"
        converted.write_bytes(path.read_bytes().decode(codec).encode())
        assert engram("import", str(converted)).exit_code == 0
    assert count_on(server.address) == 2


def test_a_latin1_input_is_hinted_once_with_its_conversion(engram, server, tmp_path):
    path = tmp_path / "legacy.csv"
    path.write_bytes("content\ncafé au lait\nplain tea\nnaïve kettle\n".encode("cp1252"))
    done = engram("import", str(path))
    assert done.exit_code == 3, done.output
    assert done.stderr.count("lines that are not UTF-8 are rejected") == 1
    assert f"iconv -f CP1252 -t UTF-8 {path} > {tmp_path / 'legacy.utf8.csv'}" in done.stderr
    converted = tmp_path / "legacy.utf8.csv"
    converted.write_text(path.read_bytes().decode("cp1252"))
    assert engram("import", str(converted)).exit_code == 0
    assert count_on(server.address) == 3


def test_version_completion_and_log_levels(tmp_path, server_process):
    from engram_cli import __version__

    assert _engram("-V").stdout.strip() == f"engram {__version__}"
    script = _engram("--show-completion", "bash")
    assert script.returncode == 0 and "complete" in script.stdout and "engram" in script.stdout
    both = _engram("--verbose", "--quiet", "cache", "stats")
    assert both.returncode == 2 and "exclude each other" in both.stderr
    # --quiet keeps the server's INFO lines (listening, stopping) off stderr.
    sp = server_process(tmp_path / "q-data")
    assert sp.terminate() == 0
    loud = sp.proc.stderr.read()
    assert " INFO " in loud
    import re as _re

    quiet = subprocess.Popen([sys.executable, "-m", "engram_cli", "--quiet", "serve", "--port",
                              "0", "--data-dir", str(tmp_path / "q2")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        line = quiet.stdout.readline()
        assert _re.search(r"listening on", line), line
    finally:
        quiet.terminate()
        _, err = quiet.communicate(timeout=30)
    assert " INFO " not in err, err


def test_help_shows_no_python_types_and_keeps_sentences_whole(runner):
    from engram_cli.cli.main import app

    for command in (["import"], ["recall"], ["serve"], ["tune"], ["stats"], ["cache", "clear"],
                    []):
        out = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}).output
        for python_type in ("<bool>", "<str>", "<int>", "<float>", "<list[str]>"):
            assert python_type not in out, (command, python_type)
    serve = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "80"}).output
    assert "sent twice is stored once" in " ".join(serve.split())
    assert " sent twice\n" not in serve


def test_stats_table_shows_times_in_iso_8601(engram, tmp_path):
    from tests.import_support import write_jsonl

    write_jsonl(tmp_path / "m.jsonl", records(5))
    assert engram("import", str(tmp_path / "m.jsonl")).exit_code == 0
    assert engram("consolidate").exit_code == 0
    out = engram("stats").stdout
    assert "e+09" not in out
    import re

    assert re.search(r"consolidation\.last_pass_at\s+│?\s*20\d\d-\d\d-\d\dT", out), out


def test_progress_bar_keeps_its_times_at_80_columns():
    import io

    from rich.console import Console

    from engram_cli.cli.import_cmd import _ProgressBar
    from engram_cli.ingest.importer import Progress

    buf = io.StringIO()
    bar = _ProgressBar(Console(file=buf, width=80, force_terminal=True))
    bar.update(Progress(read=123_456, imported=120_000, rejected=3_456, bytes_done=50_000_000,
                        bytes_total=200_000_000, seconds=65.0,
                        current="exports/a-rather-long-input-name.jsonl.gz"))
    bar._progress.refresh()
    bar.stop()
    text = buf.getvalue()
    import re

    last = text.split("\x1b[2K")[-2]
    assert re.search(r"\d:\d\d:\d\d", last) and "0:0…" not in text, text


def test_recall_trace_sits_on_each_result_and_table_ids_stay_whole(engram, tmp_path):
    from tests.import_support import write_jsonl

    write_jsonl(tmp_path / "m.jsonl", [{"content": "the blue kettle whistles loudly"}])
    assert engram("import", str(tmp_path / "m.jsonl")).exit_code == 0
    answer = json.loads(engram("recall", "blue kettle", "--trace", "--format", "json").stdout)
    assert "trace" not in answer
    assert all("path" in r["trace"] and "activation" in r["trace"] for r in answer["results"])
    table = engram("recall", "blue kettle", "--trace", "--format", "table")
    mid = answer["results"][0]["id"]
    assert mid in table.stdout, table.stdout
    assert "activation paths" in table.stdout


def test_server_typo_is_a_usage_error(runner, monkeypatch):
    from engram_cli.cli.main import app

    bad = runner.invoke(app, ["--server", "localhost:notaport", "stats"])
    assert bad.exit_code == 2 and "--server: 'localhost:notaport' is not valid" in bad.output
    monkeypatch.setenv("ENGRAM_SERVER", "host:99999")
    assert runner.invoke(app, ["stats"]).exit_code == 2


def test_stale_checkpoints_are_pruned_by_the_next_import(engram, tmp_path):
    import os
    import time

    from engram_cli.ingest import checkpoint

    folder = checkpoint.checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    old, fresh = folder / "old.json", folder / "fresh.json"
    for path in (old, fresh):
        path.write_text("{}")
    month_ago = time.time() - 31 * 86_400
    os.utime(old, (month_ago, month_ago))
    from tests.import_support import write_jsonl

    write_jsonl(tmp_path / "m.jsonl", records(3))
    assert engram("import", str(tmp_path / "m.jsonl")).exit_code == 0
    assert not old.exists() and fresh.exists()


def test_localhost_and_127_0_0_1_share_cache_entries_and_clear_bad_space_exits_2():
    from engram_cli.client.cache import cache_key

    assert cache_key("localhost:7000", "", "c", {}) == cache_key("127.0.0.1:7000", "", "c", {})
    assert cache_key("localhost:7000", "", "c", {}) != cache_key("10.0.0.1:7000", "", "c", {})


def test_unknown_config_key_is_named_with_a_suggestion(runner, isolated_env):
    from engram_cli.cli.main import app

    config = isolated_env / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text("[client]\npoool = 3\n")
    done = runner.invoke(app, ["cache", "stats"])
    assert done.exit_code == 2 and "poool" in done.output and "pool" in done.output


def test_busy_port_is_one_line_and_serve_honours_engram_default_port(server_process,
                                                                     tmp_path):
    import socket

    sp = server_process(tmp_path / "first")
    port = sp.address.rsplit(":", 1)[1]
    busy = _engram("serve", "--port", port, "--data-dir", str(tmp_path / "second"))
    assert busy.returncode == 1, busy.stderr
    assert busy.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: the port is in use: is another server "
        "on that port? pick another with --port"]

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "engram_cli", "serve", "--data-dir",
                             str(tmp_path / "third")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=cli_env(ENGRAM_DEFAULT_PORT=str(free)))
    try:
        assert f"listening on 127.0.0.1:{free} " in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_background_server_says_each_line_once_in_its_log(tmp_path):
    import socket
    import time

    from engram_cli.client.autostart import LOG_NAME

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    data = tmp_path / "bg"
    started = _engram("serve", "--detach", "--port", port, "--data-dir", str(data))
    assert started.returncode == 0, started.stderr
    try:
        log = data / LOG_NAME
        deadline = time.monotonic() + 30
        while "listening on" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        assert _engram("--server", f"127.0.0.1:{port}", "stop").returncode == 0
    assert log.read_text().count("listening on") == 1, log.read_text()
    # Not faiss's INFO lines about the builds it could not load (six at every start).
    assert "faiss" not in log.read_text(), log.read_text()


@pytest.mark.parametrize(("args", "named"), [
    (["backup", ""], "'DEST': an empty path"),
    (["restore", ""], "'SRC': an empty path"),
    (["export", "-o", ""], "'--output' / '-o': an empty path"),
    (["import", "x.jsonl", "--rejects", ""], "'--rejects': an empty path"),
    (["serve", "--port", "0", "--data-dir", ""], "'--data-dir': an empty path"),
    (["tune", "--show", "--write-config", ""], "'--write-config': an empty path"),
    (["import", ""], "an empty input name"),
    (["forget", "mem_1", ""], "an empty id"),
])
def test_an_empty_path_or_name_is_a_usage_error_not_the_current_directory(
        runner, isolated_env, tmp_path, monkeypatch, args, named):
    """Path('') is '.': `engram backup ""` named the directory the user stood in (and
    `serve --data-dir ""` would keep the store there). Refused before any server starts."""
    from engram_cli.cli.main import app

    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = runner.invoke(app, ["--no-autostart", "--server", "127.0.0.1:9", *args])
    assert result.exit_code == 2, result.output
    assert named in " ".join(result.stderr.split())
    assert list(here.iterdir()) == []
