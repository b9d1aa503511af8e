"""The `engram` Typer app: global options and command registration.

The executable starts in cli/entry.py, which answers the top-level help, --version and a
cached recall without importing this module (or Typer).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from engram_cli import __version__
from engram_cli.cli import (
    backup,
    bench,
    cache,
    consolidate,
    export,
    forget,
    import_cmd,
    recall,
    restore,
    serve,
    spaces,
    stats,
    stop,
    tune,
)
from engram_cli.cli.common import GlobalOptions, set_log_level
from engram_cli.cli.console import ABOUT, GLOBAL_HELP, flush_stdout, top_level_help


class _EngramGroup(TyperGroup):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        # The same text the entry module prints without Typer (`engram --help` lands
        # there; `engram --server X --help` and the tests' runner land here).
        formatter.write(top_level_help())


app = typer.Typer(
    name="engram",
    cls=_EngramGroup,
    help=ABOUT,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    # Plain help: rendering it with rich costs `engram CMD --help` more than the rest.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"engram {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    server: str = typer.Option(None, "--server", metavar="HOST:PORT",
                               help=GLOBAL_HELP["--server"]),
    space: str = typer.Option(None, "--space", metavar="NAME",
                              help=GLOBAL_HELP["--space"]),
    api_key: str = typer.Option(None, "--api-key", metavar="KEY",
                                help=GLOBAL_HELP["--api-key"]),
    no_autostart: bool = typer.Option(False, "--no-autostart",
                                      help=GLOBAL_HELP["--no-autostart"]),
    tls: bool = typer.Option(False, "--tls", help=GLOBAL_HELP["--tls"]),
    ca_cert: str = typer.Option(None, "--ca-cert", metavar="FILE",
                                help=GLOBAL_HELP["--ca-cert"]),
    client_cert: str = typer.Option(None, "--client-cert", metavar="FILE",
                                    help=GLOBAL_HELP["--client-cert"]),
    client_key: str = typer.Option(None, "--client-key", metavar="FILE",
                                   help=GLOBAL_HELP["--client-key"]),
    tls_server_name: str = typer.Option(None, "--tls-server-name", metavar="NAME",
                                        help=GLOBAL_HELP["--tls-server-name"]),
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help=GLOBAL_HELP["-V, --version"]),
    verbose: bool = typer.Option(False, "--verbose", help=GLOBAL_HELP["--verbose"]),
    quiet: bool = typer.Option(False, "--quiet", help=GLOBAL_HELP["--quiet"]),
) -> None:
    set_log_level(verbose, quiet)
    ctx.obj = GlobalOptions(server=server, space=space, api_key=api_key,
                            no_autostart=no_autostart, tls=tls, ca_cert=ca_cert,
                            client_cert=client_cert, client_key=client_key,
                            tls_server_name=tls_server_name)


serve.register(app)
stop.register(app)
stats.register(app)
import_cmd.register(app)
export.register(app)
recall.register(app)
consolidate.register(app)
forget.register(app)
spaces.register(app)
backup.register(app)
restore.register(app)
cache.register(app)
tune.register(app)
bench.register(app)


def main() -> None:
    """Run the Typer app with sys.argv: what cli/entry.py's main() could not answer."""
    try:
        app()
    finally:
        flush_stdout()
