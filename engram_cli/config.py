"""Where things live and how to reach a server: the user dirs, the default address, the
Connection value, whether a server is on this machine, and reading our TOML files with
line numbers for error messages.

The client's settings (the [client] table of `<config dir>/config.toml`, environment
variables and flags) are resolved in engram_cli/client/settings.py.
"""

from __future__ import annotations

import os
import sys

from engram_cli.errors import SettingsError
from engram_cli.values import Value

# typing costs a cached recall several ms at import; annotations are strings here. So
# does pathlib (~8 ms): the cache-hit path takes its paths as strings (user_path,
# client_config_file), the rest of the package as Paths.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

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


# On Linux the user dirs are the XDG base directories: $XDG_<KIND>_HOME when it is an
# absolute path, else ~/.local/share, ~/.config or ~/.cache, with our name appended.
# Computed here in the plain case, because importing platformdirs costs a cached recall
# ~10 ms; every other case (another OS, Android, a relative or unset HOME, a relative XDG
# variable, on which platformdirs versions differ) is platformdirs' to answer. A test
# checks that both agree.
_XDG = {"data": ("XDG_DATA_HOME", "~/.local/share"), "config": ("XDG_CONFIG_HOME", "~/.config"),
        "cache": ("XDG_CACHE_HOME", "~/.cache")}


def user_dir(kind: str) -> str:
    """The platform's user `kind` ("data", "config" or "cache") directory for engram, as
    platformdirs' user_<kind>_dir("engram") answers it."""
    if sys.platform == "linux" and not _maybe_android():
        variable, default = _XDG[kind]
        base = os.environ.get(variable, "")
        if base.startswith("/"):
            return os.path.join(base, APP_NAME)
        if not base and os.environ.get("HOME", "").startswith("/"):
            return os.path.join(os.path.expanduser(default), APP_NAME)
    import platformdirs

    return str(getattr(platformdirs, f"user_{kind}_dir")(APP_NAME))


def _maybe_android() -> bool:
    # What platformdirs looks at before it decides that this is Android.
    return hasattr(sys, "getandroidapilevel") or (
        os.environ.get("ANDROID_DATA") == "/data" and os.environ.get("ANDROID_ROOT") == "/system")


def user_path(env: str, kind: str, *names: str) -> str:
    """The directory named by the variable `env` (ENGRAM_CONFIG_DIR, ...) when set, else
    the user `kind` dir, joined with `names`: a string, for the cache-hit path."""
    return os.path.join(os.environ.get(env) or user_dir(kind), *names)


def _platform_dir(env: str, kind: str) -> Path:
    from pathlib import Path

    return Path(user_path(env, kind))


def data_dir() -> Path:
    """Where `engram serve` keeps its store unless told otherwise."""
    return _platform_dir(ENV_DATA_DIR, "data")


def in_data_dir(path: Path) -> bool:
    """Is `path` inside the embedded server's data dir? A file written there by a command
    (an export, a rejects file) could stand in for the store's own: `-o .../engram.db`
    renamed an export over a live database."""
    try:
        return path.resolve().is_relative_to(data_dir().resolve())
    except (OSError, ValueError, RuntimeError):
        return False


def config_dir() -> Path:
    return _platform_dir(ENV_CONFIG_DIR, "config")


def cache_dir() -> Path:
    return _platform_dir(ENV_CACHE_DIR, "cache")


CLIENT_CONFIG_NAME = "config.toml"


def client_config_file() -> str:
    """The client's config file (`<config dir>/config.toml`) as a string."""
    return user_path(ENV_CONFIG_DIR, "config", CLIENT_CONFIG_NAME)


def client_config_path() -> Path:
    return config_dir() / CLIENT_CONFIG_NAME


# A settings file is a few KiB; past this it is not one.
MAX_TOML_BYTES = 1 << 20


def read_toml(path: Path | str) -> tuple[dict[str, Any], str]:
    """(document, text) of a TOML file; ({}, "") when it does not exist. Only a regular
    file is read, and at most MAX_TOML_BYTES of it (`tune --write-config /dev/zero` read
    the device it was to update until the kernel killed it)."""
    from engram_cli.files import NotARegularFile, read_regular

    try:
        raw = read_regular(path, MAX_TOML_BYTES)
    except FileNotFoundError:
        return {}, ""
    except NotARegularFile as exc:
        raise SettingsError(str(exc), "a settings file is a TOML file: name one") from None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}",
                            "check its permissions") from exc
    from engram_cli.compat import tomllib  # only when there is a file to read

    try:
        text = raw.decode("utf-8")
        return tomllib.loads(text), text
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}", "fix the file or move it away"
                            ) from exc


