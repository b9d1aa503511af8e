"""The coded store at other dimensions than the default model's 256, side by side: the codes
and candidates the engine gives them (engine/ivf.py: `pq_m`, a 4-bit code standing for at
most SUB_DIMS dimensions; `scan_candidates`, more candidates for fewer than PQ_M
sub-quantizers) against the rule before (the largest divisor of the dimension up to 64
sub-quantizers, 256 candidates whatever the dimension), and for wide vectors against 4
dimensions a code (as at 256-d).

    python benchmarks/coded_dims_bench.py                        # 1,000,000 vectors, 768-d
    python benchmarks/coded_dims_bench.py --dims 8,32,768,1536 --n 200000
    python benchmarks/coded_dims_bench.py --dims 768 --noise 0.6

No model of another width ships in a package, so the vectors are the real 256-d WordLlama
embeddings of vector_index_bench.py's corpus (Debian's texts; cached in --work) turned into
each dimension by a random orthonormal map (a projection below 256, a rotation into more
dimensions above), plus isotropic noise of `--noise` of a vector's length before each is
made unit length again: their neighbours are those of real text, spread over every
dimension as another model's are. A model whose vectors use more of their dimensions is
harder still for coarse codes. For each dimension the exact ten nearest come from numpy;
each variant's store is built as the server builds one (ivf.train, then add), and the
queries (held-out real texts) go one at a time, variant after variant, through ivf.search
at the default `vector_candidates` and the exact re-scoring recall does. Printed: recall@10
against exact, search p50 / p99, the 4-bit codes' bytes a vector, and each variant's time
against the engine's.
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
ENGINE_PQ_M, ENGINE_CANDIDATES = ivf.pq_m, ivf.scan_candidates


def before_pq_m(dim: int) -> int:
    return max(m for m in range(1, min(64, dim) + 1) if dim % m == 0)


def turned(vecs: np.ndarray, turn: np.ndarray, noise: float, rng: np.random.Generator
           ) -> np.ndarray:
    out = np.empty((len(vecs), turn.shape[1]), dtype=np.float32)
    for i in range(0, len(vecs), 50_000):
        part = np.asarray(vecs[i:i + 50_000], dtype=np.float32) @ turn
        part += noise / np.sqrt(turn.shape[1]) * rng.standard_normal(part.shape,
                                                                    dtype=np.float32)
        out[i:i + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def build(base: np.ndarray, m: int, rng: np.random.Generator) -> tuple[ivf.Coded, float]:
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
        ivf.pq_m = ENGINE_PQ_M  # type: ignore[assignment]


def variants(dim: int) -> dict[str, tuple[int, bool]]:
    """name -> (sub-quantizers, whether a search takes the engine's candidates)."""
    out = {"engine": (ENGINE_PQ_M(dim), True), "before": (before_pq_m(dim), False)}
    if dim > 256 and dim % 4 == 0:
        out["4 dims a code"] = (dim // 4, True)
    return out


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
          f"{CANDIDATES} candidates asked for, 40 kept (a hybrid recall's vector seeds)")
    for dim in (int(d) for d in args.dims.split(",")):
        if dim < ivf.CODED_MIN_DIM:
            print(f"  {dim}-d: a space this narrow stays an exact store")
            continue
        basis = np.linalg.qr(rng.standard_normal((max(dim, 256), min(dim, 256))))[0]
        turn = (basis.T if dim > 256 else basis).astype(np.float32)  # 256 x dim
        base, cues = turned(vecs, turn, args.noise, rng), turned(qv, turn, args.noise, rng)
        exact = truth(base, cues)
        kinds = variants(dim)
        stores = {}
        for name, (m, _) in kinds.items():
            stores[name], secs = build(base, m, rng)
            print(f"  {dim}-d, {name}: {m} sub-quantizers ({(m + 1) // 2} bytes a vector), "
                  f"built in {secs:.1f} s")
        lat: dict[str, list[float]] = {name: [] for name in kinds}
        hits = dict.fromkeys(kinds, 0)
        for cue, want in zip(cues, exact, strict=True):
            for name, coded in stores.items():
                more = kinds[name][1]
                ivf.scan_candidates = (  # type: ignore[assignment]
                    ENGINE_CANDIDATES if more else lambda index, c: c)
                t = time.perf_counter()
                found = np.array([k for k, _ in ivf.search(coded, cue[None, :], 40,
                                                           CANDIDATES)])
                lat[name].append(time.perf_counter() - t)
                best = found[np.argsort(-(base[found] @ cue))[:K]]  # recall's exact re-score
                hits[name] += len(set(best.tolist()) & set(want.tolist()))
        ivf.scan_candidates = ENGINE_CANDIDATES  # type: ignore[assignment]
        ref = float(np.median(lat["engine"]))
        for name, (_, more) in kinds.items():
            p50, p99 = np.median(lat[name]), np.percentile(lat[name], 99)
            scanned = ENGINE_CANDIDATES(stores[name], CANDIDATES) if more else CANDIDATES
            print(f"  {dim}-d, {name:13s} {scanned:5d} candidates  recall@10 "
                  f"{hits[name] / exact.size:.3f}  p50 {p50 * 1e3:.2f} ms  "
                  f"p99 {p99 * 1e3:.2f} ms  time / engine's {p50 / ref:.2f}x")
        del stores, base


if __name__ == "__main__":
    main()
