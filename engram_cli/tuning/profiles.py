"""Named tuning profiles: TOML files with a description, [server] and [client] settings.

Shipped profiles live in the repository's `profiles/` (in the wheel: `engram_cli/profiles`);
user profiles in `<config dir>/profiles/*.toml` override shipped ones of the same name.
A profile is validated when loaded: every error names the file, the line and the key.

    description = "one line"
    [server]     # engine settings (see `engram tune --show`), applied through the RPC
    [client]     # import/recall defaults, written to <config dir>/config.toml
    [upstream]   # optional: warm_capacity / cold_capacity, only for --write-config
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engram_cli.client.settings import CLIENT_SPEC_BY_KEY, check, unknown_client_key
from engram_cli.config import located, read_toml
from engram_cli.errors import SettingsError, UsageError
from engram_cli.tuning.server_config import validate_table

PROFILE_DIR = "profiles"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # fullmatch: no trailing newline
TOP_LEVEL = ("description", "server", "client", "upstream")

# Upstream Engram's own ranges for its tier capacities (its configuration reference).
UPSTREAM_RANGES: dict[str, tuple[int, int]] = {
    "hot_capacity": (1_000, 10_000_000),
    "warm_capacity": (10_000, 100_000_000),
    "cold_capacity": (100_000, 1_000_000_000),
}
UPSTREAM_DEFAULTS = {"warm_capacity": 1_000_000, "cold_capacity": 10_000_000}


class UnknownProfile(UsageError):
    """No shipped or user profile has that name."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    path: Path
    origin: str  # shipped | user
    server: dict[str, Any] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, Any] = field(default_factory=dict)


def shipped_dir() -> Path:
    """`engram_cli/profiles` inside an installed wheel; the checkout's `profiles/` otherwise
    (an editable install serves the source tree, where force-included dirs do not exist)."""
    package = Path(__file__).resolve().parent.parent
    inside = package / PROFILE_DIR
    if inside.is_dir() and any(inside.glob("*.toml")):
        return inside
    return package.parent / PROFILE_DIR


def user_dir() -> Path:
    from engram_cli.config import config_dir

    return config_dir() / PROFILE_DIR


def available() -> dict[str, tuple[Path, str]]:
    """name -> (path, origin) of every profile, user ones overriding shipped ones."""
    found: dict[str, tuple[Path, str]] = {}
    for directory, origin in ((shipped_dir(), "shipped"), (user_dir(), "user")):
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                if NAME_RE.fullmatch(path.stem):
                    found[path.stem] = (path, origin)
    return dict(sorted(found.items()))


def load(name: str) -> Profile:
    """The named profile, validated; UnknownProfile (exit 2) lists the known names."""
    profiles = available()
    if name not in profiles:
        close = difflib.get_close_matches(name, profiles, n=1)
        known = ", ".join(profiles) or "none found"
        hint = (f"did you mean {close[0]!r}? " if close else "") + f"profiles: {known}"
        raise UnknownProfile(f"unknown profile {name!r}", hint)
    path, origin = profiles[name]
    return load_file(path, origin)


def load_file(path: Path, origin: str = "user") -> Profile:
    doc, text = read_toml(path)
    for key in doc:
        if key not in TOP_LEVEL:
            close = difflib.get_close_matches(key, TOP_LEVEL, n=1)
            raise SettingsError(
                f"{path}: unknown entry {key!r}",
                f"did you mean {close[0]!r}?" if close else "a profile has description, "
                "[server], [client] and [upstream]")
    description = doc.get("description", "")
    if not isinstance(description, str) or not description.strip():
        raise SettingsError(f"{path}: missing description", 'add description = "..." on top')
    server = validate_table(doc.get("server", {}), path, text, "server")
    client = _validate_client_table(doc.get("client", {}), path, text)
    upstream = _validate_upstream(doc.get("upstream", {}), path, text)
    return Profile(path.stem, description.strip(), path, origin, server, client, upstream)


def _validate_client_table(table: Any, path: Path, text: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise SettingsError(f"{path}: [client] must be a table")
    out = {}
    for key, value in table.items():
        where = f"{located(path, text, 'client', key)}: [client] {key}"
        spec = CLIENT_SPEC_BY_KEY.get(key)
        if spec is None or not spec.tunable:
            err = unknown_client_key(key, tunable_only=True)
            raise SettingsError(f"{where}: {err}", err.hint)
        out[key] = check(spec, value, where)
    return out


def _validate_upstream(table: Any, path: Path, text: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise SettingsError(f"{path}: [upstream] must be a table")
    out = {}
    for key, value in table.items():
        where = f"{located(path, text, 'upstream', key)}: [upstream] {key}"
        if key not in UPSTREAM_DEFAULTS:
            raise SettingsError(f"{where}: unknown setting",
                                "known: " + ", ".join(UPSTREAM_DEFAULTS))
        lo, hi = UPSTREAM_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise SettingsError(f"{where}: {value!r} is not valid",
                                f"expected an integer from {lo:,} to {hi:,}")
        out[key] = value
    return out
