"""``leadflow webhooks``: deliver alerts and transitions to sales tools (its own process).

Exit codes (:mod:`pipeline.cli.common`): 0 a clean stop (or a valid ``--check``); 2 a usage error,
an invalid subscriptions file or a web port in use. An unreachable broker is waited for (one line
per attempt, ``/readyz`` says so), not an exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pipeline.cli.common import (
    CliError,
    Subparsers,
    kafka_options,
    load_model,
    loglevel_option,
    model_option,
    require_listen,
    settings_from_args,
)
from pipeline.config.env import SettingsError
from pipeline.webhooks.config import (
    DEFAULT_PORT,
    ENV_VAR,
    PORT_ENV_VAR,
    config_path_from_env,
    load_config,
    web_port_from_env,
)
from pipeline.webhooks.errors import ConfigError


def cmd_webhooks(args: argparse.Namespace) -> int:
    path = args.config or config_path_from_env()
    if not path:
        raise CliError(f"no subscriptions file: give --config FILE or set {ENV_VAR}")
    settings = settings_from_args(args)
    model = load_model(settings.model)
    try:
        segments = None if model.segments is None else model.segments.names()
        config = load_config(path, stages=model.stages, segments=segments)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    if args.check:
        for s in config.subscriptions:
            wanted = s.filter
            what = [
                *(["became_hot alerts"] if wanted.became_hot else []),
                *([f"stage into {', '.join(sorted(wanted.stages_into))}"] if wanted.stages_into else []),
                *([f"stage out of {', '.join(sorted(wanted.stages_out_of))}"] if wanted.stages_out_of else []),
                *(["temperature changes"] if wanted.temperature_changes else []),
                *(["identity merges"] if wanted.identity_merges else []),
                *(["response_overdue alerts"] if wanted.response_overdue else []),
                *(["alert_answered alerts"] if wanted.alerts_answered else []),
                *([f"segment into {', '.join(sorted(wanted.segments_into))}"] if wanted.segments_into else []),
                *([f"segment out of {', '.join(sorted(wanted.segments_out_of))}"] if wanted.segments_out_of else []),
            ]
            print(f"{s.name}: POST {s.url} ({'; '.join(what)}), {s.max_in_flight} in flight, "
                  f"timeout {s.retry.timeout:g}s, retries for {s.retry.retry_for:g}s")
        print(f"{path}: {len(config.subscriptions)} valid subscriptions")
        return 0
    port = args.web_port
    if port is None:
        try:
            port = web_port_from_env()
        except SettingsError as exc:
            raise CliError(str(exc)) from exc
    logging.basicConfig(
        level=getattr(logging, args.loglevel.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    from pipeline.webhooks.service import ensure_deadletter_topic, serve

    require_listen(args.web_bind, port, f"--web-port or {PORT_ENV_VAR} (--web-bind: address)")
    if not args.no_create_topics:
        from pipeline.config.topics import TopicNames
        from pipeline.kafka.topics import TopicSettingsError, ensure_topics
        from pipeline.streaming.startup import wait_for_broker

        def create() -> list[str]:
            created = ensure_topics(settings)
            if ensure_deadletter_topic(settings):
                created.append(TopicNames.of(settings).webhooks_deadletter)
            return created

        # An unreachable broker is waited for, with /readyz saying so (not an exit).
        try:
            made = wait_for_broker(settings, create, bind=args.web_bind, port=port)
        except TopicSettingsError as exc:
            raise CliError(str(exc)) from None
        if made is None:
            return 0  # stopped while waiting for the broker
        if made:
            print(f"created topics: {', '.join(made)}", file=sys.stderr)
    asyncio.run(serve(config, settings, args.web_bind, port))
    return 0


def register(subparsers: Subparsers) -> None:
    """Add ``webhooks``."""
    p = subparsers.add_parser(
        "webhooks", help="deliver alerts and transitions to sales tools' webhooks (its own process)"
    )
    kafka_options(p)
    p.add_argument("--config", metavar="FILE", help=f"subscriptions file, TOML or .json (default: ${ENV_VAR})")
    model_option(p, "model whose stage names the filters may use (default: built-in)")
    p.add_argument("--app-id", help="prefix of the consumer groups (<app-id>-webhooks-<name>)")
    p.add_argument("--web-port", type=int, help=f"port of /metrics, /healthz, /readyz (default ${PORT_ENV_VAR} or "
                                                f"{DEFAULT_PORT})")
    p.add_argument("--web-bind", default="127.0.0.1", help="address of the web port (default 127.0.0.1)")
    p.add_argument("--check", action="store_true", help="validate the subscriptions file, print them and exit")
    p.add_argument("--no-create-topics", action="store_true", help="do not create missing topics")
    loglevel_option(p)
    p.set_defaults(func=cmd_webhooks)
