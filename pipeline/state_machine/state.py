"""Contact state: everything the engine remembers about one contact, kept small.

Millions of contacts must fit one worker, so the state is a compact, immutable record:
stage and band as indexes into the model, times as integer microseconds, de-duplication memory as
a ring of 8-byte event-id fingerprints (``dedup_window`` of them), and a bounded order memory.
It serializes with msgspec (MessagePack, array-like) for the changelog and RocksDB; new fields are
only ever appended with a default, so every older encoding still decodes. The memos (orders, value
orders, scoring events) are array-like structs, which encode as the tuples they replaced did, and
:func:`decode_state` shares repeated values (:func:`compact`): about 1.5 KB per contact in memory.

An anonymous contact (``anon:<id>``) whose history was merged into an identified contact keeps its
last state, *sealed*: ``merged_into`` names the contact that absorbed it. A sealed state is the
alias record of the anonymous id (it lives under the anonymous contact's key, in the same table),
so the processor forwards the id's later events to ``merged_into``.
"""

from __future__ import annotations

import operator
import sys

import msgspec

from pipeline.state_machine.events import Event


class OrderMemo(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One of the last few orders, oldest first: encoded ``[order_id, tier, refunded]``, as the
    tuple it replaced was (40 bytes in memory instead of 64)."""

    order_id: str
    tier: str
    refunded: bool


class ScoreMemo(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One of the last few scoring events, oldest first (the reasons of a ``became_hot`` alert).

    Encoded as the array ``[event_id, event_type, points]``, as the tuple it replaced was (states
    written before decode the same); in memory 40 bytes instead of a 64-byte tracked tuple."""

    event_id: str
    event_type: str
    points: float


class ValueMemo(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One of the last few orders, oldest first, for the value segments (a refund lowers ``net``,
    the amount in the model currency): encoded ``[order_id, at, net, promotional, foreign]``, as the
    tuple it replaced was (56 bytes in memory instead of 80)."""

    order_id: str
    at: int
    net: float
    promotional: bool
    foreign: bool


#: (source, utm_source, utm_medium, utm_campaign) of the first applied event.
TouchMemo = tuple[str | None, str | None, str | None, str | None]

FINGERPRINT_SIZE = 8
#: How many anonymous keys a contact remembers as its own (older links still resolve, by a claim).
ALIAS_LIMIT = 16


class ContactState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One contact's state. ``clock`` is the latest time applied (event or fired deadline)."""

    contact: str
    identified: bool
    stage: int = 0
    band: int = 0
    score: float = 0.0
    score_at: int = 0
    clock: int = 0
    stage_entered_at: int = 0
    last_event_at: int | None = None
    last_engagement_at: int | None = None
    core_orders: int = 0
    first_core_order_at: int | None = None
    last_core_order_at: int | None = None
    referrals_converted: int = 0
    last_referral_at: int | None = None
    referred_by: str | None = None
    events_applied: int = 0
    first_touch: TouchMemo | None = None
    scoring_events: tuple[ScoreMemo, ...] = ()
    orders: tuple[OrderMemo, ...] = ()
    seen: bytes = b""
    due: int | None = None  # cache of engine.next_deadline(state).at: kept current by the engine
    # Trailing fields added with identity merging (issue 11): states encoded before them still
    # decode (array-like MessagePack: missing trailing fields take their defaults).
    first_seen_at: int | None = None  # time of the event that set ``first_touch``
    merged_into: str | None = None  # an anonymous contact sealed into this contact: its events go there
    # Identity across partitions (issue 11): the anonymous contact keys merged or linked into this
    # contact (the latest ALIAS_LIMIT; a link to one of them needs no claim), and, in a partitioned
    # runtime only, the anonymous key whose claim is in flight with the events held until it is
    # resolved (applied then, in order; see processor.LifecycleProcessor).
    aliases: tuple[str, ...] = ()
    awaiting: str | None = None
    held: tuple[Event, ...] = ()
    # Trailing fields added with the sales loop (issue 13).
    bant: int = 0  # BANT criteria sales confirmed, a bit mask over events.BANT_CRITERIA (budget = bit 0)
    alert_id: str | None = None  # the latest became_hot alert (speed to lead), until the next one
    alert_at: int | None = None  # when it was raised
    respond_by: int | None = None  # contact the lead before this time
    answered_at: int | None = None  # the first lead_contacted at or after alert_at (None: not answered)
    overdue_fired: bool = False  # response_overdue was published for this alert
    # When the escalation fires: respond_by, or the contact's clock when a late (out-of-order) event
    # raised the alert with a respond_by already behind it (a deadline is never scheduled in the past).
    escalate_at: int | None = None
    # Trailing fields added with value segments (issue 14); only kept when the model has [segments].
    segment: int = -1  # index into model.segments.order; -1: the fallback segment ("none")
    revenue: float = 0.0  # lifetime revenue in the model currency, net of refunds
    order_count: int = 0  # completed orders, every currency and tier
    promo_orders: int = 0  # completed orders bought with a promotion (discount > 0 or a coupon)
    foreign_orders: int = 0  # completed orders in another currency (counted, never summed)
    last_order_at: int | None = None
    value_orders: tuple[ValueMemo, ...] = ()  # the latest model.order_memory orders
    signals: tuple[int, ...] = ()  # times of the latest negative signals (segments.signal_memory)
    segment_due: int | None = None  # when a time-driven segment move is next due (None: none)


def new_contact(contact: str, identified: bool, at: int) -> ContactState:
    """A contact first seen at ``at``: first stage, first band, score 0. No transition is emitted."""
    return ContactState(contact=contact, identified=identified, score_at=at, clock=at, stage_entered_at=at)


def has_seen(seen: bytes, fingerprint: bytes) -> bool:
    """Whether ``fingerprint`` is one of the remembered event ids (aligned match only)."""
    start = seen.find(fingerprint)
    while start != -1:
        if start % FINGERPRINT_SIZE == 0:
            return True
        start = seen.find(fingerprint, start + 1)
    return False


def remember(seen: bytes, fingerprint: bytes, window: int) -> bytes:
    """Add ``fingerprint``, forgetting the oldest beyond ``window`` entries."""
    seen += fingerprint
    overflow = len(seen) - window * FINGERPRINT_SIZE
    return seen[overflow:] if overflow > 0 else seen


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ContactState)


def encode_state(state: ContactState) -> bytes:
    """Compact binary form of a contact state (MessagePack)."""
    return _ENCODER.encode(state)


def decode_state(data: bytes, *, share: bool = True) -> ContactState:
    """A contact state from :func:`encode_state` bytes (any older layout too).

    ``share`` (the default): :func:`compact` it, for a state that stays in memory (about 1.5 KB
    instead of 2.3 KB per contact, for about 8 us more per decode). ``share=False`` for a state
    read, used and dropped (a read-through store such as RocksDB): equal, just not compacted."""
    state: ContactState = _DECODER.decode(data)
    return compact(state) if share else state


#: The integer time fields of a state (microseconds): equal times share one object after decoding
#: (the clock is usually also the score's time, the last event's and the last engagement's).
_TIME_FIELDS = (
    "clock", "score_at", "stage_entered_at", "last_event_at", "last_engagement_at", "first_core_order_at",
    "last_core_order_at", "last_referral_at", "due", "first_seen_at", "alert_at", "respond_by", "answered_at",
    "escalate_at", "last_order_at", "segment_due",
)


def compact(state: ContactState) -> ContactState:
    """``state`` with its repeated values shared, equal in every field (``==``, and encodes to the
    same bytes): a decoded state holds a new object for every value, so the same time in five
    fields, an order id in both order memories, and event types, sources, tiers and utm values
    that thousands of contacts repeat take memory many times. Strings from a small vocabulary are
    interned (``sys.intern``), point values and first touches shared by every state; times and
    order ids are shared within the state (a zero point value is kept as it is: never 0.0 for -0.0)."""
    changes: dict[str, object] = {}
    ints: dict[int, int] = {}
    for name, value in zip(_TIME_FIELDS, _times_of(state), strict=True):
        if value is not None:
            shared = ints.setdefault(value, value)
            if shared is not value:
                changes[name] = shared
    touch = state.first_touch
    if touch is not None:
        changes["first_touch"] = shared_touch(touch)
    if state.scoring_events:
        if len(_POINTS) >= _MEMO_LIMIT:
            _POINTS.clear()
        changes["scoring_events"] = tuple([
            ScoreMemo(memo.event_id, _intern(memo.event_type),
                      _POINTS.setdefault(memo.points, memo.points) if memo.points else memo.points)
            for memo in state.scoring_events
        ])
    strings: dict[str, str] = {}
    if state.orders:
        changes["orders"] = tuple([
            OrderMemo(strings.setdefault(memo.order_id, memo.order_id), _intern(memo.tier), memo.refunded)
            for memo in state.orders
        ])
    if state.value_orders:
        changes["value_orders"] = tuple([
            ValueMemo(strings.get(memo.order_id, memo.order_id), ints.setdefault(memo.at, memo.at), memo.net,
                      memo.promotional, memo.foreign)
            for memo in state.value_orders
        ])
    if state.signals:
        changes["signals"] = tuple([ints.setdefault(at, at) for at in state.signals])
    return msgspec.structs.replace(state, **changes) if changes else state


_intern = sys.intern
_times_of = operator.attrgetter(*_TIME_FIELDS)
#: Bounded memos shared by every state: first touches (a few sources and campaigns) and point
#: values (the model's), so a million contacts hold a few hundred objects, not a million.
_TOUCHES: dict[TouchMemo, TouchMemo] = {}
_POINTS: dict[float, float] = {}
_MEMO_LIMIT = 65_536


def shared_touch(touch: TouchMemo) -> TouchMemo:
    """The one shared copy of an equal first touch (its strings interned)."""
    shared = _TOUCHES.get(touch)
    if shared is None:
        if len(_TOUCHES) >= _MEMO_LIMIT:
            _TOUCHES.clear()
        source, utm_source, utm_medium, utm_campaign = touch
        shared = _TOUCHES[touch] = (
            None if source is None else _intern(source),
            None if utm_source is None else _intern(utm_source),
            None if utm_medium is None else _intern(utm_medium),
            None if utm_campaign is None else _intern(utm_campaign),
        )
    return shared
