"""The server's config file (`<data dir>/engram.toml`): load, apply all-or-nothing, persist.

Layout, compatible with Engram deployments' TOML: our engine keys live in [engine];
[persistence] carries `data_root` and `hot_capacity` for upstream readers (and a
hand-written `[persistence] hot_capacity` is honoured when [engine] does not set it).
Other tables in the file are kept as they are when we rewrite it.

Each setting has a source: `default` (not in the file), `config` (read from the file at
start), `live` (changed through the settings RPC since start; already persisted), or
`pending` (a restart-required setting whose new value waits for the next start).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from engram_cli.config import located, read_toml
from engram_cli.engine.settings import (
    DEFAULT_SETTINGS,
    SPEC_BY_KEY,
    SPECS,
    Settings,
    unknown_key_error,
)
from engram_cli.errors import SettingsError
from engram_cli.files import private_dir, write_atomic

CONFIG_NAME = "engram.toml"
ENGINE_TABLE = "engine"
PERSISTENCE_TABLE = "persistence"


@dataclass(frozen=True)
class Change:
    key: str
    before: Any
    after: Any
    restart_required: bool


def validate_table(values: Any, path: Path, text: str, table: str) -> dict[str, Any]:
    """Validate one table of server settings read from `path`; errors name file, line, key."""
    if not isinstance(values, Mapping):
        raise SettingsError(f"{path}: [{table}] must be a table of settings",
                            "see `engram tune --show` for the keys")
    out: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{located(path, text, table, key)}: [{table}] {key}"
        spec = SPEC_BY_KEY.get(key)
        if spec is None:
            err = unknown_key_error(key)
            raise SettingsError(f"{where}: unknown setting", err.hint)
        try:
            out[key] = spec.coerce(value)
            check_paths(out)
        except SettingsError as exc:
            raise SettingsError(f"{where}: {value!r} is not valid", exc.hint) from None
    return out


def check_paths(values: Mapping[str, Any]) -> None:
    """Path settings must be absolute: the server resolves them at its next start, from a
    working directory nobody chose."""
    for key in ("warm_path",):
        value = values.get(key)
        if value and not Path(str(value)).expanduser().is_absolute():
            raise SettingsError(f"setting {key!r}: {value!r} is not an absolute path",
                                "give a full path, e.g. /mnt/nvme/engram")


def write_toml_atomic(path: Path, doc: Mapping[str, Any], header: str = "") -> None:
    """Write-then-rename, fsynced, so that a crash leaves the old file or the new one;
    0600 in a directory made 0700 when new (the client's file holds its API key), never
    through a symlink."""
    private_dir(path.parent, own=False)
    body = header.encode() + tomli_w.dumps(dict(doc)).encode()
    # One temporary file per thread: settings RPCs may write the server's file at once.
    write_atomic(path, body,
                 tmp=path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"))


def read_server_values(path: Path) -> dict[str, Any]:
    """The validated [engine] values of a server config file ({} when there is none)."""
    doc, text = read_toml(path)
    values = validate_table(doc.get(ENGINE_TABLE, {}), path, text, ENGINE_TABLE)
    persistence = doc.get(PERSISTENCE_TABLE, {})
    # We echo hot_capacity into [persistence] for upstream readers; only a value that
    # differs from the default there is a deliberate setting.
    if "hot_capacity" not in values and isinstance(persistence, Mapping) \
            and "hot_capacity" in persistence:
        echoed = validate_table({"hot_capacity": persistence["hot_capacity"]}, path, text,
                                PERSISTENCE_TABLE)
        if echoed["hot_capacity"] != DEFAULT_SETTINGS.hot_capacity:
            values.update(echoed)
    return values


class ServerConfig:
    """Settings as the running server sees them, with where each value came from.

    `settings` is what the config file says (what a restart would run with); `running`
    is what the engine runs with now: the same, except that restart-required settings
    keep the values the server started with.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Re-entrant: a change listener may read the config while an apply holds the lock.
        self._lock = threading.RLock()
        self.file_values = read_server_values(path)
        self.live_keys: set[str] = set()
        self.settings = DEFAULT_SETTINGS.replace(self.file_values)
        self.started = self.settings
        self.running = self.settings

    def source(self, key: str) -> str:
        with self._lock:
            spec = SPEC_BY_KEY[key]
            if spec.restart_required and \
                    getattr(self.settings, key) != getattr(self.started, key):
                return "pending"
            if key not in self.file_values:
                return "default"
            return "live" if key in self.live_keys else "config"

    def snapshot(self) -> tuple[Settings, dict[str, str]]:
        """The configured settings and each one's source, read together."""
        with self._lock:
            return self.settings, {s.key: self.source(s.key) for s in SPECS}

    def plan(self, values: Mapping[str, Any], reset: bool = False
             ) -> tuple[Settings, list[Change]]:
        """Validate everything first; answers the new settings and the diff."""
        with self._lock:
            base = DEFAULT_SETTINGS if reset else self.settings
            new = base.replace(values)
            check_paths(values)
            before, after = self.settings.as_dict(), new.as_dict()
            # A restart is needed only for a value the running server does not have yet
            # (setting a pending value back to the running one needs none).
            changes = [Change(k, before[k], after[k], SPEC_BY_KEY[k].restart_required
                              and after[k] != getattr(self.started, k))
                       for k in before if after[k] != before[k]]
            return new, changes

    def _running_for(self, configured: Settings) -> Settings:
        frozen = {s.key: getattr(self.started, s.key) for s in SPECS if s.restart_required}
        return configured.replace(frozen)

    def apply(
        self,
        values: Mapping[str, Any],
        reset: bool = False,
        dry_run: bool = False,
        on_change: Callable[[Settings], None] | None = None,
    ) -> tuple[Settings, list[Change]]:
        """Validate, persist, then hand the running settings to `on_change`; all or
        nothing: if persisting or `on_change` fails, the file and the state are as before.
        """
        with self._lock:
            new, changes = self.plan(values, reset)
            if dry_run or not changes:
                return new, changes
            file_values = {}
            defaults = DEFAULT_SETTINGS.as_dict()
            for key, value in new.as_dict().items():
                if value != defaults[key]:
                    file_values[key] = value
            old_bytes = self._read_bytes()
            self._write(file_values)
            running = self._running_for(new)
            if on_change is not None and running != self.running:
                try:
                    on_change(running)
                except BaseException:
                    self._restore(old_bytes)
                    with contextlib.suppress(Exception):
                        on_change(self.running)
                    raise
            self.file_values = file_values
            # Live: set through the RPC during this run (and still set in the file).
            self.live_keys = (self.live_keys | {c.key for c in changes}) & set(file_values)
            self.settings = new
            self.running = running
            return new, changes

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _restore(self, old: bytes | None) -> None:
        if old is None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        write_atomic(self.path, old, tmp=self.path.with_name(
            f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.restore.tmp"))

    def _write(self, engine: dict[str, Any]) -> None:
        try:
            doc, _ = read_toml(self.path)
        except SettingsError as exc:
            raise SettingsError(f"cannot update the server config: {exc}", exc.hint) from None
        doc[ENGINE_TABLE] = engine
        persistence = doc.get(PERSISTENCE_TABLE)
        if not isinstance(persistence, dict):
            persistence = doc[PERSISTENCE_TABLE] = {}
        persistence["data_root"] = str(self.path.parent)
        persistence["hot_capacity"] = engine.get("hot_capacity", DEFAULT_SETTINGS.hot_capacity)
        try:
            write_toml_atomic(self.path, doc)
        except OSError as exc:
            raise SettingsError(f"cannot write the server config {self.path}: {exc.strerror}",
                                "check the data dir's permissions and free space") from exc
