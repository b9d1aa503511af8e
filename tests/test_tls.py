"""TLS and mutual TLS end to end: certificates made here (tests/tls_support.py), real
servers with them, every command that opens a channel, and one clear line with exit 1 for
each way a certificate can be wrong."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engram_cli.cli.main import app
from engram_cli.client.settings import resolve_client_settings
from engram_cli.config import Connection, TlsOptions
from engram_cli.errors import SettingsError
from engram_cli.server.app import EngramServer, ServeOptions
from engram_cli.server.tls import ServerTls, exposure_warnings, resolve_server_tls
from tests.conftest import ServerProcess
from tests.tls_support import Issued, Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server_tls(cert: Issued, client_ca: Path | None = None) -> ServerTls:
    return ServerTls(str(cert.cert), str(cert.key), str(client_ca) if client_ca else "")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Callable[..., EngramServer]]:
    """Factory: an in-process server with TLS from these files, on a free port."""
    started: list[EngramServer] = []

    def start(cert: Issued, client_ca: Path | None = None) -> EngramServer:
        srv = EngramServer(ServeOptions(data_dir=tmp_path / f"tls-data-{len(started)}",
                                        port=0, tls=_server_tls(cert, client_ca)))
        srv.start()
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop(grace=1.0)


def _invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def _mtls_flags(pki: Pki) -> list[str]:
    return ["--ca-cert", str(pki.ca), "--client-cert", str(pki.client.cert),
            "--client-key", str(pki.client.key)]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engram_cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def _one_error_line(stderr: str) -> str:
    """The whole of stderr is one `Error: ...` line (no gRPC log, no traceback)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_every_command_round_trips_over_tls(pki: Pki, tls_server: Callable[..., EngramServer],
                                            tmp_path: Path, mutual: bool) -> None:
    srv = tls_server(pki.server, pki.ca if mutual else None)
    flags = ["--server", f"grpcs://{srv.address}",
             *(_mtls_flags(pki) if mutual else ["--ca-cert", str(pki.ca)])]
    data = tmp_path / "m.jsonl"
    data.write_text('{"content": "espresso after lunch"}\n{"content": "tea at five"}\n')

    imported = _invoke(*flags, "import", str(data))
    assert imported.exit_code == 0, imported.output  # type: ignore[attr-defined]
    assert "imported 2" in imported.output  # type: ignore[attr-defined]
    recalled = _invoke(*flags, "recall", "espresso", "--format", "json", "--no-cache")
    assert recalled.exit_code == 0, recalled.output  # type: ignore[attr-defined]
    assert "espresso after lunch" in recalled.stdout  # type: ignore[attr-defined]
    stats = _invoke(*flags, "stats", "--json")
    assert stats.exit_code == 0, stats.output  # type: ignore[attr-defined]
    assert '"total_memories":2' in stats.stdout  # type: ignore[attr-defined]
    tuned = _invoke(*flags, "tune", "--set", "max_hops=2")
    assert tuned.exit_code == 0, tuned.output  # type: ignore[attr-defined]
    assert srv.config.settings.max_hops == 2
    shown = _invoke(*flags, "tune", "--show")
    assert shown.exit_code == 0 and "max_hops" in shown.stdout, shown.output  # type: ignore[attr-defined]
    consolidated = _invoke(*flags, "consolidate")
    assert consolidated.exit_code == 0, consolidated.output  # type: ignore[attr-defined]
    assert "consolidated 2 memories" in consolidated.stdout  # type: ignore[attr-defined]
    # bench's own --server, a grpcs:// one, as the global option would be.
    bench = _invoke(*flags[2:], "bench", "--quick", "--rounds", "1", "--only", "pooling",
                    "--server", f"grpcs://{srv.address}")
    assert bench.exit_code == 0, bench.output  # type: ignore[attr-defined]
    assert "pooling" in bench.stdout  # type: ignore[attr-defined]


