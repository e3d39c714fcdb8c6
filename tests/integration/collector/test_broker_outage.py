"""The broker goes away under load: 503 with Retry-After, never 202 for an event not in Kafka.

Each test starts its OWN embedded broker (stopping the session broker would break other tests), so
these run on Tansu only; the same promise on Apache Kafka, through a broker of a three-broker
cluster killed and a rolling restart, is tested in ``tests/integration/cluster``.
Tansu keeps everything in memory, so a stopped broker loses its data and a restarted one (same
port) starts empty. The tests are built around that:

* frozen broker (SIGSTOP, then SIGCONT): requests in flight when it froze wait, time out and get
  503; nothing is lost by the freeze, so afterwards *every* event that got 202 is read back.
* stopped broker: the traffic is quiesced and every 202 event read back before the stop; then the
  broker is frozen, requests are sent (they are in flight, waiting for acknowledgements that
  cannot come) and the broker is killed under them: all of those get 503, requests while it is
  down get 503 at once, and after a restart on the same port the collector accepts again and
  every event it accepted from then on is in the new broker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest

from pipeline.config.topics import TopicNames
from pipeline.kafka.topics import ensure_topics
from pipeline.streaming.embedded_broker import EmbeddedBroker

from .conftest import collector_config, collector_settings
from .harness import LiveReader, envelope, running_collector
from .traffic import PUBLISH_TIMEOUT, RETRY_AFTER, Traffic, assert_only_202_or_503, topic_ids

pytestmark = pytest.mark.integration
def freeze(broker: EmbeddedBroker) -> None:
    assert broker.pid is not None
    os.killpg(broker.pid, signal.SIGSTOP)


def thaw(broker: EmbeddedBroker) -> None:
    assert broker.pid is not None
    os.killpg(broker.pid, signal.SIGCONT)


def kill(broker: EmbeddedBroker) -> None:
    """SIGKILL (works on a frozen process: it can acknowledge nothing more), then reap it."""
    assert broker.pid is not None
    os.killpg(broker.pid, signal.SIGKILL)
    broker.stop()


def own_broker(tmp_path: Path, name: str, port: int | None = None) -> EmbeddedBroker:
    return EmbeddedBroker(log_dir=tmp_path / name, port=port).start()


def test_frozen_broker_mid_request_gets_503_and_every_202_event_is_in_kafka(tmp_path: Path) -> None:
    broker = own_broker(tmp_path, "broker")
    try:
        settings = collector_settings(broker, "frozen")
        ensure_topics(settings)
        config = collector_config(publish_timeout=PUBLISH_TIMEOUT, retry_after=RETRY_AFTER)
        with running_collector(settings, config, tmp_path / "collector.log") as collector:
            traffic = Traffic(collector)
            try:
                traffic.run_for("before", 1.5)
                freeze(broker)  # requests in flight now wait for acknowledgements
                try:
                    traffic.run_for("frozen", PUBLISH_TIMEOUT * 2.5)
                    traffic.pause()
                finally:
                    thaw(broker)
                traffic.run_for("after", 3.0)
                traffic.pause()
            finally:
                traffic.stop()
            print(traffic.summary())
            assert_only_202_or_503(traffic.outcomes)
            assert traffic.of("before", 202), "no request succeeded before the freeze"
            assert traffic.of("frozen", 503), "no 503 while the broker was frozen"
            assert traffic.of("after", 202), "the collector did not accept again after the broker came back"
            accepted = traffic.accepted_ids()
            missing = accepted - topic_ids(settings)
            assert not missing, f"{len(missing)} events answered 202 are not in Kafka: {sorted(missing)[:5]}"
    finally:
        broker.stop()


def test_stopped_broker_mid_request_gets_503_and_a_restarted_broker_takes_events_again(tmp_path: Path) -> None:
    broker = own_broker(tmp_path, "broker-1")
    port = broker.port
    settings = collector_settings(broker, "stopped")
    topic = TopicNames.of(settings).inputs["website"]
    ensure_topics(settings)
    config = collector_config(publish_timeout=PUBLISH_TIMEOUT, retry_after=RETRY_AFTER)
    restarted: EmbeddedBroker | None = None
    try:
        with running_collector(settings, config, tmp_path / "collector.log") as collector:
            traffic = Traffic(collector)
            reader = LiveReader(settings, topic)
            reader.start()
            try:
                # A: normal traffic, then quiesce: everything accepted so far is read back.
                reader.ready.wait(10)
                traffic.run_for("A", 1.5)
                traffic.pause()
                reader.wait_for(traffic.accepted_ids("A"))
                # B: freeze, send (the requests wait for acks), kill the broker under them.
                freeze(broker)
                traffic.run_for("B", 0.7)
                kill(broker)
                traffic.pause()
                reader.finish()
                # C: the broker is gone: 503 at once; alive but not ready.
                traffic.run_for("C", 1.0)
                traffic.pause()
                assert collector.request("GET", "/healthz").status == 200
                readiness = collector.request("GET", "/readyz")
                assert readiness.status == 503 and readiness.json["ready"] is False and readiness.json["problems"]
                # D: a new (empty) broker on the same port: the collector accepts again.
                restarted = own_broker(tmp_path, "broker-2", port=port)
                ensure_topics(settings)
                reader = LiveReader(settings, topic)
                reader.start()
                reader.ready.wait(10)
                deadline = time.monotonic() + 60
                traffic.phase = "D"
                traffic.running.set()
                while not traffic.of("D", 202) and time.monotonic() < deadline:
                    time.sleep(0.2)
                traffic.run_for("D", 1.5)
                traffic.pause()
                reader.wait_for(traffic.accepted_ids("D"), timeout=30)
            finally:
                traffic.stop()
                reader.finish()
            print(traffic.summary())
            assert_only_202_or_503(traffic.outcomes)
            assert traffic.of("A", 202)
            assert traffic.of("B") and not traffic.of("B", 202), "a request to a frozen, then killed broker got 202"
            assert traffic.of("C") and not traffic.of("C", 202)
            assert traffic.of("D", 202), "the collector did not accept events after the broker came back"
            assert collector.wait_ready()["ready"] is True
            assert collector.stop() == 0  # SIGTERM: a clean shutdown
    finally:
        broker.stop()
        if restarted is not None:
            restarted.stop()


def test_collector_started_before_the_broker_answers_503_then_accepts(tmp_path: Path) -> None:
    from pipeline.streaming.embedded_broker import free_port

    port = free_port()
    not_started = EmbeddedBroker(log_dir=tmp_path / "broker", port=port)  # its address, before it runs
    settings = collector_settings(not_started, "late")
    config = collector_config(publish_timeout=PUBLISH_TIMEOUT, retry_after=RETRY_AFTER)
    with running_collector(settings, config, tmp_path / "collector.log", ready=False) as collector:
        assert collector.request("GET", "/readyz").status == 503
        early = collector.post("website", orjson.dumps(envelope("early-1")))
        assert early.status == 503 and early.headers["retry-after"] == str(RETRY_AFTER)
        assert early.json["error_code"] == "broker_unavailable"
        broker = not_started.start()
        try:
            ensure_topics(settings)
            collector.wait_ready(timeout=60)
            reply = collector.post("website", orjson.dumps(envelope("late-1")))
            assert reply.status == 202
            assert "late-1" in topic_ids(settings) and "early-1" not in topic_ids(settings)
        finally:
            broker.stop()


def test_requests_beyond_the_inflight_limit_get_503_at_once(tmp_path: Path) -> None:
    broker = own_broker(tmp_path, "broker")
    try:
        settings = collector_settings(broker, "inflight")
        ensure_topics(settings)
        config = collector_config(publish_timeout=3.0, retry_after=RETRY_AFTER, max_inflight=1)
        with running_collector(settings, config, tmp_path / "collector.log") as collector:
            assert collector.post("website", orjson.dumps(envelope("warm-1"))).status == 202
            freeze(broker)
            try:
                first: list[int] = []
                waiting = threading.Thread(
                    target=lambda: first.append(collector.post("website", orjson.dumps(envelope("held-1"))).status))
                waiting.start()
                deadline = time.monotonic() + 10
                gauge = "leadflow_collector_inflight_requests 1.0"
                while gauge not in collector.request("GET", "/metrics").body.decode():
                    assert time.monotonic() < deadline, "the first request never became in flight"
                    time.sleep(0.05)
                shed = collector.post("website", orjson.dumps(envelope("shed-1")))
                assert shed.status == 503 and shed.headers["retry-after"] == str(RETRY_AFTER)
                assert shed.json["error_code"] == "broker_unavailable" and "in flight" in shed.json["detail"]
                waiting.join(30)
                assert first == [503]  # the held request timed out against the frozen broker
            finally:
                thaw(broker)
            assert collector.post("website", orjson.dumps(envelope("after-1"))).status == 202
            assert "shed-1" not in topic_ids(settings)
    finally:
        broker.stop()
