"""Our Engram-compatible server: build, run, stop cleanly.

Serves engram.v1.EngramService, our ExtensionService, the standard gRPC health service
and server reflection. SIGINT/SIGTERM: stop accepting, let in-flight calls finish (up to
the grace period), close the store (queued writes commit first), exit 0.
"""

from __future__ import annotations

import contextlib
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
from engram_cli.engine.model import resolve_space
from engram_cli.engine.store import DB_NAME, LOCK_NAME, Store
from engram_cli.errors import EngramError, PermissionDenied
from engram_cli.files import exposure_warning, private_dir, write_atomic
from engram_cli.rpc import ext_svc, svc
from engram_cli.server.cores import one_blas_thread
from engram_cli.server.errors import abort_with
from engram_cli.server.extension import REQUEST_PARSERS, ExtensionServicer, started_info
from engram_cli.server.guard import Guard, StreamSlots
from engram_cli.server.keys import EVERY_SPACE, KeyRing, allows, read_key_file
from engram_cli.server.memory import limit_arenas, trim_periodically
from engram_cli.server.servicer import EngramServicer
from engram_cli.server.tls import ServerTls, server_credentials
from engram_cli.tuning.server_config import CONFIG_NAME, ServerConfig

log = logging.getLogger("engram.server")
SERVER_FILE = "server.json"
# What a store's warning looks at: the files that hold memories, settings or the address.
STORE_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", LOCK_NAME, SERVER_FILE,
               CONFIG_NAME, "server.log", "vectors", "imports")
GRACE_SECONDS = 10.0
_UNTRACKED = (method_path(HEALTH_SERVICE, ""), f"/{REFLECTION_PACKAGE}.")


@dataclass
class ServeOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 50051
    idle_timeout_s: float = 0.0  # 0: run until stopped
    # Keys that may use every space; never in a log line.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    key_file: Path | None = None  # keys scoped to spaces (server/keys.py); SIGHUP rereads
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
# What a key scoped to some spaces may not do: change the whole server, copy every space
# (a backup is the whole store), or look at every space at once (Introspect with an empty
# space id answers for the whole server).
_EVERY_SPACE_METHODS = frozenset({method_path(EXTENSION_SERVICE, "ApplySettings"),
                                  method_path(EXTENSION_SERVICE, "Backup")})
# Answers listing every space: a key scoped to some sees only those (by a `spaces` field
# of items with a `name`).
_LISTS_SPACES = frozenset({method_path(EXTENSION_SERVICE, "ListSpaces")})
_WHOLE_SERVER_WHEN_EMPTY = frozenset({method_path(ENGRAM_SERVICE, "Introspect")})
# HTTP/2 streams (calls in flight) one client connection may have; more wait at the client.
MAX_STREAMS_PER_CONNECTION = 128
# Pings on an otherwise silent connection find a peer that went away without closing it.
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000


