"""The storage package's pure parts: URLs, time bounds, row translation, text and HTML rendering."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from pipeline.cli.common import parse_bound
from pipeline.state_machine.records import Alert, AlertReason, ContactSnapshot, FirstTouch, Transition
from pipeline.storage import InvalidDatabaseUrl, resolve_url
from pipeline.storage.database import driver_url, safe_url
from pipeline.storage.reports.html import funnel_svg, render_html
from pipeline.storage.reports.text import duration, format_funnel
from pipeline.storage.reports.types import FunnelReport, GroupFunnel, StageFigures
from pipeline.storage.sql.engine import open_engine
from pipeline.storage.sql.rows import alert_row, contact_row, parse_time, snapshot_version, transition_row

TRANSITION = Transition("t1", "c1", "stage", "niche", "buyer", "advance", "claimed_offer", ("lead",), "e1",
                        "2025-03-01T12:00:00.250000Z", "buyer", "warm", 21.5, "default@1")


def test_urls_default_to_the_environment_then_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_DB", raising=False)
    assert resolve_url(None) == "sqlite:///leadflow.db"
    monkeypatch.setenv("LEADFLOW_DB", "postgresql://db/x")
    assert resolve_url(None) == "postgresql://db/x" and resolve_url("sqlite:///a.db") == "sqlite:///a.db"


def test_postgresql_urls_use_psycopg_and_hide_passwords() -> None:
    assert driver_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert driver_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert driver_url("postgresql+psycopg2://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert "secret" not in safe_url("postgresql://u:secret@h/d")


@pytest.mark.parametrize(("url", "problem"), [("mysql://h/d", "unsupported database 'mysql'"),
                                              ("not a url", "cannot be parsed")])
def test_unusable_urls_are_named(url: str, problem: str) -> None:
    with pytest.raises(InvalidDatabaseUrl, match=problem):
        open_engine(url)


def test_time_bounds_accept_days_and_rfc3339() -> None:
    assert parse_bound("2025-03-01", end=False) == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_bound("2025-03-01", end=True) == datetime(2025, 3, 2, tzinfo=UTC)  # the whole day
    assert parse_bound("2025-03-01T09:00:00+07:00", end=True) == datetime(2025, 3, 1, 2, tzinfo=UTC)
    for bad in ("2025-03-01T09:00:00", "yesterday", "2025-13-01"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a date"):
            parse_bound(bad, end=False)


def test_rows_keep_every_field() -> None:
    row = transition_row(TRANSITION)
    assert row["from"] == "niche" and row["skipped"] == ["lead"]
    assert row["occurred_at"] == datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    alert = Alert("a1", "became_hot", "c1", "lead", 50.0, "2025-03-01T12:00:00Z", "2025-03-01T13:00:00Z",
                  (AlertReason("e1", "demo_request", 30.0),), FirstTouch("website", "google", "cpc", None), "default@1")
    assert alert_row(alert)["reasons"] == [{"event_id": "e1", "event_type": "demo_request", "points": 30.0}]
    assert alert_row(alert)["utm_campaign"] is None and alert_row(alert)["first_touch_source"] == "website"
    contact = ContactSnapshot("c1", "lead", "cold", 1.0, "2025-03-02T00:00:00Z", None, 0, 0, 1, FirstTouch(), None,
                              "default@1")
    assert contact_row(contact, datetime(2025, 4, 1, tzinfo=UTC))["last_event_at"] is None
    assert snapshot_version(contact) == (parse_time("2025-03-02T00:00:00Z"),) * 2
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_time("2025-03-01T00:00:00")


def test_durations_read_well() -> None:
    assert [duration(s) for s in (None, 5, 600, 5400, 3 * 86400)] == ["-", "5 s", "10 min", "1.5 h", "3.0 d"]


def _report() -> FunnelReport:
    stages = (StageFigures("niche", 10, 0.5, 0, None, 0, 0), StageFigures("lead", 5, None, 2, 86400.0, 1, 2))
    group = GroupFunnel("<google>", 10, stages, 3, 2, 1, 1800.0)
    return FunnelReport("default@1", "utm_source", None, None, (group,), replace(group, group="all"))


def test_the_html_page_is_self_contained_and_escaped() -> None:
    page = render_html(_report())
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "&lt;google&gt;" in page and "<google>" not in page
    assert funnel_svg(_report().groups[0]).count('<rect class="bar"') == 2


def test_the_table_shows_rates_and_medians() -> None:
    text = format_funnel(_report())
    assert "== <google>: 10 contacts; became_hot alerts 3, acknowledged 2 (1 by respond_by)" in text
    assert "50.0%" in text and "1.0 d" in text and "30 min" in text
