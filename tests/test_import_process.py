"""`engram import` as a real process against real `engram serve` processes: kill -9 of
the importer then --resume, the server killed and restarted mid-import, Ctrl-C, and a
server gone for longer than the retry budget. Each ends with the exact count stored."""

from __future__ import annotations

import signal
import subprocess
import sys
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
    assert err.count("is unavailable (restarting?)") == 1, err  # said once
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


def niceness(pid: int) -> int:
    """The CPU niceness of process `pid`'s main thread (field 19 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[16])


def test_importer_yields_the_cpu_to_a_server_on_this_machine(server, tmp_path):
    """Against a local server the importer lowers its own priority (niceness 10) once it
    is connected, and still imports everything."""
    env = cli_env()
    env.pop("ENGRAM_NICE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "--server", server.address, "import", "-",
         "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env)
    try:
        wait_for(lambda: niceness(proc.pid) == 10, timeout=30)
        data = b"".join(orjson.dumps(r) + b"\n" for r in records(50))
        out, err = proc.communicate(data, timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert last_json(out.decode())["imported"] == 50
    assert count_on(server.address) == 50


def test_the_priority_rule_flag_env_default_and_never_raised(tmp_path):
    """yield_cpu in a process of its own (a lowered priority cannot be raised again)."""
    script = (
        "import json, os\n"
        "from engram_cli.cli.import_cmd import yield_cpu\n"
        "from engram_cli.errors import UsageError\n"
        "out = [yield_cpu('db.example.com:50051', None, {}),\n"
        "       yield_cpu('localhost', None, {}, local_default=0),\n"  # --embed's default
        "       yield_cpu('10.1.2.3:50051', None, {'ENGRAM_NICE': '3'}),\n"
        "       yield_cpu('127.0.0.1:50051', 5, {'ENGRAM_NICE': '19'}),\n"
        "       yield_cpu('localhost', None, {}),\n"
        "       yield_cpu('[::1]:7000', 2, {}),\n"
        "       os.getpriority(os.PRIO_PROCESS, 0)]\n"
        "try:\n"
        "    yield_cpu('localhost', None, {'ENGRAM_NICE': 'low'})\n"
        "except UsageError as exc:\n"
        "    out.append(str(exc))\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=cli_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == [0, 0, 3, 5, 10, 10, 10,
                                           "ENGRAM_NICE 'low' is not valid"]
