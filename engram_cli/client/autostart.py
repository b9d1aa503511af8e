"""The embedded default: when the target is localhost:50051 and nothing listens there,
start `engram serve` in the background (stopping after an idle time) and carry on."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from engram_cli import config
from engram_cli.errors import EngramError, ServerUnavailable, UsageError
from engram_cli.files import append_private, open_private, private_dir

START_TIMEOUT_S = 20.0
LOG_NAME = "server.log"
START_LOCK_NAME = "autostart.lock"  # held by the command that starts the server


def is_listening(address: str, timeout: float = 0.5) -> bool:
    """Does something accept connections at `address` (host:port or a unix socket)?"""
    try:
        if address.startswith(config.UNIX_SCHEMES):
            scheme, _, path = address.partition(":")
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(timeout)
                sock.connect(path.removeprefix("//") if scheme == "unix" else "\0" + path)
            return True
        with socket.create_connection(config.split_address(address), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def listeners(port: int, tables: tuple[str, ...] = _TCP_TABLES) -> list[tuple[int, int]]:
    """(uid, socket inode) of each TCP socket listening on `port` on this machine (Linux's
    /proc/net tables; none where there are none to read)."""
    found = []
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode;
            # st 0A is LISTEN.
            if len(fields) > 9 and fields[3] == "0A" and fields[1].rpartition(":")[2] == (
                    f"{port:04X}"):
                found.append((int(fields[7]), int(fields[9])))
    return found


def listener_uids(port: int, tables: tuple[str, ...] = _TCP_TABLES) -> set[int]:
    """The users owning the TCP sockets that listen on `port` on this machine."""
    return {uid for uid, _ in listeners(port, tables)}


def holds_port(pid: int, port: int) -> bool | None:
    """Does process `pid` hold a socket listening on `port`? None where this system does
    not say (no /proc): a server's word for its own pid cannot be checked there."""
    if not Path(_TCP_TABLES[0]).exists():
        return None
    inodes = {inode for _, inode in listeners(port)}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
    return False


def check_owner(address: str, tables: tuple[str, ...] = _TCP_TABLES) -> None:
    """The embedded default's port is served by this user's process (or root's), not by
    another local user's, which would read every memory sent and every key (a port anyone
    may take first)."""
    _, port = config.split_address(address)
    foreign = {uid for uid in listener_uids(port, tables) if uid not in (os.geteuid(), 0)}
    if foreign:
        raise ServerUnavailable(
            f"{address} is served by another user's process (uid {min(foreign)}), not by "
            "your embedded server: nothing was sent to it",
            f"stop it, or move your embedded server to another port with "
            f"{config.ENV_DEFAULT_PORT}=PORT")


def bind_host(address: str) -> str:
    """Where the embedded server listens for a target on this machine: the loopback address
    the target names, else 127.0.0.1 (which `localhost` and 0.0.0.0 reach)."""
    import ipaddress

    host, _ = config.split_address(address)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    if ip.is_loopback:
        return host
    return "::1" if ip.version == 6 else "127.0.0.1"


def start_background_server(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = config.DEFAULT_PORT,
    idle_timeout_s: float = config.DEFAULT_IDLE_TIMEOUT_S,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Spawn `engram serve` detached from this terminal; return once it accepts calls.

    Secrets (API keys) go in `env`, never in `extra_args`: a command line is visible to
    every local user (`ps`), a process's environment only to its owner."""
    private_dir(data_dir, own=False)
    log_path = data_dir / LOG_NAME
    cmd = [sys.executable, "-m", "engram_cli", "serve", "--host", host, "--port", str(port),
           "--data-dir", str(data_dir), "--idle-timeout", str(idle_timeout_s),
           "--log-file", str(log_path), *extra_args]
    with append_private(log_path) as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True, env={**_server_env(), **(env or {})})
    address = f"{host}:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if is_listening(address, 0.2):
            return proc
        if proc.poll() is not None:
            if is_listening(address, 0.2):  # lost a start race to another command: fine
                return proc
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise EngramError(f"the background server exited with code {proc.returncode}",
                              f"see {log_path}: " + " | ".join(tail))
        time.sleep(0.05)
    proc.terminate()
    raise EngramError(f"the background server did not start within {START_TIMEOUT_S:.0f} s",
                      f"see {log_path}")


def _server_env() -> dict[str, str]:
    """The background server's environment: ours, but with gRPC's own errors in its log
    again (cli/entry.py silences them in the client)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if env.get("GRPC_VERBOSITY") == "NONE":
        del env["GRPC_VERBOSITY"]
    return env


@contextlib.contextmanager
def _starting(data_dir: Path) -> Iterator[None]:
    """Held while this command starts the server of `data_dir` (an flock on a file of its
    own there, released when the descriptor closes, also if this process dies)."""
    import fcntl

    try:
        private_dir(data_dir, own=False)
        fd = open_private(data_dir / START_LOCK_NAME, os.O_RDWR | os.O_CREAT)
    except OSError as exc:  # HOME unset or read-only, a data dir on a full disk
        raise UsageError(f"the data dir {data_dir} cannot be created: {exc.strerror}",
                         f"set {config.ENV_DATA_DIR} to a directory you can write, or "
                         "start a server with `engram serve --data-dir DIR`") from None
    try:
        # A file system without locks (some network ones) only loses the tidiness.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_server(conn: config.Connection, announce: bool = True) -> None:
    """Start the embedded default server if the target is the default and nobody listens."""
    if not conn.is_default_target:
        return
    if is_listening(conn.server):
        check_owner(conn.server)
        return
    if not conn.autostart:
        raise ServerUnavailable(
            f"no Engram server answers at {conn.server}",
            "start one with `engram serve` (or unset ENGRAM_NO_AUTOSTART / drop "
            "--no-autostart to let engram start it)")
    data_dir = config.data_dir()
    _, port = config.split_address(conn.server)
    with _starting(data_dir):
        # Commands started together (`engram export | engram import -`) all find nobody
        # listening: the first starts the server, the others wait here, then find it.
        if is_listening(conn.server):
            check_owner(conn.server)
            return
        start_background_server(data_dir, bind_host(conn.server), port)
    if announce:
        minutes = config.DEFAULT_IDLE_TIMEOUT_S / 60
        print(f"engram: started a local server on {conn.server} (data: {data_dir}; stops "
              f"after {minutes:.0f} min idle or `engram stop`)", file=sys.stderr)
