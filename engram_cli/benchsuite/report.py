"""A finished run as people read it: the table beside the seed's published figures, the
batch-size sweep as a bar chart, or every figure as JSON."""

from __future__ import annotations

from typing import Any

from engram_cli.benchsuite.runner import WARMUP_ROUNDS, BenchResult, RowResult

# The performance guide's table, measured on its authors' machine.
SEED_ROWS: dict[str, dict[str, Any]] = {
    "batching": {"before": 1200.0, "after": 180.0, "unit": "ms", "improvement": 6.7},
    "pooling": {"before": 45.0, "after": 12.0, "unit": "ms/op", "improvement": 3.8},
    "caching": {"before": 35.0, "after": 5.0, "unit": "ms", "improvement": 7.0},
    "streaming": {"before": 80.0, "after": 390.0, "unit": "ops/s", "improvement": 4.9},
}
# batch size -> (ops/s, latency ms); the guide has no 500 point.
SEED_SWEEP: dict[int, tuple[float, float]] = {
    1: (80.0, 12.0), 10: (280.0, 35.0), 100: (520.0, 190.0), 1000: (680.0, 1470.0)}

CHART_WIDTH = 20
_EIGHTHS = " ▏▎▍▌▋▊▉"


def _r(x: float) -> float:
    # Significant digits, not decimals: a tiny figure must not round to 0.
    return float(f"{float(x):.6g}")


def row_dict(row: RowResult) -> dict[str, Any]:
    return {
        "name": row.name, "title": row.title, "unit": row.unit,
        "better": "higher" if row.higher_is_better else "lower",
        "before": _r(row.before), "after": _r(row.after),
        "improvement": _r(row.improvement),
        "before_label": row.before_label, "after_label": row.after_label,
        "rounds": len(row.before_samples), "note": row.note,
        "samples": {"before": [_r(x) for x in row.before_samples],
                    "after": [_r(x) for x in row.after_samples]},
        "seed": SEED_ROWS.get(row.name), **row.extra,
    }


def to_json(result: BenchResult) -> dict[str, Any]:
    """Every figure of the run, for machines."""
    sweep = None
    if result.sweep is not None:
        sweep = {
            "method": result.sweep.method, "note": result.sweep.note,
            "rounds": result.plan.rounds, "warmup": "one call per size",
            "points": [
                {"batch": p.batch, "calls_per_round": p.calls, "ops_per_s": _r(p.ops_per_s),
                 "p50_ms": _r(p.p50_ms), "p99_ms": _r(p.p99_ms),
                 "ops_per_s_samples": [_r(x) for x in p.ops_per_s_samples],
                 "seed": ({"ops_per_s": SEED_SWEEP[p.batch][0],
                           "latency_ms": SEED_SWEEP[p.batch][1]}
                          if p.batch in SEED_SWEEP else None)}
                for p in result.sweep.points],
        }
    return {
        "server": result.server, "server_version": result.server_version,
        "extensions": result.extensions, "space": result.space,
        "quick": result.plan.quick, "rounds": result.plan.rounds,
        "warmup_rounds": WARMUP_ROUNDS, "data": result.data_source,
        "rows": [row_dict(r) for r in result.rows], "sweep": sweep,
        "skipped": [{"name": n, "reason": why} for n, why in result.skipped.items()],
        "cleanup": result.cleanup, "elapsed_s": _r(result.elapsed_s),
    }


def fmt(value: float, unit: str = "") -> str:
    """A figure with as many digits as it deserves, and its unit."""
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _seed_cell(name: str) -> str:
    seed = SEED_ROWS.get(name)
    if seed is None:
        return ""
    return f"{seed['before']:g} -> {seed['after']:g} ({seed['improvement']:.1f}x)"


def bar(value: float, top: float, width: int = CHART_WIDTH) -> str:
    """A horizontal bar in block characters, value/top of `width` cells."""
    cells = 0.0 if top <= 0 else max(0.0, min(1.0, value / top)) * width
    full = int(cells)
    part = _EIGHTHS[int((cells - full) * 8)] if full < width else ""
    if value > 0 and not full and not part.strip():
        part = _EIGHTHS[1]  # a measured figure never shows as no bar at all
    return ("█" * full + part.strip()).ljust(width)


def render(result: BenchResult, console: Any) -> None:
    """The table, what each row compared, the sweep chart and what was skipped, on a rich
    Console; sized to fit an 80-column terminal."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    title = f"engram bench: {result.server}" + (" (quick)" if result.plan.quick else "")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    table.add_column("optimization", no_wrap=True)
    table.add_column("before", justify="right", no_wrap=True)
    table.add_column("after", justify="right", no_wrap=True)
    table.add_column("improvement", justify="right", no_wrap=True)
    table.add_column("seed", style="dim", no_wrap=True)
    for row in result.rows:
        table.add_row(row.title, fmt(row.before, row.unit), fmt(row.after, row.unit),
                      f"{row.improvement:.1f}x", _seed_cell(row.name))
    if result.rows:
        console.print(table)
        console.print()
        console.print(Text(f"Medians of {result.plan.rounds} interleaved rounds (after "
                           f"{WARMUP_ROUNDS} warm-up round). improvement: how many times "
                           "better after is than before.", style="dim"))
    for row in result.rows:
        line = Text(f"{row.name}: ", style="bold")
        line.append(f"{row.before_label} vs {row.after_label}")
        if row.note:
            line.append(f"; {row.note}", style="dim")
        console.print(line)
    if result.sweep is not None and result.sweep.points:
        sweep = result.sweep
        console.print()
        console.print(Text(f"Batch-size sweep ({sweep.method}): memories/s and per-call "
                           "latency p50 / p99 (seed: ops/s, latency)", style="bold"))
        top = max(p.ops_per_s for p in sweep.points)
        for p in sweep.points:
            line = Text(f"{p.batch:>5} ")
            line.append(bar(p.ops_per_s, top), style="cyan")
            line.append(f" {fmt(p.ops_per_s):>7}/s {fmt(p.p50_ms):>5} / "
                        f"{fmt(p.p99_ms, 'ms'):>8}")
            seed = SEED_SWEEP.get(p.batch)
            if seed:
                line.append(f"  seed {seed[0]:g}/s, {seed[1]:g} ms", style="dim")
            console.print(line, no_wrap=True, overflow="ellipsis")
        if sweep.note:
            console.print(Text(sweep.note, style="dim"))
    for name, why in result.skipped.items():
        console.print(Text(f"not run: {name}: {why}", style="yellow"))
    cleanup = result.cleanup
    if cleanup.get("method") == "failed":
        console.print(Text(f"could not remove scratch space {result.space}: "
                           f"{cleanup.get('error')}", style="red"))
    else:
        console.print(Text(f"Scratch space {result.space} removed ({cleanup.get('method')}, "
                           f"{cleanup.get('deleted', 0)} memories); run took "
                           f"{result.elapsed_s:.1f} s.", style="dim"))
