"""Our Engram-compatible server: build, run, stop cleanly.

Serves engram.v1.EngramService, our ExtensionService, the standard gRPC health service
and server reflection. SIGINT/SIGTERM: stop accepting, let in-flight calls finish (up to
the grace period), close the store (queued writes commit first), exit 0.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engram_cli.contract import (
    AUTHORIZATION_KEY,
    ENGRAM_SERVICE,
    EXTENSION_SERVICE,
    HEALTH_CHECKED,
    HEALTH_SERVICE,
    REFLECTION_PACKAGE,
    RETRY_AFTER_KEY,
    authorization,
    bearer_key,
    method_path,
)
from engram_cli.engine.store import Store
from engram_cli.errors import EngramError
from engram_cli.rpc import ext_svc, svc
from engram_cli.server.extension import ExtensionServicer, started_info
from engram_cli.server.servicer import EngramServicer
from engram_cli.server.tls import ServerTls, server_credentials
from engram_cli.tuning.server_config import CONFIG_NAME, ServerConfig

log = logging.getLogger("engram.server")
SERVER_FILE = "server.json"
GRACE_SECONDS = 10.0
_UNTRACKED = (method_path(HEALTH_SERVICE, ""), f"/{REFLECTION_PACKAGE}.")


@dataclass
class ServeOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 50051
    idle_timeout_s: float = 0.0  # 0: run until stopped
    api_keys: tuple[str, ...] = ()
    tls: ServerTls | None = None  # None: plaintext
    max_workers: int = 32
    extra: dict[str, Any] = field(default_factory=dict)


# Write RPCs hold a worker thread while they wait for their commit. Past this many at
# once a write is pushed back (RESOURCE_EXHAUSTED + retry-after-ms) so that the remaining
# workers stay free for reads: reads keep being served while writes wait.
_WRITE_METHODS = frozenset({
    method_path(ENGRAM_SERVICE, "Remember"), method_path(ENGRAM_SERVICE, "StreamingRemember"),
    method_path(EXTENSION_SERVICE, "BatchRemember"),
})
_READ_RESERVE = 0.25  # fraction of the worker threads writes may not take


class _Gate(grpc.ServerInterceptor):
    """Checks the API key (when the server has keys), records activity for the idle timer
    and admits write RPCs while worker threads are left for reads. Health checks and
    reflection are always open and do not count as activity."""

    def __init__(self, api_keys: tuple[str, ...], on_activity: Callable[[], None],
                 write_slots: int = 24, retry_after_ms: Callable[[], int] = lambda: 100
                 ) -> None:
        self._keys = tuple(k.encode() for k in api_keys)
        self._on_activity = on_activity
        self._write_slots = threading.BoundedSemaphore(max(1, write_slots))
        self._retry_after_ms = retry_after_ms

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong API key (send metadata "
                          f"'{AUTHORIZATION_KEY}: {authorization('KEY')}')")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(
            lambda it, ctx: deny(None, ctx))

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        method = details.method or ""
        if method.startswith(_UNTRACKED):
            return continuation(details)
        self._on_activity()
        if self._keys:
            auth = dict(details.invocation_metadata or ()).get(AUTHORIZATION_KEY, "")
            if not self._known(bearer_key(auth)):
                return self._deny_stream if "Streaming" in method else self._deny
        handler = continuation(details)
        if method in _WRITE_METHODS and handler is not None:
            return self._admitted(handler)
        return handler

    def _known(self, key: str) -> bool:
        # Every stored key is compared, each in constant time, so the answer's timing says
        # nothing about how much of a key was right or which key came close.
        given = key.encode()
        found = False
        for known in self._keys:
            found |= hmac.compare_digest(given, known)
        return bool(key) and found

    def _push_back(self, context: grpc.ServicerContext) -> None:
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(self._retry_after_ms())),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      "too many writes in flight (retry after the hinted delay)")

    def _admitted(self, handler: Any) -> Any:
        slots = self._write_slots
        kwargs = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                if not slots.acquire(blocking=False):
                    self._push_back(context)
                try:
                    return inner(request, context)
                finally:
                    slots.release()

            return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            def stream(request_iterator: Any, context: grpc.ServicerContext) -> Any:
                if not slots.acquire(blocking=False):
                    self._push_back(context)
                try:
                    yield from inner_stream(request_iterator, context)
                finally:
                    slots.release()

            return grpc.stream_stream_rpc_method_handler(stream, **kwargs)
        return handler


class EngramServer:
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.data_dir = Path(options.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = ServerConfig(self.data_dir / CONFIG_NAME)
        self.store = Store(self.data_dir, self.config.settings)
        self.last_activity = time.monotonic()
        self.port = 0
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        max_bytes = self.config.settings.max_message_bytes
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=options.max_workers,
                                       thread_name_prefix="engram-rpc"),
            interceptors=[_Gate(
                options.api_keys, self._touch,
                write_slots=options.max_workers - max(2, int(options.max_workers * _READ_RESERVE)),
                retry_after_ms=self.store.retry_after_ms)],
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                # One server per port: without this a second server could share the port.
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
            maximum_concurrent_rpcs=options.max_workers * 8,
        )
        svc.add_EngramServiceServicer_to_server(EngramServicer(self.store), self._grpc)
        ext_svc.add_ExtensionServiceServicer_to_server(
            ExtensionServicer(self.store, self.config, started_info(options.idle_timeout_s)),
            self._grpc)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        reflection.enable_server_reflection(
            (ENGRAM_SERVICE, EXTENSION_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME),
            self._grpc,
        )

    def _touch(self) -> None:
        self.last_activity = time.monotonic()

    @property
    def address(self) -> str:
        host = self.options.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def security(self) -> str:
        """How the listener is protected, for the "listening on" line."""
        return f" with {self.options.tls.describe()}" if self.options.tls else ""

    def start(self) -> int:
        host = self.options.host
        bind = f"[{host}]:{self.options.port}" if ":" in host else f"{host}:{self.options.port}"
        try:
            if self.options.tls is None:
                self.port = self._grpc.add_insecure_port(bind)
            else:
                self.port = self._grpc.add_secure_port(bind,
                                                       server_credentials(self.options.tls))
        except EngramError:
            self.store.close()
            raise
        except RuntimeError as exc:
            self.store.close()
            raise EngramError(f"cannot listen on {bind}: {exc}",
                              "is another server on that port? pick another with --port") from exc
        self._grpc.start()
        for name in HEALTH_CHECKED:
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._write_server_file()
        if self.options.idle_timeout_s > 0:
            threading.Thread(target=self._idle_watch, daemon=True, name="idle-watch").start()
        log.info("listening on %s%s (data: %s)", self.address, self.security, self.data_dir)
        return self.port

    def _write_server_file(self) -> None:
        info = {"pid": os.getpid(), "address": self.address, "port": self.port,
                "data_dir": str(self.data_dir), "started_at": time.time()}
        (self.data_dir / SERVER_FILE).write_bytes(orjson.dumps(info))

    def _idle_watch(self) -> None:
        timeout = self.options.idle_timeout_s
        while not self._stopped.wait(min(5.0, timeout / 4)):
            if time.monotonic() - self.last_activity > timeout:
                log.info("idle for %.0f s: stopping", timeout)
                self.stop()
                return

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._health.enter_graceful_shutdown()
            self._grpc.stop(grace).wait()
            self.store.close()
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / SERVER_FILE).unlink()
            self._stopped.set()

    def wait(self) -> None:
        self._stopped.wait()


def serve_forever(options: ServeOptions, on_ready: Callable[[EngramServer], None]) -> int:
    """Run until SIGINT/SIGTERM or the idle timeout; answers the exit code (0)."""
    server = EngramServer(options)
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop_requested.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        on_ready(server)
        while not stop_requested.is_set() and not server._stopped.is_set():
            stop_requested.wait(0.5)
        server.stop()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0
