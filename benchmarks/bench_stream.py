"""Benchmark (not a test): the streaming pipeline against a raw consumer and a naive Faust agent,
plus alert latency, on ONE embedded broker in ONE run.

    make bench-stream                                   # = python benchmarks/bench_stream.py
    PYTHONPATH=. python benchmarks/bench_stream.py --quick
    PYTHONPATH=. python benchmarks/bench_stream.py --events 50000 --profile   # py-spy on (c)

(a) ceiling: raw aiokafka consume (manual assignment) + ``orjson.loads`` of an input topic of N
    single-event messages (realistic website envelopes of simulated journeys; key = contact);
(b) naive: a Faust agent written as a Faust user writes it (``async for value in stream``, decode,
    ``table[contact] = updated dict`` per event, memory store), in its own process, on a copy of
    the input (fresh topic, fresh app id), with the Tansu client settings and
    ``pipeline.faust_tuning.LeadflowTransport`` (20 ms fetch wait instead of Faust's fixed 1.5 s);
(c) pipeline: a ``leadflow worker`` process (memory store, event-time sweeps, 4 partitions) on the
    same input, until its ``/stats`` shows every event applied (applied + duplicates == N).

Group joins are excluded from all three (Tansu holds a first join for one session timeout): (a)
and (b) are timed from their first record to their last; (c) from the first ``/stats`` sample
showing input consumed (ingest and processor start together; the report shows how far apart)
to the sample showing all N applied.

(d) latency: a worker in wall-clock sweep mode; a kafka-python producer publishes ~1,000 page
views/s (paced) for ``--latency-seconds`` and, every 100 ms, a ``demo_request`` of
a fresh identified contact; a kafka-python consumer (manual assignment, 5 ms fetch wait) on
``lead.alerts`` notes when each probe's ``became_hot`` arrives. Latency = received - the moment
just before the probe was handed to the producer. Run for the reorder windows of
``--windows`` (default 50 ms = the worker's default ``LEADFLOW_REORDER_WINDOW_MS``, and 10 ms).

(e) metrics cost (``bench_metrics.py``, ``--metrics-rounds``); (f) identity merges (``--merges``);
(g) value segments: (c) with the default model against the same model without its ``[segments]``
    (``--segment-rounds``), each run on its own topics, group and changelog.

(h) steady load (``bench_steady.py``; ``--skip-steady`` to leave it out): a worker under a paced
    ``--steady-rate`` events/s (2,000) of page views and email events over ``--steady-contacts``
    (100,000) for ``--steady-seconds`` (600), with ``demo_request`` probes every 100 ms;
    ``demo_request`` -> ``became_hot`` latency (as (d)) and consumer lag every ``--steady-every``
    seconds, a plot (``--plot``, default ``out/bench-steady-<time>.html``) and a summary: p99 over
    the whole run and its second half, lag at start and end with its slope, the achieved rate.
    ``--quick`` makes it 30 s of 500 events/s over 10,000 contacts. The issue 12 run alone:

        PYTHONPATH=. python benchmarks/bench_stream.py --skip-throughput --skip-latency \
            --steady-rate 2000 --steady-contacts 100000 --steady-seconds 600

Every process started here (the broker, each worker) is stopped on any exit: an exception,
Ctrl-C, SIGTERM or SIGHUP.

``--profile`` samples the pipeline worker during (c) with py-spy (``pip install py-spy``) and
prints where its main thread spends its time; the raw stacks stay in the log directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import brokers
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from loadgen import AlertListener, cpu_seconds, stop_on_signals

from pipeline.config.profiles import BrokerProfile
from pipeline.config.settings import Settings, from_env
from pipeline.config.topics import TopicNames
from pipeline.devtools.demo import stop_process, wait_ready, worker_process
from pipeline.devtools.simulator import simulate
from pipeline.kafka.topics import ensure_topics
from pipeline.streaming.embedded_broker import die_with_parent, free_port

PARTITIONS = 4
PROBE_INTERVAL = 0.1  # seconds between demo_request probes in (d)
WEBSITE = {"page_view", "form_submit", "signup", "content_download", "demo_request", "trial_start",
           "offer_claimed", "event_attended", "add_to_cart", "checkout_start", "membership_joined",
           "review_submitted"}

def naive_agent_code(profile: BrokerProfile) -> str:
    """The naive agent's script, with the client settings of the broker's profile."""
    return f'''
import os, time, faust, orjson
from pipeline.streaming.faust_tuning import LeadflowTransport
bootstrap, topic = os.environ["NAIVE_BOOTSTRAP"], os.environ["NAIVE_TOPIC"]
total = int(os.environ["NAIVE_TOTAL"])
app = faust.App(os.environ["NAIVE_APP"], broker=f"kafka://{{bootstrap}}", store="memory://",
                topic_partitions={PARTITIONS}, topic_replication_factor=1,
                broker_session_timeout={profile.session_timeout_ms / 1000},
                broker_heartbeat_interval={profile.heartbeat_interval_ms / 1000},
                broker_rebalance_timeout={profile.rebalance_timeout_ms / 1000},
                consumer_auto_offset_reset="earliest", web_enabled=False,
                producer_max_batch_size=int(os.environ["NAIVE_BATCH_BYTES"]))
app.transport = LeadflowTransport(app.conf.broker_consumer, app, fetch_max_wait_ms={profile.fetch_max_wait_ms})
source = app.topic(topic, value_serializer="raw")
contacts = app.Table("naive-contacts", default=dict)
seen = [0, 0.0]

@app.agent(source)
async def naive(stream):
    async for value in stream:
        event = orjson.loads(value)
        key = event.get("contact_id") or "anon:" + event["anonymous_id"]
        state = dict(contacts[key])
        state["events"] = state.get("events", 0) + 1
        state["last_event"] = event["event_type"]
        state["last_seen"] = event["occurred_at"]
        contacts[key] = state
        seen[0] += 1
        if seen[0] == 1:
            seen[1] = time.perf_counter()
        if seen[0] == total:  # Faust sends stdout to its log: hand the figure over in a file
            with open(os.environ["NAIVE_RESULT"], "w") as out:
                out.write(f"{{total - 1}} {{time.perf_counter() - seen[1]:.6f}}")

app.main()
'''


# ---------------------------------------------------------------------------------------- input


def make_events(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) pairs: website events of simulated journeys, one JSON envelope each.

    Rounds of the simulator get their own contact and event ids (so every event is distinct and
    valid) and are moved into the past (no ``future_timestamp`` dead letters)."""
    out: list[tuple[bytes, bytes]] = []
    seed = 1
    now = datetime.now(UTC)
    while len(out) < count:
        events = [e for e in simulate(contacts=max(200, count // 4), seed=seed, span_days=365)
                  if e["event_type"] in WEBSITE]
        latest = max(datetime.fromisoformat(e["occurred_at"]) for e in events)
        shift = (now - timedelta(days=1)) - latest
        tag = f"r{seed}-"
        for event in events:
            for name in ("contact_id", "anonymous_id", "referred_by"):
                if name in event:
                    event[name] = tag + event[name]
            event["event_id"] = tag + event["event_id"]
            moved = datetime.fromisoformat(event["occurred_at"]) + shift
            event["occurred_at"] = moved.strftime("%Y-%m-%dT%H:%M:%SZ")
            key = event.get("contact_id") or f"anon:{event['anonymous_id']}"
            out.append((key.encode(), orjson.dumps(event)))
        seed += 1
    return out[:count]


def make_identity_events(count: int, merging: float, seed: int = 11) -> tuple[list[tuple[bytes, bytes]], int]:
    """``count`` website events over contacts of 8 events each; a ``merging`` share of the contacts
    browse anonymously for their first 4 events and then identify (the 5th event carries both ids:
    an identity merge, across partitions for most). With ``merging=0`` the same contacts send the
    same events identified throughout. Returns the messages and the table keys they will fill."""
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(days=2)
    kinds = ["page_view", "page_view", "content_download", "page_view", "form_submit", "add_to_cart",
             "page_view", "checkout_start"]
    out: list[tuple[bytes, bytes]] = []
    keys = 0
    person = 0
    while len(out) < count:
        person += 1
        contact, device = f"m{seed}-c{person}", f"m{seed}-v{person}"
        merges = rng.random() < merging
        keys += 2 if merges else 1
        start = now - timedelta(days=rng.uniform(0, 60))
        for i, kind in enumerate(kinds):
            event: dict[str, Any] = {
                "event_id": f"{contact}-{i}", "event_type": kind,
                "occurred_at": (start + timedelta(minutes=7 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "properties": {"url": "https://shop.example/pricing", "page_category": "pricing"} if kind == "page_view"
                else {"form_id": "contact"} if kind == "form_submit" else {},
            }
            if i == 0:
                event["properties"].update(utm_source="facebook", utm_medium="social", utm_campaign="spring")
            if merges and i < 4:
                event["anonymous_id"] = device
            elif merges:
                event.update(contact_id=contact, anonymous_id=device)
            else:
                event["contact_id"] = contact
            key = event.get("contact_id") or f"anon:{device}"
            out.append((key.encode(), orjson.dumps(event)))
    return out[:count], keys


def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        admin.close()


def fill(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Publish like a busy producer (aiokafka, batched: kafka-python's producer manages only about
    7,000 messages/s here); returns messages/s. Every reader here counts to a known total, never
    to the reported end offset (which Tansu gets wrong after multi-record batches)."""
    from aiokafka import AIOKafkaProducer

    async def publish() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                    max_batch_size=512 * 1024)
        await producer.start()
        try:
            started = time.perf_counter()
            pending = [await producer.send(topic, value=value, key=key) for key, value in messages]
            await asyncio.gather(*pending)
            return len(messages) / (time.perf_counter() - started)
        finally:
            await producer.stop()

    return asyncio.run(publish())


# ------------------------------------------------------------------------------ CPU accounting


@dataclass
class Measured:
    rate: float
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)  # CPU cores used while timed, by process
    duplicates: int = 0  # (c)-style runs: events the processor recognised as duplicates
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- (a) raw ceiling


async def _raw(bootstrap: str, topic: str, total: int, fetch_wait_ms: int) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_wait_ms,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, 0.0
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                if seen == 0:
                    started = time.perf_counter()  # the clock starts with the first fetch
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
        return seen, time.perf_counter() - started
    finally:
        await consumer.stop()


def raw_ceiling(bootstrap: str, topic: str, total: int, broker_pid: int | None, fetch_wait_ms: int,
                passes: int = 3) -> Measured:
    """Best of ``passes`` (each well under a second at 100,000 events: the noise of this shared
    machine would dominate a single pass)."""
    best: Measured | None = None
    for _ in range(passes):
        cpu0, own0, wall0 = cpu_seconds(broker_pid), time.process_time(), time.perf_counter()
        count, seconds = asyncio.run(_raw(bootstrap, topic, total, fetch_wait_ms))
        wall = time.perf_counter() - wall0
        measured = Measured(count / seconds, seconds, {"reader": (time.process_time() - own0) / wall,
                                                       "broker": (cpu_seconds(broker_pid) - cpu0) / wall})
        if best is None or measured.rate > best.rate:
            best = measured
    assert best is not None
    return best


# ---------------------------------------------------------------------------- (b) naive agent


def naive_agent(bootstrap: str, topic: str, total: int, workdir: Path, batch_bytes: int,
                stack: contextlib.ExitStack, broker_pid: int | None, profile: Path | None,
                broker_profile: BrokerProfile) -> Measured:
    script = workdir / f"naive_agent-{broker_profile.name}.py"
    script.write_text(naive_agent_code(broker_profile))
    result = workdir / f"naive-{broker_profile.name}.result"  # one per broker: never a stale figure
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), NAIVE_BOOTSTRAP=bootstrap,
               NAIVE_TOPIC=topic, NAIVE_APP=f"naive-{os.getpid()}-{int(time.time())}", NAIVE_TOTAL=str(total),
               NAIVE_RESULT=str(result), NAIVE_BATCH_BYTES=str(batch_bytes))
    log = open(workdir / f"naive-{broker_profile.name}.log", "wb")  # noqa: SIM115 - closed with the stack
    stack.callback(log.close)
    process = subprocess.Popen(
        [sys.executable, str(script), "worker", "-l", "warn", "--without-web"],
        env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=die_with_parent,
    )
    try:
        spying = py_spy(process.pid, profile) if profile is not None else contextlib.nullcontext()
        with spying:  # (its startup is sampled too: a few percent of the samples)
            return _naive_result(process, result, workdir, broker_pid)
    finally:
        stop_process(process)


def _naive_result(process: subprocess.Popen[bytes], result: Path, workdir: Path, broker_pid: int | None) -> Measured:
    deadline = time.monotonic() + 900
    samples: list[tuple[float, float, float]] = []
    while not result.exists() or not result.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the naive agent gave no result; see the naive-*.log in {workdir}")
        samples.append((time.perf_counter(), cpu_seconds(process.pid), cpu_seconds(broker_pid)))
        time.sleep(0.2)
    count, seconds = result.read_text().split()
    rate = int(count) / float(seconds)
    # CPU over the processing interval (the last `seconds` before now; joins excluded)
    end = (time.perf_counter(), cpu_seconds(process.pid), cpu_seconds(broker_pid))
    start = next((s for s in samples if s[0] >= end[0] - float(seconds)), samples[0] if samples else end)
    wall = max(end[0] - start[0], 1e-9)
    cpu = {"agent": (end[1] - start[1]) / wall, "broker": (end[2] - start[2]) / wall}
    return Measured(rate, float(seconds), cpu)


# ---------------------------------------------------------------------------- (c) the pipeline


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:  # not ready yet (503 with a JSON report), or not our server yet
        try:
            return exc.code, orjson.loads(exc.read() or b"{}")
        except orjson.JSONDecodeError:
            return exc.code, {}
    except OSError:
        return 0, {}


def _progress(report: dict[str, Any]) -> tuple[int, int, int]:
    """(input messages consumed, events applied or recognised as duplicates, dead-lettered)."""
    processor, ingest = report["processor"], report["ingest"]
    consumed = sum(int(family["messages"]) for family in ingest.values())
    dead = sum(sum(family["dead_lettered"].values()) for family in ingest.values())
    return consumed, int(processor["applied"]) + int(processor["duplicates"]), dead


@contextlib.contextmanager
def py_spy(pid: int, out: Path) -> Iterator[None]:
    """py-spy recording of ``pid`` (active samples only) while the block runs."""
    command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate", "200",
               "--nonblocking", "--threads", "--format", "raw", "--output", str(out)]
    with open(out.with_suffix(".log"), "wb") as log:
        spy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=die_with_parent)
    try:
        yield
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                spy.wait(20)
            except subprocess.TimeoutExpired:
                stop_process(spy)


def pipeline_rate(settings: Settings, total: int, contacts: int, workdir: Path, broker_pid: int | None,
                  profile: Path | None) -> Measured:
    """Timed from the first /stats sample showing input consumed to the first showing every event
    applied *and* every contact's state written (the processor counts an event as applied before
    it publishes the outputs and writes the changelog; the table holds a contact once written)."""
    with worker_process(settings, workdir / "pipeline-worker.log") as process, contextlib.ExitStack() as spying:
        port, deadline = settings.web_port, time.monotonic() + 900
        ready_at: float | None = None
        first: tuple[float, int, float, float] | None = None  # time, done, worker cpu, broker cpu
        at_ready: tuple[int, int] = (0, 0)
        applied_at: float | None = None
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the worker exited with code {process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("the pipeline did not apply every event within 15 minutes")
            now = time.perf_counter()
            status, report = _get(port, "/stats")
            if status != 200:
                time.sleep(0.05)
                continue
            consumed, done, dead = _progress(report)
            if ready_at is None and _get(port, "/readyz")[0] == 200:
                ready_at, at_ready = now, (consumed, done)
            if first is None and consumed > 0:
                first = (now, done + dead, cpu_seconds(process.pid), cpu_seconds(broker_pid))
                if profile is not None:  # sample the timed interval only
                    spying.enter_context(py_spy(process.pid, profile))
            if first is not None and applied_at is None and done + dead >= total:
                applied_at = now
            written = int(report["processor"]["contacts_in_table"])
            if first is not None and applied_at is not None and written >= contacts:
                seconds = now - first[0]
                cpu = {"worker": (cpu_seconds(process.pid) - first[2]) / seconds,
                       "broker": (cpu_seconds(broker_pid) - first[3]) / seconds}
                measured = Measured((total - first[1]) / seconds, seconds, cpu,
                                    duplicates=int(report["processor"]["duplicates"]))
                measured.notes.append(
                    f"all applied after {applied_at - first[0]:.2f} s, all {contacts:,} states written after "
                    f"{seconds:.2f} s (rate = {total - first[1]:,} events / {seconds:.2f} s)")
                if ready_at is not None:
                    measured.notes.append(
                        f"clock started at the first sample with input consumed ({first[0] - ready_at:+.2f} s from "
                        f"/readyz turning ready; at that sample {at_ready[0]:,} consumed, {at_ready[1]:,} applied)")
                measured.notes.append(
                    f"{report['processor']['batches']:,} processor batches, "
                    f"{report['processor']['contacts_in_table']:,} contacts, "
                    f"{report['processor']['transitions']:,} transitions, {report['processor']['alerts']:,} alerts, "
                    f"{dead} dead-lettered")
                return measured
            time.sleep(0.05)


def identity_cost(base: Settings, events: int, share: float, rounds: int, workdir: Path,
                  broker_pid: int | None) -> list[str]:
    """(f): the pipeline rate with ``share`` of the contacts merging, against none, alternating runs
    on fresh topics of the same broker; the medians and their ratio."""
    rates: dict[str, list[float]] = {"none": [], "merging": []}
    for round_ in range(rounds):
        for side, fraction in (("none", 0.0), ("merging", share)):
            messages, keys = make_identity_events(events, fraction)
            run = f"{base.app_id}-f{round_}{side[0]}"
            settings = base.with_(app_id=run, topic_prefix=f"{run}.", web_port=free_port(),
                                  data_dir=str(workdir / f"data-{run}"))
            ensure_topics(settings)
            fill(settings.bootstrap, TopicNames.of(settings).inputs["website"], messages)
            measured = pipeline_rate(settings, len(messages), keys, workdir, broker_pid, None)
            rates[side].append(measured.rate)
            print(f"(f) {side:<8} round {round_ + 1}: {measured.rate:,.0f} events/s", flush=True)
    none, merging = statistics.median(rates["none"]), statistics.median(rates["merging"])
    return [
        f"(f) identity merges ({events:,} events, contacts of 8 events, {share:.0%} of them merging; "
        f"median of {rounds} alternating runs each)",
        f"    no merges:   {none:>10,.0f} events/s   runs {[round(r) for r in rates['none']]}",
        f"    {share:.0%} merging: {merging:>10,.0f} events/s   runs {[round(r) for r in rates['merging']]}",
        f"    ratio merging / none: {merging / none:.3f}",
    ]


def segments_cost(base: Settings, messages: list[tuple[bytes, bytes]], rounds: int, workdir: Path,
                  broker_pid: int | None) -> list[str]:
    """(g): the pipeline rate with the default model against the same model without its
    ``[segments]`` (value segments, issue 14), alternating runs on fresh topics; medians and ratio."""
    from importlib import resources

    text = resources.files("pipeline.state_machine").joinpath("models", "default.toml").read_text(encoding="utf-8")
    stripped = text[: text.index("[segments]")] + text[text.index("# Advances") :]  # comments in between
    plain = workdir / "default-without-segments.toml"
    plain.write_text(stripped, encoding="utf-8")
    rates: dict[str, list[float]] = {"without": [], "with": []}
    contacts = len({key for key, _ in messages})
    runs: set[str] = set()
    for round_ in range(rounds):
        for side, model in (("without", str(plain)), ("with", None)):
            # The whole side in the name: "-g0w" for both sides once made the second run of a round
            # reuse the first one's topics, group and changelog (its input then held every event
            # twice, the second copy all duplicates of states it recovered, and it "ran" 3-8x faster).
            run = f"{base.app_id}-g{round_}-{side}"
            assert run not in runs, run
            runs.add(run)
            settings = base.with_(app_id=run, topic_prefix=f"{run}.", web_port=free_port(),
                                  data_dir=str(workdir / f"data-{run}"), model=model)
            ensure_topics(settings)
            fill(settings.bootstrap, TopicNames.of(settings).inputs["website"], messages)
            measured = pipeline_rate(settings, len(messages), contacts, workdir, broker_pid, None)
            rates[side].append(measured.rate)
            print(f"(g) {side:<7} segments, round {round_ + 1}: {measured.rate:,.0f} events/s "
                  f"({measured.duplicates:,} duplicates)", flush=True)
    without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
    return [
        f"(g) value segments ({len(messages):,} events of the (c) mix; median of {rounds} alternating runs each)",
        f"    default model without [segments]: {without:>10,.0f} events/s",
        f"    default model (with [segments]):  {with_:>10,.0f} events/s",
        f"    ratio with / without: {with_ / without:.3f}",
    ]


def summarize_profile(path: Path, seconds: float, top: int = 16) -> list[str]:
    """Busy share per thread and the hottest frames of a py-spy raw (collapsed) file."""
    if not path.exists():
        return [f"no profile at {path} (is py-spy installed next to {sys.executable}?)"]
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = main = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        threads[thread.split(": ", 1)[-1]] += count
        if not frames or "MainThread" not in thread:
            continue
        main += count
        own[frames[-1]] += count
        for frame in {_function(frame) for frame in frames}:
            inclusive[frame] += count
        areas[_area(frames)] += count
    total = sum(threads.values())
    if not main:
        return ["empty profile"]
    lines = [f"py-spy, 200 Hz over {seconds:.1f} s: busy share per thread: "
             + ", ".join(f"{name} {n / 200 / seconds:.0%}" for name, n in threads.most_common(4))
             + f" ({total} samples)"]
    lines.append("main thread by area (leaf attributed to the nearest known caller): "
                 + ", ".join(f"{a} {n / main:.0%}" for a, n in areas.most_common(9)))
    lines.append("main thread, hottest frames (self):")
    lines += [f"  {n / main:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("main thread, inclusive by function (below the event loop):")
    picked = [(frame, n) for frame, n in inclusive.most_common() if n < 0.6 * main]
    lines += [f"  {n / main:6.1%}  {frame}" for frame, n in picked[:top]]
    return lines


_AREAS = (("state_machine", "engine"), ("pipeline/contracts", "contracts"), ("pipeline/consumers", "consumers"),
          ("pipeline/app.py", "app wiring"), ("aiokafka", "aiokafka"), ("kafka/", "kafka-python"),
          ("faust/", "faust"), ("mode/", "mode"))


def _function(frame: str) -> str:
    """``name (file:line)`` without the line."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if name else frame


def _area(frames: list[str]) -> str:
    """Area of a stack: the nearest frame (from the leaf up) in a known package."""
    for frame in reversed(frames):
        where = frame[frame.rfind("(") + 1:]
        if frame.startswith("BaseEventLoop._run_once"):
            return "event loop (select, dispatch)"
        for marker, name in _AREAS:
            if marker in where:
                return name
    return "other"


# ------------------------------------------------------------------------------- (d) latency


@dataclass
class Latency:
    window_ms: float
    sent: int
    values: list[float]  # milliseconds per probe; math.inf = no alert within the drain time
    background: int
    applied_at_end: int
    notes: list[str] = field(default_factory=list)

    def pct(self, q: float) -> float:
        ordered = sorted(self.values)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency(base: Settings, seconds: float, workdir: Path, window_ms: float, rate: float, drain: float) -> Latency:
    tag = f"lat{window_ms:g}".replace(".", "_")
    settings = base.with_(reorder_window=window_ms / 1000, sweep_clock="wall", app_id=f"{base.app_id}-{tag}",
                          web_port=free_port(), topic_prefix=f"{base.topic_prefix}{tag}.",
                          data_dir=str(workdir / f"data-{tag}"))
    ensure_topics(settings)
    names = TopicNames.of(settings)
    with worker_process(settings, workdir / f"latency-{tag}.log") as process:
        wait_ready(settings.web_port, process)
        listener = AlertListener(settings.bootstrap, names.alerts, PARTITIONS)
        listener.start_positioned()
        received = listener.received
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=0,
                                 batch_size=settings.broker.producer_batch_bytes)
        sent: dict[str, float] = {}
        topic = names.inputs["website"]
        try:
            started, n, probes = time.perf_counter(), 0, 0
            while time.perf_counter() - started < seconds:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                if probes * PROBE_INTERVAL <= (n / rate if rate > 0 else math.inf):
                    probes += 1  # every 100 ms: a demo_request of a fresh identified contact
                    contact = f"probe-{tag}-{probes}"
                    probe = {"event_id": f"{contact}-1", "event_type": "demo_request", "contact_id": contact,
                             "occurred_at": stamp, "properties": {}}
                    value = orjson.dumps(probe)
                    sent[contact] = time.perf_counter()
                    producer.send(topic, value=value, key=contact.encode())
                else:
                    n += 1
                    contact = f"bg-{tag}-{n % 5000}"
                    background = {"event_id": f"bg-{tag}-{n}", "event_type": "page_view", "contact_id": contact,
                                  "occurred_at": stamp, "properties": {"url": "https://shop.example/pricing"}}
                    producer.send(topic, value=orjson.dumps(background), key=contact.encode())
                due = min(n / rate if rate > 0 else math.inf, probes * PROBE_INTERVAL)
                ahead = due - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
            producer.flush()
            load_seconds = time.perf_counter() - started
            _, report = _get(settings.web_port, "/stats")
            applied_at_end = _progress(report)[1] if report else -1
            until = time.perf_counter() + drain
            while time.perf_counter() < until and not set(sent) <= set(received):
                time.sleep(0.05)
        finally:
            producer.close()
            listener.stop()
        result = Latency(window_ms, len(sent),
                         [(received[c] - t) * 1000 if c in received else math.inf for c, t in sent.items()],
                         n, applied_at_end)
        result.notes.append(f"{n:,} events in {load_seconds:.1f} s ({n / load_seconds:,.0f}/s); applied when the "
                            f"load stopped: {applied_at_end:,} ({applied_at_end / load_seconds:,.0f}/s); "
                            f"inf = no alert {drain:g} s after the load stopped")
        return result


# ------------------------------------------------------------------------------------- report


def table(kind: str, measured: tuple[Measured, Measured, Measured] | None, lats: list[Latency], events: int,
          naive_batching: str) -> str:
    def cpu(m: Measured) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in m.cpu.items())

    rows = [f"=== bench-stream: results on {brokers.describe(kind)}, 127.0.0.1 ==="]
    if measured is not None:
        rows += throughput_rows(*measured, events, naive_batching, cpu)
    if lats:
        rows += latency_rows(lats)
    return "\n".join(rows)


def throughput_rows(ceiling: Measured, naive: Measured, pipeline: Measured, events: int, naive_batching: str,
                    cpu: Any) -> list[str]:
    rows = [
        f"input: {events:,} single-event JSON messages (website envelopes), {PARTITIONS} partitions",
        "",
        f"{'measurement':<58}{'events/s':>12}{'seconds':>9}   CPU cores while timed",
        f"{'(a) ceiling: aiokafka consume + orjson.loads, best of 3':<58}{ceiling.rate:>12,.0f}"
        f"{ceiling.seconds:>9.2f}   "
        f"{cpu(ceiling)}",
        f"{'(b) naive Faust agent (table write per event, ' + naive_batching + ')':<58}"
        f"{naive.rate:>12,.0f}{naive.seconds:>9.2f}   {cpu(naive)}",
        f"{'(c) leadflow worker (ingest + processor + outputs)':<58}{pipeline.rate:>12,.0f}"
        f"{pipeline.seconds:>9.2f}   {cpu(pipeline)}",
        "",
        f"pipeline / naive   = {pipeline.rate / naive.rate:6.2f}x   (issue 12 goal >= 20x: "
        f"{'met' if pipeline.rate >= 20 * naive.rate else 'NOT met'})",
        f"pipeline / ceiling = {pipeline.rate / ceiling.rate:6.3f}x   (issue 12 goal >= 0.20x: "
        f"{'met' if pipeline.rate >= 0.20 * ceiling.rate else 'NOT met'})",
    ]
    rows += [f"  (c) {note}" for note in pipeline.notes]
    return rows


def latency_rows(lats: list[Latency]) -> list[str]:
    rows = ["", "(d) demo_request -> became_hot received, under a paced background load (goal p99 <= 100 ms)",
             f"{'reorder window':<16}{'probes':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"]
    for lat in lats:
        got = f"{sum(v != math.inf for v in lat.values)}/{lat.sent}"
        if lat.values:
            rows.append(f"{lat.window_ms:>6g} ms{'':<8}{got:>10}{lat.pct(0.5):>9.0f}{lat.pct(0.95):>9.0f}"
                        f"{lat.pct(0.99):>9.0f}{max(lat.values):>9.0f}  "
                        f"{'met' if lat.pct(0.99) <= 100 else 'NOT met'}")
        else:
            rows.append(f"{lat.window_ms:>6g} ms{'':<8}{got:>10}   no probe sent")
        rows += [f"{'':<18}{note}" for note in lat.notes]
    return rows


@dataclass
class BrokerRun:
    """Everything one broker's part of the run measured."""

    kind: str
    events: int
    startup_seconds: float | None = None
    measured: tuple[Measured, Measured, Measured] | None = None
    overhead: Any = None
    segments: list[str] = field(default_factory=list)
    merges: list[str] = field(default_factory=list)
    lats: list[Latency] = field(default_factory=list)
    steady: Any = None  # bench_steady.Steady
    steady_rows: list[str] = field(default_factory=list)
    profiles: tuple[Path, Path] | None = None  # (pipeline, naive) py-spy files


def bench_on(kind: str, args: argparse.Namespace, messages: list[tuple[bytes, bytes]], windows: list[float],
             workdir: Path, plot: Path) -> BrokerRun:
    """The whole benchmark on one fresh broker of ``kind``; stops it however this ends."""
    result = BrokerRun(kind, len(messages))
    with contextlib.ExitStack() as stack:
        broker = brokers.start(kind, workdir / f"broker-{kind}", stack)
        result.startup_seconds = getattr(broker, "startup_seconds", None)
        broker_pid = broker.pid
        print(f"--- {brokers.describe(kind)} at {broker.bootstrap} (pid {broker_pid}) ---", flush=True)
        profile = brokers.profile(kind)
        run = f"b{os.getpid()}{kind[0]}"
        settings = from_env({}, bootstrap=broker.bootstrap, profile=kind, partitions=PARTITIONS,
                            replication_factor=broker.replication_factor,
                            app_id=f"{run}-pipeline", topic_prefix=f"{run}.", sweep_clock="event",
                            store="memory", web_port=free_port(), data_dir=str(workdir / f"data-{kind}"))
        ensure_topics(settings)
        names = TopicNames.of(settings)
        if not args.skip_throughput:
            naive_topic = settings.topic("naive.website")
            create_topics(broker.bootstrap, [naive_topic])
            for topic in (names.inputs["website"], naive_topic):
                speed = fill(broker.bootstrap, topic, messages)
                print(f"filled {topic}: {len(messages):,} messages at {speed:,.0f}/s", flush=True)

            ceiling = raw_ceiling(broker.bootstrap, names.inputs["website"], len(messages), broker_pid,
                                  profile.fetch_max_wait_ms)
            print(f"(a) raw aiokafka consume + decode: {ceiling.rate:,.0f} events/s", flush=True)
            batch = profile.producer_batch_bytes if args.naive_changelog == "batched" else 1
            naive_profile = workdir / f"naive-{kind}.pyspy.txt" if args.profile else None
            naive = naive_agent(broker.bootstrap, naive_topic, len(messages), workdir, batch, stack, broker_pid,
                                naive_profile, profile)
            print(f"(b) naive Faust agent:             {naive.rate:,.0f} events/s", flush=True)
            spied = workdir / f"pipeline-{kind}.pyspy.txt" if args.profile else None
            contacts = len({key for key, _ in messages})
            pipeline = pipeline_rate(settings, len(messages), contacts, workdir, broker_pid, spied)
            print(f"(c) leadflow pipeline:             {pipeline.rate:,.0f} events/s", flush=True)
            result.measured = (ceiling, naive, pipeline)
            if spied is not None and naive_profile is not None:
                result.profiles = (spied, naive_profile)
            if args.metrics_rounds > 0:  # (e): benchmarks/bench_metrics.py
                import bench_metrics

                result.overhead = bench_metrics.compare(settings.with_(app_id=f"{run}-metrics"), messages,
                                                        workdir, broker_pid, args.metrics_rounds)
        if args.segment_rounds > 0 and messages:
            result.segments = segments_cost(settings, messages, args.segment_rounds, workdir, broker_pid)
            print("\n".join(result.segments), flush=True)
        if args.merges > 0:
            result.merges = identity_cost(settings, args.events, args.merges, args.merge_rounds, workdir, broker_pid)
            print("\n".join(result.merges), flush=True)
        if not args.skip_latency:
            for window in windows:
                lat = latency(settings, args.latency_seconds, workdir, window, args.latency_rate, args.drain)
                result.lats.append(lat)
                p99 = f"p99 {lat.pct(0.99):.0f} ms" if lat.values else "no probe"
                print(f"(d) latency, reorder window {window:g} ms: {lat.sent} probes, {p99}", flush=True)
        if not args.skip_steady:
            import bench_steady

            print(f"(h) steady load: {args.steady_rate:,.0f} events/s over {args.steady_contacts:,} contacts for "
                  f"{args.steady_seconds:g} s", flush=True)
            steady_settings = (settings if args.steady_window is None
                               else settings.with_(reorder_window=args.steady_window / 1000))
            result.steady = bench_steady.run(steady_settings, args.steady_rate, args.steady_contacts,
                                             args.steady_seconds, args.steady_every, args.drain, plot, workdir,
                                             broker_pid, label=brokers.describe(kind))
            result.steady_rows = bench_steady.summary(result.steady)
    return result


def report(result: BrokerRun, args: argparse.Namespace) -> list[str]:
    naming = (f"{brokers.profile(result.kind).producer_batch_bytes // 1024} KiB batches"
              if args.naive_changelog == "batched" else "1-record batches")
    rows = ["", table(result.kind, result.measured, result.lats, result.events, naming)]
    if result.overhead is not None:
        rows += result.overhead.rows()
    rows += result.merges + result.segments + result.steady_rows
    if result.profiles is not None and result.measured is not None:
        rows.append(f"\n--- profile of (c), the leadflow worker, over the timed interval ({result.kind}) ---")
        rows += summarize_profile(result.profiles[0], result.measured[2].seconds)
        rows.append(f"\n--- profile of (b), the naive agent (startup included) ({result.kind}) ---")
        rows += summarize_profile(result.profiles[1], result.measured[1].seconds, top=10)
    return rows


def comparison(tansu: BrokerRun, kafka: BrokerRun) -> list[str]:
    """Apache Kafka against Tansu, figure by figure, as ratios taken in this one run."""
    import bench_steady

    rows = ["", "=== bench-stream: Apache Kafka against Tansu, this run (ratio = kafka / tansu) ===",
            f"{'figure':<52}{'tansu':>12}{'kafka':>12}{'ratio':>9}"]

    def row(name: str, a: float, b: float, unit: str = "") -> None:
        ratio = f"{b / a:9.2f}" if a and math.isfinite(a) and math.isfinite(b) else f"{'-':>9}"
        rows.append(f"{name:<52}{a:>12,.0f}{b:>12,.0f}{ratio}{unit}")

    if tansu.measured and kafka.measured:
        for label, index in (("(a) ceiling, events/s", 0), ("(b) naive Faust agent, events/s", 1),
                             ("(c) leadflow worker, events/s", 2)):
            row(label, tansu.measured[index].rate, kafka.measured[index].rate)
        row("(c) broker CPU while timed, cores x 100", 100 * tansu.measured[2].cpu.get("broker", 0.0),
            100 * kafka.measured[2].cpu.get("broker", 0.0))
        for name, run in (("tansu", tansu), ("kafka", kafka)):
            assert run.measured is not None
            ceiling, naive, pipeline = run.measured
            rows.append(f"    {name}: pipeline / naive {pipeline.rate / naive.rate:.2f}x, "
                        f"pipeline / ceiling {pipeline.rate / ceiling.rate:.3f}x")
    for a, b in zip(tansu.lats, kafka.lats, strict=False):
        if a.values and b.values:
            row(f"(d) p99 ms, reorder window {a.window_ms:g} ms", a.pct(0.99), b.pct(0.99))
            row(f"(d) p50 ms, reorder window {a.window_ms:g} ms", a.pct(0.5), b.pct(0.5))
    if tansu.steady is not None and kafka.steady is not None:
        for label, since in (("(h) p99 ms, whole run", 0.0), ("(h) p99 ms, last half", None)):
            values = [run.steady.latencies(since=run.steady.load_seconds / 2 if since is None else since)
                      for run in (tansu, kafka)]
            row(label, bench_steady.percentile(values[0], 0.99), bench_steady.percentile(values[1], 0.99))
        waves = [bench_steady.waves(run.steady) for run in (tansu, kafka)]
        rows.append(f"{'(h) delivery waves (intervals with an alert >= 1 s old)':<52}"
                    f"{waves[0][0]:>6} of {waves[0][1]:<3}{waves[1][0]:>8} of {waves[1][1]:<3}")
        for label, key in (("(h) broker CPU, median interval, cores x 100", "broker_cpu"),
                           ("(h) worker CPU, median interval, cores x 100", "worker_cpu")):
            row(label, 100 * statistics.median(getattr(i, key) for i in tansu.steady.intervals),
                100 * statistics.median(getattr(i, key) for i in kafka.steady.intervals))
        row("(h) broker produce rtt p99 ms", bench_steady.percentile(tansu.steady.rtt, 0.99),
            bench_steady.percentile(kafka.steady.rtt, 0.99))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", choices=brokers.CHOICES, default="both",
                        help="the broker(s): both (default: Tansu, then Apache Kafka, in this run), tansu or kafka")
    parser.add_argument("--events", type=int, default=100_000, help="input messages for (a)-(c) (100,000)")
    parser.add_argument("--quick", action="store_true",
                        help="20,000 events, 8 s of latency load per window, a 30 s steady run of 500 events/s "
                             "over 10,000 contacts")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="background load per window (20)")
    parser.add_argument("--latency-rate", type=float, default=1000.0,
                        help="background page views/s besides the 10 probes/s (1,000; 0 = probes only)")
    parser.add_argument("--windows", default="50,10", help="reorder windows in ms for (d) (50,10)")
    parser.add_argument("--drain", type=float, default=15.0, help="seconds to wait for late alerts (15)")
    parser.add_argument("--naive-changelog", choices=("batched", "one-record"), default="batched",
                        help="naive agent's producer batching: the tansu profile's batches (512 KiB; default; "
                             "favours the naive agent) or one record per batch (Leadflow's changelog before issue 12)")
    parser.add_argument("--merges", type=float, default=0.0, metavar="SHARE",
                        help="(f) identity merges: pipeline rate with SHARE of the contacts merging an anonymous "
                             "history (e.g. 0.3) against the same events with none, alternating runs (0 = skip)")
    parser.add_argument("--merge-rounds", type=int, default=2, help="runs of each side for (f) (2)")
    parser.add_argument("--segment-rounds", type=int, default=1,
                        help="(g) value segments: runs of (c) with the default model and without its [segments] "
                             "(1; 0 = skip)")
    parser.add_argument("--steady-rate", type=float, default=2000.0,
                        help="(h) steady load: page views/email events per second (2,000)")
    parser.add_argument("--steady-contacts", type=int, default=100_000,
                        help="(h) distinct contacts the steady load draws from (100,000)")
    parser.add_argument("--steady-seconds", type=float, default=600.0, help="(h) length of the steady load (600)")
    parser.add_argument("--steady-every", type=float, default=10.0, help="(h) seconds per reported interval (10)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="(h) where the HTML plot of latency and lag goes (out/bench-steady-<time>.html)")
    parser.add_argument("--steady-window", type=float, default=None, metavar="MS",
                        help="(h) the worker's reorder window in ms (default: the worker's, 50)")
    parser.add_argument("--skip-steady", action="store_true", help="no steady-load run (h)")
    parser.add_argument("--skip-latency", action="store_true", help="no latency run (d)")
    parser.add_argument("--skip-throughput", action="store_true", help="no (a)-(c) (nor (e), (g))")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during (c)")
    parser.add_argument("--metrics-rounds", type=int, default=2,
                        help="(e) metrics overhead: runs of (c) with LEADFLOW_METRICS=1 and with 0 (2; 0 = skip)")
    args = parser.parse_args()
    if args.quick:
        args.events, args.latency_seconds = min(args.events, 20_000), min(args.latency_seconds, 8.0)
        args.steady_seconds, args.steady_rate = min(args.steady_seconds, 30.0), min(args.steady_rate, 500.0)
        args.steady_contacts = min(args.steady_contacts, 10_000)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    windows = [float(w) for w in args.windows.split(",") if w.strip()]
    stop_on_signals()  # Ctrl-C, SIGTERM, SIGHUP: the exit stack stops every worker and the broker
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-bench-stream-"))
    print(f"logs: {workdir}", flush=True)
    started = time.perf_counter()
    kinds = brokers.chosen(args.broker)
    runs: dict[str, BrokerRun] = {}
    try:
        messages = make_events(args.events) if not args.skip_throughput else []
        for kind in kinds:
            plot = args.plot or Path("out") / f"bench-steady-{stamp}-{kind}.html"
            if args.plot is not None and len(kinds) > 1:
                plot = args.plot.with_name(f"{args.plot.stem}-{kind}{args.plot.suffix}")
            runs[kind] = bench_on(kind, args, messages, windows, workdir, plot)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the worker and the broker...", file=sys.stderr)
        return 130
    for result in runs.values():
        print("\n".join(report(result, args)))
    if "tansu" in runs and "kafka" in runs:
        print("\n".join(comparison(runs["tansu"], runs["kafka"])))
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s; logs and profiles: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
