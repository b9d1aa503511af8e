"""Recall for the command line: one cue, or a stream of cues answered in input order.

A cue is answered from the recall cache when it can (no network, no grpc import) and
otherwise over one channel, with a bounded number of calls in flight so that memory stays
flat however many cues arrive. Nothing here imports grpc or the stubs at module level: a
cache hit must not pay for them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator

from engram_cli.client.cache import (
    Forgetting,
    RecallCache,
    blake2b,
    cache_key,
    category_name,
)
from engram_cli.config import Connection
from engram_cli.contract import (
    MAX_HOPS_KEY,
    RECALL_MODE_KEY,
    RECALL_PARTIAL_KEY,
    SEED_KEY,
    STATE_KEY,
    THRESHOLD_KEY,
    as_text,
    partial_text,
)
from engram_cli.engine.confidence import shown
from engram_cli.errors import EngramError, UsageError
from engram_cli.values import Value

# typing costs a cached recall several ms at import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any

DEFAULT_WINDOW = 64  # calls in flight in stdin mode
DEFAULT_TIMEOUT_S = 60.0
_SETTINGS_TIMEOUT_S = 5.0
_OVERLOAD_RETRIES = 8  # RESOURCE_EXHAUSTED: wait (retry-after-ms, growing), resend
_BACKOFF_S = 0.05  # the shortest wait after RESOURCE_EXHAUSTED


class RecallOptions(Value):
    """Everything besides the cue that changes an answer."""

    __slots__ = (
        "embed",
        "embed_dim",
        "limit",
        "max_hops",
        "mode",
        "spread",
        "tags",
        "threshold",
        "trace",
    )
    limit: int
    max_hops: int | None  # None: the server's setting
    threshold: float | None  # activation threshold; None: the server's setting
    spread: bool
    tags: tuple[str, ...]  # every result must carry all of these
    trace: bool
    mode: str | None  # hybrid | lexical | vector; None: the server's (hybrid)
    embed: str | None  # --embed: the model that makes the cue's vector, here
    embed_dim: int | None  # --embed-dim: the vector's length (None: the model's)

    def __init__(self, limit: int = 10, max_hops: int | None = None,
                 threshold: float | None = None, spread: bool = True,
                 tags: tuple[str, ...] = (), trace: bool = False, mode: str | None = None,
                 embed: str | None = None, embed_dim: int | None = None) -> None:
        self.limit = limit
        self.max_hops = max_hops
        self.threshold = threshold
        self.spread = spread
        self.tags = tags
        self.trace = trace
        self.mode = mode
        self.embed = embed
        self.embed_dim = embed_dim

    def key_params(self, api_key: str | None) -> dict[str, Any]:
        return {
            "limit": self.limit, "max_hops": self.max_hops, "threshold": self.threshold,
            "spread": self.spread, "tags": sorted(set(self.tags)), "trace": self.trace,
            "mode": self.mode,
            # An embedding cue is another question than a text cue, and another per model.
            **({"embed": self.embed, "embed_dim": self.embed_dim} if self.embed else {}),
            # Another key may see other memories (or none): never share answers across keys.
            "key": blake2b(api_key.encode(), digest_size=8).hexdigest()
            if api_key else "",
        }

    def metadata(self) -> tuple[tuple[str, str], ...]:
        out = []
        if self.max_hops is not None:
            out.append((MAX_HOPS_KEY, str(self.max_hops)))
        if self.threshold is not None:
            out.append((THRESHOLD_KEY, repr(float(self.threshold))))
        if self.mode is not None:
            out.append((RECALL_MODE_KEY, self.mode))
        return tuple(out)


class Answer(Value, frozen=False):
    """The answer to one cue, or why there is none (`error`)."""

    __slots__ = ("cache", "cached", "cue", "error", "line", "partial", "results", "trace")
    cue: str
    results: list[dict[str, Any]]
    cached: bool
    trace: list[dict[str, Any]] | None
    line: int | None  # 1-based input line in stdin mode
    error: EngramError | None
    # A fetched answer: {"stored": bool, "reason": why not} for the recall cache.
    cache: dict[str, Any] | None
    # Why the server says this answer may be incomplete: its RECALL_PARTIAL_KEY trailer
    # as sent ("budget,index-behind=4"; "" when complete). `partial_words` says it.
    partial: str

    def __init__(self, cue: str, results: list[dict[str, Any]] | None = None,
                 cached: bool = False, trace: list[dict[str, Any]] | None = None,
                 line: int | None = None, error: EngramError | None = None,
                 cache: dict[str, Any] | None = None, partial: str = "") -> None:
        self.cue = cue
        self.results = [] if results is None else results
        self.cached = cached
        self.trace = trace
        self.line = line
        self.error = error
        self.cache = cache
        self.partial = partial

    @property
    def partial_words(self) -> str:
        return partial_text(self.partial)

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            out: dict[str, Any] = {"cue": self.cue, "error": _error_text(self.error)}
            if self.line is not None:
                out["line"] = self.line
            return out
        results = [_public(r) for r in self.results]
        if self.trace is not None:
            # Each result carries its own activation path (the README's promise).
            paths = {t["memory_id"]: t for t in self.trace}
            for r in results:
                t = paths.get(r["id"])
                r["trace"] = ({"activation": t["activation"], "path": t["path"],
                               "seed": t.get("seed")} if t is not None else None)
        out = {"cue": self.cue, "cached": self.cached, "results": results}
        if self.partial:
            out["partial"] = self.partial_words
        if self.cache is not None:
            out["cache"] = self.cache
        return out


def _error_text(err: EngramError) -> str:
    return f"{err}: {err.hint}" if err.hint else str(err)


def _public(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["confidence"] = shown(float(r["confidence"]))
    out["activation"] = round(float(r["activation"]), 4)
    return out


def result_of(m: Any) -> dict[str, Any]:
    """One engram.v1 Memory -> the result dict we print and cache."""
    from engram_cli.rpc import pb

    metadata = dict(m.metadata)
    state = metadata.pop(STATE_KEY, None)
    metadata.pop(SEED_KEY, None)  # a trace's (trace_of), not the memory's
    confidence = _finite(m.confidence.value) if m.HasField("confidence") else 0.0
    return {
        "id": m.id,
        "content": m.content,
        "confidence": confidence,
        "confidence_category": category_name(confidence),
        "activation": _finite(m.activation),
        "state": state,  # None: the server does not say (upstream servers)
        "tags": list(m.tags),
        "memory_type": pb.MemoryType.Name(m.memory_type).removeprefix("MEMORY_TYPE_").lower()
        if m.memory_type in pb.MemoryType.values() else str(m.memory_type),
        "decay_rate": m.decay_rate if math.isfinite(m.decay_rate) else None,
        "created_at": _iso(m.created_at),
        "metadata": metadata,
    }


def _finite(value: float) -> float:
    """A server's number, or 0 for NaN and the infinities: printed as they are, they made
    invalid JSON (`NaN`), and a NaN confidence passed for `certain`."""
    return value if math.isfinite(value) else 0.0


def _iso(ts: Any) -> str | None:
    if not ts.seconds and not ts.nanos:
        return None
    return iso_utc(ts.seconds + ts.nanos / 1e9)


def iso_utc(seconds: float, timespec: str = "auto") -> str | None:
    """Unix seconds as ISO 8601 in UTC, or None where no date says them: a server's answer
    may carry NaN or a time outside the years 1-9999 (a protobuf Timestamp's range, which
    only the sender checks), and `engram recall` ended in a traceback on one."""
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec=timespec)
    except (ValueError, OverflowError, OSError):
        return None


def _partial_of(call: Any) -> str:
    for key, value in call.trailing_metadata() or ():
        if key == RECALL_PARTIAL_KEY:
            return str(value)
    return ""


def trace_of(resp: Any) -> list[dict[str, Any]]:
    """Each result's activation path, and which index seeded it (our server's SEED_KEY;
    None from a server that does not say)."""
    seeds = {m.id: m.metadata[SEED_KEY] for m in resp.memories if SEED_KEY in m.metadata}
    return [{"memory_id": t.memory_id, "activation": round(_finite(t.activation_level), 4),
             "path": list(t.activation_path), "seed": seeds.get(t.memory_id)}
            for t in resp.traces]


def cached_answer(cache: RecallCache, conn: Connection, options: RecallOptions, cue: str,
                  count_miss: bool = True) -> Answer | None:
    """The cached answer to a cue, or None. Touches neither grpc nor the network."""
    key = cache_key(conn.server, conn.space, cue.strip(), options.key_params(conn.api_key))
    hit = cache.get(key, count_miss=count_miss)
    if hit is None:
        return None
    return Answer(cue.strip(), hit.results, cached=True, trace=hit.trace)


class _Slot:
    __slots__ = ("answer", "cue", "done_at", "future", "line")

    def __init__(self, line: int, cue: str, answer: Answer | None = None) -> None:
        self.line = line
        self.cue = cue
        self.answer = answer
        self.future: Any = None  # a grpc future for Recall
        self.done_at = 0.0  # when the future finished (monotonic)


class _Window:
    """How many calls may be in flight: at most `most`; halved (at most once per backoff
    period) when the server answers RESOURCE_EXHAUSTED, grown back by one call per
    window's worth of answers. Additive increase, multiplicative decrease, as TCP does."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.limit = float(most)
        self.inflight = 0
        self._cut_at = 0.0
        import threading  # here: a cache hit needs no threads

        self._cv = threading.Condition()

    def acquire(self, stop: threading.Event) -> bool:
        with self._cv:
            while self.inflight >= max(1, int(self.limit)):
                if stop.is_set():
                    return False
                self._cv.wait(0.1)
            self.inflight += 1
            return True

    def release(self, overloaded: bool) -> None:
        with self._cv:
            self.inflight -= 1
            now = time.monotonic()
            if overloaded:
                if now - self._cut_at > _BACKOFF_S:
                    self.limit = max(1.0, self.limit / 2)
                    self._cut_at = now
            else:
                self.limit = min(float(self.most), self.limit + 1 / self.limit)
            self._cv.notify()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


