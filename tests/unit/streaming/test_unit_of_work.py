"""The unit of work's guarantees, with in-memory fakes (no broker).

A user relies on: outputs acknowledged before any state is written; every staged state in the
local store and the changelog; a failed acknowledgement leaves the batch incomplete (its offsets
are not committed) and raises; the changelog producer sized by the broker profile.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, ClassVar

import orjson
import pytest

from pipeline.config.settings import from_env
from pipeline.state_machine import ContactState, decode_state, encode_state
from pipeline.streaming.faust_state import KafkaChangelog, TableStore
from pipeline.streaming.in_memory import InMemoryBroker, InMemoryStore, in_memory_unit
from pipeline.streaming.unit_of_work import CommitPipeline, UnitOfWork


class BrokerDown(Exception):
    pass


def state(contact: str, clock: int = 1) -> ContactState:
    return ContactState(contact=contact, identified=True, clock=clock)


def fixture(auto_ack: bool = True) -> tuple[InMemoryBroker, InMemoryStore, UnitOfWork]:
    store = InMemoryStore()
    broker = InMemoryBroker(auto_ack=auto_ack, journal=store.journal)
    return broker, store, in_memory_unit(broker, store)


def ops(store: InMemoryStore) -> list[str]:
    return [op for op, _ in store.journal]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_outputs_are_acknowledged_before_any_state_is_written() -> None:
    async def scenario() -> None:
        broker, store, unit = fixture(auto_ack=False)
        await unit.send("lead.transitions", b"c1", b"t1")
        await unit.send("lead.alerts", b"c1", b"a1")
        unit.stage(0, {"c1": state("c1")})
        commit = asyncio.create_task(unit.commit())
        await settle()
        assert ops(store) == ["send", "send"]  # waiting for the outputs' acks: nothing written
        assert not unit.completed
        assert broker.acknowledge() == 2
        await settle()
        assert ops(store) == ["send", "send", "bind", "put", "append"]
        assert not unit.completed  # the changelog record is not acknowledged yet
        assert broker.acknowledge() == 1
        await commit
        assert unit.completed

    asyncio.run(scenario())


def test_every_staged_state_reaches_the_store_and_the_changelog_partition_by_partition() -> None:
    async def scenario() -> None:
        broker, store, unit = fixture()
        unit.stage(2, {"a": state("a"), "b": state("b", 5)})
        unit.stage(0, {})  # nothing changed in partition 0: nothing written, no bind
        unit.stage(1, {"c": state("c")})
        await unit.commit()
        assert unit.completed
        assert store == {"a": state("a"), "b": state("b", 5), "c": state("c")}
        changelog = [(r.key, r.partition, r.state) for r in broker.records(broker.changelog_topic)]
        assert changelog == [("a", 2, state("a")), ("b", 2, state("b", 5)), ("c", 1, state("c"))]
        assert [entry for op, entry in store.journal if op == "bind"] == [2, 1]
        puts = [(r.key, r.partition) for op, r in store.journal if op == "put"]
        assert puts == [("a", 2), ("b", 2), ("c", 1)]  # each under its own partition's binding

    asyncio.run(scenario())


@pytest.mark.parametrize("failing", ["lead.transitions", "contacts-changelog"])
def test_a_refused_acknowledgement_leaves_the_batch_incomplete_and_raises(failing: str) -> None:
    async def scenario() -> None:
        broker, store, unit = fixture()
        broker.refuse(failing, BrokerDown(failing))
        await unit.send("lead.transitions", b"c1", b"t1")
        unit.stage(0, {"c1": state("c1")})
        with pytest.raises(BrokerDown):
            await unit.commit()
        assert not unit.completed
        if failing == "lead.transitions":  # the state is not written without its outputs
            assert "put" not in ops(store) and "append" not in ops(store)

    asyncio.run(scenario())


def test_an_output_refused_before_commit_raises_from_outputs_acknowledged() -> None:
    async def scenario() -> None:
        broker, _, unit = fixture()
        broker.refuse("lead.alerts", BrokerDown())
        await unit.send("lead.alerts", b"c1", b"a1")
        with pytest.raises(BrokerDown):
            await unit.outputs_acknowledged()
        assert not unit.completed

    asyncio.run(scenario())


def test_a_unit_of_work_commits_once() -> None:
    async def scenario() -> None:
        _, _, unit = fixture()
        await unit.commit()
        with pytest.raises(RuntimeError, match="once"):
            await unit.commit()

    asyncio.run(scenario())


# --- the commit pipeline: batch k+1 computed while batch k commits ------------------------------

def staged_unit(broker: InMemoryBroker, store: InMemoryStore, contact: str, clock: int) -> UnitOfWork:
    unit = in_memory_unit(broker, store)
    unit.stage(0, {contact: state(contact, clock)})
    return unit


def test_the_pipeline_commits_in_order_and_acks_each_batch_only_once_it_is_durable() -> None:
    async def scenario() -> None:
        broker, store, _ = fixture(auto_ack=False)
        pipeline, done = CommitPipeline(), []
        await pipeline.submit(staged_unit(broker, store, "a", 1).commit, lambda: done.append(1))
        await settle()
        # the first commit waits for its acks; the caller is free to compute the next batch
        assert done == [] and broker.unacknowledged
        second = asyncio.ensure_future(
            pipeline.submit(staged_unit(broker, store, "b", 2).commit, lambda: done.append(2)))
        await settle()
        assert not second.done()  # one commit in flight at a time
        assert [r.key for r in broker.records(broker.changelog_topic)] == ["a"]  # b not written yet
        while not second.done():
            broker.acknowledge()
            await settle()
        assert done == [1]
        broker.auto_ack = True
        broker.acknowledge()
        await pipeline.drain()
        assert done == [1, 2]
        assert [r.key for r in broker.records(broker.changelog_topic)] == ["a", "b"]

    asyncio.run(scenario())


def test_after_a_failed_commit_nothing_later_is_committed_or_acked() -> None:
    async def scenario() -> None:
        broker, store, _ = fixture()
        failures: list[BaseException] = []

        async def crash(exc: BaseException) -> None:
            failures.append(exc)

        pipeline, done = CommitPipeline(on_failure=crash), []
        broker.refuse("contacts-changelog", BrokerDown("changelog"))
        await pipeline.submit(staged_unit(broker, store, "a", 1).commit, lambda: done.append(1))
        await settle()
        broker.refused.clear()  # the broker is back: still, nothing after the failed batch commits
        with pytest.raises(BrokerDown):
            await pipeline.submit(staged_unit(broker, store, "b", 2).commit, lambda: done.append(2))
        with pytest.raises(BrokerDown):
            await pipeline.drain()
        assert done == [] and len(failures) == 1
        assert "b" not in store and [r.key for r in broker.records(broker.changelog_topic)] == ["a"]

    asyncio.run(scenario())


def test_cancelling_the_submitter_does_not_cancel_the_commit_in_flight() -> None:
    """Faust cancels and restarts its agents on a rebalance: a commit half-way must complete."""
    async def scenario() -> None:
        broker, store, _ = fixture(auto_ack=False)
        pipeline, done = CommitPipeline(), []
        await pipeline.submit(staged_unit(broker, store, "a", 1).commit, lambda: done.append(1))
        waiting = asyncio.ensure_future(
            pipeline.submit(staged_unit(broker, store, "b", 2).commit, lambda: done.append(2)))
        await settle()
        waiting.cancel()
        await settle()
        broker.auto_ack = True
        broker.acknowledge()
        await pipeline.drain()
        assert done == [1] and store == {"a": state("a", 1)}  # b was never submitted: not acked

    asyncio.run(scenario())


class FakeBatch:
    """aiokafka's BatchBuilder as KafkaChangelog uses it: ``append`` returns None once full."""

    def __init__(self, limit: int) -> None:
        self.limit, self.records, self.closed = limit, [], False
        self.records: list[tuple[bytes, bytes]]

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        size = sum(len(k) + len(v) for k, v in self.records)
        if self.closed or (self.records and size + len(key) + len(value) > self.limit):
            return None
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self.closed = True

    def record_count(self) -> int:
        return len(self.records)


