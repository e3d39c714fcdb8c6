"""The handle of a built worker: its Faust app and the parts the CLI, health checks and tests use.

Its own module so that :mod:`pipeline.streaming.observability` can read a worker without importing
the wiring in :mod:`pipeline.streaming.app` (which installs observability).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames
from pipeline.consumers.contacts import ContactRuntime
from pipeline.consumers.ingest import SourceConsumer
from pipeline.state_machine import Model


@dataclass
class Worker:
    """A built worker: the Faust app plus handles the CLI, health checks and tests use."""

    app: faust.App
    settings: Settings
    model: Model
    topics: TopicNames
    runtime: ContactRuntime
    ingest: list[SourceConsumer] = field(default_factory=list)
    table: Any = None

    def stats(self) -> dict[str, Any]:
        """Counters since start (the same figures the metrics export), as plain JSON."""
        counts = self.runtime.counts
        return {
            "ingest": {
                consumer.family: {
                    "messages": consumer.counts.messages,
                    "events": sum(consumer.counts.events.values()),
                    "dead_lettered": dict(consumer.counts.dead_lettered),
                }
                for consumer in self.ingest
            },
            "processor": {
                "applied": counts.applied,
                "duplicates": counts.duplicates,
                "late": counts.late,
                "alerts": counts.alerts,
                "transitions": sum(counts.transitions.values()),
                "referral_credits_routed": counts.referral_credits_routed,
                "identity_links": dict(counts.identity_links),
                "handed_off": counts.handed_off,
                "held": counts.held,
                "batches": counts.batches,
                "processing_errors": counts.processing_errors,
                "partitions": sorted(self.runtime.partitions),
                "contacts_in_table": len(self.table),
            },
        }

    def readiness(self) -> dict[str, Any]:
        """What is not ready yet in this process (empty ``problems`` = ready); ``/readyz`` adds the
        broker check (:mod:`pipeline.streaming.observability`)."""
        problems: list[str] = []
        assignment = self.app.assignor.assigned_actives()
        assigned = any(tp.topic == self.topics.contact_events for tp in assignment)
        if not assigned:
            problems.append("contact processor: no partitions assigned yet")
        recovered = self.app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        if not recovered:
            problems.append("contact table: changelog recovery not finished")
        for consumer in self.ingest:
            if not consumer.assigned:
                assigned = False
                problems.append(f"ingest {consumer.family}: no partitions assigned yet")
        checks = {"partitions_assigned": assigned, "table_recovered": recovered}
        return {"ready": not problems, "problems": problems, "checks": checks}
