"""The internal message format of the ``contact-events`` topic (MessagePack): the wire contract
between the ingest consumers, the sweep and the contact processor.

One message carries many events for one partition (amortizing the per-message cost of the stream
processor), a sweep tick telling the partition's owner to fire the cooling due by ``clock``, or
link events the partition owning their anonymous contact has claimed, for the partition owning
their contact to merge and apply (identity merges across partitions).
:func:`decode_batch` turns a batch of such messages into each partition's events and ticks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from pipeline.state_machine import Event
from pipeline.state_machine.processor import ClaimedLink

log = logging.getLogger("pipeline.consumers.contacts")  # where these messages were logged before


class ContactBatch(msgspec.Struct, frozen=True, array_like=True, tag="events"):
    """Validated events for contacts of one partition, in the order they were read.

    ``received_at``: when the ingest consumer polled them (microseconds; 0 when not from an input
    topic, e.g. routed referral credit): the start of the processing latency metric. A trailing
    field with a default, so messages written before it existed still decode."""

    events: list[Event]
    received_at: int = 0


class SweepTick(msgspec.Struct, frozen=True, array_like=True, tag="tick"):
    """Fire the cooling due by ``clock`` (microseconds) for this partition's contacts."""

    clock: int


class ClaimedLinks(msgspec.Struct, frozen=True, array_like=True, tag="claimed"):
    """Link events claimed by the anonymous side, with the exported anonymous histories, for
    the partition that owns their contacts (:meth:`LifecycleProcessor.apply_claimed`)."""

    links: list[ClaimedLink]


Internal = ContactBatch | SweepTick | ClaimedLinks

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Internal)


def encode(message: Internal) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> Internal:
    message: Internal = _decoder.decode(data)
    return message


@dataclass(slots=True)
class PartitionInput:
    """What one batch holds for one partition: its events in arrival order and its sweep ticks."""

    events: list[Event] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)  # the clock of each sweep tick
    claimed: list[ClaimedLink] = field(default_factory=list)  # links to merge here


@dataclass(slots=True)
class DecodedBatch:
    """A batch of internal messages, decoded and grouped by partition (in first-seen order)."""

    partitions: dict[int, PartitionInput] = field(default_factory=dict)
    received: list[tuple[int, int]] = field(default_factory=list)  # (received_at, events) per input message


def decode_batch(messages: Iterable[tuple[int, bytes]]) -> DecodedBatch:
    """Decode ``(partition, value)`` messages; an undecodable one is logged and skipped."""
    batch = DecodedBatch()
    partitions, received = batch.partitions, batch.received
    for partition, value in messages:
        try:
            message = decode(value)
        except msgspec.DecodeError:
            log.error("partition %d: undecodable internal message skipped (%d bytes)", partition, len(value))
            continue
        inputs = partitions.get(partition)
        if inputs is None:
            inputs = partitions[partition] = PartitionInput()
        if isinstance(message, ContactBatch):
            inputs.events.extend(message.events)
            if message.received_at:
                received.append((message.received_at, len(message.events)))
        elif isinstance(message, ClaimedLinks):
            inputs.claimed.extend(message.links)
        else:
            inputs.ticks.append(message.clock)
    return batch
