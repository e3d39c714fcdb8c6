"""The ``leadflow`` command line: the lifecycle engine offline and on Kafka, its history and its processes.

Commands (``leadflow COMMAND --help`` lists the options of each):

    replay          replay a JSONL file of events through the lifecycle model (files and/or a database out)
    model validate  load a model file and report every problem
    model diagram   print a Mermaid state diagram of a model
    sample          generate realistic simulated journeys as a replayable JSONL file
    worker          run a streaming worker on Kafka (several share the partitions)
    produce         publish a JSONL file of events to their source topics
    tail            print output records (transitions, alerts, dead letters, contacts) as they arrive
    sink            write transitions, alerts and contacts from Kafka to the history database
    topics          create every Leadflow topic that does not exist yet
    sweep           fire the cooling due by a time (event-time clock: backfills, tests)
    demo            live demo: embedded broker, a worker and a journey simulator
    kafka           run Apache Kafka on this machine (KRaft from Maven Central's jars; no Docker)
    db upgrade      create or upgrade the history tables (idempotent)
    contact         a contact's current state and full timeline from the history database
    funnel          contacts reaching each stage, per first-touch source (text, JSON or HTML)
    alerts ack      record that sales acted on a became_hot alert
    segments        value segments: contacts, revenue, promo share and moves between them (text, JSON or HTML)
    collector       HTTP collector: events from web trackers and backends into Kafka
    webhooks        deliver alerts and transitions to sales tools' webhooks
    up              the whole product on this machine, one supervised process tree (and the console)
    console         browser console: hot leads, contacts, funnel, pipeline health

Exit codes (defined once, in :mod:`pipeline.cli.common`): 0 success; 1 an I/O error (a file that
cannot be read or written, Kafka or the database unreachable) or a contact / alert not found; 2 a
usage error (bad option or setting, invalid model or subscriptions file, unusable database URL, a
schema that needs ``leadflow db upgrade``). Bad *events* never change the exit code: they become
dead letters.

Each command group is a module of this package with ``register(subparsers)``; this module only
builds the parser from them and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pipeline.cli import (
    collector,
    console,
    demo,
    kafka,
    model,
    replay,
    sample,
    segments,
    storage,
    streaming,
    up,
    webhooks,
)
from pipeline.cli.common import CliError, Subparsers

#: The command groups, in the order ``leadflow --help`` lists their commands.
REGISTRARS: tuple[Callable[[Subparsers], None], ...] = (
    replay.register,
    model.register,
    sample.register,
    streaming.register,
    demo.register,
    kafka.register,
    storage.register,
    segments.register,
    collector.register,
    webhooks.register,
    up.register,
    console.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__.splitlines()[0] if __doc__ else None)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``leadflow ARGV``; the exit code (a :class:`CliError` is printed as ``leadflow: ...``)."""
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(command(args))
    except CliError as exc:
        print(f"leadflow: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
