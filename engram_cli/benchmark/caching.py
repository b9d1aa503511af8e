"""The client-caching row's view of the recall cache: get/put of recall answers by cue.

The row only needs this small interface; `open_answer_cache` adapts the real cache
(engram_cli.client.cache.RecallCache, the one `engram recall` uses) to it. The cache
file lives in a temporary directory the row deletes: a benchmark never reads or fills
the user's own recall cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from engram_cli.benchmark.runner import RowSkipped

CACHE_FILE = "bench-recall-cache.sqlite3"
RESULT_LIMIT = 10
STATE_KEY = "engram.state"  # engram_cli.server.convert.STATE_KEY, without importing the server


class AnswerCache(Protocol):
    def get(self, cue: str) -> list[dict[str, Any]] | None: ...

    def put(self, cue: str, results: list[dict[str, Any]]) -> bool: ...

    def close(self) -> None: ...


def results_of(response: Any) -> list[dict[str, Any]]:
    """A RecallResponse as the plain dicts the cache keeps (what `engram recall` shows)."""
    return [
        {"id": m.id, "content": m.content, "confidence": float(m.confidence.value),
         "activation": float(m.activation), "tags": list(m.tags),
         "decay_rate": float(m.decay_rate), "state": m.metadata.get(STATE_KEY, "unknown")}
        for m in response.memories
    ]


class _RecallCacheAdapter:
    def __init__(self, cache: Any, module: Any, server: str, space: str) -> None:
        self._cache = cache
        self._module = module
        self._server = server
        self._space = space
        # The forgetting curve's parameters change the numbers, not the cost of applying
        # them, so the defaults serve (no GetSettings call, which upstream lacks).
        self._forgetting = module.Forgetting(exponent=0.1, floor=0.2, scale_s=86_400.0)

    def _key(self, cue: str) -> str:
        return str(self._module.cache_key(self._server, self._space, cue,
                                          {"limit": RESULT_LIMIT}))

    def get(self, cue: str) -> list[dict[str, Any]] | None:
        answer = self._cache.get(self._key(cue))
        return None if answer is None else list(answer.results)

    def put(self, cue: str, results: list[dict[str, Any]]) -> bool:
        return bool(self._cache.put(self._key(cue), self._server, self._space, cue, results,
                                    self._forgetting))

    def close(self) -> None:
        self._cache.close()


def open_answer_cache(directory: Path, server: str, space: str) -> AnswerCache:
    """The real recall cache in `directory`, caching every non-empty answer.

    The policy is relaxed on purpose (no confidence bar, consolidated or not): the row
    measures what a hit saves, and the scratch space's fresh memories are neither
    consolidated nor all highly confident, so the default policy would cache nothing.
    """
    try:
        from engram_cli.client import cache as module
    except ImportError as exc:
        raise RowSkipped("this build has no recall cache (engram_cli.client.cache)") from exc
    policy = module.CachePolicy(ttl_s=3600.0, min_confidence=0.0,
                                require_consolidated=False, max_bytes=256 * 1024 * 1024)
    cache = module.RecallCache(Path(directory) / CACHE_FILE, policy)
    return _RecallCacheAdapter(cache, module, server, space)
