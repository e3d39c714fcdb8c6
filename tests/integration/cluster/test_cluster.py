"""What users fear, on a three-broker Apache Kafka cluster (replication factor 3,
``min.insync.replicas=2``, topics created by Leadflow with those settings): a broker killed
mid-stream, a rolling restart, the whole cluster down and back, and a worker that comes back from
the dead after its partitions were given to another.

Every test ends with the property that sets Leadflow apart: the stream published exactly what
``leadflow replay`` computes, each contact applied each event once, and, where a collector runs
through the fault, it answered only 202 or 503 and every event it answered 202 for is in Kafka.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.kafka.topics import describe_topics, ensure_topics, topic_differences
from pipeline.storage import upgrade_database
from pipeline.streaming.embedded_broker import free_port
from pipeline.streaming.local_kafka import LocalKafka
from tests.integration.collector.conftest import collector_config
from tests.integration.collector.harness import running_collector
from tests.integration.collector.traffic import PUBLISH_TIMEOUT, RETRY_AFTER, Traffic, assert_only_202_or_503, topic_ids
from tests.integration.storage.sink_harness import sink_process
from tests.integration.streaming.equivalence import (
    WINDOW,
    Reference,
    assert_each_event_applied_once,
    assert_equivalent,
    processed_by,
)
from tests.integration.streaming.harness import Pipeline
from tests.support.brokers import broker_settings

pytestmark = [pytest.mark.integration, pytest.mark.broker("kafka")]

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    with LocalKafka(nodes=3, data_dir=tmp_path_factory.mktemp("cluster")) as kafka:
        yield kafka


@pytest.fixture(autouse=True)
def every_node_up_again(cluster: LocalKafka) -> Iterator[None]:
    yield
    for node in cluster.nodes:  # a failed test must not leave the next one a broker short
        if cluster.pid_of(node.node_id) is None:
            cluster.start_node(node.node_id)
    cluster.wait_fully_replicated()


def _namespace(name: str) -> str:
    return f"k{os.getpid()}{name}"


@contextlib.contextmanager
def collector_traffic(cluster: LocalKafka, name: str, workdir: Path) -> Iterator[Traffic]:
    """A collector on the cluster (its own topics) with senders posting all along; on exit, the
    collector's promise is checked: only 202 or 503, and every 202 event is in Kafka."""
    settings = broker_settings(cluster, topic_prefix=f"{name}.", app_id=name, partitions=2)
    ensure_topics(settings)
    config = collector_config(publish_timeout=PUBLISH_TIMEOUT * 4, retry_after=RETRY_AFTER)
    with running_collector(settings, config, workdir / f"{name}-collector.log") as collector:
        traffic = Traffic(collector, senders=2)
        traffic.phase = "fault"
        traffic.running.set()
        try:
            yield traffic
        finally:
            traffic.pause()
            traffic.stop()
    print(traffic.summary())
    assert_only_202_or_503(traffic.outcomes)
    assert traffic.accepted_ids(), "the collector accepted nothing"
    missing = traffic.accepted_ids() - topic_ids(settings)
    assert not missing, f"{len(missing)} events answered 202 are not in Kafka: {sorted(missing)[:5]}"


