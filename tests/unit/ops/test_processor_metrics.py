"""The contact processor's metrics, counted per batch, agree with what it actually did.

The runtime runs in-process on a plain dict as its table and a send that acknowledges at once:
the shipped sample goes through in batches, then sweep ticks fire cooling. The Prometheus
counters must move by exactly the processor's own counts, every event must have its latency and
event-time lag observed once, and the per-partition contacts tally (kept incrementally, batch by
batch) must equal a recount of the table.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from pipeline.config.settings import from_env
from pipeline.config.topics import partition_for
from pipeline.consumers.contacts import ContactRuntime
from pipeline.contracts import decode_event
from pipeline.contracts import internal as wire
from pipeline.ops import metrics
from pipeline.state_machine import ContactState, Event, builtin_model

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "journeys.jsonl"
PARTITIONS = 4
DAY = 86_400 * 1_000_000


def sample_events(received_at: int) -> list[Event]:
    events = []
    for line in SAMPLE.read_bytes().splitlines():
        decoded = decode_event(line, family=None, received_at=received_at)
        if isinstance(decoded, Event):
            events.append(decoded)
    return events


def value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def total(name: str) -> float:
    """Sum of every labelled series of a counter (``name`` with ``_total``)."""
    family = name.removesuffix("_total")
    return sum(s.value for m in REGISTRY.collect() if m.name == family for s in m.samples if s.name == name)


class Harness:
    def __init__(self, measure: bool) -> None:
        self.settings = from_env({}, partitions=PARTITIONS, contact_snapshots=False, metrics=measure)
        self.table: dict[str, ContactState] = {}
        self.sent: Counter[str] = Counter()
        self.runtime = ContactRuntime(builtin_model(), self.settings, self.table, self.send)

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Any:
        self.sent[topic] += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def write(self, partition: int, staged: dict[str, ContactState]) -> None:
        self.table.update(staged)

    async def feed(self, events: list[Event], received_at: int, per_batch: int = 400) -> int:
        """Events in input order, chunked into internal messages per partition, several per batch."""
        fed = 0
        for start in range(0, len(events), per_batch):
            by_partition: dict[int, list[Event]] = {}
            for event in events[start : start + per_batch]:
                by_partition.setdefault(partition_for(event.contact, PARTITIONS), []).append(event)
            messages = [(p, wire.encode(wire.ContactBatch(batch, received_at))) for p, batch in by_partition.items()]
            await self.runtime.handle(messages, self.write)
            fed += sum(len(batch) for batch in by_partition.values())
        return fed

    async def sweep(self, clock: int) -> None:
        tick = wire.encode(wire.SweepTick(clock=clock))
        await self.runtime.handle([(p, tick) for p in range(PARTITIONS)], self.write)


def snapshot() -> dict[str, float]:
    return {
        "applied": value("leadflow_events_applied_total"),
        "duplicates": value("leadflow_duplicates_skipped_total"),
        "late": value("leadflow_late_events_total"),
        "transitions": total("leadflow_transitions_total"),
        "alerts": total("leadflow_alerts_total"),  # every type: became_hot, response_overdue, ...
        "latency": value("leadflow_processing_latency_seconds_count"),
        "lag": value("leadflow_event_time_lag_seconds_count"),
        "batches": value("leadflow_processor_batches_total"),
        "due": value("leadflow_cooling_contacts_due_total"),
        "sweeps": value("leadflow_cooling_sweep_duration_seconds_count"),
    }


def run(measure: bool) -> tuple[Harness, dict[str, float], int]:
    received_at = time.time_ns() // 1000
    events = sample_events(received_at)
    harness = Harness(measure)
    before = snapshot()

    async def scenario() -> int:
        fed = await harness.feed(events, received_at)
        fed += await harness.feed(events[:50], received_at)  # a redelivery: all duplicates
        latest = max(event.occurred_at for event in events)
        await harness.sweep(latest + 400 * DAY)  # long after: cooling is due for many contacts
        return fed

    fed = asyncio.run(scenario())
    after = snapshot()
    return harness, {key: after[key] - before[key] for key in after}, fed


def test_counters_move_by_what_the_processor_did() -> None:
    harness, delta, fed = run(measure=True)
    counts = harness.runtime.counts
    assert counts.duplicates >= 50
    assert delta["applied"] == counts.applied
    assert delta["duplicates"] == counts.duplicates
    assert delta["late"] == counts.late
    assert delta["transitions"] == sum(counts.transitions.values()) == harness.sent[harness.runtime.topics.transitions]
    assert delta["alerts"] == counts.alerts == harness.sent[harness.runtime.topics.alerts] > 0
    assert delta["batches"] == counts.batches
    # Every event that came from an input batch has one latency and one event-time lag observation.
    assert delta["latency"] == fed
    assert delta["lag"] == fed
    assert delta["sweeps"] == PARTITIONS
    assert delta["due"] > 0


def test_transitions_are_labelled_by_kind_from_to_and_direction() -> None:
    harness, _, _ = run(measure=True)
    for (kind, from_, to, direction), n in harness.runtime.counts.transitions.items():
        labels = {"kind": kind, "from": from_, "to": to, "direction": direction}
        assert value("leadflow_transitions_total", labels) >= n


def test_contacts_tally_equals_a_recount_of_the_table() -> None:
    harness, _, _ = run(measure=True)
    for partition, owned in harness.runtime.partitions.items():
        recount = Counter(
            (state.stage, state.band)
            for key, state in harness.table.items()
            if partition_for(key, PARTITIONS) == partition
        )
        assert owned.tally is not None
        assert +owned.tally == recount, f"partition {partition}"
    assert sum(sum(p.tally.values()) for p in harness.runtime.partitions.values() if p.tally) == len(harness.table)


def test_a_partition_taken_over_counts_the_contacts_already_in_the_table() -> None:
    harness, _, _ = run(measure=True)
    partition = 1
    harness.runtime.forget([partition])  # revoked, then assigned again: rebuilt from the table
    rebuilt = harness.runtime.runtime(partition)
    recount = Counter((s.stage, s.band) for k, s in harness.table.items() if partition_for(k, PARTITIONS) == partition)
    assert rebuilt.tally == recount


def test_metrics_off_moves_no_metric_and_keeps_no_tally() -> None:
    harness, delta, _ = run(measure=False)
    assert harness.runtime.counts.applied > 0
    assert all(v == 0 for v in delta.values()), delta
    assert all(p.tally is None for p in harness.runtime.partitions.values())


def test_latency_is_measured_from_the_ingest_poll() -> None:
    """An input batch polled 2 s before its outputs were acknowledged lands in the 2.5 s bucket."""
    received_at = time.time_ns() // 1000 - 2_000_000
    events = sample_events(received_at)[:20]
    harness = Harness(measure=True)
    le_1 = value("leadflow_processing_latency_seconds_bucket", {"le": "1.0"})
    le_2_5 = value("leadflow_processing_latency_seconds_bucket", {"le": "2.5"})
    asyncio.run(harness.feed(events, received_at))
    assert value("leadflow_processing_latency_seconds_bucket", {"le": "1.0"}) == le_1
    assert value("leadflow_processing_latency_seconds_bucket", {"le": "2.5"}) == le_2_5 + len(events)


def test_dead_letters_and_events_consumed_are_counted_per_poll() -> None:
    opened = {"source": "email", "event_type": "email_opened"}
    invalid = {"source": "email", "error_code": "invalid_json"}
    before_events = value("leadflow_events_consumed_total", opened)
    before_dead = value("leadflow_events_dead_lettered_total", invalid)
    metrics.count_ingest_poll("email", 5, {"email_opened": 3}, {"invalid_json": 2})
    assert value("leadflow_events_consumed_total", opened) == before_events + 3
    assert value("leadflow_events_dead_lettered_total", invalid) == before_dead + 2
