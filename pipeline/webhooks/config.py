"""Webhook subscriptions: the configuration file (TOML or JSON), validated when it is loaded.

A file has optional delivery defaults and one entry per subscription::

    [delivery]                      # defaults for every subscription (all optional)
    timeout_seconds = 10            # per HTTP request, connect included
    max_in_flight = 10              # records of one subscription being delivered or retried at once
    retry_for_seconds = 86400       # keep retrying a record this long, then dead-letter it
    backoff_initial_seconds = 1     # exponential backoff with full jitter ...
    backoff_max_seconds = 3600      # ... capped at this interval
    start_from = "latest"           # where a new subscription starts: latest | earliest

    [[subscriptions]]
    name = "crm"                    # [a-z0-9_-], ≤ 64 chars: consumer group, metric label
    url = "https://crm.example.com/hooks/leadflow"
    secret_env = "CRM_WEBHOOK_SECRET"   # or secret = "..." (at least 16 characters)
    max_in_flight = 4               # any delivery key may be overridden per subscription
    [subscriptions.filter]
    became_hot = true               # became_hot alerts
    stages_into = ["customer"]      # stage transitions into these stages ("*" = any)
    stages_out_of = ["customer"]    # stage transitions out of these stages ("*" = any)
    temperature_changes = false     # every temperature transition
    identity_merges = false         # identity transitions: an anonymous visitor merged into a contact
    response_overdue = false        # response_overdue alerts: nobody contacted a hot lead by respond_by
    alerts_answered = false         # alert_answered alerts: the first lead_contacted after a became_hot
    segments_into = ["negative"]    # value-segment moves into these segments ("*" = any)
    segments_out_of = ["loyal"]     # value-segment moves out of these segments ("*" = any)

Every problem is reported at once, each naming the file and the field.

The process's own variables (``LEADFLOW_WEBHOOKS``: the file; ``LEADFLOW_WEBHOOKS_WEB_PORT``) are
read with :class:`~pipeline.config.env.EnvReader`, like every other ``LEADFLOW_*`` variable.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.config.env import EnvReader
from pipeline.webhooks.errors import ConfigError

ENV_VAR = "LEADFLOW_WEBHOOKS"
PORT_ENV_VAR = "LEADFLOW_WEBHOOKS_WEB_PORT"
DEFAULT_PORT = 6068
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MIN_SECRET_LENGTH = 16
ANY = "*"

DELIVERY_DEFAULTS: dict[str, Any] = {
    "timeout_seconds": 10.0,
    "max_in_flight": 10,
    "retry_for_seconds": 86_400.0,
    "backoff_initial_seconds": 1.0,
    "backoff_max_seconds": 3_600.0,
    "start_from": "latest",
}
FILTER_KEYS = (
    "became_hot", "stages_into", "stages_out_of", "temperature_changes", "identity_merges", "response_overdue",
    "alerts_answered", "segments_into", "segments_out_of",
)
#: The filter flag that selects each alert type (``Alert.type``).
ALERT_FLAGS = {"became_hot": "became_hot", "response_overdue": "response_overdue", "alert_answered": "alerts_answered"}
SUBSCRIPTION_KEYS = ("name", "url", "secret", "secret_env", "filter", *DELIVERY_DEFAULTS)
START_FROM = ("latest", "earliest")


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which records a subscription receives."""

    became_hot: bool = False
    stages_into: frozenset[str] = frozenset()
    stages_out_of: frozenset[str] = frozenset()
    temperature_changes: bool = False
    identity_merges: bool = False  # transitions of kind "identity" (from anon:<id>, to the contact)
    response_overdue: bool = False  # the escalation of an unanswered became_hot (speed to lead)
    alerts_answered: bool = False  # the first lead_contacted after a became_hot, with the response time
    segments_into: frozenset[str] = frozenset()  # value-segment moves (kind "segment") into these
    segments_out_of: frozenset[str] = frozenset()  # ... out of these

    @property
    def wants_alerts(self) -> bool:
        return self.became_hot or self.response_overdue or self.alerts_answered

    @property
    def wants_transitions(self) -> bool:
        return bool(
            self.stages_into or self.stages_out_of or self.temperature_changes or self.identity_merges
            or self.segments_into or self.segments_out_of
        )

    def wants_alert(self, alert_type: str) -> bool:
        flag = ALERT_FLAGS.get(alert_type)
        return flag is not None and bool(getattr(self, flag))

    def wants_transition(self, kind: str, from_: str, to: str) -> bool:
        if kind == "temperature":
            return self.temperature_changes
        if kind == "identity":  # never selected by stage filters, even "*": its from/to are contact ids
            return self.identity_merges
        if kind == "segment":  # only by the segment filters: stage filters, even "*", never select it
            into, out_of = self.segments_into, self.segments_out_of
            return ANY in into or to in into or ANY in out_of or from_ in out_of
        if kind != "stage":
            return False
        into, out_of = self.stages_into, self.stages_out_of
        return ANY in into or to in into or ANY in out_of or from_ in out_of


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Timeouts and the retry schedule of one subscription (seconds)."""

    timeout: float = DELIVERY_DEFAULTS["timeout_seconds"]
    retry_for: float = DELIVERY_DEFAULTS["retry_for_seconds"]
    backoff_initial: float = DELIVERY_DEFAULTS["backoff_initial_seconds"]
    backoff_max: float = DELIVERY_DEFAULTS["backoff_max_seconds"]


@dataclass(frozen=True, slots=True)
class Subscription:
    """One receiver: where to POST, how to sign, what to send, how hard to try."""

    name: str
    url: str
    secret: str = field(repr=False)
    filter: EventFilter
    retry: RetryPolicy = RetryPolicy()
    max_in_flight: int = DELIVERY_DEFAULTS["max_in_flight"]
    start_from: str = "latest"

    def group_id(self, app_id: str) -> str:
        """This subscription's own consumer group: its committed offsets are its progress alone."""
        return f"{app_id}-webhooks-{self.name}"


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    path: str
    subscriptions: tuple[Subscription, ...]


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _read(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), [f"not valid JSON: {exc}"]) from exc
    else:
        try:
            data = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), [f"not valid TOML: {exc} (use a .json suffix for JSON)"]) from exc
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["the top level must be a table/object with a 'subscriptions' list"])
    return data


