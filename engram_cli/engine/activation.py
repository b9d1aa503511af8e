"""Spreading activation over association edges.

From the seeds, each hop passes activation along every edge (both directions: an
association links two memories) multiplied by the edge's strength and the per-hop decay.
A memory keeps the strongest activation that reaches it. Spreading stops at max_hops,
where activation falls under the threshold, or when the time budget runs out. It walks
the `edges` table (memory rowids, both directions; see migration 002).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from engram_cli.engine.inlist import in_list

_CHUNK = 900


def neighbours(conn: sqlite3.Connection, rowids: list[int], deadline: float = float("inf")
               ) -> list[tuple[int, int, float]]:
    """(from, to, strength) for every edge leaving `rowids` (the edges table holds both
    directions of each association); stops early, with what it has, past the deadline."""
    return _edges(conn, rowids, deadline)[0]


def _edges(conn: sqlite3.Connection, rowids: list[int], deadline: float
           ) -> tuple[list[tuple[int, int, float]], bool]:
    """neighbours(), and whether the deadline cut it short."""
    out: list[tuple[int, int, float]] = []
    for i in range(0, len(rowids), _CHUNK):
        if i and time.perf_counter() > deadline:
            return out, True
        marks, values = in_list(rowids[i : i + _CHUNK], _CHUNK)
        out.extend(conn.execute(f"SELECT src, dst, strength FROM edges WHERE src IN ({marks})",
                                values))
    return out, False


def spread(
    conn: sqlite3.Connection,
    activations: dict[int, float],
    max_hops: int,
    decay: float,
    threshold: float,
    deadline: float,
    useful: Callable[[dict[int, float]], float] | None = None,
) -> tuple[dict[int, float], dict[int, int], bool]:
    """Spread from seed activations (by memory rowid). Answers (activations, parent of each
    reached memory (for its path), budget_exhausted); the input is not modified.

    `useful(activations so far)`, when given, answers the activation below which a memory
    can no longer change the caller's answer (the answer only, not how many memories were
    reached): edges that could only lead to such memories are not followed."""
    act = dict(activations)
    parent: dict[int, int] = {}
    frontier = [m for m, a in act.items() if a >= threshold]
    for _ in range(max_hops):
        if not frontier:
            break
        if time.perf_counter() > deadline:
            return act, parent, True
        nxt: dict[int, float] = {}
        # Strongest first, so a hop cut short by the deadline keeps the best paths.
        frontier.sort(key=act.__getitem__, reverse=True)
        # A memory too weak to pass the threshold along even the strongest edge (strengths
        # are at most 1) cannot activate anything: its edges are not read. Those are the
        # frontier's tail, so the rest is read in the same chunks and order as before.
        bar = threshold
        if useful is not None and frontier:
            # Everything this hop reaches is weaker than its source times the decay (and
            # so is everything beyond): sources under the bar lead nowhere useful.
            bar = max(bar, useful(act))
        while frontier and act[frontier[-1]] * decay < bar:
            frontier.pop()
        edges, cut = _edges(conn, frontier, deadline)
        for src, dst, strength in edges:
            a = act[src] * strength * decay
            if a < threshold or a <= act.get(dst, 0.0) or a <= nxt.get(dst, 0.0):
                continue
            nxt[dst] = a
            parent[dst] = src
        act.update(nxt)
        if cut:  # the hop's weakest sources were not followed: say so
            return act, parent, True
        frontier = list(nxt)
    return act, parent, False


def path_to(node: int, parent: dict[int, int]) -> list[int]:
    """Seed -> ... -> node."""
    path = [node]
    while path[-1] in parent and len(path) < 64:
        path.append(parent[path[-1]])
    return path[::-1]
