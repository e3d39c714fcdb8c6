"""``leadflow db upgrade``, ``leadflow contact``, ``leadflow funnel``, ``leadflow alerts ack``.

``alerts ack`` records the acknowledgement in the database and writes a ``lead_contacted`` event
(sales family, ``event_id`` ``ack-<alert id>``: acknowledging twice is one event) to
``events.sales``, or to a JSONL file with ``--jsonl``, so the stream answers the alert as it would
a sales tool's call and the stored history agrees.

Exit codes (:mod:`pipeline.cli.common`): 0 success; 1 the database cannot be reached, or the
contact / alert asked for is not in it; 2 a usage error (bad URL, date, model, or a database whose
schema needs ``leadflow db upgrade``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli.common import (
    EXIT_IO,
    EXIT_NOT_FOUND,
    CliError,
    Subparsers,
    kafka_options,
    load_model,
    model_option,
    parse_bound,
    settings_from_args,
    storage_failure,
)
from pipeline.state_machine.events import CONTACT_CHANNELS
from pipeline.storage.database import ENV_VAR, resolve_url, safe_url
from pipeline.storage.errors import StorageError
from pipeline.storage.reports.types import GROUP_BY

if TYPE_CHECKING:
    from pipeline.storage.port import HistoryStore


def _open_store(args: argparse.Namespace) -> HistoryStore:
    from pipeline.storage.factory import open_history_store

    return open_history_store(args.db)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from pipeline.storage.factory import upgrade_database

    url = resolve_url(args.db)
    try:
        before, after = upgrade_database(url)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    if before == after:
        print(f"{safe_url(url)}: schema already at revision {after}")
    else:
        print(f"{safe_url(url)}: schema upgraded from {before or 'empty'} to revision {after}")
    return 0


def cmd_contact(args: argparse.Namespace) -> int:
    from pipeline.storage.reports.text import contact_as_dict, format_contact

    try:
        with _open_store(args) as store:
            history = store.contact_timeline(args.contact_id)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    if history is None:
        raise CliError(
            f"no contact {args.contact_id!r} in {safe_url(resolve_url(args.db))}: check the id "
            "(anonymous visitors are 'anon:<anonymous_id>') and that its history was written there",
            EXIT_NOT_FOUND,
        )
    if args.json:
        print(json.dumps(contact_as_dict(history), indent=2, ensure_ascii=False))
    else:
        print(format_contact(history))
    return 0


def cmd_funnel(args: argparse.Namespace) -> int:
    from pipeline.storage.reports.html import render_html
    from pipeline.storage.reports.text import format_funnel, funnel_as_dict

    model = load_model(args.model)
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise CliError(f"--since ({args.since.isoformat()}) must be before --until ({args.until.isoformat()})")
    try:
        with _open_store(args) as store:
            report = store.funnel(model, by=args.by, since=args.since, until=args.until)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    if args.json:
        print(json.dumps(funnel_as_dict(report), indent=2, ensure_ascii=False))
    else:
        print(format_funnel(report))
    if args.html:
        try:
            Path(args.html).write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{args.html}: {exc.strerror or exc}", EXIT_IO) from exc
        print(f"wrote the HTML report to {args.html}", file=sys.stderr)
    return 0


def cmd_alerts_ack(args: argparse.Namespace) -> int:
    at = args.at if args.at is not None else datetime.now(UTC)
    try:
        with _open_store(args) as store:
            result = store.acknowledge(args.alert_id, at)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    if result.newly_acknowledged:
        print(f"alert {result.alert_id} acknowledged at {result.acknowledged_at}")
    else:
        print(f"alert {result.alert_id} was already acknowledged at {result.acknowledged_at}; kept that time")
    line = contacted_line(result.alert_id, result.contact_id, result.acknowledged_at, args.channel, args.rep)
    if args.jsonl is not None:
        try:
            with open(args.jsonl, "ab") as stream:
                stream.write(line + b"\n")
        except OSError as exc:
            raise CliError(f"{args.jsonl}: {exc.strerror or exc}", EXIT_IO) from exc
        print(f"lead_contacted for {result.contact_id} appended to {args.jsonl}")
    elif not args.no_publish:
        _publish_sales_event(args, line, result.contact_id)
    return 0


def contacted_line(alert_id: str, contact_id: str, at: str, channel: str, rep: str | None) -> bytes:
    """The ``lead_contacted`` envelope an acknowledgement stands for, validated like any input."""
    from pipeline.contracts import DeadLetter, decode_event
    from pipeline.state_machine.clock import parse_rfc3339

    properties: dict[str, str] = {"channel": channel, "alert_id": alert_id, "outcome": "acknowledged"}
    if rep:
        properties["rep_id"] = rep
    envelope = {
        "event_id": f"ack-{alert_id}",
        "event_type": "lead_contacted",
        "source": "sales",
        "contact_id": contact_id,
        "occurred_at": at,
        "properties": properties,
    }
    line = json.dumps(envelope, separators=(",", ":")).encode()
    decoded = decode_event(line, family="sales", received_at=parse_rfc3339(at))
    if isinstance(decoded, DeadLetter):  # e.g. an anonymous contact's alert: no contact_id to send
        raise CliError(f"cannot write lead_contacted for alert {alert_id}: {decoded.error_detail}")
    return line


def _publish_sales_event(args: argparse.Namespace, line: bytes, contact_id: str) -> None:
    from pipeline.kafka.tools import produce_lines

    settings = settings_from_args(args)
    try:
        report = produce_lines([("alerts ack", line)], settings)
    except Exception as exc:
        raise CliError(
            f"the acknowledgement is stored, but lead_contacted could not be published to {settings.bootstrap}: "
            f"{exc}; run the command again (the event id is the same), or use --jsonl / --no-publish",
            EXIT_IO,
        ) from exc
    topics = ", ".join(report.published) or "nothing"
    print(f"lead_contacted for {contact_id} published to {topics}")


def time_with_offset(text: str) -> datetime:
    """``alerts ack --at``: an RFC 3339 time with offset (a bare date is refused)."""
    moment = parse_bound(text, end=False)
    if len(text) == 10:
        raise argparse.ArgumentTypeError(f"give a time with offset, not a date: {text!r} (e.g. {text}T09:30:00Z)")
    return moment


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", help=f"database URL (default: ${ENV_VAR}, else sqlite:///leadflow.db)"
    )


def register(subparsers: Subparsers) -> None:
    """Add ``db``, ``contact``, ``funnel`` and ``alerts`` to the ``leadflow`` subcommands."""
    db = subparsers.add_parser("db", help="manage the history database").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    up = db.add_parser("upgrade", help="create or upgrade the history tables (idempotent)")
    _db_option(up)
    up.set_defaults(func=cmd_db_upgrade)

    c = subparsers.add_parser("contact", help="a contact's current state and full timeline")
    c.add_argument("contact_id", metavar="ID")
    _db_option(c)
    c.add_argument("--json", action="store_true", help="print JSON instead of text")
    c.set_defaults(func=cmd_contact)

    f = subparsers.add_parser("funnel", help="contacts reaching each stage, per first-touch source")
    _db_option(f)
    f.add_argument("--since", metavar="DATE", type=lambda s: parse_bound(s, end=False),
                   help="from this UTC day or RFC 3339 time (inclusive)")
    f.add_argument("--until", metavar="DATE", type=lambda s: parse_bound(s, end=True),
                   help="up to this UTC day (inclusive) or RFC 3339 time (exclusive)")
    f.add_argument("--by", choices=GROUP_BY, default="source", help="group by this first-touch field")
    model_option(f, "model whose stages to count (default: default)", metavar="NAME_OR_FILE")
    f.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")
    f.add_argument("--json", action="store_true", help="print JSON instead of the table")
    f.set_defaults(func=cmd_funnel)

    alerts = subparsers.add_parser("alerts", help="work with became_hot alerts").add_subparsers(
        dest="alerts_command", required=True, metavar="ACTION"
    )
    ack = alerts.add_parser(
        "ack", help="record that sales acted on an alert, and write the lead_contacted event that answers it"
    )
    ack.add_argument("alert_id", metavar="ALERT_ID")
    _db_option(ack)
    ack.add_argument("--at", metavar="RFC3339", type=time_with_offset, help="when (default: now)")
    ack.add_argument("--channel", choices=CONTACT_CHANNELS, default="call", help="how the lead was reached")
    ack.add_argument("--rep", metavar="REP_ID", help="who reached it (rep_id)")
    where = ack.add_mutually_exclusive_group()
    where.add_argument("--jsonl", metavar="FILE", help="append the event to this JSONL file instead of publishing")
    where.add_argument("--no-publish", action="store_true", help="only record the acknowledgement")
    kafka_options(ack)
    ack.set_defaults(func=cmd_alerts_ack)
