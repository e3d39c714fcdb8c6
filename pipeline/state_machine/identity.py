"""Identity merging: an anonymous visitor's history joins the contact an event links it to.

An event carrying both ``contact_id`` C and ``anonymous_id`` X links the anonymous contact
``anon:X`` to C, once; an anonymous id belongs to the first contact it was linked to. Two pure
steps, one per side, so a streaming runtime can run them on the partitions that own each key:

1. :func:`claim_anonymous` on the anonymous side (key ``anon:X``): what the link means
   (:data:`MERGE`, :data:`LINK`, :data:`LINKED` or :data:`CONFLICT`), the anonymous contact's new
   state to store (*sealed*: ``merged_into = C``, kept as the id's alias record) and the history to
   export to C.
2. :func:`merge_identity` on the known side (key C): folds the exported history into C at the
   event's time, *before* the event itself is applied; :func:`decide_linked` does both the merge
   and :func:`~.engine.decide` of the link event, which is what a runtime normally calls.

Merging sums the two scores decayed to the merge time (the band follows with hysteresis, from the
warmer of the two bands), keeps the later stage (an advance with the model's ``merge_reason``,
listing skipped stages) and the earlier first touch, and combines orders, referrals, event counts,
clocks and the de-duplication memory as if one person had done both histories. The merge is
published as a transition of kind ``identity`` (``from`` ``anon:X``, ``to`` C) followed by the
stage and temperature moves it caused, and a ``became_hot`` alert when it made C hot.

All pure: the same states and event give the same result and the same ids (UUIDv5; the merge's
moves use :func:`~.ids.merge_trigger` of the event id as their trigger key).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from pipeline.state_machine import ids
from pipeline.state_machine.engine import (
    Decision,
    _band_transition,
    _move_segment,
    _stage_transition,
    _transition,
    _with_due,
    band_for,
    decayed_score,
    decide,
    expire,
    raise_became_hot,
)
from pipeline.state_machine.errors import LifecycleError, SealedContactError
from pipeline.state_machine.events import Event
from pipeline.state_machine.model import Model
from pipeline.state_machine.records import Alert, Transition
from pipeline.state_machine.state import (
    ALIAS_LIMIT,
    FINGERPRINT_SIZE,
    ContactState,
    OrderMemo,
    TouchMemo,
    has_seen,
    new_contact,
    remember,
)

_replace = msgspec.structs.replace

#: The anonymous contact had a history, now sealed and exported: merge it into the claimant.
MERGE = "merge"
#: The anonymous id was never seen: nothing to merge, only a link (its later events go to the claimant).
LINK = "link"
#: The anonymous id is already linked to this same contact: apply the event as a normal event.
LINKED = "linked"
#: The anonymous id belongs to another contact (a shared device, usually): it stays there, and the
#: event is applied to the claimant as a normal event. Count it and log it.
CONFLICT = "conflict"


class IdentityError(LifecycleError):
    """A merge was asked for with states that do not belong to the link event (a caller bug)."""


class Claim(NamedTuple):
    """What a link event means on the anonymous side."""

    outcome: str  # MERGE | LINK | LINKED | CONFLICT
    state: ContactState  # the anonymous contact's state to store (sealed for MERGE and LINK)
    exported: ContactState | None  # MERGE: the history to pass to merge_identity; else None
    owner: str  # the contact the anonymous id belongs to (the claimant, except for CONFLICT)
    transitions: list[Transition]  # the anonymous contact's own cooling fired up to the link time


def owner_of(state: ContactState | None) -> str | None:
    """Where an anonymous contact's events go: the contact it was merged into (None: itself)."""
    return None if state is None else state.merged_into


