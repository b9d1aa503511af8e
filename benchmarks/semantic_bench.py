"""Semantic memory in `engram serve`, side by side in one run: scale, what the write path
pays, and retrieval quality (issue 13's benchmarks).

    python benchmarks/semantic_bench.py --n 100000
    python benchmarks/semantic_bench.py                  # 1,000,000 memories
    python benchmarks/semantic_bench.py --n 100000 --candidates 128   # another vector_candidates

Text: Debian package descriptions (apt's English Translation files; run
`apt-get update -o Acquire::Languages=en` once), as in benchmarks/vector_index_bench.py:
real synopses, long descriptions and sentences, and beyond those texts of two real sentences
of different packages. Every memory is imported text-only: the server embeds them itself.

1. The write path: `engram import` of the N texts into a fresh server with the embedder on
   and with `embedding_model = "none"`, interleaved (--rounds, default 4, the order
   alternating); the import rate of each. Rounds after the first run once the scale
   measures (3.) and the floor are done.
2. Catch-up: after the embedder-on import ends, memories embedded and indexed per second
   until Introspect's vector_index.pending is 0 (searchable), against the model's raw rate
   in this one process over the same texts, measured in slices during the catch-up (every
   2 s the server's processes are stopped while this one embeds 4,096 texts; that time is
   not the catch-up's), and for context just before and just after.
3. Scale, on that server: embedding-cue recall@10 (max_hops 0) against exact brute force
   (numpy over this process's vectors of the stored texts, computed before the servers
   start, so that a minute of it does not stand between the catch-up and the measure) and
   its p99 over gRPC; hybrid text recall with max_hops 3, p99 (each kind timed after 20
   recalls of its own to warm up); the server's RSS; the first 10 hybrid recalls after 1 s
   without calls, on their own; then the
   hybrid recalls again after --idle seconds without calls (default 90), with the pages
   the machine read back from disk meanwhile (below; with --drop the store's files are
   taken out of the page cache first, as such a machine would). Then the floor: the same recalls
   in this process, on the server's data dir once it has stopped (the engine alone, no
   gRPC, no other process; it runs second, on pages the server's recalls left in the OS
   cache), and how much of each percentile the protocol adds.
4. Quality: a few thousand packages, the long description as the memory and the synopsis
   as the cue; recall@10 (the package's own description in the top 10) for each --mode.

The machine's load is printed beside each phase, and beside each pass of the scale measures
and the floor the CPU time that other processes and the hypervisor (steal) took meanwhile,
and the machine's speed just before it (`probe`): on a shared machine the ratios matter.

A machine may take back file pages nobody read for a while, even with memory free (this
one's kernel runs DAMON with a scheme that pages out unmapped file pages unused for 60 s).
A server idle that long then reads its store's pages from disk again, and its first
recalls wait for them; the run says how many pages came back (`workingset_refault_file`
in /proc/vmstat) during each measure. The same machine, on other days, reclaimed nothing
in two minutes: --drop makes the pass after the idle read from disk either way.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _support  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
from vector_index_bench import APT_LISTS, corpus  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "ENGRAM_NO_AUTOSTART": "1", "PYTHONUNBUFFERED": "1"}
K = 10


def load() -> str:
    return "load {:.1f}/{:.1f}".format(*os.getloadavg()[:2])


def say(*parts: Any) -> None:
    print(*parts, flush=True)


# ------------------------------------------------------------------ texts


def package_pairs(n: int) -> list[tuple[str, str]]:
    """Up to n (synopsis, long description) pairs of distinct packages."""
    raw = ""
    for f in sorted(APT_LISTS.glob("*_i18n_Translation-en*")):
        raw += subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(f)],
                              capture_output=True, text=True, check=True).stdout + "\n\n"
    pairs: dict[str, str] = {}
    bodies: set[str] = set()
    for para in raw.split("\n\n"):
        m = re.search(r"^Description-en: (.*)\n((?: .*\n?)*)", para, re.M)
        if not m:
            continue
        syn = m.group(1).strip()
        body = " ".join(ln.strip() for ln in m.group(2).splitlines() if ln.strip() != ".")
        if len(syn.split()) >= 3 and len(body.split()) >= 12 and syn not in pairs \
                and body not in bodies:
            pairs[syn] = body
            bodies.add(body)
    items = sorted(pairs.items())
    random.Random(7).shuffle(items)
    return items[:n]


def write_jsonl(path: Path, texts: list[str], prefix: str) -> None:
    with open(path, "wb") as f:
        for i, t in enumerate(texts):
            f.write(orjson.dumps({"id": f"{prefix}{i}", "content": t}) + b"\n")


# ------------------------------------------------------------------ the server


class Server:
    def __init__(self, data: Path, model: str | None = None, root: str = "",
                 candidates: int = 0) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.data = data
        engine = ([f'embedding_model = "{model}"'] if model is not None else []) + (
            [f"vector_candidates = {candidates}"] if candidates else [])
        if engine:
            (data / "engram.toml").write_text("[engine]\n" + "\n".join(engine) + "\n")
        # another checkout's engram_cli (a before/after comparison) goes first on the path
        env = {**ENV, "PYTHONPATH": root} if root else ENV
        self.proc, self.address = _support.start_server(data, env)
        import grpc

        from engram_cli.rpc import pb, svc

        self.pb = pb
        self.channel = grpc.insecure_channel(self.address)
        self.stub = svc.EngramServiceStub(self.channel)

    def metrics(self) -> dict[str, float]:
        resp = self.stub.Introspect(self.pb.IntrospectRequest(include_statistics=True),
                                    timeout=30)
        return dict(resp.metrics)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def import_file(self, path: Path) -> float:
        """Seconds for `engram import` of the file, end to end."""
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engram_cli", "--server", self.address, "import",
                        str(path), "--quiet"], check=True, env=ENV,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - t

    def recall(self, cue: Any, hops: int, mode: str = "") -> tuple[list[str], float]:
        from engram_cli.contract import MAX_HOPS_KEY, RECALL_MODE_KEY

        md = [(MAX_HOPS_KEY, str(hops))]
        if mode:
            md.append((RECALL_MODE_KEY, mode))
        # max_hops > 0 also asks for spreading (the corpus has no associations: with
        # them, benchmarks/recall_latency_bench.py --edges 3)
        if isinstance(cue, str):
            c = self.pb.Cue(semantic=self.pb.SemanticCue(query=cue), max_results=K,
                            spread_activation=hops > 0)
        else:
            c = self.pb.Cue(embedding=self.pb.EmbeddingCue(vector=cue.tolist()),
                            max_results=K, spread_activation=hops > 0)
        t = time.perf_counter()
        resp = self.stub.Recall(self.pb.RecallRequest(memory_space_id="default", cue=c,
                                                      max_results=K), metadata=md, timeout=30)
        return [m.id for m in resp.memories], time.perf_counter() - t

    def wait_pending(self, timeout: float, cues: list[str] | None = None,
                     lat: list[float] | None = None, slices: RawSlices | None = None
                     ) -> tuple[float, float, int]:
        """(seconds until vector_index.pending is 0, memories not yet searchable when asked,
        fresh at the end); with `cues`, a hybrid recall (max_hops 3) between polls, its
        latency into `lat`; with `slices`, the model's raw rate measured in slices while
        the server is stopped (their time is not counted). (pending counts logged changes,
        a few more than memories.)"""
        t = time.perf_counter()
        first = None
        stopped = 0.0
        while True:
            m = self.metrics()
            pending = m.get("vector_index.pending", 0)
            if first is None:
                first = m.get("space.default.memories", 0) - m.get("vector_index.indexed", 0)
            took = time.perf_counter() - t - stopped
            if pending == 0 or took > timeout:
                return took, first, int(m.get("vector_index.fresh", 0))
            if cues and lat is not None:
                lat.append(self.recall(cues[len(lat) % len(cues)], 3)[1])
            if slices is not None and slices.due(took):
                stopped += slices.run(process_tree(self.proc.pid))
            time.sleep(0.1)

    def stop(self) -> None:
        self.channel.close()
        _support.stop_server(self.proc)


# ------------------------------------------------------------------ the measures


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the server's embedding workers, which its indexer thread
    started: each thread's children are listed under /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):  # gone meanwhile
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    todo.extend(int(c) for c in
                                Path(f"/proc/{p}/task/{tid}/children").read_text().split())
    return out


class RawSlices:
    """The model's raw rate measured in slices while a catch-up runs. Every `every` seconds
    of catch-up the server and its workers are stopped (SIGSTOP), this process embeds the
    next `size` of `texts` (raw_rate), and they go on (SIGCONT).
    So the catch-up and the rate it is compared with come from the same minutes: measured
    before and after instead, this machine's speed moved the raw rate by up to 1.8x within
    one catch-up."""

    def __init__(self, model: Any, texts: list[str], every: float = 2.0, size: int = 4096
                 ) -> None:
        self.model, self.texts, self.every, self.size = model, texts, every, size
        self.embedded, self.seconds, self._next, self._at = 0, 0.0, every, 0

    def due(self, caught_up_for: float) -> bool:
        return caught_up_for >= self._next

    def run(self, pids: list[int]) -> float:
        """One slice, with `pids` stopped; answers the seconds they were stopped."""
        import signal

        self._next += self.every
        chunk = [self.texts[(self._at + i) % len(self.texts)] for i in range(self.size)]
        self._at = (self._at + self.size) % len(self.texts)
        stopped = time.perf_counter()
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        try:
            self.seconds += len(chunk) / raw_rate(self.model, chunk)
            self.embedded += len(chunk)
        finally:
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGCONT)
        return time.perf_counter() - stopped

    @property
    def rate(self) -> float:
        return self.embedded / self.seconds if self.seconds else float("nan")


def raw_rate(model: Any, texts: list[str]) -> float:
    """The model's texts/s in this process, in the indexer's batches (512)."""
    t = time.perf_counter()
    for i in range(0, len(texts), 512):
        model.embed(texts[i:i + 512])
    return len(texts) / (time.perf_counter() - t)


def niced_rate(model: Any, texts: list[str]) -> float:
    """raw_rate in a thread at the indexer's CPU priority: on a machine shared with other
    busy processes, what the indexer's embedding can get at best."""
    import threading

    from engram_cli.engine.indexer import NICENESS

    out: list[float] = []

    def run() -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        out.append(raw_rate(model, texts))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile of seconds, in milliseconds."""
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))] * 1000


def truth(base_vecs: np.ndarray, qv: np.ndarray) -> np.ndarray:
    """Exact top-K rows of `base_vecs` for each query vector."""
    out = np.zeros((len(qv), K), dtype=np.int64)
    best = np.full((len(qv), K), -np.inf, dtype=np.float32)
    for i in range(0, len(base_vecs), 100_000):
        sims = qv @ base_vecs[i:i + 100_000].T
        kk = min(K, sims.shape[1] - 1)
        cand = np.argpartition(-sims, kk, axis=1)[:, :K]
        allv = np.concatenate([best, np.take_along_axis(sims, cand, axis=1)], axis=1)
        alli = np.concatenate([out, cand + i], axis=1)
        top = np.argsort(-allv, axis=1)[:, :K]
        best, out = np.take_along_axis(allv, top, axis=1), np.take_along_axis(alli, top, axis=1)
    return out


def write_path_and_catch_up(args: argparse.Namespace, work: Path, model: Any,
                            base: list[str], queries: list[str], path: Path,
                            rounds: range, res: dict[str, Any]) -> Server | None:
    """These rounds of the imports (and catch-ups) into `res`; answers the first round's
    embedder-on server, still up (None: round 1 is not among them)."""
    # what the catch-up embeds: nearly every text (the embedder yields to an import)
    sample = random.Random(7).sample(base, min(len(base), 50_000))
    keep: Server | None = None
    for r in rounds:
        for variant in ("none", "on") if r % 2 else ("on", "none"):
            if variant == "on":
                res["raw"].append(raw_rate(model, sample))
                res["niced"].append(niced_rate(model, sample))
            srv = Server(work / f"{variant}-{r}", None if variant == "on" else "none",
                         candidates=args.candidates)
            secs = srv.import_file(path)
            res[variant].append(len(base) / secs)
            say(f"  round {r + 1} import, embedder {variant:>4}: {secs:7.1f} s "
                f"{len(base) / secs:9,.0f}/s  ({load()})")
            if variant == "on":
                slices = RawSlices(model, sample)
                wait, pending, fresh = srv.wait_pending(args.timeout, queries,
                                                        res["busy_lat"], slices)
                res["catch"].append(pending / wait if wait else float("nan"))
                res["slices"].append(slices.rate)
                res["raw"].append(raw_rate(model, sample))
                res["niced"].append(niced_rate(model, sample))
                say(f"  round {r + 1} catch-up: {pending:,.0f} not searchable at the import's end, "
                    f"searchable in {wait:.1f} s = {res['catch'][-1]:,.0f}/s ({fresh:,} still "
                    f"fresh); raw model {slices.rate:,.0f}/s in slices between ("
                    f"{slices.embedded:,} texts), {res['raw'][-2]:,.0f} / "
                    f"{res['raw'][-1]:,.0f}/s before / after  ({load()})")
                if r == 0:
                    keep = srv
                    continue
            srv.stop()
            shutil.rmtree(work / f"{variant}-{r}", ignore_errors=True)
        if args.baseline_root:
            srv = Server(work / f"base-{r}", None, args.baseline_root)
            srv.import_file(path)
            # under the same recall load as this checkout's catch-up
            slices = RawSlices(model, sample)
            wait, pending, _ = srv.wait_pending(args.timeout, queries, res["base_lat"], slices)
            res["base_catch"].append(pending / wait / slices.rate)
            say(f"  round {r + 1} BASELINE catch-up: {pending:,.0f} not searchable, {wait:.1f} s = "
                f"{pending / wait:,.0f}/s; raw {slices.rate:,.0f}/s in slices between  "
                f"({load()})")
            srv.stop()
            shutil.rmtree(work / f"base-{r}", ignore_errors=True)
    return keep


def cues(model: Any, base: list[str], queries: list[str], nq: int
         ) -> tuple[np.ndarray, np.ndarray]:
    """The embedding cues and each one's exact top K rows of `base`."""
    t = time.perf_counter()
    vecs = np.concatenate([model.embed(base[i:i + 50_000])
                           for i in range(0, len(base), 50_000)])
    qv = model.embed(queries[:nq])
    exact = truth(vecs, qv)
    say(f"  brute force over {len(base):,} vectors: {time.perf_counter() - t:.1f} s")
    return qv, exact


