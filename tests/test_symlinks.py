"""A symlink planted at a path we write (the rejects file and its .tmp, a checkpoint's .tmp,
the recall cache, a config file) is refused with an `Error:` naming the path, and what it
points at is left untouched."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from engram_cli.server.app import EngramServer
from tests.import_support import records, write_jsonl

PRECIOUS = b"someone else's file\n"


def stored(server: EngramServer) -> int:
    return int(server.store.stats("default")["total_memories"])


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "precious.txt"
    path.write_bytes(PRECIOUS)
    return path


def refused(result, path: Path) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code != 0, result.output
    assert f"Error: {path} is a symbolic link" in result.output or \
        f"Error: the rejects file {path} is a symbolic link" in result.output, result.output
    assert "Traceback" not in result.output


def stopped_import(engram, tmp_path: Path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """An import stopped at its first reject (line 101): a checkpoint and a rejects file
    are left. Answers (input, rejects file)."""
    rows = [*records(100), {"content": ""}, *records(100, start=100)]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    stopped = engram("import", str(path), "--max-errors", "0", "--batch", "20")
    assert stopped.exit_code == 1, stopped.output
    return path, tmp_path / "a.jsonl.rejects.jsonl"


def test_a_symlink_at_the_rejects_path_is_refused(engram, server, tmp_path, target) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [*records(10), {"content": ""}])
    link = tmp_path / "rejects.jsonl"
    link.symlink_to(target)
    result = engram("import", str(path), "--rejects", str(link))
    refused(result, link)
    assert target.read_bytes() == PRECIOUS
    assert link.is_symlink()
    assert stored(server) == 0  # refused before anything was sent


def test_a_symlink_at_the_rejects_path_is_refused_on_resume(engram, server, tmp_path,
                                                             target) -> None:
    path, rejects = stopped_import(engram, tmp_path)
    rejects.unlink()
    rejects.symlink_to(target)
    result = engram("import", str(path), "--resume")
    refused(result, rejects)
    assert target.read_bytes() == PRECIOUS


def test_a_symlink_at_the_rejects_tmp_is_refused_on_resume(engram, server, tmp_path,
                                                            target) -> None:
    path, rejects = stopped_import(engram, tmp_path)
    # A reject past the checkpoint (written just before a crash): the resumed run drops it
    # and so rewrites the rejects file through `<rejects>.tmp`.
    extra = {"_reject": {"source": str(path), "line": 150, "reason": "x", "raw": "x"}}
    with rejects.open("ab") as f:
        f.write(orjson.dumps(extra) + b"\n")
    before = rejects.read_bytes()
    tmp = rejects.with_name(rejects.name + ".tmp")
    tmp.symlink_to(target)
    result = engram("import", str(path), "--resume")
    refused(result, tmp)
    assert target.read_bytes() == PRECIOUS
    assert rejects.read_bytes() == before and tmp.is_symlink()


def test_a_symlink_at_the_checkpoint_tmp_is_refused(engram, server, tmp_path, target,
                                                     isolated_env) -> None:
    path, _ = stopped_import(engram, tmp_path)
    (checkpoint,) = (isolated_env / "data" / "imports").glob("*.json")
    before = checkpoint.read_bytes()
    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    tmp.symlink_to(target)
    count = stored(server)
    result = engram("import", str(path), "--resume")
    refused(result, tmp)
    assert target.read_bytes() == PRECIOUS
    assert checkpoint.read_bytes() == before
    assert stored(server) == count  # refused before anything was sent


def test_a_symlink_at_the_checkpoint_is_refused(engram, server, tmp_path, target,
                                                isolated_env) -> None:
    path, _ = stopped_import(engram, tmp_path)
    (checkpoint,) = (isolated_env / "data" / "imports").glob("*.json")
    checkpoint.unlink()
    checkpoint.symlink_to(target)
    result = engram("import", str(path), "--resume")
    assert result.exit_code != 0, result.output
    assert f"Error: {checkpoint} is a symbolic link" in result.output
    assert target.read_bytes() == PRECIOUS


def test_a_symlink_at_the_client_config_is_refused(engram, isolated_env, tmp_path) -> None:
    target = tmp_path / "dotfiles.toml"
    target.write_bytes(b"[client]\nbatch = 100\n")
    config = isolated_env / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.symlink_to(target)
    result = engram("tune", "--set", "client.batch=500")
    refused(result, config)
    assert target.read_bytes() == b"[client]\nbatch = 100\n"


def test_a_symlink_at_the_recall_cache_is_refused(isolated_env, target) -> None:
    from engram_cli.client.cache import Forgetting, RecallCache, cache_key

    path = isolated_env / "cache" / "recall-cache.sqlite3"
    with RecallCache.default() as probe:
        path = probe.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    with RecallCache.default() as cache:
        key = cache_key("localhost:1", "notes", "cue", {})
        assert not cache.put(key, "localhost:1", "notes", "cue", [],
                             Forgetting(exponent=0.1, floor=0.2, scale_s=86_400.0))
        assert cache.error is not None and f"{path} is a symbolic link" in cache.error
    assert target.read_bytes() == PRECIOUS


def test_write_atomic_refuses_symlinks_and_replaces_a_stale_tmp(tmp_path, target) -> None:
    from engram_cli.errors import UnsafePath
    from engram_cli.files import append_private, write_atomic

    dest = tmp_path / "out.json"
    stale = tmp_path / "out.json.tmp"
    stale.write_bytes(b"half a file from a crash")
    write_atomic(dest, b"new", tmp=stale)
    assert dest.read_bytes() == b"new" and not stale.exists()

    link = tmp_path / "link.json"
    link.symlink_to(target)
    for attempt in (lambda: write_atomic(link, b"x"),
                    lambda: write_atomic(dest, b"x", tmp=link),
                    lambda: append_private(link)):
        with pytest.raises(UnsafePath, match="is a symbolic link"):
            attempt()
    assert target.read_bytes() == PRECIOUS and dest.read_bytes() == b"new"


def test_a_hard_link_planted_at_the_rejects_path_is_refused(tmp_path, target) -> None:
    import os

    from engram_cli.errors import UnsafePath
    from engram_cli.files import append_private

    link = tmp_path / "in.jsonl.rejects.jsonl"
    os.link(target, link)
    with pytest.raises(UnsafePath, match="has other hard links"):
        append_private(link)
    assert target.read_bytes() == PRECIOUS
