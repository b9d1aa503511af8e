"""The calls behind `forget`, `spaces`, `backup`: plain functions over EngramClient, so the
commands stay a matter of flags and printing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engram_cli.client.api import EngramClient
from engram_cli.errors import Unsupported

LONG_TIMEOUT_S = 24 * 3600.0  # a backup of a large store takes minutes


@dataclass
class Forgotten:
    id: str
    affected: int
    content: str = ""


def read_ids(lines: Iterable[str]) -> list[str]:
    """Ids from stdin: one a line, or the `id` of JSON lines (what `export` prints); blank
    lines skipped."""
    import orjson

    ids = []
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                mid = orjson.loads(text).get("id")
            except (orjson.JSONDecodeError, AttributeError):
                mid = None
            if isinstance(mid, str) and mid:
                ids.append(mid)
                continue
        ids.append(text)
    return ids


def match(client: EngramClient, space: str, cue: str, limit: int) -> list[tuple[str, str]]:
    """(id, content) of the memories a text cue selects by its words, without spreading:
    what a forget by --match would hit, shown before anything is forgotten. Not by vector
    as well (recall's default): "old phone number" selected every phone number, and a
    forget must hit what the cue says, not what resembles it."""
    from engram_cli.contract import RECALL_MODE_KEY
    from engram_cli.rpc import pb

    resp = client.call(client.stub.Recall, pb.RecallRequest(
        memory_space_id=space,
        cue=pb.Cue(semantic=pb.SemanticCue(query=cue), spread_activation=False),
        max_results=limit), "Recall", extra=((RECALL_MODE_KEY, "lexical"),))
    return [(m.id, m.content) for m in resp.memories]


def forget(client: EngramClient, space: str, ids: Iterable[str], delete: bool
           ) -> list[Forgotten]:
    """Forget each id (engram.v1 Forget): suppress, or delete for good."""
    from engram_cli.rpc import pb

    mode = pb.FORGET_MODE_DELETE if delete else pb.FORGET_MODE_SUPPRESS
    out = []
    for mid in ids:
        resp = client.call(client.stub.Forget, pb.ForgetRequest(
            memory_space_id=space, memory_id=mid, mode=mode), "Forget")
        out.append(Forgotten(mid, resp.memories_affected))
    return out


def list_spaces(client: EngramClient) -> list[dict[str, Any]]:
    from engram_cli.rpc import ext

    try:
        resp = client.call(client.ext.ListSpaces, ext.ListSpacesRequest(), "ListSpaces")
    except Unsupported:
        raise Unsupported(f"the server at {client.address} cannot list its spaces",
                          "engram.v1 has no such call; `engram spaces` needs an engram-cli "
                          "server") from None
    return [{"name": s.name, "memories": s.memories, "suppressed": s.suppressed,
             "associations": s.associations, "created_at": s.created_at,
             "dimension": s.dimension}
            for s in resp.spaces]


def drop_space(client: EngramClient, space: str) -> int:
    from engram_cli.rpc import ext

    resp = client.call(client.ext.DropSpace, ext.DropSpaceRequest(memory_space_id=space),
                       "DropSpace")
    return int(resp.memories_deleted)


def backup(client: EngramClient, destination: str) -> Any:
    from engram_cli.rpc import ext

    try:
        return client.call(client.ext.Backup, ext.BackupRequest(destination=destination),
                           "Backup", timeout=LONG_TIMEOUT_S)
    except Unsupported:
        raise Unsupported(f"the server at {client.address} has no Backup RPC",
                          "back up an engram-cli server, or copy a stopped server's data "
                          "directory") from None
