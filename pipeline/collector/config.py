"""Configuration of the HTTP collector (``LEADFLOW_COLLECTOR_*`` variables).

The broker connection (bootstrap servers, broker profile, topic prefix) comes from the shared
:class:`~pipeline.config.settings.Settings`; this module holds what only the collector needs: where
it listens, who may write to which source, which browser origins may call it, and how it treats
client addresses. Variables are read with :class:`~pipeline.config.env.EnvReader`; every problem
raises :class:`CollectorConfigError` (a :class:`~pipeline.config.env.SettingsError`) naming the
variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.collector.ratelimit import Limit, parse_limit
from pipeline.config.env import EnvReader, SettingsError
from pipeline.state_machine import SOURCES

#: Largest request body, in bytes (the input topics' batch limit).
MAX_BODY_BYTES = 1_048_576
#: Most events in one request (a JSON array or NDJSON lines).
MAX_EVENTS_PER_REQUEST = 500
#: What the collector does with the client's address: keep it, cut it to its network, or drop it.
IP_MODES = ("truncate", "full", "drop")
#: Requests per second per write key of a limited source (a whole site's visitors share it).
DEFAULT_KEY_LIMIT = Limit(rate=500.0, burst=1000.0)
#: Requests per second per client address (a visitor sends a few per page; an office behind one
#: NAT address has many visitors).
DEFAULT_IP_LIMIT = Limit(rate=20.0, burst=100.0)


class CollectorConfigError(SettingsError):
    """A ``LEADFLOW_COLLECTOR_*`` variable has a value the collector cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Everything the collector process needs besides the broker settings; see docs/collector.md."""

    bind: str = "127.0.0.1"
    port: int = 8080
    #: Accepted write keys by source. A source without keys accepts no request (401).
    write_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Browser origins (``scheme://host[:port]``) allowed to call the events endpoint.
    cors_origins: frozenset[str] = frozenset()
    ip_mode: str = "truncate"
    #: Reverse proxies in front of the collector whose ``X-Forwarded-For`` entries are trusted.
    trusted_proxies: int = 0
    #: Seconds to wait for the broker's acknowledgement before answering 503.
    publish_timeout: float = 10.0
    #: ``Retry-After`` of a 503, in seconds.
    retry_after: int = 2
    #: Event requests handled at once; more are answered 503 at once (bounded memory).
    max_inflight: int = 256
    linger_ms: int = 0
    access_log: bool = False
    #: Abuse limits (token buckets, 429 + Retry-After) per write key and per client address, for
    #: the sources in ``limited_sources``: the browser's public key by default, never the
    #: server-side keys unless listed. ``None``: no limit.
    key_limit: Limit | None = DEFAULT_KEY_LIMIT
    ip_limit: Limit | None = DEFAULT_IP_LIMIT
    limited_sources: frozenset[str] = frozenset({"website"})

    def with_(self, **changes: Any) -> CollectorConfig:
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """This configuration as ``LEADFLOW_COLLECTOR_*`` variables (to start a collector process)."""
        return {
            "LEADFLOW_COLLECTOR_BIND": self.bind,
            "LEADFLOW_COLLECTOR_PORT": str(self.port),
            "LEADFLOW_COLLECTOR_WRITE_KEYS": ",".join(
                f"{source}:{key}" for source, keys in self.write_keys.items() for key in keys
            ),
            "LEADFLOW_COLLECTOR_CORS_ORIGINS": ",".join(sorted(self.cors_origins)),
            "LEADFLOW_COLLECTOR_IP": self.ip_mode,
            "LEADFLOW_COLLECTOR_TRUSTED_PROXIES": str(self.trusted_proxies),
            "LEADFLOW_COLLECTOR_PUBLISH_TIMEOUT": repr(self.publish_timeout),
            "LEADFLOW_COLLECTOR_RETRY_AFTER": str(self.retry_after),
            "LEADFLOW_COLLECTOR_MAX_INFLIGHT": str(self.max_inflight),
            "LEADFLOW_COLLECTOR_LINGER_MS": str(self.linger_ms),
            "LEADFLOW_COLLECTOR_ACCESS_LOG": "1" if self.access_log else "0",
            "LEADFLOW_COLLECTOR_KEY_RATE_LIMIT": _limit_text(self.key_limit),
            "LEADFLOW_COLLECTOR_IP_RATE_LIMIT": _limit_text(self.ip_limit),
            "LEADFLOW_COLLECTOR_RATE_LIMITED_SOURCES": ",".join(sorted(self.limited_sources)),
        }


def _limit_text(limit: Limit | None) -> str:
    return "off" if limit is None else f"{limit.rate!r}/{limit.burst!r}"


def _limit(read: EnvReader, name: str, default: Limit | None) -> Limit | None:
    raw = read.raw(name)
    if not raw:
        return default
    try:
        return parse_limit(raw)
    except ValueError as exc:
        raise CollectorConfigError(f"{name}={exc}") from None


def _sources(read: EnvReader, name: str, default: frozenset[str]) -> frozenset[str]:
    raw = read.raw(name)
    if not raw:
        return default
    if raw.lower() in ("none", "off"):
        return frozenset()
    chosen = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(chosen - set(SOURCES))
    if unknown:
        raise CollectorConfigError(f"{name}: unknown source(s) {', '.join(unknown)}; use {', '.join(SOURCES)} or none")
    return chosen


def parse_write_keys(text: str, name: str = "LEADFLOW_COLLECTOR_WRITE_KEYS") -> dict[str, tuple[str, ...]]:
    """``website:KEY1,website:KEY2,purchase:KEY3`` → ``{"website": ("KEY1", "KEY2"), ...}``.

    A source may have several keys (to rotate one without downtime).
    """
    keys: dict[str, list[str]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        source, sep, key = item.partition(":")
        source, key = source.strip(), key.strip()
        if not sep or not key:
            raise CollectorConfigError(f"{name}: {item!r} is not SOURCE:KEY (e.g. website:pk_live_123)")
        if source not in SOURCES:
            raise CollectorConfigError(f"{name}: unknown source {source!r}; use one of {', '.join(SOURCES)}")
        if len(key) < 8:
            raise CollectorConfigError(f"{name}: the key for {source} is shorter than 8 characters")
        keys.setdefault(source, []).append(key)
    return {source: tuple(values) for source, values in keys.items()}


def parse_origins(text: str, name: str = "LEADFLOW_COLLECTOR_CORS_ORIGINS") -> frozenset[str]:
    """``https://www.example.com,http://localhost:3000`` → a set of exact origins (no wildcards)."""
    origins = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest or "*" in rest:
            raise CollectorConfigError(
                f"{name}: {item!r} is not an origin: write scheme://host[:port], e.g. https://www.example.com"
            )
        origins.add(item.lower())
    return frozenset(origins)


