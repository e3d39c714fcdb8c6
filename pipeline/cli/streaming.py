"""The streaming commands: ``leadflow worker``, ``produce``, ``tail``, ``sink``, ``topics``, ``sweep``.

Each talks to Kafka (``--kafka``, ``--broker-profile``, ``--topic-prefix``, else ``LEADFLOW_*``);
a broker that cannot be reached is an I/O error (exit 1) for the short commands; the long-running
``worker`` and ``sink`` wait for it (one line per attempt, ``/readyz`` says so). A web port that is
taken, a bad setting or an invalid model file is one line naming what to change, exit 2.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.common import (
    EXIT_IO,
    EXIT_USAGE,
    CliError,
    Subparsers,
    kafka_options,
    load_model,
    loglevel_option,
    model_option,
    require_listen,
    rfc3339_micros,
    settings_from_args,
    storage_failure,
)
from pipeline.config.settings import Settings
from pipeline.state_machine.clock import to_rfc3339


def create_topics(settings: Settings) -> list[str]:
    """Create the missing Leadflow topics; the names created. No broker is an I/O error."""
    from pipeline.kafka.topics import TopicSettingsError, ensure_topics

    try:
        return ensure_topics(settings)
    except TopicSettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except Exception as exc:  # kafka-python raises many kinds; all mean "cannot reach Kafka"
        raise CliError(f"cannot create topics on {settings.bootstrap}: {exc}", EXIT_IO) from exc


def cmd_worker(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.kafka.topics import TopicSettingsError, check_partitions, check_replication, ensure_topics
    from pipeline.streaming.startup import wait_for_broker
    from pipeline.streaming.worker import run_worker

    settings = settings_from_args(args)
    load_model(settings.model)  # fail fast on a bad model, before connecting anywhere
    try:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"LEADFLOW_DATA_DIR={settings.data_dir}: cannot create it ({exc.strerror or exc})") from exc
    require_listen(settings.web_bind, settings.web_port, "--web-port or LEADFLOW_WEB_PORT (LEADFLOW_WEB_BIND: address)")
    # An unreachable broker is waited for (with /readyz saying so), not an exit.
    def prepare() -> list[str]:
        if args.no_create_topics:
            check_replication(settings)  # Faust still declares the changelog with this factor
            check_partitions(settings)
            return []
        return ensure_topics(settings)

    try:
        created = wait_for_broker(settings, prepare, bind=settings.web_bind, port=settings.web_port)
    except TopicSettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if created is None:
        return 0  # stopped while waiting for the broker
    if created:
        print(f"created topics: {', '.join(created)}", file=sys.stderr)
    return run_worker(settings, loglevel=args.loglevel)


def cmd_produce(args: argparse.Namespace) -> int:
    from pipeline.kafka.tools import ProduceReport, numbered_lines, produce_lines

    settings = settings_from_args(args)

    def progress(report: ProduceReport) -> None:
        if sys.stderr.isatty():
            print(f"\r  {report.total:,} published", end="", file=sys.stderr, flush=True)

    try:
        with (sys.stdin.buffer if args.file == "-" else open(args.file, "rb")) as stream:
            report = produce_lines(numbered_lines(args.file, stream), settings, progress, pace=args.rate)
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror or exc}", EXIT_IO) from exc
    except Exception as exc:
        raise CliError(f"cannot publish to {settings.bootstrap}: {exc}", EXIT_IO) from exc
    if sys.stderr.isatty():
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr)
    for reason in report.rejected[:20]:
        print(f"leadflow: skipped {reason}", file=sys.stderr)
    if len(report.rejected) > 20:
        print(f"leadflow: ... and {len(report.rejected) - 20} more lines skipped", file=sys.stderr)
    per_topic = ", ".join(f"{topic} {n}" for topic, n in sorted(report.published.items()))
    print(f"published {report.total} events ({per_topic or 'none'}); skipped {len(report.rejected)} lines",
          file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from pipeline.config.topics import TopicNames
    from pipeline.kafka.tools import print_record, tail

    settings = settings_from_args(args)
    topic = TopicNames.of(settings).outputs[args.what]
    try:
        tail(topic, settings, args.from_beginning, print_record, stop_after=args.seconds, max_records=args.max)
    except LookupError as exc:
        raise CliError(str(exc), EXIT_IO) from exc
    except KeyboardInterrupt:
        pass
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from pipeline.consumers.sink import serve
    from pipeline.storage import SchemaNotReady, StorageError

    overrides: dict[str, object] = {}
    if args.web_port is not None:
        overrides["web_port"] = args.web_port
    if args.batch is not None:
        overrides["sink_batch"] = args.batch
    if args.db is not None:
        overrides["db_url"] = args.db
    settings = settings_from_args(args, **overrides)
    require_listen(settings.web_bind, settings.web_port, "--web-port or LEADFLOW_WEB_PORT (LEADFLOW_WEB_BIND: address)")
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sink = asyncio.run(serve(settings))
    except (SchemaNotReady, StorageError) as exc:
        raise storage_failure(exc) from exc
    stats = sink.stats
    print(f"history sink stopped: read {stats.read}, stored {stats.stored}, invalid {stats.invalid}, "
          f"{stats.batches} batches, {stats.outages} database outages", file=sys.stderr)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline.kafka.topics import topic_differences

    settings = settings_from_args(args)
    created = create_topics(settings)
    print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")
    try:
        differences = topic_differences(settings)
    except Exception as exc:  # kafka-python raises many kinds; all mean "cannot ask Kafka"
        raise CliError(f"cannot describe topics on {settings.bootstrap}: {exc}", EXIT_IO) from exc
    for line in differences:
        print(f"leadflow: differs: {line}", file=sys.stderr)
    if differences:
        print(f"leadflow: {len(differences)} existing topic setting(s) differ from what Leadflow needs; "
              "leadflow topics changes no existing topic: alter them (kafka-configs.sh) or recreate them",
              file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pipeline.kafka.tools import publish_sweep

    settings = settings_from_args(args)
    try:
        told = publish_sweep(settings, args.until)
    except Exception as exc:
        raise CliError(f"cannot publish to {settings.bootstrap}: {exc}", EXIT_IO) from exc
    print(f"asked the owners of {told} partitions to fire the cooling due by {to_rfc3339(args.until)}")
    return 0


def register(subparsers: Subparsers) -> None:
    """Add ``worker``, ``produce``, ``tail``, ``sink``, ``topics`` and ``sweep``."""
    w = subparsers.add_parser("worker", help="run a streaming worker (several can share the partitions)")
    kafka_options(w)
    w.add_argument("--partitions", type=int, help="partitions of every topic (default $LEADFLOW_PARTITIONS or 8)")
    model_option(w, "model file or built-in name")
    w.add_argument("--web-port", type=int, help="port of /healthz, /readyz, /metrics")
    w.add_argument("--sweep-clock", choices=("wall", "event"), help="clock of the cooling sweep")
    w.add_argument("--sweep-interval", type=float, help="seconds between cooling sweeps")
    w.add_argument("--app-id", help="Faust app id and consumer group prefix")
    w.add_argument("--no-create-topics", action="store_true", help="do not create missing topics")
    loglevel_option(w)
    w.set_defaults(func=cmd_worker)

    pr = subparsers.add_parser("produce", help="publish a JSONL file of events; each line's 'source' picks the topic")
    kafka_options(pr)
    pr.add_argument("file", metavar="FILE.jsonl", help="- = stdin")
    pr.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    pr.set_defaults(func=cmd_produce)

    t = subparsers.add_parser("tail", help="print output records as they arrive")
    kafka_options(t)
    t.add_argument("what", choices=("transitions", "alerts", "deadletter", "contacts"))
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--seconds", type=float, help="stop after this many seconds")
    t.add_argument("--max", type=int, help="stop after this many records")
    t.set_defaults(func=cmd_tail)

    sk = subparsers.add_parser("sink", help="write lead.transitions, lead.alerts and lead.contacts to the history "
                               "database")
    kafka_options(sk)
    sk.add_argument("--db", metavar="URL", help="history database (default: $LEADFLOW_DB, else sqlite:///leadflow.db)")
    sk.add_argument("--batch", type=int, help="records per database transaction (default $LEADFLOW_SINK_BATCH or "
                    "1000)")
    sk.add_argument("--web-port", type=int, help="port of /healthz, /readyz, /stats, /metrics")
    loglevel_option(sk)
    sk.set_defaults(func=cmd_sink)

    tp = subparsers.add_parser("topics", help="create every Leadflow topic that does not exist yet")
    kafka_options(tp)
    tp.add_argument("--partitions", type=int)
    tp.set_defaults(func=cmd_topics)

    sw = subparsers.add_parser("sweep", help="fire the cooling due by a time (event-time clock: backfills, tests)")
    kafka_options(sw)
    sw.add_argument("--until", metavar="RFC3339", required=True, type=rfc3339_micros)
    sw.set_defaults(func=cmd_sweep)
