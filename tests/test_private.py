"""A private store: every file the server, the importer and the client write is 0600 in a
0700 directory whatever the umask (checked with os.stat under umask 022); a world-readable
store gets a warning; API keys never reach a command line; space ids match in full."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest

from engram_cli.server.app import EngramServer, ServeOptions
from tests.import_support import records, wait_for, write_jsonl
from tests.rpc_helpers import recall, remember, stubs
from tests.test_cli_foundation import engram_proc, free_port


@pytest.fixture
def umask022() -> Iterator[None]:
    """The usual umask, under which a plain open() would make files others can read."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def assert_private_tree(root: Path) -> list[Path]:
    """Every directory under root (root too) 0700, every file 0600; answers the files."""
    assert mode(root) == 0o700, root
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            assert mode(Path(dirpath, d)) == 0o700, Path(dirpath, d)
        for f in filenames:
            p = Path(dirpath, f)
            assert not p.is_symlink(), p
            assert mode(p) == 0o600, f"{p}: {oct(mode(p))}"
            files.append(p)
    return files


def run_cli(server: EngramServer, *args: str):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from engram_cli.cli.main import app

    return CliRunner().invoke(app, ["--server", server.address, *args])


# -- permissions -------------------------------------------------------------------------


def test_the_store_is_private_after_an_import(umask022, tmp_path: Path,
                                              isolated_env: Path) -> None:
    data = tmp_path / "store"
    srv = EngramServer(ServeOptions(data_dir=data, port=0))
    try:
        srv.start()
        path = write_jsonl(tmp_path / "in.jsonl", [*records(200), {"content": ""}])
        result = run_cli(srv, "import", str(path), "--json")
        assert result.exit_code == 3, result.output  # one rejected
        tuned = run_cli(srv, "tune", "--set", "max_hops=2")
        assert tuned.exit_code == 0, tuned.output
        running = assert_private_tree(data)
        names = {p.name for p in running}
        assert {"engram.db", "engram.db-wal", "engram.db-shm", "LOCK", "server.json",
                "engram.toml"} <= names, names
    finally:
        srv.stop(grace=1.0)
    assert_private_tree(data)
    # The importer's side: the rejects file beside the input, the checkpoints' directory.
    assert mode(tmp_path / "in.jsonl.rejects.jsonl") == 0o600
    assert_private_tree(isolated_env / "data")
    assert (isolated_env / "data" / "imports").is_dir()


def test_rejects_in_directories_the_import_creates_are_private(umask022, tmp_path: Path,
                                                                server: EngramServer) -> None:
    """--rejects in a directory that is not there: made 0700, parents too (they were
    made as the umask said, 0755 here)."""
    path = write_jsonl(tmp_path / "in.jsonl", [*records(5), {"content": ""}])
    where = tmp_path / "out" / "rejects" / "in.rejects.jsonl"
    result = run_cli(server, "import", str(path), "--rejects", str(where))
    assert result.exit_code == 3, result.output
    assert [mode(p) for p in (where.parent.parent, where.parent)] == [0o700, 0o700]
    assert mode(where) == 0o600


def test_a_checkpoint_left_by_a_stopped_import_is_private(umask022, tmp_path: Path,
                                                          isolated_env: Path) -> None:
    srv = EngramServer(ServeOptions(data_dir=tmp_path / "store", port=0))
    try:
        srv.start()
        rows = [*records(100), {"content": ""}, *records(100, start=100)]
        path = write_jsonl(tmp_path / "a.jsonl", rows)
        stopped = run_cli(srv, "import", str(path), "--max-errors", "0", "--batch", "20")
        assert stopped.exit_code == 1, stopped.output
    finally:
        srv.stop(grace=1.0)
    files = assert_private_tree(isolated_env / "data" / "imports")
    assert [p.suffix for p in files] == [".json"]
    assert mode(tmp_path / "a.jsonl.rejects.jsonl") == 0o600


def test_the_recall_cache_is_private(umask022, isolated_env: Path) -> None:
    from engram_cli.client.cache import Forgetting, RecallCache, cache_key

    answer = [{"id": "mem_1", "content": "secret", "confidence": 0.97,
               "confidence_category": "high", "activation": 0.8, "state": "consolidated",
               "tags": [], "decay_rate": 0.0}]
    with RecallCache.default() as cache:
        key = cache_key("localhost:1", "notes", "cue", {})
        assert cache.put(key, "localhost:1", "notes", "cue", answer,
                         Forgetting(exponent=0.1, floor=0.2, scale_s=86_400.0))
        assert cache.error is None
        files = assert_private_tree(isolated_env / "cache")
    assert files


