"""Funnel figures against values computed by hand on tests/fixtures/storage (see its README)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.state_machine import builtin_model
from pipeline.storage import FunnelReport, GroupFunnel, SqlHistoryStore

from .conftest import fixture_history, load_jsonl

pytestmark = pytest.mark.integration
DAY = 86400.0
STAGES = ("niche", "lead", "buyer", "customer", "member", "fan", "referral")


@pytest.fixture
def history(store: SqlHistoryStore) -> SqlHistoryStore:
    store.write_batch(*fixture_history())
    for ack in load_jsonl("acknowledgements.jsonl", dict):
        store.acknowledge(ack["alert_id"], datetime.fromisoformat(ack["at"]))
    return store


def _group(report: FunnelReport, name: str) -> GroupFunnel:
    return next(g for g in report.groups if g.group == name)


def _column(group: GroupFunnel, field: str) -> list[object]:
    return [getattr(s, field) for s in group.stages]


def test_funnel_by_source(history: SqlHistoryStore) -> None:
    report = history.funnel(builtin_model())
    assert report.model == "default@1"
    assert [g.group for g in report.groups] == ["website", "(no contact row)", "email"]

    web = _group(report, "website")  # A, B, C, E
    assert web.contacts == 4
    assert _column(web, "reached") == [4, 3, 3, 2, 1, 0, 0]  # B skipped lead: counted as reached
    assert _column(web, "conversion_to_next") == [0.75, 1.0, pytest.approx(2 / 3), 0.5, 0.0, None, None]
    assert _column(web, "stays") == [0, 3, 3, 1, 0, 0, 0]
    # lead: A 2 d, C 10 d, B 90 d; buyer: A 2 d, B 30 d, C 1 d; customer: C 31 d.
    assert _column(web, "median_seconds_in_stage") == [None, 10 * DAY, 2 * DAY, 31 * DAY, None, None, None]
    assert _column(web, "regressions") == [0, 1, 1, 0, 0, 0, 0]
    assert _column(web, "regressed_contacts") == [0, 1, 1, 0, 0, 0, 0]
    # al-a acked after 30 min (in time), al-b after 3 h (late), al-c open.
    assert (web.hot_alerts, web.acknowledged, web.acknowledged_in_time) == (3, 2, 1)
    assert web.median_seconds_to_ack == pytest.approx((1800 + 10800) / 2)

    assert _column(_group(report, "email"), "reached") == [1, 0, 0, 0, 0, 0, 0]  # D: temperature only
    assert _column(_group(report, "(no contact row)"), "reached") == [1, 1, 0, 0, 0, 0, 0]  # F

    total = report.total
    assert total.group == "all" and total.contacts == 6  # G belongs to the b2b model
    assert _column(total, "reached") == [6, 4, 3, 2, 1, 0, 0]
    assert _column(total, "median_seconds_in_stage")[1] == 10 * DAY
    assert (total.hot_alerts, total.acknowledged, total.acknowledged_in_time) == (3, 2, 1)
    assert total.median_seconds_to_ack == pytest.approx(6300)


def test_funnel_by_utm_source(history: SqlHistoryStore) -> None:
    report = history.funnel(builtin_model(), by="utm_source")
    assert {g.group: g.contacts for g in report.groups} == {
        "google": 3, "facebook": 1, "(none)": 1, "(no contact row)": 1
    }
    google, facebook = _group(report, "google"), _group(report, "facebook")
    assert _column(google, "reached") == [3, 2, 2, 1, 0, 0, 0]  # A, B, E
    assert _column(google, "median_seconds_in_stage")[1:3] == [46 * DAY, 16 * DAY]  # lead 2/90, buyer 2/30
    assert _column(facebook, "reached") == [1, 1, 1, 1, 1, 0, 0]  # C
    assert (google.hot_alerts, google.acknowledged, facebook.hot_alerts, facebook.acknowledged) == (2, 2, 1, 0)
    assert facebook.median_seconds_to_ack is None


def test_funnel_in_a_window(history: SqlHistoryStore) -> None:
    since, until = datetime(2025, 1, 3, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)
    report = history.funnel(builtin_model(), since=since, until=until)
    # Contacts with a transition in the window: A (01-03, 01-05), C (01-10..01-21), D (01-05).
    assert {g.group: g.contacts for g in report.groups} == {"website": 2, "email": 1}
    web = _group(report, "website")
    assert _column(web, "reached") == [2, 2, 2, 2, 0, 0, 0]
    # Stays begun in the window: buyer A 2 d and C 1 d; lead C 10 d; customer C 31 d (ends after).
    assert _column(web, "median_seconds_in_stage")[1:4] == [10 * DAY, 1.5 * DAY, 31 * DAY]
    assert _column(web, "regressions") == [0] * 7  # B's regressions are in February and May
    assert (web.hot_alerts, web.acknowledged) == (1, 0)  # only al-c (01-15)


def test_funnel_of_another_model_counts_only_its_history(history: SqlHistoryStore) -> None:
    report = history.funnel(builtin_model("b2b"), by="utm_source")
    assert report.model == "b2b@1"
    assert [(g.group, g.contacts) for g in report.groups] == [("bing", 1)]
    assert _column(report.total, "reached") == [1, 1, 0, 0, 0]
    assert [s.stage for s in report.total.stages] == ["visitor", "lead", "mql", "sql", "customer"]


def test_an_empty_database_gives_an_empty_funnel(store: SqlHistoryStore) -> None:
    report = store.funnel(builtin_model())
    assert report.groups == () and _column(report.total, "reached") == [0] * len(STAGES)
