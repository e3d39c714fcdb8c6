"""The Faust transport Leadflow's worker uses: Faust's aiokafka transport with two changes.

1. **The fetch wait.** Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` fixed. A
   broker may hold a fetch that long when little data is waiting (Tansu holds about half of it
   even when data is ready), which puts up to 1.5 s between an event and its alert. The worker
   consumer's fetch wait comes from the broker profile instead.
2. **No records dropped after a rebalance.** Faust's fetcher (``Consumer._drain_messages``)
   remembers, per partition, the offset of the last record it handed to the streams (its *read
   offset*) and silently drops any later-fetched record below it. A revocation clears those read
   offsets, but the fetcher may be awaiting the hand-over of one record at that moment: when the
   rebalance stops the flow, the await returns and the fetcher stores that record's offset again,
   after the clearing. The partition then resumes from its committed offset, below the stale read
   offset, and every record in between is dropped without a log line above ``dev``; its offsets are
   then committed past (Faust's check for a hole at the head needs a committed offset, which the
   revocation cleared too) or the partition's commits stall. Either way those events are never
   applied. (A CI run of the two-worker test once ended with 2 of 3,336 events never processed
   and both workers idle; this race, read from faust-streaming's source, explains it; it did not
   recur in isolated runs, which is why ``tests/integration/streaming/test_rebalance.py``
   rebalances mid-burst.) The consumer below clears the read offsets of the partitions it is
   assigned before Faust starts handing their records over, so the first record after a
   rebalance is always accepted.
3. **The group membership, for fencing.** The worker consumer's group coordinator is handed to
   the transport's :class:`~pipeline.streaming.membership.Membership` (when it has one) as the
   consumer starts: the worker's writes check it (a frozen-and-thawed worker must not write).
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

from pipeline.streaming.membership import Membership


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(transport, "fetch_max_wait_ms", None)
        if wait is not None:
            # Read by AIOKafkaConsumer.start() when it builds its fetcher.
            consumer._fetch_max_wait_ms = wait
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        membership = getattr(self.transport, "membership", None)
        coordinator = getattr(self._consumer, "_coordinator", None)
        if membership is not None and coordinator is not None and hasattr(coordinator, "_do_heartbeat"):
            membership.attach(coordinator)  # a group coordinator (not aiokafka's NoGroupCoordinator)


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        """Forget the read offsets of the assigned partitions (a stale one, stored by the fetcher
        after the revocation cleared them, would drop every record below it: see the module
        docstring), then let Faust assign (its table recovery seeks set them anew)."""
        forget_read_offsets(self, assigned)
        await super().on_partitions_assigned(assigned, generation_id)


def forget_read_offsets(consumer: Any, partitions: set[Any]) -> None:
    """Clear Faust's read offsets of ``partitions`` (``None``: the next record is accepted)."""
    read_offsets = consumer._read_offset
    for tp in partitions:
        read_offsets.pop(tp, None)


class LeadflowTransport(faust_aiokafka.Transport):
    """aiokafka transport with a configurable worker fetch wait, no records dropped after a
    rebalance, and the group membership followed for fencing (module docstring)."""

    Consumer = _Consumer

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, membership: Membership | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.membership = membership
