"""`engram import --embed` against the embedding model's own rate, side by side in one run.

Into our server with its embedder off (embedding_model = "none", so the server does no
model work): records/s of `import --embed` with 1 and 2 worker processes (fresh embedding
cache each), against the model's raw rate in this one process over the same texts (goal:
>= 0.8x with one worker), and the same file imported again (every vector from the cache,
no model time at all).

    python benchmarks/client_embed_bench.py [--records 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def model_rate(texts: list[str]) -> float:
    from engram_cli.engine.embedding import DEFAULT_MODEL, load_model

    model = load_model(DEFAULT_MODEL)
    assert model is not None
    model.embed(texts[:256])  # warm
    started = time.perf_counter()
    for i in range(0, len(texts), 256):
        model.embed(texts[i:i + 256])
    return len(texts) / (time.perf_counter() - started)


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    data.mkdir(parents=True)
    (data / "engram.toml").write_text('[engine]\nembedding_model = "none"\n')
    proc = subprocess.Popen([sys.executable, "-m", "engram_cli", "serve", "--port", "0",
                             "--data-dir", str(data)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"listening on (\S+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit("the server did not start")


def run_import(address: str, path: Path, cache: Path, *args: str) -> dict:
    env = {**os.environ, "ENGRAM_CACHE_DIR": str(cache), "ENGRAM_NO_AUTOSTART": "1"}
    out = subprocess.run([sys.executable, "-m", "engram_cli", "--server", address, "import",
                          str(path), "--json", "--quiet", *args], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"import failed: {out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    n = parser.parse_args().records
    from engram_cli.benchsuite import datagen

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = datagen.write_jsonl(root / "bench.jsonl", n)
        texts = [r["content"] for r in datagen.generate_records(n)]
        raw = model_rate(texts)
        print(f"records: {n:,}; cores: {os.cpu_count()}")
        print(f"model raw rate (one process, no I/O): {raw:,.0f} texts/s")
        rows = []
        for workers in (1, 2):
            proc, address = start_server(root / f"srv-{workers}")
            try:
                s = run_import(address, path, root / f"cache-{workers}", "--embed",
                               "--embed-workers", str(workers))
                again = run_import(address, path, root / f"cache-{workers}", "--embed",
                                   "--embed-workers", str(workers))
            finally:
                proc.terminate()
                proc.wait(20)
            rows.append((workers, s, again))
        for workers, s, again in rows:
            rate = s["records_per_second"]
            print(f"import --embed, {workers} worker(s): {rate:,.0f} records/s "
                  f"= {rate / raw:.2f}x the model's raw rate (goal >= 0.8x with 1); "
                  f"embedded {s['embedded']:,}, model time {s['embed_model_seconds']:.2f} s")
            print(f"  re-import (cache): {again['records_per_second']:,.0f} records/s "
                  f"= {again['records_per_second'] / rate:.2f}x the first import; "
                  f"embedded {again['embedded']:,}, cache hits {again['embed_cache_hits']:,}")
        one, two = rows[0][1]["records_per_second"], rows[1][1]["records_per_second"]
        print(f"scaling 1 -> 2 workers: {two / one:.2f}x")


if __name__ == "__main__":
    main()
