"""`engram consolidate`: settle a space's memories now (engram.v1 Consolidate), rather
than waiting for the server's background pass."""

from __future__ import annotations

import typer

from engram_cli.cli.common import globals_of, handle_errors


@handle_errors
def consolidate(
    ctx: typer.Context,
    space: str = typer.Option(None, "--space", metavar="NAME",
                              help="The space to consolidate (default: the global --space, "
                              "ENGRAM_SPACE, the config file's space, else the default "
                              "space)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Consolidate a space's memories now (engram.v1 Consolidate).

    The server does this by itself every minute for memories stored at least five
    minutes ago; recall answers made only of consolidated, confident memories can be
    kept by the recall cache.

    Example: engram import examples/memories.jsonl && engram consolidate
    """
    import orjson

    from engram_cli.client.api import EngramClient
    from engram_cli.rpc import pb

    conn = globals_of(ctx).connection(space)
    with EngramClient(conn) as client:
        resp = client.call(client.stub.Consolidate,
                           pb.ConsolidateRequest(memory_space_id=conn.space), "Consolidate")
    data = {"space": conn.space or "default", "consolidated": resp.memories_consolidated,
            "new_associations": resp.new_associations}
    if as_json:
        typer.echo(orjson.dumps(data).decode())
        return
    typer.echo(f"consolidated {data['consolidated']:,} memories of space {data['space']} "
               f"({data['new_associations']:,} new associations)")


def register(app: typer.Typer) -> None:
    app.command()(consolidate)
