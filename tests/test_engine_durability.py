"""Both durability modes keep every acknowledged write when `engram serve` is killed -9."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engram_cli.rpc import ext, pb
from tests.rpc_helpers import stubs, total


@pytest.mark.parametrize("durability", ["fsync", "group"])
def test_acknowledged_writes_survive_kill_9(durability: str, tmp_path: Path,
                                            server_process: Callable[..., object]) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # group: a checkpoint (fsync) once a minute at most, so the test cannot lean on one.
    (data_dir / "engram.toml").write_text(
        f'[engine]\ndurability = "{durability}"\ngroup_fsync_ms = 60000\n')
    first = server_process(data_dir)
    with stubs(first.address) as (stub, ext_stub):  # type: ignore[attr-defined]
        acked = 0
        for b in range(5):
            resp = ext_stub.BatchRemember(ext.BatchRememberRequest(memories=[
                pb.Memory(content=f"Durable {durability} memory {b}.{i}") for i in range(200)]))
            acked += resp.stored
        stub.Remember(pb.RememberRequest(memory=pb.Memory(content="one more, unary")))
        acked += 1
    first.kill9()  # type: ignore[attr-defined]
    second = server_process(data_dir)
    with stubs(second.address) as (stub, ext_stub):  # type: ignore[attr-defined]
        assert total(stub) == acked == 1001
        settings = ext_stub.GetSettings(ext.GetSettingsRequest()).settings
        assert {s.key: s.value_json for s in settings}["durability"] == f'"{durability}"'
