"""Topic names (every topic Leadflow reads or writes), partitioning and routing by contact.

Inputs take one JSON envelope or a JSON array of envelopes per message. Everything one contact
does is routed to one partition of the internal ``contact-events`` topic (and of the contact
table's changelog), chosen by a stable hash of the contact key, so one worker owns a contact at a
time and applies its events in order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from pipeline.config.settings import Settings
from pipeline.state_machine import SOURCES

INPUT_TOPICS: dict[str, str] = {source: f"events.{source}" for source in SOURCES}
TRANSITIONS = "lead.transitions"
ALERTS = "lead.alerts"
CONTACTS = "lead.contacts"  # each contact's newest snapshot, keyed by contact (compacted on Kafka)
DEADLETTER = "events.deadletter"
#: What a webhook subscription gave up on (created by ``leadflow webhooks``, not by ``leadflow topics``).
WEBHOOKS_DEADLETTER = "webhooks.deadletter"
CONTACT_EVENTS = "leadflow.contact-events"
CONTACTS_TABLE = "contacts"


def partition_for(contact: str, partitions: int) -> int:
    """The internal partition that owns ``contact`` (stable across processes and restarts)."""
    return zlib.crc32(contact.encode("utf-8", "surrogatepass")) % partitions


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Concrete topic names for a settings' prefix."""

    inputs: dict[str, str]
    transitions: str
    alerts: str
    deadletter: str
    contact_events: str
    contacts: str
    webhooks_deadletter: str

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        return cls(
            inputs={family: settings.topic(name) for family, name in INPUT_TOPICS.items()},
            transitions=settings.topic(TRANSITIONS),
            alerts=settings.topic(ALERTS),
            deadletter=settings.topic(DEADLETTER),
            contact_events=settings.topic(CONTACT_EVENTS),
            contacts=settings.topic(CONTACTS),
            webhooks_deadletter=settings.topic(WEBHOOKS_DEADLETTER),
        )

    def family_of(self, topic: str) -> str | None:
        for family, name in self.inputs.items():
            if name == topic:
                return family
        return None

    @property
    def outputs(self) -> dict[str, str]:
        return {
            "transitions": self.transitions,
            "alerts": self.alerts,
            "deadletter": self.deadletter,
            "contacts": self.contacts,
        }

    def all(self) -> list[str]:
        """The pipeline's topics (what ``leadflow topics`` creates; not ``webhooks_deadletter``)."""
        return [
            *self.inputs.values(), self.transitions, self.alerts, self.deadletter, self.contact_events, self.contacts
        ]
