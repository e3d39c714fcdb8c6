"""Benchmark: the streaming pipeline against a raw consumer and a naive Faust agent, plus alert
latency, on one embedded broker in one run.

    make bench-stream                       # python benchmarks/bench_stream.py
    python benchmarks/bench_stream.py --events 20000 --latency-seconds 10

(a) ceiling: raw aiokafka consume + orjson decode of an input topic of single-event messages;
(b) naive: a Faust agent as a Faust user writes it (``async for event in stream``, one table
    update per event), in its own process;
(c) pipeline: a ``leadflow worker`` on a copy of the same input.
Group joins (Tansu waits one session timeout on a first join) are excluded from all three: each
is timed from its first processed message to its last.
(d) latency: a worker in wall-clock mode under a steady background load; a ``demo_request`` for a
fresh contact every 100 ms; latency = alert received - request published.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from pipeline.demo import free_port, wait_ready, worker_process
from pipeline.embedded_broker import EmbeddedBroker
from pipeline.kafka_tools import ensure_topics
from pipeline.settings import Settings, from_env
from pipeline.simulator import simulate
from pipeline.topics import TopicNames

PARTITIONS = 4

NAIVE_AGENT = '''
import os, time, faust, orjson
from pipeline.faust_tuning import LeadflowTransport
bootstrap, topic, app_id = os.environ["NAIVE_BOOTSTRAP"], os.environ["NAIVE_TOPIC"], os.environ["NAIVE_APP"]
total = int(os.environ["NAIVE_TOTAL"])
app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", topic_partitions=4,
                topic_replication_factor=1, broker_session_timeout=6, broker_heartbeat_interval=1,
                broker_rebalance_timeout=6, consumer_auto_offset_reset="earliest", web_enabled=False,
                producer_max_batch_size=1)
app.transport = LeadflowTransport(app.conf.broker_consumer, app, fetch_max_wait_ms=20)
source = app.topic(topic, value_serializer="raw")
contacts = app.Table("naive-contacts", default=dict)
seen = [0, 0.0]

@app.agent(source)
async def naive(stream):
    async for value in stream:
        event = orjson.loads(value)
        key = event.get("contact_id") or event.get("anonymous_id")
        state = dict(contacts[key])
        state["events"] = state.get("events", 0) + 1
        state["last"] = event["occurred_at"]
        contacts[key] = state
        seen[0] += 1
        if seen[0] == 1:
            seen[1] = time.perf_counter()
        if seen[0] == total:  # Faust sends stdout to its log: hand the figure over in a file
            with open(os.environ["NAIVE_RESULT"], "w") as out:
                out.write(f"{total - 1} {time.perf_counter() - seen[1]:.6f}")

app.main()
'''


WEBSITE = {"page_view", "form_submit", "signup", "content_download", "demo_request", "trial_start",
           "offer_claimed", "event_attended", "add_to_cart", "checkout_start", "membership_joined",
           "review_submitted"}


def make_events(count: int) -> list[bytes]:
    """``count`` realistic website events of simulated journeys, one JSON envelope each."""
    out: list[bytes] = []
    seed = 1
    while len(out) < count:
        for event in simulate(contacts=max(100, count // 5), seed=seed, span_days=365):
            if event["event_type"] in WEBSITE:
                out.append(orjson.dumps(event))
        seed += 1
    return out[:count]


def fill(settings: Settings, topic: str, lines: list[bytes]) -> None:
    # Batched like a busy producer's: every reader here consumes to a known count, never to the
    # broker's reported end offset (which Tansu gets wrong after multi-record batches).
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=20)
    for line in lines:
        key = (orjson.loads(line).get("contact_id") or "anon").encode()
        producer.send(topic, value=line, key=key)
    producer.flush()
    producer.close()


async def raw_ceiling(bootstrap: str, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, 0.0
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                for record in records:
                    orjson.loads(record.value)
                    seen += 1
                    if seen == 1:
                        started = time.perf_counter()
        return (total - 1) / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def naive_agent(bootstrap: str, topic: str, total: int, workdir: Path) -> float:
    script = workdir / "naive_agent.py"
    script.write_text(NAIVE_AGENT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), NAIVE_BOOTSTRAP=bootstrap,
               NAIVE_TOPIC=topic, NAIVE_APP=f"naive-{os.getpid()}", NAIVE_TOTAL=str(total),
               NAIVE_RESULT=str(workdir / "naive.result"))
    process = subprocess.Popen(
        [sys.executable, str(script), "worker", "-l", "warn", "--without-web"],
        env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=open(workdir / "naive.log", "w"),  # noqa: SIM115
        start_new_session=True,
    )
    result = workdir / "naive.result"
    try:
        deadline = time.monotonic() + 600
        while not result.exists() or not result.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the naive agent gave no result; see {workdir / 'naive.log'}")
            time.sleep(0.2)
        count, seconds = result.read_text().split()
        return int(count) / float(seconds)
    finally:
        process.terminate()
        process.wait(20)


def stats(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        result: dict[str, object] = orjson.loads(response.read())
        return result


def pipeline_rate(settings: Settings, total: int, workdir: Path) -> float:
    with worker_process(settings, workdir / "pipeline-worker.log") as process:
        wait_ready(settings.web_port, process)
        first_at: tuple[float, int] | None = None
        while True:
            report = stats(settings.web_port)
            processor, ingest = report["processor"], report["ingest"]
            dead = sum(sum(family["dead_lettered"].values()) for family in ingest.values())  # type: ignore[attr-defined]
            done = int(processor["applied"]) + int(processor["duplicates"]) + dead  # type: ignore[index]
            now = time.perf_counter()
            if first_at is None and done > 0:
                first_at = (now, done)
            if done >= total and first_at is not None:
                return (done - first_at[1]) / (now - first_at[0])
            time.sleep(0.05)


def latency(settings: Settings, seconds: float, workdir: Path, window_ms: float) -> list[float]:
    settings = settings.with_(reorder_window=window_ms / 1000, sweep_clock="wall",
                              app_id=f"{settings.app_id}-lat{int(window_ms)}", web_port=free_port(),
                              topic_prefix=f"{settings.topic_prefix}lat{int(window_ms)}.")
    ensure_topics(settings)
    names = TopicNames.of(settings)
    received: dict[str, float] = {}
    stop = threading.Event()

    def listen() -> None:
        consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, fetch_max_wait_ms=5, group_id=None)
        tps = [KafkaTopicPartition(names.alerts, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=20).values():
                for record in records:
                    received.setdefault(orjson.loads(record.value)["contact_id"], time.perf_counter())
        consumer.close()

    with worker_process(settings, workdir / f"latency-{int(window_ms)}.log") as process:
        wait_ready(settings.web_port, process)
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        time.sleep(1.0)
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=0,
                                 batch_size=settings.broker["producer_batch_bytes"])
        sent: dict[str, float] = {}
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            now_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            n += 1
            background = {"event_id": f"bg{n}", "event_type": "page_view", "contact_id": f"bg{n % 5000}",
                          "occurred_at": now_text, "properties": {"url": "https://shop.example/"}}
            producer.send(names.inputs["website"], value=orjson.dumps(background), key=f"bg{n % 5000}".encode())
            if n % 100 == 0:  # every ~100 ms at 1,000 events/s
                contact = f"probe{n}"
                probe = {"event_id": f"p{n}", "event_type": "demo_request", "contact_id": contact,
                         "occurred_at": now_text, "properties": {}}
                producer.send(names.inputs["website"], value=orjson.dumps(probe), key=contact.encode())
                producer.flush()
                sent[contact] = time.perf_counter()
            ahead = n / 1000 - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()
        time.sleep(2.0)
        stop.set()
        listener.join(5)
    return [(received[c] - t) * 1000 for c, t in sent.items() if c in received]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-bench-stream-"))
    lines = make_events(args.events)
    with EmbeddedBroker(log_dir=workdir) as broker:
        settings = from_env({}, bootstrap=broker.bootstrap, profile="tansu", partitions=PARTITIONS,
                            app_id=f"bench{os.getpid()}", topic_prefix="bench.", sweep_clock="event",
                            web_port=free_port(), data_dir=str(workdir / "data"))
        ensure_topics(settings)
        names = TopicNames.of(settings)
        raw_topic = settings.topic("raw.website")
        naive_topic = settings.topic("naive.website")
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(raw_topic, PARTITIONS, 1), NewTopic(naive_topic, PARTITIONS, 1)])
        admin.close()
        print(f"filling three topics with {len(lines):,} single-event messages...", flush=True)
        for topic in (raw_topic, naive_topic, names.inputs["website"]):
            fill(settings, topic, lines)
        ceiling = asyncio.run(raw_ceiling(broker.bootstrap, raw_topic, len(lines)))
        print(f"(a) raw aiokafka consume + decode: {ceiling:,.0f} events/s", flush=True)
        naive = naive_agent(broker.bootstrap, naive_topic, len(lines), workdir)
        print(f"(b) naive Faust agent:             {naive:,.0f} events/s", flush=True)
        pipeline = pipeline_rate(settings, len(lines), workdir)
        print(f"(c) leadflow pipeline:             {pipeline:,.0f} events/s", flush=True)
        lat = {window: latency(settings, args.latency_seconds, workdir, window) for window in (50.0, 10.0)}
    print("\n=== bench-stream ===")
    print(f"events: {len(lines):,} single-event messages, {PARTITIONS} partitions, embedded broker (Tansu)")
    print(f"(a) ceiling  {ceiling:12,.0f} events/s")
    print(f"(b) naive    {naive:12,.0f} events/s")
    print(f"(c) pipeline {pipeline:12,.0f} events/s   pipeline/naive {pipeline / naive:5.2f}x (goal >= 5)   "
          f"pipeline/ceiling {pipeline / ceiling:5.2f} (goal >= 0.25)")
    for window, values in lat.items():
        if not values:
            print(f"(d) latency, reorder window {window:.0f} ms: no alert received")
            continue
        values.sort()
        p95, p99 = (values[min(len(values) - 1, int(q * len(values)))] for q in (0.95, 0.99))
        print(f"(d) demo_request -> became_hot, reorder window {window:.0f} ms, under 1,000 events/s: "
              f"n={len(values)} p50 {statistics.median(values):.0f} ms  p95 {p95:.0f} ms  "
              f"p99 {p99:.0f} ms  max {values[-1]:.0f} ms (goal p99 <= 100 ms)")
    print(f"logs: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
