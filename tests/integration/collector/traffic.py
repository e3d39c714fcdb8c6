"""Collector traffic for outage tests: sender threads posting batches of new events, every answer
recorded by phase, and the check that a 202 is only ever given for an event that is in Kafka."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames

from .harness import Collector, envelope, read_records

RETRY_AFTER = 3
PUBLISH_TIMEOUT = 1.5


@dataclass
class Outcome:
    phase: str
    status: int
    event_ids: list[str]
    retry_after: str | None
    error_code: str | None


@dataclass
class Traffic:
    """``senders`` threads posting batches of 5 new events while ``running`` is set."""

    collector: Collector
    senders: int = 4
    phase: str = "start"
    outcomes: list[Outcome] = field(default_factory=list)
    running: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    inflight: int = 0

    def __post_init__(self) -> None:
        for n in range(self.senders):
            thread = threading.Thread(target=self._send_loop, name=f"sender-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _send_loop(self) -> None:
        while not self._done.is_set():
            if not self.running.wait(0.05):
                continue
            phase = self.phase
            with self._lock:
                ids = [f"{phase}-{next(self._ids)}" for _ in range(5)]
                self.inflight += 1
            body = orjson.dumps([envelope(i, contact_id=f"c-{i[-1]}") for i in ids])
            try:
                reply = self.collector.post("website", body)
                code = orjson.loads(reply.body).get("error_code") if reply.status != 202 else None
                outcome = Outcome(phase, reply.status, ids, reply.headers.get("retry-after"), code)
            except OSError as exc:  # never expected: the collector itself stays up
                outcome = Outcome(phase, -1, ids, None, repr(exc))
            with self._lock:
                self.outcomes.append(outcome)
                self.inflight -= 1

    def run_for(self, phase: str, seconds: float) -> None:
        self.phase = phase
        self.running.set()
        time.sleep(seconds)

    def pause(self) -> None:
        """Stop sending and wait until every request in flight has its answer."""
        self.running.clear()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.1)  # a sender between wait() and its increment shows up within this
            with self._lock:
                if self.inflight == 0:
                    return
        raise AssertionError("requests still in flight after 60 s")

    def stop(self) -> None:
        self.running.clear()
        self._done.set()
        for thread in self._threads:
            thread.join(60)

    def of(self, phase: str, status: int | None = None) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.phase == phase and (status is None or o.status == status)]

    def summary(self) -> str:
        """``phase: status×count`` for the test log (shown with -s or on failure)."""
        with self._lock:
            counts: dict[tuple[str, int], int] = {}
            for o in self.outcomes:
                counts[(o.phase, o.status)] = counts.get((o.phase, o.status), 0) + 1
        return ", ".join(f"{phase} {status}×{n}" for (phase, status), n in counts.items())

    def accepted_ids(self, phase: str | None = None) -> set[str]:
        with self._lock:
            return {i for o in self.outcomes if o.status == 202 and phase in (None, o.phase) for i in o.event_ids}


def assert_only_202_or_503(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        assert outcome.status in (202, 503), outcome
        if outcome.status == 503:
            assert outcome.retry_after == str(RETRY_AFTER) and outcome.error_code == "broker_unavailable", outcome


def topic_ids(settings: Settings) -> set[str]:
    topic = TopicNames.of(settings).inputs["website"]
    return {value["event_id"] for _, value in read_records(settings, topic, expect=0, quiet=1.0, timeout=60)}
