"""Broker profiles: the only client settings that differ between Apache Kafka and Tansu.

A :class:`BrokerProfile` is chosen by name (``LEADFLOW_BROKER_PROFILE``, ``--broker-profile``):
:data:`KAFKA` holds the production defaults, :data:`TANSU` what the embedded test/demo broker
needs. ``Settings.broker`` is the chosen profile with the explicit settings applied over it (an
explicit ``LEADFLOW_REPLICATION_FACTOR`` wins over the profile's). Nothing else in the code knows
which broker it talks to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class BrokerProfile:
    """Client settings for one kind of broker (times in milliseconds, sizes in bytes)."""

    name: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    rebalance_timeout_ms: int
    fetch_max_wait_ms: int
    replication_factor: int
    producer_batch_bytes: int
    #: Record batch size of the contact table's changelog producer (a flush of one partition's
    #: changed states is written as few batches as this allows: aiokafka sends one batch per
    #: partition per produce request, so every further batch costs a round trip).
    changelog_batch_bytes: int
    #: Each changelog flush ends with a batch of one record: on a broker that reports a partition's
    #: end offset as its last batch's base offset + 1 (Tansu 0.6), the reported end is then right.
    changelog_single_record_tail: bool
    #: The collector's producer is idempotent: no duplicates from its own retries.
    producer_idempotence: bool
    #: Topics are created with retention / compaction configs (``retention.ms``, ``cleanup.policy``).
    topic_configs: bool


KAFKA = BrokerProfile(
    name="kafka",
    session_timeout_ms=30_000,
    heartbeat_interval_ms=3_000,
    rebalance_timeout_ms=60_000,
    fetch_max_wait_ms=100,
    replication_factor=3,
    producer_batch_bytes=512 * 1024,
    changelog_batch_bytes=512 * 1024,  # under the broker's default message.max.bytes (1 MiB)
    changelog_single_record_tail=False,
    producer_idempotence=True,
    topic_configs=True,
)

#: Tansu (embedded broker for tests and the demo): the first group join waits one full session
#: timeout, and a fetch holds about half of fetch_max_wait_ms even when data is ready.
#: Tansu 0.6 reports a partition's end offset as (base offset of the last record batch + 1): after
#: a batch of several records the reported end is short, and a reader that stops at the end offset
#: (Faust's changelog recovery!) misses records. Each changelog flush therefore ends with a batch
#: of one record (the reported end is right after it: measured, see docs/streaming.md); other
#: topics batch normally and our readers never trust the end offset. Tansu 0.6 answers
#: InitProducerId with an error (no idempotent producer) and keeps every topic in memory.
TANSU = BrokerProfile(
    name="tansu",
    session_timeout_ms=6_000,
    heartbeat_interval_ms=1_000,
    rebalance_timeout_ms=6_000,
    fetch_max_wait_ms=20,
    replication_factor=1,
    producer_batch_bytes=512 * 1024,
    changelog_batch_bytes=512 * 1024,
    changelog_single_record_tail=True,
    producer_idempotence=False,
    topic_configs=False,
)

#: Every profile by name; the default is ``kafka``.
BROKER_PROFILES: Mapping[str, BrokerProfile] = MappingProxyType({p.name: p for p in (KAFKA, TANSU)})