Recall = Callable[[Any], tuple[list[str], float]]  # a cue -> (ids, seconds)
WARM_UP = 20  # recalls of each kind before one is timed
PAUSE_S = 1.0  # the short pause `after_pause` measures


def after_pause(by_text: Recall, queries: list[str]) -> list[float]:
    """The hybrid recalls of the first 10 cues right after PAUSE_S without calls."""
    time.sleep(PAUSE_S)
    return [by_text(text)[1] for text in queries[:10]]


def measure(by_vector: Recall, by_text: Recall, qv: np.ndarray, exact: np.ndarray,
            queries: list[str], nq: int, warm: list[str],
            pids: Callable[[], list[int]] = list) -> dict[str, Any]:
    """Embedding-cue recall@10 against `exact` and latency, then hybrid text recall
    latency, through the given recall functions; each after WARM_UP recalls of its kind
    (the hybrid ones with `warm`, texts that are not among the cues). A recall path that
    has not run for a moment runs from memory, not cache: on this machine the first ~8
    recalls after a pause of only 0.2 s took 6-12 ms where the next took 4, in one process
    as in the server (two processes spinning through the pause changed nothing). Without
    a warm-up they were 4 of the 6 slowest of 500 hybrid recalls, so they set its p99.
    What a pause costs is measured on its own (`after_pause`). `pids`: the processes
    besides this one that do the recalls (Machine)."""
    found, lat, lat_at, machine_vector = timed_pass(by_vector, list(qv), list(qv[:WARM_UP]),
                                                    pids)
    hits = sum(len({f"m{i}" for i in want} & set(ids))
               for ids, want in zip(found, exact, strict=True))
    _, hybrid, at, machine_hybrid = timed_pass(by_text, queries[:nq], warm[:WARM_UP], pids)
    return {"recall": hits / (K * len(qv)), "p99": pct(lat, 0.99), "p50": pct(lat, 0.5),
            "hybrid_p99": pct(hybrid, 0.99), "hybrid_p50": pct(hybrid, 0.5),
            "slowest": slowest(lat, lat_at), "hybrid_slowest": slowest(hybrid, at),
            "machine": machine_vector, "hybrid_machine": machine_hybrid}


