"""``leadflow collector``: the HTTP collector as its own process.

``register(subparsers)`` adds the command to the ``leadflow`` command line (pipeline/cli.py).
Exit codes follow the CLI's: 0 after a clean shutdown; 2 a configuration error.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

EXIT_USAGE = 2


def cmd_collector(args: argparse.Namespace) -> int:
    from pipeline.cli.main import CliError  # imported late: pipeline.cli imports this module
    from pipeline.collector.app import run_collector
    from pipeline.collector.config import CollectorConfigError, config_from_env
    from pipeline.config.settings import SettingsError, from_env

    overrides: dict[str, Any] = {}
    if args.kafka:
        overrides["bootstrap"] = args.kafka
    if args.broker_profile:
        overrides["profile"] = args.broker_profile
    if args.topic_prefix is not None:
        overrides["topic_prefix"] = args.topic_prefix
    listen: dict[str, Any] = {}
    if args.port is not None:
        listen["port"] = args.port
    if args.bind is not None:
        listen["bind"] = args.bind
    try:
        settings = from_env(**overrides)
        config = config_from_env(**listen)
    except (SettingsError, CollectorConfigError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    logging.basicConfig(level=getattr(logging, args.loglevel.upper()), format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # it logs every reconnect attempt
    return run_collector(settings, config)


def register(sub: Any) -> None:
    """Add ``leadflow collector`` to the CLI's subparsers."""
    p = sub.add_parser("collector", help="HTTP collector: events from web trackers and backends into Kafka")
    p.add_argument("--kafka", metavar="SERVERS", help="bootstrap servers (default: $LEADFLOW_KAFKA)")
    p.add_argument("--broker-profile", choices=("kafka", "tansu"), help="client settings profile")
    p.add_argument("--topic-prefix", help="prefix for every topic name")
    p.add_argument("--port", type=int, help="listening port (default: $LEADFLOW_COLLECTOR_PORT or 8080)")
    p.add_argument("--bind", help="listening address (default: $LEADFLOW_COLLECTOR_BIND or 127.0.0.1)")
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_collector)
