"""`engram import` as a real process against real `engram serve` processes: kill -9 of
the importer then --resume, the server killed and restarted mid-import, Ctrl-C, and a
server gone for longer than the retry budget. Each ends with the exact count stored."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson

from tests.import_support import (
    cli_env,
    count_on,
    records,
    run_import,
    start_import,
    wait_for,
)

N = 6000
BAD_LINES = (10, 2500, 5999)  # 1-based line numbers of the invalid records


def big_file(path: Path) -> Path:
    """N valid records with invalid ones at BAD_LINES."""
    rows = iter(records(N))
    lines = []
    for n in range(1, N + len(BAD_LINES) + 1):
        lines.append(b'{"content": ""}' if n in BAD_LINES else orjson.dumps(next(rows)))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def checkpoints(isolated_env: Path) -> list[Path]:
    return list((isolated_env / "data" / "imports").glob("*.json"))


def last_json(text: str) -> dict:
    return orjson.loads(text.strip().splitlines()[-1])


def reject_lines(path: Path) -> list[int]:
    return sorted(orjson.loads(x)["_reject"]["line"] for x in path.read_bytes().splitlines())


def test_kill9_of_the_importer_then_resume_stores_exactly_once(server_process, tmp_path,
                                                               isolated_env):
    sp = server_process()
    path = big_file(tmp_path / "big.jsonl")
    proc = start_import(sp.address, str(path), "--rate", "2500", "--batch", "100")
    wait_for(lambda: count_on(sp.address) >= 2000 and bool(checkpoints(isolated_env)))
    proc.kill()
    proc.communicate(timeout=10)
    before = count_on(sp.address)
    assert 0 < before < N
    result = run_import(sp.address, str(path), "--resume", "--json")
    assert result.returncode == 3, result.stderr
    s = last_json(result.stdout)
    assert s["resumed"] and s["resumed"][0]["line"] > 1, s
    assert s["imported"] < N  # it continued; it did not start over
    assert count_on(sp.address) == N
    assert reject_lines(tmp_path / "big.jsonl.rejects.jsonl") == list(BAD_LINES)
    assert not checkpoints(isolated_env)  # a finished import leaves no checkpoint


def test_server_killed_and_restarted_mid_import_still_stores_everything(server_process,
                                                                          tmp_path):
    data = tmp_path / "server-data"
    sp = server_process(data)
    port = int(sp.address.rsplit(":", 1)[1])
    path = big_file(tmp_path / "big.jsonl")
    # Small batches at a steady rate: a batch is always on its way when the server dies.
    proc = start_import(sp.address, str(path), "--rate", "3000", "--batch", "200", "--json")
    wait_for(lambda: count_on(sp.address) >= 1500)
    sp.kill9()
    restarted = server_process(data, port=port)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    s = last_json(out)
    assert s["retried"] > 0, s
    assert count_on(restarted.address) == N
    assert reject_lines(tmp_path / "big.jsonl.rejects.jsonl") == list(BAD_LINES)


def test_ctrl_c_flushes_in_flight_checkpoints_and_exits_130(server_process, tmp_path,
                                                            isolated_env):
    sp = server_process()
    path = big_file(tmp_path / "big.jsonl")
    proc = start_import(sp.address, str(path), "--rate", "2500", "--batch", "200", "--json")
    wait_for(lambda: count_on(sp.address) >= 1000)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    first = last_json(out)
    assert first["interrupted"] is True
    # Everything sent before Ctrl-C was waited for: the server holds exactly what the
    # importer counted, and the checkpoint sits right after it.
    assert count_on(sp.address) == first["imported"]
    assert checkpoints(isolated_env)
    result = run_import(sp.address, str(path), "--resume", "--json")
    assert result.returncode == 3, result.stderr
    second = last_json(result.stdout)
    assert first["imported"] + second["imported"] == N
    assert second["created"] == second["imported"]  # nothing was sent twice
    assert count_on(sp.address) == N
    assert reject_lines(tmp_path / "big.jsonl.rejects.jsonl") == list(BAD_LINES)


def test_server_gone_past_the_retry_budget_exits_1_and_resume_finishes(server_process,
                                                                        tmp_path):
    data = tmp_path / "server-data"
    sp = server_process(data)
    port = int(sp.address.rsplit(":", 1)[1])
    path = big_file(tmp_path / "big.jsonl")
    proc = start_import(sp.address, str(path), "--rate", "3000",
                        env=cli_env(ENGRAM_RETRY_BUDGET="1"))
    wait_for(lambda: count_on(sp.address) >= 1000)
    sp.kill9()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "took no writes" in err and "--resume" in err
    restarted = server_process(data, port=port)
    result = run_import(restarted.address, str(path), "--resume", "--json")
    assert result.returncode == 3, result.stderr
    assert last_json(result.stdout)["resumed"]
    assert count_on(restarted.address) == N


def test_progress_bar_on_a_terminal_and_only_the_summary_otherwise(server_process, tmp_path):
    import os
    import pty
    import subprocess
    import sys

    sp = server_process()
    path = big_file(tmp_path / "big.jsonl")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "--server", sp.address, "import", str(path),
         "--rate", "8000", "--rejects", str(tmp_path / "r.jsonl")],
        stdout=subprocess.PIPE, stderr=slave, env=cli_env(COLUMNS="120"))
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break  # the terminal closed: the importer exited
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 3, seen
    assert b"rec/s" in seen and b"MB/s" in seen, seen
    assert out.decode().startswith("imported 6,000")
    plain = run_import(sp.address, str(path), "--quiet")
    assert plain.returncode == 3, plain.stderr
    assert plain.stderr == "" and plain.stdout.startswith("imported 6,000")
