"""The lifecycle engine: pure functions from (state, event or time, model) to a decision.

``decide(state, event, model)`` applies one event; ``expire(state, now, model)`` fires the
time-driven moves (cooling regressions, score-decay band drops) due at or before ``now``;
``next_deadline(state, model)`` says when the next one is due. Applying an event at time ``t``
first fires every deadline <= t, so results never depend on when a sweep ran.

No I/O, no clock, no randomness: the same inputs always give the same outputs, ids included.
"""

from __future__ import annotations

import math
import sys
from typing import Any, NamedTuple

import msgspec

from pipeline.state_machine import ids
from pipeline.state_machine.clock import MICROS_PER_DAY, to_rfc3339
from pipeline.state_machine.errors import SealedContactError
from pipeline.state_machine.events import BANT_CRITERIA, LEAD_CONTACTED, LEAD_QUALIFIED, REFERRAL_CONVERTED, Event
from pipeline.state_machine.model import Advance, Model, Regress, all_match
from pipeline.state_machine.records import Alert, AlertReason, ContactSnapshot, FirstTouch, Transition
from pipeline.state_machine.segments import evaluate, measures, segment_deadline, value_changes
from pipeline.state_machine.state import (
    ContactState,
    OrderMemo,
    ScoreMemo,
    has_seen,
    new_contact,
    remember,
    shared_touch,
)

_replace = msgspec.structs.replace
_UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign")
#: The ContactState field behind each clock a cooling rule may count from (model.CLOCKS).
_CLOCK_FIELDS = {
    "last_engagement": "last_engagement_at",
    "last_core_order": "last_core_order_at",
    "last_referral": "last_referral_at",
    "stage_entered": "stage_entered_at",
}


class Decision(NamedTuple):
    """What applying one event (or one expiry) did."""

    state: ContactState
    transitions: list[Transition]
    alerts: list[Alert]
    referrals: list[Event]  # referral credit for other contacts, to apply next
    duplicate: bool
    #: What a ``lead_contacted`` meant for speed to lead (one of :data:`CONTACT_OUTCOMES`), else None.
    contact_outcome: str | None = None


#: ``Decision.contact_outcome`` of a ``lead_contacted``: it answered the open alert before
#: ``respond_by``, or at/after it; it was dated before the alert (answers nothing); there was no
#: alert to answer; the alert had been answered already.
ANSWERED_IN_TIME = "answered_in_time"
ANSWERED_LATE = "answered_late"
BEFORE_ALERT = "before_alert"
NO_ALERT = "no_alert"
ALREADY_ANSWERED = "already_answered"
CONTACT_OUTCOMES: tuple[str, ...] = (ANSWERED_IN_TIME, ANSWERED_LATE, BEFORE_ALERT, NO_ALERT, ALREADY_ANSWERED)


class Deadline(NamedTuple):
    """The next time-driven move of a contact: at ``at``, a band drop, a ``Regress`` rule, or the
    escalation of an unanswered alert (``overdue``)."""

    at: int
    rule: Regress | None  # None: the score decays out of the current band (unless overdue)
    overdue: bool = False  # respond_by of the open became_hot alert passed with no answer
    segment: bool = False  # elapsed time moves the contact's value segment (state.segment_due)


def decayed_score(score: float, score_at: int, at: int, half_life: int) -> float:
    """The score at time ``at``; elapsed time clamps at 0 for an out-of-order event."""
    if at <= score_at or score == 0.0:
        return score
    return float(score * 2.0 ** (-(at - score_at) / half_life))


def band_for(model: Model, current: int, score: float) -> int:
    """The band for ``score`` from ``current``, with hysteresis: enter at ``enter``, leave below
    ``leave_below``."""
    bands = model.bands
    band = current
    while band + 1 < len(bands) and score >= bands[band + 1].enter:
        band += 1
    if band == current:
        while band > 0 and score < bands[band].leave_below:
            band -= 1
    return band


def _measures(state: ContactState) -> dict[str, Any]:
    span = None
    if state.first_core_order_at is not None and state.last_core_order_at is not None:
        span = (state.last_core_order_at - state.first_core_order_at) / MICROS_PER_DAY
    measures = {
        "core_orders": state.core_orders,
        "core_order_span_days": span,
        "referrals_converted": state.referrals_converted,
        "score": state.score,
        "bant": state.bant.bit_count(),
    }
    for bit, criterion in enumerate(BANT_CRITERIA):
        measures[criterion] = bool(state.bant >> bit & 1)
    return measures


