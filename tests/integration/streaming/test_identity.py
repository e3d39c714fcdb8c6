"""Identity merges in the stream, killed repeatedly while claims are in flight.

Visitors browse anonymously, identify (the link event: contact_id with anonymous_id), some on a
second device, and go on as identified contacts; about three in four of them live on another
partition than their anonymous id, so each first link is a claim round trip between partitions.
The worker is SIGKILLed three times while the feed is being processed and restarted each time:
at the end the stream has published exactly what ``leadflow replay`` computes (same ids, same
content), the contact states are replay's, and no event was applied twice or lost.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config.topics import partition_for
from pipeline.contracts import decode_event
from pipeline.kafka.tools import publish_sweep
from pipeline.offline.replay import replay
from pipeline.state_machine import ContactState, Event, builtin_model
from pipeline.state_machine.clock import parse_rfc3339, to_rfc3339
from tests.support.brokers import TestBroker

from .harness import Pipeline, by_id

pytestmark = pytest.mark.integration

T0 = parse_rfc3339("2025-06-01T08:00:00Z")
MINUTE = 60_000_000
PEOPLE = 60


def feed() -> list[bytes]:
    """Each person: three anonymous page views (the first from a campaign), a form submit that
    links the browser, an identified order; every third person also browses on a phone and signs
    in there (a second link). Lines in time order."""
    lines: list[tuple[int, bytes]] = []

    def add(at: int, event_id: str, event_type: str, properties: dict[str, Any], **ids: str) -> None:
        source = "purchase" if event_type == "order_completed" else "website"
        envelope = {"source": source, "event_id": event_id, "event_type": event_type,
                    "occurred_at": to_rfc3339(at), "properties": properties, **ids}
        lines.append((at, orjson.dumps(envelope)))

    for n in range(PEOPLE):
        person, web, phone = f"person-{n}", f"w{n:03d}x", f"m{n:03d}x"
        at = T0 + n * 7 * MINUTE
        add(at, f"{person}-1", "page_view", {"url": "https://shop.example/", "utm_source": "facebook"},
            anonymous_id=web)
        add(at + MINUTE, f"{person}-2", "page_view", {"url": "https://shop.example/pricing",
                                                      "page_category": "pricing"}, anonymous_id=web)
        add(at + 2 * MINUTE, f"{person}-3", "content_download", {"asset_id": "guide"}, anonymous_id=web)
        add(at + 3 * MINUTE, f"{person}-4", "form_submit", {"form_id": "contact"}, contact_id=person,
            anonymous_id=web)
        if n % 3 == 0:
            add(at + 4 * MINUTE, f"{person}-5", "page_view", {"url": "https://shop.example/pricing",
                                                              "page_category": "pricing"}, anonymous_id=phone)
            add(at + 5 * MINUTE, f"{person}-6", "demo_request", {}, contact_id=person, anonymous_id=phone)
        add(at + 6 * MINUTE, f"{person}-7", "order_completed",
            {"order_id": f"{person}-o1", "amount": 990000, "currency": "VND", "tier": "core"}, contact_id=person)
    return [line for _, line in sorted(lines, key=lambda item: item[0])]


def test_sigkill_while_merges_are_in_flight_loses_and_doubles_nothing(
    broker: TestBroker, namespace: str, tmp_path: Path
) -> None:
    lines = feed()
    now = time.time_ns() // 1000
    until = max(parse_rfc3339(orjson.loads(line)["occurred_at"]) for line in lines)
    out, alerts = io.BytesIO(), io.BytesIO()
    expected_states: dict[str, ContactState] = {}
    stats = replay(iter(lines), builtin_model(), received_at=now, until=until, out=out, alerts=alerts,
                   deadletter=io.BytesIO(), keep_states=expected_states)
    assert stats.identity_merges == PEOPLE + PEOPLE // 3
    pipeline = Pipeline(broker, namespace, tmp_path, reorder_window=1.0, sweep_clock="event")
    crossing = sum(partition_for(f"person-{n}", pipeline.settings.partitions)
                   != partition_for(f"anon:w{n:03d}x", pipeline.settings.partitions) for n in range(PEOPLE))
    assert PEOPLE // 2 < crossing < PEOPLE  # most first links are claims between partitions, some local

    published = threading.Event()
    failure: list[BaseException] = []

    def publish() -> None:
        try:
            pipeline.publish_in_waves(lines)
        except BaseException as exc:  # reported by the test below
            failure.append(exc)
        finally:
            published.set()

    kills = 0
    with pipeline.worker("w0") as worker:
        worker.ready(timeout=120)
        feeder = threading.Thread(target=publish, daemon=True)
        feeder.start()
        time.sleep(1.0)
        worker.kill()  # SIGKILL: no clean shutdown, no final commit
        kills += 1
    for life in range(1, 3):
        with pipeline.worker(f"w{life}") as worker:
            worker.ready(timeout=120)
            time.sleep(1.5)  # let it take claims and links in flight, then kill it again
            worker.kill()
            kills += 1
    with pipeline.worker("last") as worker:
        worker.ready(timeout=120)
        assert published.wait(300), "the feed was not published within 5 minutes"
        assert not failure, failure
        # Every contact settled (no claim in flight) before the operator's end-of-backfill sweep.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = pipeline.contact_states()
            persons = [s for s in states.values() if s.contact.startswith("person-")]
            if (len(persons) == PEOPLE and all(s.awaiting is None for s in states.values())
                    and sum(s.events_applied for s in persons) == len(lines)):
                break
            time.sleep(1.0)
        waiting = {k: (s.awaiting, [e.event_id for e in s.held]) for k, s in states.items() if s.awaiting}
        assert not waiting, f"claims never came back: {waiting}\n{worker.log.read_text()[-3000:]}"
        publish_sweep(pipeline.settings, until)
        reference = [orjson.loads(x) for x in out.getvalue().splitlines()]
        transitions = pipeline.wait_for("transitions", len(reference), timeout=120, strict=False)
        streamed_alerts = pipeline.wait_for("alerts", len(alerts.getvalue().splitlines()), timeout=60, strict=False)
    assert kills == 3
    streamed, wanted = by_id(transitions, "transition_id"), by_id(reference, "transition_id")
    assert streamed.keys() == wanted.keys(), (
        f"missing {[wanted[k] for k in wanted.keys() - streamed.keys()][:3]}, "
        f"unexpected {[streamed[k] for k in streamed.keys() - wanted.keys()][:3]}")
    assert streamed == wanted
    assert by_id(streamed_alerts, "alert_id") == by_id([orjson.loads(x) for x in alerts.getvalue().splitlines()],
                                                       "alert_id")
    identity = [t for t in streamed.values() if t["kind"] == "identity"]
    assert len(identity) == PEOPLE + PEOPLE // 3
    states = pipeline.contact_states()
    assert states == expected_states
    # Nothing applied twice, nothing lost: a person's count is their events and their devices'.
    distinct: dict[str, set[str]] = {}
    for line in lines:
        event = decode_event(line, family=None, received_at=now)
        assert isinstance(event, Event)
        owner = states[event.contact].merged_into or event.contact
        distinct.setdefault(owner, set()).add(event.event_id)
    for contact, state in states.items():
        if state.merged_into is None:
            assert state.events_applied == len(distinct[contact]), contact
            assert state.first_touch is not None and state.first_touch[1] == "facebook", contact