def test_stop_and_stdin_import_over_mutual_tls(pki: Pki, tmp_path: Path,
                                               server_process: Callable[..., ServerProcess]
                                               ) -> None:
    """A real `engram serve --tls-cert --tls-key --client-ca` process, from the environment
    on the client's side: import from stdin, recall, then `engram stop` over mutual TLS."""
    sp = server_process(tmp_path / "d", "--tls-cert", str(pki.server.cert), "--tls-key",
                        str(pki.server.key), "--client-ca", str(pki.ca))
    env = {"ENGRAM_SERVER": f"localhost:{sp.address.rsplit(':', 1)[1]}", "ENGRAM_TLS": "1",
           "ENGRAM_CA_CERT": str(pki.ca), "ENGRAM_CLIENT_CERT": str(pki.client.cert),
           "ENGRAM_CLIENT_KEY": str(pki.client.key)}
    imported = subprocess.run([sys.executable, "-m", "engram_cli", "import", "-"],
                              input='{"content": "the kettle is blue"}\n', text=True,
                              capture_output=True, timeout=60, env={**os.environ, **env})
    assert imported.returncode == 0, imported.stderr
    recalled = _run("recall", "kettle", "--format", "json", env=env)
    assert recalled.returncode == 0 and "the kettle is blue" in recalled.stdout, recalled.stderr
    # The server is this test's child: reaped here, or `stop` would see it linger.
    stop = subprocess.Popen([sys.executable, "-m", "engram_cli", "stop"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **env})
    assert sp.proc.wait(30) == 0
    out, err = stop.communicate(timeout=30)
    assert stop.returncode == 0, err
    assert "stopped the server" in out


# -- one line per certificate problem, exit 1 ------------------------------------------------


def test_unknown_ca_names_the_ca_file(pki: Pki, tls_server: Callable[..., EngramServer],
                                      tmp_path: Path) -> None:
    srv = tls_server(pki.server)
    data = tmp_path / "m.jsonl"
    data.write_text('{"content": "x"}\n')
    done = _run("--server", f"grpcs://{srv.address}", "--ca-cert", str(pki.other_ca),
                "import", str(data))
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert f"not signed by a CA in {pki.other_ca}" in line
    assert "--ca-cert" in line


def test_name_mismatch(pki: Pki, tls_server: Callable[..., EngramServer]) -> None:
    srv = tls_server(pki.wrong_name)
    done = _run("--server", srv.address, "--tls", "--ca-cert", str(pki.ca), "stats")
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert "is not valid for '127.0.0.1'" in line and "--tls-server-name" in line
    # The name the certificate carries, given: accepted.
    ok = _run("--server", srv.address, "--ca-cert", str(pki.ca), "--tls-server-name",
              "db.example.com", "stats", "--json")
    assert ok.returncode == 0, ok.stderr


def test_server_name_that_the_certificate_lacks(pki: Pki,
                                                tls_server: Callable[..., EngramServer]) -> None:
    srv = tls_server(pki.server)
    done = _run("--server", f"grpcs://{srv.address}", "--ca-cert", str(pki.ca),
                "--tls-server-name", "db.example.com", "recall", "x")
    assert done.returncode == 1
    assert "not valid for 'db.example.com'" in _one_error_line(done.stderr)


def test_expired_server_certificate(pki: Pki, tls_server: Callable[..., EngramServer]) -> None:
    srv = tls_server(pki.expired)
    done = _run("--server", f"grpcs://{srv.address}", "--ca-cert", str(pki.ca), "stats")
    assert done.returncode == 1
    assert f"the certificate of {srv.address} has expired" in _one_error_line(done.stderr)


def test_missing_client_certificate(pki: Pki, tls_server: Callable[..., EngramServer]) -> None:
    srv = tls_server(pki.server, pki.ca)
    done = _run("--server", f"grpcs://{srv.address}", "--ca-cert", str(pki.ca), "stats")
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert "requires a client certificate" in line and "--client-cert" in line


@pytest.mark.parametrize("which", ["stranger", "expired_client"])
def test_client_certificate_refused(pki: Pki, tls_server: Callable[..., EngramServer],
                                    which: str) -> None:
    """One from another CA, one from the right CA but expired: the server hangs up."""
    srv = tls_server(pki.server, pki.ca)
    cert: Issued = getattr(pki, which)
    done = _run("--server", f"grpcs://{srv.address}", "--ca-cert", str(pki.ca),
                "--client-cert", str(cert.cert), "--client-key", str(cert.key),
                "recall", "x")
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert f"refused the client certificate {cert.cert}" in line and "expired" in line


