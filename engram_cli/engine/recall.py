"""Recall: seeds -> spreading activation -> ranking, inside one time budget.

A cue is one of three kinds (`Cue`): text, an embedding, or a context (time range,
location, participants). Each kind has its seed sources (`SeedSource`): text has the
full-text index (engine/text.py), an embedding the vector index (engine/vectors.py),
a context a filtered walk newest first. A source answers {memory rowid: relevance 0..1}
for one space; when a kind has several sources their seeds are fused (`fuse`), so a
vector index or an embedder can be added beside the text index without touching the rest
of the pipeline.

From the seeds, spreading activation follows the association edges
(engine/activation.py); the memories reached are ranked by activation x decayed
confidence (engine/forgetting.py) x a small recency boost, and cut to the limit. Rows
come from the hot tier when they can (engine/rows.py). The whole recall shares one
budget (`recall_budget_ms`): seeding and spreading stop when it runs out and the best
found so far is ranked and returned.
"""

from __future__ import annotations

import enum
import heapq
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import orjson

from engram_cli.contract import RECALL_MODES
from engram_cli.engine import rows
from engram_cli.engine.activation import path_to, spread
from engram_cli.engine.ahead import SearchAhead
from engram_cli.engine.forgetting import decayed
from engram_cli.engine.hot import HotTier, Row
from engram_cli.engine.model import MemoryRecord, content_id
from engram_cli.engine.rows import Lookup
from engram_cli.engine.rules import dimension_error
from engram_cli.engine.settings import Settings
from engram_cli.engine.text import WORD_RE, TextSeeder, word_similarity
from engram_cli.engine.unit import unit
from engram_cli.errors import InvalidArgument


@dataclass
class RecallQuery:
    """What to recall; exactly one of text, embedding or a context (time/location) is set."""

    text: str | None = None
    embedding: bytes | None = None
    similarity_threshold: float = 0.0
    time_start: float | None = None
    time_end: float | None = None
    location: str = ""
    participants: Sequence[str] = ()
    required_tags: Sequence[str] = ()
    excluded_tags: Sequence[str] = ()
    min_confidence: float = 0.0
    limit: int = 10
    spread: bool = False
    max_hops: int | None = None  # None: the server setting
    decay: float | None = None  # per-hop activation kept; None: the server setting
    threshold: float | None = None  # activation threshold; None: the server setting
    trace: bool = False
    mode: str = "hybrid"  # a text cue's seeds: hybrid, lexical or vector (MODES)
    # The caller reads total_activated, above_threshold and avg_activation: every memory a
    # spread can reach is counted. Without, spreading follows only the edges that can
    # still change the answer (the same memories and activations, found with less work).
    counts: bool = True


@dataclass
class Trace:
    memory_id: str
    activation: float
    path: list[str]
    # What made it a seed (SEED_KINDS): "lexical" (the full-text index), "vector" (the
    # vector index), "both", "context" (a context cue's filter), or "spread" (not a seed:
    # reached along associations).
    seed: str = ""


SEED_KINDS = ("lexical", "vector", "both", "context", "spread")


@dataclass
class RecallResult:
    memories: list[MemoryRecord] = field(default_factory=list)
    total_activated: int = 0
    above_threshold: int = 0
    avg_activation: float = 0.0
    elapsed_ms: float = 0.0
    activation_path: list[str] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    budget_exhausted: bool = False
    # Logged changes the vector index had not taken in when this answer used it: the
    # answer may change once it has (0: complete, or the index played no part).
    index_behind: int = 0


Seeds = tuple[dict[int, float], bool]  # ({rowid: relevance 0..1}, budget exhausted)


MODES = RECALL_MODES
# How much a vector seed's cosine similarity counts beside full-text relevance (0..1).
VECTOR_WEIGHT = 0.5
# A text cue's vector seeds in hybrid mode must be at least this similar to the cue: with
# the default model unrelated sentences score 0.0-0.17 and paraphrases from about 0.2
# ("the cottage in the Swiss mountains" ~ "a chalet high in the Alps": 0.23), so hybrid
# adds what is related and not the whole space. `--mode vector` takes any similarity.
HYBRID_MIN_SIMILARITY = 0.2
# The most a memory's score can be for its activation: confidence is at most 1 and the
# recency boost at most 5%.
RANK_CEILING = 1.05


