"""A typed, ranged setting: its key, type, default, range and help, and the one check of a
value against them. The engine's settings and the client's are both made of these; this
module stays small because a cached `engram recall` imports it.
"""

from __future__ import annotations

import math

from engram_cli.errors import SettingsError
from engram_cli.values import Value

# typing costs a cached recall several ms at import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    from typing import Any


def _number(x: float) -> str:
    """1048576 -> "1,048,576" (":g" would say 1.04858e+06); 0.5 stays 0.5."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


class SettingSpec(Value):
    """One setting (a plain Value, not a dataclass: see values.py)."""

    __slots__ = (
        "choices",
        "default",
        "description",
        "key",
        "max",
        "min",
        "restart_required",
        "type",
    )
    key: str
    type: type
    default: Any
    description: str
    min: float | None
    max: float | None
    choices: tuple[str, ...] | None
    restart_required: bool

    def __init__(self, key: str, type: builtins.type, default: Any, description: str,
                 min: float | None = None, max: float | None = None,
                 choices: tuple[str, ...] | None = None, restart_required: bool = False
                 ) -> None:
        self.key = key
        self.type = type
        self.default = default
        self.description = description
        self.min = min
        self.max = max
        self.choices = choices
        self.restart_required = restart_required

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
                # NaN passes every range check, and JSON and TOML can both spell it (and
                # infinity): neither is a setting.
                ok = math.isfinite(value)
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
