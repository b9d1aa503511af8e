"""The server's embedding worker: the background indexer's model in a child process.

In the server's own process the model shares the GIL with the RPC threads, the writer and
the merger, and catch-up after an import ran at about a third of the model's raw rate on
two cores (sampled: the indexer thread spent most of its time in the model, the rest
waiting for the GIL and for its own stores). In a child the model has a core of its own
while the indexer thread reads the log, stores vectors and feeds the index.

The worker is a `ProcessPoolExecutor` of PROCESSES children started with `spawn` (a fork
would copy gRPC's threads and locks in whatever state), as `engram import --embed` starts
its own. One child per core, up to four: a child alone got about 0.9 of a core during a
catch-up while the server's own share of the work took part of the other, and the
tokenizer's pool waited for it (200,000 memories, interleaved: two children caught up
1.1-1.4x faster than one). Each child holds the model (about 150 MB). Setting
`embedding_workers` chooses another number: the `low-latency` profile's 1 leaves recalls
more CPU while a backlog lasts (hybrid p99 69 against 135 ms at 200,000, catching up 1.36x
slower). A child:

- dies with the server, even after kill -9 of the server: the kernel sends it SIGKILL when
  the thread that started it ends (PR_SET_PDEATHSIG), and a watchdog thread exits when its
  parent is no longer the server (any other POSIX system);
- runs at the indexer's lowered CPU priority, so that the RPC threads and the writer come
  first (sampled at 200,000 memories: hybrid recall p99 during catch-up fell, since the
  model no longer holds the server's GIL);
- ignores Ctrl-C: the server stops it when it stops.

A child that dies (killed, out of memory) breaks the pool: the batches it held fail with
`WorkerDied` and the next `submit` starts a new pool, up to GIVE_UP_AFTER in a row, after
which `submit` raises WorkerDied at once (the caller embeds in its own process). A child
that answers nothing for `TIMEOUT_S` is killed and reported the same way, so the indexer
never hangs on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from engram_cli.compat import usable_cores
from engram_cli.errors import EngramError

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

log = logging.getLogger("engram.indexer")

# No thread pools of the numeric libraries (WordLlama's pooling is numpy, not BLAS). The
# tokenizer keeps its own pool, as the model in one process does: with one child that was
# ~15% faster here, with two as fast as TOKENIZERS_PARALLELISM=false (6,800 / 5,582 vs
# 6,481 / 6,201 memories/s caught up at 200,000); the pool's threads share the child's low
# priority. A value the user set is kept.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# A batch of 512 texts takes well under a second; a minute means the child is stuck
# (stopped, swapping): it is killed and the batch embedded again.
TIMEOUT_S = 60.0
PROCESSES = min(4, usable_cores())  # see the module's docstring
WATCH_S = 0.5  # the child's watchdog looks at its parent this often
# Children that died in a row (none answered between) before the worker gives up and the
# server embeds in its own process: a child that cannot even load the model must not be
# started again for every batch.
GIVE_UP_AFTER = 3
_PR_SET_PDEATHSIG = 1

_model: Any = None


class WorkerDied(EngramError):
    """The embedding worker process died or stopped answering."""


def _init(model: str, parent: int, niceness: int) -> None:
    """In the child, before any batch: die with the server, lower the priority, load the
    model."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    for name, value in WORKER_ENV.items():
        os.environ.setdefault(name, value)
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    global _model
    from engram_cli.engine.embedding import load_model

    _model = load_model(model)


def _die_with(parent: int) -> None:
    import signal

    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the server died before the signal was asked for
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_S)
        os._exit(1)

    threading.Thread(target=watch, name="engram-embed-watchdog", daemon=True).start()


def _embed(texts: list[str]) -> np.ndarray:
    """In the child: the model's vectors of `texts`."""
    vectors: np.ndarray = _model.embed(texts)
    return vectors


def _pid() -> int:
    return os.getpid()


class EmbedWorker:
    """Up to `processes` (0: PROCESSES) child processes that embed with `model`; started
    at the first `submit` (the executor starts more as batches queue)."""

    def __init__(self, model: str, niceness: int, processes: int = 0) -> None:
        self.model = model
        self.niceness = niceness
        self.processes = processes or PROCESSES
        self.restarts = 0  # children started after one died
        self.failed = 0  # children that died since one last answered
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, texts: Sequence[str]) -> Future:
        """A future of the vectors of `texts`; call `result` on it here (it translates a
        dead child into WorkerDied)."""
        with self._lock:
            if self._pool is None:
                if self.failed >= GIVE_UP_AFTER:
                    raise WorkerDied(f"the embedding worker died {self.failed} times in a row",
                                     "the server embeds in its own process; see its log")
                self._pool = self._start()
            pool = self._pool
        try:
            return pool.submit(_embed, list(texts))
        except RuntimeError:  # the pool broke since (BrokenProcessPool is one)
            self._discard(pool)
            raise WorkerDied("the embedding worker died", "it is restarted") from None

    def result(self, future: Future, stopping: threading.Event) -> np.ndarray | None:
        """The vectors `future` answers; None once `stopping` is set. Raises WorkerDied
        when the child died or answered nothing for TIMEOUT_S."""
        from concurrent.futures import TimeoutError as FutureTimeout
        from concurrent.futures.process import BrokenProcessPool

        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                vectors: np.ndarray = future.result(timeout=0.5)
                self.failed = 0
                return vectors
            except FutureTimeout:
                if stopping.is_set():
                    return None
                if time.monotonic() > deadline:
                    self.kill()
                    raise WorkerDied("the embedding worker answered nothing for "
                                     f"{TIMEOUT_S:.0f} s", "it is restarted") from None
            except BrokenProcessPool:
                with self._lock:
                    if self._pool is not None and _broken(self._pool):
                        self._discard_locked()
                raise WorkerDied("the embedding worker died", "it is restarted") from None

    def pids(self) -> list[int]:
        """The children's process ids, of those running (for tests)."""
        with self._lock:
            return [p.pid for p in _processes(self._pool) if p.is_alive()]

    def kill(self) -> None:
        """Kill the child at once; the next submit starts another."""
        with self._lock:
            procs = _processes(self._pool)
            self._discard_locked()
        for proc in procs:
            with contextlib.suppress(OSError, ValueError):
                proc.kill()

    def close(self) -> None:
        """Stop the child (what it was given is dropped), killing it when it does not
        stop within a few seconds."""
        with self._lock:
            pool, self._pool = self._pool, None
            procs = _processes(pool)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    proc.kill()
                    proc.join(5)

    def _start(self) -> ProcessPoolExecutor:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init,
                                   initargs=(self.model, os.getpid(), self.niceness))
        pool.submit(_pid)  # start a child now, from this (the indexer's) thread
        return pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._discard_locked()

    def _discard_locked(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            self.restarts += 1
            self.failed += 1
            log.warning("the embedding worker died" + (
                "; starting another" if self.failed < GIVE_UP_AFTER
                else f" {self.failed} times in a row: embedding in the server from now on"))
            pool.shutdown(wait=False, cancel_futures=True)


# The executor keeps its processes and its broken state private; a small pool
# is all this module needs of it, so it reads them rather than managing processes itself.
def _processes(pool: ProcessPoolExecutor | None) -> list[Any]:
    return list((getattr(pool, "_processes", None) or {}).values())


def _broken(pool: ProcessPoolExecutor) -> bool:
    return bool(getattr(pool, "_broken", False))
