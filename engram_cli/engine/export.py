"""Reading a whole space out, and writing its associations back: the engine side of
`engram export` and of importing what it wrote.

An export is one SQLite read transaction on a connection of its own, so every page comes
from the same snapshot however long the client takes to drain it (WAL mode: writers go on
committing meanwhile; the log cannot be checkpointed past the snapshot until it ends).
Pages are cut by a cursor walked in rowid order, so memory stays one page deep whatever
the size of the space. Values are the stored ones: the confidence before the forgetting
curve, tags and metadata as their stored JSON text (the client splices it into its output
without parsing it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from engram_cli.engine.rows import SQL_CHUNK, chunks

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
# A page is cut sooner when its memories reach this many bytes: far under the message
# limit however large single memories are (content is at most 1 MiB).
MAX_PAGE_BYTES = 2 * 1024 * 1024


# A page: rows of (id, content, embedding or None, confidence, tags JSON, metadata JSON,
# memory_type, created_at, decay_rate, state), and the associations of those memories that
# are the source of any: {id: [(target, strength, type, reason), ...]}.
Row = tuple[Any, ...]
Edges = dict[str, list[tuple[str, float, int, str]]]
_FETCH = 100  # rows per fetch: a page is cut on its byte size between two fetches


def export_pages(conn: sqlite3.Connection, space: str, since: float | None,
                 embeddings: bool, page_size: int) -> Iterator[tuple[int, list[Row], Edges]]:
    """(total, rows, edges) for every page of the space's visible memories, all read in
    one transaction on `conn` (which the caller owns and closes). `total` is the number of
    memories the whole export yields; the only page of an empty export is empty."""
    size = max(1, min(page_size or DEFAULT_PAGE, MAX_PAGE))
    # "+space": walk the table in rowid order; through the (space, state) index SQLite
    # would sort every row of the space in memory first.
    where = "+space = ? AND suppressed = 0"
    args: list[Any] = [space]
    if since is not None:
        where += " AND created_at >= ?"
        args.append(since)
    emb = "embedding" if embeddings else "NULL"
    conn.execute("BEGIN")  # deferred: the snapshot is taken by the first read below
    try:
        total = conn.execute(f"SELECT count(*) FROM memories WHERE {where[1:]}",
                             args).fetchone()[0]
        cur = conn.execute(
            f"SELECT id, content, {emb}, confidence, tags, metadata, memory_type, created_at, "
            f"decay_rate, state FROM memories WHERE {where} ORDER BY rowid", args)
        sent = False
        page: list[Row] = []
        page_bytes = 0
        while True:
            rows = cur.fetchmany(min(_FETCH, size - len(page)))
            if rows:
                page.extend(rows)
                page_bytes += sum(len(r[1]) + len(r[2] or b"") + len(r[5]) for r in rows)
            if page and (not rows or len(page) >= size or page_bytes >= MAX_PAGE_BYTES):
                yield total, page, _associations(conn, space, page)
                sent = True
                page, page_bytes = [], 0
            if not rows:
                break
        if not sent:
            yield total, [], {}
    finally:
        conn.execute("COMMIT")


def _associations(conn: sqlite3.Connection, space: str, page: list[Row]) -> Edges:
    edges: Edges = {}
    for chunk in chunks([r[0] for r in page], SQL_CHUNK):
        marks = ",".join("?" * len(chunk))
        for source, target, strength, kind, reason in conn.execute(
                "SELECT source, target, strength, type, reason FROM associations "
                f"WHERE space = ? AND source IN ({marks}) ORDER BY source, target",
                (space, *chunk)):
            edges.setdefault(source, []).append((target, strength, kind, reason))
    return edges


def op_put_associations(conn: sqlite3.Connection, space: str,
                        edges: list[tuple[str, str, float, int, str]], now: float) -> int:
    """Edges (source, target, strength, type, reason) written with exactly these values:
    an existing edge is replaced, not strengthened, so that applying an export twice
    changes nothing. Answers edges written (an edge to itself is skipped)."""
    rows = [(space, s, t, kind, strength, reason, now, now)
            for s, t, strength, kind, reason in edges if s != t]
    conn.executemany(
        "INSERT INTO associations (space, source, target, type, strength, reason, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (space, source, target) DO UPDATE SET strength = excluded.strength, "
        "type = excluded.type, reason = excluded.reason, updated_at = excluded.updated_at",
        rows)
    if rows:
        conn.execute("INSERT OR IGNORE INTO spaces (name, created_at) VALUES (?, ?)",
                     (space, now))
    return len(rows)


def list_spaces(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every space with its counts, from the counter tables (no scan of the memories), and
    the dimension of its vectors (0 before the first)."""
    spaces: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        return spaces.setdefault(name, {"name": name, "memories": 0, "suppressed": 0,
                                        "associations": 0, "created_at": 0.0, "dimension": 0})

    for name, created in conn.execute("SELECT name, created_at FROM spaces"):
        entry(name)["created_at"] = created
    for name, supp, n in conn.execute(
            "SELECT space, suppressed, total(n) FROM memory_counts GROUP BY space, suppressed"):
        if n > 0:
            entry(name)["suppressed" if supp else "memories"] += int(n)
    for name, n in conn.execute("SELECT space, n FROM association_counts WHERE n > 0"):
        entry(name)["associations"] = int(n)
    for name, dim in conn.execute("SELECT space, dim FROM space_dims"):
        if name in spaces:
            spaces[name]["dimension"] = int(dim)
    return [spaces[k] for k in sorted(spaces)]