def _overdue_at(state: ContactState, model: Model) -> int | None:
    """When the open alert escalates: its ``respond_by``, unless answered, escalated or disabled."""
    if state.escalate_at is None or state.answered_at is not None or state.overdue_fired:
        return None
    return state.escalate_at if model.escalate_overdue else None


def _transition(
    model: Model,
    state: ContactState,
    kind: str,
    from_: str,
    to: str,
    advance: bool,
    reason: str,
    skipped: tuple[str, ...],
    trigger: str | None,
    at: int,
    key: str | None = None,
) -> Transition:
    if key is None:
        key = trigger if trigger is not None else ids.deadline_trigger(at)
    return Transition(  # positional (faster): transition_id, contact_id, kind, from, to, direction,
        # reason, skipped, trigger_event_id, occurred_at, stage, temperature, score, model
        ids.transition_id(state.contact, key, kind, from_, to),
        state.contact,
        kind,
        from_,
        to,
        "advance" if advance else "regress",
        reason,
        skipped,
        trigger,
        to_rfc3339(at),
        model.stages[state.stage],
        model.bands[state.band].name,
        round(state.score, 3),
        model.label,
    )


def _band_transition(
    model: Model, state: ContactState, old: int, reason: str, trigger: str | None, at: int, key: str | None = None
) -> Transition:
    new = state.band
    lo, hi = (old, new) if new > old else (new, old)
    skipped: tuple[str, ...] = ()
    if hi - lo > 1:  # a band jumped over (rare)
        skipped = tuple(model.bands[i].name for i in range(lo + 1, hi))
        if new < old:
            skipped = skipped[::-1]
    return _transition(
        model, state, "temperature", model.bands[old].name, model.bands[new].name, new > old,
        reason, skipped, trigger, at, key,
    )


def _stage_transition(
    model: Model, state: ContactState, old: int, reason: str, trigger: str | None, at: int, key: str | None = None
) -> Transition:
    new = state.stage
    skipped = tuple(model.stages[old + 1 : new]) if new > old else tuple(model.stages[new + 1 : old][::-1])
    return _transition(
        model, state, "stage", model.stages[old], model.stages[new], new > old, reason, skipped, trigger, at, key
    )


def next_deadline(state: ContactState, model: Model) -> Deadline | None:
    """When the contact's next time-driven move is due, and which; None when nothing is pending.
    At equal times the escalation comes first, then a band drop, then cooling, then a segment move."""
    best: Deadline | None = None
    overdue = _overdue_at(state, model)
    if overdue is not None:
        best = Deadline(overdue, None, True)
    if state.band > 0:
        leave = model.bands[state.band].leave_below
        if state.score < leave:
            drop = state.score_at
        else:
            drop = state.score_at + int(model.half_life * math.log2(state.score / leave)) + 1
        if best is None or drop < best.at:
            best = Deadline(drop, None)
    for rule in model.timed_by_stage.get(state.stage, ()):
        anchor: int | None = getattr(state, _CLOCK_FIELDS[rule.since or "stage_entered"])
        start = state.stage_entered_at if anchor is None else max(anchor, state.stage_entered_at)
        assert rule.after is not None
        due = start + rule.after
        if best is None or due < best.at:
            best = Deadline(due, rule)
    segment_due = state.segment_due
    if segment_due is not None and (best is None or segment_due < best.at):
        best = Deadline(segment_due, None, False, True)
    return best


def _with_due(state: ContactState, model: Model) -> ContactState:
    """``state`` with its ``due`` cache set: the time of :func:`next_deadline` (hot path)."""
    due = _overdue_at(state, model) if state.escalate_at is not None else None
    band = state.band
    if band > 0:
        leave = model.bands[band].leave_below
        score = state.score
        drop = state.score_at if score < leave else state.score_at + int(model.half_life * math.log2(score / leave)) + 1
        if due is None or drop < due:
            due = drop
    timed = model.timed_by_stage.get(state.stage)
    if timed:
        entered = state.stage_entered_at
        for rule in timed:
            anchor: int | None = getattr(state, _CLOCK_FIELDS[rule.since or "stage_entered"])
            at = (entered if anchor is None or anchor < entered else anchor) + (rule.after or 0)
            if due is None or at < due:
                due = at
    segment_due = state.segment_due
    if segment_due is not None and (due is None or segment_due < due):
        due = segment_due
    return state if due == state.due else _replace(state, due=due)


