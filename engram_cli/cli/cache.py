"""`engram cache`: look into and empty the local recall cache (no server needed)."""

from __future__ import annotations

import typer

from engram_cli.cli.common import globals_of, handle_errors

cache_app = typer.Typer(
    name="cache",
    help="The local recall cache: stats and clear.\n\nExample: engram cache stats",
    no_args_is_help=True,
)


@cache_app.command("stats")
@handle_errors
def stats(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Entries, size, hits and misses of the recall cache.

    Example: engram cache stats --json | jq .hits
    """
    import orjson

    from engram_cli.client.cache import CachePolicy, RecallCache

    policy = CachePolicy.from_settings(globals_of(ctx).settings())
    with RecallCache.default(policy) as cache:
        st = cache.stats()
    data = st.as_dict()
    lookups = st.hits + st.misses
    data["hit_rate"] = round(st.hits / lookups, 4) if lookups else 0.0
    if as_json:
        typer.echo(orjson.dumps(data).decode())
        return
    typer.echo(f"path       {st.path}")
    typer.echo(f"entries    {st.entries}")
    typer.echo(f"size       {_mb(st.bytes)} of {_mb(st.max_bytes)}")
    typer.echo(f"hits       {st.hits}")
    typer.echo(f"misses     {st.misses}")
    typer.echo(f"hit rate   {data['hit_rate']:.1%}")
    typer.echo(f"evictions  {st.evictions}")
    for where, n in st.spaces.items():
        typer.echo(f"space      {where}: {n}")
    if cache.error:
        typer.echo(f"engram: the recall cache is not usable ({cache.error})", err=True)


@cache_app.command("clear")
@handle_errors
def clear(
    ctx: typer.Context,
    space: str = typer.Option(None, "--space", metavar="NAME",
                              help="Only this space's entries (of the --server in use)."),
) -> None:
    """Empty the recall cache: all of it, or one space (--space here, the global --space,
    ENGRAM_SPACE or the config file's space).

    Example: engram cache clear --space notes
    """
    from engram_cli.cli.import_cmd import _check_space
    from engram_cli.client.cache import CachePolicy, RecallCache

    settings = globals_of(ctx).settings(space=space)
    # The space comes from this flag, the global --space, ENGRAM_SPACE or the config file,
    # as everywhere; only with none of them is the whole cache cleared.
    _check_space(settings.space)
    with RecallCache.default(CachePolicy.from_settings(settings)) as cache:
        if not settings.space:
            n = cache.clear()
            typer.echo(f"cleared {n} cached answer(s)")
            return
        conn = settings.connection
        n = cache.invalidate(conn.server, conn.space)
        typer.echo(f"cleared {n} cached answer(s) of space {conn.space!r} on {conn.server}")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.2f} MB"


def register(app: typer.Typer) -> None:
    """Adds the `cache` command group to the app."""
    app.add_typer(cache_app, name="cache")
