"""Local state that belongs to its cluster (issue 15): a worker's RocksDB store records the
cluster id, changelog topic, model and changelog checkpoint it was built from, and a store that
does not match is discarded and rebuilt from the changelog, with a log line saying why.

Real workers and real (embedded) brokers, one worker directory reused as an operator would:
the same broker again (kept), a brand-new cluster (discarded), a broker restarted empty under the
same cluster id (checkpoint beyond the changelog's end: discarded), another model (discarded).
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from pipeline.streaming.embedded_broker import EmbeddedBroker

from .harness import Pipeline

pytestmark = pytest.mark.integration

DISCARDED = "local contact store discarded and rebuilt from the changelog"


def _signups(prefix: str, n: int) -> list[bytes]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return [orjson.dumps({"source": "website", "event_id": f"{prefix}{i}", "event_type": "signup",
                          "contact_id": f"{prefix}{i}", "occurred_at": now, "properties": {}}) for i in range(n)]


def _run(pipeline: Pipeline, lines: list[bytes]) -> tuple[int, str]:
    """Start the worker (same name, same directory), publish ``lines``, wait until applied; the
    contacts in its table and its log."""
    with pipeline.worker("w") as worker:
        worker.ready(timeout=120)
        before = worker.stats()["processor"]["contacts_in_table"]
        if lines:
            pipeline.publish(lines)
            deadline = time.monotonic() + 60
            while worker.stats()["processor"]["applied"] < len(lines) and time.monotonic() < deadline:
                time.sleep(0.3)
        log = worker.log
    return before, log.read_text()


def test_a_store_from_another_cluster_topic_or_model_is_rebuilt(namespace: str, tmp_path: Path) -> None:
    with EmbeddedBroker(log_dir=tmp_path / "a", cluster_id="tansu_cluster_a") as first:
        pipeline = Pipeline(first, namespace, tmp_path, store="rocksdb")
        before, log = _run(pipeline, _signups("a", 6))
        assert before == 0 and DISCARDED not in log
        # Each partition database was opened with the configured memtable size (the bound on the
        # memory the table's writes take before a flush: LEADFLOW_ROCKSDB_WRITE_BUFFER_MB).
        options = [path.read_text() for path in tmp_path.rglob("contacts-*.db/OPTIONS-*")]
        assert options and all(f"  write_buffer_size={16 * 2**20}\n" in text for text in options)
        before, log = _run(pipeline, [])  # the same cluster again: the store is used as it is
        assert before == 6 and DISCARDED not in log, log[-3000:]

    with EmbeddedBroker(log_dir=tmp_path / "b", cluster_id="tansu_cluster_b") as second:
        pipeline = Pipeline(second, namespace, tmp_path, store="rocksdb")
        before, log = _run(pipeline, _signups("b", 3))
        assert before == 0, "the other cluster's contacts were loaded"
        reason = "it was built from cluster 'tansu_cluster_a', the broker is cluster 'tansu_cluster_b'"
        assert f"{DISCARDED}: {reason}" in log
        before, log = _run(pipeline, [])
        assert before == 3 and DISCARDED not in log
        pipeline_b2b = Pipeline(second, namespace, tmp_path, store="rocksdb", model="b2b")
        before, log = _run(pipeline_b2b, [])
        assert f"{DISCARDED}: it was built by model default@1, this worker runs b2b@1" in log
        assert before == 3  # rebuilt from the changelog (the states themselves are the same)

    # The broker restarted empty with the same cluster id (a memory broker, or topics deleted and
    # recreated): the store's checkpoint is beyond the new changelog's end.
    with EmbeddedBroker(log_dir=tmp_path / "c", cluster_id="tansu_cluster_b") as third:
        pipeline = Pipeline(third, namespace, tmp_path, store="rocksdb", model="b2b")
        before, log = _run(pipeline, [])
        assert before == 0
        assert "is at or beyond the changelog's end (0): the topic was recreated or truncated" in log
