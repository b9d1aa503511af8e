"""The dry run's sender: sends nothing, judges each record as the bulk sender would."""

from __future__ import annotations

from collections.abc import Iterable

from engram_cli.client.batching import HEADROOM_BYTES, Entry, Listener
from engram_cli.client.bulk import too_large
from engram_cli.config import DEFAULT_MAX_MESSAGE_BYTES


class DrySender:
    """A dry run's sender: sends nothing. A record counts as stored unless it is too large
    for a request to a server with the default message size limit; then it is rejected,
    as BulkSender would reject it."""

    mode = "dry-run"

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.max_record_bytes = DEFAULT_MAX_MESSAGE_BYTES - HEADROOM_BYTES
        self.batches = 0
        self.retried = 0
        self.latencies: list[float] = []

    def connect(self) -> None:
        pass

    def send(self, records: Iterable[Entry]) -> bool:
        limit = self.max_record_bytes
        stored = self.listener.stored
        for entry in records:
            size = len(entry.framed)
            if size > limit:
                self.listener.rejected(entry, too_large(size, limit))
            else:
                stored(1, {})
        return True

    def stop(self) -> None:
        pass  # nothing is in flight; the caller's records end when it stops

    def unsettled(self) -> dict[int, Entry]:
        return {}

    def close(self) -> None:
        pass
