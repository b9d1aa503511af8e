"""Text seeds for recall: FTS5 matching with the work bounded however large the store grows.

FTS5's bm25() costs a document-size look-up per matching row (microseconds each), and
`ORDER BY rank` over an OR of every cue word scores every posting of every word: one
common word makes that hundreds of thousands of calls at a million memories. So seeds
are scored here, from postings alone, by IDF-weighted term matching: a memory's score
is the sum over the cue words it contains of log(1 + N / df(word)) (bm25 without its
term-frequency and length parts, which matter little for short memories). Each cue
word's document frequency df is counted once (capped at DF_CAP) and cached; in a store
of more than SAMPLE_SPAN memories a common word's df is estimated from the newest
SAMPLE_SPAN of them (counting "the" up to the stop line read 50,000 postings, 2-4 ms, and a
long cue of new words spent up to 47 ms counting at a million memories). And:

* rare words (in at most RARE_DF memories) are read rarest first until about
  RANK_BUDGET postings are covered: they carry nearly all the weight anyway;
* words in more than STOP_FRACTION of the memories ("the", a year) are stop words: left
  out while the cue has other words (reading their postings is most of the cost and
  they add almost nothing to a score);
* common words (alone, or when the rare ones found fewer than the caller needs) are
  read from their newest COMMON_SCAN matches only: the COMMON_AND rarest together first,
  then the two rarest together, then each alone. Bounded, and recency is a fair
  tie-break among equally common words. When those newest are all other spaces'
  memories, the space's own newest are looked for further back (at most DEEP_SCAN).
"""

from __future__ import annotations

import itertools
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engram_cli.engine.rows import Lookup
from engram_cli.engine.vocab import Snapshot, Vocabulary

# A word as the index's tokenizer (unicode61) cuts them: letters and digits, so "_" splits
# words too. Each cue word must be one token: the index keeps no positions, so a quoted
# run of several tokens (a phrase) cannot be matched.
WORD_RE = re.compile(r"[^\W_]+")
RARE_DF = 1_500
RANK_BUDGET = 3_000
COMMON_SCAN = 200
# When a store's newest matches of its common words are all other spaces' (or hidden),
# a space's own are looked for further back: at most this many matches, read this many
# at a time.
DEEP_SCAN = 65_536
DEEP_STEP = 1_024
# Common words read together at most (the rarest). FTS5 reads each one's whole doclist for
# an AND, about 0.7 ms per common word at a million memories, and the rarest four rarely
# leave more rows than all of them (hybrid recall over 500 cues at a million, interleaved:
# p99 12.1 -> 11.0 ms; synopsis -> description recall@10 among 300,000 memories unchanged:
# lexical 0.416 / 0.417, hybrid 0.463 / 0.464). A rowid bound does not shorten that read
# (the newest matches looked for past a rowid, widened until enough: 1.03 against 1.07 ms
# for four words); read in rowid order without a limit, the newest then picked in numpy,
# four words took 0.78 against 1.13 ms but a hybrid recall 1.00x at p50, 1.02x at p99.
COMMON_AND = 4
# Tied memories read past the seed cut to choose among them. Each is a row read (~8 us
# at a million memories): at 2,048 a cue whose one rare word 1,400 memories share spent
# 11 ms of its recall breaking the tie; past this many the newest win.
TIE_BREAK_EXTRA = 256
# Tied memories scored by the cue's vector to choose among them (a hybrid recall), the
# newest first: from the codes in RAM, no look-up each. Each is a random 256-byte code;
# 2,048 found no more of the packages' descriptions than 512 (recall@10 0.862 among 20,000).
TIE_SCORED = 512
DF_CAP = 100_000
# A word's df in a larger store is estimated from its matches among the newest this many
# memories (rowids), when it has at least SAMPLE_HITS of them (a rate within ~12%, which
# moves its IDF by a few percent); rarer words are counted exactly, which costs little.
SAMPLE_SPAN = 16_384
SAMPLE_HITS = 64
STOP_FRACTION = 0.05
MAX_TERMS = 32
_DF_CACHE_MAX = 200_000
# Longer words are counted each time, not cached: with the entry cap this bounds the
# cache at about 200,000 x (64 + ~150) bytes whatever cues arrive.
_DF_CACHE_TERM_MAX = 64


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


def summed(postings: list[np.ndarray], weights: list[float]) -> dict[int, float]:
    """{rowid: the sum of the weights of the posting lists it is in}. The same numbers as
    adding them up row by row in a dict: np.bincount adds in input order, list by list, from
    0.0 (a Python loop over a few thousand postings was a third of the text seeds' time)."""
    if not postings:
        return {}
    rowids = np.concatenate(postings)
    if not len(rowids):
        return {}
    each = np.repeat(np.asarray(weights, dtype=np.float64), [len(p) for p in postings])
    keys, where = np.unique(rowids, return_inverse=True)
    return dict(zip(keys.tolist(), np.bincount(where, weights=each).tolist(), strict=True))


