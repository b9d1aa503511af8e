"""Reading memory rows: by id or rowid, from the hot tier when they can, else from disk
(and then they go hot), and rows -> MemoryRecords with the forgetting curve applied.

Also the SQL helpers reads and writes share (chunks under SQLite's parameter limit, the
key-index look-up by id) and the store's counts. Only visible (not suppressed) rows are
ever cached in the hot tier.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from engram_cli.engine.forgetting import decayed
from engram_cli.engine.hot import HotTier, Row, Standing
from engram_cli.engine.inlist import in_list
from engram_cli.engine.model import MemoryRecord, MemoryType, State, memory_key
from engram_cli.engine.settings import Settings

SQL_CHUNK = 900  # stays under SQLite's host-parameter limit with room to spare
ID_CHUNK = SQL_CHUNK // 2  # ids looked up by key and id: two values each
COLUMNS = (
    "rowid, id, content, embedding, confidence, activation, decay_rate, memory_type, "
    "state, created_at, last_access, tags, metadata"
)


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def by_ids(space: str, ids: Sequence[str]) -> tuple[str, list[Any]]:
    """A WHERE condition, and its values, for these ids of a space: found through the key
    index ("+space": not through the (space, state) index)."""
    marks, padded = in_list(ids, ID_CHUNK)
    return (f"key IN ({marks}) AND +space = ? AND id IN ({marks})",
            [*(memory_key(space, mid) for mid in padded), space, *padded])


def row_to_record(row: Sequence[Any], now: float, s: Settings) -> MemoryRecord:
    (_rowid, mid, content, emb, conf, activation, decay_rate, mtype, state, created,
     last_access, tags, metadata) = row
    return MemoryRecord(
        id=mid,
        content=content,
        embedding=emb or b"",
        confidence=decayed(conf, now - last_access, decay_rate, s.forgetting_exponent,
                           s.forgetting_floor, s.forgetting_scale_s),
        tags=orjson.loads(tags),
        metadata=orjson.loads(metadata),
        memory_type=mtype,
        decay_rate=decay_rate,
        created_at=created,
        activation=activation,
        state=state,
        last_access=last_access,
    )


def suppressed_too(conn: sqlite3.Connection, space: str, ids: Sequence[str]
                   ) -> dict[str, Row]:
    """Rows by id, suppressed ones included: straight from disk, never cached."""
    found: dict[str, Row] = {}
    for chunk in chunks(list(ids), ID_CHUNK):
        where, args = by_ids(space, chunk)
        for row in conn.execute(f"SELECT {COLUMNS} FROM memories WHERE {where}", args):
            found[row[1]] = row
    return found


def rows_by_id(conn: sqlite3.Connection, hot: HotTier, space: str, ids: Iterable[str],
               epoch: int) -> dict[str, Row]:
    rows, missing = hot.get_many(space, ids)
    if missing:
        loaded: list[Row] = []
        for chunk in chunks(missing, ID_CHUNK):
            where, args = by_ids(space, chunk)
            loaded.extend(conn.execute(
                f"SELECT {COLUMNS} FROM memories WHERE {where} AND suppressed = 0", args))
        hot.put_many(space, loaded, epoch)
        rows.update((r[1], r) for r in loaded)
    return rows


def rows_by_rowid(conn: sqlite3.Connection, hot: HotTier, space: str, rowids: Iterable[int],
                  epoch: int) -> dict[int, Row]:
    # "+space": without the plus SQLite's planner prefers the (space, state) index,
    # which scans the whole space instead of looking up a few rowids.
    found, missing = hot.get_rowids(rowids)
    rows = {rid: row for rid, (sp, row) in found.items() if sp == space}
    if missing:
        loaded: list[Row] = []
        for chunk in chunks(missing, SQL_CHUNK):
            marks, values = in_list(chunk, SQL_CHUNK)
            loaded.extend(conn.execute(
                f"SELECT {COLUMNS} FROM memories WHERE rowid IN ({marks}) AND +space = ? "
                f"AND suppressed = 0", (*values, space)))
        hot.put_many(space, loaded, epoch)
        rows.update((r[0], r) for r in loaded)
    return rows


def ids_of(conn: sqlite3.Connection, rows: dict[int, Row], rowids: set[int]) -> dict[int, str]:
    """The ids of these rowids: from rows already read, else from disk."""
    out = {rid: rows[rid][1] for rid in rowids if rid in rows}
    missing = [rid for rid in rowids if rid not in out]
    for chunk in chunks(missing, SQL_CHUNK):
        marks, values = in_list(chunk, SQL_CHUNK)
        out.update(conn.execute(
            f"SELECT rowid, id FROM memories WHERE rowid IN ({marks})", values).fetchall())
    return out


def counts(conn: sqlite3.Connection, space: str | None) -> dict[str, Any]:
    """Counts and averages for one space, or all spaces when space is None: from the
    counter tables the writes keep (migration 005), never a scan of the memories."""
    where, args = ("", [])
    if space is not None:
        where, args = " WHERE space = ?", [space]
    total = suppressed = 0
    sum_conf = sum_act = 0.0
    by_type: dict[str, int] = {}
    by_state: dict[str, int] = {}
    per_space: dict[str, int] = {}
    for sp, mtype, st, supp, n, sc, sa in conn.execute(
            "SELECT space, memory_type, state, suppressed, n, sum_confidence, sum_activation "
            "FROM memory_counts" + where, args):
        if n <= 0:
            continue
        if supp:
            suppressed += n
            continue
        total += n
        sum_conf += sc
        sum_act += sa
        t, s_ = MemoryType(mtype).name.lower(), State(st).name.lower()
        by_type[t] = by_type.get(t, 0) + n
        by_state[s_] = by_state.get(s_, 0) + n
        per_space[sp] = per_space.get(sp, 0) + n
    oldest = newest = None
    for sp, lo, hi, stale in conn.execute(
            "SELECT space, oldest, newest, stale FROM memory_bounds" + where, args).fetchall():
        if sp not in per_space:
            continue
        if stale:  # the memory that set a bound left: this space's bounds, from its rows
            lo, hi = conn.execute("SELECT min(created_at), max(created_at) FROM memories "
                                  "WHERE space = ? AND suppressed = 0", (sp,)).fetchone()
        if lo is not None:
            oldest = lo if oldest is None else min(oldest, lo)
            newest = hi if newest is None else max(newest, hi)
    assoc = conn.execute("SELECT total(n) FROM association_counts" + where,
                         args).fetchone()[0]
    return {
        "total_memories": total,
        "avg_activation": sum_act / total if total else 0.0,
        "avg_confidence": sum_conf / total if total else 0.0,
        "oldest_memory": oldest,
        "newest_memory": newest,
        "by_type": by_type,
        "by_state": by_state,
        "spaces": per_space,
        "total_associations": int(assoc),
        "suppressed": suppressed,
    }


class Lookup:
    """One recall's look-ups in the index of visible memories (space, suppressed, rowid,
    confidence, key, decay rate, last access: migrations 010, 012): whether a candidate is a
    visible memory of the recall's space, and all that ranking needs of it without tags to
    filter on (`Standing`). Those pages stay in the page cache, where a memory's own row is
    a random 16-KiB page of the table each, read back from disk once the machine has
    reclaimed them: most of what a recall read at a million memories. The seeds' checks
    (some 170 candidates a hybrid recall) and ranking ask the same index about mostly the
    same memories, so each is looked up once a recall: from what the hot tier keeps of
    memories looked up before, else from the index; what the index answers is kept in the
    hot tier, read at the recall's `epoch`, so a cue asked again (after an idle too, when
    the index's pages have been reclaimed) looks nothing up. Without `hot`, everything is
    looked up in the index."""

    def __init__(self, conn: sqlite3.Connection, space: str, hot: HotTier | None = None,
                 epoch: int = 0) -> None:
        self.conn = conn
        self.space = space
        self.hot = hot
        self.epoch = epoch
        self._known: dict[int, Standing | None] = {}  # None: not a visible memory here
        # {rowid: similarity to the cue's vector} of those of the rowids the vector index
        # holds, when the recall has one (hybrid): what breaks ties between word matches.
        self.similarity: Callable[[list[int]], dict[int, float]] | None = None

    def visible(self, rids: Iterable[int]) -> dict[int, Standing]:
        """{rowid: (rowid, stored confidence, key, decay rate, last access)} of those of
        these rowids that are visible memories of this space."""
        rids = list(rids)
        known = self._known
        new = [r for r in dict.fromkeys(rids) if r not in known]
        if new:
            known.update(dict.fromkeys(new))
            known.update(self._look(new))
        return {r: v for r in rids if (v := known[r]) is not None}

    def _look(self, rids: list[int]) -> dict[int, Standing]:
        space = self.space
        out: dict[int, Standing] = {}
        if self.hot is not None:
            out, rids = self.hot.get_standing(space, rids)
        read: dict[int, Standing] = {}
        for part in chunks(rids, SQL_CHUNK):
            marks, values = in_list(part, SQL_CHUNK)
            read.update({v[0]: v for v in self.conn.execute(
                f"SELECT rowid, confidence, key, decay_rate, last_access FROM memories "
                f"INDEXED BY memories_visible WHERE space = ? AND suppressed = 0 "
                f"AND rowid IN ({marks})", (space, *values))})
        if self.hot is not None:
            self.hot.put_standing(space, read, self.epoch)
        out.update(read)
        return out


def store_identity(conn: sqlite3.Connection) -> str:
    """This database's random id (migration 013)."""
    return str(conn.execute("SELECT id FROM store_identity").fetchone()[0])


