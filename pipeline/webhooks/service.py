"""The ``leadflow webhooks`` process: one deliverer per subscription, a dead-letter producer, and
the web port with ``/metrics``, ``/healthz``, ``/readyz`` and ``/stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames
from pipeline.kafka.options import producer_options
from pipeline.kafka.retry import Retry, retry_until
from pipeline.ops.web import add_service_routes
from pipeline.webhooks.config import WebhooksConfig
from pipeline.webhooks.deliverer import SubscriptionDeliverer

log = logging.getLogger(__name__)


def ensure_deadletter_topic(settings: Settings) -> bool:
    """Create ``webhooks.deadletter`` when it does not exist (30 days' retention on Apache Kafka)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from pipeline.kafka.topics import role_configs

    topic = TopicNames.of(settings).webhooks_deadletter
    profile = settings.broker
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id=f"{settings.app_id}-webhooks-admin",
                             **settings.security.kafka_python())
    try:
        if topic in set(admin.list_topics()):
            return False
        configs = role_configs("output", settings)
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                [NewTopic(topic, settings.partitions, profile.replication_factor, topic_configs=configs)]
            )
        return True
    finally:
        admin.close()


class KafkaDeadLetters:
    """Publishes dead letters with acknowledgement from all in-sync replicas."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = TopicNames.of(settings).webhooks_deadletter
        self.producer: AIOKafkaProducer | None = None

    async def start(self, stopping: asyncio.Event) -> None:
        """Connect, retrying with backoff while Kafka cannot be reached (until ``stopping``)."""

        async def connect() -> AIOKafkaProducer:
            producer = AIOKafkaProducer(
                **producer_options(self.settings, f"{self.settings.app_id}-webhooks", linger_ms=5)
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            return producer

        def failed(exc: BaseException, delay: float) -> None:
            log.warning("webhooks: cannot reach Kafka at %s (%s); retrying in %.1fs", self.settings.bootstrap, exc,
                        delay)

        self.producer = await retry_until(connect, Retry(stopping=stopping), on_failure=failed)

    async def publish(self, value: bytes, key: bytes | None) -> None:
        if self.producer is None:
            raise RuntimeError("the dead-letter producer is not connected yet")
        await self.producer.send_and_wait(self.topic, value, key=key)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


class WebhookService:
    """Every subscription's deliverer plus the HTTP endpoints, until :meth:`stop`."""

    def __init__(self, config: WebhooksConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        names = TopicNames.of(settings)
        self.deadletters = KafkaDeadLetters(settings)
        topics = {"alerts": names.alerts, "transitions": names.transitions}
        self.deliverers = [
            SubscriptionDeliverer(subscription, settings, topics, self.deadletters)
            for subscription in config.subscriptions
        ]
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def problems(self) -> list[str]:
        problems = []
        if self.deadletters.producer is None:
            problems.append(f"dead-letter producer not connected to {self.settings.bootstrap}")
        for deliverer in self.deliverers:
            name = deliverer.subscription.name
            if deliverer.failure:
                problems.append(f"subscription {name}: consumer failing: {deliverer.failure}")
            elif not deliverer.joined:
                problems.append(f"subscription {name}: not in its consumer group yet")
        return problems

    def stats(self) -> dict[str, Any]:
        return {
            deliverer.subscription.name: {
                "group_id": deliverer.subscription.group_id(self.settings.app_id),
                "topics": sorted(deliverer.kinds),
                "joined": deliverer.joined,
                "delivered": deliverer.stats.delivered,
                "dead_lettered": deliverer.stats.dead_lettered,
                "failed_attempts": deliverer.stats.failed_attempts,
                "filtered": deliverer.stats.filtered,
            }
            for deliverer in self.deliverers
        }

    def web_app(self) -> web.Application:
        def readiness() -> dict[str, Any]:
            problems = self.problems()
            return {"ready": not problems, "problems": problems, "subscriptions": self.stats()}

        app = web.Application()
        add_service_routes(app, readiness, self.stats)
        return app

    async def run(self, bind: str, port: int) -> None:
        runner = web.AppRunner(self.web_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, bind, port).start()
        log.info("webhooks: %d subscriptions; /metrics, /healthz, /readyz on http://%s:%d",
                 len(self.deliverers), bind, port)
        try:
            await self.deadletters.start(self._stopping)
            tasks = [asyncio.create_task(d.run(), name=f"webhooks-{d.subscription.name}") for d in self.deliverers]
            await self._stopping.wait()
            for deliverer in self.deliverers:
                deliverer.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self.deadletters.stop()
            await runner.cleanup()


async def serve(config: WebhooksConfig, settings: Settings, bind: str, port: int) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly (offsets of finished deliveries committed)."""
    service = WebhookService(config, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    await service.run(bind, port)
