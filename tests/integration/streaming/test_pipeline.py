"""The streaming pipeline against a real broker: equivalence with replay, crash, two workers,
bad input, and the cooling sweep.

Ordering contract under test (docs/streaming.md, "Ordering"): a contact's events are applied in event-time
order when they reach the contact processor within the reorder window of each other; the
workers here run with a 1 s window and the feed is paced, and every test checks that no event
had to be applied late, so an equality below is guaranteed by that contract, not by luck.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.state_machine import ContactState, decode_state
from pipeline.state_machine.clock import parse_rfc3339
from tests.support.brokers import TestBroker

from .equivalence import (
    WINDOW,
    Reference,
    assert_each_event_applied_once,
    assert_equivalent,
    processed_by,
)
from .harness import Pipeline

pytestmark = pytest.mark.integration

def test_streaming_equals_replay(broker: TestBroker, namespace: str, tmp_path: Path,
                                 sample: list[bytes], reference: Reference, until: int) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, **WINDOW)
    with pipeline.worker() as worker:
        worker.ready()
        pipeline.publish_in_waves(sample, processed_by(worker))
        assert_equivalent(pipeline, reference, until, [worker])
        stats = worker.stats()
        read = sum(f["events"] + sum(f["dead_lettered"].values()) for f in stats["ingest"].values())
        processed = stats["processor"]["applied"] + stats["processor"]["duplicates"]
        dead = sum(sum(f["dead_lettered"].values()) for f in stats["ingest"].values())
        assert read == processed + dead == len(sample)
        assert stats["processor"]["duplicates"] == reference.stats.duplicates


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_crash_and_restart_lose_nothing(broker: TestBroker, namespace: str, tmp_path: Path, store: str,
                                        sample: list[bytes], reference: Reference, until: int) -> None:
    if store == "rocksdb":
        pytest.importorskip("rocksdict", reason="the rocksdb store needs rocksdict (the dev extra installs it)")
    pipeline = Pipeline(broker, namespace, tmp_path, store=store, **WINDOW)
    cut = len(sample) * 2 // 5
    with pipeline.worker("first") as worker:
        worker.ready()
        pipeline.publish_in_waves(sample[:cut], processed_by(worker))
        pipeline.wait_for("transitions", 1)
        worker.kill()  # SIGKILL mid-stream: no clean shutdown, no final commit
    with pipeline.worker("second") as worker:
        worker.ready(timeout=120)
        pipeline.publish_in_waves(sample[cut:], processed_by(worker))
        first_part = Reference(sample[:cut], until).stats
        assert_equivalent(pipeline, reference, until, [worker],
                          already_processed=first_part.applied + first_part.duplicates)
    assert_each_event_applied_once(pipeline, sample)


def test_two_workers_share_the_partitions(broker: TestBroker, namespace: str, tmp_path: Path,
                                          sample: list[bytes], reference: Reference, until: int) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, **WINDOW)
    with pipeline.worker("a") as first, pipeline.worker("b") as second:
        first.ready(timeout=120)
        second.ready(timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the rebalance gave each worker partitions
            owned = [set(w.stats()["processor"]["partitions"]) for w in (first, second)]
            if all(first.stats()["ingest"]) and all(owned):
                break
            time.sleep(0.5)
        pipeline.publish_in_waves(sample, processed_by(first, second))
        assert_equivalent(pipeline, reference, until, [first, second])
        owned = [set(w.stats()["processor"]["partitions"]) for w in (first, second)]
        assert owned[0] and owned[1] and not owned[0] & owned[1], owned


BAD_INPUTS: list[tuple[str, bytes | None, str]] = [
    ("website", b'{"event_id": "x1", "event_type": "page_view",', "invalid_json"),
    ("website", b"\xff\xfe\x00garbage\x80", "invalid_encoding"),
    ("website", None, "invalid_json"),  # an empty value
    ("website", b'[1, "two"]', "not_an_object"),  # a batch of two non-objects: one dead letter each
    ("website", b'[3]', "not_an_object"),
    ("email", orjson.dumps({"event_id": "x2", "event_type": "email_clicked", "contact_id": "c1",
                            "occurred_at": "2025-05-01T10:00:00Z", "properties": {"campaign_id": "k"}}),
     "schema_violation"),
    ("email", orjson.dumps({"event_id": "x3", "event_type": "page_view", "contact_id": "c1",
                            "occurred_at": "2025-05-01T10:00:00Z", "properties": {"url": "https://a.b"}}),
     "wrong_source"),
    ("purchase", orjson.dumps({"event_id": "x4", "event_type": "order_completed", "contact_id": "c1",
                               "occurred_at": "2025-05-01T10:00:00Z",
                               "properties": {"order_id": "o", "amount": -1, "currency": "VND", "tier": "core"}}),
     "schema_violation"),
    ("purchase", orjson.dumps({"event_id": "x5", "event_type": "order_completed", "contact_id": "c1",
                               "occurred_at": "2025-05-01T10:00:00Z",
                               "properties": {"order_id": "o", "amount": 1, "currency": "VND", "tier": "core",
                                              "note": "x" * 70_000}}),
     "too_large"),
    ("purchase", orjson.dumps({"event_id": "x6", "event_type": "teleported", "contact_id": "c1",
                               "occurred_at": "2025-05-01T10:00:00Z", "properties": {}}),
     "unknown_event_type"),
    ("email", orjson.dumps({"event_id": "x7", "event_type": "email_opened",
                            "occurred_at": "2025-05-01T10:00:00Z", "properties": {"campaign_id": "k"}}),
     "missing_identity"),
]


def good(event_id: str, contact: str, event_type: str, **properties: Any) -> bytes:
    return orjson.dumps({"event_id": event_id, "event_type": event_type, "contact_id": contact,
                         "occurred_at": "2025-05-01T10:00:00Z", "properties": properties})


def test_bad_input_is_dead_lettered_while_good_events_flow(broker: TestBroker, namespace: str,
                                                           tmp_path: Path) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path)
    with pipeline.worker() as worker:
        worker.ready()
        for number, (family, value, _) in enumerate(BAD_INPUTS):
            before = {
                "website": good(f"g{number}a", f"ok{number}", "form_submit", form_id="f"),
                "email": good(f"g{number}a", f"ok{number}", "email_replied", campaign_id="k"),
                "purchase": good(f"g{number}a", f"ok{number}", "order_completed", order_id=f"o{number}",
                                 amount=10, currency="VND", tier="entry"),
            }[family]
            pipeline.publish_raw(family, [before, value])
        dead = pipeline.wait_for("deadletter", len(BAD_INPUTS) + 1)
        transitions = pipeline.wait_for("transitions", len(BAD_INPUTS))
    codes = sorted(record["error_code"] for record in dead)
    assert codes == sorted([code for _, _, code in BAD_INPUTS] + ["not_an_object"])
    for record in dead:
        assert record["topic"].startswith(namespace) and record["offset"] >= 0 and record["error_detail"]
    moved = {t["contact_id"] for t in transitions if t["kind"] == "stage"}
    assert moved == {f"ok{n}" for n in range(len(BAD_INPUTS))}


COOLING_MODEL = (Path(__file__).resolve().parents[3] / "pipeline" / "state_machine" / "models"
                 / "default.toml").read_text()


def test_cooling_sweep_fires_without_an_event(broker: TestBroker, namespace: str, tmp_path: Path) -> None:
    # The default model, except that a lead cools off after 4 quiet seconds instead of 90 days.
    model = tmp_path / "fast-cooling.toml"
    model.write_text(COOLING_MODEL.replace("after_days = 90\n", f"after_days = {4 / 86400}\n"))
    pipeline = Pipeline(broker, namespace, tmp_path, model=str(model), sweep_clock="wall",
                        sweep_interval=0.5)
    with pipeline.worker() as worker:
        worker.ready()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        pipeline.publish_raw("website", [orjson.dumps({
            "event_id": "q1", "event_type": "signup", "contact_id": "quiet", "occurred_at": now,
            "properties": {}})])
        transitions = pipeline.wait_for("transitions", 2, timeout=60)
    moves = [(t["from"], t["to"], t["reason"], t["trigger_event_id"]) for t in transitions if t["kind"] == "stage"]
    assert moves == [("niche", "lead", "signed_up", "q1"), ("lead", "niche", "lead_went_quiet", None)]
    cooled = next(t for t in transitions if t["reason"] == "lead_went_quiet")
    assert parse_rfc3339(cooled["occurred_at"]) - parse_rfc3339(now) == pytest.approx(4_000_000, abs=1)


def test_contact_state_codec_roundtrip() -> None:
    state = ContactState(contact="c1", identified=True, seen=b"12345678")
    from pipeline.state_machine import encode_state

    assert decode_state(encode_state(state)) == state
