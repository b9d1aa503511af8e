"""Text seeds for recall: FTS5 + bm25 with the work bounded however large the store grows.

`ORDER BY rank` over an OR of every cue word makes FTS5 score every posting of every
word; one common word ("the", "meeting") is then hundreds of thousands of bm25 calls at
a million memories. So each cue word's document frequency is looked up first (capped:
counting stops at RARE_DF + 1, so the look-up itself is bounded, and cached), and:

* rare words (in at most RARE_DF documents) are ranked by bm25, rarest first, until
  about RANK_BUDGET postings are covered: they carry nearly all of bm25's weight anyway
  (a word in 10% of the documents has a tenth of the IDF of one in 0.001%);
* common words (alone, or when the rare ones found too few) are answered from the
  newest COMMON_SCAN matches, scored by bm25: bounded, and recency is a fair tie-break
  among equally common words. All of them must match first; if that finds fewer than
  the caller's limit, the two rarest; only then any of them.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable

WORD_RE = re.compile(r"\w+", re.UNICODE)
RARE_DF = 2_000
RANK_BUDGET = 4_000
COMMON_SCAN = 1_500
MAX_TERMS = 32
_DF_CACHE_MAX = 200_000


def cue_terms(text: str, limit: int = MAX_TERMS) -> list[str]:
    seen: dict[str, None] = {}
    for w in WORD_RE.findall(text.lower()):
        seen.setdefault(w, None)
    return list(seen)[:limit]


def word_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets, 0..1 (bm25 is a ranking, not a
    similarity: on a small store a shared word's IDF is near zero)."""
    wa, wb = set(WORD_RE.findall(a.lower())), set(WORD_RE.findall(b.lower()))
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


class TextSeeder:
    """Cue text -> {rowid: relevance 0..1 (best = 1)} for one space."""

    def __init__(self, rows_written: Callable[[], int]) -> None:
        # rows_written: a counter of rows the store has written; a rare word's cached
        # frequency is re-counted once enough new rows may have changed it.
        self._rows_written = rows_written
        self._df: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._df.clear()

    def doc_freq(self, conn: sqlite3.Connection, term: str) -> int:
        """Documents containing `term`, counted up to RARE_DF + 1."""
        written = self._rows_written()
        hit = self._df.get(term)
        if hit is not None:
            df, at = hit
            # Common stays common; a rare count is re-taken after enough new rows.
            if df > RARE_DF or written - at < max(2_000, 4 * df):
                return df
        df = conn.execute(
            "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts "
            "MATCH ? LIMIT ?)", (quote(term), RARE_DF + 1)).fetchone()[0]
        with self._lock:
            if len(self._df) >= _DF_CACHE_MAX:
                self._df.clear()
            self._df[term] = (df, written)
        return int(df)

    def seeds(self, conn: sqlite3.Connection, space: str, text: str, want: int,
              deadline: float, enough: int = 1) -> tuple[dict[int, float], bool]:
        """Up to `want` seeds; relaxes the match only while fewer than `enough` are found.
        Answers (seeds, budget_exhausted)."""
        terms = cue_terms(text)
        if not terms:
            return {}, False
        dfs: dict[str, int] = {}
        for t in terms:
            dfs[t] = self.doc_freq(conn, t)
            if time.perf_counter() > deadline:
                break
        present = sorted((t for t in dfs if dfs[t] > 0), key=dfs.__getitem__)
        if not present:
            return {}, False
        rare = [t for t in present if dfs[t] <= RARE_DF]
        common = [t for t in present if dfs[t] > RARE_DF]
        ranks: dict[int, float] = {}
        if rare:
            chosen, covered = [], 0
            for t in rare:
                if chosen and covered + dfs[t] > RANK_BUDGET:
                    break
                chosen.append(t)
                covered += dfs[t]
            ranks.update(self._ranked(conn, space, " OR ".join(map(quote, chosen)), want))
        if len(ranks) < enough and common and time.perf_counter() <= deadline:
            queries = [" AND ".join(map(quote, common))]
            if len(common) > 2:
                queries.append(" AND ".join(map(quote, common[:2])))
            if len(common) > 1:
                queries.append(" OR ".join(map(quote, common)))
            for query in queries:
                for rowid, rank in self._newest(conn, space, query):
                    if rowid not in ranks:
                        ranks[rowid] = rank
                if len(ranks) >= enough or time.perf_counter() > deadline:
                    break
        if not ranks:
            return {}, time.perf_counter() > deadline
        # bm25 ranks are negative, best lowest; scale so the best seed has activation 1.
        best_first = sorted(ranks.items(), key=lambda kv: kv[1])[:want]
        best = -best_first[0][1] or 1.0
        return ({rowid: max(0.0, -rank) / best for rowid, rank in best_first},
                time.perf_counter() > deadline)

    @staticmethod
    def _ranked(conn: sqlite3.Connection, space: str, query: str, want: int
                ) -> list[tuple[int, float]]:
        # "+m.space" keeps SQLite on rowid look-ups instead of scanning the space index.
        # Rank inside the FTS table (fast path for ORDER BY rank LIMIT), then keep this
        # space's rows; widen the window if other spaces crowded it out. The query's
        # words are rare, so even the widest window scores a bounded number of rows.
        window = max(want * 4, 64)
        while True:
            rows = conn.execute(
                "SELECT f.rowid, f.rank FROM (SELECT rowid, rank FROM memories_fts "
                " WHERE memories_fts MATCH ? ORDER BY rank LIMIT ?) AS f "
                "JOIN memories m ON m.rowid = f.rowid WHERE +m.space = ? AND m.suppressed = 0",
                (query, window, space),
            ).fetchall()
            if len(rows) >= want or window > RANK_BUDGET * 4:
                return rows
            total = conn.execute(
                "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts "
                "MATCH ? LIMIT ?)", (query, window + 1)).fetchone()[0]
            if total <= window:
                return rows
            window *= 8

    @staticmethod
    def _newest(conn: sqlite3.Connection, space: str, query: str) -> list[tuple[int, float]]:
        # ORDER BY rowid DESC is FTS5's native order: it stops after COMMON_SCAN matches
        # instead of scoring them all.
        return conn.execute(
            "SELECT f.rowid, f.score FROM (SELECT rowid, bm25(memories_fts) AS score "
            " FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rowid DESC LIMIT ?) AS f "
            "JOIN memories m ON m.rowid = f.rowid WHERE +m.space = ? AND m.suppressed = 0",
            (query, COMMON_SCAN, space),
        ).fetchall()
