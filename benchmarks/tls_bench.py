"""What TLS costs on loopback: `engram import` and `engram recall -` throughput against a
plaintext, a TLS and a mutual-TLS `engram serve`, interleaved in one run.

Makes a CA, a server and a client certificate (tests/tls_support.py, the `cryptography`
package), starts three servers (their own subprocesses, free ports, temp data dirs, the
same settings, the background embedder off), then for each round and each server in a
rotating order: imports the same JSONL file into a fresh space (end to end: process start
to exit, every record acknowledged) and recalls the same cues through one `recall -`
pipeline (--no-cache).
Prints the medians and the ratio of each TLS variant to plaintext, then what opening a
connection costs (a new channel and its first call, in this process).

    python benchmarks/tls_bench.py              # 50,000 records, 2,000 cues, 3 rounds
    python benchmarks/tls_bench.py --quick      # 5,000 records, 300 cues, 2 rounds
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _support  # noqa: E402
import datagen  # noqa: E402

from tests.tls_support import make_pki  # noqa: E402

MODES = ("plaintext", "tls", "mtls")


def run(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> float:
    """Wall seconds of one `engram` process; exits on failure."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engram_cli", *args], input=stdin,
                          capture_output=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"engram {' '.join(args[:6])} ... failed: {proc.stderr.decode()}")
    return elapsed


def connect_ms(address: str, tls: object, n: int) -> float:
    """Median ms to open a channel and answer its first call (the handshake's cost)."""
    from engram_cli.client.connection import open_channel
    from engram_cli.rpc import ext, ext_svc

    times = []
    for _ in range(n):
        started = time.perf_counter()
        channel = open_channel(address, tls=tls)  # type: ignore[arg-type]
        ext_svc.ExtensionServiceStub(channel).ServerInfo(ext.ServerInfoRequest(), timeout=10)
        times.append(time.perf_counter() - started)
        channel.close()
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="records per import")
    parser.add_argument("--cues", type=int, default=2_000, help="cues per recall pipeline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    opts = parser.parse_args()
    if opts.quick:
        opts.n, opts.cues, opts.rounds = 5_000, 300, 2

    work = Path(tempfile.mkdtemp(prefix="engram-tls-bench-"))
    servers: list[subprocess.Popen] = []
    try:
        pki = make_pki(work / "pki")
        env = {**os.environ, "ENGRAM_CONFIG_DIR": str(work / "config"),
               "ENGRAM_CACHE_DIR": str(work / "cache"), "ENGRAM_NO_AUTOSTART": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("ENGRAM_") or k in (
            "ENGRAM_CONFIG_DIR", "ENGRAM_CACHE_DIR", "ENGRAM_NO_AUTOSTART")}
        # An importer to a local server runs at niceness 10 by default: on a machine busy
        # with other work it would measure that work, not the transport.
        env["ENGRAM_NICE"] = "0"
        server_tls = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
        extra = {"plaintext": [], "tls": server_tls,
                 "mtls": [*server_tls, "--client-ca", str(pki.ca)]}
        client = {"plaintext": [], "tls": ["--ca-cert", str(pki.ca)],
                  "mtls": ["--ca-cert", str(pki.ca), "--client-cert", str(pki.client.cert),
                           "--client-key", str(pki.client.key)]}
        address = {}
        for mode in MODES:
            # The background embedder would keep working after each import and take the
            # CPU from whichever run comes next: off, so that only the transport differs.
            (work / mode).mkdir(parents=True)
            (work / mode / "engram.toml").write_text('[engine]\nembedding_model = "none"\n')
            proc, address[mode] = _support.start_server(work / mode, env, *extra[mode])
            servers.append(proc)
        data = datagen.write_jsonl(work / "memories.jsonl", opts.n)
        cues = ("\n".join(datagen.cue_texts(opts.cues)) + "\n").encode()
        print(f"TLS on loopback: {opts.n:,} records per import, {opts.cues:,} cues per recall "
              f"pipeline, {opts.rounds} interleaved rounds, {os.cpu_count()} cores")

        imports: dict[str, list[float]] = {m: [] for m in MODES}
        recalls: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(opts.rounds):
            order = MODES[r % 3:] + MODES[:r % 3]
            for mode in order:
                base = ["--server", address[mode], *client[mode], "--space", f"bench-r{r}"]
                t = run([*base, "import", str(data)], env)
                imports[mode].append(opts.n / t)
                t = run([*base, "recall", "--no-cache", "--format", "jsonl", "-"], env, cues)
                recalls[mode].append(opts.cues / t)

        def row(*cells: str) -> None:
            print(f"  {cells[0]:<28}" + "".join(f"{c:>14}" for c in cells[1:]))

        print()
        row("median of rounds", *MODES)
        imp = {m: statistics.median(imports[m]) for m in MODES}
        rec = {m: statistics.median(recalls[m]) for m in MODES}
        row("import, records/s", *(f"{imp[m]:,.0f}" for m in MODES))
        row("  rounds' range", *(f"{min(imports[m]):,.0f}-{max(imports[m]):,.0f}"
                                 for m in MODES))
        row("  ratio to plaintext", *(f"{imp[m] / imp['plaintext']:.2f}x" for m in MODES))
        row("recall pipeline, cues/s", *(f"{rec[m]:,.0f}" for m in MODES))
        row("  rounds' range", *(f"{min(recalls[m]):,.0f}-{max(recalls[m]):,.0f}"
                                 for m in MODES))
        row("  ratio to plaintext", *(f"{rec[m] / rec['plaintext']:.2f}x" for m in MODES))

        from engram_cli.config import TlsOptions

        options = {"plaintext": None, "tls": TlsOptions(ca_cert=str(pki.ca)),
                   "mtls": TlsOptions(str(pki.ca), str(pki.client.cert), str(pki.client.key))}
        conn = {m: connect_ms(address[m], options[m], 30) for m in MODES}
        row("new channel + first call, ms", *(f"{conn[m]:.2f}" for m in MODES))
        row("  ratio to plaintext", *(f"{conn[m] / conn['plaintext']:.2f}x" for m in MODES))
        print("  (each round imports into a fresh space, so every import does the same work)")
    finally:
        for proc in servers:
            _support.stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
