"""Vector index candidates side by side, on real WordLlama embeddings of real text.

    python benchmarks/vector_index_bench.py                 # 1,000,000 vectors
    python benchmarks/vector_index_bench.py --n 200000 --queries 500
    python benchmarks/vector_index_bench.py --n 300000 --only 12,13,14   # the engine's index
    python benchmarks/vector_index_bench.py --only 14,15 --queries 300    # two threads or one

Candidates 12 and 13 are faiss IVF-SQ8 as the engine built it before (8-bit codes in
k-means lists, the cue's nearest lists scanned) at the list counts a space had from 80,000
and from 320,000 vectors; 14 is the engine's own index (engine/vectors.py: every vector's
4-bit fast-scan code scanned, the best re-scored with 8-bit codes) grown as the server
grows it (exact store, trained at TRAIN_AT, retrained at each four-fold growth: the build
rate includes the retraining), searched at each `vector_candidates`, its two probes scanned
side by side on two threads; 15 is the same index with both scanned on the calling thread
(a search when the second thread is busy, or a hybrid recall's search). Each is also
re-scored exactly from 2x and 4x the candidates, as recall re-scores what the index
proposes.

Text: Debian package descriptions (English translations from apt's lists: the one-line
synopses, the long descriptions and their sentences, deduplicated; run
`apt-get update -o Acquire::Languages=en` once to have them). That gives about 240,000
distinct real texts; beyond that the base is filled with texts made of two real sentences
of different packages (embedded for real, never noisy copies of vectors), and the script
says how many. Queries are real texts held out of the base.

For each candidate, one subprocess builds the index (build rate, RAM, bytes on disk) and
another loads it from disk (load time, RAM after loading and after searching). Then this
process loads every index and times single queries (one at a time, as a server does)
interleaved across all candidates and search settings, against exact top-10 by numpy.
Each query is timed three times: as it comes (after other candidates' searches), right
after the same search of the query before it (the caches as a run of its own searches
leaves them: a server's, when nothing else runs), and right after this process has read
`--evict` MB of memory of its own (by default the size of this machine's last-level
cache, 300 MB): the search then finds its index out of the caches, as it does on a host
whose other tenants share that cache.
Also measured: the embedding model's raw rate in this one process.

The work dir caches the texts' embeddings and the exact answers between runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

DIM = 256
K = 10
APT_LISTS = Path("/var/lib/apt/lists")


# ------------------------------------------------------------------ corpus and truth


def apt_texts() -> tuple[list[str], list[str], list[str]]:
    """(synopses, long descriptions, sentences of 5+ words) from apt's Translation-en."""
    files = sorted(APT_LISTS.glob("*_i18n_Translation-en*"))
    if not files:
        raise SystemExit("no Translation-en in apt's lists: run "
                         "`apt-get update -o Acquire::Languages=en` first")
    raw = ""
    for f in files:
        raw += subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(f)],
                              capture_output=True, text=True, check=True).stdout + "\n\n"
    synopses: dict[str, None] = {}
    bodies: dict[str, None] = {}
    sentences: dict[str, None] = {}
    for para in raw.split("\n\n"):
        m = re.search(r"^Description-en: (.*)\n((?: .*\n?)*)", para, re.M)
        if not m:
            continue
        synopses[m.group(1).strip()] = None
        body = " ".join(ln.strip() for ln in m.group(2).splitlines() if ln.strip() != ".")
        if body:
            bodies[body] = None
        for s in re.split(r"(?<=[.!?])\s+", body):
            if len(s.split()) >= 5:
                sentences[s] = None
    return list(synopses), list(bodies), list(sentences)


