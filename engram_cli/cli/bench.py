"""`engram bench`: the seed's performance table, measured against any Engram server."""

from __future__ import annotations

import sys

import typer

from engram_cli.cli.common import globals_of, handle_errors

ROW_NAMES = "batching, pooling, caching, streaming, sweep"


@handle_errors
def bench(
    ctx: typer.Context,
    server: str = typer.Option(None, "--server", metavar="HOST:PORT",
                               help="Server to measure (overrides the global --server)."),
    quick: bool = typer.Option(False, "--quick",
                               help="Fewer rounds and operations: a smoke run in seconds."),
    rounds: int = typer.Option(None, "--rounds", min=1, metavar="N",
                               help="Counted rounds per row (default 7; 3 with --quick)."),
    as_json: bool = typer.Option(False, "--json", help="Print every figure as one JSON "
                                 "object."),
    only: list[str] = typer.Option(None, "--only", metavar="NAME",
                                   help=f"Run only this row (repeatable): {ROW_NAMES}."),
) -> None:
    """Measure batching, pooling, caching and streaming against a server, before and after.

    Each row runs both variants side by side (interleaved rounds, medians), beside the
    seed's published figures; a batch-size sweep follows.

    Works in a scratch memory space (bench-<hex>) that is deleted afterwards, even on
    Ctrl-C; other spaces are never touched. Against a server without engram-cli's
    extensions it uses engram.v1 only and says which rows it could not run.

    Exit codes: 0 done (rows the server cannot run are listed); 1 failed (server
    unreachable, scratch space not removed); 2 usage error; 130 interrupted.

    Example: engram bench --quick --server localhost:50051
    """
    import orjson

    from engram_cli.benchsuite import BenchPlan, run_bench
    from engram_cli.benchsuite.report import render, to_json
    from engram_cli.client.autostart import ensure_server
    from engram_cli.errors import EngramError

    g = globals_of(ctx)
    # bench's own --server goes through the same resolver (a grpcs:// one speaks TLS).
    conn = g.settings(server=server).connection
    ensure_server(conn)
    plan = BenchPlan.quick_plan(rounds) if quick else BenchPlan.full(rounds)

    def progress(message: str) -> None:
        if sys.stderr.isatty():
            typer.echo(f"engram bench: {message}", err=True)

    result = run_bench(conn, plan, only or (), progress)
    if as_json:
        typer.echo(orjson.dumps(to_json(result)).decode())
    else:
        from engram_cli.cli.console import stdout_console

        render(result, stdout_console())
    if result.cleanup.get("method") == "failed":
        raise EngramError(f"could not remove scratch space {result.space}: "
                          f"{result.cleanup.get('error')}",
                          "remove it by hand (it holds only benchmark memories)")


def register(app: typer.Typer) -> None:
    """Adds the `bench` command to the app."""
    app.command()(bench)
