"""The wire names both sides import from engram_cli.contract: they match the generated
descriptors and the engine's states, and the module stays free of protobuf and grpc."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from grpc_health.v1 import health_pb2

import engram_cli.tuning
from engram_cli import contract
from engram_cli.engine.model import State
from engram_cli.rpc import ext, pb


def test_service_names_are_the_descriptors() -> None:
    assert pb.DESCRIPTOR.services_by_name["EngramService"].full_name == contract.ENGRAM_SERVICE
    assert ext.DESCRIPTOR.services_by_name["ExtensionService"].full_name == \
        contract.EXTENSION_SERVICE
    assert health_pb2.DESCRIPTOR.services_by_name["Health"].full_name == contract.HEALTH_SERVICE
    assert contract.method_path(contract.ENGRAM_SERVICE, "Recall") == \
        "/engram.v1.EngramService/Recall"


def test_the_state_field_carries_the_engine_state_names() -> None:
    assert State.CONSOLIDATED.name.lower() == contract.STATE_CONSOLIDATED


def test_authorization_is_a_bearer_token() -> None:
    assert (contract.AUTHORIZATION_KEY, contract.authorization("k1")) == (
        "authorization", "Bearer k1")


def test_contract_imports_neither_protobuf_nor_grpc() -> None:
    code = ("import sys, engram_cli.contract\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"



def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_tuning_speaks_no_grpc() -> None:
    """tuning/ is data and diffs; the settings RPCs live in client/settings_rpc.py."""
    tuning = Path(engram_cli.tuning.__file__).parent
    for path in sorted(tuning.glob("*.py")):
        bad = {m for m in _imports(path) if m.split(".")[0] == "grpc"
               or m in ("engram_cli.client.connection", "engram_cli.client.api")}
        assert not bad, f"{path.name} imports {sorted(bad)}"
