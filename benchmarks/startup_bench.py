"""What starting `engram` costs, side by side with yardsticks, in one run.

Each round runs every command below once, one after another (the order rotates from
round to round), so that drift in the machine's speed lands on all of them; ratios are
taken round by round and their median printed. Whole processes are timed, from start to
exit: wall time (time.perf_counter around the child) and the child's CPU (os.wait4).

  python -c pass               the interpreter alone: the floor of any Python command
  sqlite-utils --help          a well-known Python command-line tool's help
  engram --help                answered by the entry module, without Typer
  engram import --help         a command's help: Typer, without rich, grpc or the engine
  engram recall CUE            a cache hit, with the server stopped
  ... (with config.toml)      the same hit for a user with a config file: its TOML is read

For the cached recall the script starts its own `engram serve` (free port, temp data,
cache and config dirs), imports a few memories with `engram import` (confidence 0.97),
consolidates them, recalls one cue once so that its answer is cached (consolidated and
confident enough: README, "The cache"), checks that a second recall is a hit, then stops
the server: every timed recall is answered from the cache alone. The second recall row
has a `config.toml` with a [client] table (the defaults' values, so the answer is the same
hit): reading it imports tomllib, and tomllib imports typing.

Goals (issue 12): `engram --help` <= 0.5x `sqlite-utils --help`; a cached `engram recall`
<= 100 ms median and <= 5x `python -c pass`.

    python benchmarks/startup_bench.py              # 31 rounds
    python benchmarks/startup_bench.py --quick      # 5 rounds, a smoke run

Needs the `engram` and `sqlite-utils` commands beside this Python (pip install -e ".[bench]").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support
import orjson

CUE = "lighthouse keeper"
MEMORIES = [
    "The lighthouse keeper logs the ships that pass in the night.",
    "A lighthouse keeper trims the lamp wick before dusk.",
    "Espresso tastes bitter when the grind is too fine.",
    "Tomatoes in the greenhouse need water every morning.",
    "The ferry to the island leaves at seven from the north pier.",
]


def command(name: str) -> str:
    """The console script beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"startup_bench: no `{name}` command: pip install -e \".[bench]\"")
    return found


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process; it must exit 0."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"startup_bench: {' '.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def engram_json(engram: str, args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run([engram, *args], capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"startup_bench: engram {' '.join(args)} failed: "
                         f"{proc.stderr.decode().strip()}")
    out: dict = orjson.loads(proc.stdout)
    return out


def warm_cache(engram: str, work: Path, env: dict[str, str]) -> list[str]:
    """Serve, import, consolidate, cache one answer, stop: the recall command to time."""
    import grpc
    from google.protobuf.empty_pb2 import Empty

    from engram_cli.rpc import pb, svc

    server, address = _support.start_server(work / "data", env, "--idle-timeout", "0")
    try:
        records = work / "memories.jsonl"
        records.write_bytes(b"".join(orjson.dumps({"content": text, "confidence": 0.97})
                                     + b"\n" for text in MEMORIES))
        engram_json(engram, ["--server", address, "import", str(records), "--json",
                             "--quiet", "--wait-indexed", "60"], env)
        with grpc.insecure_channel(address) as channel:
            svc.EngramServiceStub(channel).Consolidate(pb.ConsolidateRequest(all=Empty()),
                                                      timeout=60)
        recall = ["--server", address, "recall", CUE, "--format", "json"]
        first = engram_json(engram, recall, env)
        second = engram_json(engram, recall, env)
        if first["cached"] or not second["cached"] or not second["results"]:
            raise SystemExit("startup_bench: the answer was not cached; see README's "
                             "cache section for what qualifies")
    finally:
        _support.stop_server(server)
    if not engram_json(engram, recall, env)["cached"]:
        raise SystemExit("startup_bench: the cached answer needs the server")
    return [engram, *recall]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--quick", action="store_true", help="5 rounds: a smoke run")
    opts = parser.parse_args(argv)
    rounds = 5 if opts.quick else opts.rounds
    engram, sqlite_utils = command("engram"), command("sqlite-utils")

    work = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    # As installed by pip, which compiles the bytecode: an editable checkout run with
    # PYTHONDONTWRITEBYTECODE set would otherwise compile every module on every start.
    import compileall

    import engram_cli

    compileall.compile_dir(Path(engram_cli.__file__).parent, quiet=1)
    env = {**os.environ, "ENGRAM_CACHE_DIR": str(work / "cache"),
           "ENGRAM_CONFIG_DIR": str(work / "config"), "ENGRAM_DATA_DIR": str(work / "data"),
           "ENGRAM_NO_AUTOSTART": "1"}
    try:
        cached_recall = warm_cache(engram, work, env)
        configured = work / "configured"
        configured.mkdir()
        (configured / "config.toml").write_text(
            "[client]\ncache_ttl_s = 3600.0\ncache_min_confidence = 0.9\n")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "sqlite-utils --help": [sqlite_utils, "--help"],
            "engram --help": [engram, "--help"],
            "engram import --help": [engram, "import", "--help"],
            "engram recall (cached)": cached_recall,
            "  ... (with config.toml)": cached_recall,
        }
        envs = {name: env for name in commands}
        envs["  ... (with config.toml)"] = {**env, "ENGRAM_CONFIG_DIR": str(configured)}
        if not engram_json(engram, cached_recall[1:], envs["  ... (with config.toml)"]
                           )["cached"]:
            raise SystemExit("startup_bench: with config.toml the answer is not cached")
        names = list(commands)
        for name in names:  # one uncounted run each: the file cache, .pyc files
            timed(commands[name], envs[name])
        wall: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                w, c = timed(commands[name], envs[name])
                wall[name].append(w)
                cpu[name].append(c)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"startup_bench: {rounds} rounds, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus; medians of whole processes")
    print(f"  {'command':<26} {'wall ms':>9} {'cpu ms':>9} {'min..max wall':>16}")
    for name in names:
        print(f"  {name:<26} {1000 * statistics.median(wall[name]):9.1f} "
              f"{1000 * statistics.median(cpu[name]):9.1f} "
              f"{1000 * min(wall[name]):7.1f}..{1000 * max(wall[name]):<7.1f}")

    def ratio(a: str, b: str) -> tuple[float, float]:
        return (statistics.median(x / y for x, y in zip(wall[a], wall[b], strict=True)),
                statistics.median(x / y for x, y in zip(cpu[a], cpu[b], strict=True)))

    print(f"\n  {'ratio (median of the rounds)':<52} {'wall':>6} {'cpu':>6}  goal")
    for a, b, goal in (("engram --help", "sqlite-utils --help", "<= 0.5x"),
                       ("engram import --help", "sqlite-utils --help", ""),
                       ("engram recall (cached)", "python -c pass", "<= 5x"),
                       ("  ... (with config.toml)", "python -c pass", ""),
                       ("engram --help", "python -c pass", ""),
                       ("engram import --help", "python -c pass", "")):
        w, c = ratio(a, b)
        print(f"  {a + ' / ' + b:<52} {w:5.2f}x {c:5.2f}x  {goal}")
    hit = 1000 * statistics.median(wall["engram recall (cached)"])
    print(f"\n  cached recall: {hit:.1f} ms median wall (goal <= 100 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
