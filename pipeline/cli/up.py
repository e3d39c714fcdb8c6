"""``leadflow up``: the whole product on this machine -- embedded broker, worker, sink into SQLite,
collector, webhooks (given a subscriptions file) and the console -- as one supervised process tree.

Exit codes (:mod:`pipeline.cli.common`): 0 after Ctrl-C (everything stopped); 1 a process could
not start or stopped on its own; 2 a usage error (a bad option, a database that cannot be used).
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from pipeline.cli.common import CliError, Subparsers, storage_failure

#: Browser origins the collector accepts by default: common local development servers.
DEV_ORIGINS = ("http://localhost:3000", "http://127.0.0.1:3000", "http://localhost:5173",
               "http://localhost:8000", "http://127.0.0.1:8000")


def development_keys() -> dict[str, str]:
    """A fresh write key per source: ``pk_dev_...`` for the (public) website tracker, ``sk_dev_...``
    for the server-side sources."""
    from pipeline.state_machine import SOURCES

    return {source: f"{'pk' if source == 'website' else 'sk'}_dev_{secrets.token_hex(8)}" for source in SOURCES}


def cmd_up(args: argparse.Namespace) -> int:
    from pipeline.console.config import ConsoleConfigError, credentials_from_env, is_loopback
    from pipeline.devtools.stack import StackOptions, run_stack
    from pipeline.storage import StorageError, resolve_url, upgrade_database

    if args.webhooks is not None:  # a bad subscriptions file stops here, before anything starts
        from pipeline.cli.common import load_model
        from pipeline.webhooks.config import load_config
        from pipeline.webhooks.errors import ConfigError

        try:
            load_config(args.webhooks, stages=load_model(None).stages)
        except ConfigError as exc:
            raise CliError(str(exc)) from exc
    db_url = resolve_url(args.db)
    try:
        upgrade_database(db_url)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    console_env: dict[str, str] = {}
    if not is_loopback(args.bind):
        try:
            found = credentials_from_env()
        except ConsoleConfigError as exc:
            raise CliError(str(exc)) from exc
        if not (found["token"] or found["user"]):
            raise CliError(f"--bind {args.bind} is not a loopback address: set LEADFLOW_CONSOLE_TOKEN (or "
                           "LEADFLOW_CONSOLE_USER and LEADFLOW_CONSOLE_PASSWORD) for the console first")
    console_origins = (f"http://localhost:{args.port}", f"http://127.0.0.1:{args.port}")
    options = StackOptions(
        db_url=db_url,
        data_dir=Path(args.data_dir).resolve(),
        kafka=args.kafka,
        broker_port=args.broker_port,
        collector_port=args.collector_port,
        console_port=args.port,
        bind=args.bind,
        write_keys=development_keys(),
        cors_origins=tuple(dict.fromkeys([*console_origins, *DEV_ORIGINS, *(args.origin or [])])),
        webhooks_config=args.webhooks,
        with_simulator=args.with_simulator,
        simulator_contacts=args.contacts,
        simulator_rate=args.rate,
        console_env=console_env,
    )
    return run_stack(options)


def register(subparsers: Subparsers) -> None:
    """Add ``up``."""
    p = subparsers.add_parser("up", help="the whole product on this machine: broker, worker, sink, collector, "
                              "webhooks and the console, one supervised process tree")
    p.add_argument("--kafka", metavar="SERVERS", help="use this Kafka instead of the embedded broker")
    p.add_argument("--db", metavar="URL", help="history database (default: $LEADFLOW_DB, else sqlite:///leadflow.db)")
    p.add_argument("--data-dir", default="leadflow-data", help="logs and worker state (default ./leadflow-data)")
    p.add_argument("--broker-port", type=int, help="port of the embedded broker (default: a free one)")
    p.add_argument("--collector-port", type=int, default=8080, help="collector port (default 8080)")
    p.add_argument("--port", type=int, default=8088, help="console port (default 8088)")
    p.add_argument("--bind", default="127.0.0.1", help="address of the collector and the console (default "
                   "127.0.0.1; any other needs LEADFLOW_CONSOLE_TOKEN or a user and password)")
    p.add_argument("--origin", action="append", metavar="URL",
                   help="a browser origin allowed to send tracker events (repeat; local dev servers are allowed)")
    p.add_argument("--webhooks", metavar="FILE", help="subscriptions file: also run the webhooks deliverer")
    p.add_argument("--with-simulator", action="store_true", help="feed the journey simulator for a live showcase")
    p.add_argument("--contacts", type=int, default=200, help="simulated journeys (with --with-simulator)")
    p.add_argument("--rate", type=float, default=50.0, help="simulated events per second (with --with-simulator)")
    p.set_defaults(func=cmd_up)
