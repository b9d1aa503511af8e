"""`engram restore`: put a backup in place as a stopped server's store (no server needed)."""

from __future__ import annotations

from pathlib import Path

import typer

from engram_cli.cli.common import EXIT_CODES_HELP, handle_errors, path_value


@handle_errors
def restore(
    src: Path = typer.Argument(..., parser=path_value, metavar="SRC",
                               help="A directory `engram backup` wrote."),
    data_dir: Path = typer.Option(None, "--data-dir", parser=path_value, metavar="DIR",
                                  help="The data directory to restore into (env "
                                  "ENGRAM_DATA_DIR; default: the embedded server's)."),
    force: bool = typer.Option(False, "--force",
                               help="Replace a store already there (it is moved aside into "
                               "DIR/pre-restore-<time>/)."),
) -> None:
    """Put a backup in place as a stopped server's store.

    The backup is checked again first; a data directory in use by a server is refused
    (stop it with `engram stop`). The vector index is rebuilt when the server starts.

    Example: engram stop && engram restore ~/engram-backups/2024-05-01 --force && engram serve
    """
    from engram_cli.config import data_dir as default_data_dir
    from engram_cli.engine.backup import BackupError
    from engram_cli.engine.backup import restore as do_restore

    target = (data_dir or default_data_dir()).expanduser()
    try:
        manifest = do_restore(src.expanduser(), target, force=force)
    except OSError as exc:
        raise BackupError(f"cannot restore {src} into {target}: "
                          f"{exc.strerror or exc}") from None
    typer.echo(f"restored {manifest.get('memories', 0):,} memories and "
               f"{manifest.get('associations', 0):,} associations from {src} into {target}")
    if manifest.get("moved_aside"):
        typer.echo(f"the store that was there is in {manifest['moved_aside']}")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(restore)
