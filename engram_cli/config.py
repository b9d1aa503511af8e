"""Client-side configuration: typed values, module-level defaults, one resolver.

Order, highest first: command-line flag > environment variable > config file
(`<user config dir>/config.toml`, section [client]) > default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram_cli.compat import tomllib

APP_NAME = "engram"
DEFAULT_PORT = 50051
DEFAULT_HOST = "localhost"
DEFAULT_SERVER = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
DEFAULT_SPACE = ""  # the server's default space, named "default"
DEFAULT_IDLE_TIMEOUT_S = 30 * 60.0
# gRPC's default 4 MiB is too small for good batches; both halves agree on this.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

ENV_SERVER = "ENGRAM_SERVER"
ENV_SPACE = "ENGRAM_SPACE"
ENV_API_KEY = "ENGRAM_API_KEY"
ENV_NO_AUTOSTART = "ENGRAM_NO_AUTOSTART"
ENV_DATA_DIR = "ENGRAM_DATA_DIR"
ENV_CONFIG_DIR = "ENGRAM_CONFIG_DIR"
ENV_CACHE_DIR = "ENGRAM_CACHE_DIR"


def _platform_dir(env: str, kind: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")(APP_NAME))


def data_dir() -> Path:
    """Where `engram serve` keeps its store unless told otherwise."""
    return _platform_dir(ENV_DATA_DIR, "data")


def config_dir() -> Path:
    return _platform_dir(ENV_CONFIG_DIR, "config")


def cache_dir() -> Path:
    return _platform_dir(ENV_CACHE_DIR, "cache")


def client_config_path() -> Path:
    return config_dir() / "config.toml"


def read_client_config_file(path: Path | None = None) -> dict[str, Any]:
    """The [client] table of the config file, or {} when there is none."""
    path = path or client_config_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        from engram_cli.errors import UsageError

        raise UsageError(f"cannot read config file {path}: {exc}", "fix or delete it") from exc
    client = data.get("client", {})
    return client if isinstance(client, dict) else {}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Connection:
    """Where and how to reach a server."""

    server: str = DEFAULT_SERVER
    space: str = DEFAULT_SPACE
    api_key: str | None = None
    autostart: bool = True

    @property
    def is_default_target(self) -> bool:
        """Is this the embedded default's address: this machine, at the default port? There
        autostart may start a server."""
        if not is_local(self.server) or self.server.startswith(_UNIX_SCHEMES):
            return False
        try:
            _, port = split_address(normalize_address(self.server))
        except ValueError:
            return False
        return port == default_port()


ENV_DEFAULT_PORT = "ENGRAM_DEFAULT_PORT"


def default_port() -> int:
    """The embedded default's port: 50051, or ENGRAM_DEFAULT_PORT when 50051 is taken by
    something else on this machine (a real Engram, say)."""
    raw = os.environ.get(ENV_DEFAULT_PORT, "")
    if raw.isdigit() and 0 < int(raw) < 65536:
        return int(raw)
    return DEFAULT_PORT


def default_server() -> str:
    return f"{DEFAULT_HOST}:{default_port()}"


_UNIX_SCHEMES = ("unix:", "unix-abstract:")


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError when the port is not a number."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


def is_local(address: str) -> bool:
    """Is the server at `address` on this machine: a unix socket, `localhost`, a loopback
    address, or 0.0.0.0 / :: (which reach this machine when used as a target)?"""
    import ipaddress

    if address.startswith(_UNIX_SCHEMES):
        return True
    host = normalize_address(address).rpartition(":")[0].strip("[]").lower()
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def normalize_address(address: str) -> str:
    """`host` -> `host:50051`; strips a grpc:// or http:// scheme."""
    for scheme in ("grpc://", "http://", "dns:///"):
        if address.startswith(scheme):
            address = address[len(scheme) :]
    address = address.rstrip("/")
    if address.startswith("["):  # [::1]:port
        return address if "]:" in address else f"{address}:{DEFAULT_PORT}"
    if ":" not in address:
        return f"{address}:{DEFAULT_PORT}"
    return address


def resolve_connection(
    server: str | None = None,
    space: str | None = None,
    api_key: str | None = None,
    no_autostart: bool | None = None,
    file_config: dict[str, Any] | None = None,
) -> Connection:
    """Flags (arguments here) > environment > config file > defaults."""
    cfg = read_client_config_file() if file_config is None else file_config
    env = os.environ
    resolved_server = server or env.get(ENV_SERVER) or cfg.get("server") or default_server()
    resolved_space = space or env.get(ENV_SPACE) or cfg.get("space") or DEFAULT_SPACE
    resolved_key = api_key or env.get(ENV_API_KEY) or cfg.get("api_key") or None
    if no_autostart:
        autostart = False
    elif ENV_NO_AUTOSTART in env:
        autostart = not _truthy(env.get(ENV_NO_AUTOSTART))
    else:
        autostart = bool(cfg.get("autostart", True))
    return Connection(
        server=normalize_address(str(resolved_server)),
        space=str(resolved_space),
        api_key=resolved_key,
        autostart=autostart,
    )