def expire(state: ContactState, now: int, model: Model) -> Decision:
    """Fire every time-driven move due at or before ``now``, in deadline order."""
    transitions: list[Transition] = []
    alerts: list[Alert] = []
    if state.due is None or state.due > now:  # the common case: nothing due
        return Decision(state, transitions, alerts, [], False)
    while True:
        deadline = next_deadline(state, model)
        if deadline is None or deadline.at > now:
            break  # ``deadline`` is the next one: what _with_due would compute
        at = deadline.at
        if deadline.overdue:
            state = _replace(state, overdue_fired=True, clock=max(state.clock, at))
            alerts.append(_response_overdue(model, state, at))
        elif deadline.segment:
            state = _replace(state, clock=max(state.clock, at))
            state = _move_segment(model, state, None, at, at, transitions)
        elif deadline.rule is None:
            score = decayed_score(state.score, state.score_at, at, model.half_life)
            old = state.band
            band = band_for(model, old, score)
            if band == old:  # float edge: step just past the crossing
                band = old - 1
            state = _replace(
                state, score=score, score_at=max(at, state.score_at), band=band, clock=max(state.clock, at)
            )
            transitions.append(_band_transition(model, state, old, model.bands[old].leave_reason, None, at))
        else:
            rule = deadline.rule
            old = state.stage
            state = _replace(state, stage=rule.to, stage_entered_at=at, clock=max(state.clock, at))
            transitions.append(_stage_transition(model, state, old, rule.reason, None, at))
    due = None if deadline is None else deadline.at
    if due != state.due:
        state = _replace(state, due=due)
    return Decision(state, transitions, alerts, [], False)


def _first_touch(event: Event) -> tuple[str | None, str | None, str | None, str | None]:
    props = event.properties
    utm = [props.get(key) for key in _UTM_KEYS]
    return (event.source, *(v if isinstance(v, str) else None for v in utm))  # type: ignore[return-value]


def _points(model: Model, event: Event) -> float:
    flat = model.flat_points.get(event.event_type)
    if flat is not None:
        return flat
    for rule in model.points.get(event.event_type, ()):
        if all_match(rule.where, event.properties):
            return rule.points
    return 0.0


def _choose_advance(model: Model, state: ContactState, event: Event) -> Advance | None:
    best: Advance | None = None
    measures: dict[str, Any] | None = None
    if model.advance_ceiling.get(event.event_type, model.stages.__len__()) <= state.stage:
        return None  # already at or above every stage this event could lead to
    candidates = model.advance_candidates.get(event.event_type, model.temperature_advances)
    for rule in candidates:
        if rule.to <= state.stage or state.stage < rule.min_stage:
            continue
        if best is not None and rule.to <= best.to:
            continue
        if rule.identified_only and not state.identified:
            continue
        if rule.on_temperature is not None and state.band < rule.on_temperature:
            continue
        if not all_match(rule.where, event.properties):
            continue
        if rule.require:
            measures = _measures(state) if measures is None else measures
            if not all_match(rule.require, measures):
                continue
        best = rule
    return best


def _choose_regress(model: Model, state: ContactState, event: Event) -> Regress | None:
    for rule in model.regress_by_stage_event.get((state.stage, event.event_type), ()):
        if all_match(rule.where, event.properties) and (
            not rule.require or all_match(rule.require, _measures(state))
        ):
            return rule
    return None


class _OrderEffect(NamedTuple):
    changes: dict[str, Any]
    first_core: bool  # this completes the contact's first counted-tier order
    repeat: bool  # an order already known, reported again under another event id


