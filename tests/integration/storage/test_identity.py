"""Identity merges in the history store, on every backend: the merged anonymous history in the
contact timeline, ``merged_into`` kept, and the funnel counting a merged visitor once, as its person.

A hand-made history (2025, UTC midnight), every figure computed by hand:

- ``anon:vvv…v`` (128 v; first touch website / facebook): niche→lead 06-01, lead→niche 06-03
  (a regression); snapshot niche, merged into p-1.
- ``p-1`` (website / facebook, the visitor's first touch, the earlier): identity anon:v… → p-1
  06-10, niche→buyer 06-10 (the merge's move, skips lead), buyer→customer 06-20; snapshot customer.
- ``anon:w`` (email / none): niche→lead 06-05; snapshot lead, not merged.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from pipeline.state_machine import builtin_model
from pipeline.state_machine.records import ContactSnapshot, FirstTouch, Transition
from pipeline.storage import FunnelReport, GroupFunnel, HistoryStore

pytestmark = pytest.mark.integration
VISITOR = "anon:" + "v" * 128  # the longest anonymous contact id: must fit transitions.from
DAY = 86400.0
FACEBOOK = FirstTouch("website", "facebook", "social", "spring")


def _move(n: int, contact: str, kind: str, from_: str, to: str, direction: str, day: int, stage: str,
          reason: str = "r", skipped: tuple[str, ...] = ()) -> Transition:
    return Transition(f"t-{n}", contact, kind, from_, to, direction, reason, skipped, f"e-{n}",
                      f"2025-06-{day:02d}T00:00:00Z", stage, "cold", 10.0, "default@1")


TRANSITIONS = [
    _move(1, VISITOR, "stage", "niche", "lead", "advance", 1, "lead", "downloaded_content"),
    _move(2, VISITOR, "stage", "lead", "niche", "regress", 3, "niche", "went_quiet"),
    _move(3, "anon:w", "stage", "niche", "lead", "advance", 5, "lead"),
    _move(4, "p-1", "identity", VISITOR, "p-1", "advance", 10, "buyer", "merged_anonymous_history"),
    _move(5, "p-1", "stage", "niche", "buyer", "advance", 10, "buyer", "merged_anonymous_history", ("lead",)),
    _move(6, "p-1", "stage", "buyer", "customer", "advance", 20, "customer"),
]


def _snapshot(contact: str, stage: str, last_day: int, touch: FirstTouch, merged_into: str | None) -> ContactSnapshot:
    at = f"2025-06-{last_day:02d}T00:00:00Z"
    return ContactSnapshot(contact, stage, "cold", 10.0, at, at, 0, 0, 3, touch, None, "default@1", merged_into)


def _contacts(merged: bool) -> list[ContactSnapshot]:
    return [
        _snapshot(VISITOR, "niche", 3, FACEBOOK, "p-1" if merged else None),
        _snapshot("p-1", "customer", 20, FACEBOOK, None),
        _snapshot("anon:w", "lead", 5, FirstTouch("email", None, None, None), None),
    ]


def _group(report: FunnelReport, name: str) -> GroupFunnel:
    return next(g for g in report.groups if g.group == name)


def _column(group: GroupFunnel, field: str) -> list[object]:
    return [getattr(s, field) for s in group.stages]


def test_the_contact_shows_the_merged_anonymous_history(store: HistoryStore) -> None:
    store.write_batch(TRANSITIONS, [], _contacts(merged=True))
    person = store.contact_timeline("p-1")
    assert person is not None and person.merged_into is None and person.merged_at is None
    assert [(m.contact_id, m.merged_at, m.reason) for m in person.merged] == [
        (VISITOR, "2025-06-10T00:00:00Z", "merged_anonymous_history")
    ]
    assert list(person.merged[0].transitions) == TRANSITIONS[:2]
    assert [t.transition_id for t in person.transitions] == ["t-4", "t-5", "t-6"]
    assert person.transitions[0].from_ == VISITOR  # 133 characters survive the round trip
    assert [(origin, getattr(e, "transition_id", None)) for origin, e in person.full_timeline()] == [
        (VISITOR, "t-1"), (VISITOR, "t-2"), (None, "t-4"), (None, "t-5"), (None, "t-6"),
    ]
    assert [t.transition_id for t in person.timeline()] == ["t-4", "t-5", "t-6"]  # own entries only

    visitor = store.contact_timeline(VISITOR)
    assert visitor is not None and visitor.merged_into == "p-1" and visitor.merged_at == "2025-06-10T00:00:00Z"
    assert visitor.contact is not None and visitor.contact.merged_into == "p-1" and visitor.merged == ()
    assert [t.transition_id for t in visitor.transitions] == ["t-1", "t-2"]

    other = store.contact_timeline("anon:w")
    assert other is not None and other.merged_into is None and other.merged == ()


def test_the_identity_record_alone_names_the_merged_contact(store: HistoryStore) -> None:
    """The sink may store the transitions before the visitor's snapshot."""
    store.write_batch(TRANSITIONS, [], [])
    person = store.contact_timeline("p-1")
    assert person is not None and person.contact is None
    assert [(m.contact_id, len(m.transitions)) for m in person.merged] == [(VISITOR, 2)]
    visitor = store.contact_timeline(VISITOR)
    assert visitor is not None and visitor.merged_into is None  # not known until its snapshot is stored


