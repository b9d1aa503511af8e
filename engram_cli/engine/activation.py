"""Spreading activation over association edges.

From the seeds, each hop passes activation along every edge (both directions: an
association links two memories) multiplied by the edge's strength and the per-hop decay.
A memory keeps the strongest activation that reaches it. Spreading stops at max_hops,
where activation falls under the threshold, or when the time budget runs out.
"""

from __future__ import annotations

import sqlite3
import time

_CHUNK = 450


def neighbours(conn: sqlite3.Connection, space: str, ids: list[str],
               deadline: float = float("inf")) -> list[tuple[str, str, float]]:
    """(from, to, strength) for every edge touching `ids`, both directions; stops early
    (with what it has) once the deadline passes."""
    out: list[tuple[str, str, float]] = []
    for i in range(0, len(ids), _CHUNK):
        if i and time.perf_counter() > deadline:
            break
        chunk = ids[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        out.extend(conn.execute(
            f"SELECT source, target, strength FROM associations "
            f"WHERE space = ? AND source IN ({marks})", (space, *chunk)))
        out.extend(conn.execute(
            f"SELECT target, source, strength FROM associations INDEXED BY associations_target "
            f"WHERE space = ? AND target IN ({marks})", (space, *chunk)))
    return out


def spread(
    conn: sqlite3.Connection,
    space: str,
    activations: dict[str, float],
    paths: dict[str, list[str]],
    max_hops: int,
    decay: float,
    threshold: float,
    deadline: float,
) -> tuple[dict[str, float], dict[str, list[str]], bool]:
    """Answers (activations, paths, budget_exhausted); the inputs are not modified."""
    act = dict(activations)
    paths = {k: list(v) for k, v in paths.items()}
    frontier = [m for m, a in act.items() if a >= threshold]
    for _ in range(max_hops):
        if not frontier:
            break
        if time.perf_counter() > deadline:
            return act, paths, True
        nxt: dict[str, float] = {}
        # Strongest first, so a hop cut short by the deadline keeps the best paths.
        frontier.sort(key=act.__getitem__, reverse=True)
        for src, dst, strength in neighbours(conn, space, frontier, deadline):
            a = act[src] * strength * decay
            if a < threshold or a <= act.get(dst, 0.0) or a <= nxt.get(dst, 0.0):
                continue
            nxt[dst] = a
            paths[dst] = [*paths[src], dst]
        for m, a in nxt.items():
            act[m] = a
        frontier = list(nxt)
    return act, paths, False