def rss() -> dict[str, int]:
    """This process's resident memory in bytes: total, anonymous, file-backed (mmap)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            if line.startswith(key + ":"):
                out[key] = int(line.split()[1]) * 1024
    return out


def corpus(n: int, nq: int, texts: tuple[list[str], list[str], list[str]] | None = None
           ) -> tuple[list[str], list[str], int]:
    """(n memory texts, nq held-out query texts, how many of the n are distinct real texts):
    the real texts shuffled, then texts of two real sentences of different packages.
    `texts`: apt_texts(), when the caller has read them already."""
    synopses, bodies, sentences = texts or apt_texts()
    real = list(dict.fromkeys(synopses + bodies + sentences))
    rnd = random.Random(13)
    rnd.shuffle(real)
    queries, base = real[:nq], real[nq:nq + n]
    n_real = len(base)
    pool = [s for s in sentences if 8 <= len(s.split()) <= 25]
    seen = set(real)
    while len(base) < n:
        t = f"{rnd.choice(pool)} {rnd.choice(pool)}"
        if t not in seen:
            seen.add(t)
            base.append(t)
    return base, queries, n_real


def prepare(work: Path, n: int, nq: int) -> dict[str, Any]:
    """Embed the corpus (cached) and compute the exact answers; answers the corpus facts."""
    meta_path = work / f"corpus-{n}-{nq}.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    from engram_cli.engine.embedding import DEFAULT_MODEL, load_model

    synopses, bodies, sentences = texts = apt_texts()
    base, queries, n_real = corpus(n, nq, texts)
    model = load_model(DEFAULT_MODEL)
    assert model is not None
    t0 = time.perf_counter()
    vecs = np.lib.format.open_memmap(work / f"base-{n}.npy", "w+", np.float32, (n, DIM))
    for i in range(0, n, 50_000):
        vecs[i:i + 50_000] = model.embed(base[i:i + 50_000])
    vecs.flush()
    qv = model.embed(queries)
    np.save(work / f"queries-{nq}.npy", qv)
    embed_s = time.perf_counter() - t0
    truth = np.zeros((nq, K), dtype=np.int64)
    best = np.full((nq, K), -np.inf, dtype=np.float32)
    for i in range(0, n, 100_000):
        sims = qv @ vecs[i:i + 100_000].T
        cand = np.argpartition(-sims, K, axis=1)[:, :K]
        cs = np.take_along_axis(sims, cand, axis=1)
        allv = np.concatenate([best, cs], axis=1)
        alli = np.concatenate([truth, cand + i], axis=1)
        top = np.argsort(-allv, axis=1)[:, :K]
        best = np.take_along_axis(allv, top, axis=1)
        truth = np.take_along_axis(alli, top, axis=1)
    np.save(work / f"truth-{n}-{nq}.npy", truth)
    meta = {"n": n, "real": n_real, "recombined": n - n_real, "queries": nq,
            "synopses": len(synopses), "bodies": len(bodies), "sentences": len(sentences),
            "embed_seconds": round(embed_s, 1),
            "median_words": sorted(len(t.split()) for t in base[:20000])[10000]}
    meta_path.write_text(json.dumps(meta))
    return meta


def model_rates(work: Path) -> list[str]:
    """The default model in this one process: load time, texts/s long and short, our
    wrapper against WordLlama's own embed() on the same texts, interleaved."""
    t0 = time.perf_counter()
    from engram_cli.engine.embedding import DEFAULT_MODEL, load_model

    model = load_model(DEFAULT_MODEL)
    load_s = time.perf_counter() - t0
    assert model is not None
    synopses, _, sentences = apt_texts()
    rnd = random.Random(5)
    long_ = rnd.sample([s for s in sentences if 8 <= len(s.split()) <= 40], 20000)
    short = rnd.sample(synopses, 20000)
    # WordLlama's own, loaded apart: ours sets up its tokenizer for itself (no padding),
    # which WordLlama's embed cannot work with
    from engram_cli.engine.embedding import _load_wordllama

    raw = _load_wordllama("l2_supercat", DIM)
    model.embed(long_[:2000])
    raw.embed(long_[:2000], norm=True)
    rates: dict[str, list[float]] = {}
    for _ in range(3):
        for label, texts in (("8-40 words", long_), ("synopses", short)):
            for who, fn in (("ours", model.embed),
                            ("wordllama", lambda t: raw.embed(t, norm=True))):
                t = time.perf_counter()
                fn(texts)
                rates.setdefault(f"{label}|{who}", []).append(
                    len(texts) / (time.perf_counter() - t))
    med = {k: sorted(v)[1] for k, v in rates.items()}
    lines = [f"model {DEFAULT_MODEL}: first load {load_s:.2f} s (imports included)"]
    for label in ("8-40 words", "synopses"):
        o, w = med[f"{label}|ours"], med[f"{label}|wordllama"]
        lines.append(f"  {label:<11} ours {o:>8,.0f} texts/s   wordllama.embed {w:>8,.0f} "
                     f"texts/s   ratio {o / w:.2f}x")
    return lines