class _Gate(grpc.ServerInterceptor):
    """Checks the API key (when the server has keys) and, for a key scoped to some
    spaces, the space every request names; records activity for the idle timer and admits
    write RPCs while worker threads are left for reads. Health checks and reflection are
    always open and do not count as activity."""

    def __init__(self, keys: Callable[[], KeyRing], on_activity: Callable[[], None],
                 write_slots: int = 24, retry_after_ms: Callable[[], int] = lambda: 100,
                 guard: Guard | None = None) -> None:
        self._guard = guard or Guard(StreamSlots(16, lambda: 0.0))
        self._keys = keys  # called per request: a SIGHUP reload swaps the ring
        self._on_activity = on_activity
        self._write_slots = threading.BoundedSemaphore(max(1, write_slots))
        self._retry_after_ms = retry_after_ms
        self._calls: dict[str, int] = {}  # method name -> calls received (Introspect)
        self._calls_lock = threading.Lock()

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong API key (send metadata "
                          f"'{AUTHORIZATION_KEY}: {authorization('KEY')}')")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(
            lambda it, ctx: deny(None, ctx))

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        method = details.method or ""
        wrap = self._guard.wrap
        if method.startswith(_UNTRACKED):
            return wrap(method, continuation(details))
        self._on_activity()
        name = method.rsplit("/", 1)[-1]
        with self._calls_lock:
            self._calls[name] = self._calls.get(name, 0) + 1
        ring = self._keys()
        spaces: frozenset[str] | None = None
        if ring:
            auth = dict(details.invocation_metadata or ()).get(AUTHORIZATION_KEY, "")
            spaces = ring.grants(bearer_key(auth))
            if spaces is None:
                return self._deny_stream if "Streaming" in method else self._deny
        handler = continuation(details)
        if handler is None:
            return None
        if spaces is not None and EVERY_SPACE not in spaces:
            handler = _scoped(handler, method, spaces)
        if method in _WRITE_METHODS:
            handler = self._admitted(handler)
        # Last: the guard's deserializer turns bytes that do not parse into INVALID_ARGUMENT.
        return wrap(method, handler)

    def calls(self) -> dict[str, int]:
        """Calls received per method since the server started (health and reflection
        not counted): how a balancing client spread its calls shows here."""
        with self._calls_lock:
            return dict(self._calls)

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


def _check_space(request: Any, method: str, spaces: frozenset[str]) -> None:
    """Raise PermissionDenied naming the space unless a key granting `spaces` may make
    this request. The deserialized request is read, so every RPC that names a space (ours
    and engram.v1's, each item of a stream) is checked in this one place."""
    space_id = getattr(request, "memory_space_id", None)
    granted = ", ".join(sorted(spaces)) or "none"
    if method in _EVERY_SPACE_METHODS or (space_id == "" and method in _WHOLE_SERVER_WHEN_EMPTY):
        raise PermissionDenied(
            f"{method.rsplit('/', 1)[-1]} {'of every space ' if space_id == '' else ''}"
            f"needs an API key granted every space ('*'); this key may use: {granted}")
    if space_id is None:
        return  # names no space and changes nothing (ServerInfo, GetSettings)
    space = resolve_space(space_id)  # InvalidArgument for a malformed id
    if not allows(spaces, space):
        raise PermissionDenied(f"this API key may not use memory space '{space}' "
                               f"(it may use: {granted})")


def _scoped(handler: Any, method: str, spaces: frozenset[str]) -> Any:
    """`handler`, checking the space of each request it receives first."""
    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                _check_space(request, method, spaces)
            except EngramError as exc:
                abort_with(context, exc)
            response = inner(request, context)
            if method in _LISTS_SPACES and response is not None:
                kept = [s for s in response.spaces if allows(spaces, s.name)]
                del response.spaces[:]
                response.spaces.extend(kept)
            return response

        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.stream_stream is not None:
        inner_stream = handler.stream_stream

        def stream(request_iterator: Any, context: grpc.ServicerContext) -> Any:
            # Like upstream, the first request outside the key's spaces ends the stream
            # with PERMISSION_DENIED (the servicers raise what reading requests raised);
            # those before it were handled.
            def checked() -> Any:
                for request in request_iterator:
                    _check_space(request, method, spaces)
                    yield request

            return inner_stream(checked(), context)

        return grpc.stream_stream_rpc_method_handler(stream, **kwargs)

    # engram.v1 and our service have no other shapes; refuse rather than pass unchecked.
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        abort_with(context, PermissionDenied(
            "this call needs an API key granted every space ('*')"))

    return grpc.unary_unary_rpc_method_handler(refuse)