def _apply_orders(model: Model, state: ContactState, event: Event, at: int) -> _OrderEffect:
    """Order bookkeeping for a completed or refunded order."""
    props = event.properties
    order_id = props.get("order_id")
    if not isinstance(order_id, str):
        return _OrderEffect({}, False, False)
    known = next((memo for memo in state.orders if memo.order_id == order_id), None)
    if event.event_type == model.order_completed:
        if known is not None:  # the shop reported the same order again: it changes nothing
            return _OrderEffect({}, False, True)
        tier = props.get("tier")
        tier = tier if isinstance(tier, str) else ""
        orders = (*state.orders, OrderMemo(order_id, sys.intern(tier), False))[-model.order_memory :]
        changes: dict[str, Any] = {"orders": orders}
        first_core = False
        if tier == model.counted_tier:
            first_core = state.first_core_order_at is None
            changes["core_orders"] = state.core_orders + 1
            changes["first_core_order_at"] = at if first_core else min(at, state.first_core_order_at or at)
            changes["last_core_order_at"] = max(at, state.last_core_order_at or at)
        return _OrderEffect(changes, first_core, False)
    if known is None or known.refunded:  # unknown or already refunded order: nothing to undo
        return _OrderEffect({}, False, False)
    orders = tuple(OrderMemo(o.order_id, o.tier, True) if o.order_id == order_id else o for o in state.orders)
    changes = {"orders": orders}
    if known.tier == model.counted_tier:
        changes["core_orders"] = max(0, state.core_orders - 1)
    return _OrderEffect(changes, False, False)


def decide(state: ContactState | None, event: Event, model: Model) -> Decision:
    """Apply one event to a contact (``None``: a contact not seen before)."""
    at = event.occurred_at
    if state is None:
        state = new_contact(event.contact, event.identified, at)
    fingerprint = ids.fingerprint(event.event_id)
    if has_seen(state.seen, fingerprint):
        return Decision(state, [], [], [], True)
    if state.merged_into is not None:
        raise SealedContactError(state.contact, state.merged_into, event.event_id)

    transitions: list[Transition] = []
    alerts: list[Alert] = []
    if at >= state.clock and state.due is not None and state.due <= at:
        expired = expire(state, at, model)
        state, transitions, alerts = expired.state, expired.transitions, expired.alerts

    # A late (out-of-order) event takes effect at the contact's present: its points add to the score
    # as of the clock and a stage it moves to is entered now, so no deadline is ever scheduled behind
    # the clock (it would fire "in the past", twice with one id, and depend on when a sweep ran).
    now = max(at, state.clock)
    event_type = event.event_type
    changes: dict[str, Any] = {
        "seen": remember(state.seen, fingerprint, model.dedup_window),
        "events_applied": state.events_applied + 1,
        "clock": max(state.clock, at),
        "last_event_at": at if state.last_event_at is None else max(at, state.last_event_at),
    }
    engaged = event_type not in model.non_engagement
    if engaged:
        last = state.last_engagement_at
        changes["last_engagement_at"] = at if last is None else max(at, last)
    if state.first_touch is None:
        changes["first_touch"] = shared_touch(_first_touch(event))
        changes["first_seen_at"] = at
    if state.referred_by is None and event.referred_by and event.referred_by != state.contact:
        changes["referred_by"] = event.referred_by
    if event.identified and not state.identified:
        changes["identified"] = True
    first_core = repeat_order = False
    if event_type == model.order_completed or event_type == model.order_refunded:
        effect = _apply_orders(model, state, event, at)
        changes.update(effect.changes)
        first_core, repeat_order = effect.first_core, effect.repeat
    elif event_type == REFERRAL_CONVERTED:
        changes["referrals_converted"] = state.referrals_converted + 1
        last = state.last_referral_at
        changes["last_referral_at"] = at if last is None else max(at, last)
    elif event_type == LEAD_QUALIFIED:
        changes["bant"] = _bant_answers(state.bant, event.properties)
    segments = model.segments
    value_changed = False
    if segments is not None and (
        event_type == model.order_completed or event_type == model.order_refunded or event_type in segments.signal_types
    ):
        value = value_changes(model, segments, state, event, at)
        if value:
            changes.update(value)
            value_changed = True
    contact_outcome: str | None = None
    if event_type == LEAD_CONTACTED:
        contact_outcome = _contact_outcome(state, at)
        if contact_outcome in (ANSWERED_IN_TIME, ANSWERED_LATE):
            changes["answered_at"] = at
            alerts.append(_alert_answered(model, state, event, at))

    # Score and temperature.
    score = decayed_score(state.score, state.score_at, now, model.half_life)
    points = _points(model, event) if engaged and not repeat_order else 0.0
    score = max(0.0, score + points)
    old_band = state.band
    band_reason = ""
    instant = model.instant_by_event.get(event_type)
    if instant is not None and old_band < instant.band:
        score = max(score, model.bands[instant.band].enter)
        band_reason = instant.reason
    band = band_for(model, old_band, score)
    changes["score"] = score
    changes["score_at"] = max(now, state.score_at)
    changes["band"] = band
    if points:
        memo = ScoreMemo(event.event_id, sys.intern(event_type), points)  # one 'page_view' for all
        changes["scoring_events"] = (*state.scoring_events, memo)[-model.alert_max_reasons :]
    state = _replace(state, **changes)
    if band != old_band:
        if band > old_band:
            reason = band_reason or model.bands[band].enter_reason
        else:
            reason = model.bands[old_band].leave_reason
        transitions.append(_band_transition(model, state, old_band, reason, event.event_id, at))

    # Stage.
    old_stage = state.stage
    # A repeated order report is remembered (de-duplication) but moves nothing.
    advance = None if repeat_order else _choose_advance(model, state, event)
    if advance is not None:
        state = _replace(state, stage=advance.to, stage_entered_at=now)
        transitions.append(_stage_transition(model, state, old_stage, advance.reason, event.event_id, at))
    else:
        regress = None if repeat_order else _choose_regress(model, state, event)
        if regress is not None:
            state = _replace(state, stage=regress.to, stage_entered_at=now)
            transitions.append(_stage_transition(model, state, old_stage, regress.reason, event.event_id, at))

    if value_changed:  # the value inputs changed: re-evaluate the segment as of now
        state = _move_segment(model, state, event.event_id, now, at, transitions)

    entered_alert_band = band >= model.alert_band > old_band
    if entered_alert_band and (state.identified or not model.alert_identified_only):
        state, alert = raise_became_hot(model, state, event.event_id, at)
        alerts.append(alert)

    state = _with_due(state, model)
    referrals: list[Event] = []
    if first_core and state.referred_by is not None:
        referrals.append(
            Event(
                event_id=ids.referral_event_id(state.contact, event.event_id),
                event_type=REFERRAL_CONVERTED,
                source=event.source,
                contact=state.referred_by,
                occurred_at=at,
                identified=True,
                properties={"referred_contact": state.contact, "trigger_event_id": event.event_id},
            )
        )
    return Decision(state, transitions, alerts, referrals, False, contact_outcome)


