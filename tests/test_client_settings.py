"""The client's settings, resolved once per command in one place (flag > environment >
config file > default) with one set of rules: and so `import`, `recall`, `cache` and
`tune` accept or reject a config file (or an environment) alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from engram_cli.cli.main import app
from engram_cli.client.settings import (
    DEFAULT_POOL,
    ClientSettings,
    resolve_client_settings,
)
from engram_cli.errors import EXIT_USAGE, SettingsError
from engram_cli.server.app import EngramServer


@pytest.fixture
def config_file(isolated_env: Path) -> Path:
    path = isolated_env / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    return path


def test_flag_over_env_over_file_over_default(config_file: Path) -> None:
    assert resolve_client_settings(env={}) == ClientSettings()
    config_file.write_text('[client]\npool = 3\nstream = true\nserver = "h:1"\n')
    s = resolve_client_settings(env={})
    assert (s.pool, s.stream, s.batch, s.server) == (3, True, "auto", "h:1")
    assert (s.origins["pool"], s.origins["batch"]) == ("config", "default")
    env = {"ENGRAM_POOL": "5", "ENGRAM_STREAM": "no", "ENGRAM_BATCH": "AUTO",
           "ENGRAM_SERVER": "grpc://other:2", "ENGRAM_RATE": " "}
    s = resolve_client_settings(env=env)
    assert (s.pool, s.stream, s.batch, s.server, s.rate) == (5, False, "auto", "other:2", 0.0)
    assert (s.origins["pool"], s.origins["rate"]) == ("env", "default")  # blank: not set
    s = resolve_client_settings({"pool": 7, "server": "flag", "space": ""}, env=env)
    assert (s.pool, s.server, s.origins["pool"], s.origins["space"]) == (
        7, "flag:50051", "flag", "default")
    assert s.connection.server == "flag:50051"


def test_the_default_server_follows_the_embedded_port(
        config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_client_settings(env={}).server == "localhost:50051"
    monkeypatch.setenv("ENGRAM_DEFAULT_PORT", "7001")
    assert resolve_client_settings(env={}).server == "localhost:7001"


def test_booleans_read_alike_from_every_source(config_file: Path) -> None:
    for word, value in (("1", True), ("yes", True), ("ON", True), ("true", True),
                        ("0", False), ("no", False), ("off", False), ("False", False)):
        env = {"ENGRAM_CACHE_REQUIRE_CONSOLIDATED": word}
        assert resolve_client_settings(env=env).cache_require_consolidated is value
        # ENGRAM_NO_AUTOSTART says the opposite of the autostart setting.
        assert resolve_client_settings(env={"ENGRAM_NO_AUTOSTART": word}).autostart is not value
    config_file.write_text("[client]\nautostart = false\n")
    assert resolve_client_settings(env={"ENGRAM_NO_AUTOSTART": ""}).autostart is False
    assert resolve_client_settings({"autostart": True}, env={}).autostart is True
    for env in ({"ENGRAM_NO_AUTOSTART": "maybe"}, {"ENGRAM_STREAM": "sometimes"}):
        with pytest.raises(SettingsError, match="is not valid"):
            resolve_client_settings(env=env)


@pytest.mark.parametrize(("flags", "env", "message", "hint"), [
    ({"pool": 1000}, {}, "--pool: 1000 is not valid", "expected 1 to 256"),
    ({"batch": "0"}, {}, "--batch: '0' is not valid", 'expected 1 to 1,000,000 or "auto"'),
    ({"stream": "x"}, {}, "--stream: 'x' is not valid", 'expected true or false or "auto"'),
    ({}, {"ENGRAM_POOL": "lots"}, "ENGRAM_POOL: 'lots' is not valid", "expected 1 to 256"),
    ({}, {"ENGRAM_RETRY_BUDGET": "-1"}, "ENGRAM_RETRY_BUDGET: '-1' is not valid",
     "expected 0 to 604,800"),
    ({}, {"ENGRAM_CACHE_MAX_MB": "2000000"}, "ENGRAM_CACHE_MAX_MB: '2000000' is not valid",
     "expected 0 to 1,000,000"),
    ({}, {"ENGRAM_CACHE_TTL_S": "soon"}, "ENGRAM_CACHE_TTL_S: 'soon' is not valid",
     "expected 0 to 31,536,000"),
    ({}, {"ENGRAM_CACHE_MIN_CONFIDENCE": "nan"},
     "ENGRAM_CACHE_MIN_CONFIDENCE: 'nan' is not valid", "expected 0 to 1"),
    ({"rate": float("inf")}, {}, "--rate: inf is not valid", "expected 0 to 1,000,000,000"),
])
def test_a_bad_flag_or_variable_names_itself_and_the_range(
        config_file: Path, flags: dict[str, Any], env: dict[str, str], message: str,
        hint: str) -> None:
    with pytest.raises(SettingsError) as err:
        resolve_client_settings(flags, env=env)
    assert (str(err.value), err.value.hint) == (message, hint)
    assert err.value.exit_code == EXIT_USAGE


def test_a_bad_file_names_file_line_and_key(config_file: Path) -> None:
    def error(text: str) -> tuple[str, str]:
        config_file.write_text(text)
        with pytest.raises(SettingsError) as err:
            resolve_client_settings(env={})
        return str(err.value), err.value.hint

    assert error("[client]\nbatch = 0\n") == (
        f"{config_file}:2: [client] batch: 0 is not valid", 'expected 1 to 1,000,000 or "auto"')
    assert error("[client]\n\npooll = 2\n") == (
        f"{config_file}:3: [client] pooll: unknown setting", "did you mean 'pool'?")
    assert error("[client]\nspace = 7\n") == (
        f"{config_file}:2: [client] space: 7 is not valid", "expected a string")
    assert error("client = 3\n") == (
        f"{config_file}: [client] must be a table of settings",
        "see `engram tune --show` for the keys")
    message, hint = error("[client\n")
    assert message.startswith(f"{config_file}: not valid TOML") and hint
    # The file is checked whole, even where a flag or a variable overrides the key.
    config_file.write_text("[client]\npool = 0\n")
    with pytest.raises(SettingsError, match=r":2: \[client\] pool: 0 is not valid"):
        resolve_client_settings({"pool": 2}, env={"ENGRAM_POOL": "3"})
    # Other tables are not ours to judge.
    config_file.write_text("[client]\npool = 2\n[other]\nanything = 1\n")
    assert resolve_client_settings(env={}).pool == 2


# The same file, through every command that reads client settings.
VALID = ('[client]\npool = 3\nbatch = "auto"\nstream = "auto"\nrate = 0\ncache_max_mb = 10\n'
         "cache_require_consolidated = false\n")
FILES = {
    "valid": (VALID, None),
    "pool out of range": ("[client]\npool = 1000\n",
                          ":2: [client] pool: 1000 is not valid: expected 1 to 256"),
    "cache_max_mb out of range": (
        "[client]\ncache_max_mb = 2000000\n",
        ":2: [client] cache_max_mb: 2000000 is not valid: expected 0 to 1,000,000"),
    "bad boolean": ('[client]\ncache_require_consolidated = "maybe"\n',
                    ":2: [client] cache_require_consolidated: 'maybe' is not valid: "
                    "expected true or false"),
    "wrong type": ("[client]\nserver = 50051\n",
                   ":2: [client] server: 50051 is not valid: expected a string"),
    "unknown key": ("[client]\npooll = 2\n",
                    ":2: [client] pooll: unknown setting: did you mean 'pool'?"),
}


def _commands(address: str, data: Path) -> dict[str, list[str]]:
    return {
        "import": ["--server", address, "import", str(data), "--quiet"],
        "recall": ["--server", address, "recall", "espresso", "--format", "json"],
        "cache": ["cache", "stats", "--json"],
        "tune": ["--server", address, "tune", "--show", "--json"],
    }


@pytest.mark.parametrize("case", list(FILES))
def test_import_recall_cache_and_tune_judge_a_config_file_alike(
        case: str, runner: Any, server: EngramServer, config_file: Path,
        tmp_path: Path) -> None:
    text, expected = FILES[case]
    config_file.write_text(text)
    data = tmp_path / "memories.jsonl"
    data.write_text('{"content": "espresso machine leaking water"}\n'
                    '{"content": "greenhouse tomatoes"}\n')
    outcomes = {}
    for name, args in _commands(server.address, data).items():
        result = runner.invoke(app, args)
        outcomes[name] = result.exit_code
        if expected is None:
            assert result.exit_code == 0, (name, result.output)
        else:
            assert result.exit_code == EXIT_USAGE, (name, result.output)
            assert result.stderr == f"Error: {config_file}{expected}\n", name
    assert len(set(outcomes.values())) == 1, outcomes
    if expected is None:
        shown = orjson.loads(runner.invoke(app, _commands(server.address, data)["tune"]).stdout)
        pool = shown["client"]["settings"]["pool"]
        assert (pool["value"], pool["source"], pool["default"]) == (3, "config", DEFAULT_POOL)


def test_every_command_judges_the_environment_alike(runner: Any, server: EngramServer,
                                                    tmp_path: Path) -> None:
    data = tmp_path / "memories.jsonl"
    data.write_text('{"content": "espresso"}\n')
    for name, args in _commands(server.address, data).items():
        result = runner.invoke(app, args, env={"ENGRAM_POOL": "lots"})
        assert result.exit_code == EXIT_USAGE, (name, result.output)
        assert result.stderr == ("Error: ENGRAM_POOL: 'lots' is not valid: expected 1 to "
                                 "256\n"), name


def test_the_recall_process_judges_a_config_file_like_the_rest(config_file: Path) -> None:
    """`engram recall` as a process (its cache-hit path runs before the command line is
    parsed) rejects the same file with the same line."""
    config_file.write_text(FILES["pool out of range"][0])
    done = subprocess.run([sys.executable, "-m", "engram_cli", "recall", "espresso"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr == f"Error: {config_file}{FILES['pool out of range'][1]}\n"


def test_settings_and_the_cache_import_no_grpc() -> None:
    code = ("import sys, engram_cli.client.settings, engram_cli.client.cache\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'grpc'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("flags", "env", "file", "where"), [
    ({"api_key": "clé"}, {}, "", "--api-key"),
    ({}, {"ENGRAM_API_KEY": "two words"}, "", "ENGRAM_API_KEY"),
    ({}, {}, '[client]\napi_key = "tab\\tkey"\n', "[client] api_key"),
])
def test_an_api_key_metadata_cannot_carry_is_named_not_shown(
        config_file: Path, flags: dict[str, Any], env: dict[str, str], file: str,
        where: str) -> None:
    """gRPC refused such a key on every call with 'INTERNAL: Invalid metadata'. The error
    says where the key came from and never prints it."""
    config_file.write_text(file)
    with pytest.raises(SettingsError) as err:
        resolve_client_settings(flags, env=env)
    assert str(err.value) == (f"{where}: a key is printable ASCII without spaces (gRPC "
                              "metadata carries no other)")
    assert err.value.exit_code == EXIT_USAGE
    secret = (flags or env or {"k": "tab\tkey"}).popitem()[1]
    assert secret not in str(err.value) + (err.value.hint or "")
    assert resolve_client_settings({"api_key": "engram_key_ok"}, env={}).api_key


def _limited() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a runaway read fails


@pytest.mark.parametrize("case", ["settings device", "settings fifo", "ca device",
                                  "key file fifo", "server certificate device"])
def test_a_file_to_read_that_is_no_regular_file_is_refused_not_read(tmp_path: Path,
                                                                     case: str) -> None:
    """`tune --write-config /dev/zero` read the device it was to update until the kernel
    killed it (24 GB); a config.toml or key file that is a FIFO waited for a writer for
    ever; certificates were read whole the same way."""
    env = {**os.environ, "ENGRAM_CONFIG_DIR": str(tmp_path / "cfg")}
    (tmp_path / "cfg").mkdir(mode=0o700)
    fifo = tmp_path / "cfg" / "config.toml" if case == "settings fifo" else tmp_path / "keys"
    os.mkfifo(fifo, 0o600)
    data = str(tmp_path / "data")
    args, named, code = {
        "settings device": (["tune", "--profile", "low-latency", "--write-config",
                             "/dev/zero"], "/dev/zero", EXIT_USAGE),
        "settings fifo": (["--server", "127.0.0.1:1", "stats"], str(fifo), EXIT_USAGE),
        "ca device": (["--ca-cert", "/dev/zero", "--server", "127.0.0.1:1", "recall", "x",
                       "--no-cache"], "/dev/zero", 1),
        "key file fifo": (["serve", "--port", "0", "--data-dir", data, "--key-file",
                           str(fifo)], str(fifo), EXIT_USAGE),
        "server certificate device": (["serve", "--port", "0", "--data-dir", data,
                                       "--tls-cert", "/dev/zero", "--tls-key", "/dev/zero"],
                                      "/dev/zero", 1),
    }[case]
    done = subprocess.run([sys.executable, "-m", "engram_cli", *args], capture_output=True,
                          text=True, timeout=60, env=env, preexec_fn=_limited)
    assert done.returncode == code, done.stderr
    assert f"{named} is not a regular file" in done.stderr
