"""`engram stop`: stop the server at --server (one on this machine)."""

from __future__ import annotations

import os
import signal
import time

import typer

from engram_cli.cli.common import globals_of, handle_errors
from engram_cli.errors import EngramError, UsageError


@handle_errors
def stop(
    ctx: typer.Context,
    timeout: float = typer.Option(15.0, "--timeout", metavar="SECONDS",
                                  help="How long to wait for a clean exit."),
) -> None:
    """Stop the Engram server at --server (default: the embedded one on localhost:50051).

    Example: engram stop
    """
    from engram_cli.client.api import EngramClient
    from engram_cli.client.autostart import is_listening
    from engram_cli.config import is_local, is_multi_endpoint

    conn = globals_of(ctx).connection()
    if is_multi_endpoint(conn.server):
        raise UsageError(f"--server {conn.server} names several servers",
                         "engram stop stops one: name it with --server HOST:PORT")
    if not is_local(conn.server):
        raise EngramError(f"{conn.server} is not on this machine",
                          "stop a remote server where it runs")
    if not is_listening(conn.server):
        typer.echo(f"no server running at {conn.server}")
        return
    with EngramClient(conn, autostart=False) as client:
        pid = client.server_info().pid
    from engram_cli.client.autostart import holds_port
    from engram_cli.config import UNIX_SCHEMES, split_address

    tcp = not conn.server.startswith(UNIX_SCHEMES)
    if tcp and holds_port(pid, split_address(conn.server)[1]) is False:
        # Any server may answer any pid: signal only the process that holds the port.
        raise EngramError(f"the server at {conn.server} says its pid is {pid}, but that "
                          "process does not hold the port: not stopping it",
                          "is this server an engram one of yours? stop it where it runs")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            typer.echo(f"stopped the server at {conn.server} (pid {pid})")
            return
        time.sleep(0.05)
    raise EngramError(f"the server at {conn.server} (pid {pid}) did not stop within "
                      f"{timeout:.0f} s", f"kill it with `kill {pid}`")


def register(app: typer.Typer) -> None:
    app.command()(stop)
