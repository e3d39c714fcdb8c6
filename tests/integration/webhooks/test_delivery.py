"""``leadflow webhooks`` against real HTTP receivers and the real embedded broker.

Each test runs the deliverer as its own process, exactly as an operator starts it, with retry
settings compressed from hours to fractions of a second. Assertions are about what receivers got
and in which order, never about wall-clock durations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.streaming.embedded_broker import free_port
from pipeline.webhooks.events import BECAME_HOT, STAGE_CHANGED
from tests.support.brokers import TestBroker

from .harness import SECRET, Receiver, Setup, alert, record_id, transition, wait_until

pytestmark = pytest.mark.integration

FAST_RETRIES = """
[delivery]
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.5
retry_for_seconds = 600
start_from = "earliest"
"""


@pytest.fixture
def setup(broker: TestBroker, namespace: str, tmp_path: Path) -> Iterator[Setup]:
    s = Setup(broker, namespace, tmp_path)
    yield s
    s.close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def subscription(name: str, receiver: Receiver, filter_: str, extra: str = "") -> str:
    return f"""
[[subscriptions]]
name = "{name}"
url = "{receiver.url}"
secret = "{SECRET}"
{extra}
[subscriptions.filter]
{filter_}
"""


def test_a_receiver_down_then_up_gets_everything_each_delivery_verifiable(
    setup: Setup, receivers: list[Receiver]
) -> None:
    crm = Receiver(port=free_port())  # not started: connections are refused
    receivers.append(crm)
    config = setup.config(FAST_RETRIES + subscription(
        "crm", crm, 'became_hot = true\nstages_into = ["customer"]', "max_in_flight = 4"))
    with setup.deliverer(config) as deliverer:
        alerts = [alert(f"c-{i}", i) for i in range(20)]
        into_customer = [transition(f"c-{i}", i, "buyer", "customer") for i in range(10)]
        elsewhere = [transition(f"c-{i}", 100 + i, "niche", "lead") for i in range(10)]
        wanted = set(setup.publish("alerts", alerts)) | set(setup.publish("transitions", into_customer))
        unwanted = set(setup.publish("transitions", elsewhere))

        # The outage is real: attempts fail and are retried while the receiver is away.
        wait_until(lambda: deliverer.metric("leadflow_webhook_retries_total", subscription="crm") >= 8,
                   60, "retries while the receiver is down")
        assert deliverer.metric("leadflow_webhook_failures_total", subscription="crm", reason="connection") >= 8
        assert deliverer.metric("leadflow_webhook_deliveries_total", subscription="crm", outcome="delivered") == 0

        crm.start()  # the receiver comes back
        requests = crm.wait_for_ids(wanted)

        delivered = [r for r in requests if r.status == 200]
        assert {r.delivery_id for r in delivered} == wanted
        assert not unwanted & {r.delivery_id for r in requests}, "filtered-out transitions are never sent"
        bodies = {record_id(v): v for v in alerts + into_customer}
        for request in delivered:
            assert request.verified(), "every delivery carries a valid signature of its exact body"
            assert request.body == bodies[request.delivery_id], "the body is the record as published"
            assert request.headers["Content-Type"] == "application/json"
            event = BECAME_HOT if "alert_id" in json.loads(request.body) else STAGE_CHANGED
            assert request.headers["Leadflow-Event"] == event
        wait_until(lambda: deliverer.metric("leadflow_webhook_deliveries_total", subscription="crm",
                                            outcome="delivered") >= len(wanted), 10, "delivered metric")
        # Filtered records are counted as the deliverer reads them, which may be after the deliveries.
        wait_until(lambda: deliverer.metric("leadflow_webhook_records_total", subscription="crm",
                                            result="filtered") >= 10, 30, "filtered metric")
        assert deliverer.metric("leadflow_webhook_records_total", subscription="crm", result="filtered") == 10
        assert deliverer.metric("leadflow_webhook_delivery_latency_seconds_count", subscription="crm") >= len(wanted)
        assert deliverer.stop() == 0, "SIGTERM is a clean stop"
    assert not setup.deadletters()


def test_a_slow_receiver_does_not_delay_a_healthy_one(setup: Setup, receivers: list[Receiver]) -> None:
    slow, healthy = Receiver().start(), Receiver().start()
    receivers.extend([slow, healthy])
    slow.hold()  # takes requests and answers none until released
    config = setup.config(
        FAST_RETRIES
        + subscription("slow", slow, "became_hot = true", "max_in_flight = 2\ntimeout_seconds = 120")
        + subscription("healthy", healthy, "became_hot = true")
    )
    with setup.deliverer(config):
        first = set(setup.publish("alerts", [alert(f"c-{i}", i) for i in range(30)]))
        healthy.wait_for_ids(first)
        wait_until(lambda: slow.arrivals == 2, 30, "the slow receiver holding its two requests")
        # The slow subscription is now stuck at its concurrency limit. Everything published from
        # here on still reaches the healthy receiver, while the slow one gets nothing more.
        second = set(setup.publish("alerts", [alert(f"c-{i}", 100 + i) for i in range(30)]))
        healthy.wait_for_ids(second)
        assert slow.arrivals == 2 and slow.delivered_ids() == set()
        slow.release()
        requests = slow.wait_for_ids(first | second)
        assert all(r.verified() for r in requests if r.status == 200)
        assert all(r.verified() for r in healthy.snapshot())
    assert not setup.deadletters()


def test_retries_exhausted_end_in_webhooks_deadletter(setup: Setup, receivers: list[Receiver]) -> None:
    down = Receiver().start()
    receivers.append(down)
    down.mode, down.fail_status, down.fail_body = "fail", 503, "down for maintenance"
    config = setup.config(subscription("crm", down, "became_hot = true", """
