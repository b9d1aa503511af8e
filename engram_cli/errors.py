"""Every exception the library raises on purpose. The CLI translates them once, at the edge.

Each carries an exit code and an optional hint; `str(err)` says what failed, `hint` says
what to do about it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # finished, but some records were rejected
EXIT_INTERRUPTED = 130


class EngramError(Exception):
    """Base of all errors engram-cli raises on purpose."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(EngramError):
    """The command line or a setting's value is wrong."""

    exit_code = EXIT_USAGE


class InvalidArgument(EngramError):
    """A request names something invalid (a space id, a memory field, a cue)."""


class NotFound(EngramError):
    """A memory or space that a request names does not exist."""


class Overloaded(EngramError):
    """The server's write queue is full; retry after `retry_after_ms`."""

    def __init__(self, message: str, retry_after_ms: int, hint: str = "") -> None:
        super().__init__(message, hint)
        self.retry_after_ms = retry_after_ms


class StoreFull(Overloaded):
    """The store's disk (or its max_store_bytes cap) is full: writes are refused until
    there is room again; retry after `retry_after_ms`."""


class StoreClosed(EngramError):
    """The store is shutting down and takes no more writes."""


class SettingsError(UsageError):
    """A setting key is unknown or its value is out of range."""


class ServerUnavailable(EngramError):
    """No Engram server answers at the address."""


class AuthError(EngramError):
    """The server refused the API key (missing, wrong, or without rights to the space)."""


class PermissionDenied(AuthError):
    """The API key is valid but does not grant the space (or the call) asked for."""


class TlsError(EngramError):
    """A TLS certificate or key cannot be used, or the TLS handshake with the server failed
    (unknown CA, name mismatch, expired, client certificate missing or refused)."""


class Unsupported(EngramError):
    """The server does not serve an RPC this command needs."""


class UnsafePath(EngramError):
    """A path we would write (or read back) is a symbolic link or something else not ours:
    refused, so that whatever it points at stays untouched."""


class InputError(EngramError):
    """An input file cannot be read at all (missing, unreadable, unknown format)."""


class DamagedInput(InputError):
    """An input breaks off part way (a truncated or corrupt gzip): what came before it was
    read, the rest cannot be."""


class EmbeddingRequired(EngramError):
    """The server refuses memories without an embedding of its dimension (upstream Engram
    needs 768 floats on every memory); the import stopped at its first batch."""


class MaxErrorsExceeded(EngramError):
    """More records were rejected than --max-errors allows; the import stopped."""
