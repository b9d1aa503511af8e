"""The server's settings: one typed, validated object, with documented defaults and ranges.

`SPECS` is the single source of truth: the engine reads `Settings`, the config file and
the settings RPC speak keys and JSON values, and `engram tune` shows `description`.
Resolution on the server: default < config file (`<data dir>/engram.toml`, section
[engine]) < live changes (settings RPC; persisted back to the config file).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engram_cli.errors import SettingsError


def _number(x: float) -> str:
    """1048576 -> "1,048,576" (":g" would say 1.04858e+06); 0.5 stays 0.5."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class SettingSpec:
    key: str
    type: type
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    restart_required: bool = False

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type is bool:
            return "true or false"
        if self.min is not None and self.max is not None:
            return f"{_number(self.min)} to {_number(self.max)}"
        if self.min is not None:
            return f"at least {_number(self.min)}"
        return f"a {self.type.__name__}"

    def coerce(self, value: Any) -> Any:
        """Validate one value; raise SettingsError naming the key and the range."""
        t = self.type
        ok = True
        if t is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            ok = isinstance(value, bool)
        elif t is int:
            if isinstance(value, str):
                try:
                    value = int(value.replace("_", ""))
                except ValueError:
                    ok = False
            elif isinstance(value, float) and value.is_integer():
                value = int(value)
            ok = ok and isinstance(value, int) and not isinstance(value, bool)
        elif t is float:
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    ok = False
            ok = ok and isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                value = float(value)
        elif t is str:
            ok = isinstance(value, str)
        if not ok:
            raise SettingsError(
                f"setting {self.key!r}: {value!r} is not valid",
                f"expected {self.describe_range()}",
            )
        if self.choices and value not in self.choices:
            raise SettingsError(
                f"setting {self.key!r}: {value!r} is not allowed",
                f"expected {self.describe_range()}",
            )
        if t in (int, float) and (
            (self.min is not None and value < self.min)
            or (self.max is not None and value > self.max)
        ):
            raise SettingsError(
                f"setting {self.key!r}: {value!r} is out of range",
                f"expected {self.describe_range()}",
            )
        return value


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("max_hops", int, 3, "spreading activation: hops followed from the seeds",
                0, 10),
    SettingSpec("threshold", float, 0.1,
                "spreading activation: activation below this stops spreading and is not "
                "returned", 0.0, 1.0),
    SettingSpec("decay", float, 0.85, "spreading activation: fraction of activation kept "
                "per hop (times the edge strength)", 0.0, 1.0),
    SettingSpec("hot_capacity", int, 100_000, "memories kept in the RAM hot tier", 0,
                50_000_000),
    SettingSpec("warm_path", str, "", "directory of the on-disk warm tier (empty: the data "
                "dir); put it on a fast disk", restart_required=True),
    SettingSpec("recall_budget_ms", int, 50, "time budget of one recall; when it runs out "
                "the best results found so far are returned", 1, 60_000),
    SettingSpec("queue_capacity", int, 1024, "write requests that may wait for the writer; "
                "past it writes get RESOURCE_EXHAUSTED with retry-after-ms", 1, 1_000_000),
    SettingSpec("max_batch", int, 20_000, "largest number of memories one batch call may "
                "carry", 1, 1_000_000),
    SettingSpec("durability", str, "fsync", "fsync: every commit is fsynced before the ack "
                "(survives power loss); group: commits reach the OS before the ack and are "
                "fsynced in groups (survives kill -9, not power loss)",
                choices=("fsync", "group")),
    SettingSpec("group_fsync_ms", int, 1000, "durability group: milliseconds between "
                "fsyncs (WAL checkpoints); the most a power loss can take", 10, 60_000),
    SettingSpec("consolidation_interval_s", float, 60.0, "seconds between background "
                "consolidation passes (0: off)", 0.0, 86_400.0),
    SettingSpec("consolidation_min_age_s", float, 300.0, "a memory must be this old before "
                "a pass consolidates it", 0.0, 365 * 86_400.0),
    SettingSpec("forgetting_exponent", float, 0.1, "forgetting curve: power-law exponent "
                "(a memory's own decay_rate overrides it when > 0)", 0.0, 10.0),
    SettingSpec("forgetting_floor", float, 0.2, "forgetting curve: fraction of the original "
                "confidence that never decays", 0.0, 1.0),
    SettingSpec("forgetting_scale_s", float, 86_400.0, "forgetting curve: time unit in "
                "seconds", 1.0, 365 * 86_400.0),
    SettingSpec("max_message_bytes", int, 64 * 1024 * 1024, "largest gRPC message the "
                "server accepts", 1024 * 1024, 1024 * 1024 * 1024, restart_required=True),
)

SPEC_BY_KEY: dict[str, SettingSpec] = {s.key: s for s in SPECS}


@dataclass(frozen=True)
class Settings:
    max_hops: int = 3
    threshold: float = 0.1
    decay: float = 0.85
    hot_capacity: int = 100_000
    warm_path: str = ""
    recall_budget_ms: int = 50
    queue_capacity: int = 1024
    max_batch: int = 20_000
    durability: str = "fsync"
    group_fsync_ms: int = 1000
    consolidation_interval_s: float = 60.0
    consolidation_min_age_s: float = 300.0
    forgetting_exponent: float = 0.1
    forgetting_floor: float = 0.2
    forgetting_scale_s: float = 86_400.0
    max_message_bytes: int = 64 * 1024 * 1024

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, values: Mapping[str, Any]) -> Settings:
        """A copy with `values` validated and applied, all or nothing."""
        return dataclasses.replace(self, **validate(values))


DEFAULT_SETTINGS = Settings()


def unknown_key_error(key: str) -> SettingsError:
    close = difflib.get_close_matches(key, SPEC_BY_KEY, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "see `engram tune --show` for the keys"
    return SettingsError(f"unknown setting {key!r}", hint)


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key and value; raise on the first bad one, naming it."""
    out = {}
    for key, value in values.items():
        spec = SPEC_BY_KEY.get(key)
        if spec is None:
            raise unknown_key_error(key)
        out[key] = spec.coerce(value)
    return out


def _check_defaults() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    specs = {s.key: s.default for s in SPECS}
    assert fields == specs, "Settings and SPECS disagree"


_check_defaults()