def space_dimension(conn: sqlite3.Connection, space: str) -> int | None:
    """The dimension a space holds (migration 007); None before its first vector."""
    row = conn.execute("SELECT dim FROM space_dims WHERE space = ?", (space,)).fetchone()
    return int(row[0]) if row else None


def cosines(found: Iterable[tuple[int, bytes | None, bytes | None]], cue: Any,
            floor: float) -> dict[int, float]:
    """{rowid: cosine similarity to the unit `cue`} of the stored vectors more than `floor`
    similar, from (rowid, the memory's own float32 vector, the one the server computed in
    float16) rows: the own one when there is one, a blob of another dimension left out.
    One matrix product per kind, not numpy calls per row (a third of an embedding recall's
    time at 64 candidates)."""
    import numpy as np

    from engram_cli.engine.unit import lengths

    f32, f16 = len(cue) * 4, len(cue) * 2
    own: list[tuple[int, bytes]] = []
    computed: list[tuple[int, bytes]] = []
    for rid, mine, made in found:
        if mine:
            if len(mine) == f32:
                own.append((rid, mine))
        elif made and len(made) == f16:
            computed.append((rid, made))
    out: dict[int, float] = {}
    for kind, dtype in ((own, "<f4"), (computed, "<f2")):
        if not kind:
            continue
        mat = np.frombuffer(b"".join(b for _, b in kind), dtype=dtype).astype(
            np.float32).reshape(len(kind), len(cue))
        norms = lengths(mat)
        with np.errstate(over="ignore", invalid="ignore"):  # checked on the next line
            dots = (mat @ np.asarray(cue, dtype=np.float32)).astype(np.float64)
        if not np.isfinite(dots).all():  # values near float32's limit
            dots = mat.astype(np.float64) @ np.asarray(cue, dtype=np.float64)
        sims = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        out.update((rid, sim) for (rid, _), sim in zip(kind, sims.tolist(), strict=True)
                   if sim > floor)
    return out