def test_plaintext_and_tls_mixed_up(pki: Pki, tls_server: Callable[..., EngramServer],
                                    server: EngramServer) -> None:
    srv = tls_server(pki.server)
    plain_to_tls = _run("--server", srv.address, "stats")
    assert plain_to_tls.returncode == 1
    assert "speaks TLS and this connection does not" in _one_error_line(plain_to_tls.stderr)
    tls_to_plain = _run("--server", f"grpcs://{server.address}", "--ca-cert", str(pki.ca),
                        "stats")
    assert tls_to_plain.returncode == 1
    assert "does not speak TLS" in _one_error_line(tls_to_plain.stderr)


@pytest.mark.parametrize("problem", ["missing", "not_pem", "key_mismatch"])
def test_unusable_files_are_named_before_connecting(pki: Pki, tmp_path: Path,
                                                    tls_server: Callable[..., EngramServer],
                                                    problem: str) -> None:
    srv = tls_server(pki.server, pki.ca)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    ca, key = str(pki.ca), str(pki.client.key)
    expected = {"missing": f"cannot read the CA certificate {tmp_path / 'nope.pem'}: "
                "No such file or directory",
                "not_pem": f"the CA certificate {junk} holds no PEM certificate",
                "key_mismatch": f"the client key {pki.stranger.key} does not go with the "
                f"client certificate {pki.client.cert}"}[problem]
    if problem == "missing":
        ca = str(tmp_path / "nope.pem")
    elif problem == "not_pem":
        ca = str(junk)
    else:
        key = str(pki.stranger.key)
    result = _invoke("--server", srv.address, "--ca-cert", ca, "--client-cert",
                     str(pki.client.cert), "--client-key", key, "stats")
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    assert expected in result.stderr, result.stderr  # type: ignore[attr-defined]
    assert len(result.stderr.strip().splitlines()) == 1  # type: ignore[attr-defined]


def test_a_client_certificate_needs_its_key(pki: Pki) -> None:
    result = _invoke("--client-cert", str(pki.client.cert), "stats")
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert "--client-cert is set but --client-key is not" in result.stderr  # type: ignore[attr-defined]


# -- settings: flag > environment > config file > default -------------------------------------


def test_tls_settings_precedence(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[client]\nserver = "db.example.com:443"\nca_cert = "/etc/ca.pem"\n'
                      'tls_server_name = "engram.internal"\n')
    from_file = resolve_client_settings({}, env={}, path=config)
    assert from_file.tls and from_file.origins["tls"] == "config"
    assert from_file.connection.tls == TlsOptions(ca_cert="/etc/ca.pem",
                                                  server_name="engram.internal")
    from_env = resolve_client_settings({}, env={"ENGRAM_CA_CERT": "/env/ca.pem"}, path=config)
    assert from_env.ca_cert == "/env/ca.pem" and from_env.origins["ca_cert"] == "env"
    from_flag = resolve_client_settings({"ca_cert": "/flag/ca.pem"},
                                        env={"ENGRAM_CA_CERT": "/env/ca.pem"}, path=config)
    assert from_flag.ca_cert == "/flag/ca.pem"
    # A `tls = false` said on purpose wins over the certificate settings ...
    off = resolve_client_settings({}, env={"ENGRAM_TLS": "0"}, path=config)
    assert not off.tls and off.connection.tls is None
    # ... but not over a grpcs:// address.
    scheme = resolve_client_settings({"server": "grpcs://db.example.com:443"},
                                     env={"ENGRAM_TLS": "0"}, path=tmp_path / "none.toml")
    assert scheme.tls and scheme.server == "db.example.com:443"
    plain = resolve_client_settings({}, env={}, path=tmp_path / "none.toml")
    assert not plain.tls and plain.connection.tls is None
    home = resolve_client_settings({"client_cert": "~/c.pem", "client_key": "~/c.key"},
                                   env={}, path=tmp_path / "none.toml")
    assert home.client_cert == os.path.expanduser("~/c.pem")


def test_half_a_client_certificate_in_the_environment_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ENGRAM_CLIENT_KEY is set but --client-cert"):
        resolve_client_settings({}, env={"ENGRAM_CLIENT_KEY": "k.pem"},
                                path=tmp_path / "none.toml")


def test_autostart_never_starts_a_plaintext_server_for_tls() -> None:
    assert Connection().is_default_target
    assert not Connection(tls=TlsOptions()).is_default_target


