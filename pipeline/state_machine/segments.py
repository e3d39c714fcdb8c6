"""Value segments (issue 14): the value measures kept per contact and the segment they imply.

A model's ``[segments]`` (compiled to :class:`~.model.Segments`) lists segments in evaluation
order. The engine keeps per contact: net revenue in the model's currency, order counts (promotional
and other-currency ones too), the time of the last order, a short memory of recent orders (for the
recent window and refunds) and of negative-signal times. :func:`evaluate` says which segment those
measures put a contact in, with hysteresis (``stay`` holds a contact where ``enter`` put it);
:func:`segment_deadline` says when elapsed time alone (an order ageing out of the recent window,
a signal ageing out, days since the last order crossing a threshold) next changes the answer.

A **promotional order** is an ``order_completed`` with a ``discount`` greater than 0 or a non-empty
``coupon``. An order in another currency counts as an order (frequency, promo share, last order)
and in ``foreign_orders``, never in revenue.

Pure functions only: times are arguments, like the rest of the engine.
"""

from __future__ import annotations

from typing import Any

from pipeline.state_machine.clock import MICROS_PER_DAY
from pipeline.state_machine.events import Event
from pipeline.state_machine.model import Model, Segment, Segments, all_match
from pipeline.state_machine.state import ContactState, ValueMemo


def is_promotional(properties: dict[str, Any]) -> bool:
    """The documented rule: a discount above 0, or a coupon code, makes an order promotional."""
    discount = properties.get("discount")
    coupon = properties.get("coupon")
    amount = _number(discount)
    return (amount is not None and amount > 0) or (isinstance(coupon, str) and coupon != "")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def is_negative_signal(segments: Segments, event: Event) -> bool:
    if event.event_type not in segments.signal_types:
        return False
    return any(event.event_type in s.on and all_match(s.where, event.properties) for s in segments.signals)


def value_changes(model: Model, segments: Segments, state: ContactState, event: Event, at: int) -> dict[str, Any]:
    """The value fields an event changes (empty: none, so the segment need not be re-evaluated)."""
    changes: dict[str, Any] = {}
    props = event.properties
    event_type = event.event_type
    order_id = props.get("order_id")
    if event_type == model.order_completed and isinstance(order_id, str):
        if not any(memo.order_id == order_id for memo in state.value_orders):
            amount = props.get("amount")
            foreign = props.get("currency") != segments.currency
            net = float(amount) if not foreign and isinstance(amount, int | float) else 0.0
            promo = is_promotional(props)
            memo = ValueMemo(order_id, at, net, promo, foreign)
            changes["value_orders"] = (*state.value_orders, memo)[-model.order_memory :]
            changes["order_count"] = state.order_count + 1
            changes["revenue"] = state.revenue + net
            changes["last_order_at"] = at if state.last_order_at is None else max(at, state.last_order_at)
            if promo:
                changes["promo_orders"] = state.promo_orders + 1
            if foreign:
                changes["foreign_orders"] = state.foreign_orders + 1
    elif event_type == model.order_refunded and isinstance(order_id, str):
        amount = props.get("amount")
        refund = float(amount) if isinstance(amount, int | float) else 0.0
        for i, memo in enumerate(state.value_orders):
            net = memo.net
            if memo.order_id == order_id and net > 0 and refund > 0:
                taken = min(refund, net)  # never more than what the order still brings
                orders = list(state.value_orders)
                orders[i] = ValueMemo(memo.order_id, memo.at, net - taken, memo.promotional, memo.foreign)
                changes["value_orders"] = tuple(orders)
                changes["revenue"] = max(0.0, state.revenue - taken)
                break
    if is_negative_signal(segments, event):
        changes["signals"] = tuple(sorted((*state.signals, at)))[-segments.signal_memory :]
    return changes


