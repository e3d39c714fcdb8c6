"""Identity merging, rule by rule, with hand-computed scores (default model: half-life 14 days).

``P`` drives contacts through :class:`LifecycleProcessor` (what replay runs); the last tests drive
the pure two-sided API the stream uses (claim on the anonymous side, merge on the known side).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from pipeline.state_machine import (
    CONFLICT,
    LINK,
    LINKED,
    MERGE,
    Event,
    SealedContactError,
    claim_anonymous,
    decide,
    decide_linked,
    decode_state,
    encode_state,
    snapshot,
)
from pipeline.state_machine.processor import UNRESOLVED, LifecycleProcessor, Outcome
from pipeline.state_machine.state import ContactState

DAY = 86_400_000_000


def linked(event: Event, anonymous_id: str) -> Event:
    return msgspec.structs.replace(event, anonymous_id=anonymous_id)


class P:
    """A processor plus every output, in order."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.processor = LifecycleProcessor(model)
        self.outcomes: list[Outcome] = []

    def feed(self, *events: Event) -> Outcome:
        for e in events:
            self.outcomes.append(self.processor.apply(e))
        return self.outcomes[-1]

    def state(self, contact: str) -> ContactState:
        return self.processor.states[contact]

    @property
    def transitions(self) -> list[Any]:
        return [t for o in self.outcomes for t in o.transitions]

    @property
    def alerts(self) -> list[Any]:
        return [a for o in self.outcomes for a in o.alerts]

    def moves(self, contact: str) -> list[tuple[str, str, str, str]]:
        return [(t.kind, t.from_, t.to, t.reason) for t in self.transitions if t.contact_id == contact]


@pytest.fixture
def p(model: Any) -> P:
    return P(model)


def test_scores_are_decayed_to_the_merge_time_then_added(p: P, event: Callable[..., Event], at: Any) -> None:
    p.feed(event("form_submit", at(0), "c1"))  # 10 at day 0
    p.feed(event("page_view", at(1), "anon:v1", url="u", page_category="pricing"),
           event("page_view", at(1), "anon:v1", url="u", page_category="pricing"))  # 10 at day 1
    link = linked(event("email_opened", at(14), "c1", campaign_id="k"), "v1")  # +2 after the merge
    outcome = p.feed(link)
    merged = 10 * 0.5 + 10 * 2 ** (-13 / 14)
    identity = outcome.transitions[0]
    assert (identity.kind, identity.from_, identity.to, identity.reason) == (
        "identity", "anon:v1", "c1", "merged_anonymous_history")
    assert identity.score == round(merged, 3) and identity.trigger_event_id == link.event_id
    assert p.state("c1").score == pytest.approx(merged + 2, abs=1e-9)
    assert outcome.link == MERGE and p.state("anon:v1").merged_into == "c1"


def test_band_follows_with_hysteresis_from_the_warmer_side_and_becoming_hot_alerts(
    p: P, event: Callable[..., Event], at: Any
) -> None:
    p.feed(event("trial_start", at(0), "c1"), event("form_submit", at(0), "c1"))  # 25: warm
    anon = [event("content_download", at(0, hours=1), "anon:v1", asset_id="g"),
            event("add_to_cart", at(0, hours=1), "anon:v1", product_id="p"),
            event("add_to_cart", at(0, hours=1), "anon:v1", product_id="q"),
            event("page_view", at(0, hours=1), "anon:v1", url="u", page_category="pricing")]  # 30
    p.feed(*anon)
    link = linked(event("page_view", at(0, hours=2), "c1", url="u"), "v1")
    p.feed(link)
    moves = p.moves("c1")
    assert ("temperature", "warm", "hot", "merged_anonymous_history") in moves
    [alert] = p.alerts
    assert alert.contact_id == "c1" and alert.score == round(25 * 2 ** (-2 / 336) + 30 * 2 ** (-1 / 336), 3) == 54.835
    assert alert.alert_id != p.alerts[0].contact_id and alert.occurred_at == "2025-03-01T11:00:00Z"
    assert {r.event_id for r in alert.reasons} >= {e.event_id for e in anon}
    # A contact already hot: no second alert from a merge.
    q = P(p.model)
    q.feed(event("demo_request", at(0), "c2"), event("demo_request", at(0), "anon:v2"))
    q.feed(linked(event("page_view", at(0, hours=1), "c2", url="u"), "v2"))
    assert [a.type for a in q.alerts] == ["became_hot", "response_overdue"]  # escalated at respond_by


