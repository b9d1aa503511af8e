"""What a new user trips over first (issue 18): each item, kept fixed by a real test."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path

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
