"""The `engram` executable: what it can answer without the command-line framework, then the
Typer app.

Importing Typer (with the pydantic it builds its parameters on) costs a process more than
a cached recall does in all, so `main()` first answers what needs no framework: the
top-level help (`engram`, `-h`, `--help`), `--version`, and a plain `engram recall CUE`
whose answer is cached (cli/cached_recall.py). Everything else, and anything doubtful,
goes to the Typer app in cli/main.py, which parses, reports errors and counts cache
misses. Only the standard library is imported here at module level.
"""

from __future__ import annotations

import os
import sys

from engram_cli.cli.console import flush_stdout, top_level_help

GRPC_VERBOSITY = "GRPC_VERBOSITY"


def main() -> None:
    """Run `engram` with sys.argv (the console script and `python -m engram_cli`)."""
    argv = sys.argv[1:]
    bad = _not_text(argv)
    if bad is not None:
        sys.stderr.write(f"Error: {bad}: give UTF-8 text (a file named so can be read "
                         "from stdin: engram import - < FILE)\n")
        sys.exit(2)
    if "serve" not in argv:
        # gRPC's C core writes a failed TLS handshake to stderr itself ("I1203 ...
        # Handshake failed ..."), before the one line of ours that says what failed in
        # words. Read when grpc loads; a value the user set wins; a server keeps its log.
        os.environ.setdefault(GRPC_VERBOSITY, "NONE")
    if argv in ([], ["-h"], ["--help"]):
        sys.stdout.write(top_level_help())
        flush_stdout()
        if not argv:
            sys.exit(2)  # a usage error, as Typer's no_args_is_help has it
        return
    if argv in (["--version"], ["-V"]):
        from engram_cli import __version__

        sys.stdout.write(f"engram {__version__}\n")
        flush_stdout()
        return
    if "recall" in argv:
        from engram_cli.cli.cached_recall import answer_from_cache

        if answer_from_cache(argv):
            flush_stdout()
            return
    from engram_cli.cli.main import main as run_typer_app

    run_typer_app()


def _not_text(argv: list[str]) -> str | None:
    """What names an argument or ENGRAM_* variable that is not UTF-8 (Python hands such
    bytes on as lone surrogates, which every later step would fail on with a traceback),
    shown with U+FFFD for those bytes; None when all are text."""
    from engram_cli.contract import as_text

    for arg in argv:
        if as_text(arg) != arg:
            return f"the argument {as_text(arg)!r} is not UTF-8 text"
    for name, value in os.environ.items():
        if name.startswith("ENGRAM_") and as_text(value) != value:
            return f"{name}={as_text(value)!r} is not UTF-8 text"
    return None

