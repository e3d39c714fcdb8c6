"""Properties of identity merging over generated journeys (hypothesis).

- The merge does not depend on how the anonymous and the known events were interleaved before the
  link (each side's events in time order, as the rules assume): the same states, the same moves.
- With only positive, non-instant points, the merged score is one person's score (decay is linear).
- Re-feeding any prefix of a journey (links, forwarded and conflicting events included) is a no-op.
- Transition and alert ids stay unique.
"""

from __future__ import annotations

import math

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.state_machine import Event, builtin_model
from pipeline.state_machine.processor import LifecycleProcessor

T0 = 1_740_819_600_000_000  # 2025-03-01T09:00:00Z
MINUTE = 60_000_000
DAY = 1440 * MINUTE
MODEL = builtin_model("default")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

POSITIVE = ("page_view", "content_download", "form_submit", "email_opened", "email_clicked", "add_to_cart",
            "trial_start", "signup", "offer_claimed")
ANY = (*POSITIVE, "email_sent", "email_unsubscribed", "order_completed", "order_refunded", "demo_request",
       "review_submitted", "email_complained", "checkout_start")
SOURCE = {"order_completed": "purchase", "order_refunded": "purchase",
          **{t: "email" for t in ANY if t.startswith("email_")}}


def _props(draw: st.DrawFn, event_type: str) -> dict[str, object]:
    if event_type in ("order_completed", "order_refunded"):
        return {"order_id": f"o{draw(st.integers(1, 4))}", "tier": draw(st.sampled_from(["core", "entry"]))}
    if event_type == "review_submitted":
        return {"rating": draw(st.integers(1, 5))}
    if event_type == "page_view":
        return {"page_category": draw(st.sampled_from(["blog", "pricing"])),
                "utm_source": draw(st.sampled_from(["facebook", "google"]))}
    return {}


@st.composite
def sides(draw: st.DrawFn, types: tuple[str, ...]) -> tuple[list[Event], list[Event], Event]:
    """Anonymous events of v1 and known events of c1, each in time order (distinct times), and the
    link event after both."""
    count = draw(st.integers(1, 30))
    times = sorted(draw(st.lists(st.integers(0, 200 * DAY // MINUTE), min_size=count, max_size=count,
                                 unique=True)))
    anon: list[Event] = []
    known: list[Event] = []
    for i, minute in enumerate(times):
        is_anon = draw(st.booleans())
        event_type = draw(st.sampled_from(types))
        anon_or_known = anon if is_anon else known
        anon_or_known.append(Event(f"e{i}", event_type, SOURCE.get(event_type, "website"),
                                   "anon:v1" if is_anon else "c1", T0 + minute * MINUTE, not is_anon,
                                   _props(draw, event_type)))
    link_at = T0 + (times[-1] + draw(st.integers(1, 60 * 24 * 30))) * MINUTE
    link = Event("link", "page_view", "website", "c1", link_at, True, {"url": "u"}, anonymous_id="v1")
    return anon, known, link


def _play(events: list[Event]) -> LifecycleProcessor:
    processor = LifecycleProcessor(MODEL)
    for event in events:
        processor.apply(event)
    return processor


def _merge_in_time(anon: list[Event], known: list[Event]) -> list[Event]:
    return sorted([*anon, *known], key=lambda e: e.occurred_at)


@SETTINGS
@given(sides(ANY))
def test_the_merge_does_not_depend_on_how_the_two_histories_were_interleaved(case) -> None:
    anon, known, link = case
    runs = [_play([*order, link]) for order in (_merge_in_time(anon, known), [*anon, *known], [*known, *anon])]
    for run in runs[1:]:
        assert dict(run.states) == dict(runs[0].states)


@SETTINGS
@given(sides(POSITIVE))
def test_the_merged_score_is_one_persons_score(case) -> None:
    anon, known, link = case
    merged = _play([*_merge_in_time(anon, known), link]).states["c1"]
    one = [msgspec.structs.replace(e, contact="c1", identified=True) for e in _merge_in_time(anon, known)]
    person = _play([*one, link]).states["c1"]
    assert math.isclose(merged.score, person.score, rel_tol=1e-9, abs_tol=1e-9)
    assert merged.events_applied == person.events_applied
    assert merged.first_touch == person.first_touch
    assert merged.last_engagement_at == person.last_engagement_at


@st.composite
def journeys(draw: st.DrawFn) -> list[Event]:
    """Two contacts, two anonymous ids, links (conflicting ones too), redeliveries, late events."""
    events: list[Event] = []
    now = T0
    for i in range(draw(st.integers(1, 40))):
        if events and draw(st.integers(0, 9)) == 0:
            events.append(draw(st.sampled_from(events)))
            continue
        now += draw(st.integers(0, 20 * DAY // MINUTE)) * MINUTE
        when = now - draw(st.sampled_from([0, 0, 0, DAY]))
        who = draw(st.sampled_from(["c1", "c2", "anon:v1", "anon:v2", "link"]))
        event_type = draw(st.sampled_from(ANY))
        anonymous_id = None
        if who == "link":
            who, anonymous_id = draw(st.sampled_from(["c1", "c2"])), draw(st.sampled_from(["v1", "v2"]))
        events.append(Event(f"e{i}", event_type, SOURCE.get(event_type, "website"), who, when,
                            not who.startswith("anon:"), _props(draw, event_type), anonymous_id=anonymous_id))
    return events


@SETTINGS
@given(journeys(), st.data())
def test_refeeding_any_prefix_is_a_no_op_and_ids_stay_unique(events: list[Event], data: st.DataObject) -> None:
    processor = LifecycleProcessor(MODEL)
    transition_ids: list[str] = []
    alert_ids: list[str] = []
    for event in events:
        outcome = processor.apply(event)
        transition_ids += [t.transition_id for t in outcome.transitions]
        alert_ids += [a.alert_id for a in outcome.alerts]
    assert len(set(transition_ids)) == len(transition_ids)
    assert len(set(alert_ids)) == len(alert_ids)
    before = dict(processor.states)
    prefix = data.draw(st.integers(0, len(events)))
    for event in events[:prefix]:
        outcome = processor.apply(event)
        assert outcome.duplicate and not outcome.transitions and not outcome.alerts, event
    assert dict(processor.states) == before
    for key, state in processor.states.items():  # an anonymous id belongs to one identified contact
        assert state.merged_into is None or (key.startswith("anon:") and not state.merged_into.startswith("anon:"))
