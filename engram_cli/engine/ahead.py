"""Vector index searches started ahead, on a thread of their own.

A hybrid recall reads its full-text seeds (SQLite) and searches the vector index (faiss,
which lets go of the GIL); one after the other they cost their sum, side by side on two
cores the longer of the two. The recall starts the index search here first, reads the
full-text seeds, then asks for the search by its arguments and gets the answer already
under way. A search starts ahead only when one of `threads` is free: on a server whose
cores are busy with other recalls, handing work to another thread gains nothing, and the
search then runs inline as before. Answers are the same either way. The cue's vector is
computed by the caller before it starts the search: computed on the search-ahead thread
instead, while the caller reads the full-text seeds, hybrid recall at a million memories
took 0.999x at p50 and p99 (cue by cue alternated, the vectors not cached): the two sides
are about as long, and the vector side's end is then the recall's.

A search started ahead takes no third thread (engine/ivf.py would hand half of a large
space's scan to one): the caller's is busy with the full-text seeds meanwhile, and on 2
cores a third thread slowed hybrid recall (p50 4.40-4.59 -> 5.13-5.22 ms at a million
memories over gRPC, three pairs of servers alternated). Nor does the caller's thread help
with it: of a space large enough for halves, a hybrid recall's search reads only the lists
nearest its cue (engine/ivf.py, LISTS_BYTES), a sixteenth of the codes. (When it scanned
every code, the scan was offered in halves and the caller's thread took the one not yet
taken once its full-text seeds were read: over gRPC, hybrid p50 0.87-0.91x on a slow
machine; the nearest lists took p50 0.64-0.71x, p99 0.66-0.82x the scan of every list.)
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class SearchAhead:
    def __init__(self, threads: int = 2) -> None:
        self._threads = threads
        self._free = threading.BoundedSemaphore(threads)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()  # this thread's search under way, if any

    def start(self, index: Any, space: str, cue: Any, k: int, approximate: bool = False
              ) -> None:
        """Begin `index.search(space, cue, k, approximate=approximate)` on another thread,
        if one is free."""
        self.clear()
        if not self._free.acquire(blocking=False):
            return
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._threads, "engram-search-ahead")
                future = self._pool.submit(self._run, index, space, cue, k, approximate)
        except BaseException:
            self._free.release()
            raise
        self._local.ahead = (index, space, cue, k, approximate, future)

    def _run(self, index: Any, space: str, cue: Any, k: int, approximate: bool) -> Any:
        try:
            return index.search(space, cue, k, split=False, approximate=approximate)
        finally:
            self._free.release()

    def search(self, index: Any, space: str, cue: Any, k: int, approximate: bool = False
               ) -> Any:
        """`index.search(space, cue, k, approximate=approximate)`: the one started ahead
        with these same arguments (the same cue object), else now (on this thread alone)."""
        ahead = getattr(self._local, "ahead", None)
        self._local.ahead = None
        if ahead is not None:
            a_index, a_space, a_cue, a_k, a_approximate, future = ahead
            if a_index is index and a_space == space and a_cue is cue and a_k == k \
                    and a_approximate == approximate:
                return future.result()
        # not started ahead: no thread was free, the server is busy; no second thread here
        return index.search(space, cue, k, split=False, approximate=approximate)

    def clear(self) -> None:
        """Forget this thread's search under way (its answer is not wanted)."""
        self._local.ahead = None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
