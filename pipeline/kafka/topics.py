"""Leadflow's topics on the cluster: what each needs, creating the missing ones, and what differs.

Every topic has a role (input, internal, output, snapshot, changelog) and the role says what it
needs on Apache Kafka: retention, ``cleanup.policy`` (``lead.contacts`` and the contact table's
changelog are compacted: only each contact's newest record must survive) and
``min.insync.replicas``. The replication factor and ``min.insync.replicas`` come from the settings
(``LEADFLOW_REPLICATION_FACTOR``, ``LEADFLOW_MIN_INSYNC_REPLICAS``); the embedded broker keeps
everything in memory and takes no topic configs.

:func:`check_replication` is the start-up check that a cluster has the brokers the replication
factor needs: on a one-broker development Kafka the ``kafka`` profile's default of 3 is one line
naming ``LEADFLOW_REPLICATION_FACTOR``, not a traceback from a client library.
:func:`topic_differences` reports existing topics whose settings are not what Leadflow needs (what
``leadflow topics`` prints; it never changes an existing topic).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipeline.config.settings import Settings
from pipeline.config.topics import CONTACTS_TABLE, TopicNames

DAY_MS = 86_400_000
#: Retention by topic role (Apache Kafka; the embedded broker keeps everything in memory).
RETENTION_MS = {"input": 7 * DAY_MS, "internal": 7 * DAY_MS, "output": 30 * DAY_MS}
#: A compacted topic keeps each key's newest record; older ones are removed once this old (so a
#: reader that is behind by less than an hour still sees every snapshot).
COMPACTION_LAG_MS = 60 * 60 * 1000


class TopicSettingsError(Exception):
    """The cluster cannot hold Leadflow's topics as configured; the message names the setting."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as Leadflow needs it."""

    name: str
    role: str  # input, internal, output, snapshot, changelog
    partitions: int
    replication_factor: int
    configs: dict[str, str]
    #: The partition count must be exactly ``partitions`` (contacts are routed by it).
    exact_partitions: bool


def min_insync_replicas(settings: Settings) -> int:
    """``LEADFLOW_MIN_INSYNC_REPLICAS``, else 2 with three or more replicas (one broker may be
    down and every acknowledged write is still on two), else 1."""
    if settings.min_insync_replicas is not None:
        return settings.min_insync_replicas
    return 2 if settings.broker.replication_factor >= 3 else 1


def role_configs(role: str, settings: Settings) -> dict[str, str]:
    """The topic configs of a role on Apache Kafka (none on a broker that takes none)."""
    if not settings.broker.topic_configs:
        return {}
    configs = {"min.insync.replicas": str(min_insync_replicas(settings))}
    if role in ("snapshot", "changelog"):
        configs.update({"cleanup.policy": "compact", "min.compaction.lag.ms": str(COMPACTION_LAG_MS)})
    else:
        configs.update({"cleanup.policy": "delete", "retention.ms": str(RETENTION_MS[role])})
    return configs