# -- the server ---------------------------------------------------------------------------


def test_serve_reads_tls_from_environment_and_config_file(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "engram.toml").write_text(
        f'[tls]\ncert = "{pki.server.cert}"\nkey = "{pki.server.key}"\n')
    from_file = resolve_server_tls({}, tmp_path / "engram.toml", env={})
    assert from_file == ServerTls(str(pki.server.cert), str(pki.server.key), "",
                                  from_file.where if from_file else None)
    from_env = resolve_server_tls({}, tmp_path / "engram.toml",
                                  env={"ENGRAM_TLS_CERT": "/env/c.pem",
                                       "ENGRAM_CLIENT_CA": "/env/ca.pem"})
    assert from_env is not None and from_env.cert == "/env/c.pem" and from_env.mutual
    from_flag = resolve_server_tls({"cert": "/flag/c.pem"}, tmp_path / "engram.toml",
                                   env={"ENGRAM_TLS_CERT": "/env/c.pem"})
    assert from_flag is not None and from_flag.cert == "/flag/c.pem"
    assert resolve_server_tls({}, tmp_path / "absent.toml", env={}) is None
    with pytest.raises(SettingsError, match="needs both --tls-cert and --tls-key"):
        resolve_server_tls({"client_ca": str(pki.ca)}, tmp_path / "absent.toml", env={})


def test_serve_with_tls_from_the_environment(pki: Pki, tmp_path: Path,
                                             server_process: Callable[..., ServerProcess],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_TLS_CERT", str(pki.server.cert))
    monkeypatch.setenv("ENGRAM_TLS_KEY", str(pki.server.key))
    sp = server_process(tmp_path / "d")
    done = _run("--server", sp.address, "--ca-cert", str(pki.ca), "stats", "--json")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("flags,expected,code", [
    (["--tls-cert", "{missing}", "--tls-key", "{key}"],
     "cannot read the server certificate {missing} (--tls-cert): No such file", 1),
    (["--tls-cert", "{cert}", "--tls-key", "{wrong_key}"],
     "the server key {wrong_key} does not go with the server certificate {cert}", 1),
    (["--tls-cert", "{cert}", "--tls-key", "{cert}"],
     "the server key {cert} (--tls-key) holds no PEM private key", 1),
    (["--tls-cert", "{cert}"], "--tls-cert is set but TLS needs both", 2),
])
def test_serve_refuses_unusable_tls_files(pki: Pki, tmp_path: Path, flags: list[str],
                                          expected: str, code: int) -> None:
    names = {"missing": str(tmp_path / "missing.pem"), "cert": str(pki.server.cert),
             "key": str(pki.server.key), "wrong_key": str(pki.client.key)}
    done = _run("serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
                *[f.format(**names) for f in flags])
    assert done.returncode == code, done.stderr
    assert expected.format(**names) in _one_error_line(done.stderr)


def test_serve_beyond_loopback_warns_of_each_risk(tmp_path: Path,
                                                  server_process: Callable[..., ServerProcess]
                                                  ) -> None:
    sp = server_process(tmp_path / "d", "--host", "0.0.0.0")
    sp.terminate()
    assert sp.proc.stderr is not None
    err = sp.proc.stderr.read()
    warnings = re.findall(r"^Warning: .*$", err, re.M)
    assert len(warnings) == 2, err
    assert "plaintext (no TLS)" in warnings[0] and "--tls-cert" in warnings[0]
    assert "anyone who can reach the port can read" in warnings[1]


def test_exposure_warnings(pki: Pki) -> None:
    tls = _server_tls(pki.server)
    mtls = _server_tls(pki.server, pki.ca)
    assert exposure_warnings("127.0.0.1", None, False) == []
    assert exposure_warnings("localhost", None, False) == []
    assert exposure_warnings("::1", None, False) == []
    assert len(exposure_warnings("0.0.0.0", None, False)) == 2
    assert len(exposure_warnings("10.1.2.3", None, True)) == 1  # a key, no TLS
    assert len(exposure_warnings("0.0.0.0", tls, False)) == 1  # TLS, nobody checked
    assert exposure_warnings("0.0.0.0", tls, True) == []
    assert exposure_warnings("::", mtls, False) == []
