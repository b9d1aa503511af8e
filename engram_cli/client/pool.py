"""A pool of gRPC channels to one server (or to several endpoints, each channel balancing
over all of them: see client/connection.py), each its own TCP connection (keepalive on),
handed out round-robin, with the write calls a bulk loader makes taking requests that
are already serialized bytes (the sender builds them by concatenation; see client/bulk.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import grpc

from engram_cli.client.connection import open_channel
from engram_cli.config import TlsOptions
from engram_cli.contract import ENGRAM_SERVICE, EXTENSION_SERVICE, method_path
from engram_cli.rpc import ext, pb


@dataclass
class Lane:
    """One channel and its calls."""

    channel: grpc.Channel
    batch_remember: grpc.UnaryUnaryMultiCallable
    streaming_remember: grpc.StreamStreamMultiCallable
    remember: grpc.UnaryUnaryMultiCallable
    server_info: grpc.UnaryUnaryMultiCallable


def _identity(b: bytes) -> bytes:
    return b


class ChannelPool:
    def __init__(self, address: str, size: int, max_message_bytes: int | None = None,
                 tls: TlsOptions | None = None) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one channel")
        extra: list[tuple[str, Any]] = []
        if max_message_bytes:
            extra = [("grpc.max_send_message_length", max_message_bytes),
                     ("grpc.max_receive_message_length", max_message_bytes)]
        self.address = address
        self.tls = tls
        self.lanes = [self._lane(open_channel(address, extra, tls)) for _ in range(size)]
        self._next = itertools.cycle(self.lanes)

    @staticmethod
    def _lane(channel: grpc.Channel) -> Lane:
        return Lane(
            channel=channel,
            batch_remember=channel.unary_unary(
                method_path(EXTENSION_SERVICE, "BatchRemember"), request_serializer=_identity,
                response_deserializer=ext.BatchRememberResponse.FromString),
            streaming_remember=channel.stream_stream(
                method_path(ENGRAM_SERVICE, "StreamingRemember"), request_serializer=_identity,
                response_deserializer=pb.RememberResponse.FromString),
            remember=channel.unary_unary(
                method_path(ENGRAM_SERVICE, "Remember"), request_serializer=_identity,
                response_deserializer=pb.RememberResponse.FromString),
            server_info=channel.unary_unary(
                method_path(EXTENSION_SERVICE, "ServerInfo"),
                request_serializer=ext.ServerInfoRequest.SerializeToString,
                response_deserializer=ext.ServerInfoResponse.FromString),
        )

    def __len__(self) -> int:
        return len(self.lanes)

    def next(self) -> Lane:
        return next(self._next)

    def close(self) -> None:
        for lane in self.lanes:
            lane.channel.close()

    def __enter__(self) -> ChannelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