# ------------------------------------------------------------------ candidates


class Candidate:
    name = ""
    threads = 2
    quantization = ""
    # what the library offers (from its documentation and API)
    features: ClassVar[dict[str, str]] = {}

    def __init__(self, n: int) -> None:
        self.n = n

    def build(self, vecs: np.ndarray, keys: np.ndarray) -> float:
        """Build from scratch; answers the training seconds (0 when there is none)."""
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path, mmap: bool) -> None:
        raise NotImplementedError

    def settings(self) -> list[tuple[str, Callable[..., np.ndarray]]]:
        """(label, search(q, k) -> keys) for each search setting to compare."""
        raise NotImplementedError


class USearch(Candidate):
    features: ClassVar[dict[str, str]] = {
        "remove": "yes (remove(keys))", "filter": "no (one index per space)",
        "save/load": "save/load/view", "mmap": "yes (view, read-only)",
        "quant": "f32/bf16/f16/i8/b1"}

    def __init__(self, n: int, dtype: str, m: int, ea: int, threads: int = 2) -> None:
        super().__init__(n)
        self.dtype, self.m, self.ea, self.threads = dtype, m, ea, threads
        self.name = f"usearch {dtype} M{m} ea{ea} t{threads}"
        self.quantization = dtype

    def _new(self) -> Any:
        from usearch.index import Index

        return Index(ndim=DIM, metric="cos", dtype=self.dtype, connectivity=self.m,
                     expansion_add=self.ea)

    def build(self, vecs: np.ndarray, keys: np.ndarray) -> float:
        self.index = self._new()
        for i in range(0, len(vecs), 100_000):
            self.index.add(keys[i:i + 100_000], np.ascontiguousarray(vecs[i:i + 100_000]),
                           threads=self.threads)
        return 0.0

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    def load(self, path: Path, mmap: bool) -> None:
        self.index = self._new()
        if mmap:
            self.index.view(str(path))
        else:
            self.index.load(str(path))

    def settings(self) -> list[tuple[str, Callable[..., np.ndarray]]]:
        out: list[tuple[str, Callable[..., np.ndarray]]] = []
        for ef in (64, 128, 256, 512):
            def search(q: np.ndarray, k: int, ef: int = ef) -> np.ndarray:
                self.index.expansion_search = ef
                return self.index.search(q, k).keys
            out.append((f"ef {ef}", search))
        return out


class HnswLib(Candidate):
    features: ClassVar[dict[str, str]] = {
        "remove": "mark_deleted (slot reused)", "filter": "yes (filter callable)",
        "save/load": "save_index/load_index", "mmap": "no", "quant": "f32 only"}

    def __init__(self, n: int, m: int = 16, efc: int = 100) -> None:
        super().__init__(n)
        self.m, self.efc = m, efc
        self.name = f"hnswlib f32 M{m} efc{efc} t2"
        self.quantization = "f32"

    def build(self, vecs: np.ndarray, keys: np.ndarray) -> float:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=DIM)
        self.index.init_index(max_elements=len(vecs), M=self.m, ef_construction=self.efc)
        for i in range(0, len(vecs), 100_000):
            self.index.add_items(vecs[i:i + 100_000], keys[i:i + 100_000], num_threads=2)
        return 0.0

    def save(self, path: Path) -> None:
        self.index.save_index(str(path))

    def load(self, path: Path, mmap: bool) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=DIM)
        self.index.load_index(str(path), max_elements=self.n)

    def settings(self) -> list[tuple[str, Callable[..., np.ndarray]]]:
        out: list[tuple[str, Callable[..., np.ndarray]]] = []
        for ef in (64, 128, 256, 512):
            def search(q: np.ndarray, k: int, ef: int = ef) -> np.ndarray:
                self.index.set_ef(max(ef, k))
                return self.index.knn_query(q, k, num_threads=1)[0][0]
            out.append((f"ef {ef}", search))
        return out