def _move_segment(
    model: Model, state: ContactState, trigger: str | None, now: int, at: int, transitions: list[Transition],
    key: str | None = None,
) -> ContactState:
    """Re-evaluate the value segment as of ``now`` (a ``segment`` transition when it moves) and
    schedule the next time-driven segment move (``key``: the transition id's trigger key when it is
    not ``trigger``, as for the moves an identity merge causes)."""
    segments = model.segments
    assert segments is not None
    moved = evaluate(segments, state.segment, measures(state, segments, now))
    if moved is not None:
        old = state.segment
        new, reason = moved
        state = _replace(state, segment=new)
        transitions.append(
            _transition(
                model, state, "segment", segments.name_of(old), segments.name_of(new),
                segments.rank_of(new) < segments.rank_of(old), reason, (), trigger, at, key,
            )
        )
    due = segment_deadline(state, segments, now)
    return state if due == state.segment_due else _replace(state, segment_due=due)


def _bant_answers(mask: int, properties: dict[str, Any]) -> int:
    """The BANT mask after a ``lead_qualified``: true confirms a criterion, false clears it."""
    for bit, criterion in enumerate(BANT_CRITERIA):
        answer = properties.get(criterion)
        if answer is True:
            mask |= 1 << bit
        elif answer is False:
            mask &= ~(1 << bit)
    return mask


def _contact_outcome(state: ContactState, at: int) -> str:
    if state.alert_at is None or state.respond_by is None:
        return NO_ALERT
    if state.answered_at is not None:
        return ALREADY_ANSWERED
    if at < state.alert_at:
        return BEFORE_ALERT
    return ANSWERED_IN_TIME if at < state.respond_by else ANSWERED_LATE


def raise_became_hot(model: Model, state: ContactState, trigger: str, at: int) -> tuple[ContactState, Alert]:
    """A ``became_hot`` alert, and the state with it as the open alert (its speed-to-lead clock
    starts: the next ``lead_contacted`` answers it; ``respond_by`` escalates it)."""
    alert = _became_hot(model, state, trigger, at)
    respond_by = at + model.respond_within
    opened = _replace(
        state, alert_id=alert.alert_id, alert_at=at, respond_by=respond_by, answered_at=None,
        overdue_fired=False, escalate_at=max(respond_by, state.clock),
    )
    return opened, alert


