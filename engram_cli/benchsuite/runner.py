"""How a comparison is measured: the two variants of a row run interleaved (A B A B ...)
against the same server over several rounds, after an uncounted warm-up round, and the
row reports each variant's median. Interleaving matters more than round count: the
server's space grows, caches warm and neighbours on a shared machine come and go during
a run, and alternating spreads that drift over both variants evenly instead of letting
it land on whichever ran second.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    """The default progress sink: say nothing."""


class RowSkipped(Exception):
    """A row cannot run against this server (the reason says why)."""


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


WARMUP_ROUNDS = 1


def interleave(before: Callable[[int], float], after: Callable[[int], float], rounds: int,
               warmup: int = WARMUP_ROUNDS, progress: Progress = quiet, label: str = ""
               ) -> tuple[list[float], list[float]]:
    """Run before(i), after(i) for i = 0, 1, ... and return each variant's figures, one
    per counted round. The first `warmup` rounds pay for first connections and cold
    pages and are thrown away."""
    befores: list[float] = []
    afters: list[float] = []
    for i in range(warmup + rounds):
        counted = i >= warmup
        if counted:
            progress(f"{label}: round {i - warmup + 1}/{rounds}")
        b = before(i)
        a = after(i)
        if counted:
            befores.append(b)
            afters.append(a)
    return befores, afters


@dataclass(frozen=True)
class BenchPlan:
    """How much work each row does. `quick` is sized to finish in seconds on a laptop;
    the full plan gives steadier medians."""

    quick: bool = False
    rounds: int = 7
    batch_ops: int = 100            # the batching row: 100 ops, as in the seed's table
    pool_ops: int = 50              # calls per pooling sample
    stream_ops: int = 500           # memories per streaming sample
    cache_ops: int = 300            # recalls per caching sample
    cache_hit_rate: float = 0.9
    cache_corpus: int = 1000        # memories recalled from by the caching row
    hot_cues: int = 30
    sweep_sizes: tuple[int, ...] = (1, 10, 100, 500, 1000)
    sweep_items: int = 2000         # memories per size per round (at least one call)
    sweep_min_calls: int = 3        # per size per round, so p99 has a spread to read

    @classmethod
    def full(cls, rounds: int | None = None) -> BenchPlan:
        return cls(rounds=rounds or 7)

    @classmethod
    def quick_plan(cls, rounds: int | None = None) -> BenchPlan:
        return cls(quick=True, rounds=rounds or 3, pool_ops=30, stream_ops=200,
                   cache_ops=100, cache_corpus=300, hot_cues=15, sweep_items=200,
                   sweep_min_calls=1)

    def calls_for(self, size: int) -> int:
        return max(self.sweep_min_calls, math.ceil(self.sweep_items / size))


@dataclass
class RowResult:
    """One line of the table: both variants' per-round figures and what they were."""

    name: str
    title: str
    unit: str
    higher_is_better: bool
    before_label: str
    after_label: str
    before_samples: list[float]
    after_samples: list[float]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def before(self) -> float:
        return median(self.before_samples)

    @property
    def after(self) -> float:
        return median(self.after_samples)

    @property
    def improvement(self) -> float:
        """How many times better `after` is (above 1: better; below 1: worse)."""
        if self.higher_is_better:
            return self.after / self.before
        return self.before / self.after


@dataclass
class SweepPoint:
    batch: int
    calls: int
    ops_per_s_samples: list[float]
    latencies_ms: list[float]

    @property
    def ops_per_s(self) -> float:
        return median(self.ops_per_s_samples)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


@dataclass
class Sweep:
    method: str
    points: list[SweepPoint]
    note: str = ""


@dataclass
class BenchResult:
    server: str
    space: str
    plan: BenchPlan
    extensions: bool
    server_version: str = ""
    rows: list[RowResult] = field(default_factory=list)
    sweep: Sweep | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    cleanup: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    data_source: str = ""
