"""`engram tune`: named tuning profiles applied live to the server and to the client
config, single settings, a reset, the current settings, and deployment config files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from engram_cli.cli.common import EXIT_CODES_HELP, globals_of, handle_errors, path_value
from engram_cli.cli.console import stdout_console


@handle_errors
def tune(
    ctx: typer.Context,
    profile: str = typer.Option(None, "--profile", "-p", metavar="NAME",
                                help="Apply this profile (over the defaults)."),
    list_: bool = typer.Option(False, "--list", help="List the profiles."),
    show: bool = typer.Option(False, "--show",
                              help="Show the current settings and where each came from."),
    set_: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                   help="Change one setting (repeatable; more KEY=VALUE may "
                                   "follow). Client keys: client.KEY."),
    assignments: list[str] = typer.Argument(None, metavar="KEY=VALUE",
                                            help="More settings for --set."),
    reset: bool = typer.Option(False, "--reset", help="Back to the defaults."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Show what would change; change nothing anywhere."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    write_config: Path = typer.Option(None, "--write-config", parser=path_value, metavar="FILE",
                                      help="With --profile: write its server settings as an "
                                      "Engram TOML config file instead (for servers without "
                                      "our settings RPC); nothing else changes. With "
                                      "--dry-run: print it."),
) -> None:
    """Tune the server and this client for low latency, high throughput and more.

    Example: engram tune --profile low-latency --dry-run

    A profile sets the server's engine (live, persisted to its engram.toml) and this
    client's defaults for import and recall (the client table of <config dir>/config.toml),
    both starting from the defaults, so the result is the same whatever was set before.
    Profiles: `engram tune --list`; user profiles in <config dir>/profiles/NAME.toml
    override shipped ones.
    """
    from engram_cli.errors import UsageError

    pairs = [*(set_ or []), *(assignments or [])]
    if assignments and not set_:
        raise UsageError(f"unexpected argument {assignments[0]!r}",
                         "settings go after --set: engram tune --set max_hops=2")
    actions = [name for name, on in (("--list", list_), ("--show", show),
                                     ("--profile", profile is not None), ("--set", bool(pairs)),
                                     ("--reset", reset)) if on]
    if write_config is not None and (profile is None or reset or show or list_):
        raise UsageError("--write-config needs --profile NAME (and takes --set, --dry-run "
                         "and --json only)")
    if not actions:
        raise UsageError("nothing to do", "give --profile NAME, --set KEY=VALUE, --reset, "
                         "--show or --list (see engram tune --help)")
    if (list_ or show) and len(actions) > 1:
        raise UsageError(f"{actions[0]} does not go with {actions[1]}")

    if list_:
        _list(as_json)
        return
    if write_config is not None:
        _write_config(profile, pairs, write_config, as_json, dry_run)
        return

    from engram_cli.tuning import profiles

    chosen = profiles.load(profile) if profile is not None else None
    from engram_cli.tuning.apply import split_assignments

    server_values, client_values = split_assignments(pairs)
    settings = globals_of(ctx).settings()
    with _remote(settings.connection) as remote:
        if show:
            _show(remote, settings, as_json)
            return
        from engram_cli.tuning.apply import tune as apply_tune

        result = apply_tune(remote, profile=chosen, server_values=server_values,
                            client_values=client_values, reset=reset, dry_run=dry_run)
    _print_result(result, as_json)


@contextlib.contextmanager
def _remote(conn: Any) -> Iterator[Any]:
    """The settings RPCs of the server at `conn`."""
    from engram_cli.client.api import EngramClient
    from engram_cli.client.settings_rpc import RemoteSettings

    with EngramClient(conn, autostart=conn.autostart) as client:
        yield RemoteSettings(client)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    return repr(value)


def _list(as_json: bool) -> None:
    import orjson

    from engram_cli.errors import EngramError
    from engram_cli.tuning import profiles

    entries = []
    for name, (path, origin) in profiles.available().items():
        try:
            description = profiles.load_file(path, origin).description
        except EngramError as exc:  # one broken user file must not hide the others
            description = f"invalid: {exc}"
        entries.append({"name": name, "description": description, "origin": origin,
                        "path": str(path)})
    if as_json:
        typer.echo(orjson.dumps(entries).decode())
        return
    width = max((len(e["name"]) for e in entries), default=0)
    for e in entries:
        mark = " (user)" if e["origin"] == "user" else ""
        typer.echo(f"{e['name']:<{width}}  {e['description']}{mark}")


def _write_config(name: str, pairs: list[str], path: Path, as_json: bool, dry_run: bool
                  ) -> None:
    import dataclasses

    import orjson

    from engram_cli.engine.settings import validate
    from engram_cli.errors import UsageError
    from engram_cli.tuning import profiles
    from engram_cli.tuning.apply import split_assignments
    from engram_cli.tuning.deployment import write_deployment_config

    chosen = profiles.load(name)
    server_values, client_values = split_assignments(pairs)
    if client_values:
        raise UsageError("--write-config writes server settings only",
                         f"drop client.{next(iter(client_values))}")
    if server_values:
        chosen = dataclasses.replace(chosen, server={**chosen.server,
                                                     **validate(server_values)})
    doc, text = write_deployment_config(chosen, path, dry_run=dry_run)
    if as_json:
        typer.echo(orjson.dumps({"profile": name, "path": str(path), "written": not dry_run,
                                 "config": doc}).decode())
    elif dry_run:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {path} (profile {name}): [persistence] for any Engram server, "
                   "[engine] for engram serve")


def _show(remote: Any, settings: Any, as_json: bool) -> None:
    import orjson

    from engram_cli.tuning.apply import show

    result = show(remote, settings)
    if as_json:
        typer.echo(orjson.dumps(result.to_json()).decode())
        return
    from rich.table import Table

    console = stdout_console()
    # Descriptions only where they fit beside the values; --json always has them.
    columns = ["setting", "value", "default", "source"]
    if console.width >= 120:
        columns.append("description")
    for title, rows, path in (("server", result.server, result.server_config),
                              ("client", result.client, result.client_config)):
        table = Table(title=f"{title} settings ({path})", title_justify="left")
        for column in columns:
            table.add_column(column, **_column(column, console.width - 40))
        for r in rows:
            source = r.source + (" (restart)" if r.source == "pending" else "")
            cells = [r.key, _fmt(r.value), _fmt(r.default), source, r.description]
            table.add_row(*cells[:len(columns)],
                          style="dim" if r.source == "default" else None)
        console.print(table)


def _column(name: str, room: int) -> dict[str, Any]:
    """A table column's options: a setting's name whole while `room` columns allow it (the
    other columns wrap instead), every other column wrapping."""
    if name == "setting":
        return {"no_wrap": True, "max_width": max(12, room)}
    return {"overflow": "fold"}


def _print_result(result: Any, as_json: bool) -> None:
    import orjson

    if as_json:
        typer.echo(orjson.dumps(result.to_json()).decode())
        return
    from rich.table import Table

    console = stdout_console()
    what = f"profile {result.profile}" if result.profile else "settings"
    table = Table(title=f"{what}{' (dry run)' if result.dry_run else ''}",
                  title_justify="left")
    for column in ("setting", "before", "after"):
        table.add_column(column, **_column(column, console.width - 30))
    for r in result.rows:
        after = _fmt(r.after) + (" (restart)" if r.restart_required and r.changed else "")
        table.add_row(r.key, _fmt(r.before), after, style=None if r.changed else "dim")
    console.print(table)
    n = len(result.changed)
    if result.dry_run:
        console.print(f"dry run: {n} setting(s) would change; nothing was changed")
    else:
        console.print(f"{n} setting(s) changed (server: {result.server_config}; "
                      f"client: {result.client_config})")
    if result.restart_required:
        console.print("restart the server for: " + ", ".join(result.restart_required)
                      + " (they take effect at its next start)")


def register(app: typer.Typer) -> None:
    """Adds the `tune` command to the app."""
    app.command("tune", epilog=EXIT_CODES_HELP + " An unknown profile or an invalid setting "
                "exits 2; a server without the settings RPC exits 1 (use --write-config)."
                )(tune)
