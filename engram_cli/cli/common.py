"""What every command shares: global options, error printing, exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

# EXIT_CODES_HELP and the stdout helpers live in the entry module, which must not import
# Typer; the commands take them from here.
from engram_cli.cli.console import EXIT_CODES_HELP as EXIT_CODES_HELP
from engram_cli.cli.console import discard_stdout, os_error, printable
from engram_cli.errors import EXIT_INTERRUPTED, EngramError

if TYPE_CHECKING:
    from engram_cli.client.settings import ClientSettings
    from engram_cli.config import Connection

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class GlobalOptions:
    server: str | None = None
    space: str | None = None
    api_key: str | None = None
    no_autostart: bool = False
    tls: bool = False
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None

    def settings(self, **flags: Any) -> ClientSettings:
        """This command's client settings (engram_cli.client.settings): its own flags over
        the global ones, then the environment, the config file and the defaults. Resolve
        them once per command and build everything else from the result."""
        from engram_cli.client.settings import resolve_client_settings

        given = {"server": self.server, "space": self.space, "api_key": self.api_key,
                 "autostart": False if self.no_autostart else None,
                 "tls": True if self.tls else None, "ca_cert": self.ca_cert,
                 "client_cert": self.client_cert, "client_key": self.client_key,
                 "tls_server_name": self.tls_server_name}
        given.update({k: v for k, v in flags.items() if v is not None and v != ""})
        return resolve_client_settings(given)

    def connection(self, space: str | None = None) -> Connection:
        """Where to reach the server, for commands that need nothing else from settings."""
        return self.settings(space=space).connection


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The global --verbose / --quiet: None keeps each command's own default (INFO for serve).
LOG_LEVEL: int | None = None


def set_log_level(verbose: bool, quiet: bool) -> None:
    """--verbose: debug lines; --quiet: warnings and errors only."""
    import logging

    global LOG_LEVEL
    if verbose and quiet:
        raise typer.BadParameter("--verbose and --quiet exclude each other",
                                 param_hint="--verbose")
    if verbose or quiet:
        LOG_LEVEL = logging.DEBUG if verbose else logging.WARNING
        logging.basicConfig(level=LOG_LEVEL, stream=sys.stderr, format=LOG_FORMAT)


def _plain_help_types() -> None:
    """Typer (0.2x) shows a Python type after every option: `<bool>` after a flag,
    `<str>` after a value. A flag takes no value: nothing; a value: its metavar (every
    value option of ours names one); an argument's name already says it all."""
    from typer.core import TyperArgument, TyperOption

    def option_type(self: Any, ctx: Any) -> str | None:
        return None if self.is_flag else self.metavar

    def argument_type(self: Any, ctx: Any) -> str | None:
        return None

    TyperOption.display_type_rich = option_type  # type: ignore[method-assign,assignment]
    TyperArgument.display_type_rich = argument_type  # type: ignore[method-assign,assignment]


if hasattr(typer.core.TyperOption, "display_type_rich"):
    _plain_help_types()


def path_value(value: str) -> Path:
    """A path given on the command line (`parser=` of a Path option or argument). An empty
    one is a usage error: Path('') is the current directory, so `engram backup ""` would
    name the directory the user stands in."""
    if not value:
        raise typer.BadParameter("an empty path: name a file or directory")
    return Path(value)


def globals_of(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def fail(message: str, hint: str = "", code: int = 1) -> typer.Exit:
    """Print `Error: <what failed>: <what to do>` on stderr; answers the Exit to raise."""
    # A server's or a file's words may be in it.
    typer.echo(printable(f"Error: {message}" + (f": {hint}" if hint else "")), err=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Translate our exceptions into one line on stderr and a truthful exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except EngramError as exc:
            raise fail(str(exc), exc.hint, exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            # A closed pipe (`engram recall - | head`) is the reader's choice, not an error.
            discard_stdout()
            raise typer.Exit(0) from None
        except OSError as exc:
            # The machine's, not ours: a full disk under an export, the rejects file or
            # stdout (`engram stats > /dev/full` was a traceback), an I/O error. What is
            # left in stdout's buffer goes nowhere: its flush at exit would fail again.
            discard_stdout()
            raise fail(os_error(exc), "check the disk and the paths given") from None

    return wrapper  # type: ignore[return-value]


EMBED_DEFAULT = "default"  # --embed given without a MODEL


def _no_such_input(word: str) -> bool:
    """`word` is no input: not an option or stdin, without an input's extension, and no
    file or glob matches it (a missing `notes.jsonl` stays an input that is missing)."""
    import glob

    from engram_cli.ingest.readers import format_of

    return (bool(word) and not word.startswith("-") and format_of(word) is None
            and not glob.glob(word))


def _names_a_model(word: str) -> bool:
    from engram_cli.engine.embedding import MODELS

    return word in MODELS


class EmbedCommand(typer.core.TyperCommand):
    """A command whose `--embed` takes an optional MODEL (`--embed`, `--embed NAME`,
    `--embed=NAME`). Click cannot say "optional value" through Typer, so the word after a
    bare `--embed` is taken as its value only when it names a registered model; otherwise
    `--embed` means the default model and the word stays what it was (an input, a cue,
    another option)."""

    # Whether the command's arguments are input files: a word after `--embed` that is no
    # model and no file is then a mistyped model's name, not an input that is missing.
    inputs_are_files = False

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        out: list[str] = []
        words = iter(enumerate(args))
        for i, arg in words:
            if arg == "--":
                out.extend(args[i:])
                break
            following = args[i + 1] if i + 1 < len(args) else ""
            if arg != "--embed":
                out.append(arg)
            elif _names_a_model(following) or (self.inputs_are_files
                                               and _no_such_input(following)):
                # A model's name, or a mistyped one: refused by name, with the models.
                out.append(f"--embed={following}")
                next(words)
            else:
                out.append(f"--embed={EMBED_DEFAULT}")
        return super().parse_args(ctx, out)  # type: ignore[no-any-return]
