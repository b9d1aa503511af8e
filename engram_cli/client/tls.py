"""TLS for the client's channels: the credentials from the PEM files, checked before any
connection (a file that cannot be read, holds no certificate, or a key that does not match
its certificate is one line naming the file), and the diagnosis of a failed handshake.

gRPC reports every handshake failure as UNAVAILABLE with a transport string, and a server
that refuses our client certificate only as "Socket closed". So when a TLS channel fails,
`diagnose` shakes hands once more with the standard library's ssl module, which says what
went wrong in words (unknown CA, name mismatch, expired; a connection hung up right after
the handshake: our certificate was missing or refused), and the CLI prints that.
"""

from __future__ import annotations

import functools
import socket
import ssl
from typing import Any

from engram_cli.config import UNIX_SCHEMES, TlsOptions, split_address
from engram_cli.errors import EngramError, TlsError
from engram_cli.files import MAX_PEM_BYTES, read_regular

PROBE_TIMEOUT_S = 3.0
CA_CERT = "the CA certificate"
CLIENT_CERT = "the client certificate"
CLIENT_KEY = "the client key"

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code carries them.
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = frozenset({62, 64})  # hostname, IP address
_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21})  # issuer unknown, self-signed, chain incomplete


def _read(path: str, what: str) -> bytes:
    try:
        return read_regular(path, MAX_PEM_BYTES)
    except OSError as exc:
        raise TlsError(f"cannot read {what} {path}: {exc.strerror or exc}",
                       "check the path and its permissions") from None


