"""Giving memory back: the server's RSS should return near where it started once a burst
(a fuzz, a write flood) is over.

glibc gives each thread that allocates under contention an arena of its own (up to 8 per
core) and keeps freed memory in them; a server of 48 threads then holds on to hundreds of
MB it no longer uses. `limit_arenas` caps the arenas before the threads start, and
`trim` (run periodically) returns free pages to the system. Both do nothing where the C
library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger("engram.server")
ARENAS = 2
TRIM_EVERY_S = 30.0
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc only
        return libc
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = ARENAS) -> None:
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, arenas)


def trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def trim_periodically(stopped: threading.Event, every_s: float = TRIM_EVERY_S) -> None:
    """Start a daemon thread that trims every `every_s` until `stopped` is set."""
    libc = _libc()
    if libc is None:
        return

    def run() -> None:
        while not stopped.wait(every_s):
            libc.malloc_trim(0)

    threading.Thread(target=run, daemon=True, name="malloc-trim").start()
