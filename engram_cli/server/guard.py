"""What every RPC handler is wrapped in before it runs: requests it must never see, and
streams that must not take the worker threads away from unary calls.

* Malformed bytes. gRPC deserializes a request before the handler runs; a deserializer
  that raises makes gRPC answer INTERNAL and log a traceback per request. Ours never
  raises: it hands the handler a `Malformed` marker, which is answered INVALID_ARGUMENT
  with one log line per interval (`RateLimitedLog`), however many arrive.
* Streams. The sync server runs each call on a worker thread for as long as the call
  lasts, so an idle stream holds a thread. Streaming calls (any side streaming) share a
  fixed number of slots (`max_streams`); past it a new stream is answered
  RESOURCE_EXHAUSTED with retry-after-ms at once, and the server's thread pool has
  `max_streams` threads more than the unary calls need, so unary calls always find one.
  A stream that sends no request for `stream_idle_timeout_s` is cancelled (`StreamSlots`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

from engram_cli.contract import RETRY_AFTER_KEY

log = logging.getLogger("engram.server")
LOG_INTERVAL_S = 10.0
STREAM_RETRY_AFTER_MS = 1000


class RateLimitedLog:
    """One log line per kind of event per interval; the next line says how many were not
    logged in between."""

    def __init__(self, logger: logging.Logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self._log = logger
        self._interval = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> bool:
        """Log `message` unless `kind` was logged within the interval; answers whether it
        was logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._quiet[kind] = self._quiet.get(kind, 0) + 1
                return False
            self._last[kind] = now
            quiet = self._quiet.pop(kind, 0)
        more = f" ({quiet} more since the last such line)" if quiet else ""
        self._log.warning("%s%s", message, more)
        return True


class Malformed:
    """Stands for a request whose bytes did not parse as the method's message."""

    __slots__ = ("error", "size")

    def __init__(self, error: str, size: int) -> None:
        self.error = error
        self.size = size


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError, a RecursionError of a deep message
            return Malformed(f"{type(exc).__name__}: {exc}"[:200], len(data))

    return deserialize


class StreamSlots:
    """At most `limit` streaming calls at once; idle request streams are cancelled."""

    def __init__(self, limit: int, idle_timeout_s: Callable[[], float]) -> None:
        self.limit = max(1, limit)
        self._slots = threading.BoundedSemaphore(self.limit)
        self._idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()
        self._open: dict[int, tuple[grpc.ServicerContext, list[float]]] = {}
        self._stopped = threading.Event()
        self.refused = 0
        self.reaped = 0
        self._reaper: threading.Thread | None = None

    @property
    def in_use(self) -> int:
        with self._lock:
            return len(self._open)

    def start(self) -> None:
        self._reaper = threading.Thread(target=self._reap, daemon=True, name="stream-reaper")
        self._reaper.start()

    def stop(self) -> None:
        self._stopped.set()

    def acquire(self, context: grpc.ServicerContext) -> list[float]:
        """Take a slot for this call or end it RESOURCE_EXHAUSTED; answers the call's
        last-activity cell (the request iterator refreshes it)."""
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            context.set_trailing_metadata(((RETRY_AFTER_KEY, str(STREAM_RETRY_AFTER_MS)),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many streams open ({self.limit}): retry after the hinted "
                          "delay, or use the unary calls")
        seen = [time.monotonic()]
        with self._lock:
            self._open[id(context)] = (context, seen)
        return seen

    def release(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self._open.pop(id(context), None)
        self._slots.release()

    def _reap(self) -> None:
        while not self._stopped.wait(1.0):
            timeout = self._idle_timeout_s()
            if timeout <= 0:
                continue
            now = time.monotonic()
            with self._lock:
                idle = [ctx for ctx, seen in self._open.values() if now - seen[0] > timeout]
            for ctx in idle:
                self.reaped += 1
                ctx.cancel()
            if idle:
                log.info("closed %d stream(s) idle for more than %g s", len(idle), timeout)


def _requests(request_iterator: Iterator[Any], seen: list[float], bad: list[Malformed]
              ) -> Iterator[Any]:
    from engram_cli.errors import InvalidArgument

    for request in request_iterator:
        seen[0] = time.monotonic()
        if isinstance(request, Malformed):
            bad.append(request)
            raise InvalidArgument(f"malformed request ({request.size} bytes): "
                                  f"{request.error}", "send the method's protobuf message")
        yield request


class Guard:
    """Rebuilds method handlers: safe deserializers, stream slots. `parsers`: a method's
    own deserializer in place of its generated one (by full method path), for a request
    the handler reads through another message of the same wire shape."""

    def __init__(self, streams: StreamSlots,
                 parsers: Mapping[str, Callable[[bytes], Any]] | None = None) -> None:
        self.streams = streams
        self.parsers = dict(parsers or {})
        self.malformed_log = RateLimitedLog(log)
        self.malformed = 0

    def _refuse(self, method: str, bad: Malformed, context: grpc.ServicerContext) -> None:
        self.malformed += 1
        self.malformed_log.warning(
            "malformed", f"malformed request to {method} ({bad.size} bytes): {bad.error}: "
            "answered INVALID_ARGUMENT")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"malformed request ({bad.size} bytes): {bad.error}")

    def wrap(self, method: str, handler: Any) -> Any:
        if handler is None:
            return None
        kwargs = {"request_deserializer": _safe(self.parsers.get(method,
                                                                 handler.request_deserializer)),
                  "response_serializer": handler.response_serializer}
        streams = self.streams
        refuse = self._refuse

        if handler.unary_unary is not None:
            uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, Malformed):
                    refuse(method, request, context)
                return uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)

        if handler.unary_stream is not None:
            us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, Malformed):
                    refuse(method, request, context)
                streams.acquire(context)
                try:
                    yield from us(request, context)
                finally:
                    streams.release(context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)

        if handler.stream_unary is not None:
            su = handler.stream_unary

            def stream_unary(request_iterator: Any, context: grpc.ServicerContext) -> Any:
                seen = streams.acquire(context)
                bad: list[Malformed] = []
                try:
                    return su(_requests(request_iterator, seen, bad), context)
                except Exception:
                    if bad:
                        refuse(method, bad[0], context)
                    raise
                finally:
                    streams.release(context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)

        ss = handler.stream_stream

        def stream_stream(request_iterator: Any, context: grpc.ServicerContext) -> Any:
            seen = streams.acquire(context)
            bad: list[Malformed] = []
            try:
                yield from ss(_requests(request_iterator, seen, bad), context)
            except Exception:
                # The handler may have turned the InvalidArgument into its own abort.
                if bad:
                    refuse(method, bad[0], context)
                raise
            finally:
                streams.release(context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
