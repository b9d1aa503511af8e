"""The CLI skeleton: global options, serve/stop/stats, autostart, help and README."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engram_cli.cli.main import app
from tests.rpc_helpers import remember, stubs

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engram_proc(*args: str, env: dict | None = None, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engram_cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          input=input)


def command_names() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_command_has_help_with_an_example(runner) -> None:
    names = command_names()
    assert {"serve", "stop", "stats", "import", "recall"} <= set(names)
    for name in names:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example:" in result.output, f"`engram {name} --help` has no example"


def test_readme_documents_every_command_and_its_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in command_names():
        assert f"### `engram {name}`" in readme, f"README lacks a section for {name}"
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    assert blocks[0].strip().startswith("pip install . && engram import examples/")
    assert blocks[1].strip() == 'pip install ".[test]" && python -m pytest'
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci


def test_top_level_help_lists_exit_codes(runner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "130 interrupted" in result.output


def test_stats_json_and_table(engram, server) -> None:
    with stubs(server.address) as (stub, _):
        for i in range(3):
            remember(stub, f"stat me {i}")
        remember(stub, "other space", space="other")
    result = engram("stats", "--json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["total_memories"] == 4 and data["healthy"] is True
    one = orjson.loads(engram("stats", "--json", "--space", "other").output)
    assert one["total_memories"] == 1
    table = engram("stats")
    assert table.exit_code == 0 and "total_memories" in table.output
    # At 80 columns every name is whole (the model's made one end in "..." before).
    assert [k for k in data["metrics"] if k not in table.output] == [], table.output


def test_no_server_and_no_autostart_is_one_clear_line(runner) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["--server", address, "stats"])
    assert result.exit_code == 1, result.output
    assert f"no Engram server answers at {address}" in result.stderr
    assert "Traceback" not in result.output
    default = runner.invoke(app, ["stats"], env={"ENGRAM_DEFAULT_PORT": str(free_port())})
    assert default.exit_code == 1
    assert "engram serve" in default.stderr


@pytest.mark.parametrize(("args", "code", "said"), [
    (["import", "typo.jsonl"], 1, "typo.jsonl: no such file"),
    (["export", "-o", "no-such-dir/out.jsonl"], 2, "no-such-dir does not exist"),
])
def test_a_bad_path_starts_no_server(tmp_path, monkeypatch, args, code, said) -> None:
    """The embedded server starts by itself when a command needs it; a typo in a path
    does not, and it started one (30 minutes idle) before saying so."""
    monkeypatch.delenv("ENGRAM_NO_AUTOSTART")
    port = str(free_port())
    env = {**os.environ, "ENGRAM_DEFAULT_PORT": port}
    try:
        done = subprocess.run([sys.executable, "-m", "engram_cli", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == code, done.stderr
        assert said in done.stderr
        assert "started a local server" not in done.stderr
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(port))) != 0  # nobody listens
    finally:
        subprocess.run([sys.executable, "-m", "engram_cli", "stop"], env=env,
                       capture_output=True, timeout=60)


def test_commands_started_together_start_one_server(tmp_path, monkeypatch) -> None:
    """`engram export | engram import -` on a machine with no server: both find nobody
    listening, and each started a server (one lost the data dir's lock) and said so."""
    monkeypatch.delenv("ENGRAM_NO_AUTOSTART")
    env = {**os.environ, "ENGRAM_DEFAULT_PORT": str(free_port())}
    cmd = [sys.executable, "-m", "engram_cli", "spaces"]
    try:
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        said = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], said
        assert sum(s.count("started a local server") for s in said) == 1, said
    finally:
        subprocess.run([sys.executable, "-m", "engram_cli", "stop"], env=env,
                       capture_output=True, timeout=60)


def test_bad_space_is_a_usage_error(engram) -> None:
    result = engram("--space", "NOT VALID", "recall", "x")
    assert result.exit_code == 2, result.output
    assert "invalid memory space id" in result.stderr


