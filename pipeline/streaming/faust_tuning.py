"""A Faust transport whose worker consumer waits at most ``fetch_max_wait_ms`` per fetch.

Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` fixed. A broker may hold a fetch
that long when little data is waiting (Tansu holds about half of it even when data is ready),
which puts up to 1.5 s between an event and its alert. This transport keeps every other Faust
setting and only sets the fetch wait from the broker profile.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(transport, "fetch_max_wait_ms", None)
        if wait is not None:
            # Read by AIOKafkaConsumer.start() when it builds its fetcher.
            consumer._fetch_max_wait_ms = wait
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class LeadflowTransport(faust_aiokafka.Transport):
    """aiokafka transport with a configurable worker fetch wait."""

    Consumer = _Consumer

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms
