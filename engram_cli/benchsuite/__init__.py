"""`engram bench`'s measurement library: the seed's performance table, measured against
any Engram server, before and after side by side in one run.

runner.py interleaves the two variants of a row over rounds and takes medians;
workload.py makes unique memories and cues; target.py owns the server connection and
the scratch space; scenarios.py has one function per row and the batch-size sweep
(caching.py adapts the recall cache for its row); report.py turns the figures into the
table, the chart and JSON; suite.py's `run_bench` ties them together.
"""

from engram_cli.benchsuite.runner import BenchPlan, BenchResult, RowResult
from engram_cli.benchsuite.suite import run_bench

__all__ = ["BenchPlan", "BenchResult", "RowResult", "run_bench"]