class FakeProducer:
    """Records what KafkaChangelog asks of an aiokafka producer; acks carry the batch's base offset."""

    built: ClassVar[list[FakeProducer]] = []

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.started = self.stopped = False
        self.batches: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []  # (topic, partition, records)
        self.ends: dict[int, int] = {}
        FakeProducer.built.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.config["max_batch_size"])

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        assert batch.closed
        self.batches.append((topic, partition, batch.records))
        base = self.ends.get(partition, 0)
        self.ends[partition] = base + len(batch.records)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=base))
        return done


@pytest.mark.parametrize(("profile", "tail"), [("tansu", True), ("kafka", False)])
def test_the_changelog_producer_is_configured_from_the_broker_profile(profile: str, tail: bool) -> None:
    settings = from_env({}, profile=profile, app_id="lf")
    changelog = KafkaChangelog(settings, "lf-contacts-changelog", FakeProducer)
    assert settings.broker.changelog_single_record_tail is tail
    assert changelog.producer_config()["max_batch_size"] == 512 * 1024
    assert changelog.producer_config()["acks"] == "all"
    assert changelog.producer_config()["client_id"] == "lf-changelog"


def keys(records: list[tuple[bytes, bytes]]) -> list[str]:
    return [orjson.loads(key) for key, _ in records]


