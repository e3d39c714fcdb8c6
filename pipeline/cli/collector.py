"""``leadflow collector``: the HTTP collector (web trackers and backends into Kafka) as its own process.

Exit codes (:mod:`pipeline.cli.common`): 0 after a clean shutdown; 2 a configuration error (a bad
variable, a port in use). An unreachable broker is waited for (``/readyz`` says so), not an exit.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.cli.common import (
    CliError,
    Subparsers,
    kafka_options,
    loglevel_option,
    require_listen,
    settings_from_args,
)


def cmd_collector(args: argparse.Namespace) -> int:
    from pipeline.collector.app import run_collector
    from pipeline.collector.config import CollectorConfigError, config_from_env

    listen: dict[str, int | str] = {}
    if args.port is not None:
        listen["port"] = args.port
    if args.bind is not None:
        listen["bind"] = args.bind
    settings = settings_from_args(args)
    try:
        config = config_from_env(None, **listen)
    except CollectorConfigError as exc:
        raise CliError(str(exc)) from exc
    require_listen(config.bind, config.port, "--port or LEADFLOW_COLLECTOR_PORT (LEADFLOW_COLLECTOR_BIND: address)")
    logging.basicConfig(level=getattr(logging, args.loglevel.upper()), format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # it logs every reconnect attempt
    return run_collector(settings, config)


def register(subparsers: Subparsers) -> None:
    """Add ``collector``."""
    p = subparsers.add_parser("collector", help="HTTP collector: events from web trackers and backends into Kafka")
    kafka_options(p)
    p.add_argument("--port", type=int, help="listening port (default: $LEADFLOW_COLLECTOR_PORT or 8080)")
    p.add_argument("--bind", help="listening address (default: $LEADFLOW_COLLECTOR_BIND or 127.0.0.1)")
    loglevel_option(p)
    p.set_defaults(func=cmd_collector)
