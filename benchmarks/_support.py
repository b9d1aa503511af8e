"""What the benchmark scripts share: a real `engram serve` of their own on a free port,
taking a store out of the page cache, and a process's CPU time from /proc."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path


def start_server(data_dir: Path, env: dict[str, str] | None = None, *extra: str
                 ) -> tuple[subprocess.Popen, str]:
    """`engram serve --port 0` on `data_dir`; answers (process, address) once it listens.
    It runs in `data_dir`: `python -m` puts its working directory first on the path, so
    a checkout as the working directory would win over a baseline's PYTHONPATH."""
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_cli", "serve", "--port", "0", "--data-dir",
         str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=data_dir,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("engram serve did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


def proc_cpu(stat: str | Path) -> tuple[str, float]:
    """(name, user + system CPU seconds so far) of the process or thread whose /proc `stat`
    file this is (Linux); OSError when it is gone."""
    text = Path(stat).read_text()
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    return head[head.index("(") + 1:], (int(fields[11]) + int(fields[12])) / os.sysconf(
        "SC_CLK_TCK")


def drop_pages(dirs: list[Path]) -> int:
    """Take every file under `dirs` out of the page cache (the vector index's files too:
    the servers hold their index in their own memory); answers the bytes of those files."""
    total = 0
    for d in dirs:
        for f in d.rglob("*"):
            if f.is_file() and not f.is_symlink():
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fdatasync(fd)  # dirty pages cannot be dropped
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
                total += f.stat().st_size
    return total