class FaissIVF(Candidate):
    features: ClassVar[dict[str, str]] = {
        "remove": "remove_ids (scans lists)", "filter": "yes (IDSelector)",
        "save/load": "write_index/read_index", "mmap": "yes (IO_FLAG_MMAP)",
        "quant": "SQ8/SQ4/PQ/f16"}

    def __init__(self, n: int, kind: str, nlist: int = 0, residual: bool = True,
                 threads: int = 2) -> None:
        super().__init__(n)
        self.kind, self.residual, self.threads = kind, residual, threads
        self.nlist = nlist or int(4 * np.sqrt(n) // 256 * 256) or 256
        self.name = (f"faiss IVF{self.nlist},{kind}{'' if residual else ' nores'} "
                     f"t{threads}")
        self.quantization = {"Flat": "f32", "SQ8": "i8", "SQfp16": "f16"}[kind]

    def build(self, vecs: np.ndarray, keys: np.ndarray) -> float:
        import faiss

        faiss.omp_set_num_threads(self.threads)
        if self.residual:
            self.index = faiss.index_factory(DIM, f"IVF{self.nlist},{self.kind}",
                                             faiss.METRIC_INNER_PRODUCT)
        else:  # what the engine builds (engine/ivf.py train)
            self.index = faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(DIM), DIM, self.nlist, faiss.ScalarQuantizer.QT_8bit,
                faiss.METRIC_INNER_PRODUCT, False)
            self.index.cp.niter = 10
        sample = np.ascontiguousarray(vecs[np.random.default_rng(1).choice(
            len(vecs), min(len(vecs), 40 * self.nlist), replace=False)])
        t = time.perf_counter()
        self.index.train(sample)
        train_s = time.perf_counter() - t
        for i in range(0, len(vecs), 100_000):
            self.index.add_with_ids(np.ascontiguousarray(vecs[i:i + 100_000]),
                                    keys[i:i + 100_000])
        return train_s

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    def load(self, path: Path, mmap: bool) -> None:
        import faiss

        faiss.omp_set_num_threads(1)
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        self.index = faiss.read_index(str(path), flags)

    def settings(self) -> list[tuple[str, Callable[..., np.ndarray]]]:
        import faiss

        ivf = faiss.extract_index_ivf(self.index)
        out: list[tuple[str, Callable[..., np.ndarray]]] = []
        for nprobe in (16, 32, 64, 128, 256):
            def search(q: np.ndarray, k: int, nprobe: int = nprobe) -> np.ndarray:
                ivf.nprobe = nprobe
                return self.index.search(q[None, :], k)[1][0]
            out.append((f"nprobe {nprobe}", search))
        return out