def changelog_topic(settings: Settings) -> str:
    """The contact table's changelog (created by Faust: ``<app id>-<table>-changelog``)."""
    return f"{settings.app_id}-{CONTACTS_TABLE}-changelog"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic ``leadflow topics`` creates, with what it needs."""
    names = TopicNames.of(settings)
    roles = {topic: "input" for topic in names.inputs.values()}
    roles.update({names.transitions: "output", names.alerts: "output", names.deadletter: "output"})
    roles[names.contact_events] = "internal"
    roles[names.contacts] = "snapshot"
    replication = settings.broker.replication_factor
    return [
        TopicSpec(
            topic,
            role,
            settings.partitions,
            replication,
            role_configs(role, settings),
            exact_partitions=role == "internal",
        )
        for topic, role in roles.items()
    ]


def _admin(settings: Settings, timeout: float = 30.0) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=settings.bootstrap,
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=int(timeout * 1000),
        **settings.security.kafka_python(),
    )


def check_replication(settings: Settings, admin: Any | None = None) -> None:
    """Raise :class:`TopicSettingsError` when the cluster has fewer brokers than the replication
    factor (or than ``min.insync.replicas``) needs."""
    own = admin is None
    admin = admin or _admin(settings)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
    finally:
        if own:
            admin.close()
    replication = settings.broker.replication_factor
    origin = "set" if settings.replication_factor is not None else f"the {settings.profile} profile's default"
    if replication > brokers:
        raise TopicSettingsError(
            f"LEADFLOW_REPLICATION_FACTOR is {replication} ({origin}) but the cluster at {settings.bootstrap} has "
            f"{brokers} broker{'s' if brokers != 1 else ''}: set LEADFLOW_REPLICATION_FACTOR={min(brokers, 3)}"
            + (" for a one-broker development Kafka" if brokers == 1 else "")
        )
    insync = min_insync_replicas(settings)
    if settings.broker.topic_configs and insync > replication:
        raise TopicSettingsError(
            f"LEADFLOW_MIN_INSYNC_REPLICAS is {insync} but the replication factor is {replication}: no write "
            f"could be acknowledged; set LEADFLOW_MIN_INSYNC_REPLICAS to at most {replication}"
        )


def check_partitions(settings: Settings, admin: Any | None = None) -> None:
    """Raise :class:`TopicSettingsError` when a topic that contacts are routed by (the internal
    contact events, the contact table's changelog) exists with another partition count than
    ``LEADFLOW_PARTITIONS``: a worker would route a contact to a partition that is not there."""
    own = admin is None
    admin = admin or _admin(settings)
    try:
        routed = [TopicNames.of(settings).contact_events, changelog_topic(settings)]
        existing = set(admin.list_topics())
        shapes, _ = _describe(admin, [name for name in routed if name in existing], with_configs=False)
    finally:
        if own:
            admin.close()
    for name, (partitions, _replicas) in shapes.items():
        if partitions != settings.partitions:
            raise TopicSettingsError(
                f"{name} has {partitions} partitions but LEADFLOW_PARTITIONS is {settings.partitions}: contacts "
                f"are routed by the partition count, so set LEADFLOW_PARTITIONS={partitions} (or use another "
                "LEADFLOW_TOPIC_PREFIX and LEADFLOW_APP_ID for a new pipeline)"
            )


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every Leadflow topic that does not exist yet; return the names created. Raises
    :class:`TopicSettingsError` when the cluster has too few brokers for the replication factor."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = _admin(settings, timeout)
    try:
        check_replication(settings, admin)
        existing = set(admin.list_topics())
        created = []
        for spec in topic_specs(settings):
            if spec.name in existing:
                continue
            topic = NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=spec.configs,
            )
            try:
                admin.create_topics([topic], timeout_ms=int(timeout * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        deadline = time.monotonic() + timeout
        while created and time.monotonic() < deadline:
            if set(created) <= set(admin.list_topics()):
                break
            time.sleep(0.1)
        check_partitions(settings, admin)
        return created
    finally:
        admin.close()


def _describe(
    admin: Any, topics: list[str], with_configs: bool = True
) -> tuple[dict[str, tuple[int, int]], dict[str, dict[str, str]]]:
    """``{topic: (partitions, replication factor)}`` and ``{topic: {config: value}}`` of ``topics``."""
    from kafka.admin import ConfigResource, ConfigResourceType

    shapes: dict[str, tuple[int, int]] = {}
    if not topics:
        return shapes, {}
    for described in admin.describe_topics(topics):
        if described.get("error_code"):
            continue
        partitions = described.get("partitions", [])
        replicas = min((len(p.get("replica_nodes", [])) for p in partitions), default=0)
        shapes[described["name"]] = (len(partitions), replicas)
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in shapes]
    configs: dict[str, dict[str, str]] = {}
    if resources and with_configs:
        found = admin.describe_configs(resources, config_filter="all")
        for per_type in found.values():
            for name, entries in per_type.items():
                configs[name] = {
                    key: str(entry.get("value") if isinstance(entry, dict) else entry) for key, entry in entries.items()
                }
    return shapes, configs


@dataclass(frozen=True, slots=True)
class TopicShape:
    """An existing topic as the cluster describes it."""

    partitions: int
    replicas: int  # the smallest replica count of its partitions
    configs: dict[str, str]


def describe_topics(settings: Settings, topics: list[str]) -> dict[str, TopicShape]:
    """The existing ones of ``topics``: partitions, replicas and every config value."""
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        shapes, configs = _describe(admin, [name for name in topics if name in existing])
    finally:
        admin.close()
    return {name: TopicShape(p, r, configs.get(name, {})) for name, (p, r) in shapes.items()}


def topic_differences(settings: Settings) -> list[str]:
    """What differs between the existing Leadflow topics (and the contact table's changelog) and
    what Leadflow needs, one line each, e.g. ``lead.contacts: cleanup.policy is delete, Leadflow
    needs compact``. Topics that do not exist are not reported (``ensure_topics`` creates them)."""
    specs = topic_specs(settings)
    changelog = changelog_topic(settings)
    specs.append(
        TopicSpec(
            changelog,
            "changelog",
            settings.partitions,
            settings.broker.replication_factor,
            role_configs("changelog", settings),
            exact_partitions=True,
        )
    )
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        wanted = [spec for spec in specs if spec.name in existing]
        shapes, configs = _describe(admin, [spec.name for spec in wanted])
    finally:
        admin.close()
    found: list[str] = []
    for spec in wanted:
        partitions, replicas = shapes.get(spec.name, (0, 0))
        if spec.exact_partitions and partitions != spec.partitions:
            found.append(
                f"{spec.name}: {partitions} partitions, Leadflow needs exactly {spec.partitions} "
                "(LEADFLOW_PARTITIONS; contacts are routed by the partition count)"
            )
        if replicas < spec.replication_factor:
            found.append(
                f"{spec.name}: replication factor {replicas}, Leadflow is configured for "
                f"{spec.replication_factor} (LEADFLOW_REPLICATION_FACTOR)"
            )
        if not settings.broker.topic_configs:
            continue
        have = configs.get(spec.name, {})
        policy = have.get("cleanup.policy", "delete")
        needed_policy = spec.configs["cleanup.policy"]
        if needed_policy == "compact" and "compact" not in policy:
            found.append(
                f"{spec.name}: cleanup.policy is {policy}, Leadflow needs compact "
                "(only each contact's newest record must be kept)"
            )
        insync = int(have.get("min.insync.replicas", "1") or 1)
        if insync < int(spec.configs["min.insync.replicas"]):
            found.append(
                f"{spec.name}: min.insync.replicas is {insync}, Leadflow is configured for "
                f"{spec.configs['min.insync.replicas']} (LEADFLOW_MIN_INSYNC_REPLICAS)"
            )
    return found
