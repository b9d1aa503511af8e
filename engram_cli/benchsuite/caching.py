"""The client-caching row's two clients: the Recaller `engram recall` uses, once without
a cache and once with the real recall cache in front of the server.

The cache file lives in a temporary directory the row deletes: a benchmark never reads
or fills the user's own recall cache.
"""

from __future__ import annotations

from pathlib import Path

from engram_cli.client.cache import CachePolicy, RecallCache
from engram_cli.client.recall import Recaller, RecallOptions
from engram_cli.config import Connection

CACHE_FILE = "bench-recall-cache.sqlite3"

# Every non-empty answer is cached (no confidence bar, consolidated or not): the row
# measures what a hit saves, and the scratch space's fresh memories are neither
# consolidated nor all highly confident, so the default policy would cache nothing.
BENCH_POLICY = CachePolicy(ttl_s=3600.0, min_confidence=0.0, require_consolidated=False,
                           max_bytes=256 * 1024 * 1024)


def recallers(conn: Connection, space: str, directory: Path) -> tuple[Recaller, Recaller]:
    """(without cache, with cache) for the scratch space, with `engram recall`'s options."""
    scratch = conn.replace(space=space, autostart=False)
    options = RecallOptions()
    cache = RecallCache(Path(directory) / CACHE_FILE, BENCH_POLICY)
    return Recaller(scratch, options), Recaller(scratch, options, cache=cache)
