"""What private files cost: engram_cli/files.py beside the plain writes it replaced.

Interleaved rounds, medians and the round-by-round ratio of each pair:
- replacing a checkpoint-sized file: the old open/write/fsync/rename against
  files.write_atomic (lstat of the target, exclusive O_NOFOLLOW temporary file, fchmod,
  and an fsync of the directory the old code skipped);
- opening a file to append (a rejects file): open(path, "ab") against files.append_private;
- making sure a database file exists before SQLite opens it (the store, the recall cache):
  the old exists()-then-create against files.create_private.

    python benchmarks/private_files_bench.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engram_cli import files

BODY = b'{"version": 1, "inputs": [{"name": "big.jsonl", "offset": 123456789}]}\n' * 4


def old_replace(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(BODY)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def new_replace(path: Path) -> None:
    files.write_atomic(path, BODY, tmp=path.with_name(path.name + ".tmp"))


def old_append(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"x\n")


def new_append(path: Path) -> None:
    with files.append_private(path) as f:
        f.write(b"x\n")


def old_create(path: Path) -> None:
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def new_create(path: Path) -> None:
    files.create_private(path)


def timed(fn: Callable[[Path], None], path: Path, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn(path)
    return (time.perf_counter() - start) / n


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    pairs = [("replace a checkpoint (fsync)", old_replace, new_replace, 20),
             ("open to append", old_append, new_append, 2000),
             ("ensure a db file exists", old_create, new_create, 5000)]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        print(f"{'operation':32} {'old':>10} {'new':>10} {'ratio (median of rounds)':>26}")
        for name, old, new, n in pairs:
            olds, news, ratios = [], [], []
            for r in range(rounds):
                a, b = root / f"old-{r}", root / f"new-{r}"
                o, w = timed(old, a, n), timed(new, b, n)
                olds.append(o)
                news.append(w)
                ratios.append(w / o)
            print(f"{name:32} {statistics.median(olds) * 1e6:8.1f}us "
                  f"{statistics.median(news) * 1e6:8.1f}us "
                  f"{statistics.median(ratios):25.2f}x")


if __name__ == "__main__":
    main()
