"""The wire names both sides import from engram_cli.contract: they match the generated
descriptors and the engine's states, and the module stays free of protobuf and grpc."""

from __future__ import annotations

import subprocess
import sys

from grpc_health.v1 import health_pb2

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
