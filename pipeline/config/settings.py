"""Worker configuration from ``LEADFLOW_*`` environment variables.

Every setting has a production default for Apache Kafka; the broker profile
(:mod:`pipeline.config.profiles`) changes only what the embedded test/demo broker needs. Variables
are parsed by :class:`~pipeline.config.env.EnvReader`; a bad value raises :class:`SettingsError`
naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pipeline.config.env import EnvReader, SettingsError
from pipeline.config.profiles import BROKER_PROFILES, BrokerProfile
from pipeline.config.security import KafkaSecurity, security_from_env

__all__ = ["BROKER_PROFILES", "BrokerProfile", "Settings", "SettingsError", "from_env"]

#: Profile fields an explicit ``Settings.client`` mapping may override.
_PROFILE_FIELDS = frozenset(f.name for f in fields(BrokerProfile)) - {"name"}
#: MiB (Settings.rocksdb_write_buffer_mb)
DEFAULT_ROCKSDB_WRITE_BUFFER_MB = 16


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a worker needs; see docs/operations.md, "Configuration"."""

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
    # The wall-clock sweep's watermark: it fires only what is due up to now - allowed_lateness, so
    # an event that arrives up to this many seconds after it happened is applied before any
    # cooling it would have prevented (the replay result). 300 s: email providers post their
    # webhooks in batches (every few seconds to a minute) and retry failed posts within minutes;
    # shop integrations export orders every few minutes. Costs: cooling and response_overdue
    # fire up to this much after their deadline.
    allowed_lateness: float = 300.0
    reorder_window: float = 0.05  # seconds: a contact's events arriving this close are applied in time order
    ingest_batch: int = 2000  # input messages per ingest poll
    store: str = "auto"  # "rocksdb" (needs rocksdict), "memory", or "auto": rocksdb when installed
    data_dir: str = "./leadflow-data"
    #: RocksDB memtable size of each contact partition's database, in MiB (up to 3 of them per
    #: partition before writes stall). Every table write goes to the memtable, so a worker's memory
    #: grows with the events it applies until the memtable is flushed to disk at this size:
    #: partitions x 3 x this bounds it (Faust's own default is 64 MiB; 16 is Kafka Streams').
    rocksdb_write_buffer_mb: int = DEFAULT_ROCKSDB_WRITE_BUFFER_MB
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    metrics: bool = True  # False: the hot path updates no Prometheus metric (overhead measurement)
    replication_factor: int | None = None
    #: ``min.insync.replicas`` of the topics Leadflow creates (None: 2 with 3+ replicas, else 1).
    min_insync_replicas: int | None = None
    # Publish each changed contact's snapshot to lead.contacts (once per contact per batch): the
    # current state for the history sink and for downstream tools.
    contact_snapshots: bool = True
    db_url: str | None = None  # the history database of `leadflow sink` (LEADFLOW_DB)
    sink_batch: int = 1000  # records per database transaction of the history sink
    #: Explicit overrides of broker profile fields (e.g. ``{"fetch_max_wait_ms": 50}``).
    client: Mapping[str, Any] = field(default_factory=dict)
    #: TLS / SASL of every Kafka client (LEADFLOW_KAFKA_SECURITY_PROTOCOL, ...: pipeline/config/security.py)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @property
    def broker(self) -> BrokerProfile:
        """The chosen broker profile, with explicit settings applied over it."""
        try:
            profile = BROKER_PROFILES[self.profile]
        except KeyError:
            raise SettingsError(
                f"unknown broker profile {self.profile!r}: choose one of {', '.join(BROKER_PROFILES)}"
            ) from None
        changes = dict(self.client)
        unknown = sorted(changes.keys() - _PROFILE_FIELDS)
        if unknown:
            raise SettingsError(f"unknown broker client setting(s) {', '.join(unknown)}: "
                                f"use {', '.join(sorted(_PROFILE_FIELDS))}")
        if self.replication_factor is not None:
            changes["replication_factor"] = self.replication_factor
        return replace(profile, **changes) if changes else profile

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
            "LEADFLOW_ALLOWED_LATENESS": repr(self.allowed_lateness),
            "LEADFLOW_REORDER_WINDOW_MS": repr(self.reorder_window * 1000),
            "LEADFLOW_INGEST_BATCH": str(self.ingest_batch),
            "LEADFLOW_STORE": self.store,
            "LEADFLOW_DATA_DIR": self.data_dir,
            "LEADFLOW_ROCKSDB_WRITE_BUFFER_MB": str(self.rocksdb_write_buffer_mb),
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
        if self.min_insync_replicas is not None:
            env["LEADFLOW_MIN_INSYNC_REPLICAS"] = str(self.min_insync_replicas)
        env.update(self.security.to_env())
        return env


def from_env(env: Mapping[str, str] | None = None, /, **overrides: Any) -> Settings:
    """Settings from ``LEADFLOW_*`` environment variables; keyword overrides win."""
    read = EnvReader(env)
    settings = Settings(
        bootstrap=read.text("LEADFLOW_KAFKA", "localhost:9092"),
        profile=read.choice("LEADFLOW_BROKER_PROFILE", tuple(BROKER_PROFILES), "kafka"),
        topic_prefix=read.text("LEADFLOW_TOPIC_PREFIX", ""),
        partitions=read.integer("LEADFLOW_PARTITIONS", 8, minimum=1),
        app_id=read.text("LEADFLOW_APP_ID", "leadflow"),
        model=read.text("LEADFLOW_MODEL"),
        sweep_interval=read.duration("LEADFLOW_SWEEP_INTERVAL", 1.0),
        sweep_clock=read.choice("LEADFLOW_SWEEP_CLOCK", ("wall", "event"), "wall"),
        allowed_lateness=read.duration("LEADFLOW_ALLOWED_LATENESS", 300.0),
        reorder_window=read.duration("LEADFLOW_REORDER_WINDOW_MS", 50.0, unit="ms"),
        ingest_batch=read.integer("LEADFLOW_INGEST_BATCH", 2000),
        store=read.choice("LEADFLOW_STORE", ("auto", "memory", "rocksdb"), "auto"),
        data_dir=read.text("LEADFLOW_DATA_DIR", "./leadflow-data"),
        rocksdb_write_buffer_mb=read.integer("LEADFLOW_ROCKSDB_WRITE_BUFFER_MB", DEFAULT_ROCKSDB_WRITE_BUFFER_MB,
                                             minimum=1),
        web_port=read.port("LEADFLOW_WEB_PORT", 6066),
        web_bind=read.text("LEADFLOW_WEB_BIND", "127.0.0.1"),
        metrics=read.flag("LEADFLOW_METRICS", True),
        replication_factor=read.integer("LEADFLOW_REPLICATION_FACTOR", None, minimum=1),
        min_insync_replicas=read.integer("LEADFLOW_MIN_INSYNC_REPLICAS", None, minimum=1),
        contact_snapshots=read.flag("LEADFLOW_CONTACT_SNAPSHOTS", True),
        db_url=read.text("LEADFLOW_DB"),
        sink_batch=read.integer("LEADFLOW_SINK_BATCH", 1000, minimum=1),
        security=security_from_env(env),
    )
    return settings.with_(**overrides) if overrides else settings
