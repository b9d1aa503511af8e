"""`engram tune` against a real in-process server: profiles, --set, --reset, --dry-run,
--show, validation messages, --write-config, and the settings RPC's guarantees."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engram_cli.cli.main import app
from engram_cli.client.settings import DEFAULT_POOL
from engram_cli.server.app import EngramServer, ServeOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def as_json(result: Any) -> Any:
    return json.loads(ok(result).stdout)


def client_config(home: Path) -> dict[str, Any]:
    path = home / "config" / "config.toml"
    return tomllib.loads(path.read_text()) if path.exists() else {}


def server_file(server: EngramServer) -> dict[str, Any]:
    path = server.data_dir / "engram.toml"
    return tomllib.loads(path.read_text()) if path.exists() else {}


def test_help_has_an_example(runner: Any) -> None:
    result = ok(runner.invoke(app, ["tune", "--help"]))
    assert "Example: engram tune" in result.stdout


def test_list_names_every_shipped_profile_with_a_description(runner: Any) -> None:
    entries = as_json(runner.invoke(app, ["tune", "--list", "--json"]))
    names = {e["name"]: e for e in entries}
    assert {"low-latency", "high-throughput", "balanced", "memory-limited"} <= set(names)
    assert all(e["description"] and not e["description"].startswith("invalid")
               for e in entries)
    text = ok(runner.invoke(app, ["tune", "--list"])).stdout
    assert "low-latency" in text and names["low-latency"]["description"] in text


def test_dry_run_answers_the_diff_and_changes_nothing(engram: Any, server: EngramServer,
                                                     isolated_env: Path) -> None:
    data = as_json(engram("tune", "--profile", "low-latency", "--dry-run", "--json"))
    assert set(data) == {"profile", "changed", "restart_required"}
    assert data["profile"] == "low-latency"
    assert data["changed"]["max_hops"] == {"before": 3, "after": 1}
    assert data["changed"]["client.cache_ttl_s"] == {"before": 3600.0, "after": 600.0}
    assert server.config.settings.max_hops == 3
    assert server.store.settings.max_hops == 3
    assert not (server.data_dir / "engram.toml").exists()
    assert client_config(isolated_env) == {}


def test_profile_is_applied_live_persisted_and_written_to_the_client_config(
        engram: Any, server: EngramServer, isolated_env: Path) -> None:
    data = as_json(engram("tune", "--profile", "low-latency", "--json"))
    assert data["changed"]["recall_budget_ms"] == {"before": 50, "after": 8}
    # The one setting of the profile a running server cannot change: its embedding
    # worker processes are started once.
    assert data["restart_required"] == ["embedding_workers"]
    assert server.store.settings.max_hops == 1  # live: the engine runs with it now
    assert server.store.settings.recall_budget_ms == 8
    assert server_file(server)["engine"]["max_hops"] == 1
    assert server_file(server)["persistence"]["hot_capacity"] == 500_000
    # Import's batch and pool are nobody's profile: the config file reaches every server.
    assert client_config(isolated_env)["client"]["cache_ttl_s"] == 600.0
    assert not {"batch", "pool"} & set(client_config(isolated_env)["client"])
    shown = as_json(engram("tune", "--show", "--json"))
    assert shown["server"]["settings"]["max_hops"]["source"] == "live"
    assert shown["server"]["settings"]["forgetting_floor"]["source"] == "default"
    assert shown["client"]["settings"]["cache_ttl_s"] == {
        **shown["client"]["settings"]["cache_ttl_s"], "value": 600.0, "source": "config"}
    assert shown["client"]["settings"]["batch"]["source"] == "default"


def test_table_output_shows_before_and_after(engram: Any) -> None:
    text = ok(engram("tune", "--profile", "high-throughput")).stdout
    assert "durability" in text and "fsync" in text and "group" in text
    assert "client.cache_ttl_s" in text


def test_at_80_columns_every_setting_s_name_is_whole(engram: Any) -> None:
    """The table used to fold the longer names ("consolidation_interv" / "al_s")."""
    settings = as_json(engram("tune", "--show", "--json"))
    text = ok(engram("tune", "--show")).stdout  # not a terminal: 80 columns
    names = [*settings["server"]["settings"], *settings["client"]["settings"]]
    assert [n for n in names if n not in text] == [], text
    diff = ok(engram("tune", "--profile", "low-latency", "--dry-run")).stdout
    assert "consolidation_interval_s" in diff and "client.cache_require_consolidated" in diff


def test_a_profile_starts_from_the_defaults(engram: Any, server: EngramServer,
                                            isolated_env: Path) -> None:
    ok(engram("tune", "--set", "forgetting_floor=0.5", "client.rate=100"))
    ok(engram("tune", "--profile", "low-latency"))
    data = as_json(engram("tune", "--profile", "high-throughput", "--json"))
    assert data["changed"]["max_hops"] == {"before": 1, "after": 3}
    assert server.store.settings.durability == "group"
    assert server.store.settings.forgetting_floor == 0.2  # the earlier --set is gone
    assert "rate" not in client_config(isolated_env)["client"]


def test_reset_goes_back_to_defaults_everywhere(engram: Any, server: EngramServer,
                                                isolated_env: Path) -> None:
    (isolated_env / "config").mkdir(parents=True)
    (isolated_env / "config" / "config.toml").write_text(
        '[client]\nspace = "work"\nbatch = 9\n[other]\nkeep = true\n')
    ok(engram("tune", "--profile", "memory-limited"))
    data = as_json(engram("tune", "--reset", "--json"))
    assert data["profile"] is None
    assert data["changed"]["hot_capacity"] == {"before": 10_000, "after": 100_000}
    # memory-limited's max_message_bytes was pending; the running server never had it.
    assert data["changed"]["max_message_bytes"]["before"] == 16_777_216
    assert data["restart_required"] == []
    assert server.store.settings == server.config.settings
    assert server_file(server)["engine"] == {}
    # Connection keys and other tables are the user's: a reset keeps them.
    assert client_config(isolated_env) == {"client": {"space": "work"},
                                           "other": {"keep": True}}
    assert as_json(engram("tune", "--reset", "--json"))["changed"] == {}


def test_set_round_trip(engram: Any, server: EngramServer, isolated_env: Path) -> None:
    data = as_json(engram("tune", "--set", "max_hops=2", "client.pool=3", "durability=group",
                          "--json"))
    assert data["changed"] == {"max_hops": {"before": 3, "after": 2},
                               "durability": {"before": "fsync", "after": "group"},
                               "client.pool": {"before": DEFAULT_POOL, "after": 3}}
    assert server.store.settings.max_hops == 2
    assert client_config(isolated_env)["client"] == {"pool": 3}
    again = as_json(engram("tune", "--set", "max_hops=2", "--json"))
    assert again["changed"] == {}
    back = as_json(engram("tune", "--set", "max_hops=3", "--json"))
    assert back["changed"] == {"max_hops": {"before": 2, "after": 3}}
    assert "max_hops" not in server_file(server)["engine"]
    shown = as_json(engram("tune", "--show", "--json"))["server"]["settings"]
    assert shown["max_hops"]["source"] == "default"
    assert shown["durability"]["source"] == "live"


@pytest.mark.parametrize(("args", "expected"), [
    (["--set", "max_hop=2"], "unknown setting 'max_hop': did you mean 'max_hops'?"),
    (["--set", "batchh=10"], "unknown setting 'batchh': did you mean 'client.batch'?"),
    (["--set", "vector_ef=64"], "unknown setting 'vector_ef': the vector index scans "
                                "every code of a space now: set 'vector_candidates'"),
    (["--set", "vector_nprobe=64"], "unknown setting 'vector_nprobe': the vector index "
                                    "scans every code of a space now"),
    (["--set", "max_hops=30"], "'max_hops': 30 is out of range (expected 0 to 10)"),
    (["--set", "decay=nan"], "'decay': nan is not valid"),  # NaN passed every range check
    (["--set", "client.cache_min_confidence=NaN"], "expected 0 to 1"),
    (["--set", "durability=sometimes"], "expected one of fsync, group"),
    (["--set", "warm_path=fast-disk"], "'warm_path': 'fast-disk' is not an absolute path"),
    (["--set", "client.pool=0"], "expected 1 to 256"),
    (["--set", "client.batch=lots"], 'expected 1 to 1,000,000 or "auto"'),
    (["--set", "client.server=x:1"], "connection setting"),
    (["--set", "max_hops"], "'max_hops' is not KEY=VALUE"),
    (["--profile", "fastest"], "unknown profile 'fastest'"),
    (["--show", "--list"], "does not go with"),
    ([], "nothing to do"),
])
def test_bad_input_exits_2_with_one_clear_line(engram: Any, server: EngramServer,
                                               args: list[str], expected: str) -> None:
    result = engram("tune", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert server.config.settings == server.config.started


def test_unknown_profile_lists_the_profiles(engram: Any) -> None:
    result = engram("tune", "--profile", "low-latencyy")
    assert result.exit_code == 2, result.output
    assert "did you mean 'low-latency'?" in result.stderr
    for name in ("balanced", "high-throughput", "low-latency", "memory-limited"):
        assert name in result.stderr


def test_apply_is_all_or_nothing(engram: Any, server: EngramServer, isolated_env: Path
                                 ) -> None:
    result = engram("tune", "--set", "max_hops=1", "threshold=5")
    assert result.exit_code == 2, result.output
    assert "threshold" in result.stderr
    # A bad client value stops the server half too, and the other way round.
    assert engram("tune", "--set", "max_hops=1", "client.pool=0").exit_code == 2
    assert engram("tune", "--set", "client.pool=4", "max_hops=-1").exit_code == 2
    assert server.store.settings.max_hops == 3
    assert not (server.data_dir / "engram.toml").exists()
    assert client_config(isolated_env) == {}


def test_restart_required_setting_waits_for_the_restart(engram: Any, server: EngramServer
                                                        ) -> None:
    data = as_json(engram("tune", "--set", "max_message_bytes=16777216", "--json"))
    assert data["restart_required"] == ["max_message_bytes"]
    shown = as_json(engram("tune", "--show", "--json"))["server"]["settings"]
    assert shown["max_message_bytes"]["value"] == 16_777_216
    assert shown["max_message_bytes"]["source"] == "pending"
    # The running server still takes 64 MiB messages until it restarts.
    assert server.store.settings.max_message_bytes == 64 * 1024 * 1024
    assert server_file(server)["engine"]["max_message_bytes"] == 16_777_216


def test_user_profile_overrides_the_shipped_one(engram: Any, server: EngramServer,
                                                isolated_env: Path) -> None:
    user = isolated_env / "config" / "profiles"
    user.mkdir(parents=True)
    (user / "low-latency.toml").write_text(
        'description = "mine"\n[server]\nmax_hops = 2\n[client]\nbatch = 20\n')
    entries = {e["name"]: e for e in as_json(engram("tune", "--list", "--json"))}
    assert entries["low-latency"] == {**entries["low-latency"], "description": "mine",
                                      "origin": "user"}
    ok(engram("tune", "--profile", "low-latency"))
    assert server.store.settings.max_hops == 2
    assert server.store.settings.recall_budget_ms == 50


def test_invalid_user_profile_names_file_line_and_key(engram: Any, server: EngramServer,
                                                      isolated_env: Path) -> None:
    user = isolated_env / "config" / "profiles"
    user.mkdir(parents=True)
    path = user / "mine.toml"
    path.write_text('description = "x"\n[server]\nmax_hops = 2\nthreshhold = 0.3\n')
    result = engram("tune", "--profile", "mine")
    assert result.exit_code == 2, result.output
    assert f"{path}:4: [server] threshhold: unknown setting: did you mean 'threshold'?" \
        in result.stderr
    path.write_text('description = "x"\n[client]\npool = "many"\n')
    result = engram("tune", "--profile", "mine")
    assert result.exit_code == 2, result.output
    assert f"{path}:3: [client] pool: 'many' is not valid: expected 1 to 256" in result.stderr
    listed = {e["name"]: e for e in as_json(engram("tune", "--list", "--json"))}
    assert listed["mine"]["description"].startswith("invalid:")
    assert server.config.settings == server.config.started


def test_write_config_is_an_engram_toml_our_server_also_reads(runner: Any, tmp_path: Path
                                                              ) -> None:
    target = tmp_path / "deploy" / "engram.toml"
    target.parent.mkdir()
    target.write_text('[feature_flags]\nspreading_api_beta = true\n'
                      '[persistence]\ndata_root = "/var/lib/engram"\n')
    result = ok(runner.invoke(app, ["tune", "--profile", "low-latency", "--write-config",
                                    str(target), "--set", "max_hops=2"]))
    assert str(target) in result.stdout
    doc = tomllib.loads(target.read_text())
    assert doc["feature_flags"] == {"spreading_api_beta": True}
    assert doc["persistence"] == {"data_root": "/var/lib/engram", "hot_capacity": 500_000,
                                  "warm_capacity": 2_000_000, "cold_capacity": 10_000_000}
    assert doc["engine"]["recall_budget_ms"] == 8
    assert doc["engine"]["max_hops"] == 2
    # No server was needed, and none was touched: the file is the whole effect.
    srv = EngramServer(ServeOptions(data_dir=target.parent, port=0))
    try:
        assert srv.config.settings.max_hops == 2
        assert srv.config.settings.recall_budget_ms == 8
        assert srv.config.source("recall_budget_ms") == "config"
    finally:
        srv.stop(grace=0)


def test_write_config_dry_run_prints_and_writes_nothing(runner: Any, tmp_path: Path) -> None:
    target = tmp_path / "engram.toml"
    result = ok(runner.invoke(app, ["tune", "--profile", "memory-limited", "--write-config",
                                    str(target), "--dry-run"]))
    assert not target.exists()
    doc = tomllib.loads(result.stdout)
    assert doc["persistence"]["hot_capacity"] == 10_000
    assert doc["engine"]["max_message_bytes"] == 16_777_216


def test_write_config_needs_a_profile(runner: Any, tmp_path: Path) -> None:
    result = runner.invoke(app, ["tune", "--write-config", str(tmp_path / "x.toml")])
    assert result.exit_code == 2, result.output
    assert "--write-config needs --profile" in result.stderr


def test_concurrent_applies_leave_file_engine_and_answer_in_agreement(
        server: EngramServer) -> None:
    from engram_cli.client.api import EngramClient
    from engram_cli.client.settings_rpc import RemoteSettings
    from engram_cli.config import Connection

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with EngramClient(Connection(server=server.address), autostart=False) as c:
                remote = RemoteSettings(c)
                for i in range(15):
                    remote.apply({"max_hops": (n + i) % 11,
                                  "durability": "group" if (n + i) % 2 else "fsync"})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = server.config.settings
    assert server.store.settings == final
    engine = server_file(server)["engine"]
    assert engine.get("max_hops", 3) == final.max_hops
    assert engine.get("durability", "fsync") == final.durability


def test_shipped_profiles_do_what_their_names_say() -> None:
    from engram_cli.engine.settings import DEFAULT_SETTINGS
    from engram_cli.tuning import profiles

    loaded = {name: profiles.load(name) for name in profiles.available()}

    def server(name: str, key: str) -> Any:
        return loaded[name].server.get(key, getattr(DEFAULT_SETTINGS, key))

    others = [n for n in loaded if n != "low-latency"]
    assert all(server("low-latency", "recall_budget_ms") < server(n, "recall_budget_ms")
               for n in others)
    assert all(server("low-latency", "max_hops") < server(n, "max_hops") for n in others)
    assert server("low-latency", "recall_budget_ms") <= 10
    assert server("high-throughput", "durability") == "group"
    # Streaming where there is no batch RPC; never forced off (upstream has no batch RPC).
    assert all(p.client["stream"] == "auto" for p in loaded.values())
    # Import's batch and pool would reach every server from the config file: no profile
    # sets them (the server half's max_batch caps batches where it matters).
    assert all(not {"batch", "pool"} & set(p.client) for p in loaded.values())
    assert min(loaded, key=lambda n: server(n, "hot_capacity")) == "memory-limited"
    assert min(loaded, key=lambda n: loaded[n].client["cache_max_mb"]) == "memory-limited"
    assert server("balanced", "max_hops") == DEFAULT_SETTINGS.max_hops


def test_a_failing_engine_update_leaves_file_and_settings_as_they_were(tmp_path: Path
                                                                       ) -> None:
    from engram_cli.errors import Overloaded
    from engram_cli.tuning.server_config import ServerConfig

    path = tmp_path / "engram.toml"
    path.write_text("[engine]\nmax_hops = 2\n")
    config = ServerConfig(path)
    seen = []

    def engine_refuses(settings: Any) -> None:
        seen.append(settings.max_hops)
        if settings.max_hops == 5:
            raise Overloaded("write queue full", retry_after_ms=10)

    with pytest.raises(Overloaded):
        config.apply({"max_hops": 5}, on_change=engine_refuses)
    assert path.read_text() == "[engine]\nmax_hops = 2\n"
    assert config.settings.max_hops == 2 and config.source("max_hops") == "config"
    assert seen == [5, 2]  # the engine was handed the old settings back
