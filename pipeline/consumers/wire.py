"""The internal message format of the ``contact-events`` topic (MessagePack).

One message carries many events for one partition (amortizing the per-message cost of the stream
processor), or a sweep tick telling the partition's owner to fire the cooling due by ``clock``.
"""

from __future__ import annotations

import msgspec

from pipeline.state_machine import Event


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


Internal = ContactBatch | SweepTick

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Internal)


def encode(message: Internal) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> Internal:
    message: Internal = _decoder.decode(data)
    return message