def _unknown(problems: _Problems, where: str, table: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            problems.add(f"{where}.{key}" if where else key, f"unknown key; allowed: {', '.join(allowed)}")


def _number(problems: _Problems, where: str, value: Any, *, integer: bool, low: float, high: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        problems.add(where, f"{value!r} is not {'an integer' if integer else 'a number'}")
        return None
    if not low <= value <= high:
        problems.add(where, f"{value!r} is out of range: {low:g} to {high:g}")
        return None
    return value


def _delivery(problems: _Problems, where: str, table: Mapping[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Delivery settings of ``table`` over ``base``; every value checked."""
    merged = dict(base)
    ranges = {
        "timeout_seconds": (False, 0.01, 300.0),
        "max_in_flight": (True, 1, 1000),
        "retry_for_seconds": (False, 0.0, 30 * 86_400.0),
        "backoff_initial_seconds": (False, 0.001, 86_400.0),
        "backoff_max_seconds": (False, 0.001, 7 * 86_400.0),
    }
    for key, (integer, low, high) in ranges.items():
        if key in table:
            value = _number(problems, f"{where}{key}", table[key], integer=integer, low=low, high=high)
            if value is not None:
                merged[key] = value
    if "start_from" in table:
        if table["start_from"] in START_FROM:
            merged["start_from"] = table["start_from"]
        else:
            problems.add(f"{where}start_from", f"{table['start_from']!r}: choose one of {', '.join(START_FROM)}")
    if merged["backoff_max_seconds"] < merged["backoff_initial_seconds"]:
        problems.add(f"{where}backoff_max_seconds", "must not be less than backoff_initial_seconds")
    return merged


def _url(problems: _Problems, where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        problems.add(where, "required: the receiver's http(s) URL")
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.add(where, f"{value!r} is not an http:// or https:// URL with a host")
    return value


def _secret(problems: _Problems, where: str, entry: Mapping[str, Any], env: Mapping[str, str]) -> str:
    has_inline, has_env = "secret" in entry, "secret_env" in entry
    if has_inline == has_env:
        problems.add(f"{where}secret", "give exactly one of secret or secret_env (the name of an environment variable)")
        return ""
    if has_env:
        name = entry["secret_env"]
        if not isinstance(name, str) or not name:
            problems.add(f"{where}secret_env", "must be the name of an environment variable")
            return ""
        secret = env.get(name)
        if secret is None:
            problems.add(f"{where}secret_env", f"environment variable {name} is not set")
            return ""
        field_name = f"secret_env ({name})"
    else:
        secret = entry["secret"]
        field_name = "secret"
        if not isinstance(secret, str):
            problems.add(f"{where}secret", "must be a string")
            return ""
    if len(secret) < MIN_SECRET_LENGTH:
        problems.add(f"{where}{field_name}", f"too short: use at least {MIN_SECRET_LENGTH} random characters")
    return secret


def _stage_list(problems: _Problems, where: str, value: Any, stages: Sequence[str] | None) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        problems.add(where, f'must be a list of stage names (or ["{ANY}"] for any stage)')
        return frozenset()
    if stages is not None:
        for index, item in enumerate(value):
            if item != ANY and item not in stages:
                problems.add(f"{where}[{index}]", f"{item!r} is not a stage of the model; stages: {', '.join(stages)}")
    return frozenset(value)


def _segment_list(problems: _Problems, where: str, value: Any, segments: Sequence[str] | None) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        problems.add(where, f'must be a list of segment names (or ["{ANY}"] for any segment)')
        return frozenset()
    if segments is not None:
        for index, item in enumerate(value):
            if item != ANY and item not in segments:
                problems.add(
                    f"{where}[{index}]", f"{item!r} is not a segment of the model; segments: {', '.join(segments)}"
                )
    return frozenset(value)


def _filter(
    problems: _Problems, where: str, value: Any, stages: Sequence[str] | None, segments: Sequence[str] | None = None
) -> EventFilter:
    if not isinstance(value, dict):
        problems.add(where, f"required: a table with any of {', '.join(FILTER_KEYS)}")
        return EventFilter()
    _unknown(problems, where, value, FILTER_KEYS)
    flags: dict[str, bool] = {}
    for key in ("became_hot", "temperature_changes", "identity_merges", "response_overdue", "alerts_answered"):
        flag = value.get(key, False)
        if not isinstance(flag, bool):
            problems.add(f"{where}.{key}", "must be true or false")
            flag = False
        flags[key] = flag
    result = EventFilter(
        became_hot=flags["became_hot"],
        stages_into=_stage_list(problems, f"{where}.stages_into", value.get("stages_into", []), stages),
        stages_out_of=_stage_list(problems, f"{where}.stages_out_of", value.get("stages_out_of", []), stages),
        temperature_changes=flags["temperature_changes"],
        identity_merges=flags["identity_merges"],
        response_overdue=flags["response_overdue"],
        alerts_answered=flags["alerts_answered"],
        segments_into=_segment_list(problems, f"{where}.segments_into", value.get("segments_into", []), segments),
        segments_out_of=_segment_list(problems, f"{where}.segments_out_of", value.get("segments_out_of", []), segments),
    )
    if not (result.wants_alerts or result.wants_transitions):
        problems.add(
            where,
            "selects nothing: set became_hot, stages_into, stages_out_of, temperature_changes, identity_merges, "
            "response_overdue, alerts_answered, segments_into or segments_out_of",
        )
    return result


def parse_config(
    data: Mapping[str, Any],
    path: str,
    stages: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    segments: Sequence[str] | None = None,
) -> WebhooksConfig:
    """Validate a decoded configuration; raise :class:`ConfigError` listing every problem."""
    env = os.environ if env is None else env
    problems = _Problems()
    _unknown(problems, "", data, ("delivery", "subscriptions"))
    defaults = dict(DELIVERY_DEFAULTS)
    delivery = data.get("delivery", {})
    if not isinstance(delivery, dict):
        problems.add("delivery", "must be a table")
    else:
        _unknown(problems, "delivery", delivery, DELIVERY_DEFAULTS)
        defaults = _delivery(problems, "delivery.", delivery, defaults)
    entries = data.get("subscriptions")
    if not isinstance(entries, list) or not entries:
        problems.add("subscriptions", "required: a non-empty list of subscriptions ([[subscriptions]] in TOML)")
        entries = []
    subscriptions: list[Subscription] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"subscriptions[{index}]"
        if not isinstance(entry, dict):
            problems.add(where, "must be a table/object")
            continue
        name = entry.get("name")
        if isinstance(name, str) and NAME_PATTERN.match(name):
            where = f"subscriptions[{index}] ({name})"
            if name in seen:
                problems.add(f"{where}.name", f"duplicate: also subscriptions[{seen[name]}]")
            seen.setdefault(name, index)
        else:
            problems.add(f"{where}.name", f"{name!r}: required, 1-64 of a-z 0-9 _ - (starting with a letter or digit)")
            name = ""
        _unknown(problems, where, entry, SUBSCRIPTION_KEYS)
        settings = _delivery(problems, f"{where}.", entry, defaults)
        subscriptions.append(
            Subscription(
                name=name,
                url=_url(problems, f"{where}.url", entry.get("url")),
                secret=_secret(problems, f"{where}.", entry, env),
                filter=_filter(problems, f"{where}.filter", entry.get("filter"), stages, segments),
                retry=RetryPolicy(
                    timeout=float(settings["timeout_seconds"]),
                    retry_for=float(settings["retry_for_seconds"]),
                    backoff_initial=float(settings["backoff_initial_seconds"]),
                    backoff_max=float(settings["backoff_max_seconds"]),
                ),
                max_in_flight=int(settings["max_in_flight"]),
                start_from=str(settings["start_from"]),
            )
        )
    if problems.items:
        raise ConfigError(path, problems.items)
    return WebhooksConfig(path=path, subscriptions=tuple(subscriptions))


def load_config(
    path: str | os.PathLike[str],
    stages: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    segments: Sequence[str] | None = None,
) -> WebhooksConfig:
    """Load and validate a subscriptions file (``.json`` is JSON, anything else TOML).

    ``stages``: the lifecycle model's stages, to reject a misspelt stage name in a filter;
    ``segments``: its value segments, likewise.
    """
    file = Path(path)
    return parse_config(_read(file), str(file), stages, env, segments)


def config_path_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The subscriptions file named by ``LEADFLOW_WEBHOOKS``, if any."""
    return EnvReader(env).text(ENV_VAR)


def web_port_from_env(env: Mapping[str, str] | None = None) -> int:
    """The port of ``/metrics``, ``/healthz``, ``/readyz``: ``LEADFLOW_WEBHOOKS_WEB_PORT`` or 6068.
    A bad value raises :class:`~pipeline.config.env.SettingsError` naming the variable."""
    return EnvReader(env).port(PORT_ENV_VAR, DEFAULT_PORT)
