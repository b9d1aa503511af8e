"""API keys scoped to spaces: the key file, PERMISSION_DENIED outside a key's spaces on
every RPC that names a space, and rereading the file on SIGHUP (a real subprocess)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engram_cli.errors import SettingsError
from engram_cli.rpc import ext, pb
from engram_cli.server.app import EngramServer, ServeOptions
from engram_cli.server.keys import KeyRing, read_key_file
from tests.rpc_helpers import stubs

TEAM = "engram_key_team_" + "t" * 24
OPS = "engram_key_ops_" + "o" * 24
LEGACY = "engram_key_legacy_" + "l" * 20


def _key_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    try:
        call(*args, **kwargs)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture
def scoped_server(tmp_path: Path):
    keys = _key_file(tmp_path / "keys", f"# team A\n{TEAM} notes, journal\n\n{OPS} *\n")
    srv = EngramServer(ServeOptions(data_dir=tmp_path / "d", port=0, api_keys=(LEGACY,),
                                    key_file=keys))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop(grace=1)


def test_a_scoped_key_is_denied_outside_its_spaces_and_works_inside(scoped_server) -> None:
    with stubs(scoped_server.address) as (stub, ext_stub):
        team = _auth(TEAM)
        memory = pb.Memory(content="the meeting moved to Tuesday")
        ok = stub.Remember(pb.RememberRequest(memory_space_id="notes", memory=memory),
                           metadata=team)
        assert ok.memory_id
        found = stub.Recall(pb.RecallRequest(
            memory_space_id="notes", cue=pb.Cue(semantic=pb.SemanticCue(query="meeting")),
            max_results=5), metadata=team)
        assert [m.id for m in found.memories] == [ok.memory_id]
        # Every RPC that names a space is checked, ours included; the space is named.
        outside = [
            (stub.Remember, pb.RememberRequest(memory_space_id="secrets", memory=memory)),
            (stub.Remember, pb.RememberRequest(memory=memory)),  # "" is the default space
            (stub.Recall, pb.RecallRequest(memory_space_id="secrets", cue=pb.Cue(
                semantic=pb.SemanticCue(query="x")))),
            (stub.Forget, pb.ForgetRequest(memory_space_id="secrets", memory_id="m")),
            (stub.Recognize, pb.RecognizeRequest(memory_space_id="secrets", content="x")),
            (stub.Consolidate, pb.ConsolidateRequest(memory_space_id="secrets")),
            (stub.Associate, pb.AssociateRequest(memory_space_id="secrets")),
            (stub.Introspect, pb.IntrospectRequest(memory_space_id="secrets")),
            (ext_stub.BatchRemember, ext.BatchRememberRequest(memory_space_id="secrets",
                                                              memories=[memory])),
            (ext_stub.DropSpace, ext.DropSpaceRequest(memory_space_id="secrets")),
        ]
        for call, request in outside:
            code, details = _code(call, request, metadata=team)
            assert code == grpc.StatusCode.PERMISSION_DENIED, (call, details)
            space = request.memory_space_id or "default"
            assert f"memory space '{space}'" in details, details
        # Server-wide calls need a key granted every space; reading server info does not.
        # A backup copies every space.
        for call, request in ((stub.Introspect, pb.IntrospectRequest()),
                              (ext_stub.ApplySettings, ext.ApplySettingsRequest()),
                              (ext_stub.Backup, ext.BackupRequest(destination="/tmp/x"))):
            code, details = _code(call, request, metadata=team)
            assert code == grpc.StatusCode.PERMISSION_DENIED, details
            assert "every space ('*')" in details
        assert ext_stub.ServerInfo(ext.ServerInfoRequest(), metadata=team).pid == os.getpid()
        assert _code(stub.Introspect, pb.IntrospectRequest(memory_space_id="journal"),
                     metadata=team)[0] == grpc.StatusCode.OK
        # A bad space id is still INVALID_ARGUMENT, not a permission question.
        assert _code(stub.Recall, pb.RecallRequest(memory_space_id="NO!"),
                     metadata=team)[0] == grpc.StatusCode.INVALID_ARGUMENT
        # `*` in the file and --require-key / ENGRAM_SERVER_KEYS keys use every space.
        for key in (OPS, LEGACY):
            assert stub.Remember(pb.RememberRequest(memory_space_id="secrets", memory=memory),
                                 metadata=_auth(key)).memory_id
            assert _code(stub.Introspect, pb.IntrospectRequest(),
                         metadata=_auth(key))[0] == grpc.StatusCode.OK
        # The list of spaces shows a scoped key its own spaces only.
        listed = ext_stub.ListSpaces(ext.ListSpacesRequest(), metadata=team)
        assert [sp.name for sp in listed.spaces] == ["notes"]
        everything = ext_stub.ListSpaces(ext.ListSpacesRequest(), metadata=_auth(OPS))
        assert {sp.name for sp in everything.spaces} >= {"notes", "secrets"}
        # An unknown key is still UNAUTHENTICATED; health stays open.
        assert _code(stub.Recall, pb.RecallRequest(memory_space_id="notes"),
                     metadata=_auth(TEAM + "x"))[0] == grpc.StatusCode.UNAUTHENTICATED
        channel = grpc.insecure_channel(scoped_server.address)
        try:
            assert health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        finally:
            channel.close()


def test_streams_stop_at_the_first_request_outside_the_key(scoped_server) -> None:
    """As upstream does: the first refused item ends the stream with its status."""
    with stubs(scoped_server.address) as (stub, _):
        requests = [pb.RememberRequest(memory_space_id=space, memory=pb.Memory(content=text))
                    for space, text in (("notes", "one"), ("journal", "two"),
                                        ("secrets", "three"), ("notes", "four"))]
        answers = []
        with pytest.raises(grpc.RpcError) as err:
            for answer in stub.StreamingRemember(iter(requests), metadata=_auth(TEAM)):
                answers.append(answer)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "memory space 'secrets'" in (err.value.details() or "")
        assert len(answers) <= 2 and all(a.memory_id for a in answers)
        cues = [pb.RecallRequest(memory_space_id=s, cue=pb.Cue(semantic=pb.SemanticCue(
            query="one"))) for s in ("notes", "secrets")]
        with pytest.raises(grpc.RpcError) as err:
            list(stub.StreamingRecall(iter(cues), metadata=_auth(TEAM)))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # The stored ones are there; the one after the refused one is not.
        total = stub.Introspect(pb.IntrospectRequest(memory_space_id="notes"),
                                metadata=_auth(OPS)).statistics.total_memories
        assert total <= 1


def test_key_file_format_and_permissions(tmp_path: Path) -> None:
    good = _key_file(tmp_path / "k", f"{TEAM}  notes,journal  # team\n{OPS} *\n")
    ring = KeyRing.build((LEGACY,), read_key_file(good))
    assert ring.grants(TEAM) == frozenset({"notes", "journal"})
    assert ring.grants(OPS) == frozenset({"*"})
    assert ring.grants(LEGACY) == frozenset({"*"})
    assert ring.grants("") is None and ring.grants(TEAM[:-1]) is None
    for text, says in ((f"{TEAM}\n", "without spaces"), (f"{TEAM} Notes\n", "not a space id"),
                       (f"{TEAM} notes\n{TEAM} journal\n", "listed twice"),
                       ("kéy notes\n", "printable ASCII")):
        with pytest.raises(SettingsError, match=says) as err:
            read_key_file(_key_file(tmp_path / "bad", text))
        assert f"{tmp_path / 'bad'}:" in str(err.value)  # file:line
    with pytest.raises(SettingsError, match="readable or writable by others") as err:
        read_key_file(_key_file(tmp_path / "open", f"{TEAM} notes\n", mode=0o644))
    assert "chmod 600" in (err.value.hint or "")


def test_serve_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    import subprocess
    import sys

    keys = _key_file(tmp_path / "keys", f"{TEAM} notes\n", mode=0o640)
    proc = subprocess.run(
        [sys.executable, "-m", "engram_cli", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "d"), "--key-file", str(keys)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: key file ") and "chmod 600" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "env", "says"), [
    (["--require-key", ""], {}, "--require-key: an empty key"),
    (["--require-key", "two words"], {}, "--require-key: a key is printable ASCII"),
    ([], {"ENGRAM_SERVER_KEYS": " , "}, "ENGRAM_SERVER_KEYS is set but holds no key"),
    ([], {"ENGRAM_SERVER_KEYS": f"{TEAM},clé"}, "ENGRAM_SERVER_KEYS: a key is printable"),
])
def test_serve_refuses_a_key_that_cannot_be_one(tmp_path: Path, args, env, says) -> None:
    """`--require-key "$UNSET_VARIABLE"` started a server that checked no key at all."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "engram_cli", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "d"), *args],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")} | env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"Error: {says}"), proc.stderr
    assert not (tmp_path / "d").exists()


