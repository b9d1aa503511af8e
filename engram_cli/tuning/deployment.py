"""A profile as an Engram deployment's TOML config file (`engram tune --write-config`).

For servers without our settings RPC, such as an upstream Engram deployment: upstream
reads [persistence] (data_root and the hot/warm/cold tier capacities); [engine] carries
our engine keys, which upstream ignores and `engram serve` reads when the file is its
`<data dir>/engram.toml`. Other tables already in the file are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engram_cli.config import read_toml
from engram_cli.engine.settings import DEFAULT_SETTINGS
from engram_cli.errors import SettingsError
from engram_cli.tuning.profiles import UPSTREAM_DEFAULTS, UPSTREAM_RANGES, Profile
from engram_cli.tuning.server_config import ENGINE_TABLE, PERSISTENCE_TABLE, write_toml_atomic

UPSTREAM_DATA_ROOT = "~/.local/share/engram"


def deployment_document(profile: Profile, existing: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
    """The config document for `profile`, merged over an existing one."""
    doc = dict(existing or {})
    persistence = doc.get(PERSISTENCE_TABLE)
    persistence = dict(persistence) if isinstance(persistence, dict) else {}
    persistence.setdefault("data_root", UPSTREAM_DATA_ROOT)
    hot = profile.server.get("hot_capacity", DEFAULT_SETTINGS.hot_capacity)
    capacities = {"hot_capacity": hot, **UPSTREAM_DEFAULTS, **profile.upstream}
    for key, value in capacities.items():
        lo, hi = UPSTREAM_RANGES[key]
        if not lo <= value <= hi:
            raise SettingsError(
                f"profile {profile.name!r}: {key} = {value:,} is outside upstream Engram's "
                f"range", f"upstream takes {lo:,} to {hi:,}; change {profile.path}")
        persistence[key] = value
    doc[PERSISTENCE_TABLE] = persistence
    doc[ENGINE_TABLE] = dict(profile.server)
    return doc


def _header(profile: Profile) -> str:
    return (f"# Engram server config from engram-cli profile {profile.name!r}: "
            f"{profile.description}\n"
            "# Upstream Engram reads [persistence]; [engine] is engram-cli's engine "
            "(upstream ignores it).\n")


def write_deployment_config(profile: Profile, path: Path, dry_run: bool = False
                            ) -> tuple[dict[str, Any], str]:
    """Write (or update) `path`; answers the document and the file's text. A dry run
    writes nothing."""
    import tomli_w

    existing, _ = read_toml(path)
    doc = deployment_document(profile, existing)
    text = _header(profile) + tomli_w.dumps(doc)
    if dry_run:
        return doc, text
    try:
        write_toml_atomic(path, doc, header=_header(profile))
    except OSError as exc:
        raise SettingsError(f"cannot write {path}: {exc.strerror}",
                            "pick a writable path") from exc
    return doc, text
