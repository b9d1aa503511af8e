"""Giving memory back: the server's RSS should return near where it started once a burst
(a fuzz, a write flood) is over.

glibc gives each thread that allocates under contention an arena of its own (up to 8 per
core) and keeps freed memory in them; a server of 48 threads then holds on to hundreds of
MB it no longer uses. `limit_arenas` caps the arenas before the threads start, and
`trim` (run periodically) returns free pages to the system. Both do nothing where the C
library is not glibc.

glibc also raises its mmap threshold (from 128 KiB, up to 32 MiB) each time a block it
had mapped is freed: after the first large temporary (the embedder's arrays for a long
text, a large protobuf message) every later one up to that size comes from the arenas,
where what is freed stays as holes that trimming rarely gives back. `limit_arenas` pins
the threshold at MMAP_THRESHOLD, so that blocks that large are mapped and unmapped
whole: a 3,000-request fuzz grew the server's RSS by 147 MB with the moving threshold,
by 68 MB with it pinned (benchmarks/hardening_bench.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("engram.server")
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value
TRIM_EVERY_S = 30.0
# A server without calls for this long gives back its caches (release, below), and again
# at each trim while it stays idle (background work, the vector index catching up after
# an import, fills them meanwhile).
IDLE_RELEASE_S = 10.0
_M_ARENA_MAX = -8  # glibc's mallopt parameters
_M_MMAP_THRESHOLD = -3


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc only
        return libc
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> None:
    """Cap malloc's arenas and pin its mmap threshold (setting it stops glibc moving it)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, arenas)
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)


def trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def trim_periodically(stopped: threading.Event, every_s: float = TRIM_EVERY_S,
                      idle_s: Callable[[], float] = lambda: 0.0,
                      release: Callable[[], None] = lambda: None,
                      idle_release_s: float = IDLE_RELEASE_S) -> None:
    """Start a daemon thread that, until `stopped` is set, trims every `every_s`; once
    the server has been idle (`idle_s()`: seconds since its last call) for
    `idle_release_s` it calls `release()` (the store's caches) and trims at once, and
    then releases before each trim for as long as it stays idle."""
    libc = _libc()
    tick = min(every_s, idle_release_s) / 2

    def run() -> None:
        released, since_trim = False, 0.0
        while not stopped.wait(tick):
            since_trim += tick
            idle = idle_s() >= idle_release_s
            due = since_trim >= every_s
            if idle and (due or not released):
                try:
                    release()
                except Exception:  # the store is closing: the next tick ends the loop
                    log.debug("releasing caches failed", exc_info=True)
                due = True
            released = idle
            if due:
                if libc is not None:
                    libc.malloc_trim(0)
                since_trim = 0.0

    threading.Thread(target=run, daemon=True, name="malloc-trim").start()