def test_a_merge_is_never_undone_by_a_late_snapshot(store: HistoryStore) -> None:
    merged = _contacts(merged=True)[0]
    unmerged = msgspec.structs.replace(merged, merged_into=None)  # same version: a tie
    store.write_batch([], [], [merged])
    store.write_batch([], [], [unmerged])
    stored = store.contact_timeline(VISITOR)
    assert stored is not None and stored.contact == merged
    later = msgspec.structs.replace(unmerged, contact_id="anon:z")
    store.write_batch([], [], [msgspec.structs.replace(merged, contact_id="anon:z"), later])  # one batch
    stored = store.contact_timeline("anon:z")
    assert stored is not None and stored.merged_into == "p-1"


def test_the_funnel_counts_a_merged_visitor_once_as_its_person(store: HistoryStore) -> None:
    store.write_batch(TRANSITIONS, [], _contacts(merged=True))
    report = store.funnel(builtin_model())
    assert [g.group for g in report.groups] == ["email", "website"]  # 1 contact each, by name
    web = _group(report, "website")  # p-1 with its visitor's history
    assert web.contacts == 1
    assert _column(web, "reached") == [1, 1, 1, 1, 0, 0, 0]
    assert _column(web, "regressions")[:2] == [0, 1] and _column(web, "regressed_contacts")[:2] == [0, 1]
    assert _column(web, "stays")[:3] == [0, 1, 1]  # the visitor's lead 2 d, p-1's buyer 10 d
    assert _column(web, "median_seconds_in_stage")[:3] == [None, 2 * DAY, 10 * DAY]
    assert _column(_group(report, "email"), "reached")[:3] == [1, 1, 0]
    assert report.total.contacts == 2 and _column(report.total, "reached")[:4] == [2, 2, 1, 1]

    # In a window holding only the visitor's moves, they count for p-1 (its group), not as a lead.
    window = store.funnel(builtin_model(), since=datetime(2025, 6, 1, tzinfo=UTC),
                          until=datetime(2025, 6, 5, tzinfo=UTC))
    assert [(g.group, g.contacts) for g in window.groups] == [("website", 1)]
    assert _column(window.groups[0], "reached")[:3] == [1, 1, 0]


def test_without_the_merge_the_visitor_is_a_contact_of_its_own(store: HistoryStore) -> None:
    store.write_batch(TRANSITIONS, [], _contacts(merged=False))
    report = store.funnel(builtin_model())
    web = _group(report, "website")  # the visitor and p-1
    assert web.contacts == 2
    assert _column(web, "reached") == [2, 2, 1, 1, 0, 0, 0]
    assert _column(web, "regressed_contacts")[1] == 1
    assert report.total.contacts == 3
