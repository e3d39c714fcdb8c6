"""Zombie fencing (pipeline/streaming/membership.py): a batch's writes are made only by the
member that owns its partitions.

A user relies on: a worker that was expelled from the group (frozen past its session timeout)
writes nothing of the batch it had in hand, and its pipeline goes on with the next generation's
batches; a worker whose heartbeats went unanswered holds its writes until the coordinator
answers, and goes on when it does; one that hears nothing for the rebalance timeout stops (the
failure path: restart from the committed offsets). The group coordinator here is a stand-in with
aiokafka's two methods and its ``generation``; the real one is exercised by the cluster's zombie
test (tests/integration/cluster/test_cluster.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pipeline.state_machine import ContactState
from pipeline.streaming.in_memory import InMemoryBroker, InMemoryStore
from pipeline.streaming.membership import NO_GENERATION, Fenced, Membership
from pipeline.streaming.unit_of_work import CommitPipeline, UnitOfWork


class Coordinator:
    """aiokafka's GroupCoordinator as the membership sees it: a generation, a heartbeat, a join."""

    def __init__(self) -> None:
        self.generation = 7
        self.answer = True

    async def _do_heartbeat(self) -> bool:
        return self.answer

    async def _do_rejoin_group(self, subscription: Any) -> bool:
        self.generation += 1
        return True


def membership(coordinator: Coordinator, max_hold: float = 30.0) -> Membership:
    guard = Membership(session_timeout=6.0, heartbeat_interval=1.0, max_hold=max_hold, poll=0.01)
    guard.attach(coordinator)
    return guard


def unit(broker: InMemoryBroker, store: InMemoryStore, guard: Membership, key: str) -> UnitOfWork:
    work = UnitOfWork(outputs=broker, store=store, changelog=broker, membership=guard)
    work.stage(0, {key: ContactState(contact=key, identified=True, clock=1)})
    return work


def silence(guard: Membership, seconds: float) -> None:
    """As if the last accepted heartbeat was sent ``seconds`` ago (a frozen process)."""
    guard.renewed_at = time.monotonic() - seconds


def test_a_member_in_good_standing_writes_at_once() -> None:
    async def scenario() -> None:
        broker, store, guard = InMemoryBroker(), InMemoryStore(), membership(Coordinator())
        work = unit(broker, store, guard, "c1")
        await work.send("lead.transitions", b"c1", b"t1")
        await work.commit()
        assert work.completed and "c1" in store and len(broker.records(broker.changelog_topic)) == 1

    asyncio.run(scenario())


def test_an_expelled_worker_writes_nothing_of_its_batch() -> None:
    async def scenario() -> None:
        coordinator = Coordinator()
        broker, store, guard = InMemoryBroker(), InMemoryStore(), membership(coordinator)
        work = unit(broker, store, guard, "c1")
        await work.send("lead.transitions", b"c1", b"t1")
        coordinator.generation = NO_GENERATION  # the coordinator answered UNKNOWN_MEMBER_ID
        await work.send("lead.contacts", b"c1", b"s1")  # dropped: computed by a former owner
        with pytest.raises(Fenced) as fenced:
            await work.commit()
        assert fenced.value.expelled and not work.completed
        assert [r.topic for r in broker.records_sent()] == ["lead.transitions"]  # sent while it owned them
        assert "c1" not in store and broker.records(broker.changelog_topic) == []

    asyncio.run(scenario())


def test_a_thawed_worker_holds_its_writes_until_the_coordinator_answers() -> None:
    async def scenario() -> None:
        coordinator = Coordinator()
        broker, store, guard = InMemoryBroker(), InMemoryStore(), membership(coordinator)
        work = unit(broker, store, guard, "c1")
        silence(guard, 40)  # frozen for 40 s, longer than the session timeout
        commit = asyncio.ensure_future(work.commit())
        await asyncio.sleep(0.1)
        assert not commit.done() and "c1" not in store  # held: maybe no longer the owner
        await guard._coordinator._do_heartbeat()  # accepted: still a member (the coordinator was away)
        await asyncio.wait_for(commit, 1)
        assert work.completed and "c1" in store

    asyncio.run(scenario())


def test_a_thawed_worker_that_was_expelled_drops_the_batch_and_goes_on_with_the_next_generation() -> None:
    async def scenario() -> None:
        coordinator = Coordinator()
        broker, store, guard = InMemoryBroker(), InMemoryStore(), membership(coordinator)
        failures: list[BaseException] = []

        async def crash(exc: BaseException) -> None:
            failures.append(exc)

        pipeline, done = CommitPipeline(on_failure=crash), []
        silence(guard, 40)
        await pipeline.submit(unit(broker, store, guard, "stale").commit, lambda: done.append("stale"))
        await asyncio.sleep(0.05)
        coordinator.generation = NO_GENERATION  # its heartbeat: UNKNOWN_MEMBER_ID
        await pipeline.drain()
        await guard._coordinator._do_rejoin_group(None)  # rejoined: a new generation
        await pipeline.submit(unit(broker, store, guard, "fresh").commit, lambda: done.append("fresh"))
        await pipeline.drain()
        assert done == ["fresh"] and failures == [] and pipeline.dropped == 1
        assert "stale" not in store and [r.key for r in broker.records(broker.changelog_topic)] == ["fresh"]

    asyncio.run(scenario())


def test_no_answer_for_the_rebalance_timeout_stops_the_worker() -> None:
    async def scenario() -> None:
        coordinator = Coordinator()
        broker, store, guard = InMemoryBroker(), InMemoryStore(), membership(coordinator, max_hold=0.1)
        failures: list[BaseException] = []

        async def crash(exc: BaseException) -> None:
            failures.append(exc)

        pipeline = CommitPipeline(on_failure=crash)
        silence(guard, 40)
        coordinator.answer = False
        await pipeline.submit(unit(broker, store, guard, "c1").commit, lambda: None)
        with pytest.raises(Fenced):
            await pipeline.drain()
        assert len(failures) == 1 and not failures[0].expelled  # type: ignore[attr-defined]
        assert "c1" not in store

    asyncio.run(scenario())


def test_after_a_drop_the_states_are_forgotten_and_a_batch_computed_on_them_stops_the_worker() -> None:
    async def scenario() -> None:
        coordinator = Coordinator()
        broker, store, guard = InMemoryBroker(), InMemoryStore(), membership(coordinator)
        failures: list[BaseException] = []
        forgotten: list[int] = []

        async def crash(exc: BaseException) -> None:
            failures.append(exc)

        def on_dropped() -> None:
            guard.dropped()
            forgotten.append(guard.drops)

        pipeline = CommitPipeline(on_failure=crash, on_dropped=on_dropped)
        stale = unit(broker, store, guard, "stale")  # computed under generation 7
        await guard._coordinator._do_rejoin_group(None)  # generation 8 (it was away, got them back)
        read_the_stale_states = unit(broker, store, guard, "next")  # generation 8, before the drop
        await pipeline.submit(stale.commit, lambda: None)
        await pipeline.drain()
        assert pipeline.dropped == 1 and forgotten == [1] and failures == []
        await pipeline.submit(read_the_stale_states.commit, lambda: None)
        with pytest.raises(Fenced):
            await pipeline.drain()
        assert len(failures) == 1 and not failures[0].expelled  # type: ignore[attr-defined]
        assert store == {} and broker.records(broker.changelog_topic) == []
        after = unit(broker, store, guard, "after")  # computed after the drop: written
        await after.commit()
        assert list(store) == ["after"]

    asyncio.run(scenario())
