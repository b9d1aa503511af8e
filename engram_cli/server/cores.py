"""The server's maths libraries on one thread per calling thread.

numpy's OpenBLAS starts a thread per core for a large enough product (the fresh segment's
exact scan of up to 32,768 vectors at each vector search while the index catches up, an
embedding cue's scan while the index opens) and leaves them spinning after it. In the
server the parallelism is already the RPC threads', the indexer's and the embedding
workers' (processes of their own, each on one thread): on 2 cores the spinning threads
took time from them. Measured at a million memories, fresh servers interleaved:
- embedding cues sent from the start, while the index opens: the first 200 took 1.9-2.1 s
  instead of 4.6-7.1 s, 17-20 of them answered by a scan instead of 61-115 (4 pairs);
- catching up, with a hybrid recall every 100 ms: catch-up 1.00-1.19x as fast (median
  1.05x), the recalls' p50 20.4 -> 19.3 ms and p99 59.7 -> 55.5 ms (medians, 8 pairs;
  these set the limit by environment variable);
- recall once caught up: unchanged.
faiss's own OpenMP threads are set the same way, per thread, in engine/ivf.py.
"""

from __future__ import annotations


def one_blas_thread() -> None:
    """Limit every BLAS library loaded in this process (numpy's) to one thread; the limit
    is process-wide and stays."""
    import numpy  # noqa: F401  # loads numpy's BLAS, so that the limit reaches it
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def blas_threads() -> int:
    """The most threads a product in a loaded BLAS library may start (0: none loaded).
    Libraries threaded by OpenMP (faiss's) are left out: they follow the calling
    thread's own OpenMP setting, which engine/ivf.py sets to 1 where faiss is called."""
    from threadpoolctl import threadpool_info

    return max((int(lib["num_threads"]) for lib in threadpool_info()
                if lib.get("user_api") == "blas" and lib.get("threading_layer") != "openmp"),
               default=0)
