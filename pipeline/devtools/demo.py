"""``leadflow demo``: the whole pipeline live on one machine.

With no Kafka given it starts the embedded Kafka-protocol broker, creates the topics, starts a
worker process, and runs the journey simulator, which publishes realistic website, email and
purchase traffic (plus a few broken and duplicated messages) through kafka-python. Transitions and
``became_hot`` alerts are printed as they arrive; a summary ends the run. Ctrl-C stops everything
and leaves no process behind.

The simulated journeys span months, compressed into the run: the worker's clock is event time
(``LEADFLOW_SWEEP_CLOCK=event``), so contacts cool off as simulated time passes, and once every
event is in, a sweep up to the wall clock fires the cooling still due.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from pipeline.config.settings import Settings, from_env
from pipeline.config.topics import TopicNames
from pipeline.devtools.simulator import simulate, with_faults
from pipeline.kafka.tools import produce_lines, publish_sweep, tail
from pipeline.kafka.topics import ensure_topics
from pipeline.streaming.embedded_broker import die_with_parent, free_port

READY_TIMEOUT = 90.0
_COLORS = {"advance": "\033[32m", "regress": "\033[36m", "hot": "\033[1;31m", "dead": "\033[33m", "end": "\033[0m"}


def _paint(kind: str, text: str, color: bool) -> str:
    return f"{_COLORS[kind]}{text}{_COLORS['end']}" if color else text


def shifted_journeys(contacts: int, now: datetime) -> list[bytes]:
    """Simulated journeys moved in time so the latest event happens a minute ago."""
    events = simulate(contacts=contacts)
    latest = max(datetime.fromisoformat(e["occurred_at"]) for e in events)
    shift = (now - timedelta(minutes=1)) - latest
    for event in events:
        moved = datetime.fromisoformat(event["occurred_at"]) + shift
        event["occurred_at"] = moved.strftime("%Y-%m-%dT%H:%M:%SZ")
    return with_faults(events)


@contextlib.contextmanager
def worker_process(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``leadflow worker`` child process in its own session; always stopped on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(settings.to_env())
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", "--no-create-topics"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # even a SIGKILLed demo or test leaves no worker behind
        )
    try:
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Poll the worker's ``/readyz`` until it says ready; raise with the reasons otherwise."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {"problems": ["no answer yet"]}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                last = orjson.loads(response.read())
                if last.get("ready"):
                    return last
        except OSError as exc:
            body = getattr(exc, "read", None)
            if body is not None:
                with contextlib.suppress(Exception):
                    last = orjson.loads(body())
        time.sleep(0.5)
    raise TimeoutError(f"worker not ready after {timeout:.0f}s: {'; '.join(last.get('problems', []))}")


class _Listener(threading.Thread):
    """Tails one output topic into a queue until stopped."""

    def __init__(self, kind: str, topic: str, settings: Settings, out: queue.Queue[tuple[str, Any]]) -> None:
        super().__init__(daemon=True, name=f"tail-{kind}")
        self.kind, self.topic, self.settings, self.out = kind, topic, settings, out
        self.stop = threading.Event()

    def run(self) -> None:
        def emit(value: bytes) -> None:
            self.out.put((self.kind, orjson.loads(value)))

        tail(self.topic, self.settings, True, emit, keep_going=lambda: not self.stop.is_set())


def _describe(kind: str, record: dict[str, Any], color: bool) -> str:
    if kind == "alert" and record["type"] == "response_overdue":
        return _paint(
            "hot",
            f"OVERDUE {record['contact_id']:<7} nobody called by {record['respond_by']}: escalate "
            f"(waited {record['waited_seconds'] / 60:.0f} min)",
            color,
        )
    if kind == "alert" and record["type"] == "alert_answered":
        late = f"{record['late_seconds'] / 60:.0f} min LATE" if record["late_seconds"] else "in time"
        return _paint(
            "advance",
            f"CALLED {record['contact_id']:<8} by {record.get('rep_id') or 'sales'} after "
            f"{record['response_seconds'] / 60:.0f} min ({late})",
            color,
        )
    if kind == "alert":
        return _paint(
            "hot",
            f"ALERT  {record['contact_id']:<8} became hot at {record['stage']} (score {record['score']:.0f}) "
            f"- call before {record['respond_by']}",
            color,
        )
    if kind == "dead":
        return _paint("dead", f"DEAD   {record['error_code']}: {record['error_detail'][:90]}", color)
    if record["kind"] == "identity":
        return _paint(
            "advance",
            f"MERGE  {record['from']} -> {record['to']}: one person ({record['reason']}; score "
            f"{record['score']:.0f}, {record['stage']}, {record['temperature']}) {record['occurred_at'][:10]}",
            color,
        )
    arrow = f"{record['from']} -> {record['to']}"
    return _paint(
        record["direction"],
        f"{record['kind']:<11} {record['contact_id']:<8} {arrow:<20} {record['reason']:<28} "
        f"{record['occurred_at'][:10]}",
        color,
    )


def run_demo(args: argparse.Namespace) -> int:
    """Run the live demo; returns the exit code."""
    color = sys.stdout.isatty()
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-demo-"))
    stack = contextlib.ExitStack()
    seen: Counter[str] = Counter()
    stages: dict[str, str] = {}
    merged_at: dict[str, str] = {}  # contact -> when it last merged an anonymous history
    try:
        if args.kafka:
            settings = from_env(bootstrap=args.kafka)
        else:
            from pipeline.streaming.embedded_broker import EmbeddedBroker

            broker = stack.enter_context(EmbeddedBroker(log_dir=workdir))
            print(f"embedded broker (Tansu) on {broker.bootstrap}", flush=True)
            settings = from_env(bootstrap=broker.bootstrap, profile="tansu")
        settings = settings.with_(
            partitions=4,
            app_id=f"leadflow-demo-{os.getpid()}-{int(time.time())}",
            web_port=free_port(),
            sweep_clock="event",
            reorder_window=0.2,
            data_dir=str(workdir / "data"),
        )
        ensure_topics(settings)
        worker = stack.enter_context(worker_process(settings, workdir / "worker.log"))
        print("starting a worker (the first consumer-group join takes a few seconds)...", flush=True)
        wait_ready(settings.web_port, worker)
        names = TopicNames.of(settings)
        records: queue.Queue[tuple[str, Any]] = queue.Queue()
        listeners = [
            _Listener("transition", names.transitions, settings, records),
            _Listener("alert", names.alerts, settings, records),
            _Listener("dead", names.deadletter, settings, records),
        ]
        for listener in listeners:
            listener.start()
        lines = shifted_journeys(args.contacts, datetime.now(UTC))
        print(f"publishing {len(lines)} events of {args.contacts} simulated journeys at {args.rate:.0f}/s\n",
              flush=True)
        done = threading.Event()
        def publish() -> None:
            try:
                produce_lines(((f"sim:{i}", line) for i, line in enumerate(lines, 1)), settings, pace=args.rate)
            finally:
                done.set()

        publisher = threading.Thread(target=publish, daemon=True, name="simulator")
        publisher.start()
        last_record = time.monotonic()
        swept = False
        while True:
            try:
                kind, record = records.get(timeout=0.2)
            except queue.Empty:
                if done.is_set() and time.monotonic() - last_record > 4.0:
                    if swept:
                        break
                    # Journeys are in; bring event time up to now: contacts that went quiet cool off.
                    print("\nall events in: sweeping the event-time clock up to now...", flush=True)
                    publish_sweep(settings, time.time_ns() // 1000)
                    swept, last_record = True, time.monotonic()
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with code {worker.returncode}") from None
                continue
            last_record = time.monotonic()
            if kind == "alert" and record["type"] != "became_hot":
                seen[record["type"]] += 1  # speed to lead: escalations and answers
            else:
                seen[kind if kind != "transition" else f"{record['kind']} {record['direction']}"] += 1
            if kind == "transition" and record["kind"] == "stage":
                stages[record["contact_id"]] = record["to"]
            if kind == "transition" and record["kind"] == "identity":
                merged_at[record["contact_id"]] = record["occurred_at"]
            hot = kind == "alert" and record["type"] == "became_hot"
            if hot and merged_at.get(record["contact_id"]) == record["occurred_at"]:
                seen["alert after a merge"] += 1  # hot because of the anonymous history it merged
            if not args.quiet:
                print(_describe(kind, record, color), flush=True)
        for listener in listeners:
            listener.stop.set()
        _summary(seen, stages, args.contacts)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the worker and the broker...", file=sys.stderr)
        _summary(seen, stages, args.contacts)
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        log = workdir / "worker.log"
        tail_text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        print(f"leadflow demo: {exc}\n--- worker log (last lines) ---\n{tail_text}", file=sys.stderr)
        return 1
    finally:
        stack.close()


def _summary(seen: Counter[str], stages: dict[str, str], contacts: int) -> None:
    print("\n=== summary ===")
    alerts = ("alert", "dead", "alert after a merge", "response_overdue", "alert_answered")
    for key in sorted(k for k in seen if k not in alerts):
        print(f"  transitions {key:<22} {seen[key]}")
    print(f"  became_hot alerts                  {seen['alert']} ({seen['alert after a merge']} at the moment an "
          "anonymous history was merged)")
    print(f"  speed to lead                      {seen['alert_answered']} answered by sales, "
          f"{seen['response_overdue']} escalated at respond_by (response_overdue)")
    print(f"  dead letters                       {seen['dead']}")
    reached = Counter(stages.values())
    print(f"  contacts simulated                 {contacts}; latest stage of those that moved: "
          + ", ".join(f"{stage} {n}" for stage, n in reached.most_common()))
