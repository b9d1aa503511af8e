"""The cognitive engine for real: spreading activation, forgetting, consolidation states,
the hot tier, co-recall edges and per-request recall knobs, on a real store and server."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty

from engram_cli.contract import PARTIAL_BUDGET, RECALL_PARTIAL_KEY, STATE_KEY
from engram_cli.engine.forgetting import decayed
from engram_cli.engine.model import MemoryRecord, State
from engram_cli.engine.recall import RecallQuery
from engram_cli.engine.settings import Settings
from engram_cli.engine.store import Store
from engram_cli.rpc import pb
from tests.rpc_helpers import recall, remember, stubs

DAY = 86_400.0
QUANTUM = "Lecture notes on quantum entanglement and Bell inequalities"
PIE = "Grandmother's apple pie recipe with cinnamon and brown butter"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_store(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Store]]:
    stores: list[Store] = []

    def make(**settings: object) -> Store:
        values = {"consolidation_interval_s": 0.0, **settings}
        store = Store(tmp_path / f"store{len(stores)}", Settings().replace(values), clock=clock)
        stores.append(store)
        return store

    try:
        yield make
    finally:
        for s in stores:
            s.close()


def put(store: Store, content: str, **fields: object) -> str:
    return store.remember("", MemoryRecord(id="", content=content, **fields)).memory_id  # type: ignore[arg-type]


def settle(store: Store) -> None:
    """Wait until every write queued so far (accesses too) has committed."""
    store._accesses.flush()  # written at most once a second otherwise
    store.write(lambda conn: None)


def recalled_ids(store: Store, text: str, **q: object) -> list[str]:
    return [m.id for m in store.recall("", RecallQuery(text=text, **q)).memories]  # type: ignore[arg-type]


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


# -- spreading activation ------------------------------------------------------------


def test_memory_reachable_only_through_an_association(make_store: Callable[..., Store]
                                                      ) -> None:
    store = make_store()
    quantum, pie = put(store, QUANTUM), put(store, PIE)
    put(store, "Train timetable for the weekend trip to the coast")
    created, strength = store.associate("", quantum, pie, 0, 0.9, "same notebook")
    assert (created, strength) == (True, 0.9)

    spread = store.recall("", RecallQuery(text="quantum entanglement", spread=True, max_hops=2,
                                          threshold=0.1, trace=True))
    assert [m.id for m in spread.memories] == [quantum, pie]
    reached = spread.memories[1]
    assert reached.activation == pytest.approx(1.0 * 0.9 * Settings().decay)
    assert spread.traces[1].path == [quantum, pie]
    assert spread.total_activated == 2 and spread.above_threshold == 2

    assert recalled_ids(store, "quantum entanglement", spread=True, max_hops=0) == [quantum]
    assert recalled_ids(store, "quantum entanglement", spread=False) == [quantum]
    # 0.9 * 0.85 = 0.765: a threshold above it prunes the association.
    assert recalled_ids(store, "quantum entanglement", spread=True, max_hops=2,
                        threshold=0.8) == [quantum]


def test_spreading_follows_hops_and_strengthening_saturates(make_store: Callable[..., Store]
                                                            ) -> None:
    store = make_store()
    a, b, c = put(store, QUANTUM), put(store, PIE), put(store, "Tyre pressure for the van")
    store.associate("", a, b, 0, 0.9, "")
    assert store.associate("", b, c, 0, 0.5, "") == (True, 0.5)
    assert store.associate("", c, b, 0, 0.5, "")[0] is True  # the other direction: its own edge
    assert store.associate("", b, c, 0, 0.5, "") == (False, 0.75)  # closes half the gap
    assert recalled_ids(store, "quantum", spread=True, max_hops=1, threshold=0.05) == [a, b]
    assert recalled_ids(store, "quantum", spread=True, max_hops=2, threshold=0.05) == [a, b, c]


def test_recall_metadata_knobs_through_grpc(server: object) -> None:
    address = server.address  # type: ignore[attr-defined]
    with stubs(address) as (stub, _):
        quantum = remember(stub, QUANTUM).memory_id
        pie = remember(stub, PIE).memory_id
        stub.Associate(pb.AssociateRequest(source_memory=quantum, target_memory=pie,
                                           strength=0.9))

        def ids(metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
            # A recall the time budget cut short skips the spread: asked again (a server
            # just started shares the cores with its embedder processes loading the model).
            for _ in range(5):
                resp, call = stub.Recall.with_call(pb.RecallRequest(
                    cue=pb.Cue(semantic=pb.SemanticCue(query="quantum entanglement"),
                               spread_activation=True),
                    include_metadata=True, trace_activation=True), metadata=metadata)
                partial = dict(call.trailing_metadata() or ()).get(RECALL_PARTIAL_KEY, "")
                if PARTIAL_BUDGET not in partial:
                    break
            assert PARTIAL_BUDGET not in partial
            assert resp.metadata.recall_time_ms >= 0
            assert resp.metadata.above_threshold == len(resp.memories)
            return [m.id for m in resp.memories]

        assert ids() == [quantum, pie]
        assert ids((("engram-max-hops", "0"),)) == [quantum]
        assert ids((("engram-activation-threshold", "0.9"),)) == [quantum]
        assert ids((("engram-max-hops", "2"), ("engram-activation-threshold", "0.5"))) == [
            quantum, pie]
        for key, bad in (("engram-max-hops", "three"), ("engram-max-hops", "11"),
                         ("engram-activation-threshold", "1.5")):
            with pytest.raises(grpc.RpcError) as err:
                ids(((key, bad),))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert key in (err.value.details() or "")


def test_auto_link_connects_a_new_memory_to_similar_ones(server: object) -> None:
    with stubs(server.address) as (stub, _):  # type: ignore[attr-defined]
        first = remember(stub, "The espresso machine in the office leaks water again").memory_id
        remember(stub, "Parking permit renewal is due in March")
        resp = stub.Remember(pb.RememberRequest(
            memory=pb.Memory(content="The office espresso machine leaks water from the seal"),
            auto_link=True, link_threshold=0.3))
        assert list(resp.linked_memories) == [first]
        again = stub.Associate(pb.AssociateRequest(source_memory=resp.memory_id,
                                                   target_memory=first, strength=0.5))
        assert again.created is False


# -- forgetting ----------------------------------------------------------------------


def test_confidence_decays_with_time_since_access(make_store: Callable[..., Store],
                                                  clock: FakeClock) -> None:
    store = make_store()
    slow = put(store, "Slowly fading memory of the harbour lights", confidence=0.8)
    fast = put(store, "Quickly fading memory of the harbour fog", confidence=0.8,
               decay_rate=2.0)
    assert [m.confidence for m in store.get("", [slow, fast])] == pytest.approx([0.8, 0.8])

    clock.now += 10 * DAY
    s = Settings()
    by_id = {m.id: m for m in store.get("", [slow, fast])}
    expect_slow = decayed(0.8, 10 * DAY, 0.0, s.forgetting_exponent, s.forgetting_floor,
                          s.forgetting_scale_s)
    expect_fast = decayed(0.8, 10 * DAY, 2.0, s.forgetting_exponent, s.forgetting_floor,
                          s.forgetting_scale_s)
    assert by_id[slow].confidence == pytest.approx(expect_slow)
    assert by_id[fast].confidence == pytest.approx(expect_fast)
    assert 0.8 * s.forgetting_floor < expect_fast < expect_slow < 0.8

    # A recall shows the decayed confidence, and refreshes the last access.
    shown = {m.id: m.confidence for m in store.recall("", RecallQuery(text="harbour")).memories}
    assert shown == {slow: pytest.approx(expect_slow), fast: pytest.approx(expect_fast)}
    settle(store)
    assert [m.confidence for m in store.get("", [slow, fast])] == pytest.approx([0.8, 0.8])
    clock.now += 10 * DAY
    assert store.get("", [slow])[0].confidence == pytest.approx(expect_slow)


def test_access_times_of_many_recalls_are_written_once_a_second(
        make_store: Callable[..., Store], clock: FakeClock) -> None:
    store = make_store()
    ids = [put(store, f"Harbour note number {i} about the lighthouse") for i in range(3)]
    settle(store)
    written: list[float] = []
    submit = store._accesses._submit

    def counted(fn: Callable[..., object], *args: object) -> object:
        written.append(time.monotonic())
        return submit(fn, *args)

    store._accesses._submit = counted  # type: ignore[method-assign]

    def last_access() -> set[float]:
        conn = store._reader()
        return {t for (t,) in conn.execute("SELECT last_access FROM memories")}

    started = time.monotonic()
    for _ in range(50):
        clock.now += DAY
        assert len(store.recall("", RecallQuery(text="harbour lighthouse")).memories) == 3
    took = time.monotonic() - started
    # The first recall's access times are written at once, the others' together a second
    # after it (one more commit a second if the recalls take longer): not fifty commits.
    wait_for(lambda: last_access() == {clock.now})
    assert 2 <= len(written) <= 2 + int(took), (len(written), took)
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(written))
    commits = len(written)
    time.sleep(1.2)
    assert len(written) == commits  # nothing was pending: no timer, no commit
    # After a quiet second one recall is written at once; what a closing store holds
    # back is written as it closes.
    clock.now += DAY
    store.recall("", RecallQuery(text="harbour"))
    wait_for(lambda: last_access() == {clock.now})
    clock.now += DAY
    store.recall("", RecallQuery(text="harbour"))
    assert len(written) == commits + 1
    path = store.path
    store.close()
    conn = sqlite3.connect(path)
    try:
        assert {t for (t,) in conn.execute("SELECT last_access FROM memories WHERE id IN "
                                           "(?, ?, ?)", ids)} == {clock.now}
    finally:
        conn.close()


def test_a_storm_of_access_times_is_written_a_batch_a_second_and_the_rest_on_close(
        make_store: Callable[..., Store], clock: FakeClock) -> None:
    """A write takes at most `batch` access times, the oldest first, and the rest go at
    the next intervals; at most `most` wait (past them a refresh is not noted); a closing
    store writes what waits."""
    store = make_store()
    ids = [put(store, f"Harbour note number {i} about the lighthouse") for i in range(10)]
    settle(store)
    accesses = store._accesses
    accesses.batch = 3
    sizes: list[tuple[float, int]] = []
    submit = accesses._submit

    def counted(fn: Callable[..., object], pending: dict[str, dict[str, float]]) -> object:
        sizes.append((time.monotonic(), sum(map(len, pending.values()))))
        return submit(fn, pending)

    accesses._submit = counted  # type: ignore[method-assign]

    def last_access(conn: sqlite3.Connection) -> dict[str, float]:
        return dict(conn.execute("SELECT id, last_access FROM memories").fetchall())

    clock.now += DAY
    assert len(store.recall("", RecallQuery(text="harbour lighthouse", limit=10)).memories) == 10
    first = clock.now
    wait_for(lambda: set(last_access(store._reader()).values()) == {first}, timeout=10)
    assert [n for _, n in sizes] == [3, 3, 3, 1]
    assert all(b - a >= 0.9 for (a, _), (b, _) in itertools.pairwise(sizes))

    # At most `most` wait: of the next recall's ten, four are noted, and only those show
    # the new time before it is written (the rows the hot tier keeps).
    accesses.most = 4
    clock.now += DAY
    assert len(store.recall("", RecallQuery(text="harbour lighthouse", limit=10)).memories) == 10
    shown = sorted(m.last_access for m in store.get("", ids))
    assert shown == [first] * 6 + [clock.now] * 4
    # Written at their intervals, or all at once as the store closes (here, soon).
    path = store.path
    store.close()
    assert sum(n for _, n in sizes[4:]) == 4
    conn = sqlite3.connect(path)
    try:
        times = last_access(conn)
    finally:
        conn.close()
    assert sorted(times.values()) == [first] * 6 + [clock.now] * 4
    assert set(times) == set(ids)


def test_access_times_are_written_when_a_neighbour_in_their_commit_fails(
        make_store: Callable[..., Store], clock: FakeClock) -> None:
    """The writer commits operations in groups, and runs each again alone when one of a
    group fails: the access-time write is one of those, and its times are still written."""
    import threading

    store = make_store()
    ids = [put(store, f"Harbour note number {i} about the lighthouse") for i in range(3)]
    settle(store)
    gate = threading.Event()
    held = store._writer.submit(lambda conn: gate.wait(10))  # the writer waits on it

    def fails(conn: sqlite3.Connection) -> None:
        raise RuntimeError("a neighbour that fails")

    try:
        clock.now += 3 * DAY
        assert len(store.recall("", RecallQuery(text="harbour lighthouse")).memories) == 3
        store._accesses.flush()  # its access-time write is queued now, not at a timer
        failing = store._writer.submit(fails)  # queued behind the access-time write
    finally:
        gate.set()
    held.result(10)
    with pytest.raises(RuntimeError):
        failing.result(10)
    store.write(lambda conn: None)  # the writer commits in order: all of the above done
    conn = store._reader()
    assert {t for (t,) in conn.execute("SELECT last_access FROM memories WHERE id IN "
                                       "(?, ?, ?)", ids)} == {clock.now}


def test_a_recall_writes_an_access_time_only_where_it_moves_the_confidence(
        make_store: Callable[..., Store], clock: FakeClock) -> None:
    store = make_store()
    slow = put(store, "Slowly fading memory of the harbour lights")
    fast = put(store, "Quickly fading memory of the harbour fog", decay_rate=2.0)
    settle(store)
    noted: list[list[str]] = []
    note = store._accesses.note

    def counted(space: str, ids: Sequence[str], now: float) -> list[str]:
        noted.append(sorted(ids))
        return note(space, ids, now)

    store._accesses.note = counted  # type: ignore[method-assign]

    def recalled() -> dict[str, float]:
        got = store.recall("", RecallQuery(text="harbour"))
        assert len(got.memories) == 2
        return {m.id: m.last_access for m in got.memories}

    created = clock.now
    # Seconds after they were written: nothing to refresh, nothing written.
    clock.now += 5
    assert recalled() == {slow: created, fast: created}
    # Two minutes on: the fast-fading memory has lost more than 0.1% of its confidence
    # (decay_rate 2), the other has not (that takes about 18 minutes).
    clock.now += 120
    recalled()
    assert noted == [[fast]]
    clock.now += 20 * 60
    assert recalled() == {slow: created, fast: created + 125}
    assert noted == [[fast], sorted([slow, fast])]
    settle(store)
    assert {m.id: m.last_access for m in store.get("", [slow, fast])} == {
        slow: clock.now, fast: clock.now}


# -- consolidation -------------------------------------------------------------------


def state_of(store: Store, mid: str) -> State:
    return State(store.get("", [mid])[0].state)


def test_scheduler_moves_old_memories_to_consolidated(make_store: Callable[..., Store],
                                                      clock: FakeClock) -> None:
    store = make_store(consolidation_interval_s=0.05, consolidation_min_age_s=300.0)
    old = put(store, "An old memory about the lighthouse keeper")
    passes = store.consolidator.stats.passes
    wait_for(lambda: store.consolidator.stats.passes >= passes + 2)
    assert state_of(store, old) is State.RECENT  # younger than the minimum age

    clock.now += 301
    young = put(store, "A young memory about the ferry schedule")
    wait_for(lambda: state_of(store, old) is State.CONSOLIDATED)
    passes = store.consolidator.stats.passes
    wait_for(lambda: store.consolidator.stats.passes >= passes + 2)
    assert state_of(store, young) is State.RECENT

    # An update after consolidation is consolidated again by a later pass.
    store.remember("", MemoryRecord(id=old, content="An old memory about the lighthouse, "
                                    "corrected"))
    wait_for(lambda: state_of(store, old) is State.CONSOLIDATED)
    assert store.get("", [old])[0].content.endswith("corrected")


def test_a_pass_that_fails_unexpectedly_is_logged_and_the_scheduler_keeps_running(
        make_store: Callable[..., Store], caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(consolidation_interval_s=0.05, consolidation_min_age_s=0.0)
    put(store, "The lighthouse keeper climbed the stairs")
    put(store, "The lighthouse keeper lit the lamp")
    # A damaged store: the next pass's first write (the co-recall edge of the two memories
    # recalled together below) fails with SQLite's own error, not one the engine raises.
    store.write(lambda conn: conn.execute("DROP TABLE associations"))
    caplog.set_level(logging.ERROR, logger="engram.engine")
    for _ in range(2):
        assert len(store.recall("", RecallQuery(text="lighthouse keeper")).memories) == 2
    wait_for(lambda: store.consolidator.stats.failed_passes == 1)
    [record] = [r for r in caplog.records if r.name == "engram.engine"]
    assert record.getMessage().startswith("consolidation pass failed")
    assert record.exc_info is not None and record.exc_info[0] is sqlite3.OperationalError
    assert "no such table: associations" in str(record.exc_info[1])

    later = put(store, "A memory stored after the failed pass")
    wait_for(lambda: state_of(store, later) is State.CONSOLIDATED)
    assert store.consolidator.stats.failed_passes == 1


def test_updating_a_consolidated_memory_reconsolidates_it(make_store: Callable[..., Store]
                                                          ) -> None:
    store = make_store(consolidation_min_age_s=0.0)  # no scheduler: passes run by hand
    mid = put(store, "The lighthouse keeper retired in 1998")
    other = put(store, "The ferry leaves at nine")
    assert store.consolidator.run_pass().consolidated == 2
    store.remember("", MemoryRecord(id=mid, content="The lighthouse keeper retired in 1999"))
    assert state_of(store, mid) is State.RECONSOLIDATING
    assert state_of(store, other) is State.CONSOLIDATED
    report = store.consolidator.run_pass()
    assert report.consolidated == 1 and report.changes == {mid: int(State.CONSOLIDATED)}
    assert state_of(store, mid) is State.CONSOLIDATED


def test_a_pass_cut_short_is_finished_by_the_next(make_store: Callable[..., Store]) -> None:
    from engram_cli.engine.writes import op_mark

    store = make_store(consolidation_min_age_s=0.0)
    mid = put(store, "Half-consolidated memory of the night train")
    # What a pass does first, before a crash: mark CONSOLIDATING and commit.
    marked = store.write(op_mark, None, None, int(State.RECENT), int(State.CONSOLIDATING),
                         None, None, [], 0.0, 100, None)
    store.invalidate([(sp, m) for _, sp, m in marked])
    assert state_of(store, mid) is State.CONSOLIDATING
    report = store.consolidator.run_pass()
    assert report.consolidated == 1 and state_of(store, mid) is State.CONSOLIDATED


def test_a_pass_moves_thousands_of_memories_and_leaves_an_update_made_meanwhile(
        make_store: Callable[..., Store]) -> None:
    from engram_cli.engine.writes import op_finish, op_mark

    store = make_store(consolidation_min_age_s=0.0)
    recs = [MemoryRecord(id=f"n{i}", content=f"Night train note {i}") for i in range(2_000)]
    store.remember_many("", recs)
    # A batch larger than one statement's list of rowids, marked; then one of them is
    # updated (RECONSOLIDATING) before the batch is finished: it must stay so.
    marked = store.write(op_mark, None, None, int(State.RECENT), int(State.CONSOLIDATING),
                         None, None, [], 0.0, 1_950, None)
    assert len(marked) == 1_950
    conn = store._reader()
    counts = dict(conn.execute("SELECT state, count(*) FROM memories GROUP BY state"))
    assert counts == {int(State.CONSOLIDATING): 1_950, int(State.RECENT): 50}
    store.write(lambda c: c.execute("UPDATE memories SET state = ? WHERE id = 'n7'",
                                    (int(State.RECONSOLIDATING),)))
    done = store.write(op_finish, [r for r, _, _ in marked], int(State.CONSOLIDATED))
    assert done == 1_949
    counts = dict(conn.execute("SELECT state, count(*) FROM memories GROUP BY state"))
    assert counts == {int(State.CONSOLIDATED): 1_949, int(State.RECONSOLIDATING): 1,
                      int(State.RECENT): 50}
    # The counts kept by triggers follow every row.
    assert store.consolidator.run_pass().consolidated == 51
    assert dict(conn.execute("SELECT state, sum(n) FROM memory_counts GROUP BY state "
                             "HAVING sum(n) > 0")) == {int(State.CONSOLIDATED): 2_000}


def test_consolidate_rpc_on_demand(server: object) -> None:
    with stubs(server.address) as (stub, _):  # type: ignore[attr-defined]
        ids = [remember(stub, f"Garden diary entry {i}: tomatoes and basil").memory_id
               for i in range(3)]
        resp = stub.Consolidate(pb.ConsolidateRequest(memory_ids=pb.MemoryIdList(
            ids=ids[:2])))
        assert resp.memories_consolidated == 2
        assert dict(resp.state_changes) == {
            i: pb.CONSOLIDATION_STATE_CONSOLIDATED for i in ids[:2]}
        states = {m.id: m.metadata[STATE_KEY] for m in recall(stub, "garden diary").memories}
        assert states == {ids[0]: "consolidated", ids[1]: "consolidated", ids[2]: "recent"}

        again = stub.Consolidate(pb.ConsolidateRequest(all=Empty()))
        assert again.memories_consolidated == 1 and list(again.state_changes) == [ids[2]]
        assert stub.Consolidate(pb.ConsolidateRequest(all=Empty())).memories_consolidated == 0

        stats = stub.Introspect(pb.IntrospectRequest()).metrics
        assert stats["state.consolidated"] == 3
        assert stats["consolidation.consolidated_total"] == 3


def test_consolidation_links_memories_recalled_together(make_store: Callable[..., Store]
                                                        ) -> None:
    store = make_store()
    a = put(store, "Kayak trip on the fjord with Nadia")
    b = put(store, "Kayak paddles stored in the boathouse")
    put(store, "Invoice for the dentist appointment")
    for _ in range(2):
        assert set(recalled_ids(store, "kayak")) == {a, b}
    report = store.consolidate("")
    assert report.new_associations == 1 and report.consolidated == 3
    assert store.stats()["total_associations"] == 1
    # The new edge carries activation: a cue for one now reaches the other.
    assert recalled_ids(store, "fjord", spread=True, max_hops=1, threshold=0.05) == [a, b]


# -- tiers ---------------------------------------------------------------------------


def test_hot_tier_is_bounded_and_invalidated_on_write(make_store: Callable[..., Store],
                                                      tmp_path: Path) -> None:
    store = make_store(hot_capacity=10, warm_path=str(tmp_path / "nvme"))
    assert store.path == tmp_path / "nvme" / "engram.db" and store.path.exists()
    ids = [put(store, f"Bird sighting {i}: a heron by the canal") for i in range(50)]
    for _ in range(3):
        store.recall("", RecallQuery(text="heron canal", limit=50))
        store.get("", ids)
        assert len(store.hot) <= 10
    tiers = store.tier_stats()
    assert tiers["hot_size"] == 10 and tiers["hot_hits"] > 0 and 0 < tiers["hot_hit_rate"] < 1

    hot_id = ids[-1]
    assert store.get("", [hot_id])[0].content == "Bird sighting 49: a heron by the canal"
    store.remember("", MemoryRecord(id=hot_id, content="Bird sighting 49: an egret"))
    assert store.get("", [hot_id])[0].content == "Bird sighting 49: an egret"
    store.forget("", [hot_id], "suppress")
    assert store.get("", [hot_id]) == []

    store.update_settings(store.settings.replace({"hot_capacity": 3}))
    assert len(store.hot) <= 3


def test_introspect_reports_tiers_queue_and_consolidation(server: object) -> None:
    with stubs(server.address) as (stub, _):  # type: ignore[attr-defined]
        remember(stub, "Introspection test memory about otters")
        for _ in range(3):
            recall(stub, "otters")
        metrics = stub.Introspect(pb.IntrospectRequest()).metrics
    for key in ("tier.hot.size", "tier.hot.capacity", "tier.hot.hit_rate", "tier.warm.size",
                "tier.warm.bytes", "write_queue.depth", "write_queue.pressure",
                "write_queue.capacity", "consolidation.passes", "consolidation.next_pass_at"):
        assert key in metrics, key
    assert metrics["tier.hot.size"] == 1 and metrics["tier.hot.hit_rate"] > 0
    assert metrics["tier.warm.size"] == 1 and metrics["tier.warm.bytes"] > 0
    assert metrics["write_queue.capacity"] == Settings().queue_capacity


def test_a_failing_write_does_not_undo_its_group(make_store: Callable[..., Store]) -> None:
    import threading

    store = make_store()
    release, running = threading.Event(), threading.Event()

    def hold(conn: object) -> None:
        running.set()
        release.wait(10)

    def fail(conn: object) -> None:
        raise RuntimeError("this write fails")

    blocker = threading.Thread(target=store.write, args=(hold,))
    blocker.start()
    assert running.wait(10)
    # Queued behind the blocker, these three commit as one group.
    futures = [store._writer.submit(fn, *args) for fn, args in (
        (lambda conn, i: conn.execute("INSERT INTO spaces VALUES (?, 0)", (i,)), ("s-one",)),
        (fail, ()),
        (lambda conn, i: conn.execute("INSERT INTO spaces VALUES (?, 0)", (i,)), ("s-two",)),
    )]
    release.set()
    blocker.join(10)
    futures[0].result(10)
    futures[2].result(10)
    with pytest.raises(RuntimeError, match="this write fails"):
        futures[1].result(10)
    names = {r[0] for r in store._reader().execute("SELECT name FROM spaces")}
    assert {"s-one", "s-two"} <= names