def rowids(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> Any:
    """The rowids a query's one `group_concat(rowid)` lists, as int64, in no promised
    order: one string parsed by numpy, where a row each through Python took 3.4x as long
    (0.65 against 0.19 us a posting, 200 words of 300-1,500 memories each at a million;
    hybrid recall in one process, 1,600 cues alternated: p50 0.99x, p99 0.96x)."""
    found = conn.execute(sql, args).fetchone()[0]
    return np.fromstring(found, dtype=np.int64, sep=",") if found else _NONE


_NONE = np.empty(0, dtype=np.int64)


def best_first(scores: dict[int, float], most: int | None = None) -> list[tuple[int, float]]:
    """(rowid, score) by score, best first, ties newest (highest rowid) first; with `most`,
    only the first `most` of that order (the seed cut reads a few hundred of thousands:
    partitioning first and sorting those was 4% off the hybrid p99 at a million memories)."""
    if not scores:
        return []
    keys = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
    vals = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    if most is not None and len(keys) > most > 0:
        kth = np.partition(vals, len(vals) - most)[len(vals) - most]  # the most-th score
        above = np.flatnonzero(vals > kth)
        tied = np.flatnonzero(vals == kth)
        room = most - len(above)
        if len(tied) > room:  # the newest of those tied at the most-th score
            tied = tied[np.argpartition(-keys[tied], room - 1)[:room]]
        keep = np.concatenate([above, tied])
        keys, vals = keys[keep], vals[keep]
    order = np.lexsort((-keys, -vals))
    return list(zip(keys[order].tolist(), vals[order].tolist(), strict=True))


def quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


class TextSeeder:
    """Cue text -> {rowid: relevance 0..1 (best = 1)} for one space."""

    def __init__(self, rows_written: Callable[[], int], vocab: Vocabulary | None = None
                 ) -> None:
        # rows_written: a counter of rows the store has written; a rare word's cached
        # frequency is re-counted once enough new rows may have changed it. vocab: the
        # full-text index's word counts, taken in the background (None: each word counted).
        self._rows_written = rows_written
        self._vocab = vocab
        self._df: dict[str, tuple[int, int, int]] = {}  # term: (count, rows_written, most)
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._df.clear()

    def close(self) -> None:
        if self._vocab is not None:
            self._vocab.close()

    def doc_freq(self, conn: sqlite3.Connection, term: str, most: int = DF_CAP,
                 n_docs: int = 0, snap: Snapshot | None = None, stem: str | None = None
                 ) -> int:
        """Documents containing `term`, counted up to `most` + 1 (which then says "more
        than `most`"): from the vocabulary's snapshot `snap` when the word's `stem` is
        known, else with `n_docs` (the highest rowid) past SAMPLE_SPAN a common word's
        count is an estimate from the newest SAMPLE_SPAN rowids."""
        written = self._rows_written()
        hit = self._df.get(term)
        if hit is not None:
            df, at, upto = hit
            # A count is re-taken once enough new rows may have changed it much, or when
            # it stopped short of what the caller needs.
            if written - at < max(2_000, 4 * df) and (df <= upto or upto >= most):
                return min(df, most + 1)
        upto = most
        if snap is not None and stem is not None:
            df = snap.count(stem)
            if snap.tail_counted(n_docs, df):
                df += self._counted(conn, term, most + 1, snap.top)
            upto = max(most, df)  # the snapshot's count is whole, not cut at `most`
        else:
            sampled = (self._sampled(conn, term, most, n_docs) if n_docs > SAMPLE_SPAN
                       else None)
            df = sampled if sampled is not None else self._counted(conn, term, most + 1)
        if len(term) > _DF_CACHE_TERM_MAX:
            return min(df, most + 1)
        with self._lock:
            if len(self._df) >= _DF_CACHE_MAX:
                self._df.clear()
            self._df[term] = (df, written, upto)
        return min(df, most + 1)

    @staticmethod
    def _counted(conn: sqlite3.Connection, term: str, most: int, after: int = 0) -> int:
        """Memories past rowid `after` holding `term`, counted up to `most`."""
        if not after:
            return int(conn.execute(
                "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts "
                "MATCH ? LIMIT ?)", (quote(term), most)).fetchone()[0])
        return int(conn.execute(
            "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts "
            "MATCH ? AND rowid > ? LIMIT ?)", (quote(term), after, most)).fetchone()[0])

    @staticmethod
    def _sampled(conn: sqlite3.Connection, term: str, most: int, n_docs: int) -> int | None:
        """`term`'s df estimated from its rate among the newest SAMPLE_SPAN rowids, up to
        `most` + 1; None when it has too few matches there to stand for the whole (the
        full-text index seeks to a rowid, so only the sample's postings are read)."""
        cap = most * SAMPLE_SPAN // n_docs + 1  # past it: more than `most` in the whole
        hits = TextSeeder._counted(conn, term, cap, n_docs - SAMPLE_SPAN)
        if hits >= cap:
            return most + 1
        if hits < SAMPLE_HITS:
            return None
        return min(most + 1, round(hits * n_docs / SAMPLE_SPAN))

    def seeds(self, look: Lookup, text: str, want: int, deadline: float, enough: int = 1
              ) -> tuple[dict[int, float], bool]:
        """Up to `want` seeds {rowid: relevance, best = 1} of the look-up's space; common
        words are read only while fewer than `enough` are found. Answers (seeds,
        budget_exhausted)."""
        terms = cue_terms(text)
        if not terms:
            return {}, False
        conn = look.conn
        n_docs = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0] or 1
        stop = max(1_000.0, STOP_FRACTION * n_docs)
        snap = self._vocab.current(n_docs) if self._vocab is not None else None
        stems = self._vocab.stems(terms) if snap is not None and self._vocab else {}
        # Counted only as far as `stop` first: a stop word is left out while any other word
        # is not, and counting "the" to the end was 15 ms at 100,000 memories.
        dfs: dict[str, int] = {}
        for t in terms:
            dfs[t] = self.doc_freq(conn, t, min(DF_CAP, int(stop)), n_docs, snap,
                                   stems.get(t))
            if time.perf_counter() > deadline:
                break
        if not any(0 < df <= stop for df in dfs.values()):
            # Stop words only (or no word found): their full counts weigh them.
            dfs = {t: self.doc_freq(conn, t, DF_CAP, n_docs, snap, stems.get(t))
                   for t in dfs}
        present = sorted((t for t in dfs if dfs[t] > 0), key=dfs.__getitem__)
        if not present:
            return {}, False
        if any(dfs[t] <= stop for t in present):
            present = [t for t in present if dfs[t] <= stop]
        idf = {t: math.log(1.0 + n_docs / dfs[t]) for t in present}
        rare = [t for t in present if dfs[t] <= RARE_DF]
        covered = 0
        postings: list[np.ndarray] = []
        weights: list[float] = []
        for t in rare:
            if covered and covered + dfs[t] > RANK_BUDGET:
                break
            covered += dfs[t]
            postings.append(rowids(conn, "SELECT group_concat(rowid) FROM memories_fts "
                                   "WHERE memories_fts MATCH ?", (quote(t),)))
            weights.append(idf[t])
        scores = summed(postings, weights)
        seeds = self._in_space(look, scores, want)
        common = [t for t in present if dfs[t] > RARE_DF]
        if len(seeds) < enough and common and time.perf_counter() <= deadline:
            groups = [common[:COMMON_AND]]
            if len(common) > 2:
                groups.append(common[:2])
            if len(common) > 1:
                groups.extend([t] for t in common)
            credited: dict[int, float] = {}  # common-word weight already counted per row
            # The newest matches first; when they were all other spaces' (or hidden), this
            # space's own further back.
            for newest in (self._newest, self._newest_in_space):
                for group in groups:
                    w = sum(idf[t] for t in group)
                    for rowid in newest(look, group, deadline):
                        before = credited.get(rowid, 0.0)
                        if w > before:
                            credited[rowid] = w
                            scores[rowid] = scores.get(rowid, 0.0) + w - before
                    seeds = self._in_space(look, scores, want)
                    if len(seeds) >= enough or time.perf_counter() > deadline:
                        break
                if len(seeds) >= enough or time.perf_counter() > deadline:
                    break
        exhausted = time.perf_counter() > deadline
        if not seeds:
            return {}, exhausted
        best = max(seeds.values())
        return {rowid: sc / best for rowid, sc in seeds.items()}, exhausted

    @staticmethod
    def _newest(look: Lookup, group: list[str], deadline: float) -> list[int]:
        """The newest COMMON_SCAN memories holding every word of `group`, any space's."""
        return rowids(look.conn, "SELECT group_concat(rowid) FROM (SELECT rowid FROM "
                      "memories_fts WHERE memories_fts MATCH ? ORDER BY rowid DESC LIMIT ?)",
                      (" AND ".join(map(quote, group)), COMMON_SCAN)).tolist()

    @staticmethod
    def _newest_in_space(look: Lookup, group: list[str], deadline: float) -> list[int]:
        """The newest COMMON_SCAN visible memories of this space holding every word of
        `group`: its matches read newest first, DEEP_STEP at a time, each step's looked up
        in the index of visible memories, at most DEEP_SCAN of them."""
        found: list[int] = []
        cur = look.conn.execute("SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? "
                                "ORDER BY rowid DESC", (" AND ".join(map(quote, group)),))
        try:
            read = 0
            while len(found) < COMMON_SCAN and read < DEEP_SCAN:
                part = [r for (r,) in cur.fetchmany(DEEP_STEP)]
                if not part:
                    break
                read += len(part)
                seen = look.visible(part)
                found.extend(r for r in part if r in seen)
                if time.perf_counter() > deadline:
                    break
        finally:
            cur.close()
        return found[:COMMON_SCAN]

    @staticmethod
    def _in_space(look: Lookup, scores: dict[int, float], want: int) -> dict[int, float]:
        """The `want` best-scored rowids that are visible memories of the look-up's space.

        Memories that match the same words score the same, and a cue often matches many
        of them alike ("who keeps the spare key": 109 of the sample's 3,000). Which of
        those make the cut must not depend on the order they were written in (an import
        over several connections commits in no fixed order): ties at the cut are broken
        by stored confidence, as ranking prefers the confident ones anyway, then by key
        (a hash of the space and id). In a hybrid recall (`look.similarity`) they are
        broken first by closeness to the cue's vector, from the vector index's 8-bit codes
        in RAM: of the memories that match the same words, those closest in meaning
        (synopsis -> description recall@10 among 20,000 Debian packages, hybrid 0.862
        against 0.843). The newest TIE_SCORED tied are scored; those without a vector
        (not indexed yet) or past them come after the scored ones, as in lexical mode.
        Confidence and key are looked up in the index of visible memories (rows.Lookup,
        ~7 us each at a million memories). Ordered by confidence, every tied memory is
        looked up, at most TIE_BREAK_EXTRA past the cut (beyond that the newest win);
        ordered by closeness, only as many as the cut takes (56 look-ups a hybrid recall
        against 138 at a million memories, 400 held-out cues)."""
        step = want + max(8, want // 4)  # a few more than wanted: some may be hidden
        ranked = best_first(scores, want + TIE_BREAK_EXTRA + 2 * step)
        near = look.similarity
        found = _best_visible(look, ranked, want, step, 0 if near else TIE_BREAK_EXTRA,
                              lambda: best_first(scores), len(scores))
        if near is not None and len(found) >= want:
            cut = found[want - 1][0]
            above = [f for f in found if f[0] > cut]
            tied = _tied(scores, cut)
            if len(tied) > want - len(above):  # a choice among them: by the cue's vector
                # The newest TIE_SCORED closest first; after them, those without a vector
                # and the older ones, newest first, as many as it takes when most of the
                # newest are hidden.
                newest = tied[:TIE_SCORED].tolist()
                by = near(newest)
                order = sorted(((r, by.get(r, -2.0)) for r in newest), key=lambda t: -t[1])
                found = above + [(cut, *f[1:]) for f in _best_visible(
                    look, order, want - len(above), step, TIE_BREAK_EXTRA,
                    lambda: order + [(r, -2.0) for r in tied[TIE_SCORED:].tolist()],
                    len(tied))]
        return {f[-1]: f[0] for f in found[:want]}


def _tied(scores: dict[int, float], cut: float) -> Any:
    """The rowids scored `cut`, newest first (int64)."""
    keys = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
    vals = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    return np.sort(keys[vals == cut])[::-1]


def _best_visible(look: Lookup, ranked: list[tuple[int, float]], want: int, step: int,
                  extra: int, whole: Callable[[], list[tuple[int, float]]] | None = None,
                  total: int = 0) -> list[tuple[float, float, int, int]]:
    """(score, stored confidence, key, rowid) of the `want` best of `ranked` ((rowid,
    score) best first) that are visible memories of the look-up's space, best first, ties
    by confidence, then key; looked up `step` at a time, and at most `extra` past the want-th
    of those tied with it. `whole`: the whole order, of which `ranked` (its head, enough
    unless many of its memories are hidden: other spaces', suppressed) is the start, and
    `total` its length."""
    found: list[tuple[float, float, int, int]] = []
    cut: float | None = None  # the score of the want-th, once there are `want`
    for i in itertools.count(0, step):
        if whole is not None and i + step > len(ranked) < total:  # past the head
            ranked, whole = whole(), None
        chunk = ranked[i : i + step]
        if not chunk:
            break
        if cut is not None and (chunk[0][1] < cut or len(found) >= want + extra):
            break
        seen = look.visible(r for r, _ in chunk)
        for rowid, sc in chunk:
            if cut is not None and sc < cut:
                break
            if rowid in seen:
                _, confidence, key, _, _ = seen[rowid]
                found.append((sc, confidence, key, rowid))
                if cut is None and len(found) >= want:
                    cut = sc
    found.sort(key=lambda f: (-f[0], -f[1], f[2]))
    return found[:want]
