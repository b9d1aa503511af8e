"""The bulk sender: records in, batches out. It cuts the records it is handed into
batches (records and bytes per batch, adaptive or fixed, within the server's limits),
sends them concurrently over a channel pool with a bounded amount in flight, retries
what failed and only that, splits a batch refused as a whole down to the bad record,
falls back to `StreamingRemember` for servers without our batch RPC (upstream Engram),
and tells its caller what became of every record (`Listener`).

Threading: gRPC completes calls on its own threads; their callbacks only put the outcome
on a queue. Everything else (retries, accounting, what the caller hears) runs on the
caller's thread inside `send`, so none of it needs a lock.

Requests are built by concatenation: a memory serialized once (`frame`) is the same bytes
inside a `BatchRememberRequest` (field 2) and a `RememberRequest` (field 2), so a retry of
some items of a batch is a join of their bytes, not a re-encode.
"""

from __future__ import annotations

import functools
import heapq
import queue
import random
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from engram_cli.client.batching import (
    COMPACT,
    HEADROOM_BYTES,
    INFLIGHT_BYTES,
    INFLIGHT_RECORDS,
    MAX_AUTO_BATCH,
    SOFT_BATCH_BYTES,
    UPSTREAM_MAX_MESSAGE_BYTES,
    BatchSizer,
    Entry,
    Listener,
    SendOptions,
    embedding_refusal,
    space_dimension_refusal,
    space_header,
)
from engram_cli.client.connection import retry_after_ms, translate
from engram_cli.client.fallback import stream_call, unary_calls
from engram_cli.client.pool import ChannelPool
from engram_cli.config import DEFAULT_MAX_MESSAGE_BYTES, is_multi_endpoint
from engram_cli.contract import STORE_FULL_DETAIL
from engram_cli.errors import EngramError, ServerUnavailable, Unsupported
from engram_cli.rpc import ext

S = grpc.StatusCode
TRANSIENT = frozenset({S.UNAVAILABLE, S.RESOURCE_EXHAUSTED, S.DEADLINE_EXCEEDED, S.ABORTED,
                       S.CANCELLED})
_TRANSIENT_VALUES = frozenset(c.value[0] for c in TRANSIENT)

PROBE_TIMEOUT_S = 10.0
_BACKOFF_BASE_S = 0.05
_BACKOFF_CAP_S = 5.0
_OUTCOME_NAMES: dict[int, str] = {
    ext.ITEM_OUTCOME_CREATED: "created", ext.ITEM_OUTCOME_UPDATED: "updated",
    ext.ITEM_OUTCOME_UNCHANGED: "unchanged"}




def too_large(size: int, limit: int) -> str:
    return (f"record is {size} bytes encoded; the largest message the server takes is "
            f"{limit} bytes")


class _Batch:
    """Records of one source cut as one request; settled when every call carrying some
    of them (the first, retries of a part, halves of a split) is."""

    __slots__ = ("count", "done", "entries", "nbytes", "parts", "source")

    def __init__(self, source: int, entries: list[Entry]) -> None:
        self.source = source
        self.entries = entries
        self.count = 0
        self.nbytes = 0
        self.parts = 0  # calls not yet settled
        self.done = False


class _Send:
    """One call: a batch, or the part of it still to store."""

    __slots__ = ("attempt", "batch", "entries", "first_failure", "sent_at")

    def __init__(self, batch: _Batch, entries: list[Entry]) -> None:
        self.batch = batch
        self.entries = entries
        self.attempt = 0
        self.first_failure: float | None = None
        self.sent_at = 0.0


