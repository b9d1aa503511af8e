"""`engram export`: a space out of the server, in the record format `engram import` reads.
The work is done by engram_cli.client.export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from engram_cli.cli.common import EXIT_CODES_HELP, globals_of, handle_errors, path_value


@handle_errors
def export(
    ctx: typer.Context,
    space: str = typer.Option(None, "--space", metavar="NAME",
                              help="The space to export (default: the global --space, "
                              "ENGRAM_SPACE, the config file's space, else the default "
                              "space)."),
    fmt: str = typer.Option(None, "--format", metavar="jsonl|csv",
                            help="Output format (default: from -o's extension, else jsonl)."),
    since: str = typer.Option(None, "--since", metavar="TIME",
                              help="Only memories created at or after TIME: RFC 3339, epoch "
                              "seconds, or an age such as 90m, 12h, 7d."),
    no_embeddings: bool = typer.Option(False, "--no-embeddings",
                                       help="Leave the embeddings out (much smaller; the "
                                       "server embeds the text again on import)."),
    output: Path | None = typer.Option(None, "--output", "-o", parser=path_value,
                                       metavar="FILE",
                                       help="Write to FILE (0600; gzip when it ends in .gz) "
                                       "instead of stdout; it appears only once complete. A "
                                       "pipe or a device (/dev/null, >(gzip > a.gz)) is "
                                       "written as it is."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object "
                                 "(on stderr when the records go to stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no summary."),
) -> None:
    """Export a space's memories as JSONL or CSV, in the format `engram import` reads.

    Every field comes out as stored: id, content, embedding, confidence, tags,
    metadata, memory_type, created_at, decay_rate, the consolidation state and the
    associations (on their source memory), all from one snapshot of the store. Needs
    an engram-cli server (our Export RPC): other servers are refused with exit 1.

    Example: engram export --space notes | engram --server other:50051 import -
    """
    from engram_cli.cli.import_cmd import yield_cpu
    from engram_cli.client.autostart import ensure_server
    from engram_cli.client.export import ExportOptions, check_output, open_output, run_export

    if output is not None and str(output) in ("-", "/dev/stdout"):
        output = None  # stdout, as without -o (/dev/stdout is a symlink we would refuse)
    conn = globals_of(ctx).connection(space)
    chosen = (fmt or _format_of(output)).lower()
    options = ExportOptions(fmt=chosen, since=_parse_since(since),
                            embeddings=not no_embeddings)
    if output is not None:
        check_output(output)  # a bad path is said before a server starts
    ensure_server(conn)  # first: a server started here must keep the normal priority
    # As import does: at a lower priority next to a local server, which serves recall too.
    yield_cpu(conn.server, None)
    bar = None if quiet or not sys.stderr.isatty() else _Progress()
    try:
        with open_output(output, sys.stdout.buffer) as out:
            summary = run_export(conn, options, out, bar.update if bar else None)
            out.flush()
    finally:
        if bar is not None:
            bar.stop()
    summary.output = str(output) if output else "-"
    if quiet:
        return
    if as_json:
        import orjson

        typer.echo(orjson.dumps(summary.as_dict()).decode(), err=output is None)
        return
    typer.echo(f"exported {summary.exported:,} memories ({summary.associations:,} "
               f"associations) of space {conn.space or 'default'} in {summary.seconds:.2f} s "
               f"({summary.records_per_second:,.0f} records/s)"
               + (f" to {output}" if output else ""), err=output is None)


def _format_of(path: Path | None) -> str:
    if path is None:
        return "jsonl"
    name = path.name.lower().removesuffix(".gz")
    return "csv" if name.endswith(".csv") else "jsonl"


def _parse_since(text: str | None) -> float | None:
    """RFC 3339, epoch seconds, or an age (90s, 90m, 12h, 7d) -> epoch seconds."""
    if not text:
        return None
    import re
    import time

    from engram_cli.errors import UsageError
    from engram_cli.ingest.mapping import RecordError, parse_time

    t = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    age = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhdw])", t)
    if age:
        return time.time() - float(age[1]) * units[age[2]]
    try:
        return parse_time(t)
    except RecordError as exc:
        # The importer's reason for created_at, said of --since ("has no time zone").
        why = str(exc).removeprefix(f"created_at {t!r} ")
        raise UsageError(f"--since {text!r} {why}",
                         "give RFC 3339 (2024-05-01T00:00:00Z), epoch seconds, or an age "
                         "such as 90m, 12h or 7d") from None


class _Progress:
    """A live count on stderr (a terminal only)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self._progress = Progress(TextColumn("export"), BarColumn(bar_width=24),
                                  TaskProgressColumn(), TextColumn("{task.fields[stats]}"),
                                  console=Console(stderr=True), transient=True)
        self._task: Any = None

    def update(self, s: object) -> None:
        exported, total, seconds = s.exported, s.total, s.seconds  # type: ignore[attr-defined]
        stats = f"{exported:,}/{total:,}  {exported / seconds if seconds else 0:,.0f} rec/s"
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("export", total=total or None, stats=stats)
        self._progress.update(self._task, completed=exported, stats=stats)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.stop()


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(export)
