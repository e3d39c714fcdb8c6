"""``leadflow segments``: value segments from the history database (issue 14).

Contacts, revenue and share of revenue per segment, average order value, promo share, per
first-touch group, and the moves between segments over a period. Exit codes as for ``funnel``:
1 the database cannot be reached; 2 a usage error (a model without ``[segments]``, a bad date).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli.common import (
    EXIT_IO,
    CliError,
    Subparsers,
    load_model,
    model_option,
    parse_bound,
    storage_failure,
)
from pipeline.storage.database import ENV_VAR
from pipeline.storage.errors import StorageError
from pipeline.storage.reports.types import GROUP_BY


def cmd_segments(args: argparse.Namespace) -> int:
    from pipeline.storage.factory import open_history_store
    from pipeline.storage.reports.segments import format_segments, segments_as_dict
    from pipeline.storage.reports.segments_html import render_segments_html

    model = load_model(args.model)
    if model.segments is None:
        raise CliError(f"model {model.label} declares no [segments]; choose a model that does (e.g. default)")
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise CliError(f"--since ({args.since.isoformat()}) must be before --until ({args.until.isoformat()})")
    try:
        with open_history_store(args.db) as store:
            report = store.segments(model, by=args.by, since=args.since, until=args.until)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    if args.json:
        print(json.dumps(segments_as_dict(report), indent=2, ensure_ascii=False))
    else:
        print(format_segments(report))
    if args.html:
        try:
            Path(args.html).write_text(render_segments_html(report), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{args.html}: {exc.strerror or exc}", EXIT_IO) from exc
        print(f"wrote the HTML report to {args.html}", file=sys.stderr)
    return 0


def register(subparsers: Subparsers) -> None:
    """Add ``segments`` to the ``leadflow`` subcommands."""
    s = subparsers.add_parser("segments", help="value segments: contacts, revenue, promo share and moves between them")
    s.add_argument("--db", metavar="URL", help=f"database URL (default: ${ENV_VAR}, else sqlite:///leadflow.db)")
    s.add_argument("--by", choices=GROUP_BY, default="source", help="group by this first-touch field")
    s.add_argument("--since", metavar="DATE", type=lambda v: parse_bound(v, end=False),
                   help="count moves from this UTC day or RFC 3339 time (inclusive)")
    s.add_argument("--until", metavar="DATE", type=lambda v: parse_bound(v, end=True),
                   help="count moves up to this UTC day (inclusive) or RFC 3339 time (exclusive)")
    model_option(s, "model whose segments to report (default: default)", metavar="NAME_OR_FILE")
    s.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")
    s.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    s.set_defaults(func=cmd_segments)
