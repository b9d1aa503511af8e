"""`engram recall`: one cue, or one cue per stdin line, answered from the local cache when
it can; a table on a terminal, JSON otherwise.

This module sits on the cache-hit fast path: heavy imports (grpc, rich) stay inside the
branches that need them.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from engram_cli.cli.common import discard_stdout, globals_of, handle_errors

FORMATS = ("table", "json", "jsonl")


@handle_errors
def recall(
    ctx: typer.Context,
    cue: str = typer.Argument(None, metavar="CUE",
                              help="What to recall (text). '-', or no CUE with stdin not a "
                              "terminal: one cue per stdin line."),
    limit: int = typer.Option(10, "--limit", metavar="N", min=1, max=10_000,
                              help="At most this many results per cue."),
    max_hops: int = typer.Option(None, "--max-hops", metavar="N", min=0, max=10, help="Spreading "
                                 "activation: hops to follow (default: the server's)."),
    threshold: float = typer.Option(None, "--threshold", metavar="X", min=0.0, max=1.0,
                                    help="Spreading activation: activation below this is "
                                    "neither spread nor returned (default: the server's)."),
    spread: bool = typer.Option(True, "--spread/--no-spread",
                                help="Follow associations from the direct matches."),
    tags: list[str] = typer.Option(None, "--tag", metavar="T",
                                   help="Only memories with this tag (repeatable: all of "
                                   "them)."),
    space: str = typer.Option(None, "--space", metavar="NAME", help="Memory space."),
    fmt: str = typer.Option(None, "--format", metavar="table|json|jsonl",
                            help="Default: table on a terminal, JSON otherwise. In stdin "
                            "mode JSON is one line per cue, in input order."),
    trace: bool = typer.Option(False, "--trace", help="Include the activation paths."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the "
                                  "local cache."),
    refresh: bool = typer.Option(False, "--refresh", help="Fetch from the server even on a "
                                 "cache hit, and rewrite the entry."),
) -> None:
    """Recall memories that match a cue, from the server or the local cache.

    Only stable answers are cached (by default: every memory at confidence >= 0.9 and
    consolidated, for at most an hour; see `cache_*` in the config file); a cached answer
    is shown with its confidence decayed to now.
    In stdin mode a bad line gets an error line ({"cue", "line", "error"}) and the rest
    carry on; the exit code is then 3. Exit codes: 0 done (also when nothing matches);
    1 server unreachable (and no cache entry) or failed; 2 usage error (an empty cue).

    Example: cat cues.txt | engram recall - --limit 3 | jq -r '.results[].content'
    """
    from engram_cli.client.cache import CachePolicy, RecallCache
    from engram_cli.client.recall import Recaller, RecallOptions
    from engram_cli.errors import UsageError

    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if sys.stdin is None and (cue is None or cue == "-"):
        from engram_cli.errors import InputError

        raise InputError("cannot read cues from stdin: it is closed", "give a CUE")
    stdin_mode = cue == "-" or (cue is None and not sys.stdin.isatty())
    if cue is None and not stdin_mode:
        raise UsageError("no cue given", "give a CUE, or pipe cues on stdin with `-`")
    if not stdin_mode and not cue.strip():
        raise UsageError("the cue is empty", "give some words to recall by")
    if fmt is None:
        fmt = "table" if sys.stdout.isatty() else ("jsonl" if stdin_mode else "json")

    settings = globals_of(ctx).settings(space=space)
    conn = settings.connection
    options = RecallOptions(limit=limit, max_hops=max_hops, threshold=threshold,
                            spread=spread, tags=tuple(tags or ()), trace=trace)
    cache = None if no_cache else RecallCache.default(CachePolicy.from_settings(settings))
    emit = _table_printer() if fmt == "table" else _json_line
    with Recaller(conn, options, cache, refresh=refresh) as recaller:
        if not stdin_mode:
            emit(recaller.recall(cue))
            _warn_cache(cache)
            return
        failed = 0
        fatal = None
        for answer in recaller.recall_lines(sys.stdin):
            emit(answer)
            if answer.error is not None:
                failed += 1
                if fatal is None and _is_fatal(answer.error):
                    fatal = answer.error
        _warn_cache(cache)
    if fatal is not None:
        raise fatal
    if failed:
        from engram_cli.errors import EXIT_PARTIAL

        typer.echo(f"engram: {failed} cue(s) failed; see their error lines", err=True)
        raise typer.Exit(EXIT_PARTIAL)


def _is_fatal(err: Exception) -> bool:
    """Errors that are about the server, not the cue: they decide the exit code."""
    from engram_cli.errors import AuthError, ServerUnavailable, Unsupported

    return isinstance(err, (ServerUnavailable, AuthError, Unsupported))


def _warn_cache(cache: Any) -> None:
    if cache is not None and cache.error:
        typer.echo(f"engram: the recall cache is not usable ({cache.error}); answered "
                   "without it", err=True)


def _json_line(answer: Any) -> None:
    import orjson

    out = sys.stdout
    out.write(orjson.dumps(answer.to_json()).decode() + "\n")
    out.flush()


def _table_printer() -> Any:
    from rich.console import Console
    from rich.table import Table

    console = Console()

    def show(answer: Any) -> None:
        if answer.error is not None:
            where = f"line {answer.line}: " if answer.line is not None else ""
            console.print(f"[red]{where}{answer.to_json()['error']}[/red]")
            return
        title = f"recall: {answer.cue}" + (" (cached)" if answer.cached else "")
        table = Table(title=title)
        table.add_column("#", justify="right")
        table.add_column("content", ratio=1, overflow="fold")
        for col in ("confidence", "activation", "state", "id"):
            # An id must stay whole to be copied; the content column gives way instead.
            table.add_column(col, no_wrap=True, min_width=len(col) if col != "id" else 10)
        for i, r in enumerate(answer.results, 1):
            table.add_row(str(i), r["content"],
                          f"{r['confidence']:.2f} {r['confidence_category']}",
                          f"{r['activation']:.2f}", r.get("state") or "?", r["id"])
        if not answer.results:
            table.caption = "no memories match"
        console.print(table)
        if answer.trace:
            console.print("activation paths (memory: path from a direct match, activation):")
            for t in answer.trace:
                console.print(f"  {t['memory_id']}: {' -> '.join(t['path'])} "
                              f"(activation {t['activation']:.2f})", soft_wrap=True)

    return show


# -- the fast path ---------------------------------------------------------------------
# Typer's parsing alone costs a process more than the whole cache hit (it builds pydantic
# validators for every parameter), so `main()` first offers argv to answer_from_cache():
# a plain `engram [globals] recall CUE [options]` whose answer is cached is printed from
# here; anything else (help, stdin mode, --no-cache, --refresh, an unusual or invalid
# argument, a miss) returns False and goes through Typer as usual, which then reports
# errors and counts the miss.

_GLOBAL_VALUES = {"--server": "server", "--space": "space", "--api-key": "api_key"}
_GLOBAL_FLAGS = {"--no-autostart"}
_VALUES: dict[str, tuple[str, Any, float | None, float | None]] = {
    "--limit": ("limit", int, 1, 10_000),
    "--max-hops": ("max_hops", int, 0, 10),
    "--threshold": ("threshold", float, 0.0, 1.0),
    "--tag": ("tag", str, None, None),
    "--space": ("space", str, None, None),
    "--format": ("fmt", str, None, None),
}
_FLAGS = {"--spread": ("spread", True), "--no-spread": ("spread", False),
          "--trace": ("trace", True)}


class _NotPlain(Exception):
    """argv is not a plain cached-recall command line: leave it to Typer."""


def _split(token: str) -> tuple[str, str | None]:
    name, eq, value = token.partition("=")
    return (name, value) if eq else (token, None)


def _parse_plain(argv: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"limit": 10, "max_hops": None, "threshold": None, "tags": [],
                            "spread": True, "trace": False, "fmt": None, "space": None,
                            "server": None, "g_space": None, "api_key": None,
                            "no_autostart": False, "cue": None}
    args = list(argv)
    while args and args[0] != "recall":  # global options, before the command
        name, value = _split(args.pop(0))
        if name in _GLOBAL_FLAGS and value is None:
            opts["no_autostart"] = True
        elif name in _GLOBAL_VALUES:
            value = value if value is not None else (args.pop(0) if args else None)
            if value is None or value.startswith("-"):
                raise _NotPlain
            opts["g_space" if name == "--space" else _GLOBAL_VALUES[name]] = value
        else:
            raise _NotPlain
    if not args:
        raise _NotPlain
    args.pop(0)
    positional: list[str] = []
    while args:
        token = args.pop(0)
        if token == "--":
            positional.extend(args)
            break
        if not token.startswith("-") or token == "-":
            positional.append(token)
            continue
        name, value = _split(token)
        if name in _FLAGS and value is None:
            key, flag = _FLAGS[name]
            opts[key] = flag
        elif name in _VALUES:
            key, kind, low, high = _VALUES[name]
            value = value if value is not None else (args.pop(0) if args else None)
            if value is None or value.startswith("-"):
                raise _NotPlain
            if kind is int and not value.isdigit():
                raise _NotPlain
            try:
                typed = kind(value)
            except ValueError:
                raise _NotPlain from None
            if low is not None and not low <= typed <= high:
                raise _NotPlain
            if key == "tag":
                opts["tags"].append(typed)
            else:
                opts[key] = typed
        else:  # --no-cache, --refresh, --help, a typo: Typer's business
            raise _NotPlain
    if len(positional) != 1 or positional[0] == "-" or not positional[0].strip():
        raise _NotPlain
    if opts["fmt"] is not None and opts["fmt"] not in FORMATS:
        raise _NotPlain
    opts["cue"] = positional[0]
    return opts


def answer_from_cache(argv: list[str]) -> bool:
    """Print a cached answer for a plain `recall CUE` command line; True when done."""
    if "recall" not in argv:
        return False
    try:
        o = _parse_plain(argv)
    except _NotPlain:
        return False
    from engram_cli.client.cache import CachePolicy, RecallCache
    from engram_cli.client.recall import RecallOptions, cached_answer
    from engram_cli.client.settings import resolve_client_settings
    from engram_cli.errors import EngramError

    try:
        settings = resolve_client_settings({
            "server": o["server"], "space": o["space"] or o["g_space"],
            "api_key": o["api_key"], "autostart": False if o["no_autostart"] else None})
    except EngramError:
        return False  # Typer's run reports it
    conn = settings.connection
    policy = CachePolicy.from_settings(settings)
    options = RecallOptions(limit=o["limit"], max_hops=o["max_hops"],
                            threshold=o["threshold"], spread=o["spread"],
                            tags=tuple(o["tags"]), trace=o["trace"])
    with RecallCache.default(policy) as cache:
        answer = cached_answer(cache, conn, options, o["cue"], count_miss=False)
    if answer is None:
        return False
    fmt = o["fmt"] or ("table" if sys.stdout.isatty() else "json")
    try:
        (_table_printer() if fmt == "table" else _json_line)(answer)
    except BrokenPipeError:
        discard_stdout()  # the reader left (`| head`): not an error
    return True


def register(app: typer.Typer) -> None:
    app.command()(recall)
