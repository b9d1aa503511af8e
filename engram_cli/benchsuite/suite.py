"""A whole `engram bench` run: probe the server, run the chosen rows in one scratch
space, and always remove that space afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from engram_cli.benchsuite import scenarios
from engram_cli.benchsuite.runner import BenchPlan, BenchResult, Progress, RowSkipped, quiet
from engram_cli.benchsuite.target import Target
from engram_cli.benchsuite.workload import Workload
from engram_cli.config import Connection
from engram_cli.errors import Unsupported, UsageError


def select(only: Iterable[str]) -> list[str]:
    """The rows to run, in table order; `only` empty means all of them."""
    wanted = [name.strip().lower() for name in only if name.strip()]
    unknown = [name for name in wanted if name not in scenarios.NAMES]
    if unknown:
        raise UsageError(f"--only {unknown[0]!r} is not a benchmark row",
                         f"choose from {', '.join(scenarios.NAMES)}")
    return [name for name in scenarios.NAMES if not wanted or name in wanted]


def run_bench(conn: Connection, plan: BenchPlan, only: Sequence[str] = (),
              progress: Progress = quiet) -> BenchResult:
    """Measure the server `conn` names (its space is ignored: all work happens in a
    scratch space, removed before this returns or raises)."""
    names = select(only)
    started = time.perf_counter()
    address = conn.server
    target = Target(conn)
    workload = Workload()
    result = BenchResult(server=address, space=target.space, plan=plan, extensions=False)
    try:
        target.probe()
        result.extensions = target.extensions
        if not target.extensions:
            from engram_cli.contract import UPSTREAM_EMBEDDING_DIM

            workload.embedding_dim = UPSTREAM_EMBEDDING_DIM
        result.server_version = target.server_version
        result.data_source = workload.source_name
        progress(f"server {address}: " + ("engram.v1 + engram-cli extensions"
                                          if target.extensions else "engram.v1 only (memories "
                                          f"carry {workload.embedding_dim}-d vectors)")
                 + f"; scratch space {target.space}")
        for name in names:
            try:
                if name == scenarios.SWEEP:
                    result.sweep = scenarios.sweep(target, workload, plan, progress)
                else:
                    result.rows.append(scenarios.ROWS[name](target, workload, plan, progress))
            except RowSkipped as exc:
                result.skipped[name] = str(exc)
            except Unsupported as exc:
                # An RPC the row needs is missing (UNIMPLEMENTED): the row cannot run
                # here, the others still can.
                result.skipped[name] = str(exc)
    finally:
        progress(f"removing scratch space {target.space}")
        result.cleanup = target.cleanup()
        result.elapsed_s = time.perf_counter() - started
    return result