def timed_pass(recall: Recall, cues: list[Any], warm: list[Any],
               pids: Callable[[], list[int]]) -> tuple[list[list[str]], list[float],
                                                       list[float], str]:
    """`recall` of each of `cues` after one of each of `warm`: (the ids each answered, the
    seconds each took, when each started into the pass, what else the machine did)."""
    # The probe reads 32 MB, which leaves the caches cold: before the warm-up, not the pass.
    speed = probe()
    for cue in warm:
        recall(cue)
    found, secs, at = [], [], []
    machine = Machine(pids, speed)
    start = time.perf_counter()
    for cue in cues:
        at.append(time.perf_counter() - start)
        ids, took = recall(cue)
        found.append(ids)
        secs.append(took)
    return found, secs, at, machine.since(len(cues))


def slowest(secs: list[float], at: list[float], n: int = 6) -> str:
    """The n slowest recalls of a pass, with when they came: close together, something
    else ran then."""
    worst = sorted(zip(secs, at, range(len(secs)), strict=True), reverse=True)[:n]
    return ", ".join(f"{s * 1e3:.1f} ms at {t:.2f} s (#{i})" for s, t, i in worst)


@functools.cache
def _probe_block() -> np.ndarray:
    return np.ones(32 * 1024 * 1024, dtype=np.uint8)


