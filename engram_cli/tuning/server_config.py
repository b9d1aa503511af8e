"""The server's config file (`<data dir>/engram.toml`): load, apply all-or-nothing, persist.

Layout, compatible with Engram deployments' TOML: our engine keys live in [engine];
[persistence] carries `data_root` and `hot_capacity` for upstream readers.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from engram_cli.errors import SettingsError
from engram_cli.tuning.settings import DEFAULT_SETTINGS, SPEC_BY_KEY, Settings, validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "engram.toml"


@dataclass(frozen=True)
class Change:
    key: str
    before: Any
    after: Any
    restart_required: bool


class ServerConfig:
    """Settings as the running server sees them, with where each value came from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.file_values = self._read()
        self.live_keys: set[str] = set()
        self.settings = DEFAULT_SETTINGS.replace(self.file_values)

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read server config {self.path}: {exc}",
                                "fix the file or move it away") from exc
        engine = data.get("engine", {})
        try:
            return validate(engine)
        except SettingsError as exc:
            raise SettingsError(f"{self.path}: {exc}", exc.hint) from exc

    def source(self, key: str) -> str:
        if key in self.live_keys:
            return "live"
        if key in self.file_values:
            return "config"
        return "default"

    def plan(self, values: dict[str, Any], reset: bool = False
             ) -> tuple[Settings, list[Change]]:
        """Validate everything first; answers the new settings and the diff."""
        checked = validate(values)
        base = DEFAULT_SETTINGS if reset else self.settings
        new = base.replace(checked)
        changes = [
            Change(k, v, new.as_dict()[k], SPEC_BY_KEY[k].restart_required)
            for k, v in self.settings.as_dict().items() if new.as_dict()[k] != v
        ]
        return new, changes

    def apply(self, values: dict[str, Any], reset: bool = False, dry_run: bool = False
              ) -> tuple[Settings, list[Change]]:
        with self._lock:
            new, changes = self.plan(values, reset)
            if dry_run:
                return new, changes
            file_values = {} if reset else dict(self.file_values)
            defaults = DEFAULT_SETTINGS.as_dict()
            for key, value in new.as_dict().items():
                if value != defaults[key]:
                    file_values[key] = value
                else:
                    file_values.pop(key, None)
            self._write(file_values)
            self.file_values = file_values
            self.live_keys = (set() if reset else self.live_keys) | {c.key for c in changes}
            self.settings = new
            return new, changes

    def _write(self, engine: dict[str, Any]) -> None:
        try:
            with open(self.path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            doc = {}
        doc["engine"] = engine
        persistence = doc.setdefault("persistence", {})
        persistence["data_root"] = str(self.path.parent)
        persistence["hot_capacity"] = engine.get("hot_capacity", DEFAULT_SETTINGS.hot_capacity)
        tmp = self.path.with_suffix(".toml.tmp")
        with open(tmp, "wb") as f:
            tomli_w.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
