"""`engram forget`, `engram spaces` and `engram backup` / `engram restore` end to end
against real servers (in this process, and a subprocess killed during a backup)."""

from __future__ import annotations

import os
import sqlite3
import threading

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from engram_cli.cli.main import app
from engram_cli.client.cache import CachePolicy, Forgetting, RecallCache, cache_key
from engram_cli.engine.model import MemoryRecord
from engram_cli.server.app import EngramServer, ServeOptions

SPACE = "admin-test"


def run(address: str, *args: str, input: str | None = None):
    return CliRunner().invoke(app, ["--server", address, *args], input=input)


def fill(server: EngramServer, n: int = 6, space: str = SPACE) -> None:
    server.store.remember_many(space, [MemoryRecord(id=f"m{i}", content=f"memory {i} about "
                                                    + ("tea" if i % 2 else "coffee"))
                                       for i in range(n)])


def visible(server: EngramServer, ids: list[str], space: str = SPACE) -> set[str]:
    return {r.id for r in server.store.get(space, ids)}


def cached_entry(server: EngramServer, space: str) -> str:
    result = {"id": "m1", "content": "x", "confidence": 0.97, "confidence_category": "high",
              "activation": 0.8, "state": "consolidated", "tags": [], "decay_rate": 0.0}
    key = cache_key(server.address, space, "cue", {"limit": 10})
    with RecallCache.default(CachePolicy()) as cache:
        assert cache.put(key, server.address, space, "cue", [result],
                         Forgetting(0.1, 0.2, 86400.0))
    return key


def cache_has(key: str) -> bool:
    with RecallCache.default(CachePolicy()) as cache:
        return cache.get(key, count_miss=False) is not None


# -- forget ------------------------------------------------------------------------------

def test_forget_suppresses_by_default_and_drops_the_spaces_cache(server):
    fill(server)
    key = cached_entry(server, SPACE)
    r = run(server.address, "forget", "m1", "m2", "nope", "--space", SPACE)
    assert r.exit_code == 0, r.output
    assert "m1\tsuppressed" in r.output and "nope\tnot found" in r.output
    assert "suppressed 2 of 3 memories" in r.output
    assert visible(server, ["m1", "m2", "m3"]) == {"m3"}
    assert server.store.stats(SPACE)["suppressed"] == 2  # reversible: still stored
    assert not cache_has(key)


def test_forget_delete_asks_and_yes_skips_the_question(server):
    fill(server)
    r = run(server.address, "forget", "m1", "--delete", "--space", SPACE, input="n\n")
    assert r.exit_code == 1, r.output
    assert "Delete 1 memories for good (m1)?" in r.output and "nothing deleted" in r.output
    assert visible(server, ["m1"]) == {"m1"}
    r = run(server.address, "forget", "m1", "--delete", "--space", SPACE, input="y\n")
    assert r.exit_code == 0, r.output
    assert "m1\tdeleted" in r.output
    assert server.store.get(SPACE, ["m1"], include_suppressed=True) == []
    r = run(server.address, "forget", "m2", "--delete", "--yes", "--space", SPACE)
    assert r.exit_code == 0 and "m2\tdeleted" in r.output


