"""Worker configuration from environment variables, with broker profiles.

Every setting has a production default for Apache Kafka; the ``tansu`` profile changes only what
the embedded test/demo broker needs (short session timeouts, short fetch waits). Nothing else in
the code knows which broker it talks to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class SettingsError(ValueError):
    """An environment variable has a value Leadflow cannot use; the message names it."""


#: Broker-specific client settings. Only these differ between Apache Kafka and Tansu.
BROKER_PROFILES: dict[str, dict[str, Any]] = {
    "kafka": {
        "session_timeout_ms": 30_000,
        "heartbeat_interval_ms": 3_000,
        "rebalance_timeout_ms": 60_000,
        "fetch_max_wait_ms": 100,
        "replication_factor": 3,
        "producer_batch_bytes": 16_384,
        "changelog_batch_bytes": 16_384,
        "producer_idempotence": True,  # the collector's producer: no duplicates from its own retries
    },
    # Tansu (embedded broker for tests and the demo): the first group join waits one full session
    # timeout, and a fetch holds about half of fetch_max_wait_ms even when data is ready.
    # Tansu 0.6 reports a partition's end offset as (base offset of the last record batch + 1):
    # after a batch of several records the reported end is short, and a reader that stops at the
    # end offset (Faust's changelog recovery!) misses records. The changelog is therefore written
    # one record per batch; other topics batch normally and our readers never trust the end offset.
    "tansu": {
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
        "rebalance_timeout_ms": 6_000,
        "fetch_max_wait_ms": 20,
        "replication_factor": 1,
        "producer_batch_bytes": 16_384,
        "changelog_batch_bytes": 1,
        "producer_idempotence": False,  # Tansu 0.6 answers InitProducerId with an error
    },
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a worker needs; see the README's configuration table."""

    bootstrap: str = "localhost:9092"
    profile: str = "kafka"
    topic_prefix: str = ""
    partitions: int = 8
    app_id: str = "leadflow"
    model: str | None = None
    sweep_interval: float = 1.0  # seconds between cooling sweeps
    # "wall": a timer fires the cooling due by the wall clock (live traffic). "event": cooling follows
    # event time only (each partition's latest event, and `leadflow sweep --until`), for backfills
    # and demos of historical journeys.
    sweep_clock: str = "wall"
    reorder_window: float = 0.05  # seconds: a contact's events arriving this close are applied in time order
    ingest_batch: int = 2000  # input messages per ingest poll
    store: str = "auto"  # "rocksdb" (needs rocksdict), "memory", or "auto": rocksdb when installed
    data_dir: str = "./leadflow-data"
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    metrics: bool = True  # False: the hot path updates no Prometheus metric (overhead measurement)
    replication_factor: int | None = None
    # Publish each changed contact's snapshot to lead.contacts (once per contact per batch): the
    # current state for the history sink and for downstream tools.
    contact_snapshots: bool = True
    db_url: str | None = None  # the history database of `leadflow sink` (LEADFLOW_DB)
    sink_batch: int = 1000  # records per database transaction of the history sink
    client: Mapping[str, Any] = field(default_factory=dict)

    @property
    def broker(self) -> dict[str, Any]:
        """The profile's client settings, with explicit overrides applied."""
        merged = dict(BROKER_PROFILES[self.profile])
        merged.update(self.client)
        if self.replication_factor is not None:
            merged["replication_factor"] = self.replication_factor
        return merged

    @property
    def table_store(self) -> str:
        """The contact table's store: ``rocksdb`` or ``memory`` (``auto`` resolved)."""
        if self.store != "auto":
            return self.store
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            return "memory"
        return "rocksdb"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """These settings as ``LEADFLOW_*`` variables (for starting a worker process)."""
        env = {
            "LEADFLOW_KAFKA": self.bootstrap,
            "LEADFLOW_BROKER_PROFILE": self.profile,
            "LEADFLOW_TOPIC_PREFIX": self.topic_prefix,
            "LEADFLOW_PARTITIONS": str(self.partitions),
            "LEADFLOW_APP_ID": self.app_id,
            "LEADFLOW_SWEEP_INTERVAL": repr(self.sweep_interval),
            "LEADFLOW_SWEEP_CLOCK": self.sweep_clock,
            "LEADFLOW_REORDER_WINDOW_MS": repr(self.reorder_window * 1000),
            "LEADFLOW_INGEST_BATCH": str(self.ingest_batch),
            "LEADFLOW_STORE": self.store,
            "LEADFLOW_DATA_DIR": self.data_dir,
            "LEADFLOW_WEB_PORT": str(self.web_port),
            "LEADFLOW_WEB_BIND": self.web_bind,
            "LEADFLOW_METRICS": "1" if self.metrics else "0",
            "LEADFLOW_CONTACT_SNAPSHOTS": "1" if self.contact_snapshots else "0",
            "LEADFLOW_SINK_BATCH": str(self.sink_batch),
        }
        if self.db_url is not None:
            env["LEADFLOW_DB"] = self.db_url
        if self.model is not None:
            env["LEADFLOW_MODEL"] = self.model
        if self.replication_factor is not None:
            env["LEADFLOW_REPLICATION_FACTOR"] = str(self.replication_factor)
        return env


def _number(env: Mapping[str, str], name: str, kind: type, default: Any) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r} must not be negative")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r}: use 1/true/yes/on or 0/false/no/off")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise SettingsError(f"{name}={value!r}: choose one of {', '.join(allowed)}")
    return value


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``LEADFLOW_*`` environment variables; keyword overrides win."""
    env = os.environ if env is None else env
    settings = Settings(
        bootstrap=env.get("LEADFLOW_KAFKA") or "localhost:9092",
        profile=_choice(env, "LEADFLOW_BROKER_PROFILE", tuple(BROKER_PROFILES), "kafka"),
        topic_prefix=env.get("LEADFLOW_TOPIC_PREFIX", ""),
        partitions=_number(env, "LEADFLOW_PARTITIONS", int, 8),
        app_id=env.get("LEADFLOW_APP_ID") or "leadflow",
        model=env.get("LEADFLOW_MODEL") or None,
        sweep_interval=_number(env, "LEADFLOW_SWEEP_INTERVAL", float, 1.0),
        sweep_clock=_choice(env, "LEADFLOW_SWEEP_CLOCK", ("wall", "event"), "wall"),
        reorder_window=_number(env, "LEADFLOW_REORDER_WINDOW_MS", float, 50.0) / 1000.0,
        ingest_batch=_number(env, "LEADFLOW_INGEST_BATCH", int, 2000),
        store=_choice(env, "LEADFLOW_STORE", ("auto", "memory", "rocksdb"), "auto"),
        data_dir=env.get("LEADFLOW_DATA_DIR") or "./leadflow-data",
        web_port=_number(env, "LEADFLOW_WEB_PORT", int, 6066),
        web_bind=env.get("LEADFLOW_WEB_BIND") or "127.0.0.1",
        metrics=_flag(env, "LEADFLOW_METRICS", True),
        replication_factor=_number(env, "LEADFLOW_REPLICATION_FACTOR", int, None),
        contact_snapshots=_flag(env, "LEADFLOW_CONTACT_SNAPSHOTS", True),
        db_url=env.get("LEADFLOW_DB") or None,
        sink_batch=_number(env, "LEADFLOW_SINK_BATCH", int, 1000),
    )
    if settings.sink_batch < 1:
        raise SettingsError("LEADFLOW_SINK_BATCH must be at least 1")
    if settings.partitions < 1:
        raise SettingsError("LEADFLOW_PARTITIONS must be at least 1")
    return settings.with_(**overrides) if overrides else settings
