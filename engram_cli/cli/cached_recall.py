"""A cached `engram recall`, answered before Typer is imported: the table of recall's
options as the fast path reads them, the one function that reads a command line with it,
the cache lookup, and the printers (which the Typer command in cli/recall.py shares).

cli/entry.py offers every command line that mentions `recall` to answer_from_cache(). A
plain `engram [globals] recall CUE [options]` whose answer is cached is printed from here;
anything else (help, stdin mode, --no-cache, --refresh, an unknown or doubtful argument, a
miss) is left to Typer, which then reports errors and counts the miss. Heavy imports
(the cache, rich) stay inside the functions that need them.
"""

from __future__ import annotations

import sys

# typing costs a cached recall several ms at import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMATS = ("table", "json", "jsonl")

# recall's options as the fast path reads them. Each must mean here what it means to the
# Typer command (a test compares this table with it); an option missing here sends the
# command line to Typer.
#   option: (key, type, lowest, highest)  takes a value; `--tag` may be repeated
VALUE_OPTIONS: dict[str, tuple[str, type, float | None, float | None]] = {
    "--limit": ("limit", int, 1, 10_000),
    "--max-hops": ("max_hops", int, 0, 10),
    "--threshold": ("threshold", float, 0.0, 1.0),
    "--tag": ("tags", str, None, None),
    "--space": ("space", str, None, None),
    "--format": ("fmt", str, None, None),
    "--mode": ("mode", str, None, None),
}
REPEATABLE = frozenset({"--tag"})
#   option: (key, value it sets)
FLAG_OPTIONS: dict[str, tuple[str, bool]] = {
    "--spread": ("spread", True),
    "--no-spread": ("spread", False),
    "--trace": ("trace", True),
}
DEFAULTS: dict[str, Any] = {"limit": 10, "max_hops": None, "threshold": None, "tags": (),
                            "space": None, "fmt": None, "spread": True, "trace": False,
                            "mode": None}
# recall's options that always go to Typer: they change more than where the answer comes
# from (a test checks that every option of the Typer command is in one of these tables).
LEFT_TO_TYPER = frozenset({"--no-cache", "--refresh", "--embed", "--embed-dim", "-h", "--help"})

# The global options (before the command) that the fast path reads.
GLOBAL_VALUE_OPTIONS = {"--server": "server", "--space": "g_space", "--api-key": "api_key",
                        "--ca-cert": "ca_cert", "--client-cert": "client_cert",
                        "--client-key": "client_key", "--tls-server-name": "tls_server_name"}
GLOBAL_FLAG_OPTIONS = {"--no-autostart": "no_autostart", "--tls": "tls"}
# The TLS settings take no part in the cache key (the server's address does), but they are
# resolved as Typer would: a client certificate without its key is Typer's to report.
_TLS_KEYS = ("ca_cert", "client_cert", "client_key", "tls_server_name")


def parse_recall_argv(argv: list[str]) -> dict[str, Any] | None:
    """The settings of a plain `engram [globals] recall CUE [options]` command line, or None
    when it is anything else or anything doubtful: then it is Typer's to parse.

    Keys: cue, server, g_space (the global --space), api_key, no_autostart, tls, the TLS
    files and server name, and DEFAULTS'.
    """
    parsed: dict[str, Any] = {"server": None, "g_space": None, "api_key": None,
                              "no_autostart": False, "tls": False,
                              **dict.fromkeys(_TLS_KEYS), **DEFAULTS}
    args = iter(argv)
    for token in args:  # the global options, up to the command
        if token == "recall":
            break
        name, value = _split(token)
        if name in GLOBAL_FLAG_OPTIONS and value is None:
            parsed[GLOBAL_FLAG_OPTIONS[name]] = True
        elif name in GLOBAL_VALUE_OPTIONS:
            value = _value(value, args)
            if value is None:
                return None
            parsed[GLOBAL_VALUE_OPTIONS[name]] = value
        else:
            return None
    else:
        return None  # no command
    cues: list[str] = []
    for token in args:
        if token == "--":
            cues.extend(args)
        elif token == "-" or not token.startswith("-"):
            cues.append(token)
        elif not _read_option(token, args, parsed):
            return None
    if len(cues) != 1 or cues[0] == "-" or not cues[0].strip():
        return None  # stdin mode, several cues or an empty one
    if parsed["fmt"] is not None and parsed["fmt"] not in FORMATS:
        return None
    parsed["cue"] = cues[0]
    return parsed


def _read_option(token: str, args: Any, parsed: dict[str, Any]) -> bool:
    """Read one of recall's options into `parsed`; False when it is not one to read here."""
    name, value = _split(token)
    if name in FLAG_OPTIONS and value is None:
        key, flag = FLAG_OPTIONS[name]
        parsed[key] = flag
        return True
    if name not in VALUE_OPTIONS:
        return False
    key, kind, lowest, highest = VALUE_OPTIONS[name]
    value = _value(value, args)
    if value is None:
        return False
    typed: Any = value
    if kind is not str:
        typed = _number(value, kind)
        if typed is None or not lowest <= typed <= highest:  # type: ignore[operator]
            return False
    parsed[key] = (*parsed[key], typed) if name in REPEATABLE else typed
    return True


def _number(value: str, kind: type) -> float | None:
    """`value` as an int or float when written plainly ("5", "0.25"), else None: signs,
    exponents, spaces and other spellings are left to Typer rather than guessed at."""
    whole, dot, fraction = value.partition(".")
    digits = whole + fraction if kind is float and dot and fraction else value
    if not (whole and digits.isascii() and digits.isdigit()):
        return None
    return kind(value)  # type: ignore[no-any-return]


