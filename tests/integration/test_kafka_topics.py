"""Topics on Apache Kafka as production needs them, and a one-broker development Kafka.

``leadflow topics`` creates every topic with the configured replication factor and
``min.insync.replicas``, compacts ``lead.contacts`` (checked by letting Kafka's log cleaner run:
only the newest snapshot of each contact is left) and reports existing topics whose settings
differ. On a one-broker Kafka the ``kafka`` profile's replication factor of 3 cannot be honoured:
``leadflow topics``, ``leadflow worker`` and ``leadflow up --kafka`` stop with one line naming
``LEADFLOW_REPLICATION_FACTOR`` (exit 2), never a client library's traceback.

Apache Kafka only: Tansu takes no topic configs, compacts nothing and has no replication.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from pipeline.config.topics import TopicNames
from pipeline.devtools.demo import die_with_parent, free_port
from pipeline.kafka.topics import describe_topics, ensure_topics, topic_differences
from tests.support.brokers import TestBroker, broker_env, broker_settings
from tests.support.kafka import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.broker("kafka")]


def _leadflow(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _env(broker: TestBroker, namespace: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(broker_env(broker), LEADFLOW_TOPIC_PREFIX=f"{namespace}.", LEADFLOW_APP_ID=namespace,
               LEADFLOW_PARTITIONS="2", LEADFLOW_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


def test_topics_are_created_with_the_settings_production_needs(
        broker: TestBroker, namespace: str, tmp_path: Path) -> None:
    done = _leadflow(["topics"], _env(broker, namespace, tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    settings = broker_settings(broker, topic_prefix=f"{namespace}.", app_id=namespace, partitions=2)
    names = TopicNames.of(settings)
    shapes = describe_topics(settings, names.all())
    assert set(shapes) == set(names.all())
    contacts = shapes[names.contacts].configs
    assert (contacts["cleanup.policy"], contacts["min.compaction.lag.ms"]) == ("compact", "3600000")
    for name in [*names.inputs.values(), names.contact_events]:
        assert shapes[name].configs["retention.ms"] == str(7 * 86_400_000), name
    for name in (names.transitions, names.alerts, names.deadletter):
        assert shapes[name].configs["retention.ms"] == str(30 * 86_400_000), name
    assert all(s.partitions == 2 and s.configs["min.insync.replicas"] == "1" for s in shapes.values())
    assert topic_differences(settings) == []


def test_lead_contacts_keeps_only_the_newest_snapshot_of_each_contact(
        broker: TestBroker, namespace: str) -> None:
    settings = broker_settings(broker, topic_prefix=f"{namespace}.", app_id=namespace, partitions=1)
    ensure_topics(settings)
    topic = TopicNames.of(settings).contacts
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # Leadflow's own cleanup.policy; only the timing is shortened so the cleaner runs within the test.
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={
            "cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "200",
            "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"})])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for version in range(1, 6):
        for contact in ("c-1", "c-2", "c-3"):
            producer.send(topic, key=contact.encode(), value=f'{{"contact_id":"{contact}","v":{version}}}'.encode())
        producer.flush()
        time.sleep(0.3)  # a segment each round: the cleaner compacts only rolled segments
    deadline = time.monotonic() + 90
    values: list[bytes] = []
    while time.monotonic() < deadline:
        # A new record rolls the active segment, so every earlier snapshot is in a cleanable one.
        producer.send(topic, key=b"c-roll", value=b'{"contact_id":"c-roll","v":0}')
        producer.flush()
        values = read_topic(topic, settings, timeout=30, quiet_ms=300)
        kept = [v for v in values if not v.startswith(b'{"contact_id":"c-roll"')]
        if sorted(kept) == [b'{"contact_id":"c-%d","v":5}' % i for i in (1, 2, 3)]:
            break
        time.sleep(1)
    producer.close()
    kept = [v for v in values if not v.startswith(b'{"contact_id":"c-roll"')]
    assert sorted(kept) == [b'{"contact_id":"c-%d","v":5}' % i for i in (1, 2, 3)], values


def test_existing_topics_whose_settings_differ_are_reported(broker: TestBroker, namespace: str,
                                                            tmp_path: Path) -> None:
    settings = broker_settings(broker, topic_prefix=f"{namespace}.", app_id=namespace, partitions=2)
    names = TopicNames.of(settings)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:  # made by hand before Leadflow: lead.contacts not compacted, contact-events with 3 partitions
        admin.create_topics([NewTopic(names.contacts, 2, 1, topic_configs={"cleanup.policy": "delete"}),
                             NewTopic(names.contact_events, 3, 1)])
    finally:
        admin.close()
    done = _leadflow(["topics"], _env(broker, namespace, tmp_path), tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert f"{names.contact_events} has 3 partitions but LEADFLOW_PARTITIONS is 2" in done.stderr
    assert "Traceback" not in done.stderr
    differences = topic_differences(settings)
    assert f"{names.contacts}: cleanup.policy is delete, Leadflow needs compact " \
           "(only each contact's newest record must be kept)" in differences
    assert any(line.startswith(f"{names.contact_events}: 3 partitions") for line in differences)


@pytest.mark.parametrize("command", ["topics", "worker", "up"])
def test_a_one_broker_kafka_with_the_kafka_profile_stops_with_one_line(
        broker: TestBroker, namespace: str, tmp_path: Path, command: str) -> None:
    env = _env(broker, namespace, tmp_path)
    del env["LEADFLOW_REPLICATION_FACTOR"]  # the kafka profile's default: 3
    args = {"topics": ["topics"], "worker": ["worker", "--web-port", str(free_port())],
            "up": ["up", "--kafka", broker.bootstrap, "--port", str(free_port()), "--collector-port",
                   str(free_port()), "--data-dir", str(tmp_path / "up"), "--db", f"sqlite:///{tmp_path / 'up.db'}"]}
    done = _leadflow(args[command], env, tmp_path, timeout=90)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr + done.stdout
    assert len(lines) == 1, lines
    assert "LEADFLOW_REPLICATION_FACTOR is 3 (the kafka profile's default)" in lines[0]
    assert "has 1 broker: set LEADFLOW_REPLICATION_FACTOR=1" in lines[0]


def test_a_one_broker_kafka_works_with_replication_factor_1(broker: TestBroker, namespace: str,
                                                             tmp_path: Path) -> None:
    """What a developer runs on a laptop: ``leadflow kafka`` (or any single broker), then
    ``leadflow topics`` and a worker with ``LEADFLOW_REPLICATION_FACTOR=1``."""
    from pipeline.devtools.demo import stop_process, wait_ready

    env = _env(broker, namespace, tmp_path)
    assert env["LEADFLOW_REPLICATION_FACTOR"] == "1"
    assert _leadflow(["topics"], env, tmp_path).returncode == 0
    port = free_port()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", "--web-port", str(port)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                  start_new_session=True, preexec_fn=die_with_parent)
    try:
        wait_ready(port, worker, timeout=120)
    finally:
        stop_process(worker)
    assert "Traceback" not in log.read_text()
