"""`engram serve`: run our Engram-compatible server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from engram_cli.cli.common import handle_errors, path_value

KEYS_ENV = "ENGRAM_SERVER_KEYS"

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
    data_dir: Path = typer.Option(None, "--data-dir", parser=path_value, metavar="DIR",
                                  help="Store directory (env: ENGRAM_DATA_DIR; default: the "
                                  "user data dir)."),
    detach: bool = typer.Option(False, "--detach", help="Start in the background and return."),
    idle_timeout: float = typer.Option(0.0, "--idle-timeout", metavar="SECONDS", min=0,
                                       help="Stop after this long without requests (0: never)."),
    api_key: list[str] = typer.Option(None, "--require-key", metavar="KEY",
                                      help="Require this API key (repeatable); such a key may "
                                      "use every space. Other local users can read a command "
                                      "line: prefer ENGRAM_SERVER_KEYS (comma-separated) or "
                                      "--key-file."),
    key_file: Path = typer.Option(None, "--key-file", parser=path_value, metavar="FILE",
                                  help="Require an API key from FILE, each scoped to spaces: "
                                  "one `KEY space1,space2` or `KEY *` per line; the file must "
                                  "be private (chmod 600); SIGHUP rereads it "
                                  "(env: ENGRAM_SERVER_KEY_FILE)."),
    log_file: Path = typer.Option(None, "--log-file", parser=path_value, metavar="FILE",
                                  help="Log to FILE, rotated at 10 MiB with 3 old files kept "
                                  "(FILE.1 ... FILE.3); stdout and stderr go there too. "
                                  "A --detach server logs to <data dir>/server.log so."),
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

    Example: engram serve --detach --port 50051 --key-file ./engram-keys

    After editing the key file, `kill -HUP <pid>` makes the server reread it.

    Example: engram serve --log-file ./engram-data/server.log

    Example (TLS on every interface): engram serve --host 0.0.0.0 --tls-cert server.pem
    --tls-key server.key --client-ca ca.pem

    Memories without an id get one derived from their content (the same memory sent twice
    is stored once); a memory with an existing id replaces it. SIGINT/SIGTERM stop it
    cleanly (in-flight calls finish, exit 0).
    """
    from engram_cli import config
    from engram_cli.server.tls import exposure_warnings

    keys = _keys(api_key or [])
    directory = data_dir or config.data_dir()
    if port is None:
        port = config.default_port()
    if not detach:
        _check_port_free(host, port)
    _check_data_dir(directory, "--data-dir" if data_dir else "the data dir")
    if api_key:
        typer.echo("Warning: --require-key puts the key on the command line, where other "
                   "local users can read it (ps, /proc): set ENGRAM_SERVER_KEYS or use "
                   "--key-file FILE instead", err=True)
    if key_file is None and os.environ.get("ENGRAM_SERVER_KEY_FILE"):
        key_file = Path(os.environ["ENGRAM_SERVER_KEY_FILE"])
    if key_file is not None:
        from engram_cli.server.keys import read_key_file

        key_file = key_file.absolute()
        read_key_file(key_file)  # a bad or open file is one line now, not in a log later
    tls = _tls(tls_cert, tls_key, client_ca, directory)
    for warning in exposure_warnings(host, tls, bool(keys) or key_file is not None):
        typer.echo(f"Warning: {warning}", err=True)
    if detach:
        from engram_cli.client.autostart import start_background_server

        if port == 0:
            raise typer.BadParameter("--detach needs a fixed --port", param_hint="--port")
        # The keys reach the server through its environment (readable by this user
        # only), never its command line; file paths are no secret.
        extra: tuple[str, ...] = ("--key-file", str(key_file)) if key_file else ()
        if tls is not None:
            extra += ("--tls-cert", os.path.abspath(tls.cert),
                      "--tls-key", os.path.abspath(tls.key))
            if tls.client_ca:
                extra += ("--client-ca", os.path.abspath(tls.client_ca))
        start_background_server(directory, host, port, idle_timeout, extra,
                                env={KEYS_ENV: _join_keys(keys)})
        how = f" with {tls.describe()}" if tls else ""
        typer.echo(f"engram server running on {host}:{port}{how} (data: {directory})")
        return

    import logging

    from engram_cli.cli import common
    from engram_cli.server.app import ServeOptions, serve_forever

    if log_file is not None:
        from engram_cli.server.logfile import RotatingLog

        try:
            handler: logging.Handler = RotatingLog(log_file)
        except OSError as exc:
            from engram_cli.errors import UsageError

            raise UsageError(f"cannot write the log file {log_file}: {exc.strerror}",
                             "point --log-file at a writable path") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=common.LOG_LEVEL or logging.INFO, handlers=[handler],
                        format=common.LOG_FORMAT)
    if common.LOG_LEVEL != logging.DEBUG:
        # faiss logs each build it tries to load at INFO, failures included ("Could not
        # load library with AVX512 support ... ModuleNotFoundError"): six alarming lines
        # at every start for a library that loaded. Its warnings still show.
        logging.getLogger("faiss").setLevel(logging.WARNING)

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
                                      idle_timeout_s=idle_timeout, api_keys=keys,
                                      key_file=key_file, tls=tls), ready)
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


def _join_keys(keys: tuple[str, ...]) -> str:
    for key in keys:
        if "," in key:
            from engram_cli.errors import UsageError

            raise UsageError("an API key contains ',', which separates the keys of "
                             f"{KEYS_ENV}", "use keys without commas")
    return ",".join(keys)


def _same_file(a: object, b: object) -> bool:
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return False
    import stat

    return stat.S_ISREG(sa.st_mode) and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _keys(given: list[str]) -> tuple[str, ...]:
    """--require-key's keys and ENGRAM_SERVER_KEYS's (comma-separated; empty entries, as
    a trailing comma makes, are skipped). A key that cannot be one is a usage error: an
    empty --require-key "$UNSET_VARIABLE" would otherwise start a server that checks none."""
    from engram_cli.contract import key_error
    from engram_cli.errors import UsageError

    for key in given:
        if key_error(key):
            raise UsageError(f"--require-key: {key_error(key)}",
                             "give the key, or set ENGRAM_SERVER_KEYS, or use --key-file")
    listed = os.environ.get(KEYS_ENV, "")
    env = [k.strip() for k in listed.split(",") if k.strip()]
    for key in env:
        if key_error(key):
            raise UsageError(f"{KEYS_ENV}: {key_error(key)}",
                             "set comma-separated keys, e.g. KEY1,KEY2")
    if listed.strip() and not env:
        raise UsageError(f"{KEYS_ENV} is set but holds no key",
                         "set comma-separated keys, or unset it")
    return tuple(given) + tuple(env)


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
    from engram_cli.files import private_dir

    try:
        private_dir(directory, own=False)
    except OSError as exc:
        raise UsageError(f"{where} {directory} cannot be created: {exc.strerror}",
                         "point --data-dir (or ENGRAM_DATA_DIR) at a writable directory"
                         ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{where} {directory} is not writable",
                         "point --data-dir (or ENGRAM_DATA_DIR) at a writable directory")


def register(app: typer.Typer) -> None:
    app.command()(serve)
