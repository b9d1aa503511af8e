"""What `engram` shows before any command-line framework is loaded: the top-level help
(the commands, the global options, the exit codes) and stdout handling for readers that
leave early. The entry module and the Typer app both read it; standard library only.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself is too heavy for a cached recall's start
if TYPE_CHECKING:
    from typing import Any

    from rich.console import Console
    from rich.text import Text

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 failed (server unreachable, error); 2 usage error; "
    "3 finished but some records rejected; 130 interrupted."
)

ABOUT = (
    "Load, query and tune Engram memory servers.\n\n"
    "Example: engram import examples/memories.jsonl && engram recall \"coffee\"\n\n"
    + EXIT_CODES_HELP
)

# The global options as (names, metavar or "" for a flag, help). cli/main.py's callback
# takes its help text from here; a test checks that the two list the same options.
GLOBAL_OPTIONS = (
    ("--server", "HOST:PORT",
     "Engram server, or several: A:PORT,B:PORT or dns:///NAME:PORT (calls spread over "
     "them); grpcs://HOST:PORT speaks TLS (env: ENGRAM_SERVER; default localhost:50051)."),
    ("--space", "NAME",
     "Memory space (env: ENGRAM_SPACE; default: the server's default space)."),
    ("--api-key", "KEY", "Sent as 'authorization: Bearer KEY' (env: ENGRAM_API_KEY, "
     "or api_key in the config file: other local users can read a command line)."),
    ("--no-autostart", "", "Never start the embedded server (env: ENGRAM_NO_AUTOSTART=1)."),
    ("--tls", "", "Speak TLS to the server (env: ENGRAM_TLS=1). "
     "Example: engram --tls --ca-cert ca.pem --server db.example.com:443 stats"),
    ("--ca-cert", "FILE", "TLS: the CA certificate(s) that sign the server's, PEM "
     "(env: ENGRAM_CA_CERT; default: public roots). Implies --tls."),
    ("--client-cert", "FILE", "Mutual TLS: this client's certificate, PEM, with "
     "--client-key (env: ENGRAM_CLIENT_CERT)."),
    ("--client-key", "FILE", "Mutual TLS: the client certificate's private key, PEM "
     "(env: ENGRAM_CLIENT_KEY)."),
    ("--tls-server-name", "NAME", "TLS: the name the server's certificate must carry, when "
     "it is not the address's host (env: ENGRAM_TLS_SERVER_NAME)."),
    ("-V, --version", "", "Print the version and exit."),
    ("--verbose", "", "Debug log lines on stderr."),
    ("--quiet", "", "Only warnings and errors in the log on stderr."),
    ("--install-completion", "", "Install completion for the current shell."),
    ("--show-completion", "",
     "Show completion for the current shell, to copy it or customize the installation."),
    ("-h, --help", "", "Show this message and exit."),
)
GLOBAL_HELP = {names: text for names, _, text in GLOBAL_OPTIONS}

# The commands in the order cli/main.py registers them, each with the first paragraph of
# its help; a test checks both against the Typer app.
COMMANDS = (
    ("serve", "Serve engram.v1 (plus our batch and settings RPCs, health and reflection)."),
    ("stop", "Stop the Engram server at --server (default: the embedded one on "
     "localhost:50051)."),
    ("stats", "Show memory counts, averages and health (Introspect)."),
    ("import", "Import memories from JSONL, JSON, CSV or TSV files, or stdin, fast."),
    ("export", "Export a space's memories as JSONL or CSV, in the format `engram import` "
     "reads."),
    ("recall", "Recall memories that match a cue, from the server or the local cache."),
    ("consolidate", "Consolidate a space's memories now (engram.v1 Consolidate)."),
    ("forget", "Forget memories by id or by cue: suppress them (reversible) or delete them."),
    ("backup", "Copy the whole store into a new directory while the server keeps serving."),
    ("restore", "Put a backup in place as a stopped server's store."),
    ("tune", "Tune the server and this client for low latency, high throughput and more."),
    ("bench", "Measure batching, pooling, caching and streaming against a server, before "
     "and after."),
    ("spaces", "List the memory spaces with their counts; `spaces drop NAME` deletes one."),
    ("cache", "The local recall cache: stats and clear."),
)


def top_level_help() -> str:
    """`engram --help`, laid out as Typer lays out the commands' own help."""
    import textwrap

    width = _help_width()

    def row(first: str, text: str, column: int) -> str:
        # `first` in the left column (alone on its line when too wide), `text` wrapped right.
        pad = " " * column
        head = f"  {first}".ljust(column) if len(first) <= column - 4 else f"  {first}\n{pad}"
        return head + f"\n{pad}".join(textwrap.wrap(text, width - column)) + "\n"

    out = ["Usage: engram [OPTIONS] COMMAND [ARGS]...\n\n"]
    out += [textwrap.indent(textwrap.fill(paragraph, width - 2), "  ") + "\n\n"
            for paragraph in ABOUT.split("\n\n")]
    options = [(f"{names} {metavar}" if metavar else names, text)
               for names, metavar, text in GLOBAL_OPTIONS]
    column = min(max(len(first) for first, _ in options), 30) + 4
    out += ["Options:\n", *(row(first, text, column) for first, text in options)]
    column = min(max(len(name) for name, _ in COMMANDS), 30) + 4
    out += ["\nCommands:\n", *(row(name, text, column) for name, text in COMMANDS)]
    return "".join(out)