def _wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sighup_rereads_the_key_file(tmp_path: Path, server_process) -> None:
    keys = _key_file(tmp_path / "keys", f"{TEAM} notes\n")
    sp = server_process(tmp_path / "d", "--key-file", str(keys))
    remember = pb.RememberRequest(memory_space_id="journal", memory=pb.Memory(content="x"))
    with stubs(sp.address) as (stub, _):
        assert _code(stub.Remember, remember, metadata=_auth(TEAM))[0] == \
            grpc.StatusCode.PERMISSION_DENIED
        _key_file(keys, f"{TEAM} notes,journal\n")
        os.kill(sp.proc.pid, signal.SIGHUP)
        assert _wait_for(lambda: _code(stub.Remember, remember, metadata=_auth(TEAM))[0]
                         == grpc.StatusCode.OK)
        # A file turned invalid or open to others is not taken: the keys in use stay.
        notes = pb.RememberRequest(memory_space_id="notes", memory=pb.Memory(content="y"))
        for text, mode in ((f"{TEAM} journal\n", 0o644), (f"{TEAM}\n", 0o600)):
            _key_file(keys, text, mode)
            os.kill(sp.proc.pid, signal.SIGHUP)
            time.sleep(1.0)  # the server rereads within 0.2 s of the signal
            for request in (remember, notes):
                assert _code(stub.Remember, request, metadata=_auth(TEAM))[0] == \
                    grpc.StatusCode.OK
        # A key removed from the file stops working at the next SIGHUP.
        _key_file(keys, f"{OPS} *\n")
        os.kill(sp.proc.pid, signal.SIGHUP)
        assert _wait_for(lambda: _code(stub.Remember, remember, metadata=_auth(TEAM))[0]
                         == grpc.StatusCode.UNAUTHENTICATED)
        assert _code(stub.Remember, remember, metadata=_auth(OPS))[0] == grpc.StatusCode.OK
        # A file emptied of keys revokes them all; it does not open the server.
        _key_file(keys, "# nobody for now\n")
        os.kill(sp.proc.pid, signal.SIGHUP)
        assert _wait_for(lambda: _code(stub.Remember, remember, metadata=_auth(OPS))[0]
                         == grpc.StatusCode.UNAUTHENTICATED)
        assert _code(stub.Remember, remember)[0] == grpc.StatusCode.UNAUTHENTICATED
    assert sp.terminate() == 0
    log = sp.proc.stderr.read() if sp.proc.stderr else ""
    assert "key file not reloaded" in log and "chmod 600" in log
    assert "Traceback" not in log


def test_the_cli_says_which_space_the_key_lacks(scoped_server, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from engram_cli.cli.main import app

    path = tmp_path / "in.jsonl"
    path.write_text('{"content": "a note"}\n')
    runner = CliRunner()
    base = ["--server", scoped_server.address, "--api-key", TEAM]
    ok = runner.invoke(app, [*base, "--space", "notes", "import", str(path)])
    assert ok.exit_code == 0, ok.output
    for args in (["--space", "secrets", "import", str(path)],
                 ["--space", "secrets", "recall", "note", "--no-cache"]):
        denied = runner.invoke(app, [*base, *args])
        assert denied.exit_code == 1, denied.output
        assert "may not use memory space 'secrets'" in denied.output
        assert "use a space the key grants" in denied.output
        assert "Traceback" not in denied.output