start_from = "earliest"
retry_for_seconds = 1
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.2"""))
    with setup.deliverer(config) as deliverer:
        values = [alert(f"c-{i}", i) for i in range(3)]
        ids = setup.publish("alerts", values)
        setup.publish("alerts", [b"this is not an alert"])
        wait_until(lambda: deliverer.metric("leadflow_webhook_deliveries_total", subscription="crm",
                                            outcome="dead_lettered") >= 4, 60, "four dead letters")
    dead = setup.deadletters()
    exhausted = {d["delivery_id"]: d for d in dead if d["reason"] == "retries_exhausted"}
    assert set(exhausted) == set(ids)
    for value in values:
        letter = exhausted[record_id(value)]
        assert letter["subscription"] == "crm" and letter["event"] == BECAME_HOT
        assert letter["attempts"] >= 2 and letter["last_status"] == 503
        assert letter["last_error"] == "HTTP 503: down for maintenance"
        assert letter["record"] == json.loads(value), "the dead letter carries the record to replay it"
        assert letter["topic"] == setup.names.alerts and letter["offset"] >= 0
        assert letter["first_attempt_at"] <= letter["last_attempt_at"] <= letter["dead_lettered_at"]
        attempts = [r for r in down.snapshot() if r.delivery_id == letter["delivery_id"]]
        assert len(attempts) == letter["attempts"]
        assert sorted(int(r.headers["Leadflow-Attempt"]) for r in attempts) == list(range(1, len(attempts) + 1))
        assert all(r.verified() for r in attempts), "every retry is signed afresh"
    (unreadable,) = [d for d in dead if d["reason"] == "unreadable_record"]
    assert unreadable["raw"] == "this is not an alert" and unreadable["delivery_id"] is None
    assert unreadable["attempts"] == 0


def test_a_restart_of_the_deliverer_mid_stream_loses_nothing(setup: Setup, receivers: list[Receiver]) -> None:
    crm = Receiver().start()
    receivers.append(crm)
    crm.answer_first = 10  # answers ten requests, then sits on the rest: the deliverer is mid-stream
    config = setup.config(FAST_RETRIES + subscription("crm", crm, "became_hot = true", "max_in_flight = 4"))
    first = [alert(f"c-{i}", i) for i in range(40)]
    second = [alert(f"c-{i}", 100 + i) for i in range(10)]
    with setup.deliverer(config, name="before") as deliverer:
        ids = set(setup.publish("alerts", first))
        wait_until(lambda: len(crm.delivered_ids()) >= 10 and crm.arrivals > 10, 60, "a partial delivery")
        deliverer.kill()  # a crash: no clean shutdown, nothing committed at the end
    answered_before = crm.delivered_ids()
    assert len(answered_before) == 10
    crm.release()
    ids |= set(setup.publish("alerts", second))  # published while no deliverer runs
    with setup.deliverer(config, name="after"):
        requests = crm.wait_for_ids(ids)
    assert all(r.verified() for r in requests if r.status == 200)
    # At least once: a record may come twice (same delivery id, for the receiver to de-duplicate).
    assert {r.delivery_id for r in requests if r.status == 200} == ids
    assert not setup.deadletters()
