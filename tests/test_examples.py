"""The shipped examples really run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def test_sample_data_is_realistic_and_the_same_in_both_formats() -> None:
    lines = (ROOT / "examples" / "memories.jsonl").read_bytes().splitlines()
    assert len(lines) >= 2000
    records = [orjson.loads(line) for line in lines]
    assert len({r["content"] for r in records}) == len(records)
    assert all(len(r["content"].split()) >= 8 for r in records)
    csv_rows = (ROOT / "examples" / "memories.csv").read_text().count("\n") - 1
    assert csv_rows == len(records)


def test_pipeline_script_answers_every_cue_in_order(server, tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `engram` as a user has it on PATH, running this checkout's code.
    (bin_dir / "engram").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m engram_cli "$@"\n')
    (bin_dir / "engram").chmod(0o755)
    env = {**os.environ, "ENGRAM_SERVER": server.address,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(["sh", str(ROOT / "examples" / "pipeline.sh")], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    cues = (ROOT / "examples" / "cues.txt").read_text().splitlines()
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == cues
    assert "espresso machine" in rows[0][1] and "leaking water" in rows[0][1]
    assert all(r[1] != "(nothing)" for r in rows)