def line_of(text: str, table: str, key: str) -> int | None:
    """The line where `key = ...` is set inside `[table]`, for error messages."""
    import re

    section = ""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[\s*([^\[\]]+?)\s*\]", line)
        if header:
            section = header.group(1)
        elif section == table and pattern.match(line):
            return number
    return None


def located(path: Path | str, text: str, table: str, key: str) -> str:
    """`file:line` where the key is set, or just the file when it cannot be found (for
    instance a dotted key `engine.max_hops = 2` outside its table)."""
    line = line_of(text, table, key)
    return f"{path}:{line}" if line else str(path)


class TlsOptions(Value):
    """How to speak TLS to a server (client/tls.py reads the files). Paths are PEM files;
    an empty one means: not given."""

    __slots__ = ("ca_cert", "client_cert", "client_key", "server_name")
    ca_cert: str  # the CAs to trust ("": the roots gRPC ships with)
    client_cert: str  # mutual TLS: our certificate chain ...
    client_key: str  # ... and its private key
    server_name: str  # the name to verify the server's certificate for ("": the host)

    def __init__(self, ca_cert: str = "", client_cert: str = "", client_key: str = "",
                 server_name: str = "") -> None:
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key
        self.server_name = server_name


class Connection(Value):
    """Where and how to reach a server; `tls` None is plaintext."""

    __slots__ = ("api_key", "autostart", "server", "space", "tls")
    server: str
    space: str
    api_key: str | None
    autostart: bool
    tls: TlsOptions | None

    def __init__(self, server: str = DEFAULT_SERVER, space: str = DEFAULT_SPACE,
                 api_key: str | None = None, autostart: bool = True,
                 tls: TlsOptions | None = None) -> None:
        self.server = server
        self.space = space
        self.api_key = api_key
        self.autostart = autostart
        self.tls = tls

    @property
    def is_default_target(self) -> bool:
        """Is this the embedded default's address: this machine, at the default port? There
        autostart may start a server (a plaintext one: never for a TLS connection)."""
        if self.tls is not None:
            return False
        if (not is_local(self.server) or self.server.startswith(UNIX_SCHEMES)
                or is_multi_endpoint(self.server)):
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


UNIX_SCHEMES = ("unix:", "unix-abstract:")


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError when the port is not a number."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


def is_local(address: str) -> bool:
    """Is the server at `address` on this machine: a unix socket, `localhost`, a loopback
    address, or 0.0.0.0 / :: (which reach this machine when used as a target)?"""
    import ipaddress

    if "," in address:
        return all(is_local(part) for part in endpoints(address))
    if address.startswith(UNIX_SCHEMES):
        return True
    host = normalize_address(address).rpartition(":")[0].strip("[]").lower()
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


DNS_SCHEME = "dns:///"


def is_multi_endpoint(server: str) -> bool:
    """Several servers behind one --server: a comma-separated list, or a `dns:///` name
    (every address it resolves to). Calls are spread over them (client/connection.py)."""
    return "," in server or server.startswith(DNS_SCHEME)


def endpoints(server: str) -> list[str]:
    """The `HOST:PORT` parts of a --server value (one for a single server)."""
    return [normalize_address(part) for part in server.split(",") if part.strip()]


def normalize_server(server: str) -> str:
    """A --server value as the client uses it: each part of a list normalized, a
    `dns:///` name kept as such (gRPC resolves it to every address), a single address
    normalized."""
    server = server.strip()
    if server.startswith(DNS_SCHEME) and "," not in server:
        return DNS_SCHEME + normalize_address(server)
    if "," in server:
        return ",".join(endpoints(server))
    return normalize_address(server)


TLS_SCHEMES = ("grpcs://", "https://")


def normalize_address(address: str) -> str:
    """`host` -> `host:50051`; strips a grpc://, grpcs://, http:// or https:// scheme (the
    client settings read grpcs:// and https:// as TLS first)."""
    address = address.strip()
    for scheme in ("grpc://", "http://", DNS_SCHEME, *TLS_SCHEMES):
        if address.startswith(scheme):
            address = address[len(scheme) :]
    address = address.rstrip("/")
    if address.startswith("["):  # [::1]:port
        return address if "]:" in address else f"{address}:{DEFAULT_PORT}"
    if ":" not in address:
        return f"{address}:{DEFAULT_PORT}"
    return address