def test_an_anonymous_visitor_already_hot_stays_hot_in_the_merge(p: P, event: Callable[..., Event], at: Any) -> None:
    p.feed(event("demo_request", at(0), "anon:v1"))  # hot at 50, anonymous: no alert
    p.feed(event("page_view", at(4), "anon:v1", url="u"))  # 50 * 2^(-4/14) + 1 = 42.08: still hot
    p.feed(linked(event("page_view", at(4, hours=1), "c1", url="u"), "v1"))  # a new contact: 0 + 41.99
    identity = next(t for t in p.transitions if t.kind == "identity")
    assert identity.score == round((50 * 2 ** (-4 / 14) + 1) * 2 ** (-1 / 336), 3)
    assert identity.temperature == "hot"  # from cold, 41.99 would only be warm: hysteresis from the hotter side
    assert p.model.bands[p.state("c1").band].name == "hot"
    assert [a.contact_id for a in p.alerts] == ["c1"]


def test_stage_is_the_later_one_as_an_advance_listing_skipped_stages(
    p: P, event: Callable[..., Event], at: Any
) -> None:
    p.feed(event("page_view", at(0), "c1", url="u"), event("trial_start", at(0), "anon:v1"))  # anon: buyer
    p.feed(linked(event("page_view", at(1), "c1", url="u"), "v1"))
    merge = next(t for t in p.transitions if t.contact_id == "c1" and t.kind == "stage")
    assert (merge.from_, merge.to, merge.reason, merge.skipped) == ("niche", "buyer", "merged_anonymous_history",
                                                                   ("lead",))
    assert p.state("c1").stage_entered_at == at(0)  # entered when the person entered it
    # The known side further on: no stage move.
    q = P(p.model)
    q.feed(event("trial_start", at(0), "c2"), event("content_download", at(0), "anon:v2", asset_id="g"))
    q.feed(linked(event("page_view", at(1), "c2", url="u"), "v2"))
    assert [m for m in q.moves("c2") if m[0] == "stage"] == [("stage", "niche", "buyer", "started_trial")]
    assert q.model.stages[q.state("c2").stage] == "buyer"


def test_first_touch_is_the_earlier_of_the_two(p: P, event: Callable[..., Event], at: Any) -> None:
    p.feed(event("page_view", at(0), "anon:v1", url="u", utm_source="facebook"),
           event("page_view", at(1), "c1", url="u", utm_source="google"))
    p.feed(linked(event("page_view", at(2), "c1", url="u"), "v1"))
    assert p.state("c1").first_touch == ("website", "facebook", None, None)
    assert p.state("c1").first_seen_at == at(0)
    q = P(p.model)
    q.feed(event("page_view", at(0), "c2", url="u", utm_source="google"),
           event("page_view", at(1), "anon:v2", url="u", utm_source="facebook"))
    q.feed(linked(event("page_view", at(2), "c2", url="u"), "v2"))
    assert q.state("c2").first_touch == ("website", "google", None, None)


def test_orders_referrals_counts_and_clocks_combine_as_one_person(
    p: P, event: Callable[..., Event], core_order: Callable[..., Event], at: Any
) -> None:
    p.feed(core_order(at(0), "o1", "anon:v1"), core_order(at(10), "o2", "c1"),
           core_order(at(11), "o2", "anon:v1", event_id="o2-again"))  # the same order reported on both sides
    p.feed(linked(event("page_view", at(20), "c1", url="u"), "v1"))
    state = p.state("c1")
    assert state.core_orders == 2  # o1 and o2, o2 once
    assert (state.first_core_order_at, state.last_core_order_at) == (at(0), at(11))
    assert state.events_applied == 4
    assert {o.order_id for o in state.orders} == {"o1", "o2"}
    p.feed(event("order_refunded", at(21), "c1", order_id="o1", amount=10))  # a refund of the anonymous order
    assert p.state("c1").core_orders == 1


