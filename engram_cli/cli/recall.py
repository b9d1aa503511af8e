"""`engram recall`: one cue, or one cue per stdin line, answered from the local cache when
it can; a table on a terminal, JSON otherwise.

A plain cached recall never gets here: cli/entry.py answers it before Typer is imported
(cli/cached_recall.py, whose printers this command shares). Heavy imports (grpc, rich)
stay inside the branches that need them.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from engram_cli.cli.cached_recall import FORMATS, json_line, table_printer
from engram_cli.cli.common import globals_of, handle_errors


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
    trace: bool = typer.Option(False, "--trace", help="Include the activation paths, and "
                               "which index seeded each result: lexical (full-text), "
                               "vector, both, context, or spread (not a seed: reached "
                               "along associations)."),
    mode: str = typer.Option(None, "--mode", metavar="hybrid|lexical|vector",
                             help="Which indexes seed a text cue on our server: both, fused "
                             "(default), the full-text index or the vector index."),
    embed: str = typer.Option(None, "--embed", metavar="[MODEL]",
                              help="Embed the cue on this machine and send an embedding cue "
                              "(for servers that do not embed, such as upstream Engram: "
                              "--embed --embed-dim 768). MODEL: the server's registry, "
                              "default wordllama-l2-supercat-256; loaded once, only for a "
                              "cue the cache cannot answer."),
    embed_dim: int = typer.Option(None, "--embed-dim", metavar="N",
                                  help="The cue vector's dimensions: truncated (Matryoshka "
                                  "models) or zero-padded, which keeps every cosine."),
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

    Example: engram recall --embed --embed-dim 768 "a chalet in the Alps"

    Example: engram recall "cottage in the Swiss mountains" --trace --format json
    """
    from engram_cli.client.cache import CachePolicy, RecallCache
    from engram_cli.client.recall import Recaller, RecallOptions, cue_lines
    from engram_cli.contract import PARTIAL_BUDGET, RECALL_MODES
    from engram_cli.errors import UsageError

    if mode is not None and mode not in RECALL_MODES:
        raise UsageError(f"--mode {mode!r} is not one of {', '.join(RECALL_MODES)}")
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

    model = None
    if embed is not None or embed_dim is not None:
        from engram_cli.cli.common import EMBED_DEFAULT
        from engram_cli.client.embedder import EmbedSpec
        from engram_cli.engine.embedding import DEFAULT_MODEL

        if embed is None:
            raise UsageError("--embed-dim needs --embed", "add --embed")
        model = DEFAULT_MODEL if embed == EMBED_DEFAULT else embed
        EmbedSpec.resolve(model, embed_dim)  # a bad model or dimension: exit 2 now
    settings = globals_of(ctx).settings(space=space)
    conn = settings.connection
    options = RecallOptions(limit=limit, max_hops=max_hops, threshold=threshold,
                            spread=spread, tags=tuple(tags or ()), trace=trace, mode=mode,
                            embed=model, embed_dim=embed_dim if model else None)
    cache = None if no_cache else RecallCache.default(CachePolicy.from_settings(settings))
    emit = table_printer() if fmt == "table" else json_line
    with Recaller(conn, options, cache, refresh=refresh) as recaller:
        if not stdin_mode:
            answer = recaller.recall(cue)
            emit(answer)
            _warn_cache(cache)
            if PARTIAL_BUDGET in answer.partial.split(","):
                # A user who trusts a cut answer may miss a memory: say so where they
                # look. (A lagging index only says so in the answer.)
                typer.echo("engram: warning: the answer may be incomplete: "
                           f"{answer.partial_words}", err=True)
            return
        failed = 0
        fatal = None
        # Bytes, decoded there: a line that is not UTF-8 is that line's error, whatever the
        # locale's decoder would have done with it (raised, or passed it on).
        for answer in recaller.recall_lines(cue_lines(sys.stdin.buffer)):
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


def register(app: typer.Typer) -> None:
    from engram_cli.cli.common import EmbedCommand

    app.command(cls=EmbedCommand)(recall)
