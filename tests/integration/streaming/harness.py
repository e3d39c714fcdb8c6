"""A streaming pipeline under test: topics on a test broker (Apache Kafka or Tansu), worker processes, readers.

Everything is real: the broker, kafka-python producers and consumers, ``leadflow worker``
processes started exactly as an operator would start them.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from pipeline.config.settings import Settings
from pipeline.config.topics import CONTACTS_TABLE, TopicNames
from pipeline.contracts import decode_event
from pipeline.devtools.demo import free_port, stop_process, wait_ready, worker_process
from pipeline.kafka.tools import produce_lines
from pipeline.kafka.topics import ensure_topics
from pipeline.state_machine import ContactState, Event, decode_state
from tests.support.brokers import TestBroker, broker_settings
from tests.support.kafka import read_topic


class Pipeline:
    """Topics with a unique prefix plus helpers to run workers and read what they published."""

    def __init__(self, broker: TestBroker, namespace: str, workdir: Path, **overrides: Any) -> None:
        self.broker = broker
        self.settings: Settings = broker_settings(
            broker,
            topic_prefix=f"{namespace}.",
            app_id=namespace,
            partitions=4,
            data_dir=str(workdir / "data"),
            # Tests with a fast model and a wall-clock sweep expect cooling at its deadline: no
            # watermark unless a test asks for one (the default, 300 s, is for live traffic).
            **{"allowed_lateness": 0.0, **overrides},
        )
        self.workdir = workdir
        self.names = TopicNames.of(self.settings)
        self.logs: list[Path] = []
        ensure_topics(self.settings)

    @contextlib.contextmanager
    def worker(self, name: str = "w1") -> Iterator[Worker]:
        settings = self.settings.with_(web_port=free_port(), data_dir=str(self.workdir / f"data-{name}"))
        log = self.workdir / f"{name}-{len(self.logs)}.log"
        self.logs.append(log)
        with worker_process(settings, log) as process:
            yield Worker(process, settings, log)

    def publish_in_waves(self, lines: list[bytes], processed: Callable[[], int] | None = None) -> int:
        """Publish in file order so that each contact's events reach the contact processor in file
        order *by construction*: a new wave starts when a contact's next event is on another input
        topic, and a wave is published only after every ingest consumer committed the previous one.
        (Within one topic, one contact's events share a partition and keep their order.)

        A link event (contact_id and anonymous_id) starts a new wave when the wave holds events of
        its anonymous id: they travel through another input partition, and must reach the
        processor before the link claims their history.
        An anonymous-only event of a visitor linked earlier in the file is the person's event, but
        it reaches the anonymous id's partition, and from there the person's (one more hop): it
        is published in a wave of its own, and, given ``processed`` (events the workers applied or
        skipped as duplicates), only once the processor has taken every valid event published
        before it (the link's claim resolved), and the next wave only once it has taken it too."""
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap, acks="all", linger_ms=2,
                                 batch_size=self.settings.broker.producer_batch_bytes,
                                 max_in_flight_requests_per_connection=1)
        admin = _Admin(self.settings.bootstrap)
        groups = [f"{self.settings.app_id}-ingest-{family}" for family in self.names.inputs]
        waves, wave, families = 0, [], {}
        linked: dict[str, str] = {}  # anonymous id -> the contact it was first linked to
        base = processed() if processed is not None else 0
        valid = 0
        try:
            for line in lines:
                envelope = orjson.loads(line)
                contact_id, anonymous_id = envelope.get("contact_id"), envelope.get("anonymous_id")
                if contact_id and anonymous_id:
                    linked.setdefault(anonymous_id, contact_id)
                forwarded = not contact_id and anonymous_id in linked
                contact = linked[anonymous_id] if forwarded else contact_id or anonymous_id
                # A link reaches the ingest through another input partition (keyed by contact_id)
                # than the anonymous id's earlier events (keyed by anonymous_id): a wave apart.
                claims = bool(contact_id and anonymous_id and anonymous_id in families)
                if forwarded or claims or families.get(contact, envelope["source"]) != envelope["source"]:
                    self._publish_wave(producer, admin, groups, wave)
                    waves, wave, families = waves + 1, [], {}
                    if forwarded and processed is not None:  # the link's claim is resolved first
                        self._settle(processed, base + valid)
                families[contact] = envelope["source"]
                wave.append((envelope["source"], contact_id or anonymous_id, line))
                valid += isinstance(decode_event(line, family=None, received_at=time.time_ns() // 1000), Event)
                if forwarded:
                    self._publish_wave(producer, admin, groups, wave)
                    waves, wave, families = waves + 1, [], {}
                    if processed is not None:
                        self._settle(processed, base + valid)
            self._publish_wave(producer, admin, groups, wave)
        finally:
            producer.close()
            admin.close()
        return waves + 1

    @staticmethod
    def _settle(processed: Callable[[], int], events: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while processed() < events:
            if time.monotonic() > deadline:
                raise AssertionError(f"the processor took {processed()} of {events} events in {timeout:.0f} s")
            time.sleep(0.05)

    def _publish_wave(self, producer: Any, admin: Any, groups: list[str], wave: list[tuple[str, str, bytes]]) -> None:
        futures = [
            producer.send(self.names.inputs[source], value=line, key=contact.encode() if contact else None)
            for source, contact, line in wave
        ]
        producer.flush()
        wanted: dict[TopicPartition, int] = {}
        for future in futures:
            meta = future.get(timeout=30)
            tp = TopicPartition(meta.topic, meta.partition)
            wanted[tp] = max(wanted.get(tp, 0), meta.offset + 1)
        timeout = 120.0  # a broker's death moves leaders and coordinators: allow for the election
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            committed: dict[TopicPartition, int] = {}
            try:
                for group in groups:  # one group per call: Tansu answers OffsetFetch below v8
                    for tp, meta in admin.list_group_offsets({group: None}).get(group, {}).items():
                        committed[tp] = meta.offset
            except KafkaError:  # the group's coordinator moved (a broker died): ask again
                admin.renew()
                time.sleep(0.2)
                continue
            if all(committed.get(tp, -1) >= offset for tp, offset in wanted.items()):
                return
            time.sleep(0.01)
        raise AssertionError(f"ingest did not commit a wave within {timeout:.0f} s: {wanted}")

    def publish(self, lines: list[bytes], rate: float | None = None) -> int:
        report = produce_lines(((f"line:{i}", line) for i, line in enumerate(lines, 1)), self.settings, pace=rate)
        return report.total

    def publish_raw(self, family: str, values: list[bytes | None]) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap, acks="all",
                                 max_request_size=4 * 1024 * 1024,
                                 batch_size=self.settings.broker.producer_batch_bytes,
                                 max_in_flight_requests_per_connection=1)
        try:
            for value in values:  # a null value needs a key to be a valid Kafka record
                producer.send(self.names.inputs[family], value=value, key=None if value is not None else b"k")
            producer.flush()
        finally:
            producer.close()

    def records(self, what: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v in read_topic(self.names.outputs[what], self.settings)]

    def wait_for(self, what: str, count: int, timeout: float = 120.0, strict: bool = True) -> list[dict[str, Any]]:
        """Records of an output topic once at least ``count`` arrived and nothing new came for 2 s
        (``strict=False``: whatever arrived by the timeout, for a comparison to explain)."""
        deadline = time.monotonic() + timeout
        seen, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            records = self.records(what)
            if len(records) != seen:
                seen, stable_since = len(records), time.monotonic()
            elif seen >= count and time.monotonic() - stable_since > 2.0:
                return records
            time.sleep(0.5)
        if not strict:
            return self.records(what)
        raise AssertionError(f"{what}: {seen} records after {timeout}s, expected at least {count}")

    def contact_states(self) -> dict[str, ContactState]:
        """The latest state of every contact, read back from the table's changelog topic."""
        return {key: writes[-1][1] for key, writes in self.changelog_history().items()}

    def changelog_history(self) -> dict[str, list[tuple[int, ContactState]]]:
        """Every state written for each contact, in changelog order, with each record's timestamp
        (ms, set by the writing producer)."""
        topic = f"{self.settings.app_id}-{CONTACTS_TABLE}-changelog"
        consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap, enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            history: dict[str, list[tuple[int, ContactState]]] = defaultdict(list)
            while any(consumer.position(tp) < end[tp] for tp in tps):
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        history[orjson.loads(record.key)].append((record.timestamp, decode_state(record.value)))
            return dict(history)
        finally:
            consumer.close()


class _Admin:
    """A kafka-python admin client that can be renewed: kafka-python 3.0 caches each group's
    coordinator for the client's lifetime (``ClusterMetadata._coordinators`` is never cleared),
    so after the coordinator's broker died every OffsetFetch goes to the dead (then restarted,
    no longer coordinating) broker. A new client asks FindCoordinator again."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaAdminClient

        self.bootstrap = bootstrap
        self.client = KafkaAdminClient(bootstrap_servers=bootstrap)

    def list_group_offsets(self, groups: dict[str, None]) -> Any:
        return self.client.list_group_offsets(groups)

    def renew(self) -> None:
        from kafka import KafkaAdminClient

        with contextlib.suppress(Exception):
            self.client.close()
        self.client = KafkaAdminClient(bootstrap_servers=self.bootstrap)

    def close(self) -> None:
        self.client.close()


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], settings: Settings, log: Path) -> None:
        self.process, self.settings, self.log = process, settings, log

    def ready(self, timeout: float = 90.0) -> None:
        try:
            wait_ready(self.settings.web_port, self.process, timeout)
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- {self.log} ---\n{self.log.read_text()[-4000:]}") from exc

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.settings.web_port}/stats", timeout=5) as response:
            result: dict[str, Any] = orjson.loads(response.read())
            return result

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)


def by_id(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Records by id; asserts that a repeated id always carries identical content."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        previous = out.setdefault(record[key], record)
        assert previous == record, f"{key} {record[key]} published twice with different content"
    return out


def per_contact(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    sequences: dict[str, list[str]] = defaultdict(list)
    for record in records:
        sequences[record["contact_id"]].append(record["transition_id"])
    return sequences