def probe() -> str:
    """This machine's speed now, in this process: the fastest of 5 reads of 32 MB (what a
    search's scan of a million codes reads) and of 5 runs of a Python loop. Timed at the
    run's start and before each pass's warm-up: a pass that was slow when these were slower
    than at the start met a slow moment of the machine."""
    block, scan, loop = _probe_block(), [], []
    for _ in range(5):
        t = time.perf_counter()
        np.count_nonzero(block)
        scan.append(time.perf_counter() - t)
        t = time.perf_counter()
        sum(range(100_000))
        loop.append(time.perf_counter() - t)
    return f"32 MB read {min(scan) * 1e3:.2f} ms, Python loop {min(loop) * 1e3:.2f} ms"


class Machine:
    """What else the machine did during a pass, for the report: the CPU time that processes
    other than this one and the server's took (the three that took most, kernel threads
    included), what the hypervisor took from this machine's cores (steal), and its speed
    just before the pass's warm-up (`probe`); and the CPU time the pass's own processes
    took a recall, the server's (with its workers) and this one's. A slow stretch with
    none of the others is the pass's own processes': their CPU a recall says whether they
    ran longer (more work, or the same work slowed by memory) or waited."""

    def __init__(self, pids: Callable[[], list[int]], speed: str) -> None:
        self._pids = pids
        self.speed = speed  # probe() before the pass's warm-up
        self._start = self._now()

    @staticmethod
    def _cpu() -> dict[int, tuple[str, float]]:
        """(name, CPU seconds) of every process, by pid (a kernel worker's name changes
        with its work)."""
        out = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    out[int(entry.name)] = _support.proc_cpu(Path(entry.path, "stat"))
        return out

    def _now(self) -> tuple[float, dict[int, tuple[str, float]], set[int]]:
        """(steal seconds, every process's CPU, the pids that are this pass's own)."""
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # user nice system idle iowait irq softirq steal ...
        steal = int(fields[7]) / os.sysconf("SC_CLK_TCK") if len(fields) > 7 else 0.0
        return steal, self._cpu(), {os.getpid(), *self._pids()}

    def since(self, recalls: int) -> str:
        """Others' CPU and steal since this was made, in ms, and the pass's own processes'
        CPU over its `recalls`."""
        steal0, cpu0, own0 = self._start
        steal1, cpu1, own1 = self._now()
        own = own0 | own1
        took = {pid: (secs - cpu0.get(pid, ("", 0.0))[1], name)
                for pid, (name, secs) in cpu1.items()}
        others = sorted(((secs, name) for pid, (secs, name) in took.items()
                         if pid not in own and secs > 0), reverse=True)
        top = ", ".join(f"{name} {secs * 1e3:,.0f}" for secs, name in others[:3])
        mine = took.get(os.getpid(), (0.0, ""))[0]
        server = sum(took.get(pid, (0.0, ""))[0] for pid in own) - mine
        per = 1e3 / max(1, recalls)
        serving = f"the server's {server * per:.2f} ms, " if own != {os.getpid()} else ""
        return (f"others' CPU {sum(secs for secs, _ in others) * 1e3:,.0f} ms"
                f"{f' ({top})' if top else ''}, steal {(steal1 - steal0) * 1e3:,.0f} ms; "
                f"CPU a recall: {serving}this process's {mine * per:.2f} ms; "
                f"the machine before it: {self.speed}")


