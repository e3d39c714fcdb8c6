"""``leadflow sample``: realistic simulated journeys (with some faulty lines) as a replayable JSONL file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import EXIT_IO, CliError, Subparsers


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


def register(subparsers: Subparsers) -> None:
    """Add ``sample``."""
    s = subparsers.add_parser("sample", help="generate realistic journeys as a replayable JSONL file")
    s.add_argument("output", metavar="FILE", help="- = stdout")
    s.add_argument("--contacts", type=int, default=300)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=cmd_sample)
