"""The history sink on a real broker and real databases: it writes exactly what ``replay --db``
writes, ignores redeliveries, dead-letters what it cannot read, and survives a database outage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, select

from pipeline.config.topics import TopicNames
from pipeline.kafka.topics import ensure_topics
from pipeline.storage import HistoryWriter, upgrade_database
from pipeline.storage.database import driver_url
from pipeline.storage.sql.tables import alerts, contacts, transitions
from tests.support.brokers import TestBroker
from tests.support.kafka import read_topic

from .sink_harness import PrivatePostgres, publish, sample_outputs, sink_process, sink_settings

pytestmark = pytest.mark.integration


def table_contents(url: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Every row of the three tables by id, without the columns that depend on write order/time."""
    engine = create_engine(driver_url(url))
    try:
        with engine.connect() as connection:
            return {
                "transitions": {r["transition_id"]: {k: v for k, v in r.items() if k != "seq"}
                                for r in connection.execute(select(transitions)).mappings()},
                "alerts": {r["alert_id"]: dict(r) for r in connection.execute(select(alerts)).mappings()},
                "contacts": {r["contact_id"]: {k: v for k, v in r.items() if k != "updated_at"}
                             for r in connection.execute(select(contacts)).mappings()},
            }
    finally:
        engine.dispose()


def replay_into(url: str, outputs: dict[str, list[bytes]]) -> None:
    """What ``leadflow replay --db`` writes for the same records (the reference)."""
    from pipeline.state_machine.records import Alert, ContactSnapshot, Transition

    with HistoryWriter(url, batch_size=700) as writer:
        writer.add_transitions(orjson_decode(outputs["transitions"], Transition))
        writer.add_alerts(orjson_decode(outputs["alerts"], Alert))
        writer.add_contacts(orjson_decode(outputs["contacts"], ContactSnapshot))


def orjson_decode(lines: list[bytes], kind: type) -> list[Any]:
    import msgspec

    return [msgspec.json.decode(line, type=kind) for line in lines]


def test_the_sink_writes_what_replay_writes_once_and_dead_letters_garbage(
    broker: TestBroker, namespace: str, db_url: str, empty_db: str, tmp_path: Path
) -> None:
    outputs = sample_outputs()
    settings = sink_settings(broker, namespace, db_url, sink_batch=300)
    names = TopicNames.of(settings)
    ensure_topics(settings)
    publish(settings, names.transitions, outputs["transitions"][:900])
    publish(settings, names.transitions, [b'{"transition_id": "x", "contact_id": 12}'])  # not a transition
    publish(settings, names.alerts, outputs["alerts"])
    publish(settings, names.transitions, outputs["transitions"])  # the first 900 again: a redelivery
    publish(settings, names.contacts, outputs["contacts"])
    total = 900 + 1 + sum(len(lines) for lines in outputs.values())

    with sink_process(settings, tmp_path / "sink.log") as sink:
        stats = sink.wait_for(lambda s: s["read"] >= total and s["held"] == 0, 120, f"{total} records stored")
        assert stats["read"] == total == stats["stored"] + stats["invalid"]
        assert stats["invalid"] == 1
        assert stats["max_held"] <= 300  # one batch at a time
        assert sink.get("/readyz")[0] == 200
        assert sink.metric("leadflow_sink_records_total") == total
        assert sink.metric("leadflow_sink_batch_size_count") == stats["batches"]
    assert sink.process.returncode == 0  # SIGTERM: a clean stop

    reference = empty_db  # the same backend, another database / schema
    upgrade_database(reference)
    replay_into(reference, outputs)
    stored, expected = table_contents(db_url), table_contents(reference)
    assert len(stored["transitions"]) == len(outputs["transitions"])  # the redelivered 900 wrote nothing
    assert stored == expected

    dead = [orjson.loads(value) for value in read_topic(names.deadletter, settings)]
    assert len(dead) == 1
    assert dead[0]["error_code"] == "schema_violation"
    assert dead[0]["topic"] == names.transitions
    assert isinstance(dead[0]["partition"], int) and isinstance(dead[0]["offset"], int)  # where it was found
    assert dead[0]["raw"] == '{"transition_id": "x", "contact_id": 12}'
    assert "is not a valid transition" in dead[0]["error_detail"]


def test_a_database_outage_mid_stream_loses_and_duplicates_nothing(
    broker: TestBroker, namespace: str, tmp_path: Path
) -> None:
    postgres = PrivatePostgres()
    try:
        postgres.start()
        upgrade_database(postgres.url)
        outputs = sample_outputs()
        settings = sink_settings(broker, namespace, postgres.url, sink_batch=100)
        names = TopicNames.of(settings)
        ensure_topics(settings)
        first, second = outputs["transitions"][:800], outputs["transitions"][800:]
        total = sum(len(lines) for lines in outputs.values())

        with sink_process(settings, tmp_path / "sink.log") as sink:
            publish(settings, names.transitions, first)
            sink.wait_for(lambda s: s["stored"] >= len(first) and s["held"] == 0, 120, "the first records stored")

            postgres.stop()
            stopped = time.monotonic()
            publish(settings, names.transitions, second)
            publish(settings, names.alerts, outputs["alerts"])
            publish(settings, names.contacts, outputs["contacts"])
            during = sink.wait_for(lambda s: not s["database_up"], 60, "the sink to notice the outage")
            status, body = sink.get("/readyz")
            assert status == 503 and b"database unavailable" in body
            assert sink.metric("leadflow_sink_database_up") == 0
            assert sink.metric("leadflow_sink_failures_total") >= 1
            while time.monotonic() - stopped < 30:  # the database stays away for 30 seconds
                during = sink.stats()
                assert during["held"] <= 100 and during["max_held"] <= 100  # backpressure, not a queue
                assert during["stored"] < total
                time.sleep(1)
            assert sink.process.poll() is None  # it waited, it did not die

            postgres.start()
            after = sink.wait_for(lambda s: s["stored"] >= total and s["held"] == 0, 120, "recovery")
            assert after["database_up"] and after["outages"] == 1 and after["invalid"] == 0
            assert after["read"] == total
            assert sink.metric("leadflow_sink_database_up") == 1
            assert sink.get("/readyz")[0] == 200
            log = sink.log.read_text()
            assert "database write failed (unavailable)" in log and "database back after" in log

        stored = table_contents(postgres.url)
        assert sorted(stored["transitions"]) == sorted(orjson.loads(t)["transition_id"] for t in outputs["transitions"])
        assert len(stored["alerts"]) == len(outputs["alerts"])
        assert {c: row["stage"] for c, row in stored["contacts"].items()} == {
            orjson.loads(c)["contact_id"]: orjson.loads(c)["stage"] for c in outputs["contacts"]
        }
    finally:
        postgres.close()