def refaults() -> int | None:
    """File pages read back after the kernel dropped them, machine-wide (None: this
    system does not say)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("workingset_refault_file "):
                return int(line.split()[1])
    return None


def pages_since(before: int | None) -> str:
    """The file pages read back since `before` (refaults()), for the report."""
    now = refaults()
    return "unknown" if now is None or before is None else f"{now - before:,}"


def scale(srv: Server, qv: np.ndarray, exact: np.ndarray, queries: list[str],
          nq: int, idle: float, warm: list[str], drop: bool = False) -> dict[str, Any]:
    srv.wait_pending(600)
    m = srv.metrics()
    before = m.get("consolidation.consolidated_total", 0)
    merged = m.get("text_index.merge_steps", 0)
    copied = m.get("writer.idle_checkpoints", 0)
    r0 = refaults()
    out = measure(lambda q: srv.recall(q, 0), lambda text: srv.recall(text, 3), qv, exact,
                  queries, nq, warm, lambda: process_tree(srv.proc.pid))
    out["refaults"] = pages_since(r0)
    out["after_pause"] = after_pause(lambda text: srv.recall(text, 3), queries)
    out["rss"] = srv.rss_mb()
    if idle > 0:
        time.sleep(idle)
        if drop:
            _support.drop_pages([srv.data])
        r0 = refaults()
        again = [srv.recall(text, 3)[1] for text in queries[:nq]]
        out["idle"] = {"p50": pct(again, 0.5), "p99": pct(again, 0.99),
                       "refaults": pages_since(r0)}
    # The server's background consolidation takes memories five minutes after they were
    # stored, and rewrites each one's row: recall p99 during such a pass at a million was
    # about twice what it is outside one. Said, not hidden, when it overlapped.
    m = srv.metrics()
    out["consolidated"] = m.get("consolidation.consolidated_total", 0) - before
    # The full-text index's b-trees are merged once the import is over (engine/textmerge.py):
    # the steps it took before the recalls, and any taken during them.
    out["merge_steps"] = (merged, m.get("text_index.merge_steps", 0) - merged)
    # The writer copies its WAL into the database once quiet after a burst (engine/writer.py)
    out["idle_checkpoints"] = (copied, m.get("writer.idle_checkpoints", 0) - copied)
    return out


def floor(data: Path, qv: np.ndarray, exact: np.ndarray, queries: list[str],
          nq: int, warm: list[str]) -> dict[str, Any]:
    """`scale`'s recalls in this process, on the stopped server's store: the engine alone."""
    from engram_cli.engine.recall import RecallQuery
    from engram_cli.engine.settings import Settings
    from engram_cli.engine.store import Store
    from engram_cli.server.cores import one_blas_thread

    one_blas_thread()  # as the server runs numpy (the brute force before used both cores)
    store = Store(data, Settings().replace({"consolidation_interval_s": 0.0}))
    try:
        deadline = time.monotonic() + 120
        while not store.indexer.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)

        def timed(q: RecallQuery) -> tuple[list[str], float]:
            t = time.perf_counter()
            res = store.recall("default", q)
            return [m.id for m in res.memories], time.perf_counter() - t

        def by_text(text: str) -> tuple[list[str], float]:
            return timed(RecallQuery(text=text, limit=K, max_hops=3, spread=True))

        out = measure(
            lambda v: timed(RecallQuery(embedding=v.astype(np.float32).tobytes(), limit=K,
                                        max_hops=0)),
            by_text, qv, exact, queries, nq, warm)
        out["after_pause"] = after_pause(by_text, queries)
        return out
    finally:
        store.close()


def quality(work: Path, n: int) -> dict[str, float]:
    pairs = package_pairs(n)
    path = work / "packages.jsonl"
    write_jsonl(path, [body for _, body in pairs], "p")
    srv = Server(work / "quality")
    try:
        srv.import_file(path)
        srv.wait_pending(600)
        out: dict[str, float] = {"n": len(pairs)}
        for mode in ("lexical", "vector", "hybrid"):
            hits = sum(f"p{i}" in srv.recall(syn, 0, mode)[0] for i, (syn, _) in enumerate(pairs))
            out[mode] = hits / len(pairs)
        return out
    finally:
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="memories (default 1,000,000)")
    ap.add_argument("--queries", type=int, default=500, help="recall cues per measure")
    # One round's ratio ranged 0.78-1.30 in one day's runs on this machine (the imports
    # alone 16.6-23.4 s for the same million): with two rounds a run measured 0.84x where
    # the ten rounds of five runs together made 0.99x.
    ap.add_argument("--rounds", type=int, default=4,
                    help="imports of each variant (embedder on / none), interleaved, the "
                         "order alternating (default 4)")
    ap.add_argument("--packages", type=int, default=3000, help="packages for the quality set")
    ap.add_argument("--timeout", type=float, default=3600, help="catch-up wait, seconds")
    ap.add_argument("--baseline-root", default="",
                    help="also time the catch-up of another checkout's server (its root)")
    ap.add_argument("--idle", type=float, default=90.0,
                    help="seconds without calls before the hybrid recalls are timed again "
                         "(0: not)")
    ap.add_argument("--drop", action="store_true",
                    help="take the store's files out of the page cache before the recalls "
                         "after --idle (what a machine that reclaims unused file pages does)")
    ap.add_argument("--only-quality", action="store_true")
    ap.add_argument("--keep", type=Path,
                    help="copy the scale measures' store here once they are done (a new "
                         "directory), with the held-out cues as cues.json, for "
                         "version_ab_bench.py --store")
    ap.add_argument("--candidates", type=int, default=0,
                    help="vector_candidates of this checkout's servers (default: the "
                         "setting's)")
    args = ap.parse_args(argv)
    from engram_cli.engine.embedding import DEFAULT_MODEL, load_model

    model = load_model(DEFAULT_MODEL)
    work = Path(tempfile.mkdtemp(prefix="engram-semantic-bench-"))
    try:
        say(f"{os.cpu_count()} cores, {load()} at the start; {probe()}")
        if not args.only_quality:
            base, queries, n_real = corpus(args.n, args.queries)
            warm = base[-WARM_UP:]  # stored texts as the hybrid warm-up's cues
            path = work / "memories.jsonl"
            write_jsonl(path, base, "m")
            words = sorted(len(t.split()) for t in base[:20000])
            say(f"corpus: {len(base):,} memories ({n_real:,} distinct real texts, the rest two "
                f"real sentences each), median {words[len(words) // 2]} words; "
                f"{len(queries)} held-out cues")
            say(f"vector_candidates: {args.candidates or 'the default'}")
            say("exact answers:")
            qv, exact = cues(model, base, queries, args.queries)
            say("write path and catch-up:")
            wp: dict[str, Any] = {"on": [], "none": [], "catch": [], "raw": [],
                                  "base_catch": [], "niced": [], "slices": [],
                                  "busy_lat": [], "base_lat": []}
            # The scale measures come right after round 1's catch-up, the other rounds
            # after them: at a million memories a second round first would have them meet
            # the server's first consolidation pass (memories five minutes old), which
            # rewrites every row.
            srv = write_path_and_catch_up(args, work, model, base, queries, path, range(1),
                                          wp)
            assert srv is not None
            say("scale:")
            try:
                sc = scale(srv, qv, exact, queries, args.queries, args.idle, warm, args.drop)
            finally:
                srv.stop()
            say("floor (the same recalls in this process, no gRPC):")
            fl = floor(srv.data, qv, exact, queries, args.queries, warm)
            if args.keep:
                shutil.copytree(srv.data, args.keep, symlinks=True)
                args.keep.chmod(0o700)
                (args.keep / "cues.json").write_bytes(orjson.dumps(queries[:args.queries]))
                say(f"store kept in {args.keep}")
            if args.rounds > 1:
                say("write path and catch-up, the other rounds:")
                write_path_and_catch_up(args, work, model, base, queries, path,
                                        range(1, args.rounds), wp)
        say("quality:")
        q = quality(work, args.packages)
        say(f"  {int(q['n']):,} packages: recall@10 lexical {q['lexical']:.3f}  vector "
            f"{q['vector']:.3f}  hybrid {q['hybrid']:.3f}  ({load()})")
        say("")
        say(f"summary ({load()} at the end):")
        if not args.only_quality:
            on, none = float(np.median(wp["on"])), float(np.median(wp["none"]))
            catch, raw = float(np.median(wp["catch"])), float(np.median(wp["slices"]))
            ratios = [c / r for c, r in zip(wp["catch"], wp["slices"], strict=True)]
            around = float(np.median(wp["raw"]))
            # Each round's two imports are minutes apart, the rounds' tens of minutes: the
            # median of the rounds' own ratios is the result, as the machine drifts between
            # rounds (the ratio of the medians mixes them: 0.89x in a run whose rounds made
            # 0.99x, 0.99x, 0.82x, 0.94x).
            paired = [a / b for a, b in zip(wp["on"], wp["none"], strict=True)]
            say(f"  import rate, embedder on / none: {on:,.0f} / {none:,.0f}/s = "
                f"{on / none:.2f}x; each round {', '.join(f'{x:.2f}x' for x in paired)}, "
                f"their median {np.median(paired):.2f}x (goal >= 0.9x)")
            say(f"  catch-up / the model's raw rate in slices between: {catch:,.0f} / "
                f"{raw:,.0f}/s = {catch / raw:.2f}x (goal >= 0.8x; each round "
                f"{', '.join(f'{x:.2f}x' for x in ratios)}); against the raw rate before and "
                f"after ({around:,.0f}/s) {catch / around:.2f}x, at the indexer's priority "
                f"({np.median(wp['niced']):,.0f}/s) {catch / np.median(wp['niced']):.2f}x")
            busy = wp["busy_lat"]
            if busy:
                say(f"  hybrid recall (max_hops 3) while catching up: p50 {pct(busy, 0.5):.1f} "
                    f"ms p99 {pct(busy, 0.99):.1f} ms over {len(busy)} recalls")
            if wp["base_catch"]:
                base = wp["base_lat"]
                say(f"  baseline catch-up / raw: {np.median(wp['base_catch']):.2f}x; its hybrid "
                    f"recall while catching up: p50 {pct(base, 0.5):.1f} ms p99 "
                    f"{pct(base, 0.99):.1f} ms over {len(base)} recalls")
            say(f"  embedding-cue recall@10 vs exact: {sc['recall']:.3f} (goal >= 0.95), "
                f"p50 {sc['p50']:.1f} ms p99 {sc['p99']:.1f} ms (goal < 10)")
            say(f"  the slowest of those, with when in the pass: {sc['slowest']}; during the "
                f"pass: {sc['machine']}")
            say(f"  hybrid recall, max_hops 3 (after {WARM_UP} to warm up): p50 "
                f"{sc['hybrid_p50']:.1f} ms p99 "
                f"{sc['hybrid_p99']:.1f} ms (goal < 10); file pages read back from disk "
                f"during the embedding and hybrid recalls: {sc['refaults']}")
            say(f"  the slowest of those hybrid recalls, with when in the pass: "
                f"{sc['hybrid_slowest']}; during the pass: {sc['hybrid_machine']}")
            say(f"  the first 10 hybrid recalls after {PAUSE_S:.0f} s without calls: "
                f"p50 {pct(sc['after_pause'], 0.5):.1f} ms, slowest "
                f"{max(sc['after_pause']) * 1000:.1f} ms; in this process p50 "
                f"{pct(fl['after_pause'], 0.5):.1f} ms, slowest "
                f"{max(fl['after_pause']) * 1000:.1f} ms")
            if "idle" in sc:
                idle = sc["idle"]
                say(f"  the same hybrid recalls after {args.idle:.0f} s without calls: p50 "
                    f"{idle['p50']:.1f} ms p99 {idle['p99']:.1f} ms; file pages read back "
                    f"from disk during them: {idle['refaults']}")
            say(f"  the floor, in this process: embedding cue recall@10 {fl['recall']:.3f}, "
                f"p50 {fl['p50']:.1f} ms p99 {fl['p99']:.1f} ms; hybrid p50 "
                f"{fl['hybrid_p50']:.1f} ms p99 {fl['hybrid_p99']:.1f} ms; over gRPC / in "
                f"process at p99: embedding {sc['p99'] / fl['p99']:.2f}x, hybrid "
                f"{sc['hybrid_p99'] / fl['hybrid_p99']:.2f}x")
            say(f"  during the floor's embedding pass: {fl['machine']}; its hybrid pass: "
                f"{fl['hybrid_machine']}")
            before_steps, during_steps = sc["merge_steps"]
            say(f"  full-text index: {before_steps:,.0f} merge steps before these recalls, "
                f"{during_steps:,.0f} during them")
            before_ck, during_ck = sc["idle_checkpoints"]
            say(f"  the writer's idle checkpoints of its WAL: {before_ck:,.0f} before these "
                f"recalls, {during_ck:,.0f} during them (and the idle pause)")
            if sc["consolidated"]:
                say(f"  (a background consolidation pass took in {sc['consolidated']:,.0f} "
                    "memories during these recalls, rewriting their rows)")
            say(f"  server RSS after recall: {sc['rss']:,.0f} MB (goal < 1,536 at 1,000,000)")
        best = max(q["lexical"], q["vector"])
        say(f"  quality: hybrid / best of the two {q['hybrid'] / best:.2f}x (goal >= 1.0), "
            f"hybrid / lexical {q['hybrid'] / q['lexical']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
