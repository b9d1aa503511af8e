"""Channels to an Engram server, with the API key, TLS when asked (client/tls.py), sane
limits and keepalive, and the translation of gRPC failures into our exceptions (done once,
here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from engram_cli.config import DEFAULT_MAX_MESSAGE_BYTES, Connection, TlsOptions
from engram_cli.contract import AUTHORIZATION_KEY, RETRY_AFTER_KEY, authorization
from engram_cli.errors import (
    AuthError,
    EngramError,
    NotFound,
    Overloaded,
    PermissionDenied,
    ServerUnavailable,
    Unsupported,
    UsageError,
)

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_retries", 0),  # our own retry loop knows which items to resend
)


# Reads are safe to send again: gRPC itself retries them on another server when the one
# it picked is gone (several endpoints only). Writes are retried by the bulk sender, which
# knows which items of a batch are still unanswered.
_RETRIED_READS = ("Recall", "StreamingRecall", "Recognize", "Introspect")
_RETRIED_EXT = ("ServerInfo", "GetSettings")


def _balanced_service_config() -> str:
    import json

    from engram_cli.contract import ENGRAM_SERVICE, EXTENSION_SERVICE

    return json.dumps({
        # round_robin: one subchannel per address, each call to the next READY one; an
        # address that does not connect (or fails its health check) gets no calls, and is
        # tried again in the background.
        "loadBalancingConfig": [{"round_robin": {}}],
        # Client-side health checking (grpc.health.v1 Watch): a server going down
        # gracefully (NOT_SERVING) stops getting calls before it closes. A server without
        # the health service (UNIMPLEMENTED) counts as healthy.
        "healthCheckConfig": {"serviceName": ""},
        "methodConfig": [{
            "name": [{"service": ENGRAM_SERVICE, "method": m} for m in _RETRIED_READS]
            + [{"service": EXTENSION_SERVICE, "method": m} for m in _RETRIED_EXT],
            "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.05s",
                            "maxBackoff": "1s", "backoffMultiplier": 2,
                            "retryableStatusCodes": ["UNAVAILABLE"]},
        }],
    })


def channel_target(server: str) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target and extra channel options for a --server value. One HOST:PORT is
    used as it is. Several endpoints use gRPC's own client-side load balancing: a
    `dns:///NAME:PORT` target is resolved (and re-resolved) by gRPC's DNS resolver; a list
    `a:P,b:P` becomes an `ipv4:`/`ipv6:` target list (its host names resolved once, here);
    both with the round_robin policy and health checking."""
    from engram_cli.config import DNS_SCHEME, endpoints, is_multi_endpoint

    if not is_multi_endpoint(server):
        return server, []
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", _balanced_service_config()),
        ("grpc.service_config_disable_resolution", 1),  # ours, not one from DNS TXT
        ("grpc.enable_retries", 1),  # only the reads named in the service config
    ]
    if server.startswith(DNS_SCHEME):
        return server, options
    return _address_list(endpoints(server)), options


def _address_list(parts: list[str]) -> str:
    import ipaddress
    import socket

    from engram_cli.config import split_address

    v4: list[str] = []
    v6: list[str] = []
    for part in parts:
        host, port = split_address(part)
        try:
            ip = ipaddress.ip_address(host)
            found = [(ip.version, str(ip))]
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ServerUnavailable(f"cannot resolve {host}: {exc.strerror or exc}",
                                        "check the host names in --server") from None
            found = [(4 if info[0] == socket.AF_INET else 6, str(info[4][0]))
                     for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
        # One address per endpoint (IPv4 first, as `localhost` usually serves it): the
        # list names servers, not every address of each.
        for version, ip_text in sorted(found)[:1]:
            (v4 if version == 4 else v6).append(
                f"{ip_text}:{port}" if version == 4 else f"[{ip_text}]:{port}")
    if v4 and v6:
        raise UsageError(f"--server {','.join(parts)} mixes IPv4 and IPv6 servers",
                         "list servers of one address family (gRPC takes one per target)")
    return ("ipv4:" + ",".join(v4)) if v4 else ("ipv6:" + ",".join(v6))


def open_channel(address: str, extra_options: Sequence[tuple[str, Any]] = (),
                 tls: TlsOptions | None = None) -> grpc.Channel:
    """A new channel (its own TCP connection: the option makes gRPC not share subchannels
    between channels of the same target, which a pool needs), over TLS when `tls` is given.
    Several endpoints in `address` are balanced by gRPC (see `channel_target`). Raises
    TlsError when a certificate or key file cannot be used."""
    target, balanced = channel_target(address)
    # A later option replaces an earlier one of the same name (gRPC would take one of
    # the two, which one depending on its version).
    options = dict([*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1), *balanced,
                    *extra_options])
    if tls is None:
        return grpc.insecure_channel(target, options=list(options.items()))
    from engram_cli.client.tls import channel_credentials, channel_options

    options.update(channel_options(tls))
    return grpc.secure_channel(target, channel_credentials(tls), options=list(options.items()))


def call_metadata(conn: Connection) -> tuple[tuple[str, str], ...]:
    return ((AUTHORIZATION_KEY, authorization(conn.api_key)),) if conn.api_key else ()


def retry_after_ms(err: grpc.RpcError) -> int | None:
    """The server's retry-after hint from trailing metadata, if any."""
    try:
        for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
            if key == RETRY_AFTER_KEY:
                return int(value)
    except (AttributeError, ValueError, TypeError):
        pass
    return None


def translate(err: grpc.RpcError, address: str, what: str = "request",
              tls: TlsOptions | None = None) -> EngramError:
    """One gRPC failure -> the exception the CLI knows how to print. A connection that
    fails is asked whether TLS is why (`tls`: the channel's options, None for plaintext)."""
    code = err.code() if hasattr(err, "code") else None  # type: ignore[attr-defined]
    detail = (err.details() if hasattr(err, "details") else "") or ""  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE:
        from engram_cli.client.tls import diagnose

        handshake = diagnose(address, tls, detail)
        if handshake is not None:
            return handshake
        return ServerUnavailable(
            f"no Engram server answers at {address}",
            "start one with `engram serve`, or point --server / ENGRAM_SERVER at one")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServerUnavailable(f"{what} to {address} timed out", "is the server overloaded?")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"{address} refused the request: {detail}",
                                "use a space the key grants (--space), or a key that grants "
                                "this one")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AuthError(f"{address} refused the request: {detail}",
                         "check --api-key / ENGRAM_API_KEY")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return Unsupported(f"the server at {address} does not serve this {what}: {detail}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return UsageError(f"the server rejected the {what}: {detail}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(detail)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Overloaded(f"the server is overloaded: {detail}", retry_after_ms(err) or 100)
    return EngramError(f"{what} to {address} failed: {code.name if code else '?'}: {detail}")