def measures(state: ContactState, segments: Segments, now: int) -> dict[str, Any]:
    """The value measures at ``now`` (model.SEGMENT_MEASURES); None where undefined. The measures
    that time alone changes are :func:`_measures_at`'s (the deadline search moves them alone)."""
    signals = state.signals
    last_signal = signals[-1] if signals else None
    since_negative = state.order_count
    if last_signal is not None:
        since_negative = sum(1 for memo in state.value_orders if memo.at > last_signal)
    orders = state.order_count
    values: dict[str, Any] = {
        "revenue": state.revenue,
        "recent_revenue": 0.0,  # the timed measures: set by _measures_at below
        "orders": orders,
        "recent_orders": 0,
        "promo_orders": state.promo_orders,
        "promo_share": state.promo_orders / orders if orders else None,
        "days_since_last_order": None,
        "negative_signals": 0,
        "orders_since_negative": since_negative,
    }
    _measures_at(values, state, segments, now)
    return values


def evaluate(segments: Segments, current: int, values: dict[str, Any]) -> tuple[int, str] | None:
    """The segment ``values`` put a contact in from ``current`` and the reason code of the move,
    or None when it stays. A contact stays while its segment's ``stay`` holds, unless a segment
    evaluated earlier enters; otherwise the first segment whose ``enter`` holds takes it (the
    fallback when none does). Reason: the entered segment's ``enter_reason``, or the left
    segment's ``leave_reason`` when its ``stay`` failed."""
    order = segments.order
    staying = current >= 0 and all_match(order[current].stay, values)
    for index in range(current if staying else len(order)):
        if index != current and all_match(order[index].enter, values):
            if staying or current < 0:
                return index, order[index].enter_reason
            return index, order[current].leave_reason
    if staying or current < 0:
        return None
    return -1, order[current].leave_reason


def segment_deadline(state: ContactState, segments: Segments, now: int) -> int | None:
    """The first time after ``now`` at which elapsed time alone moves the contact's segment."""
    if state.last_order_at is None and not state.signals:
        return None
    candidates: set[int] = set()
    last = state.last_order_at
    if last is not None:
        for threshold in segments.day_thresholds:
            crossing = last + round(threshold * MICROS_PER_DAY)
            candidates.update((crossing - 1, crossing, crossing + 1))
    candidates.update(memo.at + segments.recent_window for memo in state.value_orders)
    candidates.update(t + segments.signal_window for t in state.signals)
    current = state.segment
    order = segments.order
    values: dict[str, Any] | None = None
    stay_static = False
    enter_static: list[bool] = []
    for at in sorted(t for t in candidates if t > now):
        if values is None:
            values = measures(state, segments, at)
            # The tests of measures time does not change hold at every candidate or at none.
            stay_static = current >= 0 and all_match(order[current].stay_static, values)
            enter_static = [all_match(segment.enter_static, values) for segment in order]
        else:
            _measures_at(values, state, segments, at)
        if _moves(order, current, values, stay_static, enter_static):
            return at
    return None


def _moves(
    order: tuple[Segment, ...], current: int, values: dict[str, Any], stay_static: bool, enter_static: list[bool]
) -> bool:
    """``evaluate(segments, current, values) is not None``, given the answers of the static tests
    (a conjunction: the static and the timed tests together are the segment's whole test)."""
    staying = stay_static and all_match(order[current].stay_timed, values)
    for index in range(current if staying else len(order)):
        if index != current and enter_static[index] and all_match(order[index].enter_timed, values):
            return True
    return not (staying or current < 0)


def _measures_at(values: dict[str, Any], state: ContactState, segments: Segments, now: int) -> None:
    """Move ``values`` (``measures(state, segments, t)`` of some t) to ``now``: the measures that
    time alone changes (:func:`measures` sets them here too)."""
    recent_from = now - segments.recent_window
    recent_revenue = 0.0
    recent_orders = 0
    for memo in state.value_orders:
        if memo.at > recent_from:
            recent_revenue += memo.net
            recent_orders += 1
    signal_from = now - segments.signal_window
    last = state.last_order_at
    values["recent_revenue"] = recent_revenue
    values["recent_orders"] = recent_orders
    values["days_since_last_order"] = None if last is None else (now - last) / MICROS_PER_DAY
    values["negative_signals"] = sum(1 for t in state.signals if t > signal_from)
