"""Speed to lead in the history (issue 13), on SQLite, PostgreSQL and memory: the sink's stored
response times, the funnel's speed-to-lead figures against values computed by hand, the timeline.

The history comes from the real engine (default model: a demo request makes an identified contact
hot and a lead at once; sales has 60 minutes). T0 = 2025-03-01T09:00:00Z, every alert at T0:

    group google:   A answered after 10 min (in time), trial day 1 -> buyer (converted)
                    B answered after 30 min (in time), nothing else
                    C never answered (escalated at T0+1h), trial day 2 -> buyer (converted)
    group facebook: D answered after 2 h (late, escalated), nothing else
                    E answered after 3 h (late, escalated), trial day 1 -> buyer (converted)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.state_machine import Event, builtin_model, snapshot
from pipeline.state_machine.clock import parse_rfc3339
from pipeline.state_machine.processor import LifecycleProcessor
from pipeline.storage import HistoryStore
from pipeline.storage.reports.text import format_contact, format_funnel

pytestmark = pytest.mark.integration
T0 = parse_rfc3339("2025-03-01T09:00:00Z")
MINUTE = 60_000_000
DAY = 24 * 60 * MINUTE
_ids = iter(range(1, 10_000))


def _event(event_type: str, contact: str, at: int, **properties: object) -> Event:
    source = "sales" if event_type.startswith(("lead_", "deal_")) else "website"
    return Event(f"e{next(_ids)}", event_type, source, contact, at, True, dict(properties))


def _history():
    model = builtin_model()
    campaign = {"A": "google", "B": "google", "C": "google", "D": "facebook", "E": "facebook"}
    events = [_event("demo_request", c, T0, utm_source=source) for c, source in campaign.items()]
    events += [
        _event("lead_contacted", "A", T0 + 10 * MINUTE, channel="call", rep_id="rep-1"),
        _event("lead_contacted", "B", T0 + 30 * MINUTE, channel="email"),
        _event("lead_contacted", "D", T0 + 120 * MINUTE, channel="call"),
        _event("lead_contacted", "E", T0 + 180 * MINUTE, channel="meeting"),
        _event("trial_start", "A", T0 + DAY),
        _event("trial_start", "E", T0 + DAY),
        _event("trial_start", "C", T0 + 2 * DAY),
    ]
    processor = LifecycleProcessor(model)
    transitions, alerts = [], []
    for event in sorted(events, key=lambda e: e.occurred_at):
        outcome = processor.apply(event)
        transitions += outcome.transitions
        alerts += outcome.alerts
    end = processor.advance_to(T0 + 3 * DAY)
    transitions += end.transitions
    alerts += end.alerts
    contacts = [snapshot(state, model) for state in processor.states.values()]
    return transitions, alerts, contacts


def test_the_engine_history_is_as_described() -> None:
    _, alerts, _ = _history()
    by_type: dict[str, list[str]] = {}
    for alert in alerts:
        by_type.setdefault(alert.type, []).append(alert.contact_id)
    assert by_type == {
        "became_hot": ["A", "B", "C", "D", "E"],
        "alert_answered": ["A", "B", "D", "E"],
        "response_overdue": ["C", "D", "E"],
    }


def test_funnel_speed_to_lead_by_utm_source(store: HistoryStore) -> None:
    store.write_batch(*_history())
    report = store.funnel(builtin_model(), by="utm_source")
    google = next(g for g in report.groups if g.group == "google").speed_to_lead
    assert (google.alerts, google.answered, google.answered_in_time, google.overdue) == (3, 2, 2, 1)
    assert (google.median_seconds_to_contact, google.p90_seconds_to_contact) == (1200.0, 1800.0)
    assert (google.converted_in_time, google.conversion_in_time) == (1, 0.5)
    assert (google.converted_late_or_never, google.conversion_late_or_never) == (1, 1.0)

    facebook = next(g for g in report.groups if g.group == "facebook").speed_to_lead
    assert (facebook.alerts, facebook.answered, facebook.answered_in_time, facebook.overdue) == (2, 2, 0, 2)
    assert (facebook.median_seconds_to_contact, facebook.p90_seconds_to_contact) == (9000.0, 10800.0)
    assert facebook.conversion_in_time is None and facebook.conversion_late_or_never == 0.5

    total = report.total.speed_to_lead
    assert (total.alerts, total.answered, total.answered_in_time, total.overdue) == (5, 4, 2, 3)
    assert (total.median_seconds_to_contact, total.p90_seconds_to_contact) == (4500.0, 10800.0)
    assert (total.conversion_in_time, total.conversion_late_or_never) == (0.5, pytest.approx(2 / 3))
    text = format_funnel(report)
    assert "speed to lead: 2/3 answered, 2 before respond_by; time to first contact median 20 min" in text
    assert "answered in time 50.0% (1/2), late or never 100.0% (1/1)" in text


def test_a_window_counts_the_alerts_raised_in_it(store: HistoryStore) -> None:
    store.write_batch(*_history())
    later = store.funnel(builtin_model(), since=datetime(2025, 3, 2, tzinfo=UTC))
    assert later.total.speed_to_lead.alerts == 0
    until_day_one = store.funnel(builtin_model(), until=datetime(2025, 3, 2, 12, tzinfo=UTC))
    speed = until_day_one.total.speed_to_lead
    assert speed.alerts == 5 and (speed.converted_in_time, speed.converted_late_or_never) == (1, 1)  # C: day 2


def test_the_response_is_stored_whatever_order_the_records_arrive_in(store: HistoryStore) -> None:
    transitions, alerts, contacts = _history()
    hot = [a for a in alerts if a.type == "became_hot"]
    others = [a for a in alerts if a.type != "became_hot"]
    store.write_batch([], others, [])  # the answers and escalations first (another batch)
    store.write_batch(transitions, hot, contacts)
    store.write_batch([], others, [])  # redelivered: nothing changes
    history = store.contact_timeline("D")
    assert history is not None
    [raised] = [a for a in history.alerts if a.alert.type == "became_hot"]
    assert (raised.answered_at, raised.response_seconds) == ("2025-03-01T11:00:00Z", 7200.0)
    assert raised.overdue_at == "2025-03-01T10:00:00Z"
    types = [a.alert.type for a in history.alerts]
    assert types == ["became_hot", "response_overdue", "alert_answered"]
    answered = history.alerts[2].alert
    assert (answered.late_seconds, answered.channel) == (3600.0, "call")
    assert answered.original_alert_id == raised.alert.alert_id
    text = format_contact(history)
    assert "answered 2025-03-01T11:00:00Z (after 2.0 h), ESCALATED 2025-03-01T10:00:00Z" in text
    assert "SALES lead_contacted (call) answered alert" in text and "LATE by 1.0 h" in text
    assert "ALERT response_overdue" in text


def test_open_alerts_leave_out_answered_alerts_and_the_other_types(store: HistoryStore) -> None:
    if not hasattr(store, "open_alerts"):
        pytest.skip("no open_alerts on this backend")
    store.write_batch(*_history())
    assert [a.alert.contact_id for a in store.open_alerts()] == ["C"]  # type: ignore[attr-defined]
