"""`x IN (...)` lists whose statement text is one of a few per query.

Python's sqlite3 keeps each connection's last 128 statements prepared, found by their
text, and a statement of n placeholders is a program of about n steps (a 450-value list
is ~70 KB of SQLite memory). With the list's length in the text, every length makes a
statement of its own: each reader connection (one per server thread) filled its cache
with 128 of them (~8 MB), and a server of 65 threads held ~500 MB of SQLite memory after
a fuzz of recalls. Padded to a power of two, a query has about ten texts, which the cache
then reuses instead of preparing a new program each time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def in_list(values: Sequence[T], most: int) -> tuple[str, list[T]]:
    """The placeholders ("?,?,...") and values for `x IN (...)`: the values padded with
    copies of the last one (which IN ignores) to the next power of two, or to `most`
    (the caller's chunk size, under SQLite's parameter limit) when that is smaller.
    A list longer than `most` is left as it is."""
    n = len(values)
    if n <= 1:
        return "?" * n, list(values)
    size = min(1 << (n - 1).bit_length(), max(n, most))
    return ",".join("?" * size), [*values, *([values[-1]] * (size - n))]