def _seconds(micros: int) -> float:
    return round(micros / 1_000_000, 3)


def _response_overdue(model: Model, state: ContactState, at: int) -> Alert:
    """``response_overdue``: the open alert's ``respond_by`` passed with no answer; ``at`` is
    ``respond_by`` (or the contact's present, for an alert a late event raised after it)."""
    assert state.alert_id is not None and state.alert_at is not None and state.respond_by is not None
    return Alert(
        alert_id=ids.alert_id(state.contact, "response_overdue", state.alert_id),
        type="response_overdue",
        contact_id=state.contact,
        stage=model.stages[state.stage],
        score=round(decayed_score(state.score, state.score_at, at, model.half_life), 3),
        occurred_at=to_rfc3339(at),
        respond_by=to_rfc3339(state.respond_by),
        reasons=(),
        first_touch=first_touch(state),
        model=model.label,
        original_alert_id=state.alert_id,
        alert_occurred_at=to_rfc3339(state.alert_at),
        waited_seconds=_seconds(at - state.alert_at),
    )


def _alert_answered(model: Model, state: ContactState, event: Event, at: int) -> Alert:
    """``alert_answered``: the first ``lead_contacted`` after the open alert (in time or late)."""
    assert state.alert_id is not None and state.alert_at is not None and state.respond_by is not None
    props = event.properties
    channel, rep_id = props.get("channel"), props.get("rep_id")
    return Alert(
        alert_id=ids.alert_id(state.contact, "alert_answered", state.alert_id),
        type="alert_answered",
        contact_id=state.contact,
        stage=model.stages[state.stage],
        score=round(decayed_score(state.score, state.score_at, max(at, state.score_at), model.half_life), 3),
        occurred_at=to_rfc3339(at),
        respond_by=to_rfc3339(state.respond_by),
        reasons=(),
        first_touch=first_touch(state),
        model=model.label,
        original_alert_id=state.alert_id,
        alert_occurred_at=to_rfc3339(state.alert_at),
        response_seconds=_seconds(at - state.alert_at),
        late_seconds=_seconds(max(0, at - state.respond_by)),
        channel=channel if isinstance(channel, str) else None,
        rep_id=rep_id if isinstance(rep_id, str) else None,
        trigger_event_id=event.event_id,
    )


def _became_hot(model: Model, state: ContactState, trigger: str, at: int) -> Alert:
    return Alert(
        alert_id=ids.alert_id(state.contact, "became_hot", trigger),
        type="became_hot",
        contact_id=state.contact,
        stage=model.stages[state.stage],
        score=round(state.score, 3),
        occurred_at=to_rfc3339(at),
        respond_by=to_rfc3339(at + model.respond_within),
        reasons=tuple(
            AlertReason(memo.event_id, memo.event_type, memo.points)
            for memo in state.scoring_events[-model.alert_max_reasons :]
        ),
        first_touch=first_touch(state),
        model=model.label,
    )


def first_touch(state: ContactState) -> FirstTouch:
    if state.first_touch is None:
        return FirstTouch()
    return FirstTouch(*state.first_touch)


def snapshot(state: ContactState, model: Model, at: int | None = None) -> ContactSnapshot:
    """The public view of a contact (what ``--contacts`` writes). ``score`` is decayed to ``at``
    when given (for example the replay's ``--until``), else as of the contact's last update."""
    score = state.score if at is None else decayed_score(state.score, state.score_at, at, model.half_life)
    segments = model.segments
    return ContactSnapshot(
        contact_id=state.contact,
        stage=model.stages[state.stage],
        temperature=model.bands[state.band].name,
        score=round(score, 3),
        stage_entered_at=to_rfc3339(state.stage_entered_at),
        last_event_at=None if state.last_event_at is None else to_rfc3339(state.last_event_at),
        core_orders=state.core_orders,
        referrals_converted=state.referrals_converted,
        events_applied=state.events_applied,
        first_touch=first_touch(state),
        referred_by=state.referred_by,
        model=model.label,
        merged_into=state.merged_into,
        segment=None if segments is None else segments.name_of(state.segment),
        revenue=None if segments is None else round(state.revenue, 2),
        orders=None if segments is None else state.order_count,
        promo_orders=None if segments is None else state.promo_orders,
        foreign_orders=None if segments is None else state.foreign_orders,
    )