def test_server_env_and_flag_precedence(runner, server, tmp_path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    by_env = runner.invoke(app, ["stats", "--json"], env={"ENGRAM_SERVER": server.address})
    assert by_env.exit_code == 0, by_env.output
    flag_wins = runner.invoke(app, ["--server", dead, "stats"],
                              env={"ENGRAM_SERVER": server.address})
    assert flag_wins.exit_code == 1 and dead in flag_wins.stderr
    config = Path(os.environ["ENGRAM_CONFIG_DIR"])
    config.mkdir(parents=True)
    (config / "config.toml").write_text(f'[client]\nserver = "{server.address}"\n')
    by_file = runner.invoke(app, ["stats", "--json"])
    assert by_file.exit_code == 0, by_file.output
    env_wins = runner.invoke(app, ["stats"], env={"ENGRAM_SERVER": dead})
    assert env_wins.exit_code == 1 and dead in env_wins.stderr


def test_api_key_is_sent_as_bearer_metadata(runner, tmp_path) -> None:
    from engram_cli.server.app import EngramServer, ServeOptions

    key = "engram_key_" + "k" * 24 + "_" + "s" * 32
    srv = EngramServer(ServeOptions(data_dir=tmp_path / "d", port=0, api_keys=(key,)))
    try:
        srv.start()
        ok = runner.invoke(app, ["--server", srv.address, "--api-key", key, "stats", "--json"])
        assert ok.exit_code == 0, ok.output
        env_ok = runner.invoke(app, ["--server", srv.address, "stats", "--json"],
                               env={"ENGRAM_API_KEY": key})
        assert env_ok.exit_code == 0, env_ok.output
        bad = runner.invoke(app, ["--server", srv.address, "--api-key", "wrong", "stats"])
        assert bad.exit_code == 1
        assert "refused" in bad.stderr and "--api-key" in bad.stderr
    finally:
        srv.stop(grace=1)


@pytest.fixture
def default_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """The embedded default on a free port, with autostart allowed; stopped afterwards."""
    port = free_port()
    monkeypatch.setenv("ENGRAM_DEFAULT_PORT", str(port))
    monkeypatch.delenv("ENGRAM_NO_AUTOSTART")
    try:
        yield port
    finally:
        engram_proc("stop")


def test_autostart_then_stop(default_port: int) -> None:
    first = engram_proc("stats", "--json")
    assert first.returncode == 0, first.stderr
    assert "started a local server on localhost:" in first.stderr
    assert len(first.stderr.strip().splitlines()) == 1
    second = engram_proc("stats", "--json")  # already running: no second start
    assert second.returncode == 0 and "started" not in second.stderr
    stopped = engram_proc("stop")
    assert stopped.returncode == 0 and "stopped the server" in stopped.stdout
    off = engram_proc("--no-autostart", "stats")
    assert off.returncode == 1 and "no Engram server answers" in off.stderr
    again = engram_proc("stop")
    assert again.returncode == 0 and "no server running" in again.stdout


def test_readme_demo_runs_on_the_embedded_default(default_port: int) -> None:
    readme = (ROOT / "README.md").read_text()
    demo = re.findall(r"```sh\n(.*?)```", readme, re.S)[0].strip()
    m = re.fullmatch(r'pip install \. && engram import (\S+) && engram recall "([^"]+)"', demo)
    assert m, demo
    imported = engram_proc("import", m.group(1), "--json", timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert orjson.loads(imported.stdout)["imported"] == 3000
    recalled = engram_proc("recall", m.group(2), "--format", "json")
    assert recalled.returncode == 0, recalled.stderr
    results = orjson.loads(recalled.stdout)["results"]
    assert results and "espresso machine" in results[0]["content"]
    assert "leaking water" in results[0]["content"]


def test_serve_detach_then_stop(tmp_path: Path) -> None:
    port = free_port()
    started = engram_proc("serve", "--detach", "--port", str(port), "--data-dir",
                          str(tmp_path / "bg"))
    assert started.returncode == 0, started.stderr
    address = f"127.0.0.1:{port}"
    try:
        assert engram_proc("--server", address, "stats", "--json").returncode == 0
    finally:
        stopped = engram_proc("--server", address, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout


def test_python_dash_m_and_version() -> None:
    proc = engram_proc("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("engram ")


def test_one_answer_to_is_this_server_on_this_machine(runner, monkeypatch) -> None:
    from engram_cli.client.autostart import bind_host
    from engram_cli.config import Connection, is_local

    local = ["localhost", "localhost:7000", "LOCALHOST:1", "127.0.0.1:50051", "127.8.9.1:5",
             "[::1]:7000", "0.0.0.0:50051", "[::]:1", "unix:/tmp/engram.sock",
             "unix-abstract:engram", "grpc://127.0.0.1:9"]
    remote = ["db.example.com:50051", "10.1.2.3:50051", "[2001:db8::1]:50051", "example",
              "localhost.example.com:1"]
    assert [a for a in local if not is_local(a)] == []
    assert [a for a in remote if is_local(a)] == []
    monkeypatch.setenv("ENGRAM_DEFAULT_PORT", "7000")
    assert all(Connection(server=a).is_default_target for a in
               ["localhost:7000", "127.0.0.1:7000", "[::1]:7000", "0.0.0.0:7000"])
    assert not any(Connection(server=a).is_default_target for a in
                   ["127.0.0.1:50051", "db.example.com:7000", "unix:/tmp/x.sock"])
    assert [bind_host(a) for a in ["localhost:1", "127.0.0.1:1", "[::1]:1", "0.0.0.0:1",
                                   "[::]:1"]] == ["127.0.0.1", "127.0.0.1", "::1",
                                                  "127.0.0.1", "::1"]
    remote_stop = runner.invoke(app, ["--server", "db.example.com:50051", "stop"])
    assert remote_stop.exit_code == 1, remote_stop.output
    assert "db.example.com:50051 is not on this machine" in remote_stop.stderr


def test_stop_knows_a_unix_socket_is_on_this_machine(runner) -> None:
    import tempfile

    from engram_cli.client.autostart import is_listening

    with tempfile.TemporaryDirectory() as tmp:  # short: a socket path has ~100 bytes
        path = Path(tmp) / "s.sock"
        address = f"unix:{path}"
        assert not is_listening(address)
        nobody = runner.invoke(app, ["--server", address, "stop"])
        assert nobody.exit_code == 0, nobody.output
        assert f"no server running at {address}" in nobody.stdout
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
            sock.listen()
            assert is_listening(address) and is_listening(f"unix://{path}")


def test_arguments_and_variables_that_are_not_utf8_are_usage_errors(tmp_path) -> None:
    """Python hands such bytes on as lone surrogates: a file name of them failed in the
    checkpoint's JSON, a space in the cache key, each with a traceback."""
    latin = tmp_path / "caf\udce9.jsonl"  # b"caf\xe9.jsonl" on disk
    latin.write_text('{"content": "a latin-1 file name"}\n')
    cases = [(["import", str(latin)], {}, 2, "the argument"),
             (["import", str(tmp_path / "*.jsonl")], {}, 1, "whose name is not UTF-8 text"),
             (["stats"], {"ENGRAM_SPACE": "sp\udce9"}, 2, "ENGRAM_SPACE='sp\ufffd'")]
    for args, env, code, said in cases:
        proc = subprocess.run([sys.executable, "-m", "engram_cli", "--no-autostart", *args],
                              capture_output=True, timeout=60, env={**os.environ, **env})
        err = proc.stderr.decode()
        assert proc.returncode == code and "Traceback" not in err, err
        assert said in err and "is not UTF-8 text" in err


def test_a_full_disk_under_the_output_is_one_line_not_a_traceback(server, tmp_path) -> None:
    """stdout, an export or a rejects file on a full disk (/dev/full answers ENOSPC) ended
    in a traceback."""
    with stubs(server.address) as (stub, _):
        remember(stub, "something to export")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "kept"}\n{"content": "refused", "confidence": 5}\n')
    for args, stdout in ((["cache", "stats"], "/dev/full"),
                         (["--server", server.address, "stats"], "/dev/full"),
                         (["--server", server.address, "export", "-o", "/dev/full"], None),
                         (["--server", server.address, "import", str(bad), "--rejects",
                           "/dev/full"], None)):
        with open(stdout or os.devnull, "w") as out:
            done = subprocess.run([sys.executable, "-m", "engram_cli", *args], stdout=out,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        assert done.returncode == 1, (args, done.stderr)
        assert "No space left on device" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)
