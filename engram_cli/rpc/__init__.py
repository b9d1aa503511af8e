"""Generated stubs live below (never edited by hand; see scripts/gen_protos.py).

This module is the one adapter that imports them: everything else writes
`from engram_cli.rpc import pb, svc, ext, ext_svc`. `pb` is engram.v1 as one namespace:
the core messages and enums of memory.proto and the service messages of service.proto.
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

from engram_cli.rpc.engram.v1 import memory_pb2 as pb_memory
from engram_cli.rpc.engram.v1 import service_pb2 as pb_service
from engram_cli.rpc.engram.v1 import service_pb2_grpc as svc
from engram_cli.rpc.ext.v1 import ext_pb2 as ext
from engram_cli.rpc.ext.v1 import ext_pb2_grpc as ext_svc


def _namespace(*modules: ModuleType) -> Any:
    names: dict[str, Any] = {}
    for module in reversed(modules):  # the first module wins (service.proto's DESCRIPTOR)
        names.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
    return SimpleNamespace(**names)


pb: Any = _namespace(pb_service, pb_memory)

__all__ = ["ext", "ext_svc", "pb", "pb_memory", "pb_service", "svc"]
