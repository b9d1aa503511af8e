"""`engram forget`: suppress (reversible) or delete memories by id, from stdin or by cue."""

from __future__ import annotations

import sys

import typer

from engram_cli.cli.common import EXIT_CODES_HELP, globals_of, handle_errors
from engram_cli.cli.console import printable


@handle_errors
def forget(
    ctx: typer.Context,
    ids: list[str] = typer.Argument(None, metavar="ID...|-",
                                    help="Memory ids; - reads them from stdin (one a line, "
                                    "or JSON lines with an id)."),
    match: str = typer.Option(None, "--match", metavar="CUE",
                              help="Forget the memories this text cue recalls (no "
                              "spreading), instead of ids."),
    limit: int = typer.Option(100, "--limit", metavar="N", min=1,
                              help="With --match: at most N memories."),
    delete: bool = typer.Option(False, "--delete",
                                help="Delete for good (default: suppress, which storing the "
                                "memory again undoes)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --delete."),
    space: str = typer.Option(None, "--space", metavar="NAME", help="Memory space."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per memory."),
) -> None:
    """Forget memories by id or by cue: suppress them (reversible) or delete them.

    Prints each id with what happened to it, and drops this space's answers from the
    local recall cache.

    Example: engram forget mem_1f2e --delete --yes && engram forget --match "old phone number"
    """
    from engram_cli.cli.common import fail
    from engram_cli.client import admin
    from engram_cli.client.api import EngramClient
    from engram_cli.client.cache import invalidate_space

    wanted = list(ids or [])
    if match is not None and wanted:
        raise fail("give ids or --match, not both", code=2)
    if wanted == ["-"]:
        wanted = admin.read_ids(sys.stdin)
    elif "-" in wanted:
        raise fail("- (stdin) cannot be mixed with ids", code=2)
    elif "" in wanted:
        raise fail("an empty id", "name memories by their ids, e.g. mem_1f2e", code=2)
    if match is None and not wanted:
        raise fail("nothing to forget", "name ids, - for stdin, or --match CUE", code=2)
    conn = globals_of(ctx).connection(space)
    contents: dict[str, str] = {}
    with EngramClient(conn) as client:
        if match is not None:
            found = admin.match(client, conn.space, match, limit)
            contents = dict(found)
            wanted = [mid for mid, _ in found]
            if not wanted:
                typer.echo(f"no memory matches {match!r}", err=True)
                return
        if delete and not yes:
            shown = ", ".join(wanted[:5]) + (f" and {len(wanted) - 5} more"
                                             if len(wanted) > 5 else "")
            if ids == ["-"]:
                raise fail("the ids came from stdin, so there is no way to ask",
                           "pass --yes to delete them for good", code=2)
            if not typer.confirm(f"Delete {len(wanted)} memories for good ({shown})?",
                                 err=True):
                raise fail("nothing deleted", "pass --yes to delete without asking")
        try:
            done = admin.forget(client, conn.space, wanted, delete)
        finally:
            invalidate_space(conn.server, conn.space)
    verb = "deleted" if delete else "suppressed"
    if as_json:
        import orjson

        for f in done:
            typer.echo(orjson.dumps({"id": f.id, verb: bool(f.affected)}).decode())
    else:
        for f in done:
            what = verb if f.affected else "not found (or already forgotten)"
            snippet = contents.get(f.id, "")
            typer.echo(f"{printable(f.id, one_line=True)}\t{what}"
                       + (f"\t{printable(snippet[:60], one_line=True)}" if snippet else ""))
    hit = sum(1 for f in done if f.affected)
    typer.echo(f"{verb} {hit} of {len(done)} memories", err=True)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(forget)
