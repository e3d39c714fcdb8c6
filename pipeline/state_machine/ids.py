"""Derived identifiers: UUIDv5 of what makes a fact unique, so replays and redeliveries agree.

Never random, never clock-based. The same contact, trigger and move always give the same id.
"""

from __future__ import annotations

import hashlib
import uuid

#: Leadflow's UUIDv5 namespace (fixed forever: changing it changes every id ever published).
NAMESPACE = uuid.UUID("6f1c3e0a-8b4d-5d2e-9a47-1e6b2c9d7f30")


_NAMESPACE_BYTES = NAMESPACE.bytes


_SEEDED = hashlib.sha1(_NAMESPACE_BYTES)  # copied per id: the namespace is hashed once
#: RFC 4122 variant bits 10xx: the 17th hex digit of the hash, mapped to 8, 9, a or b.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid5(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))``, computed without building a UUID object (hot path)."""
    hasher = _SEEDED.copy()
    hasher.update(name.encode("utf-8", "surrogatepass"))
    h = hasher.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def transition_id(contact: str, trigger: str, kind: str, from_: str, to: str) -> str:
    """Id of a move; ``trigger`` is the event id, or ``deadline:<micros>`` for a timed move."""
    return uuid5(f"transition\x1f{contact}\x1f{trigger}\x1f{kind}\x1f{from_}\x1f{to}")


def alert_id(contact: str, alert_type: str, trigger: str) -> str:
    """Id of an alert raised by ``trigger`` (an event id) for ``contact``."""
    return uuid5(f"alert\x1f{contact}\x1f{alert_type}\x1f{trigger}")


def referral_event_id(referred_contact: str, trigger_event_id: str) -> str:
    """Id of the ``referral_converted`` event credited to a referrer."""
    return uuid5(f"referral\x1f{referred_contact}\x1f{trigger_event_id}")


def fingerprint(event_id: str) -> bytes:
    """8-byte digest of an event id, kept in contact state for de-duplication (BLAKE2b-64)."""
    hasher = _FINGERPRINT.copy()  # a copy is cheaper than a new hasher with its parameters
    hasher.update(event_id.encode("utf-8", "surrogatepass"))
    return hasher.digest()


_FINGERPRINT = hashlib.blake2b(digest_size=8)


def merge_trigger(event_id: str) -> str:
    """Trigger key of the moves and alert an identity merge causes (distinct from the link event's
    own moves, which the same event makes right after the merge)."""
    return f"merge:{event_id}"


def deadline_trigger(at: int) -> str:
    return f"deadline:{at}"