@functools.lru_cache(maxsize=8)
def pem_files(tls: TlsOptions) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(CA certificates, client key, client certificate chain) as PEM bytes, each checked
    (once per process) before a connection is tried."""
    ca = _read(tls.ca_cert, CA_CERT) if tls.ca_cert else None
    cert = _read(tls.client_cert, CLIENT_CERT) if tls.client_cert else None
    key = _read(tls.client_key, CLIENT_KEY) if tls.client_key else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        if b"-----BEGIN CERTIFICATE-----" not in ca:
            raise TlsError(f"{CA_CERT} {tls.ca_cert} holds no PEM certificate",
                           "give the CA's certificate (-----BEGIN CERTIFICATE-----)")
        try:
            context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise TlsError(f"{CA_CERT} {tls.ca_cert} cannot be used: {_reason(exc)}",
                           "give the CA's certificate in PEM") from None
    if cert is not None and key is not None:
        if b"-----BEGIN CERTIFICATE-----" not in cert:
            raise TlsError(f"{CLIENT_CERT} {tls.client_cert} holds no PEM certificate",
                           "give the certificate (-----BEGIN CERTIFICATE-----)")
        if b"PRIVATE KEY-----" not in key:
            raise TlsError(f"{CLIENT_KEY} {tls.client_key} holds no PEM private key",
                           "give the certificate's unencrypted private key "
                           "(-----BEGIN PRIVATE KEY-----)")
        try:
            context.load_cert_chain(tls.client_cert, tls.client_key, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"{CLIENT_KEY} {tls.client_key} does not go with {CLIENT_CERT} "
                           f"{tls.client_cert}: {_reason(exc)}",
                           "give the key the certificate was issued for") from None
    return ca, key, cert


def _no_password() -> str:
    raise TlsError("the client key is encrypted", "give an unencrypted private key")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    return str(reason or exc).replace("_", " ").lower().rstrip(".")


def channel_credentials(tls: TlsOptions) -> Any:
    import grpc

    ca, key, cert = pem_files(tls)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=cert)


def channel_options(tls: TlsOptions) -> list[tuple[str, Any]]:
    return [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []


def diagnose(address: str, tls: TlsOptions | None, details: str) -> EngramError | None:
    """What made a channel to `address` fail, in words, when it is TLS (on either side);
    None when the handshake is not the problem (nobody listens, say)."""
    if address.startswith(UNIX_SCHEMES):
        return None
    if tls is None:
        # A plaintext client meets a TLS server: gRPC says only that the socket closed.
        if "socket closed" in details.lower() and _speaks_tls(address):
            return TlsError(f"{address} speaks TLS and this connection does not",
                            "add --tls (and --ca-cert FILE), or use grpcs://HOST:PORT")
        return None
    host, port = split_address(address)
    name = tls.server_name or host
    context = ssl.create_default_context(cafile=tls.ca_cert or None)
    context.set_alpn_protocols(["h2"])
    if tls.client_cert:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    trusted = f"a CA in {tls.ca_cert}" if tls.ca_cert else "a CA this system trusts"
    try:
        with socket.create_connection((host, port), PROBE_TIMEOUT_S) as raw, \
                context.wrap_socket(raw, server_hostname=name) as conn:
            conn.settimeout(PROBE_TIMEOUT_S)
            # A server that takes our certificate speaks first (its HTTP/2 settings); one
            # that does not hangs up (TLS 1.3 checks it after the client's handshake ends).
            hung_up = conn.recv(1) == b""
    except ssl.SSLCertVerificationError as exc:
        code, reason = exc.verify_code, _reason(exc)
        if code == _EXPIRED:
            return TlsError(f"TLS: the certificate of {address} has expired ({reason})",
                            "the server needs a renewed certificate")
        if code == _NOT_YET_VALID:
            return TlsError(f"TLS: the certificate of {address} is not valid yet ({reason})",
                            "check the clocks of this machine and the server")
        if code in _NAME_MISMATCH:
            return TlsError(f"TLS: the certificate of {address} is not valid for {name!r} "
                            f"({reason})", "connect by a name the certificate lists, or "
                            "give that name with --tls-server-name")
        if code in _UNKNOWN_CA:
            return TlsError(f"TLS: the certificate of {address} is not signed by {trusted} "
                            f"({reason})", "give the CA that signed it with --ca-cert FILE")
        return TlsError(f"TLS: the certificate of {address} was refused ({reason})",
                        f"checked against {tls.ca_cert or 'the system CAs'}")
    except ssl.SSLError as exc:
        reason = _reason(exc)
        if "wrong version number" in reason or "record layer failure" in reason:
            return TlsError(f"TLS: {address} does not speak TLS ({reason})",
                            "drop --tls, grpcs:// and the certificate settings for a "
                            "plaintext server")
        if "certificate required" in reason:
            return _no_client_cert(address)
        if tls.client_cert and ("alert" in reason or "certificate" in reason):
            return _refused(address, tls, reason)
        return TlsError(f"TLS: the handshake with {address} failed ({reason})")
    except ConnectionResetError:
        return _refused(address, tls, "reset") if tls.client_cert else \
            _no_client_cert(address)
    except OSError:
        return None  # nobody listens: the usual message says so
    if hung_up:
        return _refused(address, tls, "it hung up after the handshake") if tls.client_cert \
            else _no_client_cert(address)
    if "tls" in details.lower() or "ssl" in details.lower():
        return TlsError(f"TLS: the handshake with {address} failed: {details}")
    return None


def _no_client_cert(address: str) -> TlsError:
    return TlsError(f"TLS: {address} requires a client certificate (mutual TLS) and none "
                    "was given", "give --client-cert FILE and --client-key FILE")


def _refused(address: str, tls: TlsOptions, reason: str) -> TlsError:
    return TlsError(f"TLS: {address} refused {CLIENT_CERT} {tls.client_cert} ({reason})",
                    "is it signed by the CA the server trusts (serve --client-ca), and "
                    "not expired?")


def _speaks_tls(address: str) -> bool:
    """Does the server at `address` complete a TLS handshake (whatever its certificate)?"""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(split_address(address), PROBE_TIMEOUT_S) as raw, \
                context.wrap_socket(raw):
            return True
    except ssl.SSLError as exc:
        # A server that wants a client certificate may refuse us in the handshake: it
        # still speaks TLS.
        return "alert" in _reason(exc)
    except (OSError, ValueError):
        return False