def config_from_env(env: Mapping[str, str] | None = None, /, **overrides: Any) -> CollectorConfig:
    """The collector configuration from ``LEADFLOW_COLLECTOR_*`` variables; keyword overrides win."""
    read = EnvReader(env, CollectorConfigError)
    config = CollectorConfig(
        bind=read.text("LEADFLOW_COLLECTOR_BIND", "127.0.0.1"),
        port=read.port("LEADFLOW_COLLECTOR_PORT", 8080),
        write_keys=parse_write_keys(read.raw("LEADFLOW_COLLECTOR_WRITE_KEYS")),
        cors_origins=parse_origins(read.raw("LEADFLOW_COLLECTOR_CORS_ORIGINS")),
        ip_mode=read.choice("LEADFLOW_COLLECTOR_IP", IP_MODES, "truncate"),
        trusted_proxies=read.integer("LEADFLOW_COLLECTOR_TRUSTED_PROXIES", 0),
        publish_timeout=read.duration("LEADFLOW_COLLECTOR_PUBLISH_TIMEOUT", 10.0, positive=True),
        retry_after=read.integer("LEADFLOW_COLLECTOR_RETRY_AFTER", 2, minimum=1),
        max_inflight=read.integer("LEADFLOW_COLLECTOR_MAX_INFLIGHT", 256, minimum=1),
        linger_ms=read.integer("LEADFLOW_COLLECTOR_LINGER_MS", 0),
        access_log=read.flag("LEADFLOW_COLLECTOR_ACCESS_LOG", False),
        key_limit=_limit(read, "LEADFLOW_COLLECTOR_KEY_RATE_LIMIT", DEFAULT_KEY_LIMIT),
        ip_limit=_limit(read, "LEADFLOW_COLLECTOR_IP_RATE_LIMIT", DEFAULT_IP_LIMIT),
        limited_sources=_sources(read, "LEADFLOW_COLLECTOR_RATE_LIMITED_SOURCES", frozenset({"website"})),
    )
    return config.with_(**overrides) if overrides else config
