"""``leadflow segments`` figures on SQLite, PostgreSQL and memory, against hand-computed values,
and the HTML page rendered by headless Chromium (issue 14).

The history is made by the engine (default model) from a few hand-written journeys, so the stored
snapshots and segment transitions are the real ones:

- c-loyal (google): three full-price orders 2,000,000 each (days 0, 30, 60) -> loyal at day 60.
- c-promo (google): two orders 500,000 with a coupon -> small_value.
- c-big (facebook): one order 3,000,000 -> big_potential; a complaint at day 10 -> negative;
  an order 1,000,000 at day 20 -> big_potential again (won back).
- c-usd (facebook): one order 100 USD -> big_potential, revenue 0 (foreign order).
- c-none (facebook): a page view only -> none.

Revenue: loyal 6,000,000; small_value 1,000,000; big_potential 4,000,000 (c-big) + 0 (c-usd);
total 11,000,000, so loyal holds 54.5%. Flows: none->big_potential 3 (c-loyal, c-big, c-usd),
big_potential->loyal 1, none->small_value 1, big_potential->negative 1, negative->big_potential 1.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.state_machine import builtin_model, decide
from pipeline.state_machine.clock import MICROS_PER_DAY, parse_rfc3339
from pipeline.state_machine.engine import snapshot
from pipeline.state_machine.events import Event
from pipeline.storage import open_history_store, upgrade_database
from pipeline.storage.port import HistoryStore
from pipeline.storage.reports.segments import SegmentReport, format_segments, segments_as_dict
from pipeline.storage.reports.segments_html import render_segments_html

pytestmark = pytest.mark.integration
MODEL = builtin_model("default")
T0 = parse_rfc3339("2025-03-01T09:00:00Z")
CHROMIUM = Path("/usr/bin/chromium")


def _order(contact: str, day: int, n: int, amount: float, currency: str = "VND", **promo: object) -> Event:
    props = {"order_id": f"{contact}-o{n}", "amount": amount, "currency": currency, "tier": "core", **promo}
    return Event(f"{contact}-{n}", "order_completed", "purchase", contact, T0 + day * MICROS_PER_DAY, True, props)


def _first(contact: str, source: str) -> Event:
    props = {"url": "https://shop.example/", "utm_source": source}
    return Event(f"{contact}-0", "page_view", "website", contact, T0 - MICROS_PER_DAY, True, props)


JOURNEYS = {
    "c-loyal": [_first("c-loyal", "google"),
                *(_order("c-loyal", d, i, 2_000_000) for i, d in enumerate((0, 30, 60), 1))],
    "c-promo": [_first("c-promo", "google"), _order("c-promo", 1, 1, 500_000, coupon="X"),
                _order("c-promo", 2, 2, 500_000, coupon="X")],
    "c-big": [_first("c-big", "facebook"), _order("c-big", 0, 1, 3_000_000),
              Event("c-big-c", "email_complained", "email", "c-big", T0 + 10 * MICROS_PER_DAY, True,
                    {"campaign_id": "p"}),
              _order("c-big", 20, 2, 1_000_000)],
    "c-usd": [_first("c-usd", "facebook"), _order("c-usd", 3, 1, 100, currency="USD")],
    "c-none": [_first("c-none", "facebook")],
}


def _write_history(store: HistoryStore) -> None:
    transitions, contacts = [], []
    for events in JOURNEYS.values():
        state = None
        for event in events:
            decision = decide(state, event, MODEL)
            state = decision.state
            transitions += decision.transitions
        assert state is not None
        contacts.append(snapshot(state, MODEL))
    store.write_batch(transitions, [], contacts)


def _figures(report: SegmentReport, group: str) -> dict[str, tuple[int, float, int, int]]:
    [g] = [g for g in report.groups if g.group == group]
    return {s.segment: (s.contacts, s.revenue, s.orders, s.promo_orders) for s in g.segments}


def test_segment_report_figures_by_hand(store: HistoryStore) -> None:
    _write_history(store)
    report = store.segments(MODEL, by="utm_source")
    assert [g.group for g in report.groups] == ["all", "google", "facebook"]
    assert _figures(report, "all") == {
        "loyal": (1, 6_000_000.0, 3, 0),
        "big_potential": (2, 4_000_000.0, 3, 0),
        "small_value": (1, 1_000_000.0, 2, 2),
        "none": (1, 0.0, 0, 0),
        "negative": (0, 0.0, 0, 0),
    }
    total = report.groups[0]
    assert (total.contacts, total.revenue) == (5, 11_000_000.0)
    by_name = {s.segment: s for s in total.segments}
    assert by_name["loyal"].revenue_share == pytest.approx(6 / 11)
    assert by_name["big_potential"].average_order_value == 2_000_000.0  # 4,000,000 over 2 VND orders
    assert by_name["big_potential"].foreign_orders == 1
    assert by_name["small_value"].promo_share == 1.0
    assert {(f.from_, f.to): f.moves for f in total.flows} == {
        ("none", "big_potential"): 3, ("big_potential", "loyal"): 1, ("none", "small_value"): 1,
        ("big_potential", "negative"): 1, ("negative", "big_potential"): 1,
    }
    assert report.moves_out_of("negative") == 1  # won back
    assert _figures(report, "google")["loyal"] == (1, 6_000_000.0, 3, 0)
    assert _figures(report, "facebook")["big_potential"] == (2, 4_000_000.0, 3, 0)
    assert "loyal" in format_segments(report) and segments_as_dict(report)["currency"] == "VND"


def test_flows_are_bounded_by_the_window(store: HistoryStore) -> None:
    _write_history(store)
    # day 15 to day 45: c-big won back (day 20) and nothing else (c-loyal became loyal at day 60)
    since, until = datetime(2025, 3, 16, tzinfo=UTC), datetime(2025, 4, 15, tzinfo=UTC)
    report = store.segments(MODEL, since=since, until=until)
    assert {(f.from_, f.to): f.moves for f in report.groups[0].flows} == {("negative", "big_potential"): 1}
    assert report.groups[0].contacts == 5  # the segments themselves are as of now


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_the_html_page_renders_a_chart_per_view_in_chromium(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    upgrade_database(url)
    with open_history_store(url) as store:
        _write_history(store)
        report = store.segments(MODEL, by="utm_source")
    page = tmp_path / "segments.html"
    page.write_text(render_segments_html(report), encoding="utf-8")
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    shares = re.findall(r'<svg class="shares".*?</svg>', dom, flags=re.S)
    flows = re.findall(r'<svg class="flows".*?</svg>', dom, flags=re.S)
    assert len(shares) == len(report.groups) == 3
    assert len(flows) == 3
    loyal_revenue = re.search(r'data-segment="loyal" data-kind="revenue" data-share="([0-9.]+)"', shares[0])
    assert loyal_revenue is not None and float(loyal_revenue.group(1)) == pytest.approx(6 / 11, abs=1e-4)
    assert 'data-from="negative" data-to="big_potential" data-moves="1"' in flows[0]
