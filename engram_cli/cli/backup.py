"""`engram backup`: an online, verified copy of the server's whole store."""

from __future__ import annotations

from pathlib import Path

import typer

from engram_cli.cli.common import EXIT_CODES_HELP, globals_of, handle_errors, path_value


@handle_errors
def backup(
    ctx: typer.Context,
    dest: Path = typer.Argument(..., parser=path_value, metavar="DEST",
                                help="A new directory (it must not exist), on the server's "
                                "machine."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Copy the whole store into a new directory while the server keeps serving.

    The copy is one consistent snapshot (SQLite's online backup), checked with SQLite's
    integrity check and against the store's counts, and only then given its name:
    an interrupted backup leaves a hidden .DEST.partial-* directory, never DEST. The
    vector index is rebuilt from it on restore.

    Example: engram backup ~/engram-backups/$(date +%F)
    """
    from engram_cli.client import admin
    from engram_cli.client.api import EngramClient

    with EngramClient(globals_of(ctx).connection()) as client:
        resp = admin.backup(client, str(dest.expanduser().absolute()))
    data = {"path": resp.path, "memories": resp.memories,
            "associations": resp.associations, "bytes": resp.bytes, "seconds": resp.seconds}
    if as_json:
        import orjson

        typer.echo(orjson.dumps(data).decode())
        return
    typer.echo(f"backed up {resp.memories:,} memories and {resp.associations:,} associations "
               f"({resp.bytes / 1e6:,.1f} MB) to {resp.path} in {resp.seconds:.2f} s, verified")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(backup)