class Engine(Candidate):
    """engram's own index (engine/vectors.py) as the server grows it: an exact store up to
    train_at, then a coded store (every vector's 4-bit fast-scan code scanned, the best
    re-scored with 8-bit codes), trained there and retrained at each four-fold growth
    (timed in the build), on one thread; searched at each vector_candidates."""

    features: ClassVar[dict[str, str]] = {
        "remove": "8-bit codes O(1), stale fast-scan codes filtered", "filter": "no",
        "save/load": "write_index/read_index", "mmap": "no (read whole)",
        "quant": "PQ 4-bit + SQ8"}

    def __init__(self, n: int) -> None:
        super().__init__(n)
        from engram_cli.engine.vectors import TRAIN_AT

        self.name = f"engram fast-scan + SQ8 t2 (train at {TRAIN_AT:,})"
        self.threads = 2
        self.quantization = "i8"
        self.split = True  # a search's probes scanned on two threads

    def build(self, vecs: np.ndarray, keys: np.ndarray) -> float:
        import faiss

        from engram_cli.engine.vectors import IndexConfig, VectorIndex

        faiss.omp_set_num_threads(1)
        self.dir = Path(f".engine-index-{os.getpid()}")
        self.index = VectorIndex.open(self.dir, IndexConfig(model="bench"))
        train_s = 0.0
        for i in range(0, len(vecs), 10_000):
            self.index.add("default", keys[i:i + 10_000], vecs[i:i + 10_000])
            if self.index.due():
                t = time.perf_counter()
                self.index.rebuild("default")
                train_s += time.perf_counter() - t
        shape = self.index.describe()["default"]
        self.name += f" trained on {shape['trained_on']:,}"
        print(f"engine: {shape}, retraining took {train_s:.1f} s", file=sys.stderr)
        return 0.0  # retraining is part of the build here: it runs as the index grows

    def save(self, path: Path) -> None:
        import shutil

        self.index.save(1)
        if path.exists():
            shutil.rmtree(path)
        shutil.move(str(self.dir), str(path))

    def load(self, path: Path, mmap: bool) -> None:
        import faiss

        from engram_cli.engine.vectors import IndexConfig, VectorIndex

        faiss.omp_set_num_threads(1)
        self.index = VectorIndex.open(path, IndexConfig(model="bench"))
        # an index an earlier version saved is retrained as the server's indexer would
        while (space := self.index.due()) is not None:
            self.index.rebuild(space)

    def settings(self) -> list[tuple[str, Callable[..., np.ndarray]]]:
        out: list[tuple[str, Callable[..., np.ndarray]]] = []
        for cands in (64, 128, 256, 512):
            def search(q: np.ndarray, k: int, cands: int = cands) -> np.ndarray:
                self.index.set_candidates(cands)
                return np.array([key for key, _ in self.index.search("default", q, k,
                                                                     self.split)])
            out.append((f"vector_candidates {cands}", search))
        return out


