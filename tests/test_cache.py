"""The recall cache as a library: what qualifies, TTL and decay (with an injected clock),
LRU size bound, invalidation, keys, policy resolution, and several processes at once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engram_cli.client.cache import (
    DEFAULT_POLICY,
    CachePolicy,
    Forgetting,
    RecallCache,
    cache_key,
    invalidate_space,
)
from engram_cli.client.settings import resolve_client_settings
from engram_cli.engine.forgetting import decayed
from tests.locks import being_created

SERVER = "localhost:50051"
CURVE = Forgetting(exponent=0.1, floor=0.2, scale_s=86_400.0)
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def result(i: int = 0, confidence: float = 0.97, state: str | None = "consolidated",
           decay_rate: float = 0.0, content: str = "") -> dict[str, Any]:
    return {"id": f"mem_{i}", "content": content or f"memory number {i}",
            "confidence": confidence, "confidence_category": "high", "activation": 0.8,
            "state": state, "tags": ["t"], "decay_rate": decay_rate}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> RecallCache:
    c = RecallCache(tmp_path / "c.sqlite3", CachePolicy(), clock)
    yield c
    c.close()


def put(cache: RecallCache, cue: str, results: list[dict], space: str = "",
        server: str = SERVER, curve: Forgetting = CURVE) -> tuple[str, bool]:
    key = cache_key(server, space, cue, {"limit": 10})
    return key, cache.put(key, server, space, cue, results, curve)


def test_only_qualifying_answers_are_stored(cache: RecallCache, tmp_path: Path,
                                            clock: Clock) -> None:
    assert put(cache, "good", [result(1), result(2, confidence=0.9)])[1] is True
    refused = {
        "empty": [],
        "one low": [result(1), result(2, confidence=0.89)],
        "recent": [result(1, state="recent")],
        "consolidating": [result(1, state="consolidating")],
        "no state (upstream server)": [result(1, state=None)],
    }
    for cue, results in refused.items():
        key, stored = put(cache, cue, results)
        assert stored is False, cue
        assert cache.get(key) is None, cue
    assert cache.stats().entries == 1
    good = cache.get(cache_key(SERVER, "", "good", {"limit": 10}))
    assert good is not None and [r["id"] for r in good.results] == ["mem_1", "mem_2"]

    # Both thresholds are configurable.
    lax = RecallCache(tmp_path / "c.sqlite3",
                      CachePolicy(min_confidence=0.5, require_consolidated=False), clock)
    try:
        key, stored = put(lax, "no state (upstream server)", [result(1, 0.6, state=None)])
        assert stored and lax.get(key) is not None
    finally:
        lax.close()


def test_a_confidence_is_judged_against_the_bar_as_it_is_shown(cache: RecallCache) -> None:
    """0.9 sent over the wire arrives as float32 0.8999999762, and has decayed a little more
    by the time it is recalled: shown to 4 places it is 0.9, and at the bar."""
    for arrived in (0.8999999761581421, 0.8999993):
        assert put(cache, f"at {arrived}", [result(1, confidence=arrived)])[1] is True
    assert put(cache, "under", [result(1, confidence=0.89994)])[1] is False


def test_ttl_expiry_with_injected_clock(cache: RecallCache, clock: Clock) -> None:
    key, stored = put(cache, "coffee", [result(1, confidence=0.99)])
    assert stored
    clock.now = T0 + 3599
    assert cache.get(key) is not None
    clock.now = T0 + 3601
    assert cache.get(key) is None
    st = cache.stats()
    assert (st.entries, st.hits, st.misses, st.evictions) == (0, 1, 1, 1)
    assert st.bytes == 0


def test_hit_is_shown_with_the_confidence_it_would_have_now(cache: RecallCache,
                                                           clock: Clock) -> None:
    curve = Forgetting(exponent=0.01, floor=0.2, scale_s=60.0)
    key, _ = put(cache, "tea", [result(1, confidence=0.99),
                               result(2, confidence=0.995, decay_rate=0.002)], curve=curve)
    clock.now = T0 + 600
    hit = cache.get(key)
    assert hit is not None and hit.age_s == 600
    first, second = hit.results
    assert first["confidence"] == pytest.approx(decayed(0.99, 600, 0.0, 0.01, 0.2, 60.0))
    assert first["confidence"] < 0.99
    # A memory's own decay_rate wins over the server's exponent.
    assert second["confidence"] == pytest.approx(decayed(0.995, 600, 0.002, 0.01, 0.2, 60.0))
    assert first["confidence_category"] == "high"


def test_entry_decayed_under_the_bar_is_dropped_before_its_ttl(cache: RecallCache,
                                                             clock: Clock) -> None:
    steep = Forgetting(exponent=0.5, floor=0.0, scale_s=3600.0)
    key, _ = put(cache, "fading", [result(1, confidence=0.92), result(2, confidence=0.99)],
                 curve=steep)
    clock.now = T0 + 60  # 0.92 * (1 + 60/3600) ** -0.5 = 0.912: still above 0.9
    assert cache.get(key) is not None
    clock.now = T0 + 300  # 0.92 * (1 + 300/3600) ** -0.5 = 0.884: under the bar
    assert cache.get(key) is None
    assert cache.stats().entries == 0


def test_lru_eviction_keeps_the_size_bound(tmp_path: Path, clock: Clock) -> None:
    body = "x" * 2000
    cache = RecallCache(tmp_path / "c.sqlite3", CachePolicy(max_bytes=20_000), clock)
    try:
        keys = []
        for i in range(30):
            clock.now = T0 + i
            key, stored = put(cache, f"cue {i}", [result(i, content=body)])
            assert stored
            keys.append(key)
            if i == 5:
                clock.now += 0.5
                assert cache.get(keys[0]) is not None  # used: becomes the newest
            assert cache.stats().bytes <= 20_000
        st = cache.stats()
        assert 0 < st.entries < 30 and st.evictions >= 30 - st.entries
        with sqlite3.connect(cache.path) as db:
            assert db.execute("SELECT sum(size) FROM entries").fetchone()[0] == st.bytes
        assert cache.get(keys[-1]) is not None  # newest kept
        assert cache.get(keys[1]) is None  # oldest unused gone
    finally:
        cache.close()


def test_invalidate_space_drops_only_that_space_on_that_server(tmp_path: Path,
                                                               monkeypatch) -> None:
    cache = RecallCache.default()
    try:
        k_default, _ = put(cache, "a", [result(1)], space="")
        k_notes, _ = put(cache, "a", [result(1)], space="notes")
        k_other, _ = put(cache, "a", [result(1)], space="notes", server="otherhost:7000")
        # '' is the server's default space, and 'localhost' is localhost:50051.
        assert invalidate_space("localhost", "default") == 1
        assert invalidate_space(SERVER, "notes") == 1
    finally:
        cache.close()
    with RecallCache.default() as cache:
        assert cache.get(k_default) is None and cache.get(k_notes) is None
        assert cache.get(k_other) is not None


def test_invalidate_space_without_a_cache_creates_nothing(isolated_env: Path) -> None:
    assert invalidate_space(SERVER, "notes") == 0
    assert not (isolated_env / "cache").exists()


def test_cache_key_covers_every_parameter_that_changes_the_answer() -> None:
    base = {"limit": 10, "max_hops": None, "threshold": None, "spread": True,
            "tags": ["a", "b"], "trace": False, "key": ""}
    k = cache_key(SERVER, "", "cue", base)
    assert k == cache_key("localhost", "default", "cue", dict(base))
    variants = [cache_key("otherhost:1", "", "cue", base),
                cache_key(SERVER, "notes", "cue", base),
                cache_key(SERVER, "", "cue!", base)]
    for field, value in [("limit", 5), ("max_hops", 2), ("threshold", 0.3),
                         ("spread", False), ("tags", ["a"]), ("trace", True), ("key", "x")]:
        variants.append(cache_key(SERVER, "", "cue", {**base, field: value}))
    assert k not in variants and len(set(variants)) == len(variants)


def test_a_corrupt_cache_file_is_rebuilt(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database, just bytes " * 100)
    cache = RecallCache(path, CachePolicy(), clock)
    try:
        key = cache_key(SERVER, "", "x", {})
        assert cache.get(key) is None
        assert cache.put(key, SERVER, "", "x", [result(1)], CURVE)
        assert cache.get(key) is not None and cache.error is None
    finally:
        cache.close()


def test_policy_is_the_caches_share_of_the_client_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"

    def policy(**env: str) -> CachePolicy:
        return CachePolicy.from_settings(resolve_client_settings(env=env, path=path))

    assert policy() == CachePolicy() == DEFAULT_POLICY
    path.write_text("[client]\ncache_ttl_s = 60\ncache_min_confidence = 0.8\n"
                    "cache_require_consolidated = false\ncache_max_mb = 1\n")
    p = policy()
    assert (p.ttl_s, p.min_confidence, p.require_consolidated, p.max_bytes) == (
        60.0, 0.8, False, 1024 * 1024)
    p = policy(ENGRAM_CACHE_MIN_CONFIDENCE="0.95", ENGRAM_CACHE_REQUIRE_CONSOLIDATED="true")
    assert p.min_confidence == 0.95 and p.require_consolidated is True and p.ttl_s == 60.0


_WORKER = """
import sys
from engram_cli.client.cache import RecallCache, CachePolicy, Forgetting, cache_key
n, me = int(sys.argv[1]), sys.argv[2]
r = [{"id": "m", "content": "c" * 300, "confidence": 0.99, "activation": 1.0,
      "state": "consolidated", "tags": []}]