def write(profile: str, flush: list[tuple[int, dict[str, ContactState]]], **client: Any) -> tuple[
        FakeProducer, list[tuple[int, list[int]]]]:
    async def scenario() -> tuple[FakeProducer, list[tuple[int, list[int]]]]:
        FakeProducer.built.clear()
        changelog = KafkaChangelog(from_env({}, profile=profile, client=client), "lf-contacts-changelog", FakeProducer)
        await changelog.start()
        written = await changelog.write(flush)
        return FakeProducer.built[0], [(p, [await ack for ack in acks]) for p, acks in written]

    return asyncio.run(scenario())


def test_on_tansu_each_partition_s_flush_ends_with_a_one_record_batch_sent_after_all_others() -> None:
    """Tansu 0.6 reports a partition's end offset as its last batch's base offset + 1: with the
    last record of every flush alone in a batch, the reported end is right, and a flush costs two
    produce requests (every partition's first batch, then every partition's last record)."""
    flush = [(0, {"a": state("a"), "b": state("b"), "c": state("c")}), (1, {"d": state("d")})]
    producer, offsets = write("tansu", flush)
    assert [(p, keys(r)) for _, p, r in producer.batches] == [(0, ["a", "b"]), (0, ["c"]), (1, ["d"])]
    assert offsets == [(0, [1, 2]), (1, [0])]  # each ack: the offset of its batch's last record
    assert decode_state(producer.batches[1][2][0][1]) == state("c")


def test_on_kafka_a_partition_s_flush_is_one_batch() -> None:
    flush = [(0, {"a": state("a"), "b": state("b"), "c": state("c")}), (3, {"d": state("d")})]
    producer, offsets = write("kafka", flush)
    assert [(p, keys(r)) for _, p, r in producer.batches] == [(0, ["a", "b", "c"]), (3, ["d"])]
    assert offsets == [(0, [2]), (3, [0])]


def test_a_flush_larger_than_a_batch_is_split_and_still_ends_with_one_record() -> None:
    states = {f"c{i:03d}": state(f"c{i:03d}", i) for i in range(40)}
    record = len(orjson.dumps("c000")) + len(encode_state(state("c000", 0)))
    producer, offsets = write("tansu", [(2, states)], changelog_batch_bytes=10 * record + 5)
    sizes = [len(r) for _, _, r in producer.batches]
    assert sizes[-1] == 1 and sum(sizes) == 40 and max(sizes) <= 11 and len(sizes) == 5
    assert [k for _, _, r in producer.batches for k in keys(r)] == list(states)  # order kept
    assert offsets == [(2, [9, 19, 29, 38, 39])]


def test_the_changelog_producer_is_started_and_stopped_explicitly() -> None:
    async def scenario() -> None:
        FakeProducer.built.clear()
        changelog = KafkaChangelog(from_env({}, profile="tansu"), "lf-contacts-changelog", FakeProducer)
        with pytest.raises(RuntimeError, match="not started"):
            await changelog.write([(0, {"c1": state("c1")})])
        await changelog.start()
        await changelog.start()  # idempotent: one producer
        assert len(FakeProducer.built) == 1 and FakeProducer.built[0].started
        (partition, acks), = await changelog.write([(3, {"c1": state("c1", 7)})])
        assert (partition, [await ack for ack in acks]) == (3, [0])
        topic, partition, records = FakeProducer.built[0].batches[0]
        assert (topic, partition, keys(records)) == ("lf-contacts-changelog", 3, ["c1"])
        assert decode_state(records[0][1]) == state("c1", 7)
        await changelog.stop()
        assert FakeProducer.built[0].stopped and not changelog.started
        await changelog.stop()  # stopping twice is harmless

    asyncio.run(scenario())


class FakeEvent:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def test_the_table_store_binds_faust_s_current_event_and_writes_only_local_data() -> None:
    from faust.streams import _current_event

    events = [FakeEvent(0), FakeEvent(2)]
    table = SimpleNamespace(data={})
    store = TableStore(table, events)
    store.bind(2)
    ref = _current_event.get()
    assert ref is not None
    bound: Any = ref()
    assert bound is events[1]
    store.put("c1", state("c1"))
    assert table.data == {"c1": state("c1")}