# A recall refreshes a memory's last access only when the time since the stored one has
# moved its confidence by at least this fraction (with the default curve after about 18
# minutes, with decay_rate 2 after a minute): a refresh rewrites the memory's row on disk,
# and recalls of recent memories rewrote thousands of rows a second that changed no answer.
ACCESS_REFRESH = 0.001


def stale_access(row: Row, now: float, s: Settings) -> bool:
    """Whether a recall should write this memory's access time (ACCESS_REFRESH)."""
    # rowid, id, content, embedding, confidence, activation, decay_rate, ..., last_access
    return decayed(1.0, now - row[10], row[6], s.forgetting_exponent, s.forgetting_floor,
                   s.forgetting_scale_s) < 1.0 - ACCESS_REFRESH


class Cue(enum.Enum):
    TEXT = "text"
    EMBEDDING = "embedding"
    CONTEXT = "context"


def cue_of(q: RecallQuery) -> Cue:
    """Which kind of cue a query is (text wins over an embedding, both over a context)."""
    if q.text is not None:
        return Cue.TEXT
    if q.embedding is not None:
        return Cue.EMBEDDING
    if q.time_start is not None or q.time_end is not None or q.location or q.participants:
        return Cue.CONTEXT
    raise InvalidArgument("the cue is empty", "give a semantic query, an embedding or a context")


class SeedSource(Protocol):
    def __call__(self, look: Lookup, q: RecallQuery, want: int, limit: int, deadline: float
                 ) -> Seeds:
        """Up to `want` seeds of the visible memories of the look-up's space for the
        cue, read on its connection, stopping at the deadline (perf_counter) with what it
        has; `limit` is what the caller keeps."""
        ...


# SQLite virtual-machine steps between two looks at the deadline in an index-less
# embedding scan (embedding_scan): well under a millisecond.
SCAN_STEPS = 10_000


def text_source(seeder: TextSeeder) -> SeedSource:
    """The full-text index as a seed source."""
    def seeds(look: Lookup, q: RecallQuery, want: int, limit: int, deadline: float
              ) -> Seeds:
        return seeder.seeds(look, q.text or "", want, deadline, limit)
    return seeds


def embedding_scan(look: Lookup, q: RecallQuery, want: int, limit: int, deadline: float
                   ) -> Seeds:
    """Cosine similarity against every stored vector of the cue's size in the space, a
    memory's own or the one the server computed, without the index (while it opens after
    a start, or when it cannot be used). SQLite checks the deadline as it steps (a
    progress handler), since one step may read many rows: a statement that looked for
    memories' own vectors alone read every row of a million-memory space before its first
    answer, half a second, and found none where the server computes the vectors."""
    conn, space = look.conn, look.space
    vector = q.embedding or b""
    cue, norm = unit(np.frombuffer(vector, dtype=np.float32))
    if norm == 0:
        raise InvalidArgument("embedding cue is all zeros")
    best: dict[int, float] = {}
    exhausted = False
    conn.set_progress_handler(lambda: int(time.perf_counter() > deadline), SCAN_STEPS)
    try:
        cur = conn.execute(
            "SELECT m.rowid, m.embedding, v.vec FROM memories m LEFT JOIN vectors v "
            "ON v.rid = m.rowid WHERE m.space = ? AND m.suppressed = 0 "
            "AND (m.embedding IS NOT NULL OR v.vec IS NOT NULL)", (space,))
        while True:
            found = cur.fetchmany(8192)
            if not found:
                break
            best.update(rows.cosines(found, cue, 0.0))
            best = dict(heapq.nlargest(want, best.items(), key=itemgetter(1)))
        cur.close()
    except sqlite3.OperationalError as exc:  # the handler stopped a step: the budget
        if "interrupt" not in str(exc):
            raise
        exhausted = True  # the best of what was scanned so far
    finally:
        conn.set_progress_handler(None, 0)
    return {rid: sim for rid, sim in best.items() if sim >= q.similarity_threshold}, exhausted