cache = RecallCache.default(CachePolicy(max_bytes=40_000))
hits = 0
for i in range(n):
    key = cache_key("h:1", "", f"cue {i % 20}", {})
    if cache.get(key) is None:
        assert cache.put(key, "h:1", "", f"cue {i % 20}", r, Forgetting(0.1, 0.2, 86400.0))
    else:
        hits += 1
assert cache.error is None, cache.error
cache.close()
print(hits)
"""


def test_a_cache_opened_while_another_process_writes_it_waits_its_turn(
        tmp_path: Path, clock: Clock) -> None:
    # Another process is in a write transaction on a new cache file (rollback mode still,
    # as it was creating the schema). Our switch to WAL is refused "database is locked" at
    # once, without the busy timeout's wait: the opening is tried again until it can be.
    path = tmp_path / "c.sqlite3"
    path.touch(mode=0o600)
    with being_created(path):
        cache = RecallCache(path, CachePolicy(), clock)
        key, stored = put(cache, "cue", [result()])
        assert stored and cache.error is None, cache.error
        assert cache.get(key) is not None
        cache.close()


def test_several_processes_share_the_cache(isolated_env: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, "60", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ}) for i in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    with RecallCache.default() as cache:
        st = cache.stats()
    assert st.hits + st.misses == 240
    assert st.hits == sum(int(out) for out, _ in outs)
    with sqlite3.connect(cache.path) as db:
        assert db.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()[0] == st.bytes
    assert st.bytes <= 40_000


def test_the_cache_file_is_private_to_its_user(cache: RecallCache) -> None:
    put(cache, "secret", [result(1)])
    assert cache.path.stat().st_mode & 0o777 == 0o600
