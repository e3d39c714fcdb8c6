"""A worker's health and metrics endpoints: ``/readyz`` with a broker probe, ``/metrics``.

``/healthz`` says the process is alive (the event loop answers). ``/readyz`` says whether the
worker can do its job and, when not, what is missing, in a JSON body: the broker answers a metadata
request, the contact processor has partitions, the contact table finished its changelog recovery,
every ingest consumer has partitions. ``/metrics`` is the Prometheus text format of the default
registry (:mod:`pipeline.ops.metrics`); the gauges that describe the worker's present state (consumer
lag, contacts per stage and temperature, pending cooling) are set just before each scrape, so
nothing on the hot path maintains them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from aiokafka.client import AIOKafkaClient
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from pipeline.config.settings import Settings
from pipeline.ops import metrics
from pipeline.streaming.worker_handle import Worker

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0  # seconds a broker metadata request may take before the broker counts as unreachable
PROBE_CACHE = 1.0  # seconds a probe result is reused (readiness and scrapes can come often)


class BrokerProbe:
    """Asks the broker for cluster metadata, through one small client of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AIOKafkaClient | None = None
        self._lock = asyncio.Lock()
        self._last: tuple[float, str | None] | None = None

    async def problem(self) -> str | None:
        """None when the broker answered a metadata request, else why not."""
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < PROBE_CACHE:
                return self._last[1]
            result = await self._probe()
            self._last = (time.monotonic(), result)
            return result

    async def _probe(self) -> str | None:
        try:
            if self._client is None:
                client = AIOKafkaClient(
                    bootstrap_servers=self.settings.bootstrap,
                    client_id=f"{self.settings.app_id}-health",
                    request_timeout_ms=int(PROBE_TIMEOUT * 1000),
                    **self.settings.security.aiokafka(),
                )
                try:
                    await asyncio.wait_for(client.bootstrap(), PROBE_TIMEOUT)
                except BaseException:
                    await client.close()
                    raise
                self._client = client
            else:
                await asyncio.wait_for(self._client.fetch_all_metadata(), PROBE_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"no answer within {PROBE_TIMEOUT:.0f} s" if isinstance(exc, TimeoutError) else str(exc)
            return f"broker: {self.settings.bootstrap} unreachable ({reason or type(exc).__name__})"
        return None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


async def readiness(worker: Worker, probe: BrokerProbe) -> dict[str, Any]:
    """The worker's readiness report: ``{"ready": bool, "problems": [...], "checks": {...}}``."""
    broker = await probe.problem()
    local = worker.readiness()
    problems = ([broker] if broker is not None else []) + local["problems"]
    checks = {"broker_reachable": broker is None, **local["checks"]}
    return {"ready": not problems, "problems": problems, "checks": checks}


async def refresh_gauges(worker: Worker) -> None:
    """Set the present-state gauges from the worker (called right before a scrape)."""
    lags: list[tuple[str, int, int]] = []
    for consumer in worker.ingest:
        lags.extend(await consumer.lag())
    lags.extend(processor_lag(worker))
    metrics.CONSUMER_LAG.clear()  # partitions move between workers: drop what this one gave away
    for topic, partition, behind in lags:
        metrics.CONSUMER_LAG.labels(topic, str(partition)).set(behind)

    runtime = worker.runtime
    metrics.PARTITIONS_OWNED.set(len(runtime.partitions))
    metrics.COOLING_PENDING.set(sum(len(p.deadlines) for p in runtime.partitions.values()))
    if not worker.settings.metrics:
        return
    tally: Counter[tuple[int, int]] = Counter()
    for owned in runtime.partitions.values():
        if owned.tally is not None:
            tally.update(owned.tally)
    model = worker.model
    for stage_index, stage in enumerate(model.stages):  # every combination, 0 when empty: stable series
        for band_index, band in enumerate(model.bands):
            metrics.CONTACTS.labels(stage, band.name).set(tally.get((stage_index, band_index), 0))


def processor_lag(worker: Worker) -> list[tuple[str, int, int]]:
    """Lag of the contact processor on the internal topic: highwater minus committed offset."""
    app, topic = worker.app, worker.topics.contact_events
    out: list[tuple[str, int, int]] = []
    try:
        consumer = app.consumer
        assigned = [tp for tp in app.assignor.assigned_actives() if tp.topic == topic]
    except Exception:  # not started yet
        return out
    # Faust keeps the committed offsets (read at assignment, updated at each commit) in
    # `_committed_offset`; None there means nothing committed yet, i.e. offset 0.
    committed = getattr(consumer, "_committed_offset", {})
    for tp in assigned:
        try:
            end = consumer.highwater(tp)
        except Exception:  # assignment changing under us
            continue
        if end is None:
            continue
        out.append((tp.topic, tp.partition, max(0, end - (committed.get(tp) or 0))))
    return out


def install(worker: Worker) -> BrokerProbe:
    """Add ``/readyz`` and ``/metrics`` to the worker's web server; returns the broker probe
    (closed when the app shuts down)."""
    app = worker.app
    probe = BrokerProbe(worker.settings)

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        report = await readiness(worker, probe)
        return web.json(report, status=200 if report["ready"] else 503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        try:
            await refresh_gauges(worker)
        except Exception:  # a scrape must still answer with what is known
            log.exception("metrics: could not refresh the worker's gauges")
        return web.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_probe(app: Any, **kwargs: Any) -> None:
        await probe.close()

    return probe