def test_later_anonymous_events_go_to_the_contact_and_several_devices_merge(
    p: P, event: Callable[..., Event], at: Any
) -> None:
    p.feed(event("page_view", at(0), "anon:phone", url="u"), event("page_view", at(0), "anon:laptop", url="u"))
    p.feed(linked(event("signup", at(1), "c1"), "phone"), linked(event("page_view", at(2), "c1", url="u"), "laptop"))
    outcome = p.feed(event("content_download", at(3), "anon:phone", asset_id="g"))
    assert outcome.forwarded and p.state("c1").events_applied == 5
    assert p.state("anon:phone").events_applied == 1  # sealed at the merge
    assert [t.from_ for t in p.transitions if t.kind == "identity"] == ["anon:phone", "anon:laptop"]
    view = snapshot(p.state("anon:laptop"), p.model)
    assert view.merged_into == "c1"


def test_an_anonymous_id_stays_with_its_first_contact(p: P, event: Callable[..., Event], at: Any) -> None:
    p.feed(event("page_view", at(0), "anon:v1", url="u"), linked(event("signup", at(1), "c1"), "v1"))
    outcome = p.feed(linked(event("signup", at(2), "d1"), "v1"))
    assert (outcome.link, outcome.owner) == (CONFLICT, "c1")
    assert p.state("d1").events_applied == 1 and p.state("anon:v1").merged_into == "c1"
    assert not [t for t in outcome.transitions if t.kind == "identity"]
    assert p.feed(event("page_view", at(3), "anon:v1", url="u")).forwarded
    assert p.state("c1").events_applied == 3
    assert p.feed(linked(event("page_view", at(4), "c1", url="u"), "v1")).link == LINKED


def test_a_link_to_an_unknown_visitor_is_only_a_link(p: P, event: Callable[..., Event], at: Any) -> None:
    p.feed(event("page_view", at(0), "c1", url="u", utm_source="google"))
    outcome = p.feed(linked(event("page_view", at(1), "c1", url="u"), "v9"))
    assert outcome.link == LINK
    assert [(t.kind, t.reason) for t in outcome.transitions] == [("identity", "linked_anonymous_id")]
    assert p.state("anon:v9").merged_into == "c1" and p.state("c1").events_applied == 2
    assert p.feed(event("page_view", at(2), "anon:v9", url="u")).forwarded


def test_redelivery_of_the_link_and_of_merged_events_changes_nothing(
    p: P, event: Callable[..., Event], at: Any
) -> None:
    anon = event("page_view", at(0), "anon:v1", url="u")
    link = linked(event("signup", at(1), "c1"), "v1")
    p.feed(anon, link)
    before = dict(p.processor.states)
    for again in (link, anon, link):
        outcome = p.feed(again)
        assert outcome.duplicate and not outcome.transitions and not outcome.alerts
    assert dict(p.processor.states) == before


def test_the_two_sides_can_run_apart_as_on_two_partitions(
    p: P, model: Any, event: Callable[..., Event], at: Any
) -> None:
    anon_events = [event("page_view", at(0), "anon:v1", url="u", utm_source="facebook"),
                   event("content_download", at(0, hours=1), "anon:v1", asset_id="g")]
    own = event("page_view", at(0, hours=2), "c1", url="u")
    known = decide(None, own, model).state
    p.feed(*anon_events, own)
    anonymous: ContactState | None = None
    for e in anon_events:
        anonymous = decide(anonymous, e, model).state
    link = linked(event("form_submit", at(0, hours=3), "c1", form_id="f"), "v1")
    p.feed(link)
    claim = claim_anonymous(anonymous, link, model)  # on the anonymous contact's partition
    assert claim.outcome == MERGE and claim.state.merged_into == "c1"
    decision = decide_linked(known, claim.exported, link, model)  # on the contact's partition
    assert claim.state == p.state("anon:v1")
    assert decision.state == p.state("c1")
    # A redelivered link: the anonymous side exports the same history, the contact recognises it.
    again = claim_anonymous(claim.state, link, model)
    assert again.outcome == MERGE and again.exported == claim.exported
    assert decide_linked(decision.state, again.exported, link, model).duplicate