def in_background(action: Callable[[], None]) -> Callable[[], None]:
    """Run ``action`` in a thread; the returned function joins it and re-raises its failure."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # re-raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="fault")
    thread.start()

    def join() -> None:
        thread.join(300)
        assert not thread.is_alive(), "the fault did not finish within 300 s"
        if failure:
            raise failure[0]

    return join


def test_topics_are_replicated_three_times_with_two_in_sync(cluster: LocalKafka, tmp_path: Path) -> None:
    pipeline = Pipeline(cluster, _namespace("topics"), tmp_path)
    # Created through one broker; another may list them a moment later (KRaft metadata propagation).
    deadline = time.monotonic() + 30
    while len(shapes := describe_topics(pipeline.settings, pipeline.names.all())) < len(pipeline.names.all()):
        assert time.monotonic() < deadline, f"topics missing: {sorted(set(pipeline.names.all()) - set(shapes))}"
        time.sleep(0.2)
    for name, shape in shapes.items():
        assert (shape.partitions, shape.replicas, shape.configs["min.insync.replicas"]) == (4, 3, "2"), name
    assert shapes[pipeline.names.contacts].configs["cleanup.policy"] == "compact"
    assert topic_differences(pipeline.settings) == []


def test_the_leader_of_the_busiest_partitions_killed_mid_stream_loses_nothing(
    cluster: LocalKafka, tmp_path: Path, sample: list[bytes], reference: Reference, until: int
) -> None:
    pipeline = Pipeline(cluster, _namespace("leader"), tmp_path, **WINDOW)
    with collector_traffic(cluster, _namespace("leadercol"), tmp_path), pipeline.worker() as worker:
        worker.ready(timeout=120)
        leaders = cluster.leaders([pipeline.names.contact_events])[pipeline.names.contact_events]
        busiest = max(set(leaders.values()), key=lambda node: sum(1 for n in leaders.values() if n == node))

        def kill_and_restart() -> None:
            time.sleep(2.0)  # the feed is under way
            cluster.kill_node(busiest)
            time.sleep(10.0)  # past the leader election: the worker writes to the new leaders
            cluster.start_node(busiest)

        fault = in_background(kill_and_restart)
        pipeline.publish_in_waves(sample, processed_by(worker))
        fault()
        assert_equivalent(pipeline, reference, until, [worker])
        assert worker.process.poll() is None, "the worker survived the broker's death"
    assert_each_event_applied_once(pipeline, sample)


def test_a_rolling_restart_of_every_broker_under_load_loses_nothing(
    cluster: LocalKafka, tmp_path: Path, sample: list[bytes], reference: Reference, until: int
) -> None:
    pipeline = Pipeline(cluster, _namespace("rolling"), tmp_path, **WINDOW)
    with collector_traffic(cluster, _namespace("rollingcol"), tmp_path), pipeline.worker() as worker:
        worker.ready(timeout=120)

        def roll() -> None:
            for node in cluster.nodes:  # as an operator upgrades: one at a time, in sync before the next
                cluster.stop_node(node.node_id)  # SIGTERM: a controlled shutdown
                cluster.start_node(node.node_id)
                cluster.wait_fully_replicated()

        fault = in_background(roll)
        pipeline.publish_in_waves(sample, processed_by(worker))
        fault()
        assert_equivalent(pipeline, reference, until, [worker])
    assert_each_event_applied_once(pipeline, sample)


def test_a_worker_resumes_from_its_offsets_and_changelog_after_the_cluster_restarts(
    cluster: LocalKafka, tmp_path: Path, sample: list[bytes], reference: Reference, until: int
) -> None:
    """Apache Kafka keeps its log across a restart (Tansu, memory only, could not be tested so):
    a new worker, with an empty data folder, restores the contact states from the changelog and
    goes on from the committed offsets."""
    pipeline = Pipeline(cluster, _namespace("restart"), tmp_path, **WINDOW)
    cut = len(sample) // 2
    with pipeline.worker("before") as worker:
        worker.ready(timeout=120)
        pipeline.publish_in_waves(sample[:cut], processed_by(worker))
        first = Reference(sample[:cut], until).stats
        pipeline.wait_for("transitions", 1)
    cluster.stop(keep_data=True)
    cluster.start()
    with pipeline.worker("after") as worker:  # a fresh data folder: everything from Kafka
        worker.ready(timeout=180)
        pipeline.publish_in_waves(sample[cut:], processed_by(worker))
        assert_equivalent(pipeline, reference, until, [worker], already_processed=first.applied + first.duplicates)
    assert_each_event_applied_once(pipeline, sample)


def _stored_ids(db_path: Path) -> tuple[set[str], set[str]]:
    try:
        with sqlite3.connect(db_path) as connection:
            transitions = {row[0] for row in connection.execute("SELECT transition_id FROM transitions")}
            alerts = {row[0] for row in connection.execute("SELECT alert_id FROM alerts")}
    except sqlite3.Error:  # not created yet
        return set(), set()
    return transitions, alerts


def test_the_worker_and_the_sink_ride_out_the_whole_cluster_going_down(
    cluster: LocalKafka, tmp_path: Path, sample: list[bytes], reference: Reference, until: int
) -> None:
    pipeline = Pipeline(cluster, _namespace("outage"), tmp_path, **WINDOW)
    cut = len(sample) // 3
    db_path = tmp_path / "history.db"
    upgrade_database(f"sqlite:///{db_path}")
    sink_settings = pipeline.settings.with_(db_url=f"sqlite:///{db_path}", web_port=free_port())
    with pipeline.worker() as worker, sink_process(sink_settings, tmp_path / "sink.log") as sink:
        worker.ready(timeout=120)
        pipeline.publish_in_waves(sample[:cut], processed_by(worker))
        pipeline.wait_for("transitions", 1)
        cluster.stop(keep_data=True)  # every broker gone, both processes keep running
        time.sleep(15)
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        assert sink.process.poll() is None, sink.tail()
        cluster.start()
        pipeline.publish_in_waves(sample[cut:], processed_by(worker))
        assert_equivalent(pipeline, reference, until, [worker])
        wanted = ({t["transition_id"] for t in reference.transitions}, {a["alert_id"] for a in reference.alerts})
        deadline = time.monotonic() + 120
        while _stored_ids(db_path) != wanted and time.monotonic() < deadline:
            assert sink.process.poll() is None, sink.tail()
            time.sleep(0.5)
        stored = _stored_ids(db_path)
        assert stored[0] == wanted[0], f"{len(wanted[0] - stored[0])} transitions missing in the database"
        assert stored[1] == wanted[1], f"{len(wanted[1] - stored[1])} alerts missing in the database"
        stats = sink.stats()
        assert stats["read"] == stats["stored"] + stats["invalid"] and stats["invalid"] == 0
    assert_each_event_applied_once(pipeline, sample)


def test_a_zombie_worker_resumed_after_its_partitions_moved_corrupts_nothing(
    cluster: LocalKafka, tmp_path: Path, sample: list[bytes], reference: Reference, until: int
) -> None:
    """A worker frozen (SIGSTOP) past its session timeout while a second worker takes its
    partitions, then thawed (SIGCONT): what it does after it wakes must be rejected or harmless.

    What happens (docs/streaming.md, "A worker that comes back from the dead"): its writes wait
    for the group coordinator's word (no heartbeat accepted for longer than half a session); the
    coordinator says it was expelled, so it drops the batch it had in hand (nothing of it is
    stored or written) and rejoins; its offset commits are rejected (the generation moved on).
    The check: no contact's changelog went back, and replay's outputs and states, and every event
    applied once, read back by a third worker that restores from the changelog."""
    pipeline = Pipeline(cluster, _namespace("zombie"), tmp_path, **WINDOW)
    session = pipeline.settings.broker.session_timeout_ms / 1000
    cut = len(sample) // 3
    with pipeline.worker("zombie") as zombie:
        zombie.ready(timeout=120)
        with pipeline.worker("heir") as heir:
            heir.ready(timeout=120)
            pipeline.publish_in_waves(sample[:cut], processed_by(zombie, heir))
            os.kill(zombie.process.pid, signal.SIGSTOP)
            try:
                time.sleep(session + 8)  # past the session timeout: the heir owns every partition
                pipeline.publish_in_waves(sample[cut: 2 * cut], processed_by(heir))
            finally:
                os.kill(zombie.process.pid, signal.SIGCONT)
                thawed = time.time()
            time.sleep(5)  # the zombie wakes up, finds its generation gone and rejoins
            pipeline.publish_in_waves(sample[2 * cut:], processed_by(zombie, heir))
            time.sleep(3)
        assert zombie.process.poll() is None, "the thawed worker stays up"
        zombie_log = zombie.log.read_text(errors="replace")
    assert_no_state_went_back(pipeline, thawed)
    with pipeline.worker("reader") as reader:  # restores every partition from the changelog
        reader.ready(timeout=180)
        assert_equivalent(pipeline, reference, until, [reader],
                          already_processed=reference.stats.applied + reference.stats.duplicates)
    assert_each_event_applied_once(pipeline, sample)
    assert "Traceback" not in zombie_log or "CommitFailedError" in zombie_log, zombie_log[-3000:]


def assert_no_state_went_back(pipeline: Pipeline, thawed: float) -> None:
    """No contact's changelog went back: each state written has applied at least as many events
    as the one before it. A write that went back, made in the seconds after the thaw, is the
    zombie's late write of a batch it computed before it froze, landing after the newer state
    the heir wrote for the same contact."""
    went_back = []
    for contact, writes in pipeline.changelog_history().items():
        for (_, before), (at, after) in itertools.pairwise(writes):
            if after.events_applied < before.events_applied:
                went_back.append((contact, before.events_applied, after.events_applied,
                                  round(at / 1000 - thawed, 2)))
    assert not went_back, (
        f"{len(went_back)} changelog writes went back (contact, events applied before, after, seconds after "
        f"the thaw): {went_back[:10]}")