def _help_width() -> int:
    # What Typer's help formatter uses: the terminal's width (or COLUMNS), at most 80,
    # less a margin of 2, at least 50.
    try:
        columns = int(os.environ.get("COLUMNS") or 0)
        if columns <= 0 and sys.__stdout__ is not None:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (OSError, ValueError):  # not a terminal
        columns = 0
    columns = columns if columns > 0 else 80
    return max(min(columns, 80) - 2, 50)


# C0 control characters but tab and newline, DEL, and the C1 controls, as Python's repr
# writes them (a UTF-8 terminal may take U+009B for the escape sequence introducer).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0))}
_CONTROLS_AND_NEWLINE = {**_CONTROLS, 0x0a: "\\n"}


def printable(text: str, one_line: bool = False) -> str:
    """`text` as a terminal shows it literally: its control characters written out as
    `\\x1b` and the like. ESC starts the sequences that move the cursor, clear the screen,
    set the window's title or make a link, and a memory's text, its id or a server's message
    is anyone's: shown raw, it could drive the user's terminal. Line ends are kept (a CR
    before a newline is dropped); with `one_line`, newlines are written out too."""
    if one_line:
        return text.translate(_CONTROLS_AND_NEWLINE)
    return text.replace("\r\n", "\n").translate(_CONTROLS)


def os_error(exc: OSError) -> str:
    """An OSError in words, with the file it is about when it says: the machine's failure
    (a full disk, an I/O error), said in one line rather than a traceback."""
    what = exc.strerror or str(exc)
    return f"{exc.filename}: {what}" if exc.filename else f"input/output failed: {what}"


def discard_stdout() -> None:
    """After the reader closed our stdout: send what is left to /dev/null, so that Python's
    flush at exit does not fail too (it would exit 120 and print a warning)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (tests' captured stdout)
        pass


def stdout_console() -> Console:
    """A rich Console on stdout for tables. Rich exits 1 when the reader closes the pipe
    (`engram stats | head -3`); this one raises BrokenPipeError instead, which every command
    ends as the JSON output does: quietly, exit 0. It reads no markup (a memory's
    "[link=https://...]" would have become a hidden hyperlink, a server's "[/]" an error):
    styles are given as arguments."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

        def render_str(self, text: str, **options: Any) -> Text:
            # Every string printed, a table's cells among them: no control characters.
            return super().render_str(printable(text), **options)

    return _Console(markup=False)


def flush_stdout() -> None:
    """Flush now, where a closed pipe can still be handled, rather than at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()
    except (OSError, ValueError):
        pass