MAX_CUE_BYTES = 1 << 20  # as a memory's content: a longer line of `recall -` is refused


class OversizedCue(str):
    """The start of a line of `recall -` over MAX_CUE_BYTES (the rest was skipped unread):
    that line's error, not a cue."""


def cue_lines(stream: Any) -> Iterator[str]:
    """The lines of a binary stream as cues, decoded here (bytes that are not UTF-8 stay
    as lone surrogates, for the line's own error); a line over MAX_CUE_BYTES is skipped to
    its end, never held whole, and stands as an OversizedCue."""
    import functools

    from engram_cli.files import skip_line

    for raw in iter(functools.partial(stream.readline, MAX_CUE_BYTES + 1), b""):
        if len(raw) > MAX_CUE_BYTES and not raw.endswith(b"\n"):
            skip_line(stream)
            yield OversizedCue(raw[:60].decode("utf-8", "replace") + "...")
            continue
        yield raw.decode("utf-8", "surrogateescape")


class Recaller:
    """Answers cues for one connection and one set of options; opens the channel only on
    the first cache miss."""

    def __init__(self, conn: Connection, options: RecallOptions,
                 cache: RecallCache | None = None, refresh: bool = False,
                 window: int = DEFAULT_WINDOW, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.conn = conn
        self.options = options
        self.cache = cache
        self.refresh = refresh
        self.window = max(1, window)
        self.timeout_s = timeout_s
        self._key_params = options.key_params(conn.api_key)
        self._channel: Any = None
        self._stub: Any = None
        self._ext: Any = None
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._connect_error: EngramError | None = None
        self._forgetting: Forgetting | None = None
        import threading  # here: a cache hit needs no threads

        self._connect_lock = threading.Lock()
        self._waited_at = 0.0  # when the last overload wait ended (monotonic)
        self._embedder: Any = None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Recaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one cue --------------------------------------------------------------------

    def recall(self, cue: str) -> Answer:
        """Answer one cue; raises our exceptions (empty cue, server unreachable...)."""
        cue = cue.strip()
        if not cue:
            raise UsageError("the cue is empty", "give some words to recall by")
        hit = self._lookup(cue)
        if hit is not None:
            return hit
        stub = self._connect()
        return self._answer(cue, self._call(stub, cue))

    def _call(self, stub: Any, cue: str, future: Any = None, done_at: float = 0.0
              ) -> tuple[Any, str]:
        """One Recall (or the result of one already started), resent while the server
        says it is overloaded: the response and its RECALL_PARTIAL_KEY trailer ("" when
        absent). Raises our exceptions."""
        import grpc

        from engram_cli.client.connection import retry_after_ms, translate

        for attempt in range(_OVERLOAD_RETRIES + 1):
            try:
                if future is not None:
                    call, future = future, None
                    resp = call.result()
                else:
                    resp, call = stub.Recall.with_call(
                        self._request(cue), metadata=self._metadata, timeout=self.timeout_s)
                return resp, _partial_of(call)
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else None
                if code != grpc.StatusCode.RESOURCE_EXHAUSTED or attempt == _OVERLOAD_RETRIES:
                    raise translate(err, self.conn.server, "Recall", self.conn.tls) from None
                failed_at = done_at if attempt == 0 and done_at else time.monotonic()
                # Calls rejected in one burst share one wait: a rejection older than the
                # last wait is resent at once.
                if failed_at > self._waited_at:
                    hint = (retry_after_ms(err) or 0) / 1000
                    time.sleep(min(5.0, max(hint, _BACKOFF_S) * (attempt + 1)))
                    self._waited_at = time.monotonic()
        raise AssertionError("unreachable")

    # -- many cues ------------------------------------------------------------------

    def recall_lines(self, lines: Iterable[str]) -> Iterator[Answer]:
        """One answer per input line, in input order, yielded as soon as the answers
        before it are out. A bad line (an empty cue, a cue the server rejects) becomes an
        answer carrying the error; the others carry on. A reader thread takes lines and
        starts calls while answers are written, never more than `window` ahead."""
        import queue
        import threading

        slots: queue.Queue[Any] = queue.Queue(maxsize=self.window)
        stop = threading.Event()
        window = _Window(self.window)

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for n, raw in enumerate(lines, 1):
                    if not put(self._start(n, raw, window, stop)):
                        return
            except BaseException as exc:  # handed to the consumer, which raises it
                put(_Failed(exc))
            put(_END)

        reader = threading.Thread(target=produce, name="recall-reader", daemon=True)
        reader.start()
        try:
            while True:
                item = slots.get()
                if item is _END:
                    break
                if isinstance(item, _Failed):
                    raise item.exc
                yield self._finish(item)
        finally:
            stop.set()
            while True:  # cancel what is still in flight when the reader stops early
                try:
                    item = slots.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Slot) and item.future is not None:
                    item.future.cancel()
            reader.join(timeout=1.0)

    def _start(self, line: int, raw: str, window: _Window, stop: threading.Event) -> _Slot:
        if isinstance(raw, OversizedCue):
            return _Slot(line, raw, Answer(str(raw), line=line, error=UsageError(
                f"the cue is over {MAX_CUE_BYTES >> 20} MiB (not read further)")))
        cue = raw.strip()
        if not cue:
            return _Slot(line, cue, Answer(cue, line=line, error=UsageError("empty cue")))
        if as_text(cue) != cue:  # a line of bytes that are not UTF-8
            shown = as_text(cue)
            return _Slot(line, shown, Answer(shown, line=line,
                                             error=UsageError("the cue is not UTF-8 text")))
        hit = self._lookup(cue)
        if hit is not None:
            hit.line = line
            return _Slot(line, cue, hit)
        try:
            stub = self._connect()
        except EngramError as exc:
            return _Slot(line, cue, Answer(cue, line=line, error=exc))
        slot = _Slot(line, cue)
        if not window.acquire(stop):
            slot.answer = Answer(cue, line=line, error=EngramError("stopped"))
            return slot
        import grpc

        def done(f: Any) -> None:
            slot.done_at = time.monotonic()
            overloaded = (not f.cancelled()
                          and f.code() == grpc.StatusCode.RESOURCE_EXHAUSTED)
            window.release(overloaded)

        slot.future = stub.Recall.future(self._request(cue), metadata=self._metadata,
                                         timeout=self.timeout_s)
        slot.future.add_done_callback(done)
        return slot

    def _finish(self, slot: _Slot) -> Answer:
        if slot.answer is not None:
            return slot.answer
        try:
            resp = self._call(self._stub, slot.cue, slot.future, slot.done_at)
        except EngramError as exc:
            return Answer(slot.cue, line=slot.line, error=exc)
        answer = self._answer(slot.cue, resp)
        answer.line = slot.line
        return answer

    # -- the parts ------------------------------------------------------------------

    def _key(self, cue: str) -> str:
        return cache_key(self.conn.server, self.conn.space, cue, self._key_params)

    def _lookup(self, cue: str) -> Answer | None:
        if self.cache is None or self.refresh:
            return None
        return cached_answer(self.cache, self.conn, self.options, cue)

    def _connect(self) -> Any:
        with self._connect_lock:
            if self._stub is not None:
                return self._stub
            if self._connect_error is not None:
                raise self._connect_error
            from engram_cli.client.autostart import ensure_server
            from engram_cli.client.connection import call_metadata, open_channel
            from engram_cli.rpc import ext_svc, svc

            try:
                ensure_server(self.conn)
            except EngramError as exc:
                self._connect_error = exc
                raise
            self._channel = open_channel(self.conn.server, tls=self.conn.tls)
            self._metadata = call_metadata(self.conn) + self.options.metadata()
            self._ext = ext_svc.ExtensionServiceStub(self._channel)
            self._stub = svc.EngramServiceStub(self._channel)
            return self._stub

    def _request(self, cue: str) -> Any:
        from engram_cli.rpc import pb

        o = self.options
        if o.embed:
            # Loaded at the first cue the cache cannot answer, once for all of them.
            with self._connect_lock:
                if self._embedder is None:
                    from engram_cli.client.embedder import CueEmbedder

                    self._embedder = CueEmbedder(o.embed, o.embed_dim)
            kind = {"embedding": pb.EmbeddingCue(vector=self._embedder.vector(cue))}
        else:
            kind = {"semantic": pb.SemanticCue(query=cue, required_tags=list(o.tags))}
        return pb.RecallRequest(
            memory_space_id=self.conn.space,
            cue=pb.Cue(**kind, max_results=o.limit, spread_activation=o.spread),
            max_results=o.limit, include_metadata=o.trace, trace_activation=o.trace)

    def _answer(self, cue: str, called: tuple[Any, str]) -> Answer:
        resp, partial = called
        results = [result_of(m) for m in resp.memories]
        trace = trace_of(resp) if self.options.trace else None
        note: dict[str, Any] = {"stored": False, "reason": "--no-cache"}
        if self.cache is not None:
            from engram_cli.client.cache import not_cached_because

            why = not_cached_because(results, self.cache.policy)
            if why is None and partial:
                why = f"the answer may be incomplete: {partial_text(partial)}"
            if why is None:
                stored = self.cache.put(self._key(cue), self.conn.server, self.conn.space,
                                        cue, results, self.forgetting(), trace)
                note = {"stored": True} if stored else {
                    "stored": False, "reason": "the cache is unusable or the answer is "
                    "larger than cache_max_mb"}
            else:
                note = {"stored": False, "reason": why}
                if self.refresh:
                    self.cache.discard(self._key(cue))
        return Answer(cue, results, cached=False, trace=trace, cache=note, partial=partial)

    def forgetting(self) -> Forgetting:
        """The server's forgetting curve (GetSettings), once per process; the defaults
        when the server does not serve our extension (upstream Engram)."""
        if self._forgetting is not None:
            return self._forgetting
        from engram_cli.engine.settings import DEFAULT_SETTINGS

        values = {"forgetting_exponent": DEFAULT_SETTINGS.forgetting_exponent,
                  "forgetting_floor": DEFAULT_SETTINGS.forgetting_floor,
                  "forgetting_scale_s": DEFAULT_SETTINGS.forgetting_scale_s}
        self._connect()
        import grpc
        import orjson

        from engram_cli.rpc import ext

        try:
            resp = self._ext.GetSettings(ext.GetSettingsRequest(), metadata=self._metadata,
                                         timeout=_SETTINGS_TIMEOUT_S)
            for s in resp.settings:
                if s.key in values:
                    values[s.key] = float(orjson.loads(s.value_json))
        except (grpc.RpcError, ValueError, TypeError):
            pass  # UNIMPLEMENTED (an upstream server) or odd values: the defaults hold
        self._forgetting = Forgetting(values["forgetting_exponent"],
                                      values["forgetting_floor"],
                                      values["forgetting_scale_s"])
        return self._forgetting
