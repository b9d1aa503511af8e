"""The client's settings: one typed, frozen value, resolved once per command.

Every setting of the client (the connection, `import`'s sender, `recall`'s cache) is a
`ClientSpec` in CLIENT_SPECS: its key in the [client] table of `<config dir>/config.toml`,
its environment variable, its flag, its type, range and default. `resolve_client_settings`
is the one place that reads them, in one order, highest first:

    command-line flag > environment variable > config file [client] > default

with one set of rules. A value of the wrong type or out of range, or an unknown key in the
file, is a SettingsError (exit 2) that names where the value came from (the flag, the
variable, or the file, line and key) and what is valid. The file is checked whole, whatever
the command and its flags, so every command accepts or rejects a config file alike.

The bulk sender's options (`SendOptions.from_settings`) and the recall cache's policy
(`CachePolicy.from_settings`) are built from the result; `engram tune` writes the file
through the same specs (tuning/client_settings.py). No grpc here: the cache-hit path of
`engram recall` resolves settings too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from engram_cli.config import (
    DEFAULT_SERVER,
    DEFAULT_SPACE,
    DNS_SCHEME,
    ENV_API_KEY,
    ENV_NO_AUTOSTART,
    ENV_SERVER,
    ENV_SPACE,
    TLS_SCHEMES,
    UNIX_SCHEMES,
    Connection,
    TlsOptions,
    client_config_file,
    default_server,
    located,
    normalize_server,
    read_toml,
)
from engram_cli.contract import key_error
from engram_cli.engine.spec import SettingSpec
from engram_cli.errors import SettingsError
from engram_cli.values import Value

# typing costs a cached recall several ms at import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

CLIENT_TABLE = "client"
AUTO = "auto"  # batch and stream: decided from what the server says

DEFAULT_BATCH = AUTO
# One connection sends while another waits for its commit, per core.
DEFAULT_POOL = 2 * (os.cpu_count() or 1)
DEFAULT_STREAM = AUTO
DEFAULT_RATE = 0.0  # records per second; 0: no limit
DEFAULT_RETRY_BUDGET_S = 60.0
DEFAULT_CACHE_TTL_S = 3600.0
DEFAULT_CACHE_MIN_CONFIDENCE = 0.9
DEFAULT_CACHE_REQUIRE_CONSOLIDATED = True
DEFAULT_CACHE_MAX_MB = 64.0

# Where a resolved value came from (ClientSettings.origins; `engram tune --show`).
FLAG, ENV, CONFIG, DEFAULT = "flag", "env", "config", "default"

# Environment variables say yes/no/1/0/on/off as often as true/false.
_BOOL_WORDS = {"1": True, "yes": True, "on": True, "0": False, "no": False, "off": False}


class ClientSpec(SettingSpec):
    """A client setting: a typed range (SettingSpec's rules) plus where else it is set."""

    __slots__ = ("env", "env_negates", "flag", "literals", "tunable")
    env: str  # its environment variable
    flag: str  # its command-line flag, as error messages name it
    literals: tuple[str, ...]  # words accepted besides the typed range ("auto")
    tunable: bool  # profiles and `engram tune --set` may change it
    env_negates: bool  # ENGRAM_NO_AUTOSTART=1 means autostart = false

    def __init__(self, key: str, type: type, default: Any, description: str,
                 min: float | None = None, max: float | None = None,
                 choices: tuple[str, ...] | None = None, restart_required: bool = False, *,
                 env: str = "", flag: str = "", literals: tuple[str, ...] = (),
                 tunable: bool = True, env_negates: bool = False) -> None:
        super().__init__(key, type, default, description, min, max, choices,
                         restart_required)
        self.env = env
        self.flag = flag
        self.literals = literals
        self.tunable = tunable
        self.env_negates = env_negates

    def describe_range(self) -> str:
        if self.type is str:
            return "a string"
        return super().describe_range() + "".join(f' or "{w}"' for w in self.literals)

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in self.literals:
                return word
            if self.type is bool and word in _BOOL_WORDS:
                return _BOOL_WORDS[word]
            if self.type is not str:
                value = value.strip()
        return super().coerce(value)


CLIENT_SPECS: tuple[ClientSpec, ...] = (
    ClientSpec("batch", int, DEFAULT_BATCH, "import: memories per batch call (auto: sized "
               "from the server's max_batch and message limit)", 1, 1_000_000,
               env="ENGRAM_BATCH", flag="--batch", literals=(AUTO,)),
    ClientSpec("pool", int, DEFAULT_POOL, "import: gRPC connections sending in parallel "
               "(default: 2x cores)", 1, 256, env="ENGRAM_POOL", flag="--pool"),
    ClientSpec("stream", bool, DEFAULT_STREAM, "import: true sends over StreamingRemember, "
               "false only over the batch RPC, auto the batch RPC when the server has it",
               env="ENGRAM_STREAM", flag="--stream", literals=(AUTO,)),
    ClientSpec("rate", float, DEFAULT_RATE, "import: records per second at most (0: "
               "unlimited)", 0.0, 1e9, env="ENGRAM_RATE", flag="--rate"),
    ClientSpec("retry_budget_s", float, DEFAULT_RETRY_BUDGET_S, "import: seconds a batch "
               "may keep failing before the import gives up", 0.0, 7 * 86_400.0,
               env="ENGRAM_RETRY_BUDGET"),
    ClientSpec("cache_ttl_s", float, DEFAULT_CACHE_TTL_S, "recall cache: seconds an answer "
               "stays fresh (0: no caching)", 0.0, 365 * 86_400.0, env="ENGRAM_CACHE_TTL_S"),
    ClientSpec("cache_min_confidence", float, DEFAULT_CACHE_MIN_CONFIDENCE, "recall cache: "
               "only answers whose memories are at least this confident are cached", 0.0, 1.0,
               env="ENGRAM_CACHE_MIN_CONFIDENCE"),
    ClientSpec("cache_require_consolidated", bool, DEFAULT_CACHE_REQUIRE_CONSOLIDATED,
               "recall cache: only cache answers made of consolidated memories (the ones "
               "that no longer change)", env="ENGRAM_CACHE_REQUIRE_CONSOLIDATED"),
    ClientSpec("cache_max_mb", float, DEFAULT_CACHE_MAX_MB, "recall cache: size limit on "
               "disk in MB (0: no cache)", 0.0, 1e6, env="ENGRAM_CACHE_MAX_MB"),
    ClientSpec("server", str, DEFAULT_SERVER, "server address", env=ENV_SERVER,
               flag="--server", tunable=False),
    ClientSpec("space", str, DEFAULT_SPACE, "memory space (empty: the server's default)",
               env=ENV_SPACE, flag="--space", tunable=False),
    ClientSpec("api_key", str, "", "API key", env=ENV_API_KEY, flag="--api-key",
               tunable=False),
    ClientSpec("autostart", bool, True, "start the embedded server when the default one is "
               f"not running ({ENV_NO_AUTOSTART}=1 turns it off)", env=ENV_NO_AUTOSTART,
               flag="--no-autostart", tunable=False, env_negates=True),
    ClientSpec("tls", bool, False, "speak TLS to the server (also: a grpcs:// address, or "
               "any certificate setting below)", env="ENGRAM_TLS", flag="--tls",
               tunable=False),
    ClientSpec("ca_cert", str, "", "TLS: PEM file of the CA(s) that sign the server's "
               "certificate (empty: the usual public roots)", env="ENGRAM_CA_CERT",
               flag="--ca-cert", tunable=False),
    ClientSpec("client_cert", str, "", "mutual TLS: PEM file of this client's certificate",
               env="ENGRAM_CLIENT_CERT", flag="--client-cert", tunable=False),
    ClientSpec("client_key", str, "", "mutual TLS: PEM file of the client certificate's "
               "private key", env="ENGRAM_CLIENT_KEY", flag="--client-key", tunable=False),
    ClientSpec("tls_server_name", str, "", "TLS: the name the server's certificate must "
               "carry (empty: the host of the address)", env="ENGRAM_TLS_SERVER_NAME",
               flag="--tls-server-name", tunable=False),
)
TLS_FILE_KEYS = ("ca_cert", "client_cert", "client_key")

CLIENT_SPEC_BY_KEY: dict[str, ClientSpec] = {s.key: s for s in CLIENT_SPECS}
TUNABLE_KEYS: tuple[str, ...] = tuple(s.key for s in CLIENT_SPECS if s.tunable)


class ClientSettings(Value):
    """Every client setting, typed and checked; `origins` says where each came from
    (flag, env, config or default) and takes no part in comparisons."""

    __slots__ = (
        "api_key",
        "autostart",
        "batch",
        "ca_cert",
        "cache_max_mb",
        "cache_min_confidence",
        "cache_require_consolidated",
        "cache_ttl_s",
        "client_cert",
        "client_key",
        "origins",
        "pool",
        "rate",
        "retry_budget_s",
        "server",
        "space",
        "stream",
        "tls",
        "tls_server_name",
    )
    _uncompared = ("origins",)
    batch: int | str
    pool: int
    stream: bool | str
    rate: float
    retry_budget_s: float
    cache_ttl_s: float
    cache_min_confidence: float
    cache_require_consolidated: bool
    cache_max_mb: float
    server: str
    space: str
    api_key: str
    autostart: bool
    tls: bool
    ca_cert: str
    client_cert: str
    client_key: str
    tls_server_name: str
    origins: Mapping[str, str]

    def __init__(self, batch: int | str = DEFAULT_BATCH, pool: int = DEFAULT_POOL,
                 stream: bool | str = DEFAULT_STREAM, rate: float = DEFAULT_RATE,
                 retry_budget_s: float = DEFAULT_RETRY_BUDGET_S,
                 cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
                 cache_min_confidence: float = DEFAULT_CACHE_MIN_CONFIDENCE,
                 cache_require_consolidated: bool = DEFAULT_CACHE_REQUIRE_CONSOLIDATED,
                 cache_max_mb: float = DEFAULT_CACHE_MAX_MB, server: str = DEFAULT_SERVER,
                 space: str = DEFAULT_SPACE, api_key: str = "", autostart: bool = True,
                 tls: bool = False, ca_cert: str = "", client_cert: str = "",
                 client_key: str = "", tls_server_name: str = "",
                 origins: Mapping[str, str] | None = None) -> None:
        self.batch = batch
        self.pool = pool
        self.stream = stream
        self.rate = rate
        self.retry_budget_s = retry_budget_s
        self.cache_ttl_s = cache_ttl_s
        self.cache_min_confidence = cache_min_confidence
        self.cache_require_consolidated = cache_require_consolidated
        self.cache_max_mb = cache_max_mb
        self.server = server
        self.space = space
        self.api_key = api_key
        self.autostart = autostart
        self.tls = tls
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key
        self.tls_server_name = tls_server_name
        self.origins = {} if origins is None else origins

    def as_dict(self) -> dict[str, Any]:
        """The settings by key (without `origins`)."""
        return {s.key: getattr(self, s.key) for s in CLIENT_SPECS}

    @property
    def connection(self) -> Connection:
        tls = TlsOptions(self.ca_cert, self.client_cert, self.client_key,
                         self.tls_server_name) if self.tls else None
        return Connection(server=self.server, space=self.space, api_key=self.api_key or None,
                          autostart=self.autostart, tls=tls)


DEFAULT_CLIENT_SETTINGS = ClientSettings()


def unknown_client_key(key: str, tunable_only: bool = False) -> SettingsError:
    import difflib

    if key in CLIENT_SPEC_BY_KEY and tunable_only:
        flag = CLIENT_SPEC_BY_KEY[key].flag
        return SettingsError(f"client setting {key!r} is a connection setting, not a tuning one",
                             f"set it in {client_config_file()} by hand or with {flag}")
    keys = TUNABLE_KEYS if tunable_only else tuple(CLIENT_SPEC_BY_KEY)
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(keys)
    return SettingsError(f"unknown client setting {key!r}", hint)


def check(spec: ClientSpec, value: Any, where: str) -> Any:
    """`value` typed and within the spec's range; else the one error every source gets:
    `<where>: <value> is not valid`, with what is valid as the hint."""
    try:
        return spec.coerce(value)
    except SettingsError as exc:
        raise SettingsError(f"{where}: {value!r} is not valid", exc.hint) from None


def read_client_file(path: Path | str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the whole document, its checked [client] values) of the config file; ({}, {})
    when there is no file. Errors name the file, the line and the key."""
    path = path or client_config_file()
    doc, text = read_toml(path)
    table = doc.get(CLIENT_TABLE, {})
    if not isinstance(table, Mapping):
        raise SettingsError(f"{path}: [{CLIENT_TABLE}] must be a table of settings",
                            "see `engram tune --show` for the keys")
    values = {}
    for key, value in table.items():
        where = f"{located(path, text, CLIENT_TABLE, key)}: [{CLIENT_TABLE}] {key}"
        spec = CLIENT_SPEC_BY_KEY.get(key)
        if spec is None:
            raise SettingsError(f"{where}: unknown setting", unknown_client_key(key).hint)
        values[key] = check(spec, value, where)
    return doc, values


def resolve_client_settings(flags: Mapping[str, Any] | None = None, *,
                            env: Mapping[str, str] | None = None,
                            path: Path | str | None = None) -> ClientSettings:
    """The client settings: `flags` (by key; None or "" is not given) > environment >
    config file [client] > default. Raises SettingsError (exit 2) on the first bad value."""
    flags = flags or {}
    env = os.environ if env is None else env
    _, table = read_client_file(path)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for spec in CLIENT_SPECS:
        key = spec.key
        flag = flags.get(key)
        raw = env.get(spec.env, "").strip() if spec.env else ""
        if flag is not None and flag != "":
            values[key], origins[key] = check(spec, flag, spec.flag or key), FLAG
        elif raw:
            value = check(spec, raw, spec.env)
            values[key], origins[key] = (not value if spec.env_negates else value), ENV
        elif key in table:
            values[key], origins[key] = table[key], CONFIG
        else:
            origins[key] = DEFAULT
    server = values.get("server") or default_server()
    values["server"] = normalize_server(server)
    _check_address(values["server"], origins["server"])
    _resolve_tls(values, origins, server.lower().startswith(TLS_SCHEMES))
    if values.get("api_key") and key_error(values["api_key"]):
        # Named by where it came from, never shown: it is a secret.
        raise SettingsError(f"{_where('api_key', origins['api_key'])}: "
                            f"{key_error(values['api_key'])}", "check the key you were given")
    return ClientSettings(**values, origins=origins)


def _resolve_tls(values: dict[str, Any], origins: dict[str, str], tls_scheme: bool) -> None:
    """TLS is on with `tls` true, a grpcs:// address, or any certificate setting given (a
    `tls = false` set on purpose wins over the last, not over grpcs://). A client
    certificate comes with its key."""
    named = [s for s in ("ca_cert", "client_cert", "client_key", "tls_server_name")
             if values.get(s)]
    if tls_scheme:
        values["tls"], origins["tls"] = True, origins["server"]
    elif named and origins["tls"] == DEFAULT:
        values["tls"], origins["tls"] = True, origins[named[0]]
    for name in TLS_FILE_KEYS:
        if values.get(name):
            values[name] = os.path.expanduser(values[name])
    cert, key = values.get("client_cert"), values.get("client_key")
    if bool(cert) != bool(key):
        given, missing = (("client_cert", "client_key") if cert
                          else ("client_key", "client_cert"))
        raise SettingsError(
            f"{_where(given, origins[given])} is set but {CLIENT_SPEC_BY_KEY[missing].flag} "
            "is not", "mutual TLS needs the certificate and its private key: give both")


def _where(key: str, origin: str) -> str:
    spec = CLIENT_SPEC_BY_KEY[key]
    return {FLAG: spec.flag, ENV: spec.env, CONFIG: f"[{CLIENT_TABLE}] {key}"}.get(origin, key)


def _check_address(address: str, origin: str) -> None:
    """HOST:PORT with a port number (or a unix socket): a typo is a usage error (exit 2),
    not an unreachable server."""
    where = _where("server", origin)
    parts = address.removeprefix(DNS_SCHEME).split(",")
    if len(parts) > 1 and any(p.startswith(UNIX_SCHEMES) for p in parts):
        raise SettingsError(f"{where}: {address!r} is not valid",
                            "a list of servers takes HOST:PORT parts, not unix sockets")
    for part in parts:
        if part.startswith(UNIX_SCHEMES):
            return
        port = part.rsplit(":", 1)[-1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"{where}: {address!r} is not valid",
                                "expected HOST:PORT (or HOST:PORT,HOST:PORT,..., or "
                                "dns:///NAME:PORT) with ports from 1 to 65535")


def _check_defaults() -> None:
    specs = {s.key: s.default for s in CLIENT_SPECS}
    assert DEFAULT_CLIENT_SETTINGS.as_dict() == specs, "ClientSettings and CLIENT_SPECS disagree"


_check_defaults()
