"""Configuration of the HTTP collector (``LEADFLOW_COLLECTOR_*`` variables).

The broker connection (bootstrap servers, broker profile, topic prefix) comes from the shared
:class:`~pipeline.settings.Settings`; this module holds what only the collector needs: where it
listens, who may write to which source, which browser origins may call it, and how it treats
client addresses. Every problem raises :class:`CollectorConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.state_machine import SOURCES

#: Largest request body, in bytes (the input topics' batch limit).
MAX_BODY_BYTES = 1_048_576
#: Most events in one request (a JSON array or NDJSON lines).
MAX_EVENTS_PER_REQUEST = 500
#: What the collector does with the client's address: keep it, cut it to its network, or drop it.
IP_MODES = ("truncate", "full", "drop")


class CollectorConfigError(ValueError):
    """A ``LEADFLOW_COLLECTOR_*`` variable has a value the collector cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Everything the collector process needs besides the broker settings; see the README."""

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
        }


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


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CollectorConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise CollectorConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise CollectorConfigError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise CollectorConfigError(f"{name}={raw!r} must be greater than 0")
    return value


def config_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> CollectorConfig:
    """The collector configuration from ``LEADFLOW_COLLECTOR_*`` variables; keyword overrides win."""
    env = os.environ if env is None else env
    ip_mode = (env.get("LEADFLOW_COLLECTOR_IP") or "truncate").strip()
    if ip_mode not in IP_MODES:
        raise CollectorConfigError(f"LEADFLOW_COLLECTOR_IP={ip_mode!r}: choose one of {', '.join(IP_MODES)}")
    access_log = (env.get("LEADFLOW_COLLECTOR_ACCESS_LOG") or "0").strip().lower()
    if access_log not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise CollectorConfigError(f"LEADFLOW_COLLECTOR_ACCESS_LOG={access_log!r}: use 1 or 0")
    config = CollectorConfig(
        bind=(env.get("LEADFLOW_COLLECTOR_BIND") or "127.0.0.1").strip(),
        port=_int(env, "LEADFLOW_COLLECTOR_PORT", 8080),
        write_keys=parse_write_keys(env.get("LEADFLOW_COLLECTOR_WRITE_KEYS") or ""),
        cors_origins=parse_origins(env.get("LEADFLOW_COLLECTOR_CORS_ORIGINS") or ""),
        ip_mode=ip_mode,
        trusted_proxies=_int(env, "LEADFLOW_COLLECTOR_TRUSTED_PROXIES", 0),
        publish_timeout=_float(env, "LEADFLOW_COLLECTOR_PUBLISH_TIMEOUT", 10.0),
        retry_after=_int(env, "LEADFLOW_COLLECTOR_RETRY_AFTER", 2, minimum=1),
        max_inflight=_int(env, "LEADFLOW_COLLECTOR_MAX_INFLIGHT", 256, minimum=1),
        linger_ms=_int(env, "LEADFLOW_COLLECTOR_LINGER_MS", 0),
        access_log=access_log in ("1", "true", "yes", "on"),
    )
    return config.with_(**overrides) if overrides else config