def test_forget_ids_from_stdin_and_by_match(server):
    fill(server)
    lines = '{"id": "m0", "content": "x"}\n\nm4\n'
    r = run(server.address, "forget", "-", "--space", SPACE, "--json", input=lines)
    assert r.exit_code == 0, r.output
    out = [orjson.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert out == [{"id": "m0", "suppressed": True}, {"id": "m4", "suppressed": True}]
    r = run(server.address, "forget", "-", "--delete", "--space", SPACE, input="m5\n")
    assert r.exit_code == 2 and "pass --yes" in r.output
    r = run(server.address, "forget", "--match", "tea", "--space", SPACE)
    assert r.exit_code == 0, r.output
    assert "suppressed 3 of 3" in r.output and "about tea" in r.output
    assert visible(server, [f"m{i}" for i in range(6)]) == {"m2"}


def test_forget_by_match_hits_the_cue_s_words_not_its_neighbours(server):
    """forget --match asked recall in its default, hybrid mode: "old phone number" listed
    (and with --yes deleted) every phone number the vector index found near it."""
    from tests.import_support import wait_for
    from tests.rpc_helpers import PHONES

    server.store.remember_many(SPACE, [MemoryRecord(id=f"p{i}", content=c)
                                       for i, c in enumerate(PHONES)])
    wait_for(lambda: server.store.vector_stats()["pending"] == 0, timeout=30)
    r = run(server.address, "forget", "--match", "old phone number", "--delete", "--yes",
            "--space", SPACE)
    assert r.exit_code == 0, r.output
    assert "deleted 1 of 1" in r.output
    assert visible(server, [f"p{i}" for i in range(4)]) == {"p1", "p2", "p3"}


def test_forget_usage_errors(server):
    r = run(server.address, "forget")
    assert r.exit_code == 2 and "Error: nothing to forget" in r.output
    r = run(server.address, "forget", "m1", "--match", "x")
    assert r.exit_code == 2 and "not both" in r.output


# -- spaces ------------------------------------------------------------------------------

def test_spaces_lists_counts_and_drop_asks(server):
    fill(server, 4)
    fill(server, 2, space="other")
    server.store.forget("other", ["m0"], "suppress")
    server.store.associate(SPACE, "m0", "m1", 0, 0.5, "")
    r = run(server.address, "spaces", "--json")
    assert r.exit_code == 0, r.output
    by_name = {s["name"]: s for s in orjson.loads(r.stdout)}
    assert (by_name[SPACE]["memories"], by_name[SPACE]["associations"]) == (4, 1)
    assert (by_name["other"]["memories"], by_name["other"]["suppressed"]) == (1, 1)
    table = run(server.address, "spaces")
    assert table.exit_code == 0 and "associations" in table.output and SPACE in table.output
    key = cached_entry(server, "other")
    r = run(server.address, "spaces", "drop", "other", input="n\n")
    assert r.exit_code == 1 and "nothing deleted" in r.output
    r = run(server.address, "spaces", "drop", "other", "--yes")
    assert r.exit_code == 0 and "2 memories deleted" in r.output
    assert not cache_has(key)
    names = [s["name"] for s in orjson.loads(run(server.address, "spaces", "--json").stdout)]
    assert "other" not in names
    r = run(server.address, "spaces", "drop", "never-was", "--yes")
    assert r.exit_code == 1 and "no space 'never-was'" in r.output


def test_spaces_shows_each_spaces_dimension(server):
    # A space of the client's 768-d vectors beside one of text the server has not embedded.
    wide = np.full(768, 0.036, dtype=np.float32).tobytes()
    server.store.remember_many("wide", [MemoryRecord(id="w", content="", embedding=wide)])
    server.store.indexer.stop()  # nothing embeds the text-only space's memories
    fill(server, 2, space="words")
    by_name = {s["name"]: s for s in orjson.loads(run(server.address, "spaces", "--json").stdout)}
    assert (by_name["wide"]["dimension"], by_name["words"]["dimension"]) == (768, 0)
    rows = {line.split()[0]: line.split()[-1] for line in run(server.address, "spaces").stdout
            .splitlines()[1:]}
    assert (rows["wide"], rows["words"]) == ("768", "-")


# -- backup and restore ------------------------------------------------------------------

def test_backup_while_writing_then_restore_gives_the_same_export(server, tmp_path):
    fill(server, 200)
    server.store.associate(SPACE, "m0", "m1", 0, 0.5, "")
    stop = threading.Event()

    def writer() -> None:  # the server keeps taking writes during the backup
        i = 0
        while not stop.is_set():
            server.store.remember(SPACE, MemoryRecord(id=f"w{i}", content=f"written {i}"))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        dest = tmp_path / "backups" / "one"
        dest.parent.mkdir()
        r = run(server.address, "backup", str(dest), "--json")
    finally:
        stop.set()
        t.join()
    assert r.exit_code == 0, r.output
    report = orjson.loads(r.stdout)
    assert report["memories"] >= 200 and report["associations"] == 1
    assert sorted(os.listdir(dest)) == ["backup.json", "engram.db"]
    assert oct(dest.stat().st_mode & 0o777) == "0o700"
    assert oct((dest / "engram.db").stat().st_mode & 0o777) == "0o600"
    conn = sqlite3.connect(dest / "engram.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM memories").fetchone()[0] == report["memories"]
    conn.close()
    again = run(server.address, "backup", str(dest))
    assert again.exit_code == 2 and "already exists" in again.output
    nowhere = run(server.address, "backup", str(tmp_path / "no" / "such" / "dir"))
    assert nowhere.exit_code == 2 and "/no/such does not exist" in nowhere.output
    afile = tmp_path / "afile"
    afile.write_text("x")
    under_a_file = run(server.address, "backup", str(afile / "b"))
    assert under_a_file.exit_code == 2 and "afile is not a directory" in under_a_file.output
    # Into the store's own directory: a directory named engram.toml there kept the server
    # from starting again.
    data = server.store.data_dir
    for inside in (data / "engram.toml", data / "vectors" / "b"):
        own = run(server.address, "backup", str(inside))
        assert own.exit_code == 2 and "is in the store's own directory" in own.output
        assert not inside.exists()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anyway
        denied = run(server.address, "backup", str(locked / "b"))
        assert denied.exit_code == 2 and "cannot write the backup" in denied.output

    restored = tmp_path / "restored"
    r = CliRunner().invoke(app, ["restore", str(dest), "--data-dir", str(restored)])
    assert r.exit_code == 0, r.output
    copy = EngramServer(ServeOptions(data_dir=restored, port=0))
    copy.start()
    try:
        assert copy.store.stats(SPACE)["total_memories"] == report["memories"]
        assert copy.store.stats(SPACE)["total_associations"] == 1
        mine = run(copy.address, "export", "--space", SPACE).stdout_bytes.splitlines()
    finally:
        copy.stop(grace=1.0)
    theirs = run(server.address, "export", "--space", SPACE).stdout_bytes.splitlines()
    assert set(mine) <= set(theirs) and len(mine) == report["memories"]


def test_restore_refuses_a_live_or_occupied_data_dir(server, tmp_path):
    fill(server, 3)
    dest = tmp_path / "b"
    assert run(server.address, "backup", str(dest)).exit_code == 0
    live = server.store.data_dir
    r = CliRunner().invoke(app, ["restore", str(dest), "--data-dir", str(live)])
    assert r.exit_code == 1, r.output
    assert "in use by a running engram server" in r.output and "engram stop" in r.output
    other = tmp_path / "other"
    assert CliRunner().invoke(app, ["restore", str(dest), "--data-dir",
                                    str(other)]).exit_code == 0
    r = CliRunner().invoke(app, ["restore", str(dest), "--data-dir", str(other)])
    assert r.exit_code == 1 and "--force" in r.output
    r = CliRunner().invoke(app, ["restore", str(dest), "--data-dir", str(other), "--force"])
    assert r.exit_code == 0 and "pre-restore-" in r.output
    # A server.json naming a live process is a server starting or running there ...
    (other / "server.json").write_bytes(orjson.dumps({"pid": os.getpid()}))
    r = CliRunner().invoke(app, ["restore", str(dest), "--data-dir", str(other), "--force"])
    assert r.exit_code == 1 and f"(pid {os.getpid()})" in r.output, r.output
    # ... one naming a dead process was left by a kill -9.
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (other / "server.json").write_bytes(orjson.dumps({"pid": int(gone)}))
    r = CliRunner().invoke(app, ["restore", str(dest), "--data-dir", str(other), "--force"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["restore", str(tmp_path / "nothing"), "--data-dir",
                                 str(tmp_path / "x")])
    assert r.exit_code == 1 and "not a finished engram backup" in r.output


def test_a_partial_backup_is_never_taken_for_a_finished_one(tmp_path):
    partial = tmp_path / ".nightly.partial-1-abcd"
    partial.mkdir()
    (partial / "engram.db").write_bytes(b"half a database")
    r = CliRunner().invoke(app, ["restore", str(partial), "--data-dir", str(tmp_path / "d")])
    assert r.exit_code == 1 and "not a finished engram backup" in r.output
    # A finished backup whose database was damaged afterwards fails its check.
    src = tmp_path / "damaged"
    src.mkdir()
    (src / "engram.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    (src / "backup.json").write_text('{"memories": 1, "associations": 0}')
    r = CliRunner().invoke(app, ["restore", str(src), "--data-dir", str(tmp_path / "d")])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output


@pytest.mark.timeout(180)
def test_kill_9_during_a_backup_leaves_the_store_and_no_false_backup(server_process,
                                                                     tmp_path):
    import subprocess
    import sys

    data = tmp_path / "data"
    sp = server_process(data)
    recs = tmp_path / "in.jsonl"
    recs.write_bytes(b"".join(orjson.dumps({"id": f"r{i}", "content": f"record {i} " * 20})
                              + b"\n" for i in range(30_000)))
    assert run(sp.address, "import", str(recs), "--space", SPACE).exit_code == 0
    dest = tmp_path / "bk"
    proc = subprocess.Popen([sys.executable, "-m", "engram_cli", "--server", sp.address,
                             "backup", str(dest)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # Kill as soon as the backup has started writing (or finished: either is valid).
    for _ in range(2000):
        if dest.exists() or any(p.name.startswith(".bk.partial") for p in tmp_path.iterdir()):
            break
        threading.Event().wait(0.005)
    sp.kill9()
    proc.communicate(timeout=60)
    if dest.exists():  # it finished before the kill: then it must be whole
        from engram_cli.engine.backup import verify_backup

        assert verify_backup(dest)["memories"] == 30_000
    # The killed server left its server.json; its LOCK went with it: a restore may go on
    # (with --force, as a store is there), which it would refuse while a server runs.
    assert (data / "server.json").exists()
    if dest.exists():
        r = CliRunner().invoke(app, ["restore", str(dest), "--data-dir", str(data), "--force"])
        assert r.exit_code == 0, r.output
    again = server_process(data)
    r = run(again.address, "spaces", "--json")
    assert {s["name"]: s["memories"] for s in orjson.loads(r.stdout)}[SPACE] == 30_000
    if dest.exists():
        r = CliRunner().invoke(app, ["restore", str(dest), "--data-dir", str(data), "--force"])
        assert r.exit_code == 1 and "in use by a running engram server" in r.output
