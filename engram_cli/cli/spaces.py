"""`engram spaces`: the memory spaces of a server with their counts; `spaces drop`."""

from __future__ import annotations

import typer

from engram_cli.cli.common import EXIT_CODES_HELP, fail, globals_of, handle_errors
from engram_cli.cli.console import printable

spaces_app = typer.Typer(
    name="spaces",
    help="List the memory spaces with their counts; `spaces drop NAME` deletes one.\n\n"
         "Example: engram spaces --json | jq '.[].name'",
    invoke_without_command=True,
    epilog=EXIT_CODES_HELP,
)


@spaces_app.callback()
@handle_errors
def spaces(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List the memory spaces with their counts; `spaces drop NAME` deletes one.

    Example: engram spaces --json | jq '.[].name'
    """
    if ctx.invoked_subcommand is not None:
        return
    from engram_cli.client import admin
    from engram_cli.client.api import EngramClient

    with EngramClient(globals_of(ctx).connection()) as client:
        found = admin.list_spaces(client)
    if as_json:
        import orjson

        typer.echo(orjson.dumps(found).decode())
        return
    if not found:
        typer.echo("no spaces", err=True)
        return
    # Another server's names are not checked as ours are.
    names = [printable(s["name"], one_line=True) for s in found]
    width = max(len("space"), *(len(name) for name in names))
    typer.echo(f"{'space':<{width}}  {'memories':>10}  {'suppressed':>10}  "
               f"{'associations':>12}  {'dim':>5}")
    for name, s in zip(names, found, strict=True):
        typer.echo(f"{name:<{width}}  {s['memories']:>10,}  {s['suppressed']:>10,}  "
                   f"{s['associations']:>12,}  {s['dimension'] or '-':>5}")


@spaces_app.command("drop")
@handle_errors
def drop(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The space to delete."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Delete a space: every memory and association in it, for good.

    Example: engram spaces drop scratch --yes
    """
    from engram_cli.cli.import_cmd import _check_space
    from engram_cli.client import admin
    from engram_cli.client.api import EngramClient
    from engram_cli.client.cache import invalidate_space

    _check_space(name)
    conn = globals_of(ctx).connection()
    with EngramClient(conn) as client:
        known = {s["name"]: s for s in admin.list_spaces(client)}
        if name not in known:
            raise fail(f"no space {name!r} at {conn.server}",
                       "see `engram spaces` for the names")
        n = known[name]["memories"] + known[name]["suppressed"]
        if not yes and not typer.confirm(
                f"Delete space {name!r} and its {n:,} memories for good?", err=True):
            raise fail("nothing deleted", "pass --yes to drop without asking")
        deleted = admin.drop_space(client, name)
    invalidate_space(conn.server, name)
    typer.echo(f"dropped space {name} ({deleted:,} memories deleted)")


def register(app: typer.Typer) -> None:
    app.add_typer(spaces_app)
