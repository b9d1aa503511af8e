"""The `engram` Typer app: global options and command registration."""

from __future__ import annotations

import sys

import typer

from engram_cli import __version__
from engram_cli.cli import (
    bench,
    cache,
    consolidate,
    import_cmd,
    recall,
    serve,
    stats,
    stop,
    tune,
)
from engram_cli.cli.common import EXIT_CODES_HELP, GlobalOptions, flush_stdout, set_log_level

app = typer.Typer(
    name="engram",
    help="Load, query and tune Engram memory servers.\n\n"
    "Example: engram import examples/memories.jsonl && engram recall \"coffee\"\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
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
                               help="Engram server (env: ENGRAM_SERVER; default "
                               "localhost:50051)."),
    space: str = typer.Option(None, "--space", metavar="NAME",
                              help="Memory space (env: ENGRAM_SPACE; default: the server's "
                              "default space)."),
    api_key: str = typer.Option(None, "--api-key", metavar="KEY",
                                help="Sent as 'authorization: Bearer KEY' (env: "
                                "ENGRAM_API_KEY)."),
    no_autostart: bool = typer.Option(False, "--no-autostart",
                                      help="Never start the embedded server "
                                      "(env: ENGRAM_NO_AUTOSTART=1)."),
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", help="Debug log lines on stderr."),
    quiet: bool = typer.Option(False, "--quiet",
                               help="Only warnings and errors in the log on stderr."),
) -> None:
    set_log_level(verbose, quiet)
    ctx.obj = GlobalOptions(server=server, space=space, api_key=api_key,
                            no_autostart=no_autostart)


serve.register(app)
stop.register(app)
stats.register(app)
import_cmd.register(app)
recall.register(app)
consolidate.register(app)
cache.register(app)
tune.register(app)
bench.register(app)


def main() -> None:
    # A cached recall is answered before Typer parses anything (see cli/recall.py).
    try:
        if recall.answer_from_cache(sys.argv[1:]):
            return
        app()
    finally:
        flush_stdout()
