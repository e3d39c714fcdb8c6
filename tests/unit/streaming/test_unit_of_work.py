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
from pipeline.state_machine import ContactState, decode_state
from pipeline.streaming.faust_state import KafkaChangelog, TableStore
from pipeline.streaming.in_memory import InMemoryBroker, InMemoryStore, in_memory_unit
from pipeline.streaming.unit_of_work import UnitOfWork


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


class FakeProducer:
    """Records what KafkaChangelog asks of an aiokafka producer."""

    built: ClassVar[list[FakeProducer]] = []

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.started = self.stopped = False
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        FakeProducer.built.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, partition))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.parametrize(("profile", "batch_bytes"), [("tansu", 1), ("kafka", 16_384)])
def test_the_changelog_producer_batches_as_the_broker_profile_says(profile: str, batch_bytes: int) -> None:
    """Tansu misreports a partition's end after a multi-record batch: its changelog is written one
    record per produce batch (max_batch_size 1), so changelog recovery reads every record."""
    changelog = KafkaChangelog(from_env({}, profile=profile, app_id="lf"), "lf-contacts-changelog", FakeProducer)
    assert changelog.producer_config()["max_batch_size"] == batch_bytes
    assert changelog.producer_config()["acks"] == "all"
    assert changelog.producer_config()["client_id"] == "lf-changelog"


def test_the_changelog_producer_is_started_and_stopped_explicitly() -> None:
    async def scenario() -> None:
        FakeProducer.built.clear()
        changelog = KafkaChangelog(from_env({}, profile="tansu"), "lf-contacts-changelog", FakeProducer)
        with pytest.raises(RuntimeError, match="not started"):
            await changelog.append(0, "c1", state("c1"))
        await changelog.start()
        await changelog.start()  # idempotent: one producer
        assert len(FakeProducer.built) == 1 and FakeProducer.built[0].started
        ack = await changelog.append(3, "c1", state("c1", 7))
        await ack
        topic, value, key, partition = FakeProducer.built[0].sent[0]
        assert (topic, key, partition) == ("lf-contacts-changelog", orjson.dumps("c1"), 3)
        assert decode_state(value) == state("c1", 7)
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