def claim_anonymous(anonymous: ContactState | None, link_event: Event, model: Model) -> Claim:
    """The anonymous side of a link: seal ``anonymous`` into the event's contact, or say why not.

    Idempotent under redelivery: the sealed state remembers the link event, and a redelivered link
    exports the same history again (the claimant then recognises the event as a duplicate).
    """
    anon_key = _anonymous_key(link_event)
    claimant = link_event.contact
    at = link_event.occurred_at
    fingerprint = ids.fingerprint(link_event.event_id)
    if anonymous is None:
        tombstone = new_contact(anon_key, False, at)
        sealed = _replace(tombstone, merged_into=claimant, seen=fingerprint)
        return Claim(LINK, sealed, None, claimant, [])
    if anonymous.contact != anon_key:
        raise IdentityError(f"event {link_event.event_id!r} links {anon_key!r}, not {anonymous.contact!r}")
    if anonymous.merged_into is not None:
        if anonymous.merged_into != claimant:
            return Claim(CONFLICT, anonymous, None, anonymous.merged_into, [])
        if has_seen(anonymous.seen, fingerprint):  # the sealing event again: export the same history
            exported = None if anonymous.events_applied == 0 else _unsealed(anonymous, fingerprint, model)
            return Claim(MERGE if exported is not None else LINK, anonymous, exported, claimant, [])
        return Claim(LINKED, anonymous, None, claimant, [])
    transitions: list[Transition] = []
    if at >= anonymous.clock and anonymous.due is not None and anonymous.due <= at:
        expired = expire(anonymous, at, model)
        anonymous, transitions = expired.state, expired.transitions
    sealed = _replace(
        anonymous, merged_into=claimant, seen=remember(anonymous.seen, fingerprint, model.dedup_window), due=None
    )
    return Claim(MERGE, sealed, anonymous, claimant, transitions)


def merge_identity(
    known: ContactState | None, anonymous: ContactState | None, link_event: Event, model: Model
) -> Decision:
    """Fold ``anonymous`` (exported by :func:`claim_anonymous`; None: nothing to merge, only a
    link) into ``known`` (None: a contact not seen before) at the link event's time.

    Returns the merged state (the link event itself is *not* applied: call :func:`decide` next, or
    use :func:`decide_linked`), the ``identity`` record and the moves and alert the merge caused.
    ``duplicate`` is true when ``known`` already applied the link event (nothing happens).
    """
    anon_key = _anonymous_key(link_event)
    at = link_event.occurred_at
    event_id = link_event.event_id
    fingerprint = ids.fingerprint(event_id)
    if known is None:
        known = new_contact(link_event.contact, True, at)
    if has_seen(known.seen, fingerprint):
        return Decision(known, [], [], [], True)
    if known.merged_into is not None:
        raise SealedContactError(known.contact, known.merged_into, event_id)
    if known.contact != link_event.contact:
        raise IdentityError(f"event {event_id!r} is for {link_event.contact!r}, not {known.contact!r}")
    transitions: list[Transition] = []
    alerts: list[Alert] = []
    if at >= known.clock and known.due is not None and known.due <= at:
        expired = expire(known, at, model)
        known, transitions, alerts = expired.state, expired.transitions, expired.alerts
    if anonymous is None or anonymous.events_applied == 0:
        state = _with_due(_replace(known, identified=True, aliases=_with_alias(known.aliases, anon_key)), model)
        transitions.append(_identity_record(model, state, anon_key, model.link_reason, event_id, at))
        return Decision(state, transitions, alerts, [], False)
    if anonymous.contact != anon_key:
        raise IdentityError(f"event {event_id!r} links {anon_key!r}, not {anonymous.contact!r}")
    anonymous = _unsealed(anonymous, fingerprint, model)
    if at >= anonymous.clock and anonymous.due is not None and anonymous.due <= at:
        expired = expire(anonymous, at, model)
        anonymous = expired.state
        transitions.extend(expired.transitions)  # the anonymous contact's own, if claim did not fire them
        alerts.extend(expired.alerts)

    state = _combine(known, anonymous, at, model)
    state = _replace(state, aliases=_with_alias(known.aliases, anon_key))
    key = ids.merge_trigger(event_id)
    transitions.append(_identity_record(model, state, anon_key, model.merge_reason, event_id, at))
    if state.band != known.band:
        transitions.append(_band_transition(model, state, known.band, model.merge_reason, event_id, at, key))
    if state.stage != known.stage:
        transitions.append(_stage_transition(model, state, known.stage, model.merge_reason, event_id, at, key))
    if model.segments is not None and (anonymous.order_count or anonymous.signals):
        valued = _merged_value(state, anonymous, model)
        state = _with_due(_move_segment(model, valued, event_id, at, at, transitions, key), model)
    if state.band >= model.alert_band > known.band and (state.identified or not model.alert_identified_only):
        state, alert = raise_became_hot(model, state, key, at)
        alerts.append(alert)
        state = _with_due(state, model)
    return Decision(state, transitions, alerts, [], False)