def stored_vectors(conn: sqlite3.Connection, rids: Sequence[int]
                   ) -> list[tuple[int, bytes | None, bytes | None]]:
    """(rowid, own vector, computed vector) of these memories, for `cosines`, known to be
    visible: the computed ones from `vectors`, and only the others' rows read for their
    own (a memory with its own has no computed one: migration 011)."""
    out: list[tuple[int, bytes | None, bytes | None]] = []
    for part in chunks(list(rids), SQL_CHUNK):
        marks, values = in_list(part, SQL_CHUNK)
        made = dict(conn.execute(f"SELECT rid, vec FROM vectors WHERE rid IN ({marks})",
                                 values))
        out.extend((rid, None, vec) for rid, vec in made.items())
        rest = [r for r in part if r not in made]
        if rest:
            marks, values = in_list(rest, SQL_CHUNK)
            out.extend((rid, mine, None) for rid, mine in conn.execute(
                f"SELECT rowid, embedding FROM memories WHERE rowid IN ({marks}) "
                f"AND embedding IS NOT NULL", values))
    return out


def similarities(conn: sqlite3.Connection, space: str, rids: Sequence[int], cue: Any,
                 floor: float, embed: Callable[[list[str]], Any] | None = None
                 ) -> dict[int, float]:
    """The exact cosine similarity to `cue` of each of these memories that is visible in
    this space and more than `floor` similar, from its stored vector. A memory without a
    vector yet (its text changed, or the indexer has not reached it) is left out, or, with
    `embed`, embedded now."""
    import numpy as np

    if not rids:
        return {}
    marks, values = in_list(rids, SQL_CHUNK)
    # The content only when it may be embedded here: a few hundred bytes a row less.
    content = "m.content" if embed is not None else "NULL"
    stored: list[tuple[int, bytes | None, bytes | None]] = []
    unembedded: list[tuple[int, str]] = []
    # `+m.space`: without the plus SQLite walks the space's index (every memory of the
    # space: 265 ms a recall at a million) instead of looking up these few rowids.
    for rid, mine, made, text in conn.execute(
            f"SELECT m.rowid, m.embedding, v.vec, {content} FROM memories m LEFT JOIN "
            f"vectors v ON v.rid = m.rowid WHERE m.rowid IN ({marks}) AND +m.space = ? "
            f"AND m.suppressed = 0", (*values, space)):
        if mine or made:
            stored.append((rid, mine, made))
        elif embed is not None and text:
            unembedded.append((rid, text))
    out = cosines(stored, cue, floor)
    if unembedded and embed is not None:
        for (rid, _), vec in zip(unembedded, embed([c for _, c in unembedded]), strict=True):
            sim = float(np.asarray(vec, dtype=np.float32) @ cue)  # unit vectors
            if sim > floor:
                out[rid] = sim
    return out
