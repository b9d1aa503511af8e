"""`engram stats`: what the server holds (Introspect), as a table or JSON."""

from __future__ import annotations

import math
from typing import Any

import typer

from engram_cli.cli.common import globals_of, handle_errors
from engram_cli.cli.console import stdout_console
from engram_cli.client.recall import iso_utc


@handle_errors
def stats(
    ctx: typer.Context,
    space: str = typer.Option(None, "--space", metavar="NAME",
                              help="One space (default: the global --space, ENGRAM_SPACE "
                              "or the config file's space; else all spaces)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show memory counts, averages and health (Introspect).

    Example: engram stats --json
    """
    import orjson

    from engram_cli.client.api import EngramClient

    conn = globals_of(ctx).connection(space)
    space = conn.space
    with EngramClient(conn) as client:
        resp = client.introspect(space)
    st = resp.statistics
    data = {
        "server": conn.server,
        "space": space or "(all)",
        "total_memories": st.total_memories,
        "total_associations": st.total_associations,
        "avg_confidence": round(st.avg_confidence, 4),
        "avg_activation": round(st.avg_activation, 4),
        "by_type": dict(st.by_type),
        "healthy": resp.health.healthy,
        "health": resp.health.summary,
        "metrics": {k: resp.metrics[k] for k in sorted(resp.metrics)},
    }
    vector = {k.removeprefix("vector_index."): v for k, v in resp.metrics.items()
              if k.startswith("vector_index.")}
    if vector:  # our server: the vector index and its embedding model
        models = [k.removeprefix("model.") for k in vector if k.startswith("model.")]
        data["vector_index"] = {"model": models[0] if models else None,
                                **{k: _count(vector.get(k, 0)) for k in
                                   ("dim", "indexed", "pending", "fresh", "bytes",
                                    "embedded")}}
    if st.HasField("oldest_memory") and st.oldest_memory.seconds:
        data["oldest_memory"] = _when(st.oldest_memory)
        data["newest_memory"] = _when(st.newest_memory)
    if as_json:
        typer.echo(orjson.dumps(data).decode())
        return
    from rich.table import Table

    console = stdout_console()
    table = Table(title=f"engram stats: {conn.server}", show_header=False)
    # Names whole (a model's name makes one some 45 characters long) while 12 columns are
    # left for the value; values wrap instead.
    table.add_column("what", style="bold", no_wrap=True, max_width=max(10, console.width - 19))
    table.add_column("value", overflow="fold")
    for key in ("space", "total_memories", "total_associations", "avg_confidence",
                "avg_activation", "oldest_memory", "newest_memory", "health"):
        if key in data:
            table.add_row(key, "?" if data[key] is None else str(data[key]))
    for key, value in data["by_type"].items():
        table.add_row(f"type {key}", str(value))
    for key, value in data["metrics"].items():
        table.add_row(key, _shown(key, value))
    console.print(table)


def _when(ts: Any) -> str | None:
    """A Timestamp as RFC 3339, or None when it is not a valid one (a server sent it)."""
    try:
        return str(ts.ToJsonString())
    except ValueError:
        return None


def _count(value: float) -> int | None:
    return int(value) if math.isfinite(value) else None


def _shown(key: str, value: float) -> str:
    """A metric for people: times (`..._at`, unix seconds) in ISO 8601, counts whole."""
    if key.endswith("_at"):
        if value <= 0:
            return "never"
        return iso_utc(value, timespec="seconds") or f"{value:g} (not a time)"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}"


def register(app: typer.Typer) -> None:
    app.command()(stats)
