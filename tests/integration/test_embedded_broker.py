"""The embedded broker (Tansu) itself: start, topics, keyed produce/consume, clean stop.

Real broker, no mocks. Consumers use manual partition assignment (no consumer group), so no test
waits for Tansu's slow first group join. Each test starts its own broker (about 0.05–0.3 s).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.streaming.embedded_broker import EmbeddedBroker, EmbeddedBrokerError, free_port, listening_pids
from tests.support.brokers import TestBroker

pytestmark = pytest.mark.integration


def _pid_gone(pid: int) -> bool:
    """True when no process ``pid`` exists any more (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _read_all(
    broker: TestBroker, topic: str, partitions: int, expected: int
) -> dict[int, list[tuple[bytes, bytes]]]:
    """Every record of ``topic`` by partition. Counts records instead of trusting end offsets:
    Tansu 0.6 under-reports a partition's end after a multi-record batch."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    try:
        assignment = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        found: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + 15
        while sum(map(len, found.values())) < expected and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                found[tp.partition].extend((r.key, r.value) for r in records)
        return found
    finally:
        consumer.close()


@pytest.fixture
def running() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


def test_starts_on_loopback_and_answers_metadata(running: EmbeddedBroker) -> None:
    assert running.running
    assert running.bootstrap == f"127.0.0.1:{running.port}"
    assert running.startup_seconds is not None and running.startup_seconds < 10
    with socket.create_connection(("127.0.0.1", running.port), timeout=2):
        pass
    # The advertised listener is the loopback address we chose, not localhost:9092.
    producer = KafkaProducer(bootstrap_servers=running.bootstrap)
    try:
        producer.partitions_for("probe")  # auto-creates on Tansu; proves metadata round trips
        brokers = producer._metadata.brokers()  # kafka-python's cluster metadata
        assert {(b.host, b.port) for b in brokers} == {("127.0.0.1", running.port)}
    finally:
        producer.close()


def test_create_topics_is_idempotent_and_honours_partitions(running: EmbeddedBroker) -> None:
    assert sorted(running.create_topics(["leads", "alerts"], partitions=4)) == ["alerts", "leads"]
    assert running.create_topics(["leads", "alerts", "extra"], partitions=4) == ["extra"]
    assert running.partitions_of("leads") == 4
    assert running.partitions_of("extra") == 4
    assert running.partitions_of("missing") == 0
    with pytest.raises(EmbeddedBrokerError, match="partition count"):
        running.create_topics(["leads"], partitions=2)


def test_keyed_messages_round_trip(running: EmbeddedBroker) -> None:
    running.create_topics(["events"], partitions=4)
    keys = [f"contact-{n}".encode() for n in range(8)]
    producer = KafkaProducer(bootstrap_servers=running.bootstrap, acks="all", linger_ms=5)
    try:
        sent = []
        for round_ in range(5):  # batched sends: several records per produce batch
            for key in keys:
                value = f"{key.decode()}:{round_}".encode()
                metadata = producer.send("events", key=key, value=value).get(timeout=10)
                sent.append((metadata.partition, key, value))
        producer.flush()
    finally:
        producer.close()

    found = _read_all(running, "events", 4, expected=len(sent))
    assert sum(map(len, found.values())) == len(sent)
    for partition, key, value in sent:
        assert (key, value) in found[partition]
    # One key, one partition, in send order.
    for key in keys:
        homes = {p for p, records in found.items() for k, _ in records if k == key}
        assert len(homes) == 1
        (home,) = homes
        assert [v for k, v in found[home] if k == key] == [f"{key.decode()}:{r}".encode() for r in range(5)]
    assert sum(1 for records in found.values() if records) > 1  # keys spread over partitions


def test_stop_leaves_no_process_and_is_idempotent() -> None:
    broker = EmbeddedBroker()
    broker.start()
    pid = broker.pid
    assert pid is not None
    log_dir = broker.log_dir
    # An open client connection must not delay the stop (Tansu's SIGTERM would wait 5 s for it).
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        producer.partitions_for("keepalive")
        started = time.monotonic()
        broker.stop()
        assert time.monotonic() - started < 2.0
    finally:
        producer.close(timeout=1)
    assert _pid_gone(pid)
    assert not broker.running and broker.pid is None
    assert not log_dir.exists()  # its own temporary directory is removed
    broker.stop()  # a second stop is a no-op


def test_stop_kills_a_broker_that_ignores_the_signal(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_dir=tmp_path)
    broker.start()
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGINT: stop() must escalate
    broker.stop(grace=0.5)
    assert _pid_gone(pid)
    assert (tmp_path / "tansu.log").exists()  # a caller's log directory is kept


def test_a_taken_port_fails_clearly_or_is_retried(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        fixed = EmbeddedBroker(log_dir=tmp_path / "fixed", port=busy)
        with pytest.raises(EmbeddedBrokerError, match=f"port {busy} on 127.0.0.1 is already in use"):
            fixed.start(timeout=10)
        assert not fixed.running

        chosen = EmbeddedBroker(log_dir=tmp_path / "chosen")
        chosen.port = busy  # as if another process grabbed the free port first
        with chosen:
            assert chosen.port != busy and chosen.running


def test_a_port_held_by_another_broker_is_never_shared(tmp_path: Path) -> None:
    """Two embedded brokers never share a port: a second one on the first one's (fixed) port
    fails naming the port and the process holding it, without starting or disturbing the first;
    a port chosen here that another broker took meanwhile is replaced by a free one."""
    with EmbeddedBroker(log_dir=tmp_path / "first") as first:
        assert first.pid is not None
        assert listening_pids(first.port) == {first.pid}  # its own process holds the listener
        second = EmbeddedBroker(log_dir=tmp_path / "second", port=first.port)
        with pytest.raises(EmbeddedBrokerError, match=f"port {first.port} on 127.0.0.1 is already in use") as raised:
            second.start(timeout=10)
        assert f"held by pid {first.pid} (" in str(raised.value)  # names the other broker
        assert not second.running and second.pid is None
        assert first.running
        producer = KafkaProducer(bootstrap_servers=first.bootstrap)  # the first still answers
        try:
            assert producer.partitions_for("still-there")
        finally:
            producer.close()

        chosen = EmbeddedBroker(log_dir=tmp_path / "chosen")
        chosen.port = first.port  # as if the first broker had grabbed the free port meanwhile
        with chosen:
            assert chosen.port != first.port and chosen.running
            assert listening_pids(chosen.port) == {chosen.pid}


def test_binary_from_environment_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEADFLOW_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(EmbeddedBrokerError, match="LEADFLOW_TANSU_BIN"):
        EmbeddedBroker(port=free_port()).start()