def test_tune_set_keeps_the_client_config_private(umask022, server: EngramServer,
                                                  isolated_env: Path) -> None:
    config = isolated_env / "config" / "config.toml"
    first = run_cli(server, "tune", "--set", "client.batch=500")
    assert first.exit_code == 0, first.output
    assert_private_tree(isolated_env / "config")
    # A file the user made 0600 to hold a key stays so when tune rewrites it.
    config.write_text('[client]\napi_key = "k-123"\nbatch = 500\n')
    os.chmod(config, 0o600)
    again = run_cli(server, "tune", "--set", "client.batch=400")
    assert again.exit_code == 0, again.output
    assert mode(config) == 0o600
    assert 'api_key = "k-123"' in config.read_text()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_the_helpers_make_exact_modes_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    from engram_cli.files import append_private, create_private, private_dir, write_atomic

    old = os.umask(umask)
    try:
        d = private_dir(tmp_path / "a" / "b")
        write_atomic(d / "x.json", b"{}")
        with append_private(d / "log") as f:
            f.write(b"line\n")
        create_private(d / "db")
    finally:
        os.umask(old)
    assert_private_tree(d)
    assert (d / "x.json").read_bytes() == b"{}"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_a_store_in_another_users_directory_gets_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Its owner may rename or replace any file in it, the database among them, whatever
    the files' own modes."""
    data = tmp_path / "their-dir"
    data.mkdir(mode=0o700)
    os.chown(data, 65534, 65534)
    with caplog.at_level(logging.WARNING, logger="engram.server"):
        srv = EngramServer(ServeOptions(data_dir=data, port=0))
        srv.stop(grace=0.1)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("belongs to another user (uid 65534)" in line for line in lines), lines


