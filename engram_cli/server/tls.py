"""TLS for `engram serve`: where the certificate, key and client CA come from, checking
them before the server starts, the gRPC server credentials, and the warnings for a server
that listens beyond this machine unprotected.

Each file is taken from, highest first: the flag (--tls-cert, --tls-key, --client-ca), the
environment (ENGRAM_TLS_CERT, ENGRAM_TLS_KEY, ENGRAM_CLIENT_CA), the [tls] table of the
server's config file (`<data dir>/engram.toml`: cert, key, client_ca). A client CA turns
on mutual TLS: a client without a certificate signed by it is refused in the handshake.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram_cli.config import read_toml
from engram_cli.errors import SettingsError, TlsError
from engram_cli.files import MAX_PEM_BYTES, read_regular

TLS_TABLE = "tls"
# key: (flag, environment variable, key in [tls], what it is)
SOURCES = {
    "cert": ("--tls-cert", "ENGRAM_TLS_CERT", "cert", "the server certificate"),
    "key": ("--tls-key", "ENGRAM_TLS_KEY", "key", "the server key"),
    "client_ca": ("--client-ca", "ENGRAM_CLIENT_CA", "client_ca", "the client CA"),
}


@dataclass(frozen=True)
class ServerTls:
    """PEM files (`where` says where each path was given, for messages)."""

    cert: str
    key: str
    client_ca: str = ""
    where: Mapping[str, str] | None = None

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca)

    def describe(self) -> str:
        return "mutual TLS" if self.mutual else "TLS"


def resolve_server_tls(flags: Mapping[str, str | None], config_file: Path,
                       env: Mapping[str, str] | None = None) -> ServerTls | None:
    """The server's TLS files (flag > environment > config file [tls]), or None for
    plaintext. A certificate without its key (or a client CA without either) is a
    SettingsError (exit 2)."""
    env = os.environ if env is None else env
    doc, _ = read_toml(config_file)
    table = doc.get(TLS_TABLE, {})
    if not isinstance(table, Mapping):
        raise SettingsError(f"{config_file}: [{TLS_TABLE}] must be a table",
                            "with cert, key and client_ca: paths of PEM files")
    values: dict[str, str] = {}
    where: dict[str, str] = {}
    for key, (flag, var, file_key, _) in SOURCES.items():
        for value, origin in ((flags.get(key), flag), (env.get(var, "").strip(), var),
                              (table.get(file_key), f"{config_file} [{TLS_TABLE}] {file_key}")):
            if value:
                if not isinstance(value, str):
                    raise SettingsError(f"{origin}: {value!r} is not a path",
                                        "give the path of a PEM file as a string")
                values[key], where[key] = os.path.expanduser(value), origin
                break
    unknown = set(table) - {s[2] for s in SOURCES.values()}
    if unknown:
        raise SettingsError(f"{config_file}: [{TLS_TABLE}] {sorted(unknown)[0]}: unknown "
                            "setting", "known: cert, key, client_ca")
    if not values:
        return None
    if not values.get("cert") or not values.get("key"):
        given = "cert" if values.get("cert") else "key" if values.get("key") else "client_ca"
        raise _incomplete(where[given])
    return ServerTls(values["cert"], values["key"], values.get("client_ca", ""), where)


def _incomplete(origin: str) -> SettingsError:
    return SettingsError(f"{origin} is set but TLS needs both --tls-cert and --tls-key",
                        "give the server's certificate and its private key (and --client-ca "
                        "for mutual TLS)")


def _read(tls: ServerTls, key: str) -> bytes:
    path = getattr(tls, key)
    what = SOURCES[key][3]
    origin = (tls.where or {}).get(key, SOURCES[key][0])
    try:
        data = read_regular(path, MAX_PEM_BYTES)
    except OSError as exc:
        raise TlsError(f"cannot read {what} {path} ({origin}): {exc.strerror or exc}",
                       "check the path and its permissions") from None
    marker = b"PRIVATE KEY-----" if key == "key" else b"-----BEGIN CERTIFICATE-----"
    if marker not in data:
        kind = "private key" if key == "key" else "certificate"
        raise TlsError(f"{what} {path} ({origin}) holds no PEM {kind}",
                       f"give a PEM file ({marker.decode().strip('-')})")
    return data


def load(tls: ServerTls) -> tuple[bytes, bytes, bytes | None]:
    """(certificate chain, key, client CA) read and checked: the key must be the
    certificate's, the client CA a certificate. TlsError (exit 1) names the file."""
    import ssl

    cert, key = _read(tls, "cert"), _read(tls, "key")
    client_ca = _read(tls, "client_ca") if tls.client_ca else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert, tls.key, password=lambda: "")
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"the server key {tls.key} does not go with the server certificate "
                       f"{tls.cert}: {getattr(exc, 'reason', None) or exc}",
                       "give the (unencrypted) key the certificate was issued for") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise TlsError(f"the client CA {tls.client_ca} cannot be used: {exc}",
                           "give the CA certificate in PEM") from None
    return cert, key, client_ca


def server_credentials(tls: ServerTls) -> Any:
    import grpc

    cert, key, client_ca = load(tls)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def exposure_warnings(host: str, tls: ServerTls | None, has_keys: bool) -> list[str]:
    """What is at risk when the server listens beyond this machine: nothing on loopback."""
    import ipaddress

    bare = host.strip("[]").lower()
    if bare == "localhost":
        return []
    try:
        if ipaddress.ip_address(bare).is_loopback:
            return []
    except ValueError:
        pass  # a host name: it may resolve to any interface
    warnings = []
    if tls is None:
        warnings.append(
            f"{host} is reachable from other machines and the server speaks plaintext "
            "(no TLS): memories and API keys cross the network readable by anyone on the "
            "path; give --tls-cert and --tls-key")
    if not has_keys and (tls is None or not tls.mutual):
        warnings.append(
            f"{host} is reachable from other machines and the server checks no API key "
            "and no client certificate: anyone who can reach the port can read, write and "
            "delete every memory; give --require-key KEY or --client-ca FILE")
    return warnings