class EngineOneThread(Engine):
    """The engine's index, each search scanning its probes on the calling thread."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.name = self.name.replace("t2", "t1")
        self.threads = 1
        self.split = False


def candidates(n: int) -> list[Candidate]:
    return [
        USearch(n, "f16", 16, 128),
        USearch(n, "i8", 16, 128),
        USearch(n, "f16", 16, 64),
        USearch(n, "i8", 16, 64),
        USearch(n, "i8", 16, 64, threads=1),
        USearch(n, "i8", 16, 32),
        HnswLib(n, 16, 100),
        HnswLib(n, 16, 64),
        FaissIVF(n, "Flat"),
        FaissIVF(n, "SQ8"),
        USearch(n, "i8", 16, 32, threads=1),
        USearch(n, "i8", 12, 32, threads=1),
        # what the engine used before its coded stores (IVF-SQ8), at the list counts it
        # trained at 300k / 1M
        FaissIVF(n, "SQ8", nlist=1024, residual=False, threads=1),
        FaissIVF(n, "SQ8", nlist=2048, residual=False, threads=1),
        Engine(n),
        EngineOneThread(n),
    ]


# The slow builds are left out at a million (their figures at 100,000 tell enough).
SLOW = {0, 1, 4, 6}


# ------------------------------------------------------------------ child processes


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    cand = candidates(args.n)[args.child]
    path = work / f"index-{args.n}-{args.child}.bin"
    if args.phase == "build":
        vecs = np.load(work / f"base-{args.n}.npy", mmap_mode="r")
        vecs = np.ascontiguousarray(vecs)  # in RAM before the clock starts
        keys = np.arange(1, len(vecs) + 1, dtype=np.int64)
        gc.collect()
        before = rss()
        t = time.perf_counter()
        train_s = cand.build(vecs, keys)
        build_s = time.perf_counter() - t
        after = rss()
        t = time.perf_counter()
        cand.save(path)
        save_s = time.perf_counter() - t
        print(json.dumps({"train_s": train_s, "add_s": build_s - train_s,
                          "build_ram": after["RssAnon"] - before["RssAnon"],
                          "disk": sum(p.stat().st_size for p in path.iterdir())
                          if path.is_dir() else path.stat().st_size,
                          "save_s": save_s, "name": cand.name}))
        return
    q = np.load(work / f"queries-{args.queries}.npy")
    out = {}
    for mmap in (False, True):
        if mmap and cand.features.get("mmap", "no").startswith("no"):
            continue
        gc.collect()
        subprocess.run(["sync"], check=False)
        before = rss()
        t = time.perf_counter()
        cand.load(path, mmap)
        load_s = time.perf_counter() - t
        loaded = rss()
        label, search = cand.settings()[1]
        for row in q:
            search(row, K)
        searched = rss()
        key = "mmap" if mmap else "ram"
        out[key] = {"load_s": load_s,
                    "anon": loaded["RssAnon"] - before["RssAnon"],
                    "file": loaded["RssFile"] - before["RssFile"],
                    "anon_after": searched["RssAnon"] - before["RssAnon"],
                    "file_after": searched["RssFile"] - before["RssFile"],
                    "setting": label}
        del cand.index
    print(json.dumps(out))


def run_child(args: argparse.Namespace, i: int, phase: str) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, __file__, "--n", str(args.n), "--queries", str(args.queries),
         "--work", args.work, "--child", str(i), "--phase", phase],
        capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {i} {phase} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------ the comparison


def mb(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    ap.add_argument("--queries", type=int, default=1000, help="held-out query texts")
    ap.add_argument("--work", default=".vecbench", help="cache dir for vectors and indexes")
    ap.add_argument("--only", default="", help="comma-separated candidate numbers")
    ap.add_argument("--evict", type=int, default=300,
                    help="MB read before each query's last timing, to take the index out "
                         "of the caches (default 300, this machine's last-level cache; 0: "
                         "no cold timing)")
    ap.add_argument("--child", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--phase", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child >= 0:
        child(args)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
          f"load average {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}, "
          f"numpy {np.__version__}")
    for line in model_rates(work):
        print(line)
    meta = prepare(work, args.n, args.queries)
    print(f"corpus: {meta['n']:,} vectors of {DIM} dims: {meta['real']:,} real texts "
          f"(Debian synopses, descriptions and their sentences), {meta['recombined']:,} "
          f"made of two real sentences; median {meta['median_words']} words; "
          f"{meta['queries']} held-out real texts as queries")
    cands = candidates(args.n)
    if args.only:
        chosen = [int(x) for x in args.only.split(",")]
    else:
        chosen = [i for i in range(len(cands)) if args.n < 500_000 or i not in SLOW]
        if len(chosen) < len(cands):
            print("left out at this size (slow to build): "
                  + ", ".join(cands[i].name for i in sorted(SLOW)))
    built: dict[int, dict[str, Any]] = {}
    for i in chosen:
        b = run_child(args, i, "build")
        b.update(run_child(args, i, "load"))
        built[i] = b
        cands[i].name = b.get("name", cands[i].name)
        print(f"  built {cands[i].name}: {args.n / b['add_s']:,.0f} vectors/s", flush=True)

    # Queries, one at a time, interleaved across every candidate and setting.
    q = np.load(work / f"queries-{args.queries}.npy")
    truth = np.load(work / f"truth-{args.n}-{args.queries}.npy") + 1  # keys are rowid-like
    base = np.load(work / f"base-{args.n}.npy", mmap_mode="r")
    runs: list[tuple[int, str, Callable[..., np.ndarray]]] = []
    for i in chosen:
        c = cands[i]
        c.load(work / f"index-{args.n}-{i}.bin", mmap=False)
        for label, fn in c.settings():
            runs.append((i, label, fn))
            # Re-scored with exact float vectors: ask 2k (what recall asks of the engine's
            # index, re-reading the vectors from SQLite) or 4k, keep the best k.
            if c.quantization == "i8" or label in ("ef 128", "nprobe 128"):
                for times in (2, 4):
                    def rerank(qv: np.ndarray, k: int, fn: Callable[..., np.ndarray] = fn,
                               times: int = times) -> np.ndarray:
                        cand = np.asarray(fn(qv, times * k))
                        cand = cand[cand > 0]
                        sims = base[cand - 1] @ qv
                        return cand[np.argsort(-sims)[:k]]
                    runs.append((i, label + f" +rerank{times}x", rerank))
    times = [[0.0] * len(q) for _ in runs]
    hot = [[0.0] * len(q) for _ in runs]
    cold = [[0.0] * len(q) for _ in runs]
    hits = [0] * len(runs)
    evict = np.ones(args.evict * 2**20 // 8)
    for r in runs:  # warm-up: first touches of each index
        for row in q[:20]:
            r[2](row, K)
    order = list(range(len(runs)))
    for qi, row in enumerate(q):
        random.Random(qi).shuffle(order)
        want = set(truth[qi].tolist())
        for ri in order:
            t = time.perf_counter()
            got = runs[ri][2](row, K)
            times[ri][qi] = time.perf_counter() - t
            hits[ri] += len(want & set(np.asarray(got).tolist()))
            runs[ri][2](q[qi - 1], K)
            t = time.perf_counter()
            runs[ri][2](row, K)
            hot[ri][qi] = time.perf_counter() - t
            if args.evict:
                evict.sum()  # reads every byte: the caches now hold this, not the index
                t = time.perf_counter()
                runs[ri][2](row, K)
                cold[ri][qi] = time.perf_counter() - t

    print()
    print(f"{'candidate':<30} {'quant':>5} {'train s':>7} {'add vec/s':>10} {'disk MB':>8} "
          f"{'build MB':>8} {'load s':>7} {'RAM MB':>7} {'mmap load s':>11} "
          f"{'mmap anon/file MB':>17}")
    for i in chosen:
        c, b = cands[i], built[i]
        ram = b["ram"]
        mm = b.get("mmap")
        mm_load = f"{mm['load_s']:.3f}" if mm else "-"
        mm_mem = f"{mb(mm['anon_after'])}/{mb(mm['file_after'])}" if mm else "-"
        print(f"{c.name:<30} {c.quantization:>5} {b['train_s']:>7.1f} "
              f"{args.n / b['add_s']:>10,.0f} {mb(b['disk']):>8} {mb(b['build_ram']):>8} "
              f"{ram['load_s']:>7.2f} {mb(ram['anon_after']):>7} {mm_load:>11} {mm_mem:>17}")
    print()
    def pcts(xs: list[float]) -> str:
        xs = sorted(xs)
        return f"{xs[len(xs) // 2] * 1e3:>7.2f} {xs[int(len(xs) * 0.99)] * 1e3:>7.2f}"

    print("p50 / p99 ms: as each came; after its own previous search (hot)"
          + (f"; after reading {args.evict} MB (cold), and cold / hot at p50" if args.evict
             else ""))
    print(f"{'candidate':<30} {'setting':<18} {'recall@10':>9} {'as came':>15} {'hot':>15}"
          + (f" {'cold':>15} {'cold/hot':>8}" if args.evict else ""))
    for ri, (i, label, _) in enumerate(runs):
        line = (f"{cands[i].name:<30} {label:<18} {hits[ri] / (K * len(q)):>9.3f} "
                f"{pcts(times[ri])} {pcts(hot[ri])}")
        if args.evict:
            mid = len(q) // 2
            line += f" {pcts(cold[ri])} {sorted(cold[ri])[mid] / sorted(hot[ri])[mid]:>7.2f}x"
        print(line)
    print()
    print(f"{'library':<10} " + " ".join(f"{k:<26}" for k in USearch.features))
    for lib, cls in (("usearch", USearch), ("hnswlib", HnswLib), ("faiss", FaissIVF)):
        print(f"{lib:<10} " + " ".join(f"{v:<26}" for v in cls.features.values()))
    print("sqlite-vec: not measured: this Python's sqlite3 cannot load extensions "
          "(no enable_load_extension)")


if __name__ == "__main__":
    main()