def _split(token: str) -> tuple[str, str | None]:
    name, eq, value = token.partition("=")
    return (name, value) if eq else (token, None)


def _value(inline: str | None, args: Any) -> str | None:
    """An option's value: after `=`, else the next argument; None when missing, empty or
    looking like an option."""
    value = inline if inline is not None else next(args, None)
    if not value or value.startswith("-"):
        return None
    return value


def answer_from_cache(argv: list[str]) -> bool:
    """Print a cached answer for a plain `recall CUE` command line; True when done."""
    o = parse_recall_argv(argv)
    if o is None:
        return False
    from engram_cli.client.cache import CachePolicy, RecallCache
    from engram_cli.client.recall import RecallOptions, cached_answer
    from engram_cli.client.settings import resolve_client_settings
    from engram_cli.errors import EngramError

    try:
        settings = resolve_client_settings({
            "server": o["server"], "space": o["space"] or o["g_space"],
            "api_key": o["api_key"], "autostart": False if o["no_autostart"] else None,
            "tls": True if o["tls"] else None, **{k: o[k] for k in _TLS_KEYS}})
    except EngramError:
        return False  # Typer's run reports it
    conn = settings.connection
    policy = CachePolicy.from_settings(settings)
    options = RecallOptions(limit=o["limit"], max_hops=o["max_hops"],
                            threshold=o["threshold"], spread=o["spread"],
                            tags=tuple(o["tags"]), trace=o["trace"], mode=o["mode"])
    try:
        with RecallCache.default(policy) as cache:
            answer = cached_answer(cache, conn, options, o["cue"], count_miss=False)
    except EngramError:  # a bad ENGRAM_NOW: the whole command says it, as usage errors go
        return False
    if answer is None:
        return False
    fmt = o["fmt"] or ("table" if sys.stdout.isatty() else "json")
    try:
        (table_printer() if fmt == "table" else json_line)(answer)
    except BrokenPipeError:
        from engram_cli.cli.console import discard_stdout

        discard_stdout()  # the reader left (`| head`): not an error
    except OSError as exc:  # stdout on a full disk
        from engram_cli.cli.console import discard_stdout, os_error

        discard_stdout()
        sys.stderr.write(f"Error: {os_error(exc)}: check the disk and the paths given\n")
        sys.exit(1)
    return True


def json_line(answer: Any) -> None:
    import json  # not orjson: its import alone would double a cached recall's time

    out = sys.stdout
    out.write(json.dumps(answer.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()


# The table's content column is never narrower: below that, one memory a few lines.
MIN_CONTENT_WIDTH = 24


def table_printer() -> Any:
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from engram_cli.cli.console import printable, stdout_console
    from engram_cli.engine.confidence import shown

    console = stdout_console()

    def show(answer: Any) -> None:
        if answer.error is not None:
            where = f"line {answer.line}: " if answer.line is not None else ""
            console.print(f"{where}{answer.to_json()['error']}", style="red")
            return
        title = f"recall: {answer.cue}" + (" (cached)" if answer.cached else "")
        # With --trace: which index seeded each result ("spread": reached along
        # associations; "?": the server does not say).
        seeds = ({t["memory_id"]: t.get("seed") or "?" for t in answer.trace}
                 if answer.trace is not None else None)
        columns = ("confidence", "activation", "state", *(("seed",) if seeds is not None
                                                          else ()), "id")
        rows = [(str(i), r["content"],
                 # as judged: 0.6999 is medium, not "0.70 medium"
                 f"{shown(r['confidence']):g} {r['confidence_category']}",
                 f"{r['activation']:.2f}", r.get("state") or "?",
                 *(() if seeds is None else (seeds.get(r["id"], "?"),)), r["id"])
                for i, r in enumerate(answer.results, 1)]
        caption = "no memories match" if not answer.results else ""
        if answer.partial:
            caption = f"{caption} (may be incomplete: {answer.partial_words})".strip()
        # Each column as wide as its widest cell and 3 more (padding and rule), the content
        # MIN_CONTENT_WIDTH, and 1 for the last rule.
        fixed = sum(max([len(c), *(len(row[2 + k]) for row in rows)]) + 3
                    for k, c in enumerate(columns))
        number = max((len(row[0]) for row in rows), default=1) + 3
        if rows and fixed + number + MIN_CONTENT_WIDTH + 3 + 1 > console.width:
            # Too narrow for the table (an 80-column terminal): it would squeeze the
            # content to nothing. A line of figures per memory, its content below.
            console.print(title, style="bold")
            for row in rows:
                meta = f"{row[2]}  activation {row[3]}  {row[4]}"
                if seeds is not None:
                    meta += f"  seed {row[5]}"
                console.print(f"{row[0]:>3}. {meta}  {row[-1]}", soft_wrap=True)
                # A Text is printed as it is (render_str's cleaning is for strings).
                console.print(Padding(Text(printable(row[1])), (0, 0, 0, 5), expand=False))
            if caption:
                console.print(caption)
        else:
            table = Table(title=title)
            table.add_column("#", justify="right")
            table.add_column("content", ratio=1, overflow="fold")
            for col in columns:
                # An id must stay whole to be copied; the content column gives way.
                table.add_column(col, no_wrap=True, min_width=len(col) if col != "id" else 10)
            for row in rows:
                table.add_row(*row)
            table.caption = caption or None
            console.print(table)
        if answer.trace:
            console.print("activation paths (memory: path from a direct match, activation, "
                          "seed):")
            for t in answer.trace:
                seeded = f", seed: {t['seed']}" if t.get("seed") else ""
                console.print(f"  {t['memory_id']}: {' -> '.join(t['path'])} "
                              f"(activation {t['activation']:.2f}{seeded})", soft_wrap=True)

    return show
