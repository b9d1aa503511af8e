"""Engine exceptions -> gRPC status, in one place."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from engram_cli.contract import RETRY_AFTER_KEY
from engram_cli.errors import (
    AuthError,
    EngramError,
    InvalidArgument,
    NotFound,
    Overloaded,
    PermissionDenied,
    SettingsError,
    StoreClosed,
    Unsupported,
)

log = logging.getLogger("engram.server")
F = TypeVar("F", bound=Callable[..., Any])


def _status_of(exc: EngramError) -> grpc.StatusCode:
    if isinstance(exc, (InvalidArgument, SettingsError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, Unsupported):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, StoreClosed):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, AuthError):
        return grpc.StatusCode.UNAUTHENTICATED
    return grpc.StatusCode.INTERNAL


def abort_with(context: grpc.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, EngramError):
        message = str(exc) + (f" ({exc.hint})" if exc.hint else "")
        if isinstance(exc, Overloaded):
            context.set_trailing_metadata(((RETRY_AFTER_KEY, str(exc.retry_after_ms)),))
        context.abort(_status_of(exc), message)
    log.exception("internal error")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def unary(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:
            # context.abort raises an Exception subclass of its own; let it through.
            if type(exc).__name__ == "_AbortionError" or isinstance(exc, grpc.RpcError):
                raise
            abort_with(context, exc)

    return wrapper  # type: ignore[return-value]


def streaming(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            if type(exc).__name__ == "_AbortionError" or isinstance(exc, grpc.RpcError):
                raise
            abort_with(context, exc)

    return wrapper  # type: ignore[return-value]
