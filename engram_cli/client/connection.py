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


def open_channel(address: str, extra_options: Sequence[tuple[str, Any]] = (),
                 tls: TlsOptions | None = None) -> grpc.Channel:
    """A new channel (its own TCP connection: the option makes gRPC not share subchannels
    between channels of the same target, which a pool needs), over TLS when `tls` is given.
    Raises TlsError when a certificate or key file cannot be used."""
    options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1), *extra_options]
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    from engram_cli.client.tls import channel_credentials, channel_options

    return grpc.secure_channel(address, channel_credentials(tls),
                               options=[*options, *channel_options(tls)])


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
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
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
