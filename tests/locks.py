"""Another process's hold on a SQLite file, for tests of opening it meanwhile."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def being_created(path: Path, for_s: float = 0.3) -> Iterator[None]:
    """As while another process creates the new SQLite file `path`: a write transaction
    (the file still in rollback mode) that commits after `for_s` seconds."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE scratch (x)")
    timer = threading.Timer(for_s, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        yield
    finally:
        timer.join()
        other.close()