def rescored(want: int) -> int:
    """Index candidates asked for `want` vector seeds: a few more than wanted, for those
    deleted or suppressed since the index took them in and for the 8-bit codes' ranking
    errors near the cut."""
    return want + max(8, want // 4)


def exactly(limit: int) -> int:
    """Of a search by vector alone (an embedding cue, `--mode vector`), how many of the
    best the index scored are scored again from their stored vectors: the 8-bit codes'
    errors near the cut moved some of the ten nearest out of the answer (recall@10 against
    exact search 0.969 against 0.983 at 200,000 memories). Two fifths more than asked for
    find as many as more did: at a million memories (400 held-out cues, limit 10) re-scoring
    10 found 0.973 of the ten nearest, 12 0.985, 14 0.987, 18 0.987. Each stored vector is
    a random page, read from disk once the machine has reclaimed it: 14 in place of 18 read
    10% fewer pages a cold recall."""
    return limit + max(4, 2 * limit // 5)


def vector_seeds(index: Any, look: Lookup, cue: Any, want: int, floor: float,
                 ahead: SearchAhead | None = None,
                 unsettled: AbstractSet[int] | None = None, exact: int = 0,
                 approximate: bool = False) -> dict[int, float]:
    """Nearest neighbours from the vector index that are still there, visible and in this
    space: the index only proposes, so nothing deleted or suppressed comes back from it.
    `unsettled` (Indexer.unsettled): the memories whose changes the index has yet to take
    in; each of those is re-read from SQLite and scored with its stored vector, so nothing
    changed comes back with its old vector. The others keep the index's scores (8-bit
    codes in a coded store), and their rows are not read: a random page each, the most a
    recall read from disk once the machine had reclaimed the store's pages; except the
    `exact` best of them, scored again from their stored vectors. None: every candidate
    is re-read and scored exactly. `ahead`: where the search may have been started;
    `approximate`: a hybrid recall's, of a large store's nearest lists (engine/ivf.py)."""
    conn, space = look.conn, look.space
    if ahead is not None:
        found = ahead.search(index, space, cue, rescored(want), approximate)
    else:
        found = _search(index, space, cue, rescored(want), approximate)
    if not found:
        return {}
    if unsettled is None:
        out = rows.similarities(conn, space, [rid for rid, _ in found], cue, floor)
    else:
        seen = look.visible(rid for rid, _ in found if rid not in unsettled)
        out = {rid: sim for rid, sim in found if rid in seen and sim > floor}
        if exact:  # visible, and their vectors are the index's: read those alone
            top = [rid for rid, _ in sorted(out.items(), key=itemgetter(1),
                                            reverse=True)[:exact]]
            for rid in top:
                out.pop(rid)
            out.update(rows.cosines(rows.stored_vectors(conn, top), cue, floor))
        changed = [rid for rid, _ in found if rid in unsettled]
        if changed:  # re-read whole: still there, visible, with which vector
            out.update(rows.similarities(conn, space, changed, cue, floor))
    best = sorted(out.items(), key=itemgetter(1), reverse=True)[:want]
    return dict(best)


# A recall takes a second thread for its scan (engine/ivf.py, engine/ahead.py) only once
# no two recalls have run at once for this long: a lone client's recalls, one after the
# other, never overlap, while two clients' overlap many times a second. Gated on no other
# recall under way at the moment alone, two clients (a million memories, servers up
# together, windows alternated) got 0.87-0.92x the hybrid recalls a second of the version
# before with a hybrid recall's thread helping its scan; with this gate 0.97-1.02x, and
# 1.05-1.21x the embedding-cue recalls a second of the split gated on the moment (four
# clients: 1.07x, as without it).
QUIET_S = 1.0


class _Running:
    """Recalls under way in this process. A search may hand half its scan to a second
    thread only while its recall is the only one, and has been (`quiet`; engine/ivf.py,
    engine/ahead.py): with four clients recalling at once, handing it over whenever no
    other scan was under way served 0.83x the embedding recalls a second (a million
    memories, servers alternated)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self._together = -QUIET_S  # when two or more were last under way (monotonic)

    @contextmanager
    def one(self) -> Iterator[None]:
        with self._lock:
            self.count += 1
            if self.count > 1:
                self._together = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1

    def quiet(self) -> bool:
        """No other recall under way, nor any two at once for QUIET_S."""
        return self.count <= 1 and time.monotonic() - self._together > QUIET_S


RUNNING = _Running()


def _search(index: Any, space: str, cue: Any, k: int, approximate: bool = False) -> Any:
    return index.search(space, cue, k, split=RUNNING.quiet(), approximate=approximate)


def index_cue(ix: Any, space: str, text: str, held: int | None) -> Any:
    """A text cue's vector for this space's index, or None when it cannot be compared: no
    model or index yet, or a space of the client's own vectors of another size (the
    server's text cues then seed by words alone)."""
    if ix is None or not ix.ready.is_set():
        return None
    cue = ix.embed_cue(text)
    if cue is None or len(cue) != (held or len(cue)) or ix.index.dim(space) not in (
            None, len(cue)):
        return None
    return cue


def _no_text_vectors(ix: Any, space: str, held: int | None) -> None:
    """Raise InvalidArgument when a text cue asked to seed by vector alone cannot be: the
    server computes no vectors, or the space holds the client's own of another size (an
    empty answer would look like "nothing is similar"). Otherwise (the index still opening,
    a cue of no known word) the answer is simply empty."""
    if ix is None or not ix.ready.is_set():
        return
    other = "recall by words with mode lexical or hybrid"
    if ix.model is None:
        raise InvalidArgument(
            "recall mode vector needs a text cue's vector, and this server computes none "
            "(embedding_model is \"none\")", f"send an embedding cue, or {other}")
    if held is not None and held != ix.model.dim:
        raise InvalidArgument(
            f"space {space!r} holds {held}-dimensional vectors and the server's model "
            f"{ix.model.name!r} gives {ix.model.dim}: a text cue cannot be compared with "
            "them", f"send a {held}-dimensional embedding cue, or {other}")


def index_source(indexer: Callable[[], Any], ahead: SearchAhead | None = None) -> SeedSource:
    """The vector index as a seed source: an embedding cue's own vector, or a text cue
    embedded with the server's model. Falls back to a scan while the index is not open."""
    def seeds(look: Lookup, q: RecallQuery, want: int, limit: int, deadline: float
              ) -> Seeds:
        ix = indexer()
        conn, space = look.conn, look.space
        held = rows.space_dimension(conn, space)
        if q.text is not None:
            cue = index_cue(ix, space, q.text, held)
            if cue is None:
                if q.mode == "vector":
                    _no_text_vectors(ix, space, held)
                return {}, False
            floor = HYBRID_MIN_SIMILARITY if q.mode == "hybrid" else 0.0
            hybrid = q.mode == "hybrid"
            return vector_seeds(ix.index, look, cue, want, floor, ahead,
                                ix.unsettled(conn), 0 if hybrid else exactly(limit),
                                approximate=hybrid), False
        cue = np.frombuffer(q.embedding or b"", dtype=np.float32)
        if held is not None and len(cue) != held:
            raise InvalidArgument(
                dimension_error(len(cue), space, held, "embedding cue"),
                f"send a {held}-dimensional vector")
        if ix is None or not ix.ready.is_set() or ix.index.dim(space) is None:
            return embedding_scan(look, q, want, limit, deadline)
        cue, norm = unit(cue)
        if norm == 0:
            raise InvalidArgument("embedding cue is all zeros")
        return vector_seeds(ix.index, look, cue, want, q.similarity_threshold,
                            unsettled=ix.unsettled(conn), exact=exactly(limit)), False
    return seeds


def fuse(lexical: dict[int, float], vector: dict[int, float],
         weight: float = VECTOR_WEIGHT) -> dict[int, float]:
    """One seed list from the full-text and the vector seeds: relevance = lexical relevance
    + `weight` x cosine similarity, scaled so the best is 1.

    Reciprocal rank fusion (the usual default) was tried first: it ranks by position only,
    so a memory the vector index does not hold yet (the indexer runs behind an import) fell
    below partial word matches that both lists held, and the README's demo, run right
    after its import, answered a memory about a storm for "espresso machine leaking
    water". A weighted sum keeps a strong word match on top and lets a close paraphrase in."""
    scores = dict(lexical)
    for rid, sim in vector.items():
        scores[rid] = scores.get(rid, 0.0) + weight * sim
    if not scores:
        return {}
    top = max(scores.values())
    return {rid: score / top for rid, score in scores.items()} if top > 0 else scores


def context_seeds(look: Lookup, q: RecallQuery, want: int, limit: int, deadline: float
                  ) -> Seeds:
    """Memories in the time range, at the location, with the participants: newest first."""
    conn, space = look.conn, look.space
    sql = "SELECT rowid, metadata, tags FROM memories WHERE space = ? AND suppressed = 0"
    args: list[Any] = [space]
    if q.time_start is not None:
        sql += " AND created_at >= ?"
        args.append(q.time_start)
    if q.time_end is not None:
        sql += " AND created_at <= ?"
        args.append(q.time_end)
    sql += " ORDER BY created_at DESC"
    seeds: dict[int, float] = {}
    participants = {p.lower() for p in q.participants}
    for n, (rowid, metadata, tags) in enumerate(conn.execute(sql, args)):
        if n % 1024 == 1023 and time.perf_counter() > deadline:
            return seeds, True
        if q.location or participants:
            meta = orjson.loads(metadata)
            if q.location and meta.get("location", "").lower() != q.location.lower():
                continue
            if participants:
                who = {t.lower() for t in orjson.loads(tags)}
                who |= {w.strip().lower() for w in meta.get("who", "").split(",")}
                if not participants & who:
                    continue
        seeds[rowid] = 1.0
        if len(seeds) >= want:
            break
    return seeds, False


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction around a recall's statements: they see one state of the store,
    and the connection keeps its page cache from one to the next. Each statement alone is
    its own transaction, and a commit in between (recall's own access times, written after
    every recall) makes SQLite drop the whole cache: the next statement read every page of
    its B-tree path again."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")  # reads only: this ends the snapshot


class Recaller:
    """The read side of the store: get by id, recall, recognize."""

    def __init__(self, reader: Callable[[], sqlite3.Connection], hot: HotTier,
                 text: TextSeeder, settings: Callable[[], Settings],
                 clock: Callable[[], float],
                 recalled: Callable[[str, list[str], list[str]], None],
                 indexer: Callable[[], Any] = lambda: None) -> None:
        # recalled(space, ids, stale): told what each recall returned (co-recall), and
        # which of those need their access time written (stale_access).
        self._reader = reader
        self._hot = hot
        self._settings = settings
        self._clock = clock
        self._recalled = recalled
        self._indexer = indexer
        self._text = text
        self._ahead = SearchAhead()
        vectors = index_source(indexer, self._ahead)
        self.sources: dict[Cue, list[SeedSource]] = {
            Cue.TEXT: [text_source(text), vectors],
            Cue.EMBEDDING: [vectors],
            Cue.CONTEXT: [context_seeds],
        }

    def close(self) -> None:
        self._ahead.close()
        self._text.close()

    def get(self, space: str, ids: Sequence[str], include_suppressed: bool = False
            ) -> list[MemoryRecord]:
        now, s, conn = self._clock(), self._settings(), self._reader()
        if include_suppressed:
            found = rows.suppressed_too(conn, space, ids)
        else:
            found = rows.rows_by_id(conn, self._hot, space, ids, self._hot.epoch())
        return [rows.row_to_record(found[i], now, s) for i in ids if i in found]

    def seeds(self, look: Lookup, q: RecallQuery, want: int, limit: int, deadline: float,
              origin: dict[int, str] | None = None) -> Seeds:
        """The cue's seeds; with `origin`, also which index proposed each (SEED_KINDS)."""
        conn, space = look.conn, look.space
        kind = cue_of(q)
        sources = self.sources[kind]
        alone = {Cue.TEXT: q.mode, Cue.EMBEDDING: "vector", Cue.CONTEXT: "context"}[kind]
        if kind is Cue.TEXT:
            if q.mode not in MODES:
                raise InvalidArgument(f"recall mode {q.mode!r} is not one of "
                                      f"{', '.join(MODES)}")
            # lexical: the full-text index; vector: the vector index; hybrid: both, fused.
            sources = {"lexical": sources[:1], "vector": sources[1:]}.get(q.mode, sources)
        if len(sources) == 1:
            found = sources[0](look, q, want, limit, deadline)
            if origin is not None:
                origin.update(dict.fromkeys(found[0], alone))
            return found
        # hybrid: the vector index's search starts on another core (engine/ahead.py) while
        # the full-text seeds are read, then the vector seeds, fused.
        cue = index_cue(self._indexer(), space, q.text or "", rows.space_dimension(conn, space))
        if cue is not None:
            index = self._indexer().index
            self._ahead.start(index, space, cue, rescored(want), approximate=True)
            look.similarity = lambda rids: index.scores(space, rids, cue)
        try:
            lexical, cut_lexical = sources[0](look, q, want, limit, deadline)
            vector, cut_vector = sources[1](look, q, want, limit, deadline)
        finally:
            self._ahead.clear()
        if origin is not None:
            # What each index proposed, before the full-text seeds get their similarities.
            origin.update(dict.fromkeys(lexical, "lexical"))
            origin.update({rid: "both" if rid in lexical else "vector" for rid in vector})
        self._complete(conn, space, q, lexical, vector)
        return fuse(lexical, vector), cut_lexical or cut_vector

    def _complete(self, conn: sqlite3.Connection, space: str, q: RecallQuery,
                  lexical: dict[int, float], vector: dict[int, float]) -> None:
        """Give every full-text seed its vector similarity too, not only those the vector
        search proposed: a word match the index has not reached yet (it runs behind an
        import) or that fell just outside the index's candidates would otherwise lose to
        weaker matches that have one, and the answer would change as the index fills.
        Those the index holds, and whose changes it has taken in, are scored by it; the
        others from their stored vectors, or embedded now."""
        ix = self._indexer()
        missing = [rid for rid in lexical if rid not in vector]
        if not missing or ix is None or ix.model is None or not q.text:
            return
        cue = ix.embed_cue(q.text)
        if cue is None:
            return
        unsettled = ix.unsettled(conn)
        if unsettled is not None:
            held = ix.index.scores(space, [r for r in missing if r not in unsettled], cue)
            vector.update((r, sim) for r, sim in held.items() if sim > HYBRID_MIN_SIMILARITY)
            missing = [r for r in missing if r not in held]
        vector.update(rows.similarities(conn, space, missing, cue, HYBRID_MIN_SIMILARITY,
                                        embed=ix.model.embed))

    def recall(self, space: str, q: RecallQuery) -> RecallResult:
        """Seeds -> spreading activation along associations -> rank by activation x
        current confidence -> limit."""
        started = time.perf_counter()
        conn = self._reader()
        with RUNNING.one(), read_snapshot(conn):
            return self._recall(conn, space, q, started)

    def _recall(self, conn: sqlite3.Connection, space: str, q: RecallQuery, started: float
                ) -> RecallResult:
        s = self._settings()
        now = self._clock()
        # Each candidate is looked up once a recall: its seeds' checks and the rankings.
        look = Lookup(conn, space, self._hot, self._hot.epoch())
        deadline = started + s.recall_budget_ms / 1000.0
        limit = max(1, min(q.limit, 100_000))
        want = max(limit * 3, 32)
        origin: dict[int, str] | None = {} if q.trace else None
        seeds, exhausted = self.seeds(look, q, want, limit, deadline, origin)
        threshold = s.threshold if q.threshold is None else q.threshold
        hops = s.max_hops if q.max_hops is None else q.max_hops
        per_hop = s.decay if q.decay is None else q.decay
        # Everything below is keyed by memory rowid; ids come with the rows. Seeds are
        # visible memories of this space already.
        activations = dict(seeds)
        parent: dict[int, int] = {}
        if q.spread and hops > 0 and activations and not exhausted:
            useful = None
            if not q.counts:
                def useful(act: dict[int, float]) -> float:
                    return self._useful(look, act, threshold, q, limit, now, s)
            activations, parent, exhausted = spread(
                conn, activations, hops, per_hop, threshold, deadline, useful)
        total = len(activations)
        above = {rid: a for rid, a in activations.items() if a >= threshold}
        top, found = self._rank(look, above, q, limit, now, s)
        results = []
        for _, rid, a in top:
            rec = rows.row_to_record(found[rid], now, s)
            rec.activation = a
            results.append(rec)
        ids = [r.id for r in results]
        self._recalled(space, ids, [rec.id for (_, rid, _), rec in zip(top, results, strict=True)
                                    if stale_access(found[rid], now, s)])
        result = RecallResult(
            memories=results,
            total_activated=total,
            above_threshold=len(above),
            avg_activation=(sum(above.values()) / len(above)) if above else 0.0,
            budget_exhausted=exhausted,
            index_behind=self._index_behind(conn, q),
        )
        if results:
            paths = {rid: path_to(rid, parent) for _, rid, _ in (top if q.trace else top[:1])}
            names = rows.ids_of(conn, found, {r for p in paths.values() for r in p})
            named = {rid: [names.get(r, "?") for r in p] for rid, p in paths.items()}
            result.activation_path = named[top[0][1]]
            if q.trace:
                seeded = origin or {}
                result.traces = [Trace(rec.id, rec.activation, named[rid],
                                       seeded.get(rid, "spread") if rid in seeds else "spread")
                                 for rec, (_, rid, _) in zip(results, top, strict=True)]
        result.elapsed_ms = (time.perf_counter() - started) * 1000.0
        return result

    def _index_behind(self, conn: sqlite3.Connection, q: RecallQuery) -> int:
        """How far behind the vector index was, when it took part in this answer."""
        ix = self._indexer()
        if ix is None:
            return 0
        kind = cue_of(q)
        if kind is Cue.CONTEXT or (kind is Cue.TEXT and (q.mode == "lexical"
                                                          or ix.model is None)):
            return 0
        return int(ix.lag(conn))

    def _useful(self, look: Lookup, act: dict[int, float], threshold: float, q: RecallQuery,
                limit: int, now: float, s: Settings) -> float:
        """The activation a memory needs to still make the answer, given these activations:
        the answer's `limit`-th score so far bounds the final one from below (spreading only
        adds memories and raises activations), and a memory scores at most its activation
        x RANK_CEILING. Strictly below it a memory cannot get in, even on a tie."""
        top, _ = self._rank(look, {r: a for r, a in act.items() if a >= threshold},
                            q, limit, now, s, rows_wanted=False)
        if len(top) < limit:
            return 0.0
        return top[-1][0] / (RANK_CEILING * (1.0 + 1e-9))

    def _rank(self, look: Lookup, above: dict[int, float], q: RecallQuery, limit: int,
              now: float, s: Settings, rows_wanted: bool = True
              ) -> tuple[list[tuple[float, int, float]], dict[int, Row]]:
        """The `limit` best by activation x current confidence x recency, best first, and
        the rows of those (of more when tags filter).

        Candidates are scored in activation order and scoring stops once no unscored one
        can beat the current top `limit`: confidence is at most 1 and the recency boost at
        most 5%, so activation x 1.05 bounds a score. A spread reaching hundreds of
        memories then scores a few dozen. What a score needs comes from the index of
        visible memories (rows.Lookup); only the answer's rows are read, unless tags
        filter (they are in the rows alone). A spread's candidates had their rows read,
        16-28 a recall, 3/4 of the pages a hybrid recall read from disk at a million
        memories once the machine had reclaimed them."""
        exponent, floor, scale = s.forgetting_exponent, s.forgetting_floor, s.forgetting_scale_s
        required = set(q.required_tags)
        excluded = set(q.excluded_tags)
        tagged = bool(required or excluded)
        conn, space, epoch = look.conn, look.space, look.epoch
        order = sorted(above.items(), key=itemgetter(1), reverse=True)
        best: list[tuple[float, int, float]] = []  # min-heap of the top `limit`
        found: dict[int, Row] = {}
        step = max(limit, 16)
        for i in range(0, len(order), step):
            if len(best) >= limit and min(1.0, order[i][1]) * RANK_CEILING < best[0][0]:
                break
            batch = order[i : i + step]
            rids = [r for r, _ in batch]
            if tagged:
                found.update(rows.rows_by_rowid(conn, self._hot, space, rids, epoch))
                standing = {rid: (found[rid][4], found[rid][6], found[rid][10])
                            for rid in rids if rid in found}
            else:
                standing = {rid: (c, d, t) for rid, c, _, d, t in look.visible(rids).values()}
            for rid, a in batch:
                values = standing.get(rid)
                if values is None:
                    continue  # suppressed, or gone since the edge was followed
                confidence, decay_rate, last_access = values
                elapsed = now - last_access
                conf = decayed(confidence, elapsed, decay_rate, exponent, floor, scale)
                if conf < q.min_confidence:
                    continue
                if tagged:
                    tags = set(orjson.loads(found[rid][11]))
                    if not required.issubset(tags) or excluded & tags:
                        continue
                # A small recency boost: at most 5%, fading over days since the last access.
                recency = 1.0 + 0.05 / (1.0 + max(0.0, elapsed) / 86_400.0)
                a = min(1.0, a)
                item = (a * conf * recency, rid, a)
                if len(best) < limit:
                    heapq.heappush(best, item)
                elif item > best[0]:
                    heapq.heapreplace(best, item)
        top = sorted(best, reverse=True)
        if not tagged and rows_wanted:
            found = rows.rows_by_rowid(conn, self._hot, space, [rid for _, rid, _ in top],
                                       epoch)
            top = [t for t in top if t[1] in found]  # one read snapshot: all of them
        return top, found

    def similar(self, space: str, rec: MemoryRecord, threshold: float, most: int = 5
                ) -> list[tuple[float, str]]:
        """The `most` memories most similar to a stored one (cosine for embeddings, word
        overlap for text) with similarity at least `threshold`: (similarity, id), best
        first."""
        if rec.embedding:
            q = RecallQuery(embedding=rec.embedding, limit=6, similarity_threshold=threshold)
        elif rec.content:
            # Candidates by text relevance, however weak: similarity decides below.
            q = RecallQuery(text=rec.content, limit=10, threshold=0.0, mode="lexical")
        else:
            return []
        scored = []
        for other in self.recall(space, q).memories:
            if other.id == rec.id:
                continue
            sim = other.activation if rec.embedding else word_similarity(rec.content,
                                                                         other.content)
            if sim >= threshold:
                scored.append((sim, other.id))
        scored.sort(reverse=True)
        return scored[:most]

    def _unusable(self, space: str, embedding: bytes) -> tuple[str, str]:
        """Why an embedding to recognize cannot be compared with this space's (its size,
        or all zeros), and what to send instead; ("", "") when it can."""
        vector = np.frombuffer(embedding, dtype=np.float32)
        held = rows.space_dimension(self._reader(), space)
        if held is not None and len(vector) != held:
            return (dimension_error(len(vector), space, held),
                    f"send a {held}-dimensional vector, or the memory's content")
        if not vector.any():
            return "embedding is all zeros", "send a vector, or the memory's content"
        return "", ""

    def recognize(self, space: str, content: str = "", embedding: bytes = b""
                  ) -> tuple[float, list[MemoryRecord]]:
        """How familiar is this? Answers (familiarity 0..1, the most similar memories): by
        the words of `content` and by the nearness of `embedding`, whichever is more
        familiar when both are given (a whole memory: an upstream client's memory is
        mostly known by its vector, whatever its text)."""
        if not content and not embedding:
            raise InvalidArgument("nothing to recognize",
                                  "send content, an embedding or a memory")
        best, similar = 0.0, []
        if content:
            exact = self.get(space, [content_id(content)])
            if exact:
                return 1.0, exact
            result = self.recall(space, RecallQuery(text=content, limit=5, mode="lexical"))
            words = set(WORD_RE.findall(content.lower()))
            for rec in result.memories:
                other = set(WORD_RE.findall(rec.content.lower()))
                if words or other:
                    best = max(best, len(words & other) / len(words | other))
            similar = result.memories
        if embedding:
            why, instead = self._unusable(space, embedding)
            if why and not content:
                raise InvalidArgument(why, instead)
            try:
                by_vector = None if why else self.recall(
                    space, RecallQuery(embedding=embedding, limit=5))
            except InvalidArgument:
                if not content:
                    raise
                by_vector = None
            if by_vector is None:
                # A memory whose text speaks for it and whose vector cannot (all zeros, as
                # upstream's Recall answers carry, or of another size than the space's).
                return best, similar
            near = max((r.activation for r in by_vector.memories), default=0.0)
            if near > best or not similar:
                best, similar = max(best, near), by_vector.memories
        return best, similar