def test_a_sealed_contact_refuses_events_and_a_partitioned_processor_leaves_links_unresolved(
    model: Any, event: Callable[..., Event], at: Any
) -> None:
    anonymous = decide(None, event("page_view", at(0), "anon:v1", url="u"), model).state
    sealed = claim_anonymous(anonymous, linked(event("signup", at(1), "c1"), "v1"), model).state
    with pytest.raises(SealedContactError, match="apply it to 'c1'"):
        decide(sealed, event("page_view", at(2), "anon:v1", url="u"), model)
    partitioned = LifecycleProcessor(model, owns=lambda contact: True)
    outcome = partitioned.apply(linked(event("signup", at(1), "c1"), "v1"))
    assert outcome.link == UNRESOLVED and partitioned.states["c1"].events_applied == 1


def test_states_encoded_before_the_identity_fields_still_decode(model: Any, event: Callable[..., Event]) -> None:
    # A state written by the release before this wave: every field up to ``first_seen_at``.
    names = ContactState.__struct_fields__
    kept = names[: names.index("first_seen_at")]
    blank = ContactState(contact="x", identified=True)
    legacy = msgspec.defstruct("LegacyState", [(n, Any, getattr(blank, n)) for n in kept], array_like=True, frozen=True)
    state = decide(None, event("page_view", 1_000, "c1", url="u", utm_source="x"), model).state
    old = legacy(**{n: getattr(state, n) for n in kept})
    decoded = decode_state(msgspec.msgpack.encode(old))
    assert decoded == msgspec.structs.replace(state, **{n: getattr(blank, n) for n in names[len(kept):]})
    assert decode_state(encode_state(state)) == state


def test_an_anonymous_buyer_s_orders_count_toward_the_person_s_value_segment(model: Any) -> None:
    """Orders and negative signals of the anonymous history join the person's value measures at
    the merge, as if one customer had placed them all: the same revenue, counts and segment as the
    same events sent under the person's id, and a segment move with the merge's reason."""
    def order(event_id: str, at: int, amount: int, contact: str, identified: bool, **extra: Any) -> Event:
        return Event(event_id, "order_completed", "purchase", contact, at, identified,
                     {"order_id": event_id, "amount": amount, "currency": "VND", "tier": "core", **extra})

    anonymous = [order("o1", 1 * DAY, 2_000_000, "anon:v1", False),
                 order("o2", 20 * DAY, 1_500_000, "anon:v1", False, coupon="SPRING")]
    mine = [order("o3", 30 * DAY, 2_500_000, "c1", True)]
    link = Event("l1", "page_view", "website", "c1", 40 * DAY, True, {"url": "u"}, anonymous_id="v1")
    merged = P(model)
    merged.feed(*anonymous, *mine, link)
    as_one = P(model)
    as_one.feed(*[msgspec.structs.replace(e, contact="c1", identified=True) for e in anonymous], *mine,
                msgspec.structs.replace(link, anonymous_id=None))
    person, one = merged.state("c1"), as_one.state("c1")
    fields = ("revenue", "order_count", "promo_orders", "foreign_orders", "last_order_at", "value_orders", "segment")
    assert {f: getattr(person, f) for f in fields} == {f: getattr(one, f) for f in fields}
    assert person.revenue == 6_000_000 and person.order_count == 3 and person.promo_orders == 1
    # c1 alone bought once at full price (big_potential); the merge brings two more orders.
    at_merge = [t for t in merged.transitions if t.kind == "segment" and t.trigger_event_id == "l1"]
    before = next(t for t in merged.transitions if t.kind == "segment" and t.contact_id == "c1")
    assert before.to == "big_potential" and before.trigger_event_id == "o3"
    # Together: 3 orders, 6,000,000 VND in the last year, one in three with a coupon: loyal.
    assert [(t.from_, t.to, t.reason) for t in at_merge] == [("big_potential", "loyal", "became_loyal")]
    assert model.segments.name_of(person.segment) == "loyal"
