"""What a Kafka record becomes for a receiver: its event name, its delivery id and its body.

The body is the record exactly as Leadflow published it (``schemas/alert.v1.json`` or
``schemas/transition.v1.json``), so the signature covers the bytes the worker wrote. The delivery
id is the record's own deterministic id (``alert_id`` / ``transition_id``): a redelivery carries the
same id, and a receiver de-duplicates on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from pipeline.webhooks.config import EventFilter

#: ``Leadflow-Event`` header values.
BECAME_HOT = "lead.became_hot"
STAGE_CHANGED = "lead.stage_changed"
TEMPERATURE_CHANGED = "lead.temperature_changed"
IDENTITY_MERGED = "lead.identity_merged"
RESPONSE_OVERDUE = "lead.response_overdue"
ALERT_ANSWERED = "lead.alert_answered"
SEGMENT_CHANGED = "lead.segment_changed"
EVENT_NAMES = (
    BECAME_HOT, STAGE_CHANGED, TEMPERATURE_CHANGED, IDENTITY_MERGED, RESPONSE_OVERDUE, ALERT_ANSWERED, SEGMENT_CHANGED,
)
_ALERT_EVENTS = {"became_hot": BECAME_HOT, "response_overdue": RESPONSE_OVERDUE, "alert_answered": ALERT_ANSWERED}
_TRANSITION_EVENTS = {
    "stage": STAGE_CHANGED, "temperature": TEMPERATURE_CHANGED, "identity": IDENTITY_MERGED, "segment": SEGMENT_CHANGED,
}


class _AlertHead(msgspec.Struct):
    alert_id: str
    type: str
    contact_id: str


class _TransitionHead(msgspec.Struct):
    transition_id: str
    kind: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    contact_id: str = ""


_alert_decoder = msgspec.json.Decoder(_AlertHead)
_transition_decoder = msgspec.json.Decoder(_TransitionHead)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One record to POST to one subscription."""

    delivery_id: str
    event: str
    body: bytes


class UndeliverableRecord(ValueError):
    """A record on an output topic that is not a valid alert or transition (reason in the message)."""


def select(kind: str, value: bytes | None, wanted: EventFilter) -> Delivery | None:
    """The delivery for a record of ``kind`` (``alerts`` or ``transitions``), or ``None`` when the
    subscription's filter does not want it. Raises :class:`UndeliverableRecord` for a record that
    cannot be read (only the fields needed to route it are decoded; the body is sent as it is)."""
    if not value:
        raise UndeliverableRecord("empty record value")
    try:
        if kind == "alerts":
            alert = _alert_decoder.decode(value)
            if not wanted.wants_alert(alert.type):
                return None
            return Delivery(alert.alert_id, _ALERT_EVENTS[alert.type], value)
        transition = _transition_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise UndeliverableRecord(f"not a {kind[:-1]} record: {exc}") from None
    if not wanted.wants_transition(transition.kind, transition.from_, transition.to):
        return None
    return Delivery(transition.transition_id, _TRANSITION_EVENTS[transition.kind], value)
