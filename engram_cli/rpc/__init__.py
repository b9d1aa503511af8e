"""Generated stubs live below (never edited by hand; see scripts/gen_protos.py).

This module is the one adapter that imports them: everything else writes
`from engram_cli.rpc import pb, svc, ext, ext_svc`.
"""

from engram_cli.rpc.engram.v1 import memory_pb2 as pb_memory
from engram_cli.rpc.engram.v1 import service_pb2 as pb
from engram_cli.rpc.engram.v1 import service_pb2_grpc as svc
from engram_cli.rpc.ext.v1 import ext_pb2 as ext
from engram_cli.rpc.ext.v1 import ext_pb2_grpc as ext_svc

# Core messages are re-exported on `pb` so callers need one name for engram.v1.
for _name in (
    "Confidence", "Memory", "Episode", "Cue", "EmbeddingCue", "ContextCue", "SemanticCue",
    "RecallMetadata", "Embedding", "ConfidenceCategory", "MemoryType", "ConsolidationState",
):
    setattr(pb, _name, getattr(pb_memory, _name))

ENGRAM_SERVICE = "engram.v1.EngramService"
EXTENSION_SERVICE = "engram_cli.ext.v1.ExtensionService"

__all__ = ["ENGRAM_SERVICE", "EXTENSION_SERVICE", "ext", "ext_svc", "pb", "pb_memory", "svc"]
