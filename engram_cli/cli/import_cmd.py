"""`engram import`: files, globs or stdin into the server, fast and without losing or
repeating a record. The work is done by engram_cli.ingest.importer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from engram_cli.cli.common import (
    EMBED_DEFAULT,
    EXIT_CODES_HELP,
    EmbedCommand,
    globals_of,
    handle_errors,
    path_value,
)
from engram_cli.cli.console import printable

IMPORT_EPILOG = (
    EXIT_CODES_HELP + " Exit 3 means every record that could be stored was stored and the "
    "rest are in the rejects file; after 1 or 130, run the same command with --resume."
)


@handle_errors
def import_(
    ctx: typer.Context,
    files: list[str] = typer.Argument(..., metavar="FILE|GLOB|-",
                                      help="Inputs: .jsonl/.ndjson/.json/.csv/.tsv, each "
                                      "optionally .gz; - is stdin (JSONL unless --format)."),
    fmt: str = typer.Option(None, "--format", metavar="jsonl|json|csv|tsv",
                            help="Format of every input (default: from the extension)."),
    delimiter: str = typer.Option(None, "--delimiter", metavar="CHAR",
                                  help="CSV field delimiter (default: detected from the "
                                  "first lines; \\t for tab)."),
    batch: str = typer.Option(None, "--batch", metavar="N|auto",
                              help="Records per batch; auto adapts to the server "
                              "(env ENGRAM_BATCH; default auto)."),
    pool: int = typer.Option(None, "--pool", metavar="N",
                             help="Connections used at once (env ENGRAM_POOL; default 2x "
                             "cores)."),
    stream: bool = typer.Option(None, "--stream/--no-stream",
                                help="Force StreamingRemember / forbid it (default: our batch "
                                "RPC, StreamingRemember for servers without it)."),
    space: str = typer.Option(None, "--space", metavar="NAME", help="Memory space."),
    id_field: str = typer.Option(None, "--id-field", metavar="F",
                                 help="Field holding the id (default: id; without one the "
                                 "id is a hash of the content)."),
    content_field: str = typer.Option(None, "--content-field", metavar="F",
                                      help="Field holding the text (default: content)."),
    maps: list[str] = typer.Option(None, "--map", metavar="DEST=SRC",
                                   help="Take memory field DEST (or metadata.KEY) from your "
                                   "field SRC (a.b for nested); repeatable."),
    rejects: Path = typer.Option(None, "--rejects", parser=path_value, metavar="FILE",
                                 help="Where rejected records go (default: "
                                 "<input>.rejects.jsonl, written only if there are any)."),
    max_errors: str = typer.Option(None, "--max-errors", metavar="N|P%",
                                   help="Stop (exit 1) when more records than this are "
                                   "rejected."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue an interrupted import of the same inputs."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Parse and validate everything; send nothing."),
    rate: float = typer.Option(None, "--rate", metavar="N",
                               help="At most N records per second (env ENGRAM_RATE; 0: no "
                               "limit)."),
    embed: str = typer.Option(None, "--embed", metavar="[MODEL]",
                              help="Embed on this machine the text of every record without "
                              "an embedding (MODEL: the server's registry, default "
                              "wordllama-l2-supercat-256, offline). Needed by servers that "
                              "take only vectors (upstream Engram: --embed --embed-dim 768); "
                              "optional with ours, which embeds by itself."),
    embed_dim: int = typer.Option(None, "--embed-dim", metavar="N",
                                  help="Send vectors of N dimensions: a Matryoshka-trained "
                                  "model (WordLlama) is truncated, any model zero-padded; "
                                  "padding keeps every cosine unchanged. Default: the "
                                  "model's own."),
    embed_workers: int = typer.Option(None, "--embed-workers", metavar="N", min=0,
                                      help="Processes that embed (default: one per core; "
                                      "0: in this process)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="No progress and no per-record messages; only the "
                               "summary."),
    wait_indexed: float = typer.Option(
        None, "--wait-indexed", metavar="SECONDS", min=0, show_default=False,
        help="After the last batch, wait up to SECONDS until the server has embedded and "
        "indexed everything, so that a vector or hybrid recall right after sees it (our "
        "server; others index as they write)."),
    nice: int = typer.Option(None, "--nice", metavar="N", min=0, max=19,
                             help="Run at CPU niceness N or lower priority (env ENGRAM_NICE; "
                             "default 10 when the server is on this machine, so that it "
                             "gets the cores first; 0 otherwise, and 0 with --embed, "
                             "whose model sets the pace)."),
) -> None:
    """Import memories from JSONL, JSON, CSV or TSV files, or stdin, fast.

    A record has content, and optionally id, confidence (0..1), embedding, tags,
    metadata, memory_type, created_at (RFC 3339 or epoch seconds), decay_rate,
    and what `engram export` writes: state and associations.
    Records that cannot be stored go to the rejects file with line and reason:
    fix them there and import that file. Nothing is ever stored twice.

    With --embed, vectors are made here, in worker processes, and cached on disk by
    text (a re-run or --resume embeds nothing twice).

    Example: engram import memories.jsonl 'exports/*.csv.gz' --max-errors 1%

    Example: engram import notes.jsonl --embed --embed-dim 768   # for upstream Engram
    """
    from engram_cli.client.batching import SendOptions
    from engram_cli.ingest.importer import ErrorLimit, Importer, ImportOptions
    from engram_cli.ingest.mapping import FieldMap

    embed_options = None
    if embed is not None or embed_dim is not None or embed_workers is not None:
        embed_options = _embed_options(embed, embed_dim, embed_workers)
    settings = globals_of(ctx).settings(space=space, batch=batch, pool=pool, stream=stream,
                                        rate=rate)
    options = ImportOptions(
        inputs=list(files),
        fmt=fmt.lower() if fmt else None,
        fieldmap=FieldMap.build(maps or (), id_field, content_field),
        rejects=rejects,
        max_errors=ErrorLimit.parse(max_errors),
        resume=resume,
        dry_run=dry_run,
        send=SendOptions.from_settings(settings),
        delimiter=("\t" if delimiter == "\\t" else delimiter) or None,
        embed=embed_options,
    )
    conn = None
    if not dry_run:
        from engram_cli.client.autostart import ensure_server
        from engram_cli.ingest.importer import expand_inputs

        conn = settings.connection
        _check_space(conn.space)
        expand_inputs(options.inputs)  # a missing input is said before a server starts
        ensure_server(conn)  # first: a server started here must keep the normal priority
        # With --embed the model sets the pace, not the server's writer: a niced importer
        # and its workers (which inherit the niceness) would yield the model's cores to
        # the server's own background indexer and to everything else on the machine.
        yield_cpu(conn.server, nice, local_default=0 if embed_options is not None else None)

    def say(message: str) -> None:
        typer.echo(printable(message), err=True)  # a record's values may be in it

    bar = None if quiet or not sys.stderr.isatty() else _ProgressBar()
    importer = Importer(options, conn, progress=bar.update if bar else None,
                        notice=say, warn=(lambda m: None) if quiet else say)
    try:
        summary = importer.run()
    finally:
        if bar is not None:
            bar.stop()
    if conn is not None and summary.imported:
        _after_import(conn, summary)
    if conn is not None and wait_indexed and summary.error is None and not summary.interrupted:
        _wait_indexed(conn, wait_indexed, say)
    _print_summary(summary, as_json)
    if summary.interrupted:
        from engram_cli.errors import EXIT_INTERRUPTED

        typer.echo("Interrupted: run the same command with --resume to continue.", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.error is not None:
        raise summary.error
    if summary.rejected or summary.rejected_before_resume:
        from engram_cli.errors import EXIT_PARTIAL

        raise typer.Exit(EXIT_PARTIAL)


def _embed_options(embed: str | None, dim: int | None, workers: int | None) -> Any:
    """--embed [MODEL], --embed-dim, --embed-workers -> EmbedOptions."""
    from engram_cli.client.embedder import EmbedSpec
    from engram_cli.errors import UsageError
    from engram_cli.ingest.embedstage import default_workers
    from engram_cli.ingest.importer import EmbedOptions

    if embed is None:
        raise UsageError("--embed-dim and --embed-workers need --embed",
                         "add --embed (e.g. --embed --embed-dim 768)")
    return EmbedOptions(EmbedSpec.resolve(None if embed == EMBED_DEFAULT else embed, dim),
                        default_workers() if workers is None else workers)


ENV_NICE = "ENGRAM_NICE"
LOCAL_SERVER_NICE = 10


def yield_cpu(address: str, nice: int | None, env: dict[str, str] | None = None,
              local_default: int | None = None) -> int:
    """Lower this process's CPU priority to niceness `nice` (flag), else ENGRAM_NICE, else
    `local_default` (LOCAL_SERVER_NICE unless given) when the server is on this machine;
    never raises it. Answers the niceness now in effect.

    Against a server on the same machine the importer competes with the server's single
    writer - the pace of the whole import - for the same cores, while the importer itself
    runs ahead of the server with batches waiting. At a lower priority it yields during
    that contention: 1,000,000 records went from 66.7k to 70.2k records/s (2 cores, means
    of three pairs of runs)."""
    import os

    env = dict(os.environ) if env is None else env
    if nice is None and env.get(ENV_NICE, "") != "":
        raw = env[ENV_NICE]
        try:
            nice = int(raw)
        except ValueError:
            nice = -1
        if not 0 <= nice <= 19:
            from engram_cli.errors import UsageError

            raise UsageError(f"{ENV_NICE} {raw!r} is not valid", "expected a niceness, 0..19")
    if nice is None:
        from engram_cli.config import is_local

        local = LOCAL_SERVER_NICE if local_default is None else local_default
        nice = local if is_local(address) else 0
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError:
            return current
        return nice
    return current


def _after_import(conn: Any, summary: Any) -> None:
    """Memories of `conn.space` changed: the one place for what must follow an import.
    Runs whenever something was stored, also when the run then failed or was stopped."""
    from engram_cli.client.cache import invalidate_space

    invalidate_space(conn.server, conn.space)


def _wait_indexed(conn: Any, timeout_s: float, say: Any) -> None:
    from engram_cli.client.api import EngramClient

    with EngramClient(conn, autostart=False) as client:
        left = client.wait_indexed(conn.space, timeout_s)
    if left:
        say(f"engram: the server's vector index still had {left:,} changes to take in "
            f"after {timeout_s:g} s; vector and hybrid recall will see them when it has")


def _check_space(space: str) -> None:
    from engram_cli.engine.model import SPACE_RE
    from engram_cli.errors import UsageError

    if space and not SPACE_RE.fullmatch(space):
        raise UsageError(f"invalid memory space id {space!r}",
                         "use 3 to 64 characters of lowercase letters, digits, '_' and '-'")


def _print_summary(summary: Any, as_json: bool) -> None:
    import orjson

    if as_json:
        typer.echo(orjson.dumps(summary.as_dict()).decode())
        return
    s = summary
    verb = "would import" if s.dry_run else "imported"
    parts = [f"{verb} {s.imported:,}"]
    if not s.dry_run and s.imported and (s.created or s.updated or s.unchanged):
        parts[0] += (f" (new {s.created:,}, updated {s.updated:,}, "
                     f"unchanged {s.unchanged:,})")
    parts.append(f"rejected {s.rejected:,}" + (f" (and {s.rejected_before_resume:,} before "
                                                 "resuming)" if s.rejected_before_resume
                                                 else ""))
    if not s.dry_run:
        parts.append(f"retried {s.retried:,}")
    if s.associations:
        parts.append(f"associations {s.associations:,}")
    line = ", ".join(parts) + f" in {s.seconds:.2f} s"
    if not s.dry_run and s.seconds:
        line += f" ({s.records_per_second:,.0f} records/s"
        if s.batches:
            line += f"; batch latency p50 {s.batch_p50_ms:.0f} ms, p99 {s.batch_p99_ms:.0f} ms"
        line += ")"
    typer.echo(line)
    if s.embedded or s.embed_cache_hits:
        rate = (f" ({s.embedded / s.embed_model_seconds:,.0f} texts/s of model time)"
                if s.embed_model_seconds else "")
        typer.echo(f"embedded {s.embedded:,}{rate}, {s.embed_cache_hits:,} from the "
                   "embedding cache")
    if s.rejects_files:
        typer.echo(printable("rejects: " + ", ".join(s.rejects_files)))  # inputs' names


class _ProgressBar:
    """A rich progress bar on stderr: records/s, MB/s and ETA by bytes read (compressed
    bytes for gzip); for stdin a live count."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column

        # On a narrow terminal the name and the figures give way (ellipsis), never the
        # times (they shrank to "0:0…" at 80 columns).
        def fixed() -> Column:
            return Column(no_wrap=True, min_width=7)

        self._progress = Progress(
            TextColumn("[bold]{task.description}",
                       table_column=Column(no_wrap=True, overflow="ellipsis", max_width=24)),
            BarColumn(bar_width=16), TaskProgressColumn(),
            TextColumn("{task.fields[stats]}",
                       table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
            TimeElapsedColumn(table_column=fixed()), TimeRemainingColumn(table_column=fixed()),
            console=console or Console(stderr=True), transient=True)
        self._task: Any = None

    def update(self, p: Any) -> None:
        rate = p.imported / p.seconds if p.seconds else 0.0
        mbs = p.bytes_done / p.seconds / 1e6 if p.seconds else 0.0
        stats = f"{p.imported:,} stored {p.rejected:,} rejected  {rate:,.0f} rec/s"
        if p.embedded:
            stats += f"  {p.embedded / p.seconds if p.seconds else 0:,.0f} embedded/s"
        if p.bytes_total is not None:
            stats += f"  {mbs:.1f} MB/s"
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("import", total=p.bytes_total, stats=stats)
        self._progress.update(self._task, completed=p.bytes_done if p.bytes_total else 0,
                              description=p.current or "import", stats=stats)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.stop()


class ImportCommand(EmbedCommand):
    inputs_are_files = True


def register(app: typer.Typer) -> None:
    app.command("import", cls=ImportCommand, epilog=IMPORT_EPILOG)(import_)