class BulkSender:
    """Sends the records it is handed in batches it cuts and sizes itself; tells its
    listener, on the caller's thread, what became of each record.

        sender = BulkSender(pool, space, options, listener)
        sender.connect()
        complete = sender.send(records)  # any iterable of Entry

    Batches never exceed the batch size (fixed, or adapting to latency and server pressure
    between MIN_BATCH and MAX_AUTO_BATCH), the server's max_batch, or the bytes one request
    may carry; what is in flight stays within 2 x pool calls and INFLIGHT_RECORDS /
    INFLIGHT_BYTES (or two batches, when two batches are more)."""

    def __init__(self, pool: ChannelPool, space: str, options: SendOptions,
                 listener: Listener, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.pool = pool
        self.options = options
        self.listener = listener
        self.metadata = tuple(metadata)
        self._header = space_header(space)
        self._batch_header = self._header + COMPACT
        self.mode = "batch"
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
        self.server_max_batch = MAX_AUTO_BATCH
        self.sizer = BatchSizer(options.batch, MAX_AUTO_BATCH)
        self.batches = 0  # batches cut; a retry or a split is not a new one
        self.retried = 0
        self.latencies: list[float] = []
        self.pressure = 0.0
        self.fatal: EngramError | None = None
        self._told_unavailable = self._told_full = False  # said once: server gone, store full
        self._stopping = False
        self._q: queue.SimpleQueue[tuple[_Send, Any, Any]] = queue.SimpleQueue()
        self._inflight = 0
        self._retries: list[tuple[float, int, _Send]] = []
        self._seq = 0
        # Batches cut and not yet settled, in the order cut (a settled one leaves once
        # those before it have): what `unsettled` answers from.
        self._order: deque[_Batch] = deque()
        self._held_records = 0  # sent and not yet settled
        self._held_bytes = 0
        # Memory ids in batches sent and not yet settled (how many of each): a later
        # record of one of them waits until they are, or batches on other channels (and
        # retries) could store an older version of a memory over a newer one.
        self._held_keys: dict[str, int] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._sent_records = 0
        self._stored_any = False  # a refusal before any store may be about the whole input
        self._started = time.monotonic()

    # -- set-up ------------------------------------------------------------------------

    def connect(self) -> None:
        """Ask the server for its limits and whether it has our batch RPC."""
        lane = self.pool.lanes[0]
        try:
            info = lane.server_info(ext.ServerInfoRequest(), metadata=self.metadata,
                                    timeout=PROBE_TIMEOUT_S)
        except grpc.RpcError as err:
            if err.code() != S.UNIMPLEMENTED:  # type: ignore[attr-defined]
                raise translate(err, self.pool.address, "ServerInfo", self.pool.tls) from None
            self._use_stream(announce=self.options.stream is None)
        else:
            if info.max_message_bytes:
                self.max_message_bytes = min(int(info.max_message_bytes),
                                             DEFAULT_MAX_MESSAGE_BYTES)
            if info.max_batch:
                self.server_max_batch = int(info.max_batch)
            if self.options.stream:
                self._use_stream(announce=False)
        high = min(self.server_max_batch, MAX_AUTO_BATCH if not self.options.batch
                   else self.options.batch)
        self.sizer = BatchSizer(self.options.batch, high)
        if self.options.batch and self.options.batch > self.server_max_batch:
            self.listener.notice(f"--batch {self.options.batch} is over the server's "
                                 f"max_batch; sending {self.server_max_batch} per batch")

    def _use_stream(self, announce: bool) -> None:
        if self.options.stream is False:
            raise Unsupported(
                f"the server at {self.pool.address} has no BatchRemember (an upstream Engram "
                "server?)", "drop --no-stream to send with StreamingRemember")
        if self.mode == "batch":
            # Several upstream endpoints are a cluster, which proxies unary calls to each
            # space's owner but handles a StreamingRemember where it lands: unary Remember
            # there, unless --stream asked for the stream.
            several = is_multi_endpoint(self.pool.address) and self.options.stream is None
            self.mode = "unary" if several else "stream"
            if self.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES:
                self.max_message_bytes = UPSTREAM_MAX_MESSAGE_BYTES
            self._executor = ThreadPoolExecutor(self.options.max_outstanding,
                                                thread_name_prefix="engram-stream")
            if several:
                self.listener.notice(
                    f"the servers at {self.pool.address} have no batch RPC (an upstream "
                    "Engram cluster?): sending with unary Remember, which any node passes "
                    "to the space's owner (StreamingRemember would not be)")
            elif announce:
                self.listener.notice(
                    f"the server at {self.pool.address} has no batch RPC (an upstream Engram "
                    "server?): sending with StreamingRemember")

    @property
    def max_record_bytes(self) -> int:
        """The largest framed memory a request can carry."""
        return self.max_message_bytes - HEADROOM_BYTES

    @property
    def max_batch_bytes(self) -> int:
        return min(SOFT_BATCH_BYTES, self.max_record_bytes)

    # -- the caller's side -------------------------------------------------------------

    def send(self, records: Iterable[Entry]) -> bool:
        """Send every record of `records` and wait until each is settled: stored, or
        rejected (refused by the server, or too large for a request). Answers True when
        all are; False after `stop` (what was not sent stays unsettled). Raises the error
        that ended sending - the server's, or one from `records` - once the calls in
        flight have been answered."""
        try:
            self._feed(records)
        except Exception:
            self._stopping = True
            self._drain()
            raise
        self._drain()
        if self.fatal is not None:
            raise self.fatal
        return not self._stopping

    def stop(self) -> None:
        """Send nothing more, no new batch and no retry; `send` returns once the calls in
        flight are answered."""
        self._stopping = True

    def unsettled(self) -> dict[int, Entry]:
        """For each source with records handed over and not yet settled, the first record
        of its earliest batch holding such records: every record of that source before it
        is settled."""
        firsts: dict[int, Entry] = {}
        for batch in self._order:
            if not batch.done and batch.source not in firsts:
                firsts[batch.source] = batch.entries[0]
        return firsts

    # -- cutting batches ---------------------------------------------------------------

    def _feed(self, records: Iterable[Entry]) -> None:
        batch: _Batch | None = None
        entries: list[Entry] = []
        source = nbytes = count = 0
        most, max_record, max_bytes = self._limits()
        held = self._held_keys
        for entry in records:
            size = len(entry.framed)
            if size > max_record:
                self.listener.rejected(entry, too_large(size, max_record))
                continue
            if entry.key in held:
                # An earlier version of this memory is on its way: send what is cut (it
                # holds no other version of it) and let the earlier one settle first.
                if batch is not None:
                    if not self._launch(batch, nbytes):
                        return
                    batch = None
                while entry.key in held and self._going():
                    self._pump(0.05)
                    self.listener.tick()
                if not self._going():
                    return
            if batch is not None and (nbytes + size > max_bytes or entry.source != source):
                if not self._launch(batch, nbytes):
                    return
                batch = None
            if batch is None:
                most, max_record, max_bytes = self._limits()
                source, nbytes, entries = entry.source, 0, []
                batch = _Batch(source, entries)
                self._order.append(batch)
            entries.append(entry)
            nbytes += size
            if len(entries) >= most:  # sent at once: the caller may stop before the next
                if not self._launch(batch, nbytes):
                    return
                batch = None
            count += 1
            if not count & 1023:
                self._pump(0)
                if self.fatal is not None:
                    return
        if batch is not None:
            self._launch(batch, nbytes)

    def _limits(self) -> tuple[int, int, int]:
        """Records per batch, bytes per record and bytes per batch, as they are now."""
        return self.sizer.size, self.max_record_bytes, self.max_batch_bytes

    def _launch(self, batch: _Batch, nbytes: int) -> bool:
        """Send a batch of `nbytes` once the window has room (and --rate allows). Answers
        False, sending nothing, if sending stopped or failed meanwhile: the batch then
        stays unsettled."""
        n = len(batch.entries)
        while self._window_full(n, nbytes) and self._going():
            self._pump(0.1)
            self.listener.tick()
        if self.options.rate > 0:
            due = self._started + (self._sent_records + n) / self.options.rate
            while (wait := due - time.monotonic()) > 0 and self._going():
                self._pump(min(wait, 0.1))
                self.listener.tick()
        if not self._going():
            return False
        self._sent_records += n
        self._held_records += n
        self._held_bytes += nbytes
        batch.count, batch.nbytes, batch.parts = n, nbytes, 1
        held = self._held_keys
        for e in batch.entries:
            if e.key is not None:
                held[e.key] = held.get(e.key, 0) + 1
        self.batches += 1
        self._dispatch(_Send(batch, batch.entries))
        self._pump(0)
        return True

    def _going(self) -> bool:
        return not self._stopping and self.fatal is None

    def _window_full(self, n: int, nbytes: int) -> bool:
        if self._inflight + len(self._retries) >= self.options.max_outstanding:
            return True
        return bool(self._held_records) and (
            self._held_records + n > max(INFLIGHT_RECORDS, 2 * n)
            or self._held_bytes + nbytes > max(INFLIGHT_BYTES, 2 * nbytes))

    def _dispatch(self, send: _Send) -> None:
        lane = self.pool.next()
        send.sent_at = time.monotonic()
        self._inflight += 1
        if self.mode == "batch":
            body = self._batch_header + b"".join([e.framed for e in send.entries])
            fut = lane.batch_remember.future(body, metadata=self.metadata,
                                             timeout=self.options.timeout_s)
            fut.add_done_callback(lambda f, s=send: self._q.put((s, f, None)))
        else:
            assert self._executor is not None
            call = unary_calls if self.mode == "unary" else stream_call
            requests = [self._header + e.framed for e in send.entries]
            self._executor.submit(call, lane, requests, self.metadata, self.options.timeout_s,
                                  functools.partial(self._answered, send))

    def _answered(self, send: _Send, answers: list[Any], error: BaseException | None) -> None:
        self._q.put((send, answers, error))

    # -- hearing back ------------------------------------------------------------------

    def _pump(self, timeout: float = 0.0) -> int:
        """Handle finished calls (waiting up to `timeout` for the first) and start due
        retries. Answers how many calls finished."""
        handled = 0
        now = time.monotonic()
        if self._retries:
            timeout = max(0.0, min(timeout, self._retries[0][0] - now))
        try:
            item = self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            item = None
        while item is not None:
            self._complete(*item)
            handled += 1
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                item = None
        now = time.monotonic()
        while self._retries and self._retries[0][0] <= now and self.fatal is None:
            _, _, send = heapq.heappop(self._retries)
            self._dispatch(send)
        return handled

    def _drain(self) -> None:
        """Wait until everything sent is settled. Once stopped (or failed) only the calls
        in flight are awaited; what waits for a retry stays unsent."""
        while self._inflight or (self._retries and self._going()):
            self._pump(0.1)
            self.listener.tick()
        self._retries.clear()

    def _complete(self, send: _Send, result: Any, error: Any) -> None:
        self._inflight -= 1
        latency = time.monotonic() - send.sent_at
        if isinstance(result, list):  # a stream's answers
            self._stream_answered(send, result, error, latency)
            return
        try:
            resp = result.result()
        except grpc.RpcError as err:
            self._failed(send, err)
            return
        except Exception as exc:  # e.g. a call cancelled because the channel closed
            self._set_fatal(EngramError(f"BatchRemember failed: {exc}"))
            return
        self._batch_answered(send, resp, latency)

    def _batch_answered(self, send: _Send, resp: Any, latency: float) -> None:
        entries = send.entries
        results = resp.results
        n = len(entries)
        self.latencies.append(latency)
        self.pressure = resp.pressure
        self.sizer.observe(n, latency, resp.pressure)
        compact = len(resp.outcomes) == n  # one outcome per item; results: the rejected
        if not self._stored_any and resp.rejected == n:
            # Every record of the first answer refused for the space's vector size would
            # be every record of the input: stop at once, as for a server that needs them.
            needs = space_dimension_refusal(
                self.pool.address, [r.error for r in results
                                    if r.outcome == ext.ITEM_OUTCOME_REJECTED])
            if needs is not None:
                self._set_fatal(needs)
                return
        self._stored_any = True
        if resp.rejected == 0 and (compact or len(results) == n):
            counts = Counter(resp.outcomes if compact else [r.outcome for r in results])
            self.listener.stored(n, {_OUTCOME_NAMES.get(k, "stored"): v
                                     for k, v in counts.items()})
            self._settle(send)
            return
        # Per item: its outcome, and for a rejected one the result saying why. An item
        # the answer does not account for is sent again (its id makes that safe).
        codes: list[int] = list(resp.outcomes) if compact else [0] * n
        why: dict[int, Any] = {}
        for r in results:
            i = r.index
            if not 0 <= i < n or i in why:
                continue
            if r.outcome == ext.ITEM_OUTCOME_REJECTED:
                why[i] = r
            if not compact:
                codes[i] = r.outcome
        retry: list[Entry] = []
        outcomes: Counter[str] = Counter()
        for i, code in enumerate(codes):
            if code == ext.ITEM_OUTCOME_REJECTED and i in why:
                if why[i].code in _TRANSIENT_VALUES:
                    retry.append(entries[i])
                else:
                    self.listener.rejected(entries[i], why[i].error or "refused by the server")
            elif code in (0, ext.ITEM_OUTCOME_REJECTED):
                retry.append(entries[i])
            else:
                outcomes[_OUTCOME_NAMES.get(code, "stored")] += 1
        if outcomes:
            self.listener.stored(sum(outcomes.values()), dict(outcomes))
        if retry:
            send.entries = retry
            self._retry_later(send, None)
        else:
            self._settle(send)

    def _stream_answered(self, send: _Send, answers: list[Any], error: Any,
                         latency: float) -> None:
        entries = send.entries
        answered = min(len(answers), len(entries))
        stored = 0
        for entry, answer in zip(entries, answers, strict=False):
            if answer.memory_id:
                stored += 1
            else:
                reason = answer.storage_confidence.reasoning or "refused by the server"
                self.listener.rejected(entry, reason.removeprefix("rejected: "))
        if stored:
            self._stored_any = True
            self.listener.stored(stored, {"stored": stored})
        rest = entries[answered:]
        if error is None:
            self.latencies.append(latency)
            self.sizer.observe(len(entries), latency)
            if rest:  # the stream ended early without an error: send the rest again
                send.entries = rest
                self._retry_later(send, None)
            else:
                self._settle(send)
            return
        if not isinstance(error, grpc.RpcError):
            self._set_fatal(EngramError(f"StreamingRemember failed: {error}"))
            return
        code = error.code()  # type: ignore[attr-defined]
        if not rest:
            self._settle(send)
        elif code in TRANSIENT:
            send.entries = rest
            self._retry_later(send, error)
        elif code == S.INVALID_ARGUMENT:
            # The stream stopped at the first memory it refused: that one is rejected,
            # the ones after it go again on a new stream. A first refusal for want of
            # vectors would be every record's: stop at once instead.
            details = error.details() or ""  # type: ignore[attr-defined]
            needs = None if self._stored_any else embedding_refusal(self.pool.address, details)
            if needs is not None:
                self._set_fatal(needs)
                return
            self.listener.rejected(rest[0], f"refused by the server: {details}")
            send.entries = rest[1:]
            if send.entries:
                self._inflight_again(send)
            else:
                self._settle(send)
        elif code == S.UNIMPLEMENTED:
            self._set_fatal(Unsupported(
                f"the server at {self.pool.address} serves neither BatchRemember nor "
                "StreamingRemember", "is it an Engram server?"))
        else:
            self._set_fatal(translate(error, self.pool.address, "StreamingRemember",
                                      self.pool.tls))

    def _failed(self, send: _Send, err: grpc.RpcError) -> None:
        code = err.code()  # type: ignore[attr-defined]
        details = err.details() or ""  # type: ignore[attr-defined]
        too_large = "larger than max" in details or "message too large" in details.lower()
        if code in TRANSIENT and not too_large:
            if code == S.RESOURCE_EXHAUSTED and not details.startswith(STORE_FULL_DETAIL):
                self.sizer.overloaded()
            self._retry_later(send, err)
        elif code == S.UNIMPLEMENTED:
            # ServerInfo answered but BatchRemember is not served: this call and every
            # other batch call in flight go again by stream.
            try:
                self._use_stream(announce=True)
            except EngramError as exc:
                self._set_fatal(exc)
                return
            self._inflight_again(send)
        elif code == S.INVALID_ARGUMENT or too_large:
            needs = None if self._stored_any else embedding_refusal(self.pool.address, details)
            if needs is not None:
                self._set_fatal(needs)
                return
            if len(send.entries) == 1:
                self.listener.rejected(send.entries[0], f"refused by the server: {details}")
                self._settle(send)
                return
            # Find the culprit by halves; the good half goes through.
            if too_large:
                self.sizer.overloaded()
            half = len(send.entries) // 2
            other = _Send(send.batch, send.entries[half:])
            send.entries = send.entries[:half]
            send.batch.parts += 1
            self._inflight_again(send)
            self._inflight_again(other)
        else:
            self._set_fatal(translate(err, self.pool.address, "BatchRemember",
                                      self.pool.tls))

    def _inflight_again(self, send: _Send) -> None:
        if self.fatal is None:
            self._dispatch(send)

    def _retry_later(self, send: _Send, err: grpc.RpcError | None) -> None:
        now = time.monotonic()
        if send.first_failure is None:
            send.first_failure = now
        elif now - send.first_failure > self.options.retry_budget_s:
            what = (f"{err.code().name}: {err.details()}" if err is not None  # type: ignore[attr-defined]
                    else "items kept failing")
            self._set_fatal(ServerUnavailable(
                f"the server at {self.pool.address} took no writes for "
                f"{self.options.retry_budget_s:g} s of retries ({what})",
                "check the server, then run the same command with --resume"))
            return
        if (err is not None and not self._told_unavailable
                and err.code() == grpc.StatusCode.UNAVAILABLE):  # type: ignore[attr-defined]
            self._told_unavailable = True
            self.listener.notice(
                f"a server of {self.pool.address} is unavailable: sending to the others "
                f"(retries for up to {self.options.retry_budget_s:g} s)"
                if is_multi_endpoint(self.pool.address) else
                f"the server at {self.pool.address} is unavailable (restarting?): waiting "
                f"for it, up to {self.options.retry_budget_s:g} s")
        details = (err.details() or "") if err is not None else ""  # type: ignore[attr-defined]
        if details.startswith(STORE_FULL_DETAIL) and not self._told_full:
            self._told_full = True
            self.listener.notice(f"the server's store is full: waiting for room, up to "
                                 f"{self.options.retry_budget_s:g} s per batch ({details})")
        send.attempt += 1
        self.retried += len(send.entries)
        base = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** min(send.attempt, 10))
        delay = random.uniform(base / 2, base)
        hint = retry_after_ms(err) if err is not None else None
        if hint:
            delay = max(delay, hint / 1000.0 * random.uniform(1.0, 1.2))
        self._seq += 1
        heapq.heappush(self._retries, (now + delay, self._seq, send))

    def _settle(self, send: _Send) -> None:
        batch = send.batch
        batch.parts -= 1
        if batch.parts:
            return
        batch.done = True
        held = self._held_keys
        for e in batch.entries:
            if e.key is not None:
                if held[e.key] == 1:
                    del held[e.key]
                else:
                    held[e.key] -= 1
        batch.entries = []  # their bytes are not needed any more
        self._held_records -= batch.count
        self._held_bytes -= batch.nbytes
        order = self._order
        while order and order[0].done:
            order.popleft()

    def _set_fatal(self, exc: EngramError) -> None:
        if self.fatal is None:
            self.fatal = exc

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
