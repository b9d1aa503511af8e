"""The bulk sender on its own, against real servers on port 0: it cuts the records it is
handed into batches, tells its listener what became of each record, and answers which
records are not settled yet (what an import's checkpoint waits for)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest

from engram_cli.client.batching import Entry, SendOptions, frame
from engram_cli.client.bulk import BulkSender
from engram_cli.client.pool import ChannelPool
from engram_cli.ingest.mapping import Encoder
from engram_cli.rpc import ext_svc
from engram_cli.server.app import EngramServer, ServeOptions
from engram_cli.server.extension import ExtensionServicer
from engram_cli.tuning.server_config import ServerConfig
from tests.conftest import UpstreamServer
from tests.import_support import count_on, records


class Heard:
    """A listener that notes everything it is told."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.imported = 0
        self.refused: list[tuple[Entry, str]] = []
        self.notices: list[str] = []
        self.ticks = 0

    def stored(self, n: int, outcomes: dict[str, int]) -> None:
        self.imported += n
        self.outcomes.update(outcomes)

    def rejected(self, entry: Entry, reason: str) -> None:
        self.refused.append((entry, reason))

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def tick(self) -> None:
        self.ticks += 1


def entries(rows: list[dict[str, Any]], source: int = 0) -> list[Entry]:
    encode = Encoder().encode
    out = []
    for i, row in enumerate(rows):
        _, payload = encode(row, False)
        out.append(Entry(frame(payload), source, i + 1, 100 * i, b""))
    return out


@contextmanager
def connected(address: str, heard: Heard, **options: Any) -> Iterator[BulkSender]:
    pool = ChannelPool(address, 2)
    sender = BulkSender(pool, "", SendOptions(pool=2, **options), heard)
    try:
        sender.connect()
        yield sender
    finally:
        sender.close()
        pool.close()


def test_batches_are_cut_by_size_and_never_mix_sources(server: EngramServer):
    heard = Heard()
    first, second = entries(records(8)), entries(records(5, start=8), source=1)
    with connected(server.address, heard, batch=7) as sender:
        assert sender.send(iter(first + second)) is True
    assert sender.batches == 3  # 7 + 1 of the first source, then the 5 of the second
    assert (heard.imported, heard.outcomes["created"], heard.refused) == (13, 13, [])
    assert sender.unsettled() == {}
    assert count_on(server.address) == 13


def test_stop_sends_nothing_more_and_the_unsent_records_stay_unsettled(server: EngramServer):
    heard = Heard()
    handed = entries(records(30))

    def feed(sender: BulkSender) -> Iterator[Entry]:
        for n, entry in enumerate(handed, 1):
            yield entry
            if n == 25:
                sender.stop()  # as a Ctrl-C would, in the middle of the third batch
                return

    with connected(server.address, heard, batch=10) as sender:
        assert sender.send(feed(sender)) is False
    assert sender.batches == 2
    assert heard.imported == 20 == count_on(server.address)
    assert sender.unsettled() == {0: handed[20]}  # where a checkpoint has to start again


class AllOrNothing(ExtensionServicer):
    """Our batch RPC, but refusing a whole batch for one bad memory (as a server could)."""

    def BatchRemember(self, request: Any, context: grpc.ServicerContext) -> Any:
        if any(m.content.startswith("poison") for m in request.memories):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a poisoned memory")
        return super().BatchRemember(request, context)


@contextmanager
def serving(cls: type[ExtensionServicer], tmp_path) -> Iterator[UpstreamServer]:
    """A server whose extension service is `cls`, a variant of ours."""
    servicer = cls(None, ServerConfig(tmp_path / "engram.toml"),  # type: ignore[arg-type]
                   {"started_at": 0.0})
    srv = UpstreamServer(tmp_path / "data", extra=[
        lambda server: ext_svc.add_ExtensionServiceServicer_to_server(servicer, server)])
    servicer.store = srv.store
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def all_or_nothing(tmp_path) -> Iterator[UpstreamServer]:
    with serving(AllOrNothing, tmp_path) as srv:
        yield srv


def test_a_batch_refused_whole_is_split_down_to_the_bad_record(all_or_nothing):
    heard = Heard()
    rows = records(40)
    rows[17] = {"content": "poison in the middle"}
    handed = entries(rows)
    with connected(all_or_nothing.address, heard, batch=40) as sender:
        assert sender.send(iter(handed)) is True
    assert heard.imported == 39 == count_on(all_or_nothing.address)
    [(entry, reason)] = heard.refused
    assert entry is handed[17] and reason == "refused by the server: a poisoned memory"
    assert sender.batches == 1 and sender.unsettled() == {}


def test_a_record_too_large_for_any_request_is_rejected_and_its_neighbours_sent(tmp_path):
    data = tmp_path / "srv"
    data.mkdir()
    (data / "engram.toml").write_text("[engine]\nmax_message_bytes = 1048576\n")
    srv = EngramServer(ServeOptions(data_dir=data, port=0))
    srv.start()
    heard = Heard()
    try:
        handed = entries([*records(3), {"content": "x" * (1024 * 1024)}, *records(3, start=3)])
        with connected(srv.address, heard) as sender:
            assert sender.send(iter(handed)) is True
        assert heard.imported == 6 == count_on(srv.address)
        [(entry, reason)] = heard.refused
        assert entry is handed[3] and "the largest message the server takes" in reason
    finally:
        srv.stop(1)


class SlowFirst(ExtensionServicer):
    """Our batch RPC, holding back the batch with the first version of a memory, so that
    a later batch on the other channel is stored before it (as a busy server may)."""

    def BatchRemember(self, request: Any, context: grpc.ServicerContext) -> Any:
        if any(m.content == "version 0" for m in request.memories):
            time.sleep(0.5)
        return super().BatchRemember(request, context)


@pytest.fixture
def slow_first(tmp_path) -> Iterator[UpstreamServer]:
    with serving(SlowFirst, tmp_path) as srv:
        yield srv


def test_a_later_record_of_a_memory_waits_for_the_earlier_to_be_stored(slow_first):
    """Batches go out over several channels and finish in any order: the first version of
    a memory, held back, was stored over the second. A record whose memory is in a batch
    not yet settled now waits for it; the others do not."""
    from engram_cli.rpc import pb, svc

    encode = Encoder().encode
    handed = []
    for i, row in enumerate([{"id": "the-note", "content": "version 0"},
                             {"id": "the-note", "content": "version 1"}]):
        mid, payload = encode(row, False)
        handed.append(Entry(frame(payload), 0, i + 1, 100 * i, b"", None, mid))
    heard = Heard()
    with connected(slow_first.address, heard, batch=1) as sender:
        assert sender.send(iter(handed)) is True
    assert heard.imported == 2 and sender.batches == 2
    with grpc.insecure_channel(slow_first.address) as channel:
        found = svc.EngramServiceStub(channel).Recall(pb.RecallRequest(cue=pb.Cue(
            semantic=pb.SemanticCue(query="version")), max_results=5))
    assert [m.content for m in found.memories] == ["version 1"]
