"""`engram serve`: run our Engram-compatible server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from engram_cli.cli.common import handle_errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engram_cli.server.tls import ServerTls


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST",
                             help="Address to listen on."),
    port: int = typer.Option(None, "--port", metavar="PORT", min=0, max=65535,
                             help="Port (0: any free port; the chosen one is printed; "
                             "default 50051, or ENGRAM_DEFAULT_PORT)."),
    data_dir: Path = typer.Option(None, "--data-dir", metavar="DIR",
                                  help="Store directory (env: ENGRAM_DATA_DIR; default: the "
                                  "user data dir)."),
    detach: bool = typer.Option(False, "--detach", help="Start in the background and return."),
    idle_timeout: float = typer.Option(0.0, "--idle-timeout", metavar="SECONDS", min=0,
                                       help="Stop after this long without requests (0: never)."),
    api_key: list[str] = typer.Option(None, "--require-key", metavar="KEY",
                                      help="Require this API key (repeatable) "
                                      "(env: ENGRAM_SERVER_KEYS, comma-separated)."),
    tls_cert: str = typer.Option(None, "--tls-cert", metavar="FILE",
                                 help="Serve TLS with this certificate (chain), PEM; with "
                                 "--tls-key (env: ENGRAM_TLS_CERT; engram.toml [tls] cert)."),
    tls_key: str = typer.Option(None, "--tls-key", metavar="FILE",
                                help="The certificate's private key, PEM, unencrypted "
                                "(env: ENGRAM_TLS_KEY; engram.toml [tls] key)."),
    client_ca: str = typer.Option(None, "--client-ca", metavar="FILE",
                                  help="Mutual TLS: accept only clients with a certificate "
                                  "signed by this CA, PEM (env: ENGRAM_CLIENT_CA; "
                                  "engram.toml [tls] client_ca)."),
) -> None:
    """Serve engram.v1 (plus our batch and settings RPCs, health and reflection).

    Example: engram serve --port 50051 --data-dir ./engram-data

    Example (TLS on every interface): engram serve --host 0.0.0.0 --tls-cert server.pem
    --tls-key server.key --client-ca ca.pem

    Memories without an id get one derived from their content (the same memory sent twice
    is stored once); a memory with an existing id replaces it. SIGINT/SIGTERM stop it
    cleanly (in-flight calls finish, exit 0).
    """
    from engram_cli import config
    from engram_cli.server.tls import exposure_warnings

    directory = data_dir or config.data_dir()
    if port is None:
        port = config.default_port()
    if not detach:
        _check_port_free(host, port)
    _check_data_dir(directory, "--data-dir" if data_dir else "the data dir")
    keys = tuple(api_key or ()) + tuple(
        k for k in os.environ.get("ENGRAM_SERVER_KEYS", "").split(",") if k)
    tls = _tls(tls_cert, tls_key, client_ca, directory)
    for warning in exposure_warnings(host, tls, bool(keys)):
        typer.echo(f"Warning: {warning}", err=True)
    if detach:
        from engram_cli.client.autostart import start_background_server

        extra: tuple[str, ...] = tuple(a for k in keys for a in ("--require-key", k))
        if tls is not None:
            extra += ("--tls-cert", os.path.abspath(tls.cert),
                      "--tls-key", os.path.abspath(tls.key))
            if tls.client_ca:
                extra += ("--client-ca", os.path.abspath(tls.client_ca))
        if port == 0:
            raise typer.BadParameter("--detach needs a fixed --port", param_hint="--port")
        start_background_server(directory, host, port, idle_timeout, extra)
        how = f" with {tls.describe()}" if tls else ""
        typer.echo(f"engram server running on {host}:{port}{how} (data: {directory})")
        return

    import logging

    from engram_cli.cli import common
    from engram_cli.server.app import ServeOptions, serve_forever

    logging.basicConfig(level=common.LOG_LEVEL or logging.INFO, stream=sys.stderr,
                        format=common.LOG_FORMAT)

    # A background server's stdout and stderr are the same log file, where the log has
    # said "listening on" already: say it once.
    said_in_log = _same_file(sys.stdout, sys.stderr) and (common.LOG_LEVEL or logging.INFO
                                                          ) <= logging.INFO

    def ready(server: object) -> None:
        if said_in_log:
            return
        typer.echo(f"listening on {server.address}{server.security} "  # type: ignore[attr-defined]
                   f"(data: {directory})")
        sys.stdout.flush()

    code = serve_forever(ServeOptions(data_dir=directory, host=host, port=port,
                                      idle_timeout_s=idle_timeout, api_keys=keys, tls=tls),
                         ready)
    raise typer.Exit(code)


def _tls(cert: str | None, key: str | None, client_ca: str | None,
         directory: Path) -> ServerTls | None:
    """The TLS files (flag > environment > engram.toml [tls]), read and checked now: a bad
    one is one line before the store opens."""
    from engram_cli.server.tls import load, resolve_server_tls
    from engram_cli.tuning.server_config import CONFIG_NAME

    tls = resolve_server_tls({"cert": cert, "key": key, "client_ca": client_ca},
                             directory / CONFIG_NAME)
    if tls is not None:
        load(tls)
    return tls


def _same_file(a: object, b: object) -> bool:
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return False
    import stat

    return stat.S_ISREG(sa.st_mode) and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _check_port_free(host: str, port: int) -> None:
    """A busy port is our one line, before gRPC would log its own raw error about it."""
    import errno
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As gRPC binds: a port in TIME_WAIT (a server just killed) is free; only a
            # listener makes the bind fail.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return  # anything else is for the server's own bind to report
        from engram_cli.errors import EngramError

        raise EngramError(f"cannot listen on {host}:{port}: the port is in use",
                          "is another server on that port? pick another with --port") from None


def _check_data_dir(directory: Path, where: str) -> None:
    """One line, not a traceback, when the store cannot live in `directory`."""
    from engram_cli.errors import UsageError

    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{where} {directory} is not a directory",
                         "point --data-dir (or ENGRAM_DATA_DIR) at a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{where} {directory} cannot be created: {exc.strerror}",
                         "point --data-dir (or ENGRAM_DATA_DIR) at a writable directory"
                         ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{where} {directory} is not writable",
                         "point --data-dir (or ENGRAM_DATA_DIR) at a writable directory")


def register(app: typer.Typer) -> None:
    app.command()(serve)