def decide_linked(
    known: ContactState | None, anonymous: ContactState | None, link_event: Event, model: Model
) -> Decision:
    """:func:`merge_identity`, then :func:`decide` of the link event on the merged state: one
    decision with the merge's outputs first. What the known side's runtime calls for a link."""
    merged = merge_identity(known, anonymous, link_event, model)
    if merged.duplicate:
        return merged
    applied = decide(merged.state, link_event, model)
    return Decision(
        applied.state,
        merged.transitions + applied.transitions,
        merged.alerts + applied.alerts,
        applied.referrals,
        applied.duplicate,
    )


def _anonymous_key(event: Event) -> str:
    key = event.links
    if key is None or key == event.contact:
        raise IdentityError(f"event {event.event_id!r} links no anonymous id to a contact")
    return key


def _identity_record(
    model: Model, state: ContactState, anon_key: str, reason: str, event_id: str, at: int
) -> Transition:
    return _transition(model, state, "identity", anon_key, state.contact, True, reason, (), event_id, at)


def _unsealed(anonymous: ContactState, fingerprint: bytes, model: Model) -> ContactState:
    """The anonymous history as it was before sealing: no ``merged_into``, no link event id."""
    if anonymous.merged_into is None and not has_seen(anonymous.seen, fingerprint):
        return anonymous
    return _with_due(_replace(anonymous, merged_into=None, seen=_forget(anonymous.seen, fingerprint)), model)


def _forget(seen: bytes, fingerprint: bytes) -> bytes:
    kept = [seen[i : i + FINGERPRINT_SIZE] for i in range(0, len(seen), FINGERPRINT_SIZE)]
    return b"".join(f for f in kept if f != fingerprint)


def _combine(known: ContactState, anon: ContactState, at: int, model: Model) -> ContactState:
    """One person's state from two histories, at ``at`` (or the later of their clocks)."""
    now = max(at, known.clock, anon.clock)
    half_life = model.half_life
    score = decayed_score(known.score, known.score_at, now, half_life) + decayed_score(
        anon.score, anon.score_at, now, half_life
    )
    band = band_for(model, max(known.band, anon.band), score)
    if anon.stage > known.stage:
        stage, entered = anon.stage, anon.stage_entered_at
    elif anon.stage == known.stage:
        stage, entered = known.stage, min(known.stage_entered_at, anon.stage_entered_at)
    else:
        stage, entered = known.stage, known.stage_entered_at
    touch: TouchMemo | None
    first_seen: int | None
    if anon.first_touch is not None and (known.first_touch is None or _first_seen(anon) <= _first_seen(known)):
        touch, first_seen = anon.first_touch, _first_seen(anon)  # a tie goes to the anonymous landing
    else:
        touch, first_seen = known.first_touch, known.first_seen_at
    orders, doubled = _merge_orders(known.orders, anon.orders, model)
    referred_by = known.referred_by
    if referred_by is None and anon.referred_by != known.contact:
        referred_by = anon.referred_by
    seen = anon.seen + known.seen
    overflow = len(seen) - model.dedup_window * FINGERPRINT_SIZE
    merged = _replace(
        known,
        identified=True,
        stage=stage,
        stage_entered_at=entered,
        band=band,
        score=score,
        score_at=now,
        clock=now,
        last_event_at=_latest(known.last_event_at, anon.last_event_at),
        last_engagement_at=_latest(known.last_engagement_at, anon.last_engagement_at),
        core_orders=max(0, known.core_orders + anon.core_orders - doubled),
        first_core_order_at=_earliest(known.first_core_order_at, anon.first_core_order_at),
        last_core_order_at=_latest(known.last_core_order_at, anon.last_core_order_at),
        referrals_converted=known.referrals_converted + anon.referrals_converted,
        last_referral_at=_latest(known.last_referral_at, anon.last_referral_at),
        referred_by=referred_by,
        events_applied=known.events_applied + anon.events_applied,
        first_touch=touch,
        first_seen_at=first_seen,
        scoring_events=(*known.scoring_events, *anon.scoring_events)[-model.alert_max_reasons :],
        orders=orders,
        seen=seen[overflow:] if overflow > 0 else seen,
        bant=known.bant | anon.bant,
    )
    return _with_due(merged, model)


