"""`engram serve`: run our Engram-compatible server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from engram_cli.cli.common import handle_errors


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(50051, "--port", min=0, max=65535,
                             help="Port (0: any free port; the chosen one is printed)."),
    data_dir: Path = typer.Option(None, "--data-dir", metavar="DIR",
                                  help="Store directory (env: ENGRAM_DATA_DIR; default: the "
                                  "user data dir)."),
    detach: bool = typer.Option(False, "--detach", help="Start in the background and return."),
    idle_timeout: float = typer.Option(0.0, "--idle-timeout", metavar="SECONDS", min=0,
                                       help="Stop after this long without requests (0: never)."),
    api_key: list[str] = typer.Option(None, "--require-key", metavar="KEY",
                                      help="Require this API key (repeatable) "
                                      "(env: ENGRAM_SERVER_KEYS, comma-separated)."),
) -> None:
    """Serve engram.v1 (plus our batch and settings RPCs, health and reflection).

    Example: engram serve --port 50051 --data-dir ./engram-data

    Memories without an id get one derived from their content (the same memory sent twice
    is stored once); a memory with an existing id replaces it. SIGINT/SIGTERM stop it
    cleanly (in-flight calls finish, exit 0).
    """
    from engram_cli import config

    directory = data_dir or config.data_dir()
    keys = tuple(api_key or ()) + tuple(
        k for k in os.environ.get("ENGRAM_SERVER_KEYS", "").split(",") if k)
    if detach:
        from engram_cli.client.autostart import start_background_server

        extra: tuple[str, ...] = tuple(a for k in keys for a in ("--require-key", k))
        if port == 0:
            raise typer.BadParameter("--detach needs a fixed --port", param_hint="--port")
        start_background_server(directory, host, port, idle_timeout, extra)
        typer.echo(f"engram server running on {host}:{port} (data: {directory})")
        return

    import logging

    from engram_cli.server.app import ServeOptions, serve_forever

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(server: object) -> None:
        typer.echo(f"listening on {server.address} (data: {directory})")  # type: ignore[attr-defined]
        sys.stdout.flush()

    code = serve_forever(ServeOptions(data_dir=directory, host=host, port=port,
                                      idle_timeout_s=idle_timeout, api_keys=keys), ready)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(serve)
