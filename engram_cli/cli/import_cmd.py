"""`engram import` (first version): JSONL/CSV files into the server in batches."""

from __future__ import annotations

from pathlib import Path

import typer

from engram_cli.cli.common import EXIT_CODES_HELP, globals_of, handle_errors


@handle_errors
def import_(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(..., metavar="FILE...", help="JSONL or CSV files."),
    batch: int = typer.Option(500, "--batch", min=1, help="Memories per batch."),
    space: str = typer.Option(None, "--space", metavar="NAME", help="Memory space."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Import memories from JSONL or CSV files.

    Example: engram import examples/memories.jsonl --batch 500
    """
    import csv
    import time

    import orjson

    from engram_cli.client.api import EngramClient
    from engram_cli.errors import EXIT_PARTIAL, InputError
    from engram_cli.ingest.records import RecordError, to_memory
    from engram_cli.rpc import ext

    conn = globals_of(ctx).connection(space)
    imported = rejected = 0
    started = time.perf_counter()
    with EngramClient(conn) as client:
        def flush(memories: list) -> None:
            nonlocal imported, rejected
            if not memories:
                return
            resp = client.call(client.ext.BatchRemember, ext.BatchRememberRequest(
                memory_space_id=conn.space, memories=memories), "BatchRemember")
            imported += resp.stored
            rejected += resp.rejected
            memories.clear()

        for path in files:
            pending: list = []
            try:
                f = open(path, encoding="utf-8", newline="")  # noqa: SIM115
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc.strerror}") from None
            with f:
                if path.suffix == ".csv":
                    rows = ((i + 2, row) for i, row in enumerate(csv.DictReader(f)))
                else:
                    rows = ((i + 1, line) for i, line in enumerate(f))
                for line_no, raw in rows:
                    try:
                        record = raw if isinstance(raw, dict) else orjson.loads(raw)
                        if isinstance(raw, dict) and record.get("tags"):
                            record["tags"] = record["tags"].split(";")
                        pending.append(to_memory(record))
                    except (orjson.JSONDecodeError, RecordError) as exc:
                        typer.echo(f"{path}:{line_no}: {exc}", err=True)
                        rejected += 1
                    if len(pending) >= batch:
                        flush(pending)
                flush(pending)
    seconds = time.perf_counter() - started
    summary = {"imported": imported, "rejected": rejected, "retried": 0,
               "seconds": round(seconds, 3),
               "records_per_second": round(imported / seconds, 1) if seconds else 0.0}
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
    else:
        typer.echo(f"imported {imported}, rejected {rejected} in {seconds:.2f} s")
    if rejected:
        raise typer.Exit(EXIT_PARTIAL)


def register(app: typer.Typer) -> None:
    app.command("import", help=None, epilog=EXIT_CODES_HELP)(import_)
