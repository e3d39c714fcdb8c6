"""``leadflow console``: the browser console (hot leads, contact, funnel, pipeline) on its own.

Exit codes (:mod:`pipeline.cli.common`): 0 after a clean shutdown; 2 a configuration error (for
example a non-loopback ``--bind`` without ``LEADFLOW_CONSOLE_TOKEN`` or a user and password).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from pipeline.cli.common import CliError, Subparsers, kafka_options, settings_from_args


def _metrics(items: list[str]) -> dict[str, str]:
    found = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise CliError(f"--metrics {item!r}: write NAME=URL, e.g. worker=http://127.0.0.1:6066/metrics")
        found[name] = url
    return found


def cmd_console(args: argparse.Namespace) -> int:
    from pipeline.console.app import run_console
    from pipeline.console.config import ConsoleConfig, ConsoleConfigError, credentials_from_env
    from pipeline.storage import resolve_url

    settings = settings_from_args(args) if args.kafka or os.environ.get("LEADFLOW_KAFKA") else None
    try:
        config = ConsoleConfig(
            db_url=resolve_url(args.db), bind=args.bind, port=args.port, collector_url=args.collector,
            metrics=_metrics(args.metrics or []), model=args.model,
        )
        found = credentials_from_env()
        config = dataclasses.replace(config, token=found["token"], user=found["user"], password=found["password"],
                                     sales_key=found["sales_key"])
        config.check()
    except ConsoleConfigError as exc:
        raise CliError(str(exc)) from exc
    return run_console(config, settings)


def register(subparsers: Subparsers) -> None:
    """Add ``console``."""
    p = subparsers.add_parser("console", help="browser console: hot leads, contacts, funnel, pipeline health")
    p.add_argument("--db", metavar="URL", help="history database (default: $LEADFLOW_DB, else sqlite:///leadflow.db)")
    kafka_options(p)
    p.add_argument("--bind", default="127.0.0.1", help="listening address (default 127.0.0.1; any other needs "
                   "LEADFLOW_CONSOLE_TOKEN or LEADFLOW_CONSOLE_USER/PASSWORD)")
    p.add_argument("--port", type=int, default=8088, help="listening port (default 8088)")
    p.add_argument("--collector", metavar="URL", help="the collector's base URL, for the 'answered' action "
                   "(with LEADFLOW_CONSOLE_SALES_KEY)")
    p.add_argument("--metrics", metavar="NAME=URL", action="append",
                   help="a process's /metrics for the Pipeline page (repeat per process)")
    p.add_argument("--model", metavar="FILE", help="model of the funnel (default: the built-in default)")
    p.set_defaults(func=cmd_console)
