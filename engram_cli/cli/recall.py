"""`engram recall` (first version): one cue, results as a table or JSON."""

from __future__ import annotations

import typer

from engram_cli.cli.common import globals_of, handle_errors, stdout_is_terminal


@handle_errors
def recall(
    ctx: typer.Context,
    cue: str = typer.Argument(..., help="What to recall (text)."),
    limit: int = typer.Option(10, "--limit", min=1, help="At most this many results."),
    space: str = typer.Option(None, "--space", metavar="NAME", help="Memory space."),
    fmt: str = typer.Option(None, "--format", help="table | json (default: table on a "
                            "terminal, json otherwise)."),
) -> None:
    """Recall memories that match a cue.

    Example: engram recall "morning coffee" --limit 5
    """
    import orjson

    from engram_cli.client.api import EngramClient
    from engram_cli.errors import UsageError

    if not cue.strip():
        raise UsageError("the cue is empty", "give some words to recall by")
    conn = globals_of(ctx).connection(space)
    with EngramClient(conn) as client:
        resp = client.recall_text(conn.space, cue, limit)
    results = [
        {"id": m.id, "content": m.content, "confidence": round(m.confidence.value, 4),
         "activation": round(m.activation, 4), "tags": list(m.tags)}
        for m in resp.memories
    ]
    if (fmt or ("table" if stdout_is_terminal() else "json")) == "json":
        typer.echo(orjson.dumps({"cue": cue, "cached": False, "results": results}).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"recall: {cue}")
    for col in ("#", "content", "confidence", "activation", "id"):
        table.add_column(col)
    for i, r in enumerate(results, 1):
        table.add_row(str(i), r["content"], f"{r['confidence']:.2f}", f"{r['activation']:.2f}",
                      r["id"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command()(recall)
