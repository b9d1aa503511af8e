"""`engram recall --trace` says which index seeded each result (lexical, vector, both) or
that spreading reached it, in --format json and in the table, from our server's reserved
metadata key; a server that does not say leaves it unknown."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from engram_cli.contract import SEED_KEY
from tests import import_support

CHALET = "We rented a chalet high in the Alps for the ski week"
SWISS = "Our cottage in the Swiss mountains has a wood stove"
TOMATOES = "Remember to water the tomatoes"
CUE = "cottage Swiss mountains"


wait_for = functools.partial(import_support.wait_for, timeout=30.0)


def seeds(engram: Callable[..., Any], *extra: str) -> dict[str, Any]:
    result = engram("recall", CUE, "--trace", "--format", "json", "--no-cache", *extra)
    assert result.exit_code == 0, result.output
    return {r["content"]: r["trace"]["seed"] for r in orjson.loads(result.stdout)["results"]}


def test_trace_says_which_index_seeded_each_result(engram: Callable[..., Any],
                                                   server: Any) -> None:
    records = "\n".join(orjson.dumps({"id": f"m{i}", "content": t, "confidence": 0.95}
                                     ).decode() for i, t in enumerate((CHALET, SWISS,
                                                                       TOMATOES)))
    assert engram("import", "-", "--format", "jsonl", "--quiet", input=records).exit_code == 0
    # The tomatoes share nothing with the cue: only an association reaches them.
    server.store.associate("default", "m1", "m2", 0, 0.9, "")
    wait_for(lambda: server.store.vector_stats()["indexed"] == 3
             and server.store.vector_stats()["pending"] == 0)

    # Both indexes proposed the Swiss cottage; only the vector index the chalet (no word
    # in common with the cue: a weak seed beside the cottage, kept by a low threshold).
    hybrid = seeds(engram, "--threshold", "0.01")
    assert hybrid == {SWISS: "both", CHALET: "vector", TOMATOES: "spread"}, hybrid
    assert seeds(engram) == {SWISS: "both", TOMATOES: "spread"}
    assert seeds(engram, "--mode", "lexical") == {SWISS: "lexical", TOMATOES: "spread"}
    assert seeds(engram, "--mode", "vector")[CHALET] == "vector"
    assert seeds(engram, "--no-spread") == {SWISS: "both"}

    table = engram("recall", CUE, "--trace", "--format", "table", "--no-cache")
    assert table.exit_code == 0, table.output
    assert "seed" in table.stdout and "spread" in table.stdout, table.stdout
    assert "m1 -> m2 (activation" in table.stdout and "seed: spread" in table.stdout
    # Without --trace the server sends no seeds, and a result's metadata never shows one.
    plain = orjson.loads(engram("recall", CUE, "--format", "json", "--no-cache").stdout)
    assert all("trace" not in r and SEED_KEY not in r["metadata"]
               for r in plain["results"])


def test_a_server_that_does_not_say_leaves_the_seed_unknown(runner: Any,
                                                            upstream_server: Any) -> None:
    from engram_cli.cli.main import app
    from engram_cli.engine.model import MemoryRecord

    upstream_server.store.remember_many("default", [MemoryRecord(id="k", content=SWISS)])
    out = runner.invoke(app, ["--server", upstream_server.address, "recall", "cottage",
                              "--trace", "--format", "json", "--no-cache"])
    assert out.exit_code == 0, out.output
    results = orjson.loads(out.stdout)["results"]
    assert results and all(r["trace"] is None or r["trace"]["seed"] is None
                           for r in results), results
