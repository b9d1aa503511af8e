"""The settings RPCs of our ExtensionService (GetSettings / ApplySettings), for `engram
tune`: plain values in and out, our exceptions on failure, and a hint for servers that
lack the RPCs (upstream Engram). grpc and the stubs are imported only when a call is made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engram_cli.errors import SettingsError, Unsupported

WRITE_CONFIG_HINT = ("for a server without it (such as upstream Engram), write a config file "
                     "instead: engram tune --profile NAME --write-config engram.toml")


@dataclass(frozen=True)
class RemoteSetting:
    key: str
    value: Any
    default: Any
    source: str
    restart_required: bool
    description: str


@dataclass(frozen=True)
class RemoteChange:
    """One setting the server changed (or would change, in a dry run)."""

    key: str
    before: Any
    after: Any
    restart_required: bool


@dataclass(frozen=True)
class RemoteSnapshot:
    settings: dict[str, RemoteSetting]
    config_path: str


class RemoteSettings:
    """Settings RPCs over an open EngramClient."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def _call(self, method: Any, request: Any, what: str) -> Any:
        import grpc

        from engram_cli.client.connection import translate

        try:
            return method(request, metadata=self.client.metadata, timeout=60.0)
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise Unsupported(f"the server at {self.client.address} has no settings RPC "
                                  f"({what})", WRITE_CONFIG_HINT) from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                # The server's message already names the key and the range or did-you-mean.
                raise SettingsError(err.details() or f"{what} refused") from None
            raise translate(err, self.client.address, what, self.client.conn.tls) from None

    def get(self) -> RemoteSnapshot:
        from engram_cli.rpc import ext

        resp = self._call(self.client.ext.GetSettings, ext.GetSettingsRequest(), "GetSettings")
        settings = {
            s.key: RemoteSetting(s.key, json.loads(s.value_json), json.loads(s.default_json),
                                 s.source, s.restart_required, s.description)
            for s in resp.settings
        }
        return RemoteSnapshot(settings, resp.config_path)

    def apply(self, values: Mapping[str, Any], reset: bool = False, dry_run: bool = False
              ) -> list[RemoteChange]:
        from engram_cli.rpc import ext

        request = ext.ApplySettingsRequest(
            values_json={k: json.dumps(v) for k, v in values.items()},
            dry_run=dry_run, reset=reset)
        resp = self._call(self.client.ext.ApplySettings, request, "ApplySettings")
        return [RemoteChange(c.key, json.loads(c.before_json), json.loads(c.after_json),
                             c.restart_required) for c in resp.changes]
