"""What `engram tune` does: validate both halves, apply the server's (atomic, through the
settings RPC), then write the client's [client] table, and answer the diff.

Order matters for "all or nothing": client values are validated locally first, the
server applies its half all-or-nothing (and persists it), and only then is the client
file written. A dry run asks the server for its diff and writes nothing anywhere.

A profile is applied over the defaults (server and client tunables both): the result
is the same whatever was set before, so switching profiles never leaves a previous
profile's values behind. `--set` changes only the keys it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram_cli.client.settings import (
    CLIENT_SPEC_BY_KEY,
    CLIENT_SPECS,
    DEFAULT_CLIENT_SETTINGS,
    TUNABLE_KEYS,
    ClientSettings,
    read_client_file,
)
from engram_cli.client.settings_rpc import RemoteSetting, RemoteSnapshot
from engram_cli.compat import tomllib
from engram_cli.engine.settings import RETIRED, SPEC_BY_KEY
from engram_cli.errors import SettingsError
from engram_cli.tuning.client_settings import PREFIX, plan_client, write_client_settings
from engram_cli.tuning.profiles import Profile

if TYPE_CHECKING:
    from engram_cli.client.settings_rpc import RemoteSettings

SERVER_PREFIX = "server."


@dataclass(frozen=True)
class Row:
    key: str  # a server key, or "client.<key>"
    before: Any
    after: Any
    restart_required: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class TuneResult:
    profile: str | None
    rows: list[Row]
    dry_run: bool
    server_config: str
    client_config: str

    @property
    def changed(self) -> dict[str, dict[str, Any]]:
        return {r.key: {"before": r.before, "after": r.after} for r in self.rows if r.changed}

    @property
    def restart_required(self) -> list[str]:
        return [r.key for r in self.rows if r.changed and r.restart_required]

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "changed": self.changed,
                "restart_required": self.restart_required}


def parse_value(text: str) -> Any:
    """A value as TOML would read it (1, 0.5, true, "x"); bare words stay text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_assignments(items: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`KEY=VALUE` strings -> (server values, client values).

    `client.KEY` and `server.KEY` say which side; a bare key goes where it is known.
    """
    server: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingsError(f"{item!r} is not KEY=VALUE", "for example: max_hops=2")
        value = parse_value(raw.strip())
        if key.startswith(PREFIX):
            if key[len(PREFIX):] not in CLIENT_SPEC_BY_KEY:
                raise unknown_key(key)
            client[key[len(PREFIX):]] = value
        elif key.startswith(SERVER_PREFIX):
            server[key[len(SERVER_PREFIX):]] = value
        elif key in SPEC_BY_KEY:
            server[key] = value
        elif key in CLIENT_SPEC_BY_KEY:
            client[key] = value
        else:
            raise unknown_key(key)
    return server, client


def unknown_key(key: str) -> SettingsError:
    import difflib

    # Compare bare names (a typo of "batch" is closer to "batch" than to "client.batch").
    qualified = {**{k: k for k in SPEC_BY_KEY}, **{k: PREFIX + k for k in TUNABLE_KEYS}}
    bare = key.split(".", 1)[1] if key.startswith((PREFIX, SERVER_PREFIX)) else key
    close = difflib.get_close_matches(bare, qualified, n=1)
    hint = (RETIRED.get(bare) or (f"did you mean {qualified[close[0]]!r}?" if close else None)
            or "see `engram tune --show` for the keys")
    return SettingsError(f"unknown setting {key!r}", hint)


def tune(
    remote: RemoteSettings,
    *,
    profile: Profile | None = None,
    server_values: Mapping[str, Any] | None = None,
    client_values: Mapping[str, Any] | None = None,
    reset: bool = False,
    dry_run: bool = False,
    client_path: Path | None = None,
) -> TuneResult:
    """Apply a profile (over defaults), explicit values, or a reset; answers the diff."""
    from engram_cli.config import client_config_path

    client_path = client_path or client_config_path()
    server_vals = {**(profile.server if profile else {}), **(server_values or {})}
    client_vals = {**(profile.client if profile else {}), **(client_values or {})}
    from_defaults = reset or profile is not None

    _, client_file = read_client_file(client_path)
    _, client_changes = plan_client(client_vals, reset=from_defaults, path=client_path)
    snapshot = remote.get()
    server_changes = remote.apply(server_vals, reset=from_defaults, dry_run=dry_run)
    if not dry_run:
        try:
            write_client_settings(client_vals, reset=from_defaults, path=client_path)
        except SettingsError as exc:
            # Validated above, so only the disk can fail here; say what did happen.
            raise SettingsError(f"the server's settings were applied, but not the client's: "
                                f"{exc}", exc.hint) from None

    rows = _server_rows(snapshot, server_vals, server_changes, everything=reset and not profile)
    mentioned = set(client_vals) | (set(TUNABLE_KEYS) if reset and not profile else set())
    by_key = {c.key: c for c in client_changes}
    before = DEFAULT_CLIENT_SETTINGS.replace(**client_file).as_dict()
    for spec in CLIENT_SPECS:
        change = by_key.get(spec.key)
        if change is not None:
            rows.append(Row(PREFIX + spec.key, change.before, change.after))
        elif spec.key in mentioned:
            rows.append(Row(PREFIX + spec.key, before[spec.key], before[spec.key]))
    return TuneResult(profile.name if profile else None, rows, dry_run,
                      snapshot.config_path, str(client_path))


def _server_rows(snapshot: RemoteSnapshot, values: Mapping[str, Any], changes: list[Any],
                 everything: bool) -> list[Row]:
    by_key = {c.key: c for c in changes}
    rows = []
    for key, setting in snapshot.settings.items():
        change = by_key.pop(key, None)
        if change is not None:
            rows.append(Row(key, change.before, change.after, change.restart_required))
        elif everything or key in values:
            rows.append(Row(key, setting.value, setting.value, setting.restart_required))
    # Keys the snapshot did not list (a server changed between the two calls) still count.
    rows.extend(Row(c.key, c.before, c.after, c.restart_required) for c in by_key.values())
    return rows


# A row of `--show` has exactly a remote setting's fields, for the server and the client.
ShowRow = RemoteSetting


@dataclass(frozen=True)
class ShowResult:
    server: list[ShowRow]
    client: list[ShowRow]
    server_config: str
    client_config: str

    def to_json(self) -> dict[str, Any]:
        def table(rows: list[ShowRow]) -> dict[str, Any]:
            return {r.key: {"value": r.value, "default": r.default, "source": r.source,
                            "restart_required": r.restart_required,
                            "description": r.description} for r in rows}

        return {"server": {"config_path": self.server_config, "settings": table(self.server)},
                "client": {"config_path": self.client_config, "settings": table(self.client)}}


def show(remote: RemoteSettings, settings: ClientSettings, client_path: Path | None = None
         ) -> ShowResult:
    """The server's settings and the client's (as resolved for this command), each with
    where its value came from."""
    from engram_cli.config import client_config_path

    client_path = client_path or client_config_path()
    snapshot = remote.get()
    server = list(snapshot.settings.values())
    values = settings.as_dict()
    if values["api_key"]:
        values["api_key"] = "<set>"  # a secret has no business in a terminal's scrollback
    client = [ShowRow(s.key, values[s.key], s.default, settings.origins.get(s.key, "default"),
                      False, s.description) for s in CLIENT_SPECS]
    return ShowResult(server, client, snapshot.config_path, str(client_path))
