"""A local contact store that belongs to its cluster, topic and model, or is rebuilt.

The RocksDB store of the contact table keeps, in each partition's database, the checkpoint (the
changelog offset the local data holds up to: set by recovery and after every batch's changelog
acknowledgements) and, in a file beside it (``<partition db>.identity.json``), what it was built
from: the cluster id the broker reports, the changelog topic and the model (``name@version``). On every
assignment of a partition (at start and at each rebalance), before Faust's changelog recovery
reads that checkpoint, :class:`CheckedRocksDBStore` compares them with what the worker sees now,
and discards the partition's database when they do not match:

* another cluster (a worker directory reused against a new broker),
* another changelog topic name, or a checkpoint at or beyond the changelog's end (the topic was
  deleted and recreated, or truncated: the local data holds states the changelog no longer has),
* another model (states are read through the model's stages and bands),
* no record at all in a database that holds data (written before this check existed).

A discarded partition is rebuilt from the changelog from its beginning, with a log line saying
why (``partition 3: local contact store discarded and rebuilt from the changelog: ...``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from faust.stores import STORES
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

log = logging.getLogger(__name__)

#: The suffix of the identity file beside each partition database (not inside it: Faust iterates
#: every key of the database as a table key).
IDENTITY_SUFFIX = ".identity.json"
#: The URL scheme of the checked store (``Settings.table_store`` rocksdb is served by it).
SCHEME = "leadflow-rocksdb"


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """What a partition's local data was built from."""

    cluster_id: str | None
    changelog_topic: str
    model: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> StoreIdentity | None:
        try:
            fields = json.loads(data)
            return cls(fields["cluster_id"], fields["changelog_topic"], fields["model"])
        except (ValueError, KeyError, TypeError):
            return None


def mismatch(stored: StoreIdentity | None, has_data: bool, checkpoint: int | None, current: StoreIdentity,
             highwater: int) -> str | None:
    """Why a partition's local data cannot be used (``None``: it can). ``highwater``: the
    changelog partition's end offset now; ``checkpoint``: the last changelog offset restored."""
    if stored is None:
        return "it has no record of the cluster, topic and model it was built from" if has_data else None
    if stored.cluster_id != current.cluster_id:
        return f"it was built from cluster {stored.cluster_id!r}, the broker is cluster {current.cluster_id!r}"
    if stored.changelog_topic != current.changelog_topic:
        return f"it was built from changelog {stored.changelog_topic!r}, this worker's is {current.changelog_topic!r}"
    if stored.model != current.model:
        return f"it was built by model {stored.model}, this worker runs {current.model}"
    if checkpoint is not None and checkpoint >= highwater:
        return (f"its checkpoint (changelog offset {checkpoint}) is at or beyond the changelog's end ({highwater}): "
                "the topic was recreated or truncated")
    return None


class CheckedRocksDBStore(RocksDBStore):
    """Faust's RocksDB store, checked against its cluster, topic and model on every assignment.

    ``expected`` (set by the worker's wiring before the app starts) returns the current
    identity; it may block (it asks the broker), so it runs in a thread."""

    expected: Callable[[], StoreIdentity] | None = None

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        await self.verify(tp for tp in newly_assigned if tp.topic == self.table.changelog_topic.get_topic_name())
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def verify(self, tps: Iterable[TP]) -> list[tuple[int, str]]:
        """Check (and discard where needed) the given changelog partitions; the discarded ones and why."""
        tps = sorted(tps)
        if not tps or self.expected is None:
            return []
        current = await asyncio.to_thread(self.expected)
        highwaters = await self.app.consumer.highwaters(*tps)
        discarded = []
        for tp in tps:
            path = self.identity_path(tp.partition)
            stored_raw = path.read_bytes() if path.exists() else None
            stored = StoreIdentity.decode(stored_raw) if stored_raw is not None else None
            has_data = stored_raw is not None or any(True for _ in _first_key(self._db_for_partition(tp.partition)))
            reason = mismatch(stored, has_data, self.persisted_offset(tp), current, int(highwaters.get(tp) or 0))
            if reason is not None:
                log.warning("partition %d: local contact store discarded and rebuilt from the changelog: %s",
                            tp.partition, reason)
                self._discard(tp.partition)
                discarded.append((tp.partition, reason))
            path.write_bytes(current.encode())
        return discarded

    def identity_path(self, partition: int) -> Path:
        db = self.partition_path(partition)
        return db.with_name(db.name + IDENTITY_SUFFIX)

    def _discard(self, partition: int) -> None:
        db = self._dbs.pop(partition, None)
        if db is not None:
            close = getattr(db, "close", None)
            if close is not None:
                close()
        shutil.rmtree(self.partition_path(partition), ignore_errors=True)


def _first_key(db: Any) -> Iterable[Any]:
    for key in db.keys():  # noqa: SIM118 (a RocksDB handle, not a dict)
        return [key]
    return []


STORES.data[SCHEME] = f"{__name__}:CheckedRocksDBStore"
