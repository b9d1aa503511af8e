"""Consolidation: RECENT -> CONSOLIDATING -> CONSOLIDATED, in the background and on demand.

A pass takes memories in bounded batches. Each batch is first marked CONSOLIDATING (one
commit), then its co-recall edges are written and it is marked CONSOLIDATED (a second
commit): a server killed between the two leaves CONSOLIDATING memories that the next
pass finishes. The background scheduler runs a pass every `consolidation_interval_s`
over memories stored at least `consolidation_min_age_s` ago (by the store's clock, which
tests inject); a memory updated after it was consolidated is RECONSOLIDATING until the
next pass, whatever its age.

Co-occurrence edges (our choice: memories *recalled together*, the Hebbian rule "what
fires together wires together"): every recall that returns two or more memories counts
each pair among its top CO_RECALL_TOP results; a pass turns each pair counted at least
CO_RECALL_MIN times into an association (or strengthens it: strength saturates toward 1)
of CO_RECALL_STEP per co-recall, reason "co-recalled". Shared tags are not used: one
common tag would link everything to everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engram_cli.engine.model import State
from engram_cli.engine.settings import Settings
from engram_cli.engine.writes import op_finish, op_mark, op_reinforce
from engram_cli.errors import EngramError

BATCH = 5_000
CO_RECALL_TOP = 3
CO_RECALL_MIN = 2
CO_RECALL_STEP = 0.1
_MAX_PAIRS = 50_000
MAX_CHANGES = 10_000  # state changes listed in a report (all are counted)

log = logging.getLogger("engram.engine")


@dataclass
class PassReport:
    changes: dict[str, int] = field(default_factory=dict)  # id -> new state, the first few
    consolidated: int = 0
    new_associations: int = 0
    strengthened: int = 0
    started_at: float = 0.0
    elapsed_s: float = 0.0


@dataclass
class ConsolidationStats:
    passes: int = 0
    consolidated_total: int = 0
    associations_total: int = 0
    last_pass_at: float = 0.0
    last_pass_s: float = 0.0
    next_pass_at: float = 0.0
    failed_passes: int = 0


class Consolidator:
    """The scheduler thread and the pass logic; the store's writer does the writing.

    write(fn, *args) runs a write operation on the writer thread and answers its result;
    invalidate(keys) drops (space, id) pairs from the hot tier after a write changed them;
    settings() answers the live settings; clock() the store's time."""

    def __init__(self, write: Callable[..., Any],
                 invalidate: Callable[[Sequence[tuple[str, str]]], None],
                 settings: Callable[[], Settings], clock: Callable[[], float]) -> None:
        self._write = write
        self._invalidate = invalidate
        self._settings = settings
        self._clock = clock
        self.stats = ConsolidationStats()
        self._pairs: dict[tuple[str, str, str], int] = {}
        self._pairs_lock = threading.Lock()
        self._pass_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- co-recall ---------------------------------------------------------------------

    def note_recalled(self, space: str, ids: Sequence[str]) -> None:
        top = list(ids[:CO_RECALL_TOP])
        if len(top) < 2:
            return
        with self._pairs_lock:
            if len(self._pairs) >= _MAX_PAIRS:
                return  # enough evidence waiting; the next pass empties it
            for i, a in enumerate(top):
                for b in top[i + 1:]:
                    lo, hi = (a, b) if a < b else (b, a)
                    key = (space, lo, hi)
                    self._pairs[key] = self._pairs.get(key, 0) + 1

    def _take_pairs(self, space: str | None) -> list[tuple[str, str, str, int]]:
        with self._pairs_lock:
            ready = [(k, n) for k, n in self._pairs.items()
                     if n >= CO_RECALL_MIN and (space is None or k[0] == space)]
            for k, _ in ready:
                del self._pairs[k]
        return [(k[0], k[1], k[2], n) for k, n in ready]

    # -- passes ------------------------------------------------------------------------

    def run_pass(self) -> PassReport:
        """One background pass over every space (minimum age applies)."""
        min_age = self._settings().consolidation_min_age_s
        return self._run(space=None, ids=None, stored_before=self._clock() - min_age)

    def consolidate(self, space: str, ids: list[str] | None = None,
                    older_than: float | None = None, types: Sequence[int] = (),
                    min_confidence: float = 0.0) -> PassReport:
        """On demand (the Consolidate RPC): no minimum age; the criteria given apply."""
        return self._run(space=space, ids=ids, created_before=older_than, types=list(types),
                         min_confidence=min_confidence)

    def _run(self, space: str | None, ids: list[str] | None, stored_before: float | None = None,
             created_before: float | None = None, types: list[int] | None = None,
             min_confidence: float = 0.0) -> PassReport:
        report = PassReport(started_at=time.time())
        t0 = time.perf_counter()
        with self._pass_lock:
            # Edges first, so a memory consolidated in this pass carries what was learned.
            for sp, a, b, n in self._take_pairs(space):
                created = self._write(op_reinforce, sp, a, b, min(1.0, CO_RECALL_STEP * n),
                                      "co-recalled", self._clock())
                if created is None:
                    continue
                if created:
                    report.new_associations += 1
                else:
                    report.strengthened += 1
            # Anything left CONSOLIDATING (a pass cut short) is finished first.
            for state_from, age_limit in ((State.CONSOLIDATING, None),
                                          (State.RECONSOLIDATING, None),
                                          (State.RECENT, stored_before)):
                after: Any = None
                while True:
                    batch = self._write(
                        op_mark, space, ids, int(state_from), int(State.CONSOLIDATING),
                        age_limit, created_before, types or [], min_confidence, BATCH, after)
                    if not batch:
                        break
                    after = batch[-1][0]
                    keys = [(sp, mid) for _, sp, mid in batch]
                    self._invalidate(keys)
                    done = self._write(op_finish, [r for r, _, _ in batch],
                                       int(State.CONSOLIDATED))
                    self._invalidate(keys)
                    report.consolidated += done
                    for _, _sp, mid in batch[:MAX_CHANGES - len(report.changes)]:
                        report.changes[mid] = int(State.CONSOLIDATED)
                    if len(batch) < BATCH or self._stop.is_set():
                        break
        report.elapsed_s = time.perf_counter() - t0
        s = self.stats
        s.passes += 1
        s.consolidated_total += report.consolidated
        s.associations_total += report.new_associations
        s.last_pass_at = report.started_at
        s.last_pass_s = report.elapsed_s
        return report

    # -- the scheduler -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="engram-consolidation")
        self._thread.start()

    def wake(self) -> None:
        """Settings changed: re-read the interval now."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            interval = self._settings().consolidation_interval_s
            if interval <= 0:
                self.stats.next_pass_at = 0.0
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self.stats.next_pass_at = time.time() + interval
            if self._wake.wait(interval):
                self._wake.clear()
                continue  # woken: settings changed or stopping; re-read the interval
            try:
                self.run_pass()
            except EngramError:
                pass  # the store is closing or overloaded; the next pass retries
            except Exception:
                # A bug or a broken store must not end consolidation for the life of the
                # server without a word: say what failed, and try again next interval.
                log.exception("consolidation pass failed; the next one runs in %g s",
                              interval)
                self.stats.failed_passes += 1
