"""The coded store at wider dimensions than the default model's 256, side by side: the
fast-scan codes the engine gives them (engine/ivf.py `pq_m`: a 4-bit code stands for at
most SUB_DIMS dimensions) against 64 sub-quantizers whatever the dimension (the rule before,
which suits 256-d) and against 4 dimensions a code (as at 256-d).

    python benchmarks/wide_vectors_bench.py                      # 1,000,000 vectors, 768-d
    python benchmarks/wide_vectors_bench.py --n 200000 --dims 768,1536 --noise 0.6

No model of 768 dimensions ships in a package, so the vectors are the real 256-d WordLlama
embeddings of vector_index_bench.py's corpus (Debian's texts; cached in --work) turned into
each dimension by a random rotation, plus isotropic noise of `--noise` of a vector's length
before it is made unit length again: their neighbours are those of real text, spread over
every dimension as a wider model's are. A model whose vectors use more of their dimensions
is harder still for coarse codes. For each dimension the exact ten nearest come from numpy;
each variant's store is built as the server builds one (ivf.train, then add), and the
queries (held-out real texts) go one at a time, variant after variant, through
ivf.search at the default `vector_candidates` and the re-scoring recall does. Printed:
recall@10 against exact, search p50 / p99, the codes' bytes a vector, and each against the
engine's choice.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantic_bench import truth
from vector_index_bench import K, prepare

from engram_cli.engine import ivf
from engram_cli.engine.settings import Settings

CANDIDATES = Settings().vector_candidates


def widen(vecs: np.ndarray, turn: np.ndarray, noise: float, rng: np.random.Generator
          ) -> np.ndarray:
    out = np.empty((len(vecs), turn.shape[1]), dtype=np.float32)
    for i in range(0, len(vecs), 50_000):
        part = np.asarray(vecs[i:i + 50_000], dtype=np.float32) @ turn
        part += noise / np.sqrt(turn.shape[1]) * rng.standard_normal(part.shape,
                                                                    dtype=np.float32)
        out[i:i + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def build(base: np.ndarray, m: int, rng: np.random.Generator) -> tuple[ivf.Coded, float]:
    engine_rule = ivf.pq_m
    ivf.pq_m = lambda dim: m  # type: ignore[assignment]
    try:
        t = time.perf_counter()
        sample = base[np.sort(rng.choice(len(base), ivf.sample_size(len(base)), replace=False))]
        coded = ivf.train(base.shape[1], sample)
        for i in range(0, len(base), 100_000):
            coded.add_with_ids(base[i:i + 100_000],
                               np.arange(i, min(len(base), i + 100_000), dtype=np.int64))
        coded.install_lookup(*coded.lookup_keys())
        return coded, time.perf_counter() - t
    finally:
        ivf.pq_m = engine_rule  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the store")
    ap.add_argument("--queries", type=int, default=500, help="held-out query texts")
    ap.add_argument("--dims", default="768", help="comma-separated dimensions")
    ap.add_argument("--noise", type=float, default=0.3,
                    help="isotropic noise, a fraction of a vector's length")
    ap.add_argument("--work", default=".vecbench", help="cache dir for the 256-d vectors")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(exist_ok=True)
    prepare(work, args.n, args.queries)
    vecs = np.load(work / f"base-{args.n}.npy", mmap_mode="r")
    qv = np.load(work / f"queries-{args.queries}.npy")
    rng = np.random.default_rng(0)
    print(f"{args.n:,} vectors, {args.queries} queries, noise {args.noise}, "
          f"{CANDIDATES} candidates re-scored, 40 kept (a hybrid recall's vector seeds)")
    for dim in (int(d) for d in args.dims.split(",")):
        turn = np.linalg.qr(rng.standard_normal((dim, 256)))[0].T.astype(np.float32)
        base, cues = widen(vecs, turn, args.noise, rng), widen(qv, turn, args.noise, rng)
        exact = truth(base, cues)
        ms = {"engine": ivf.pq_m(dim), "64 always (before)": 64, "4 dims a code": dim // 4}
        stores = {}
        for name, m in ms.items():
            stores[name], secs = build(base, m, rng)
            print(f"  {dim}-d, {name}: {m} sub-quantizers ({m // 2} bytes a vector), "
                  f"built in {secs:.1f} s")
        lat: dict[str, list[float]] = {name: [] for name in ms}
        hits = dict.fromkeys(ms, 0)
        for cue, want in zip(cues, exact, strict=True):
            for name, coded in stores.items():
                t = time.perf_counter()
                found = np.array([k for k, _ in ivf.search(coded, cue[None, :], 40,
                                                           CANDIDATES)])
                lat[name].append(time.perf_counter() - t)
                best = found[np.argsort(-(base[found] @ cue))[:K]]  # recall's exact re-score
                hits[name] += len(set(best.tolist()) & set(want.tolist()))
        ref = float(np.median(lat["engine"]))
        for name in ms:
            p50, p99 = np.median(lat[name]), np.percentile(lat[name], 99)
            print(f"  {dim}-d, {name:18s} recall@10 {hits[name] / exact.size:.3f}  "
                  f"p50 {p50 * 1e3:.2f} ms  p99 {p99 * 1e3:.2f} ms  "
                  f"time / engine's {p50 / ref:.2f}x")
        del stores, base


if __name__ == "__main__":
    main()
