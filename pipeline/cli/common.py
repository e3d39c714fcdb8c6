"""What every ``leadflow`` command shares: the error and its exit codes, the shared options, the
settings from the environment, the model resolver and the RFC 3339 argument type.

Command modules (``pipeline/cli/<group>.py``) import this module and the library packages, never
each other and never :mod:`pipeline.cli.main`. Each has ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, TypeAlias

from pipeline.config.settings import Settings, SettingsError, from_env
from pipeline.state_machine import LifecycleError, Model, resolve_model
from pipeline.state_machine.clock import parse_rfc3339

if TYPE_CHECKING:
    from pipeline.storage.errors import StorageError

#: The command finished (bad *events* never change this: they become dead letters).
EXIT_OK = 0
#: I/O: a file cannot be read or written, Kafka or the database cannot be reached.
EXIT_IO = 1
#: What was asked for (a contact, an alert) is not in the database; the same code as I/O.
EXIT_NOT_FOUND = EXIT_IO
#: A usage error: a bad option or setting, an invalid model or subscriptions file, a database URL
#: that cannot be used or a schema that needs ``leadflow db upgrade``. argparse exits 2 as well.
EXIT_USAGE = 2

#: What ``register(subparsers)`` of a command module receives.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

LOG_LEVELS = ("debug", "info", "warning", "error")


class CliError(Exception):
    """A problem the user must fix; printed as ``leadflow: <message>``, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def require_listen(bind: str, port: int, setting: str) -> None:
    """A usage error naming ``setting`` when no server can listen on ``bind:port`` (port in use...)."""
    from pipeline.ops.ports import listen_problem

    problem = listen_problem(bind, port)
    if problem is not None:
        raise CliError(f"{problem}: choose another with {setting}", EXIT_USAGE)


def load_model(spec: str | None) -> Model:
    """The model of a file or a built-in name (``None``: the default); an invalid one is a usage error."""
    try:
        return resolve_model(spec)
    except LifecycleError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def rfc3339_micros(text: str) -> int:
    """Argument type: an RFC 3339 timestamp with offset, as microseconds since the epoch."""
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp with offset: {text!r}") from exc


#: Command-line options that override a :class:`Settings` field of the same name.
_SETTINGS_OPTIONS = ("partitions", "model", "web_port", "sweep_clock", "sweep_interval", "app_id", "topic_prefix")


def settings_from_args(args: argparse.Namespace, **extra: object) -> Settings:
    """``LEADFLOW_*`` settings, overridden by the options given (``--kafka``, ``--partitions``...)
    and then by ``extra``; an invalid setting is a usage error naming the variable."""
    overrides: dict[str, object] = {}
    if getattr(args, "kafka", None):
        overrides["bootstrap"] = args.kafka
    if getattr(args, "broker_profile", None):
        overrides["profile"] = args.broker_profile
    for name in _SETTINGS_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    overrides.update(extra)
    try:
        settings = from_env(None, **overrides)
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    settings = with_detected_profile(settings, explicit="profile" in overrides)
    require_kafka_credentials(settings)
    return settings


def require_kafka_credentials(settings: Settings) -> None:
    """A usage error naming the setting when the broker refuses the TLS / SASL settings (an
    untrusted certificate, a refused login): retrying could never fix it. Plaintext: no check."""
    if settings.security.protocol == "PLAINTEXT":
        return
    from pipeline.kafka.credentials import KafkaCredentialsError, check_credentials

    try:
        check_credentials(settings)
    except KafkaCredentialsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def with_detected_profile(settings: Settings, explicit: bool = False) -> Settings:
    """``settings`` with the broker profile of the broker that answers, unless one was chosen
    (``--broker-profile`` or ``$LEADFLOW_BROKER_PROFILE`` always win): the embedded Tansu broker is
    recognised by its cluster id; anything else, or no answer, keeps ``kafka``."""
    if explicit or os.environ.get("LEADFLOW_BROKER_PROFILE", "").strip():
        return settings
    if settings.security.protocol != "PLAINTEXT":  # a secured cluster is never the embedded broker
        return settings
    from pipeline.kafka.detect import detect_profile

    profile = detect_profile(settings.bootstrap)
    if profile != settings.profile:
        print(f"leadflow: {settings.bootstrap} is the embedded Tansu broker: using broker profile {profile} "
              "(set LEADFLOW_BROKER_PROFILE or --broker-profile to choose)", file=sys.stderr)
        return settings.with_(profile=profile)
    return settings


def storage_failure(exc: StorageError) -> CliError:
    """A storage error as the CLI reports it: usage (bad URL, schema not upgraded, bad ack time),
    not found (unknown alert) or I/O (the database is unavailable)."""
    from pipeline.storage.errors import InvalidAcknowledgement, InvalidDatabaseUrl, SchemaNotReady, UnknownAlert

    if isinstance(exc, InvalidDatabaseUrl | SchemaNotReady | InvalidAcknowledgement):
        return CliError(str(exc), EXIT_USAGE)
    if isinstance(exc, UnknownAlert):
        return CliError(str(exc), EXIT_NOT_FOUND)
    return CliError(str(exc), EXIT_IO)


def kafka_options(parser: argparse.ArgumentParser) -> None:
    """``--kafka``, ``--broker-profile``, ``--topic-prefix``: where the topics are."""
    parser.add_argument("--kafka", metavar="SERVERS", help="bootstrap servers (default: $LEADFLOW_KAFKA)")
    parser.add_argument("--broker-profile", choices=("kafka", "tansu"), help="client settings profile")
    parser.add_argument("--topic-prefix", help="prefix for every topic name")


def model_option(parser: argparse.ArgumentParser, help: str, metavar: str = "FILE") -> None:
    """``--model``: a model file or a built-in name (``default``, ``b2b``)."""
    parser.add_argument("--model", metavar=metavar, help=help)


def loglevel_option(parser: argparse.ArgumentParser) -> None:
    """``--loglevel`` of a long-running process (default ``info``)."""
    parser.add_argument("--loglevel", default="info", choices=LOG_LEVELS)


def parse_bound(text: str, *, end: bool) -> datetime:
    """``--since`` / ``--until`` (``funnel``, ``segments``, ...): a date (a UTC day; ``--until``
    includes that day) or an RFC 3339 time with an offset."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None and len(text) == 10:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"not a date (YYYY-MM-DD) or an RFC 3339 time with offset (2025-03-01T09:00:00Z): {text!r}"
        )
    return moment.astimezone(UTC)
