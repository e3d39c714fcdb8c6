"""``leadflow replay``: a JSONL file of events through the lifecycle model, offline.

Files out (transitions, alerts, dead letters, contacts), optionally the history database too, and a
summary on stderr. Bad events become dead letters; they never change the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli.common import (
    EXIT_IO,
    CliError,
    Subparsers,
    load_model,
    model_option,
    rfc3339_micros,
    storage_failure,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipeline.offline.replay import ReplayStats
    from pipeline.state_machine import Model
    from pipeline.storage import HistoryWriter


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.offline.replay import format_summary

    model = load_model(args.model)
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
            history = stack.enter_context(history_writer(args.db))
        stats = replay_events(args, model, progress, history)
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
        Path(args.summary_json).write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


def history_writer(url: str) -> HistoryWriter:
    """The batched writer of ``replay --db``; storage errors become CLI errors naming the database."""
    from pipeline.storage import HistoryWriter, StorageError

    try:
        return HistoryWriter(url)
    except StorageError as exc:
        raise storage_failure(exc) from exc


def replay_events(
    args: argparse.Namespace,
    model: Model,
    progress: Callable[[ReplayStats], None],
    history: HistoryWriter | None,
) -> ReplayStats:
    """Run the replay the options describe; an unreadable or unwritable file is an I/O error."""
    from pipeline.offline.replay import replay_files
    from pipeline.storage import StorageError

    try:
        return replay_files(
            args.events,
            model,
            received_at=time.time_ns() // 1000,
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


def register(subparsers: Subparsers) -> None:
    """Add ``replay``."""
    p = subparsers.add_parser("replay", help="replay a JSONL file of events through the lifecycle model")
    p.add_argument("events", metavar="EVENTS.jsonl", help="one event envelope with a 'source' per line; - = stdin")
    model_option(p, "model file, or a built-in name: default, b2b")
    p.add_argument("--out", metavar="FILE", help="write transitions (JSONL); - = stdout")
    p.add_argument("--alerts", metavar="FILE", help="write became_hot alerts (JSONL)")
    p.add_argument("--deadletter", metavar="FILE", help="write rejected lines with their reasons (JSONL)")
    p.add_argument("--contacts", metavar="FILE", help="write each contact's final state (JSONL)")
    p.add_argument("--until", metavar="RFC3339", type=rfc3339_micros,
                   help="at the end, fire cooling due up to this time")
    p.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--db", metavar="URL", help="also write transitions, alerts and contacts to this database "
                   "(sqlite:///leadflow.db, postgresql+psycopg://...; run `leadflow db upgrade` first)")
    p.set_defaults(func=cmd_replay)
