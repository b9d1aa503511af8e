"""`engram tune` across processes: settings survive a restart, a bad server config stops
`engram serve` with a clear line, an upstream-shaped server gets the --write-config hint,
and import picks its defaults up from the [client] table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engram_cli.cli.main import app


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engram_cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_applied_settings_survive_a_restart_as_config(server_process: Any, tmp_path: Path
                                                      ) -> None:
    data_dir = tmp_path / "data"
    first = server_process(data_dir)
    done = cli("--server", first.address, "tune", "--profile", "low-latency", "--json")
    assert done.returncode == 0, done.stderr
    assert first.terminate() == 0

    second = server_process(data_dir)
    shown = cli("--server", second.address, "tune", "--show", "--json")
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)["server"]["settings"]
    assert settings["max_hops"]["value"] == 1
    assert settings["max_hops"]["source"] == "config"
    assert settings["recall_budget_ms"] == {**settings["recall_budget_ms"], "value": 8,
                                            "source": "config"}
    assert settings["forgetting_floor"]["source"] == "default"


@pytest.mark.parametrize(("engine", "expected"), [
    ("max_hops = 99", "engram.toml:3: [engine] max_hops: 99 is not valid: expected 0 to 10"),
    ("max_hop = 2", "engram.toml:3: [engine] max_hop: unknown setting: did you mean "
                    "'max_hops'?"),
    ("vector_ef = 128", "engram.toml:3: [engine] vector_ef: unknown setting: the vector "
                        "index scans every code of a space now: set 'vector_candidates'"),
    ("max_hops = [", "engram.toml: not valid TOML"),
])
def test_a_bad_server_config_stops_serve_with_one_clear_line(tmp_path: Path, engine: str,
                                                             expected: str) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "engram.toml").write_text(f"# mine\n[engine]\n{engine}\n")
    done = cli("serve", "--port", "0", "--data-dir", str(data_dir))
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert str(data_dir / "engram.toml") in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["--show"], ["--profile", "low-latency"],
                                  ["--set", "max_hops=2"], ["--reset"]])
def test_a_server_without_the_settings_rpc_gets_the_write_config_hint(
        runner: Any, upstream_server: Any, isolated_env: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["--server", upstream_server.address, "tune", *args])
    assert result.exit_code == 1, result.output
    assert "has no settings RPC" in result.stderr
    assert "--write-config" in result.stderr
    # Nothing half-done: the client half is not written either.
    assert not (isolated_env / "config" / "config.toml").exists()


def test_import_takes_its_batch_size_from_the_client_config(engram: Any, server: Any,
                                                            isolated_env: Path,
                                                            tmp_path: Path) -> None:
    from engram_cli.tuning.client_settings import write_client_settings

    write_client_settings({"batch": 7, "pool": 1, "stream": False})
    records = tmp_path / "in.jsonl"
    records.write_text("".join(json.dumps({"content": f"note number {i} about the kettle"})
                               + "\n" for i in range(50)))
    before = server.store.stats()["commits"]
    result = engram("import", str(records), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["batches"], summary["mode"]) == (8, "batch")  # ceil(50 / 7) batch calls
    assert server.store.stats()["total_memories"] == 50
    # Batches of 7 reach the server as such: more commits than a batch of 50 would take
    # (group commit may fold two batches in flight into one).
    assert server.store.stats()["commits"] - before >= 4