def test_a_world_readable_store_gets_a_warning_naming_the_fix(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "open-store"
    data.mkdir()
    (data / "engram.db").touch()
    os.chmod(data, 0o755)
    os.chmod(data / "engram.db", 0o644)
    with caplog.at_level(logging.WARNING, logger="engram.server"):
        srv = EngramServer(ServeOptions(data_dir=data, port=0))
        srv.stop(grace=0.1)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1, lines
    assert str(data / "engram.db") in lines[0]
    assert f"chmod -R go-rwx {data}" in lines[0]
    assert mode(data) == 0o755  # a warning, not a silent change of the user's directory


def test_a_private_store_gets_no_warning(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engram.server"):
        srv = EngramServer(ServeOptions(data_dir=tmp_path / "fresh", port=0))
        srv.stop(grace=0.1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- keys ----------------------------------------------------------------------------------


KEY = "engram_key_private_test_0123456789abcdefghijklmnopqrstuvwxyz"


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.parametrize("how", ["env", "flag", "file"])
def test_a_detached_server_gets_its_keys_without_a_command_line(umask022, tmp_path: Path,
                                                                how: str) -> None:
    port = free_port()
    data = tmp_path / "bg"
    args = ["serve", "--detach", "--port", str(port), "--data-dir", str(data)]
    env = {"ENGRAM_SERVER_KEYS": ""}
    if how == "env":
        env["ENGRAM_SERVER_KEYS"] = KEY
    elif how == "flag":
        args += ["--require-key", KEY]
    else:
        key_file = tmp_path / "keys"
        key_file.write_text(f"# the server's key, for every space\n{KEY} *\n")
        os.chmod(key_file, 0o600)
        args += ["--key-file", str(key_file)]
    started = engram_proc(*args, env=env)
    assert started.returncode == 0, started.stderr
    address = f"127.0.0.1:{port}"
    try:
        # The port answers a moment before the server writes server.json.
        wait_for(lambda: (data / "server.json").exists())
        pid = orjson.loads((data / "server.json").read_bytes())["pid"]
        cmdline = _cmdline(pid)
        assert "serve" in cmdline and KEY not in cmdline, cmdline
        if how == "flag":
            assert "--require-key puts the key on the command line" in started.stderr
            assert "ENGRAM_SERVER_KEYS" in started.stderr
        else:
            assert "Warning" not in started.stderr
        with stubs(address) as (stub, _):
            with pytest.raises(grpc.RpcError) as refused:
                remember(stub, "no key")
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        stopped = engram_proc("--server", address, "stop", env={"ENGRAM_API_KEY": KEY})
    assert stopped.returncode == 0, stopped.stderr
    log = (data / "server.log").read_text()
    assert KEY not in log
    assert_private_tree(data)


# -- space ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["sec\n", "notes\n", "ab", "Notes", "a b c"])
def test_a_space_id_must_match_in_full(server: EngramServer, space: str) -> None:
    with stubs(server.address) as (stub, _):
        for call in (lambda: remember(stub, "x", space=space),
                     lambda: recall(stub, "x", space=space)):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, space
        remember(stub, "x", space="sec")  # the same name without the newline is fine


def test_the_import_refuses_a_space_with_a_newline_before_connecting(runner, tmp_path) -> None:
    from engram_cli.cli.main import app

    path = write_jsonl(tmp_path / "a.jsonl", records(2))
    result = runner.invoke(app, ["--server", "127.0.0.1:1", "import", str(path),
                                 "--space", "sec\n"])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and "space" in result.output


def test_the_listeners_of_a_port_and_their_owners_are_read_from_the_tcp_tables(
        tmp_path: Path) -> None:
    from engram_cli.client.autostart import listener_uids

    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode\n"
        "   0: 0100007F:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "  1001        0 4242 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:C384 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "  1002        0 4243 1 0000000000000000 100 0 0 10 0\n"
        "   2: 0100007F:C383 0100007F:9C40 01 00000000:00000000 00:00000000 00000000"
        "  1003        0 4244 1 0000000000000000 100 0 0 10 0\n")
    assert listener_uids(50051, (str(table),)) == {1001}  # LISTEN on 0xC383 only
    assert listener_uids(50053, (str(table),)) == set()
    sock = __import__("socket").socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert os.geteuid() in listener_uids(sock.getsockname()[1])  # this machine's
    finally:
        sock.close()


@pytest.mark.parametrize("owner", ["another", "me", "root"])
def test_only_another_users_listener_at_the_default_port_is_refused(tmp_path: Path,
                                                                     owner: str) -> None:
    """The rule, from a table as /proc writes it (the listener itself needs root: below)."""
    from engram_cli.client.autostart import check_owner
    from engram_cli.errors import ServerUnavailable

    uid = {"another": os.geteuid() + 1, "me": os.geteuid(), "root": 0}[owner]
    table = tmp_path / "tcp6"
    table.write_text(
        "  sl  local_address                         remote_address                        st"
        " tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000000000000000000001000000:C383 00000000000000000000000000000000:0000 0A"
        f" 00000000:00000000 00:00000000 00000000 {uid:5d}        0 4242 1 0 100 0 0 10 0\n")
    if owner == "another":
        with pytest.raises(ServerUnavailable, match=f"another user's process \\(uid {uid}\\)"):
            check_owner("localhost:50051", (str(table),))
    else:
        check_owner("localhost:50051", (str(table),))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another user")
def test_the_default_port_held_by_another_user_gets_nothing(tmp_path: Path) -> None:
    """Anyone may take a free port first: a client that finds another user's server at
    the embedded default's address would send it every memory and key. Refused, said."""
    import subprocess
    import sys

    port = free_port()
    squatter = subprocess.Popen(
        [sys.executable, "-c", "import os, socket, sys, time\n"
         "os.setuid(65534)\n"
         "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
         "print('up', flush=True); time.sleep(60)", str(port)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == "up\n"
        env = {"ENGRAM_DEFAULT_PORT": str(port), "ENGRAM_DATA_DIR": str(tmp_path / "d")}
        done = engram_proc("import", "-", env=env, input='{"content": "a secret"}\n')
        assert done.returncode == 1, done.stderr
        assert "is served by another user's process (uid 65534)" in done.stderr
        assert "ENGRAM_DEFAULT_PORT=PORT" in done.stderr
    finally:
        squatter.kill()
        squatter.wait()
        if squatter.stdout is not None:
            squatter.stdout.close()


def test_stop_signals_only_the_process_that_holds_the_port(tmp_path: Path) -> None:
    """`engram stop` killed whatever pid the server at the address named: another user's
    server (or a container's, whose pids are not ours) could have it kill any process of
    the user's. The pid must hold the listening socket."""
    import subprocess
    import sys
    from concurrent import futures

    from engram_cli.rpc import ext, ext_svc

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    class Liar(ext_svc.ExtensionServiceServicer):
        def ServerInfo(self, request, context):
            return ext.ServerInfoResponse(pid=bystander.pid)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ext_svc.add_ExtensionServiceServicer_to_server(Liar(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        done = engram_proc("--server", f"127.0.0.1:{port}", "stop")
        assert done.returncode == 1, done.stderr
        assert f"says its pid is {bystander.pid}, but that process does not hold the port" \
            in done.stderr
        assert bystander.poll() is None  # still running
    finally:
        server.stop(None)
        bystander.kill()
        bystander.wait()
