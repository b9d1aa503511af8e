"""`engram import --embed` against the embedding model's own rate, side by side in one run.

Into our server with its embedder off (embedding_model = "none", so the server does no
model work): records/s of `import --embed` with 1 and 2 worker processes (fresh embedding
cache each), against the model's raw rate in one process over the same texts (goal:
>= 0.8x with one worker), and the same file imported again (every vector from the cache,
no model time at all).

The raw rate is measured twice: as the model runs by default (its tokenizer spreads a
batch over every core) and with one thread (TOKENIZERS_PARALLELISM=false), which is what
one worker process can be: on a machine of two cores that also runs the importer and the
server, the first is not a rate one worker can reach. Both ratios are printed. The raw
rates are measured before and after the imports and averaged, because a shared machine's
speed drifts.

Then the client alone: the same import with --dry-run (everything but the sending), so no
server shares the machine's cores, as when it runs on another machine.

--rss N also imports N records (1 worker) and prints the peak RSS of the importer and of
its worker, polled from /proc, next to the same at N/10 records: flat means bounded.

    python benchmarks/client_embed_bench.py [--records 200000] [--rss 1000000]

--against DIR runs only this tree's import --embed (into this tree's server) against
another tree's (into its server; DIR is the folder holding its engram_cli/, e.g.
`git archive HEAD~3 engram_cli | tar -x -C DIR`), interleaved round by round, and prints
the ratios and each process's CPU per record:

    python benchmarks/client_embed_bench.py --records 100000 --against DIR --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _support  # benchmarks/, this script's folder

RAW = """
import sys, time
from engram_cli.benchsuite import datagen
from engram_cli.engine.embedding import DEFAULT_MODEL, load_model
texts = [r["content"] for r in datagen.generate_records(int(sys.argv[1]))]
model = load_model(DEFAULT_MODEL)
model.embed(texts[:256])  # warm
started = time.perf_counter()
for i in range(0, len(texts), 256):
    model.embed(texts[i:i + 256])
print(len(texts) / (time.perf_counter() - started))
"""


def model_rate(n: int, one_thread: bool) -> float:
    """Texts/s of the model in a process of its own over the bench's texts, no I/O."""
    env = dict(os.environ)
    if one_thread:
        env.update(TOKENIZERS_PARALLELISM="false", RAYON_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", RAW, str(n)], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def _tree_env(source: Path | None) -> dict[str, str]:
    """The environment that runs another tree's engram_cli (None: this one's)."""
    env = dict(os.environ)
    if source is not None:  # its worker processes inherit the path
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source),
                                                          env.get("PYTHONPATH")]))
    return env


