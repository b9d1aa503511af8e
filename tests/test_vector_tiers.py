"""Where vectors live: the vector index is persisted beside the SQLite store, at `warm_path`
when it is set (the fast disk), never in the data dir then; the hot tier (`hot_capacity`)
bounds memory rows in RAM, not the index."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from engram_cli.engine.indexer import INDEX_DIR
from engram_cli.engine.model import MemoryRecord
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import SPECS, Settings
from engram_cli.engine.store import Store

NOTES = ["We rented a chalet high in the Alps for the ski week",
         "The espresso machine leaks water onto the counter",
         "Tomatoes in the greenhouse are finally ripe"]


def wait_indexed(store: Store, n: int) -> None:
    deadline = time.monotonic() + 30
    while not (store.vector_stats()["indexed"] >= n and store.vector_stats()["pending"] == 0):
        assert time.monotonic() < deadline, store.vector_stats()
        time.sleep(0.05)


def test_the_vector_index_lives_at_warm_path_and_the_hot_tier_does_not_bound_it(
        tmp_path: Path) -> None:
    data, warm = tmp_path / "data", tmp_path / "nvme"
    settings = Settings().replace({"warm_path": str(warm), "hot_capacity": 1,
                                   "consolidation_interval_s": 0.0})
    with Store(data, settings) as store:
        store.remember_many("default", [MemoryRecord(id=f"m{i}", content=t)
                                        for i, t in enumerate(NOTES)])
        wait_indexed(store, len(NOTES))
        # A hot tier of one row holds every vector all the same: it bounds rows, not these.
        assert store.vector_stats()["indexed"] == len(NOTES)
        assert store.tier_stats()["warm_path"] == str(warm)
    index_dir = warm / INDEX_DIR
    assert sorted(p.name for p in index_dir.iterdir()), "nothing saved"
    assert stat.S_IMODE(index_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in index_dir.iterdir())
    assert not (data / INDEX_DIR).exists()
    # Reopened from there: the paraphrase is found by meaning at once.
    with Store(data, settings) as store:
        wait_indexed(store, len(NOTES))
        top = store.recall("default", RecallQuery(text="cottage Swiss mountains",
                                                  mode="vector", limit=1)).memories
        assert [m.content for m in top] == [NOTES[0]]


def test_the_settings_say_what_hot_capacity_and_warm_path_govern() -> None:
    text = {s.key: s.description for s in SPECS}
    assert "rows" in text["hot_capacity"] and "vector index" in text["hot_capacity"]
    assert "vector index" in text["warm_path"]


def test_a_warm_path_the_store_cannot_be_created_in_is_one_line_not_a_traceback(
        tmp_path: Path) -> None:
    """/proc/self passes for a writable directory, and creating the store there failed
    with a FileNotFoundError traceback."""
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "engram.toml").write_text('[engine]\nwarm_path = "/proc/self"\n')
    done = subprocess.run([sys.executable, "-m", "engram_cli", "serve", "--port", "0",
                           "--data-dir", str(data)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    assert "cannot create the store in warm_path /proc/self" in done.stderr
    assert "Traceback" not in done.stderr