class EngramServer:
    def __init__(self, options: ServeOptions) -> None:
        limit_arenas()  # before the store and the RPC threads allocate
        one_blas_thread()
        self.options = options
        self.data_dir = private_dir(Path(options.data_dir), own=False)
        warning = exposure_warning(self.data_dir, STORE_FILES)
        if warning:
            log.warning("%s", warning)
        self.config = ServerConfig(self.data_dir / CONFIG_NAME)
        self.store = Store(self.data_dir, self.config.settings)
        self.last_activity = time.monotonic()
        self.port = 0
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self.keys = self._read_keys()
        settings = self.config.settings
        max_bytes = settings.max_message_bytes
        # Streams hold their thread while they last: the pool has max_streams threads
        # beyond the unary calls' max_workers, and streams may take no more than those.
        self.streams = StreamSlots(settings.max_streams,
                                   lambda: self.store.settings.stream_idle_timeout_s)
        self.guard = Guard(self.streams, REQUEST_PARSERS)
        idle_ms = int(settings.connection_idle_timeout_s * 1000)
        gate = _Gate(
            lambda: self.keys, self._touch,
            write_slots=options.max_workers - max(2, int(options.max_workers * _READ_RESERVE)),
            retry_after_ms=self.store.retry_after_ms, guard=self.guard)
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=options.max_workers + settings.max_streams,
                                       thread_name_prefix="engram-rpc"),
            interceptors=[gate],
            options=[
                ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
                ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
                *([("grpc.max_connection_idle_ms", idle_ms)] if idle_ms > 0 else []),
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                # One server per port: without this a second server could share the port.
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
            maximum_concurrent_rpcs=options.max_workers * 8 + settings.max_streams,
        )
        svc.add_EngramServiceServicer_to_server(EngramServicer(self.store, gate.calls),
                                                self._grpc)
        ext_svc.add_ExtensionServiceServicer_to_server(
            ExtensionServicer(self.store, self.config, started_info(options.idle_timeout_s)),
            self._grpc)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        reflection.enable_server_reflection(
            (ENGRAM_SERVICE, EXTENSION_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME),
            self._grpc,
        )

    def _read_keys(self) -> KeyRing:
        path = self.options.key_file
        scoped = read_key_file(path) if path is not None else None
        return KeyRing.build(self.options.api_keys, scoped)

    def reload_keys(self) -> bool:
        """Read the key file again (SIGHUP). A file that became unreadable, open to others
        or invalid is logged and the keys in use stay: a typo must not lock everyone out,
        nor let everyone in."""
        if self.options.key_file is None:
            log.info("SIGHUP: no key file to reread")
            return True
        try:
            keys = self._read_keys()
        except EngramError as exc:
            log.warning("key file not reloaded, the previous keys stay in use: %s (%s)",
                        exc, exc.hint)
            return False
        self.keys = keys
        log.info("key file reloaded: %d key(s)", len(keys.entries))
        return True

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
        self.streams.start()
        trim_periodically(self._stopped, idle_s=lambda: time.monotonic() - self.last_activity,
                          release=self.store.release_memory)
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
        write_atomic(self.data_dir / SERVER_FILE, orjson.dumps(info))

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
            self.streams.stop()
            self._grpc.stop(grace).wait()
            self.store.close()
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / SERVER_FILE).unlink()
            self._stopped.set()

    def wait(self) -> None:
        self._stopped.wait()


def serve_forever(options: ServeOptions, on_ready: Callable[[EngramServer], None]) -> int:
    """Run until SIGINT/SIGTERM or the idle timeout, rereading the key file on SIGHUP;
    answers the exit code (0)."""
    server = EngramServer(options)
    # What the signals ask for, as plain flags. A handler runs on the main thread between
    # two bytecodes, also while that thread holds the lock of an Event it waits on (inside
    # Event.wait): a handler that set that Event waited for itself forever, and a SIGTERM
    # in a test once left a server running so. The loop below reads the flags at least
    # every 0.2 s.
    requested = {"stop": False, "reload": False}

    def on_signal(signum: int, frame: Any) -> None:
        requested["stop"] = True

    def on_hangup(signum: int, frame: Any) -> None:
        requested["reload"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    try:
        server.start()
        on_ready(server)
        while not requested["stop"] and not server._stopped.wait(0.2):
            if requested["reload"]:
                requested["reload"] = False
                server.reload_keys()
        server.stop()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0