def _with_alias(aliases: tuple[str, ...], anon_key: str) -> tuple[str, ...]:
    """``aliases`` with ``anon_key`` last, keeping the latest ALIAS_LIMIT."""
    kept = (*(a for a in aliases if a != anon_key), anon_key)
    return kept[-ALIAS_LIMIT:]


def _merged_value(known: ContactState, anon: ContactState, model: Model) -> ContactState:
    """The value-segment measures of both histories as one customer's: revenue and order counts
    added (an order id on both sides counted once), the latest order, the order and negative-signal
    memories combined in time order within their limits."""
    memos = {memo.order_id: memo for memo in anon.value_orders}
    shared = [memos[memo.order_id] for memo in known.value_orders if memo.order_id in memos]
    memos.update({memo.order_id: memo for memo in known.value_orders})
    segments = model.segments
    signal_memory = segments.signal_memory if segments is not None else len(known.signals) + len(anon.signals)
    return _replace(
        known,
        revenue=known.revenue + anon.revenue - sum(memo.net for memo in shared if not memo.foreign),
        order_count=known.order_count + anon.order_count - len(shared),
        promo_orders=known.promo_orders + anon.promo_orders - sum(1 for memo in shared if memo.promotional),
        foreign_orders=known.foreign_orders + anon.foreign_orders - sum(1 for memo in shared if memo.foreign),
        last_order_at=_latest(known.last_order_at, anon.last_order_at),
        value_orders=tuple(sorted(memos.values(), key=lambda memo: (memo.at, memo.order_id)))[-model.order_memory :],
        signals=tuple(sorted((*known.signals, *anon.signals)))[-signal_memory:],
    )


def _merge_orders(
    known: tuple[OrderMemo, ...], anon: tuple[OrderMemo, ...], model: Model
) -> tuple[tuple[OrderMemo, ...], int]:
    """Both order memories (anonymous first: usually older), each order id once, refunded when
    either side refunded it; and how many counted-tier orders the two counts share."""
    by_id = {memo.order_id: memo for memo in anon}
    doubled = 0
    combined = list(known)
    for i, memo in enumerate(known):
        order_id, tier, refunded = memo.order_id, memo.tier, memo.refunded
        other = by_id.pop(order_id, None)
        if other is None:
            continue
        counted = model.counted_tier
        on_each = (tier == counted and not refunded) + (other.tier == counted and not other.refunded)
        once = (tier == counted or other.tier == counted) and not (refunded or other.refunded)
        doubled += on_each - once
        combined[i] = OrderMemo(order_id, tier, refunded or other.refunded)
    extra = [memo for memo in anon if memo.order_id in by_id]
    return tuple([*extra, *combined][-model.order_memory :]), doubled


def _first_seen(state: ContactState) -> int:
    """When the contact's first touch happened; for a state stored before ``first_seen_at`` existed,
    the earliest time it remembers (an upper bound)."""
    if state.first_seen_at is not None:
        return state.first_seen_at
    times = (state.stage_entered_at, state.last_event_at, state.last_engagement_at, state.first_core_order_at)
    return min(t for t in times if t is not None)


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
