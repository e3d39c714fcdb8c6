"""The ``leadflow`` command line: replay, model tools and the sample generator.

Exit codes: 0 success; 1 an I/O error (a file that cannot be read or written); 2 a usage error or
an invalid model. Bad *events* never change the exit code: they become dead letters.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pipeline.cli import collector as collector_commands
from pipeline.cli import storage as storage_commands
from pipeline.cli import webhooks as webhooks_commands
from pipeline.config.settings import Settings, SettingsError, from_env
from pipeline.state_machine import LifecycleError, Model, resolve_model
from pipeline.state_machine.clock import parse_rfc3339, to_rfc3339

EXIT_IO = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A problem the user must fix; printed as ``leadflow: <message>``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _now_micros() -> int:
    return time.time_ns() // 1000


def _model(spec: str | None) -> Model:
    try:
        return resolve_model(spec)
    except LifecycleError as exc:
        raise CliError(str(exc)) from exc


def _rfc3339(text: str) -> int:
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp with offset: {text!r}") from exc


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.offline.replay import ReplayStats, format_summary, replay_files

    model = _model(args.model)
    interactive = sys.stderr.isatty()

    def progress(stats: ReplayStats) -> None:
        if interactive:
            rate = stats.read / stats.seconds if stats.seconds else 0
            print(f"\r  {stats.read:,} events read ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    outputs = [p for p in (args.out, args.alerts, args.deadletter, args.contacts) if p == "-"]
    if len(outputs) > 1:
        raise CliError("at most one output may be '-' (stdout)")
    with ExitStack() as stack:
        history = None
        if args.db is not None:
            history = stack.enter_context(_history_writer(args.db))
        stats = _replay(args, model, replay_files, progress, history)
        if history is not None:
            history.flush()
            print(
                f"history: {history.counts.transitions} transitions, {history.counts.alerts} alerts and "
                f"{history.counts.contacts} contacts written to {history.store.display_url} "
                f"in {history.counts.batches} transactions",
                file=sys.stderr,
            )
    if interactive:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    print(format_summary(stats, model), file=sys.stderr)
    if args.summary_json:
        import json

        Path(args.summary_json).write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


def _history_writer(url: str) -> Any:
    """The batched writer of ``replay --db``; storage errors become CLI errors naming the database."""
    from pipeline.cli.storage import storage_failure
    from pipeline.storage import HistoryWriter, StorageError

    try:
        return HistoryWriter(url)
    except StorageError as exc:
        raise storage_failure(exc) from exc


def _replay(args: argparse.Namespace, model: Any, replay_files: Any, progress: Any, history: Any) -> Any:
    from pipeline.cli.storage import storage_failure
    from pipeline.storage import StorageError

    try:
        return replay_files(
            args.events,
            model,
            received_at=_now_micros(),
            until=args.until,
            out=args.out,
            alerts=args.alerts,
            deadletter=args.deadletter,
            contacts=args.contacts,
            progress=progress,
            history=history,
        )
    except OSError as exc:
        raise CliError(f"{exc.filename or args.events}: {exc.strerror or exc}", EXIT_IO) from exc
    except StorageError as exc:
        raise storage_failure(exc) from exc


def cmd_model_validate(args: argparse.Namespace) -> int:
    model = _model(args.file)
    print(
        f"{args.file}: valid model {model.label}: {len(model.stages)} stages, {len(model.advances)} advances, "
        f"{len(model.regressions)} cooling rules, {len(model.bands)} temperature bands"
    )
    return 0


def cmd_model_diagram(args: argparse.Namespace) -> int:
    from pipeline.state_machine.diagram import mermaid

    print(mermaid(_model(args.file)), end="")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from pipeline.devtools.simulator import simulate, with_faults

    lines = with_faults(simulate(contacts=args.contacts, seed=args.seed), seed=args.seed)
    data = b"\n".join(lines) + b"\n"
    if args.output == "-":
        sys.stdout.buffer.write(data)
    else:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise CliError(f"{args.output}: {exc.strerror}", EXIT_IO) from exc
        print(f"wrote {len(lines)} lines for {args.contacts} contacts to {args.output}", file=sys.stderr)
    return 0


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "kafka", None):
        overrides["bootstrap"] = args.kafka
    if getattr(args, "broker_profile", None):
        overrides["profile"] = args.broker_profile
    for name in ("partitions", "model", "web_port", "sweep_clock", "sweep_interval", "app_id", "topic_prefix"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    overrides.update(extra)
    try:
        return from_env(**overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from exc


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.kafka.tools import ensure_topics
    from pipeline.streaming.worker import run_worker

    settings = _settings(args)
    _model(settings.model)  # fail fast on a bad model, before connecting anywhere
    if not args.no_create_topics:
        try:
            created = ensure_topics(settings)
        except Exception as exc:  # kafka-python raises many kinds; all mean "cannot reach Kafka"
            raise CliError(f"cannot create topics on {settings.bootstrap}: {exc}", EXIT_IO) from exc
        if created:
            print(f"created topics: {', '.join(created)}", file=sys.stderr)
    return run_worker(settings, loglevel=args.loglevel)


def cmd_produce(args: argparse.Namespace) -> int:
    from pipeline.kafka.tools import ProduceReport, numbered_lines, produce_lines

    settings = _settings(args)

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

    settings = _settings(args)
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

    from pipeline.cli.storage import storage_failure
    from pipeline.consumers.sink import serve
    from pipeline.storage import SchemaNotReady, StorageError

    overrides: dict[str, Any] = {}
    if args.web_port is not None:
        overrides["web_port"] = args.web_port
    if args.batch is not None:
        overrides["sink_batch"] = args.batch
    if args.db is not None:
        overrides["db_url"] = args.db
    settings = _settings(args, **overrides)
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
    from pipeline.kafka.tools import ensure_topics

    settings = _settings(args)
    try:
        created = ensure_topics(settings)
    except Exception as exc:
        raise CliError(f"cannot create topics on {settings.bootstrap}: {exc}", EXIT_IO) from exc
    print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pipeline.kafka.tools import publish_sweep

    settings = _settings(args)
    try:
        told = publish_sweep(settings, args.until)
    except Exception as exc:
        raise CliError(f"cannot publish to {settings.bootstrap}: {exc}", EXIT_IO) from exc
    print(f"asked the owners of {told} partitions to fire the cooling due by {to_rfc3339(args.until)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.devtools.demo import run_demo

    return run_demo(args)


def _kafka_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kafka", metavar="SERVERS", help="bootstrap servers (default: $LEADFLOW_KAFKA)")
    parser.add_argument("--broker-profile", choices=("kafka", "tansu"), help="client settings profile")
    parser.add_argument("--topic-prefix", help="prefix for every topic name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="replay a JSONL file of events through the lifecycle model")
    p.add_argument("events", metavar="EVENTS.jsonl", help="one event envelope with a 'source' per line; - = stdin")
    p.add_argument("--model", metavar="FILE", help="model file, or a built-in name: default, b2b")
    p.add_argument("--out", metavar="FILE", help="write transitions (JSONL); - = stdout")
    p.add_argument("--alerts", metavar="FILE", help="write became_hot alerts (JSONL)")
    p.add_argument("--deadletter", metavar="FILE", help="write rejected lines with their reasons (JSONL)")
    p.add_argument("--contacts", metavar="FILE", help="write each contact's final state (JSONL)")
    p.add_argument("--until", metavar="RFC3339", type=_rfc3339, help="at the end, fire cooling due up to this time")
    p.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--db", metavar="URL", help="also write transitions, alerts and contacts to this database "
                   "(sqlite:///leadflow.db, postgresql+psycopg://...; run `leadflow db upgrade` first)")
    p.set_defaults(func=cmd_replay)

    model = sub.add_parser("model", help="check or draw a lifecycle model").add_subparsers(
        dest="model_command", required=True, metavar="ACTION"
    )
    v = model.add_parser("validate", help="load a model file and report every problem")
    v.add_argument("file", metavar="FILE")
    v.set_defaults(func=cmd_model_validate)
    d = model.add_parser("diagram", help="print a Mermaid state diagram of a model (default: the built-in)")
    d.add_argument("file", metavar="FILE", nargs="?")
    d.set_defaults(func=cmd_model_diagram)

    s = sub.add_parser("sample", help="generate realistic journeys as a replayable JSONL file")
    s.add_argument("output", metavar="FILE", help="- = stdout")
    s.add_argument("--contacts", type=int, default=300)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=cmd_sample)

    w = sub.add_parser("worker", help="run a streaming worker (several can share the partitions)")
    _kafka_options(w)
    w.add_argument("--partitions", type=int, help="partitions of every topic (default $LEADFLOW_PARTITIONS or 8)")
    w.add_argument("--model", metavar="FILE", help="model file or built-in name")
    w.add_argument("--web-port", type=int, help="port of /healthz, /readyz, /metrics")
    w.add_argument("--sweep-clock", choices=("wall", "event"), help="clock of the cooling sweep")
    w.add_argument("--sweep-interval", type=float, help="seconds between cooling sweeps")
    w.add_argument("--app-id", help="Faust app id and consumer group prefix")
    w.add_argument("--no-create-topics", action="store_true", help="do not create missing topics")
    w.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    w.set_defaults(func=cmd_worker)

    pr = sub.add_parser("produce", help="publish a JSONL file of events; each line's 'source' picks the topic")
    _kafka_options(pr)
    pr.add_argument("file", metavar="FILE.jsonl", help="- = stdin")
    pr.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    pr.set_defaults(func=cmd_produce)

    t = sub.add_parser("tail", help="print output records as they arrive")
    _kafka_options(t)
    t.add_argument("what", choices=("transitions", "alerts", "deadletter", "contacts"))
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--seconds", type=float, help="stop after this many seconds")
    t.add_argument("--max", type=int, help="stop after this many records")
    t.set_defaults(func=cmd_tail)

    sk = sub.add_parser("sink", help="write lead.transitions, lead.alerts and lead.contacts to the history database")
    _kafka_options(sk)
    sk.add_argument("--db", metavar="URL", help="history database (default: $LEADFLOW_DB, else sqlite:///leadflow.db)")
    sk.add_argument("--batch", type=int, help="records per database transaction (default $LEADFLOW_SINK_BATCH or 1000)")
    sk.add_argument("--web-port", type=int, help="port of /healthz, /readyz, /stats, /metrics")
    sk.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    sk.set_defaults(func=cmd_sink)

    tp = sub.add_parser("topics", help="create every Leadflow topic that does not exist yet")
    _kafka_options(tp)
    tp.add_argument("--partitions", type=int)
    tp.set_defaults(func=cmd_topics)

    sw = sub.add_parser("sweep", help="fire the cooling due by a time (event-time clock: backfills, tests)")
    _kafka_options(sw)
    sw.add_argument("--until", metavar="RFC3339", required=True, type=_rfc3339)
    sw.set_defaults(func=cmd_sweep)

    dm = sub.add_parser("demo", help="live demo: embedded broker, a worker and a journey simulator")
    dm.add_argument("--kafka", metavar="SERVERS", help="use this Kafka instead of the embedded broker")
    dm.add_argument("--contacts", type=int, default=300)
    dm.add_argument("--rate", type=float, default=400.0, help="events per second published")
    dm.add_argument("--quiet", action="store_true", help="print the summary only")
    dm.set_defaults(func=cmd_demo)

    storage_commands.register(sub)
    collector_commands.register(sub)
    webhooks_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"leadflow: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
