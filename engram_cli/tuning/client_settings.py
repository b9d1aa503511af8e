"""The client's settings: the [client] table of `<config dir>/config.toml`, typed.

`CLIENT_SPECS` is the single source of truth for the keys, their types, ranges and
defaults; `read_client_settings()` is the typed reader `engram import` and `engram
recall` take their defaults from (precedence: flag > env > this file > the default here);
`write_client_settings()` is how `engram tune` changes the file (merging into what is
there, validated, atomic).

Tunable keys are the ones profiles may set; the connection keys (server, space, api_key,
autostart) are read by `engram_cli.config.resolve_connection` and left to the user.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram_cli.config import DEFAULT_SERVER, client_config_path
from engram_cli.engine.settings import SettingSpec
from engram_cli.errors import SettingsError
from engram_cli.tuning.server_config import Change, located, read_toml, write_toml_atomic

CLIENT_TABLE = "client"
PREFIX = "client."
# One connection sends while another waits for its commit, per core.
DEFAULT_POOL = 2 * (os.cpu_count() or 1)


_BOOL_WORDS = {"1": True, "yes": True, "on": True, "0": False, "no": False, "off": False}


@dataclass(frozen=True)
class ClientSpec(SettingSpec):
    """A client setting; `literals` are words accepted besides the typed range ("auto")."""

    literals: tuple[str, ...] = ()
    tunable: bool = True

    def describe_range(self) -> str:
        base = super().describe_range()
        return base + "".join(f' or "{w}"' for w in self.literals)

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in self.literals:
                return word
            # Environment variables say yes/no/1/0 as often as true/false.
            if self.type is bool and word in _BOOL_WORDS:
                return _BOOL_WORDS[word]
        return super().coerce(value)


CLIENT_SPECS: tuple[ClientSpec, ...] = (
    ClientSpec("batch", int, "auto", "import: memories per batch call (auto: sized from the "
               "server's max_batch and message limit)", 1, 1_000_000, literals=("auto",)),
    ClientSpec("pool", int, DEFAULT_POOL, "import: gRPC connections sending in parallel "
               "(default: 2x cores)", 1, 256),
    ClientSpec("stream", bool, "auto", "import: true sends over StreamingRemember, false "
               "only over the batch RPC, auto the batch RPC when the server has it",
               literals=("auto",)),
    ClientSpec("rate", float, 0.0, "import: records per second at most (0: unlimited)", 0.0,
               1e9),
    ClientSpec("cache_ttl_s", float, 3600.0, "recall cache: seconds an answer stays fresh "
               "(0: no caching)", 0.0, 365 * 86_400.0),
    ClientSpec("cache_min_confidence", float, 0.9, "recall cache: only answers whose memories "
               "are at least this confident are cached", 0.0, 1.0),
    ClientSpec("cache_require_consolidated", bool, True, "recall cache: only cache answers "
               "made of consolidated memories (the ones that no longer change)"),
    ClientSpec("cache_max_mb", float, 64.0, "recall cache: size limit on disk in MB (0: no "
               "cache)", 0.0, 1e6),
    ClientSpec("server", str, DEFAULT_SERVER, "server address (env ENGRAM_SERVER)",
               tunable=False),
    ClientSpec("space", str, "", "memory space (env ENGRAM_SPACE; empty: the server's "
               "default)", tunable=False),
    ClientSpec("api_key", str, "", "API key (env ENGRAM_API_KEY)", tunable=False),
    ClientSpec("autostart", bool, True, "start the embedded server when the default one is "
               "not running (env ENGRAM_NO_AUTOSTART=1 turns it off)", tunable=False),
)

CLIENT_SPEC_BY_KEY: dict[str, ClientSpec] = {s.key: s for s in CLIENT_SPECS}
TUNABLE_KEYS: tuple[str, ...] = tuple(s.key for s in CLIENT_SPECS if s.tunable)
_ENV_OF = {"server": "ENGRAM_SERVER", "space": "ENGRAM_SPACE", "api_key": "ENGRAM_API_KEY",
           "autostart": "ENGRAM_NO_AUTOSTART"}


@dataclass(frozen=True)
class ClientSettings:
    """Typed [client] values, defaults filled in (flags and env are the caller's job)."""

    batch: int | str = "auto"
    pool: int = DEFAULT_POOL
    stream: bool | str = "auto"
    rate: float = 0.0
    cache_ttl_s: float = 3600.0
    cache_min_confidence: float = 0.9
    cache_require_consolidated: bool = True
    cache_max_mb: float = 64.0
    server: str = DEFAULT_SERVER
    space: str = ""
    api_key: str = ""
    autostart: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_CLIENT_SETTINGS = ClientSettings()


def unknown_client_key(key: str, tunable_only: bool = False) -> SettingsError:
    keys = TUNABLE_KEYS if tunable_only else tuple(CLIENT_SPEC_BY_KEY)
    close = difflib.get_close_matches(key, keys, n=1)
    if key in CLIENT_SPEC_BY_KEY and tunable_only:
        return SettingsError(f"client setting {key!r} is a connection setting, not a tuning one",
                             f"set it in {client_config_path()} by hand or with --{key}")
    hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(keys)
    return SettingsError(f"unknown client setting {key!r}", hint)


def validate_client(values: Mapping[str, Any], tunable_only: bool = False) -> dict[str, Any]:
    """Check every [client] key and value; raise on the first bad one, naming it."""
    out = {}
    for key, value in values.items():
        spec = CLIENT_SPEC_BY_KEY.get(key)
        if spec is None or (tunable_only and not spec.tunable):
            raise unknown_client_key(key, tunable_only)
        try:
            out[key] = spec.coerce(value)
        except SettingsError as exc:
            raise SettingsError(f"client setting {key!r}: {value!r} is not valid",
                                exc.hint) from None
    return out


def _read_table(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(whole document, validated [client] table) of the client config file."""
    doc, text = read_toml(path)
    table = doc.get(CLIENT_TABLE, {})
    if not isinstance(table, Mapping):
        raise SettingsError(f"{path}: [client] must be a table", "see `engram tune --show`")
    out = {}
    for key, value in table.items():
        where = f"{located(path, text, CLIENT_TABLE, key)}: [client] {key}"
        spec = CLIENT_SPEC_BY_KEY.get(key)
        if spec is None:
            raise SettingsError(f"{where}: unknown setting", unknown_client_key(key).hint)
        try:
            out[key] = spec.coerce(value)
        except SettingsError as exc:
            raise SettingsError(f"{where}: {value!r} is not valid", exc.hint) from None
    return doc, out


def read_client_settings(path: Path | None = None) -> ClientSettings:
    """The typed [client] settings of the config file, defaults for what it lacks.

    Raises SettingsError (exit 2) naming the file, line and key when a value is wrong.
    """
    _, table = _read_table(path or client_config_path())
    return dataclasses.replace(DEFAULT_CLIENT_SETTINGS, **table)


def resolve_client(key: str, flag: Any = None, env_var: str | None = None,
                   settings: ClientSettings | None = None) -> Any:
    """One typed client value: flag > environment variable > config file > default.

    `settings` saves re-reading the file when a command resolves several keys. A bad
    value names where it came from (the flag, the variable, or the file and line).
    """
    import os

    spec = CLIENT_SPEC_BY_KEY[key]
    for origin, value in ((f"--{key.replace('_', '-')}", flag),
                          (env_var, os.environ.get(env_var) if env_var else None)):
        if value is None or value == "":
            continue
        try:
            return spec.coerce(value)
        except SettingsError as exc:
            raise SettingsError(f"{origin}: {value!r} is not valid", exc.hint) from None
    return getattr(settings or read_client_settings(), key)


def client_sources(path: Path | None = None) -> tuple[ClientSettings, dict[str, str]]:
    """The effective settings and where each came from: env | config | default."""
    _, table = _read_table(path or client_config_path())
    values = dict(table)
    sources = {}
    for spec in CLIENT_SPECS:
        env = _ENV_OF.get(spec.key)
        if env and os.environ.get(env):
            sources[spec.key] = "env"
            raw = os.environ[env]
            values[spec.key] = (raw.strip().lower() not in ("1", "true", "yes", "on")
                                if spec.key == "autostart" else raw)
        else:
            sources[spec.key] = "config" if spec.key in table else "default"
    return dataclasses.replace(DEFAULT_CLIENT_SETTINGS, **values), sources


def plan_client(values: Mapping[str, Any], reset: bool = False, path: Path | None = None
                ) -> tuple[dict[str, Any], list[Change]]:
    """The [client] table after the change, and the diff; validates, writes nothing.

    `reset` drops every tunable key first (the connection keys stay).
    """
    checked = validate_client(values, tunable_only=True)
    _, table = _read_table(path or client_config_path())
    new = {k: v for k, v in table.items() if not (reset and k in TUNABLE_KEYS)}
    new.update(checked)
    before = dataclasses.replace(DEFAULT_CLIENT_SETTINGS, **table).as_dict()
    after = dataclasses.replace(DEFAULT_CLIENT_SETTINGS, **new).as_dict()
    changes = [Change(k, before[k], after[k], False) for k in before if before[k] != after[k]]
    return new, changes


def write_client_settings(values: Mapping[str, Any], reset: bool = False,
                          dry_run: bool = False, path: Path | None = None) -> list[Change]:
    """Merge `values` into the [client] table (atomic write; other tables are kept).

    Values equal to the default are dropped from the file, so that a later change of
    default reaches users who never chose otherwise. Note: TOML comments are not kept.
    """
    path = path or client_config_path()
    table, changes = plan_client(values, reset, path)
    if dry_run or not changes:
        return changes
    doc, _ = read_toml(path)
    defaults = DEFAULT_CLIENT_SETTINGS.as_dict()
    doc[CLIENT_TABLE] = {k: v for k, v in table.items()
                         if not (k in TUNABLE_KEYS and v == defaults[k])}
    try:
        write_toml_atomic(path, doc)
    except OSError as exc:
        raise SettingsError(f"cannot write {path}: {exc.strerror}",
                            "check the config dir's permissions") from exc
    return changes


def _check_defaults() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(ClientSettings)}
    specs = {s.key: s.default for s in CLIENT_SPECS}
    assert fields == specs, "ClientSettings and CLIENT_SPECS disagree"


_check_defaults()