def start_server(data: Path, source: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A server with its embedder off; of the tree `source` (None: this one)."""
    data.mkdir(parents=True)
    (data / "engram.toml").write_text('[engine]\nembedding_model = "none"\n')
    proc = subprocess.Popen([sys.executable, "-m", "engram_cli", "serve", "--port", "0",
                             "--data-dir", str(data)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=_tree_env(source),
                            cwd=source)  # `-m` puts the working directory first
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"listening on (\S+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit("the server did not start")


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    try:
        return _support.proc_cpu(f"/proc/{pid}/stat")[1]
    except OSError:
        return 0.0


def _thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process so far, by thread id (the main thread's is
    the process id)."""
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            out[int(tid)] = _support.proc_cpu(f"/proc/{pid}/task/{tid}/stat")[1]
        except OSError:
            continue
    return out


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def run_import(address: str, path: Path, cache: Path, *args: str,
               server_pid: int = 0, source: Path | None = None) -> dict:
    """The import's --json summary, plus the peak RSS (KiB) of the importer
    (`rss_main_kb`) and of its largest worker (`rss_worker_kb`), and the CPU seconds of the
    importer, its workers and the server while it ran (`cpu`)."""
    env = {**_tree_env(source), "ENGRAM_CACHE_DIR": str(cache), "ENGRAM_NO_AUTOSTART": "1"}
    server_before = _cpu_s(server_pid) if server_pid else 0.0
    proc = subprocess.Popen([sys.executable, "-m", "engram_cli", "--server", address,
                             "import", str(path), "--json", "--quiet", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=source)  # `-m` puts the working directory first
    peaks = {"main": 0, "worker": 0}
    cpu: dict[int, float] = {}  # last seen, by process
    threads: dict[int, float] = {}  # the importer's, last seen, by thread

    def poll() -> None:
        while proc.poll() is None:
            peaks["main"] = max(peaks["main"], _rss_kb(proc.pid))
            cpu[proc.pid] = max(cpu.get(proc.pid, 0.0), _cpu_s(proc.pid))
            for tid, seconds in _thread_cpu_s(proc.pid).items():
                threads[tid] = max(threads.get(tid, 0.0), seconds)
            for child in _children(proc.pid):
                peaks["worker"] = max(peaks["worker"], _rss_kb(child))
                cpu[child] = max(cpu.get(child, 0.0), _cpu_s(child))
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    poller.join()
    if proc.returncode != 0:
        raise SystemExit(f"import failed: {err}")
    summary = dict(json.loads(out.strip().splitlines()[-1]))
    summary.update(rss_main_kb=peaks["main"], rss_worker_kb=peaks["worker"])
    main_cpu = cpu.pop(proc.pid, 0.0)
    summary["cpu"] = {"importer": main_cpu, "workers": sum(cpu.values()),
                      "server": _cpu_s(server_pid) - server_before if server_pid else 0.0}
    # The importer's own thread (reading, mapping, the embedding stage, cutting batches)
    # apart from its others (gRPC's, the cache writer, the worker pool's).
    summary["importer_main"] = threads.pop(proc.pid, 0.0)
    summary["importer_threads"] = sum(threads.values())
    return summary


def cpu_line(s: dict) -> str:
    """CPU per record of each process: on a machine of two cores, 2 s of CPU a second is
    all there is, whoever spends it."""
    n = max(1, s["imported"])
    parts = {k: v / n * 1e6 for k, v in s["cpu"].items()}
    total = sum(parts.values())
    split = (f" (main thread {s['importer_main'] / n * 1e6:,.0f} us, other threads "
             f"{s['importer_threads'] / n * 1e6:,.0f} us)")
    return ("CPU per record: " + ", ".join(f"{k} {v:,.0f} us" + (split if k == "importer"
                                                                 else "")
                                           for k, v in parts.items())
            + f"; total {total:,.0f} us, so at most {2e6 / total:,.0f} records/s on 2 cores"
            if total else "")


def rss_run(root: Path, n: int) -> None:
    from engram_cli.benchsuite import datagen

    for records in (n // 10, n):
        path = datagen.write_jsonl(root / f"rss-{records}.jsonl", records)
        proc, address = start_server(root / f"srv-rss-{records}")
        try:
            s = run_import(address, path, root / f"cache-rss-{records}", "--embed",
                           "--embed-workers", "1")
        finally:
            proc.terminate()
            proc.wait(60)
        path.unlink()
        print(f"peak RSS, import --embed of {records:,} records: importer "
              f"{s['rss_main_kb'] / 1024:,.0f} MiB, worker {s['rss_worker_kb'] / 1024:,.0f} MiB "
              f"({s['records_per_second']:,.0f} records/s)")


def compare(root: Path, path: Path, against: Path, rounds: int,
            worker_counts: tuple[int, ...] = (1, 2)) -> None:
    """This tree's `import --embed` against another tree's, interleaved (each into a fresh
    server of its own tree, fresh cache), so that a shared machine's drift falls on both."""
    for workers in worker_counts:
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for r in range(rounds):
            order = [("before", against), ("after", None)]
            for name, source in order if r % 2 == 0 else order[::-1]:
                where = root / f"cmp-{workers}-{r}-{name}"
                proc, address = start_server(where / "srv", source)
                try:
                    s = run_import(address, path, where / "cache", "--embed",
                                   "--embed-workers", str(workers), server_pid=proc.pid,
                                   source=source)
                finally:
                    proc.terminate()
                    proc.wait(20)
                runs[name].append(s)
                print(f"{workers} worker(s), round {r + 1}, {name}: "
                      f"{s['records_per_second']:,.0f} records/s; {cpu_line(s)}", flush=True)
        before, after = runs["before"], runs["after"]
        ratios = [a["records_per_second"] / b["records_per_second"]
                  for a, b in zip(after, before, strict=True)]
        print(f"{workers} worker(s): after/before records/s per round: "
              + ", ".join(f"{x:.2f}x" for x in ratios))
        for key in ("importer", "workers", "server"):
            b = sum(x["cpu"][key] / x["imported"] for x in before) / rounds * 1e6
            a = sum(x["cpu"][key] / x["imported"] for x in after) / rounds * 1e6
            print(f"  {key} CPU per record: {b:,.0f} us -> {a:,.0f} us"
                  + (f" ({a / b:.2f}x)" if b else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rss", type=int, default=0, metavar="N",
                        help="also the importer's peak RSS at N and N/10 records")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="only compare with the engram_cli of another source tree "
                             "(a folder holding engram_cli/, e.g. an earlier commit's from "
                             "git archive), interleaved")
    parser.add_argument("--rounds", type=int, default=2, help="with --against")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="with --against: the worker counts to compare")
    opts = parser.parse_args()
    n = opts.records
    from engram_cli.benchsuite import datagen

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tempfile.mkdtemp(dir=tmp))
        path = datagen.write_jsonl(root / "bench.jsonl", n)
        if opts.against is not None:
            compare(root, path, opts.against.resolve(), opts.rounds, tuple(opts.workers))
            return
        raw = [model_rate(n, False), model_rate(n, True)]
        rows = []
        for workers in (1, 2):
            proc, address = start_server(root / f"srv-{workers}")
            try:
                s = run_import(address, path, root / f"cache-{workers}", "--embed",
                               "--embed-workers", str(workers), server_pid=proc.pid)
                again = run_import(address, path, root / f"cache-{workers}", "--embed",
                                   "--embed-workers", str(workers), server_pid=proc.pid)
            finally:
                proc.terminate()
                proc.wait(20)
            # The client alone: --dry-run does all but the sending, with no server on this
            # machine's two cores (as with a server on another machine, less gRPC's part).
            alone = run_import(address, path, root / f"cache-dry-{workers}", "--embed",
                               "--embed-workers", str(workers), "--dry-run")
            rows.append((workers, s, again, alone))
        raw = [(raw[0] + model_rate(n, False)) / 2, (raw[1] + model_rate(n, True)) / 2]
        print(f"records: {n:,}; cores: {os.cpu_count()}")
        print(f"model raw rate (one process, no I/O): {raw[0]:,.0f} texts/s as it runs, "
              f"{raw[1]:,.0f} texts/s with one thread")
        for workers, s, again, alone in rows:
            rate = s["records_per_second"]
            print(f"import --embed, {workers} worker(s): {rate:,.0f} records/s "
                  f"= {rate / raw[0]:.2f}x the model's raw rate, {rate / raw[1]:.2f}x its "
                  f"one-thread rate (goal >= 0.8x with 1); embedded {s['embedded']:,}, "
                  f"model time {s['embed_model_seconds']:.2f} s, importer peak RSS "
                  f"{s['rss_main_kb'] / 1024:,.0f} MiB")
            print(f"  {cpu_line(s)}")
            print(f"  re-import (cache): {again['records_per_second']:,.0f} records/s "
                  f"= {again['records_per_second'] / rate:.2f}x the first import, "
                  f"{again['records_per_second'] / raw[0]:.2f}x the model's raw rate; "
                  f"embedded {again['embedded']:,}, cache hits {again['embed_cache_hits']:,}")
            print(f"  {cpu_line(again)}")
            print(f"  the client alone (--dry-run: all but the sending, no server on these "
                  f"cores): {alone['records_per_second']:,.0f} records/s = "
                  f"{alone['records_per_second'] / raw[0]:.2f}x the model's raw rate, "
                  f"{alone['records_per_second'] / raw[1]:.2f}x its one-thread rate")
        one, two = rows[0][1]["records_per_second"], rows[1][1]["records_per_second"]
        print(f"scaling 1 -> 2 workers: {two / one:.2f}x")
        if opts.rss:
            rss_run(root, opts.rss)


if __name__ == "__main__":
    main()
