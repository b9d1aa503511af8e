"""The client half of `engram tune`: changes to the [client] table of
`<config dir>/config.toml`, validated with the client's own specs
(engram_cli/client/settings.py), diffed, and merged into the file atomically.

Only the tunable keys (the ones profiles may set) are changed here; the connection keys
(server, space, api_key, autostart) are left to the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engram_cli.client.settings import (
    CLIENT_SPEC_BY_KEY,
    CLIENT_TABLE,
    DEFAULT_CLIENT_SETTINGS,
    TUNABLE_KEYS,
    check,
    read_client_file,
    unknown_client_key,
)
from engram_cli.config import client_config_path
from engram_cli.errors import SettingsError
from engram_cli.tuning.server_config import Change, write_toml_atomic

PREFIX = "client."


def validate_client(values: Mapping[str, Any], tunable_only: bool = False) -> dict[str, Any]:
    """Check every [client] key and value; raise on the first bad one, naming it."""
    out = {}
    for key, value in values.items():
        spec = CLIENT_SPEC_BY_KEY.get(key)
        if spec is None or (tunable_only and not spec.tunable):
            raise unknown_client_key(key, tunable_only)
        out[key] = check(spec, value, f"client setting {key!r}")
    return out


def plan_client(values: Mapping[str, Any], reset: bool = False, path: Path | None = None
                ) -> tuple[dict[str, Any], list[Change]]:
    """The [client] table after the change, and the diff; validates, writes nothing.

    `reset` drops every tunable key first (the connection keys stay).
    """
    checked = validate_client(values, tunable_only=True)
    _, table = read_client_file(path)
    new = {k: v for k, v in table.items() if not (reset and k in TUNABLE_KEYS)}
    new.update(checked)
    before = DEFAULT_CLIENT_SETTINGS.replace(**table).as_dict()
    after = DEFAULT_CLIENT_SETTINGS.replace(**new).as_dict()
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
    doc, _ = read_client_file(path)
    defaults = DEFAULT_CLIENT_SETTINGS.as_dict()
    doc[CLIENT_TABLE] = {k: v for k, v in table.items()
                         if not (k in TUNABLE_KEYS and v == defaults[k])}
    try:
        write_toml_atomic(path, doc)
    except OSError as exc:
        raise SettingsError(f"cannot write {path}: {exc.strerror}",
                            "check the config dir's permissions") from exc
    return changes
